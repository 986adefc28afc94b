"""The explain store keeps what ``to_dict`` shows: the best-scored nodes only."""

from __future__ import annotations

import random

from pilothouse.services.scheduler.explain import Attempt, ExplainStore
from pilothouse.services.scheduler.framework import ScoreRecord


def _attempt(n: int, seed: int) -> Attempt:
    rnd = random.Random(seed)
    totals = [rnd.randrange(5) for _ in range(n)]  # many ties
    raw = [rnd.randrange(100) for _ in range(n)]
    return Attempt(pod="default/p", profile="default-scheduler", attempt=1,
                   result="Scheduled", node="n0", scored_nodes=[f"n{i}" for i in range(n)],
                   totals=totals, score_records=[ScoreRecord("Fit", 1, raw, list(totals))])


def test_record_keeps_the_top_nodes_and_to_dict_is_unchanged() -> None:
    for seed in range(5):
        full = _attempt(300, seed).to_dict()
        store = ExplainStore(top_nodes=50)
        store.record(_attempt(300, seed))
        kept = store.get("default/p")
        assert kept is not None and len(kept.scored_nodes) == 50
        assert len(kept.score_records[0].raw) == 50
        doc = kept.to_dict()
        full["time"] = doc["time"]
        assert doc == full


def test_small_attempts_are_kept_whole() -> None:
    store = ExplainStore(top_nodes=50)
    store.record(_attempt(20, 1))
    kept = store.get("default/p")
    assert kept is not None and len(kept.scored_nodes) == 20


def test_top_equals_a_full_stable_sort() -> None:
    from pilothouse.services.scheduler.explain import _top

    for seed in range(200):
        rnd = random.Random(seed)
        n = rnd.randrange(51, 400)
        totals = [rnd.randrange(rnd.choice([2, 5, 50, 1000])) for _ in range(n)]
        assert _top(totals, 50) == sorted(range(n), key=totals.__getitem__, reverse=True)[:50]
