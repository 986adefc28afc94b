"""Per-node columns (``framework/columns.py``) and the algorithm's column path.

Columns are brought up to date from the snapshot's change log; these tests change
the cluster at random through the cache (as the scheduler does) and check every
column against a fresh per-node evaluation, and check that scheduling with columns
picks the same nodes, records the same verdicts and moves the start index exactly
as the per-batch path does.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pilothouse.services.scheduler.algorithm import FitError, SchedulingAlgorithm
from pilothouse.services.scheduler.cache import Cache
from pilothouse.services.scheduler.config import default_config
from pilothouse.services.scheduler.framework import (
    Column,
    ColumnStore,
    CycleState,
    Framework,
    Handle,
    NodeInfo,
    NodeSlots,
    PodInfo,
    Snapshot,
    Status,
    VerdictColumn,
)
from pilothouse.services.scheduler.plugins import load_registry
from pilothouse.services.scheduler.testing import make_node, make_pod

ZONE = "topology.kubernetes.io/zone"


def _node(i: int, rnd: random.Random) -> Any:
    taints = [("dedicated", "gpu", "NoSchedule")] if rnd.random() < 0.15 else []
    if rnd.random() < 0.15:
        taints.append(("soft", "x", "PreferNoSchedule"))
    return make_node(f"n{i}", cpu=rnd.choice(["1", "2", "4"]), memory="4Gi", pods="5",
                     zone=rnd.choice(["a", "b", "c"]), taints=taints,
                     unschedulable=rnd.random() < 0.1,
                     labels={"disk": rnd.choice(["ssd", "hdd"])})


SHAPES: list[dict[str, Any]] = [
    {"cpu": "500m", "memory": "512Mi"},
    {"cpu": "1500m", "memory": "1Gi", "host_ports": [8080]},
    {"cpu": "100m", "node_selector": {"disk": "ssd"},
     "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
    {"cpu": "200m", "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
            "matchExpressions": [{"key": ZONE, "operator": "In", "values": ["a", "b"]}]}]}}},
     "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                      "effect": "NoSchedule"}]},
]


def _pod(name: str, shape: int, node: str = "") -> Any:
    return make_pod(name, node_name=node, **SHAPES[shape])


def _framework(snapshot: Snapshot, rng: random.Random) -> Framework:
    return Framework(default_config().profiles[0], load_registry(entry_points=False),
                     Handle(snapshot=snapshot, rng=rng))


def _mutate(cache: Cache, rnd: random.Random, step: int, live: list[str],
            bound: dict[str, str]) -> None:
    """One random cluster change, made through the cache."""
    op = rnd.random()
    if op < 0.45 and live:
        key = f"m{step}"
        pod = _pod(key, rnd.randrange(len(SHAPES)), rnd.choice(live))
        if rnd.random() < 0.5:
            cache.add_pod(pod)
        else:
            pi = PodInfo(pod)
            cache.assume_pod(pi, pod.spec.nodeName)
        bound["default/" + key] = pod.spec.nodeName
    elif op < 0.65 and bound:
        key = rnd.choice(sorted(bound))
        cache.remove_pod(key)
        del bound[key]
    elif op < 0.8 and live:
        name = rnd.choice(live)
        cache.update_node(None, _node(int(name[1:]), rnd))
    elif op < 0.9:
        i = 1000 + step
        cache.add_node(_node(i, rnd))
        live.append(f"n{i}")
    elif len(live) > 5:
        name = live.pop(rnd.randrange(len(live)))
        cache.remove_node(name)


def test_columns_follow_random_cluster_changes() -> None:
    rnd = random.Random(7)
    cache = Cache()
    live = []
    for i in range(40):
        cache.add_node(_node(i, rnd))
        live.append(f"n{i}")
    snapshot = Snapshot()
    fwk = _framework(snapshot, random.Random(1))
    bound: dict[str, str] = {}
    plugins = fwk.plugins
    checked = 0
    for step in range(300):
        _mutate(cache, rnd, step, live, bound)
        if step % 3:
            continue  # several changes between two cycles, as with many informer events
        cache.update_snapshot(snapshot)
        shape = rnd.randrange(len(SHAPES))
        pi = PodInfo(_pod(f"x{step}", shape))
        state = CycleState()
        _, status = fwk.run_pre_filter(state, pi, snapshot.node_info_list)
        assert status is None or status.is_rejected()
        nodes = snapshot.node_info_list
        for name in ("NodeUnschedulable", "TaintToleration", "NodeAffinity", "NodePorts",
                     "NodeResourcesFit"):
            if name in state.skip_filter_plugins:
                continue
            pl = plugins[name]
            col = pl.filter_column(state, pi, snapshot)
            if col is None:
                continue  # the shape's first use
            want = [pl.filter(state, pi, ni) for ni in nodes]
            assert col.values == want, (step, name)
            assert list(col.passed) == [1 if v is None else 0 for v in want]
            assert col.failed == sum(v is not None for v in want)
            checked += 1
        fwk.run_pre_score(state, pi, nodes)
        for name in ("TaintToleration", "NodeResourcesFit", "NodeResourcesBalancedAllocation"):
            pl = plugins[name]
            values = pl.score_column(state, pi, snapshot)
            if values is not None:
                assert values == [pl.score(state, pi, ni) for ni in nodes], (step, name)
                checked += 1
    assert checked > 300


def _cluster(seed: int, nodes: int) -> tuple[Cache, list[str]]:
    rnd = random.Random(seed)
    cache = Cache()
    live = []
    for i in range(nodes):
        cache.add_node(_node(i, rnd))
        live.append(f"n{i}")
    return cache, live


class _NoColumns(Framework):
    """The per-batch path only (what the algorithm did before columns)."""

    def filter_columns(self, state: CycleState, pod: PodInfo, snapshot: Snapshot,
                       ) -> tuple[list[tuple[str, VerdictColumn]], int] | Status:
        return [], 0

    def run_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                  records: Any = None, *, snapshot: Snapshot | None = None,
                  slots: NodeSlots | None = None) -> list[int] | Status:
        return super().run_score(state, pod, nodes, records)


@pytest.mark.parametrize("nodes", [150, 700])
@pytest.mark.parametrize("extra", ["", "spread-zone", "spread-hostname", "anti-affinity"])
def test_scheduling_with_columns_equals_the_batch_path(nodes: int, extra: str) -> None:
    """Columns only; PodTopologySpread by zone (a domain column); by hostname (too many
    domains: per batch after the columns); InterPodAffinity (per batch)."""
    runs: list[list[tuple[str, int, int, int, dict[str, str]]]] = []
    for fwk_cls in (Framework, _NoColumns):
        cache, live = _cluster(3, nodes)
        snapshot = Snapshot()
        rng = random.Random(5)
        fwk = fwk_cls(default_config().profiles[0], load_registry(entry_points=False),
                      Handle(snapshot=snapshot, rng=rng))
        algorithm = SchedulingAlgorithm(rng=rng)
        rnd = random.Random(11)
        out: list[tuple[str, int, int, int, dict[str, str]]] = []
        bound: dict[str, str] = {}
        for i in range(120):
            shape = rnd.choice([0, 0, 0, 2, 2, 3, 1])
            kwargs = dict(SHAPES[shape])
            if extra.startswith("spread"):
                key = ZONE if extra == "spread-zone" else "kubernetes.io/hostname"
                kwargs["labels"] = {"app": "w"}
                kwargs["spread"] = [{"maxSkew": 2, "topologyKey": key,
                                     "whenUnsatisfiable": "DoNotSchedule",
                                     "labelSelector": {"matchLabels": {"app": "w"}}}]
            elif extra == "anti-affinity" and i % 2:
                kwargs["labels"] = {"app": "a"}
                kwargs["affinity"] = {**kwargs.get("affinity", {}), "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": {"app": "a"}},
                        "topologyKey": "kubernetes.io/hostname"}]}}
            pi = PodInfo(make_pod(f"p{i}", **kwargs))
            cache.update_snapshot(snapshot)
            state = CycleState()
            try:
                result = algorithm.schedule(fwk, state, pi, snapshot, record=True)
            except FitError as err:
                out.append(("", 0, 0, algorithm.next_start_node_index,
                            {k: s.message() for k, s in err.diagnosis.node_to_status.items()}))
            else:
                cache.assume_pod(pi, result.suggested_host)
                bound[pi.key] = result.suggested_host
                out.append((result.suggested_host, result.evaluated_nodes,
                            result.feasible_nodes, algorithm.next_start_node_index,
                            {k: s.message() for k, s in result.node_to_status.items()}))
            if i % 10 == 9:
                _mutate(cache, rnd, i, live, bound)
        runs.append(out)
    with_columns, batch_path = runs
    assert any(r[4] for r in with_columns), "some nodes should have been filtered out"
    for i, (a, b) in enumerate(zip(with_columns, batch_path, strict=True)):
        assert a == b, f"cycle {i} differs"


def test_column_store_builds_on_the_second_use_and_evicts_the_oldest() -> None:
    snapshot = Snapshot.from_objects([make_node(f"n{i}") for i in range(3)])
    calls: list[str] = []

    def make(tag: str) -> Any:
        def fn(ni: NodeInfo) -> int:
            calls.append(ni.name)
            return len(tag)
        return lambda: fn

    store: ColumnStore[Column[int]] = ColumnStore(Column, capacity=2, build_after=2)
    assert store.get(snapshot, "a", make("a")) is None
    col = store.get(snapshot, "a", make("a"))
    assert col is not None and col.values == [1, 1, 1]
    assert len(calls) == 3
    assert store.get(snapshot, "a", make("a")) is col and len(calls) == 3  # nothing changed
    for key in ("bb", "ccc"):
        store.get(snapshot, key, make(key))
        store.get(snapshot, key, make(key))
    assert store.get(snapshot, "a", make("a")) is None  # evicted: counts as new again


def test_column_recomputes_only_changed_nodes_and_rebuilds_on_a_new_node_list() -> None:
    cache = Cache()
    for i in range(4):
        cache.add_node(make_node(f"n{i}", cpu="2"))
    snapshot = Snapshot()
    cache.update_snapshot(snapshot)
    seen: list[str] = []

    def free_cpu(ni: NodeInfo) -> int:
        seen.append(ni.name)
        return ni.alloc_cpu - ni.req_cpu

    col: Column[int] = Column(free_cpu)
    col.refresh(snapshot)
    assert col.values == [2000] * 4 and len(seen) == 4
    seen.clear()
    cache.assume_pod(PodInfo(make_pod("p", cpu="500m")), "n2")
    cache.update_snapshot(snapshot)
    col.refresh(snapshot)
    assert seen == ["n2"]
    assert col.values[snapshot.slot_of["n2"]] == 1500
    seen.clear()
    cache.add_node(make_node("n9", cpu="8"))
    cache.update_snapshot(snapshot)
    col.refresh(snapshot)
    assert len(seen) == 5  # the list was rebuilt: every slot again
    assert col.values[snapshot.slot_of["n9"]] == 8000


def test_node_slots_gather_wraps_around() -> None:
    values = list(range(10))
    assert NodeSlots(10, 8, 4).gather(values) == [8, 9, 0, 1]
    assert NodeSlots(10, 2, 3).gather(values) == [2, 3, 4]
    assert NodeSlots(10, slots=[7, 1]).gather(values) == [7, 1]


def test_select_host_breaks_ties_as_before() -> None:
    """The tie-break draws the same random numbers as picking from the tie list."""
    nodes = [NodeInfo(make_node(f"n{i}")) for i in range(6)]
    totals = [5, 9, 3, 9, 9, 1]
    for seed in range(20):
        got = SchedulingAlgorithm(rng=random.Random(seed)).select_host(nodes, totals)
        ties = [i for i, t in enumerate(totals) if t == 9]
        want = nodes[ties[random.Random(seed).randrange(len(ties))]].name
        assert got == want


def test_spread_column_verdicts_by_domain() -> None:
    """PodTopologySpread's column: zone a (over the skew) and the unlabelled node fail,
    with the reasons ``filter`` gives, whether read per slot or gathered."""
    cache = Cache()
    for i in range(9):
        cache.add_node(make_node(f"n{i}", zone="abc"[i % 3]))
    cache.add_node(make_node("bare"))
    for i in range(3):
        cache.add_pod(make_pod(f"w{i}", labels={"app": "w"}, node_name="n0"))
    snapshot = Snapshot()
    cache.update_snapshot(snapshot)
    fwk = _framework(snapshot, random.Random(1))
    pod = PodInfo(make_pod("x", labels={"app": "w"}, spread=[{
        "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "w"}}}]))
    state = CycleState()
    fwk.run_pre_filter(state, pod, snapshot.node_info_list)
    pl = fwk.plugins["PodTopologySpread"]
    col = pl.filter_column(state, pod, snapshot)
    assert col is not None
    nodes = snapshot.node_info_list
    want = [pl.filter(state, pod, ni) for ni in nodes]
    slots = list(range(len(nodes)))
    assert [col.values[s] for s in slots] == want
    assert col.values.gather(slots) == want
    assert col.values.gather(slots[::-1]) == want[::-1]
    failing = {ni.name: s.message() for ni, s in zip(nodes, want, strict=True) if s}
    assert failing == {
        "n0": "node(s) didn't match pod topology spread constraints",
        "n3": "node(s) didn't match pod topology spread constraints",
        "n6": "node(s) didn't match pod topology spread constraints",
        "bare": "node(s) didn't match pod topology spread constraints (missing required "
                "label)"}
    assert list(col.passed) == [0 if s else 1 for s in want] and col.failed == 4
