"""DefaultPreemption through a default-profile Framework: who is evicted, where the
preemptor is nominated, and why preemption does not help."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pilothouse.api.selectors import LabelSelector
from pilothouse.services.scheduler.algorithm import FitError, SchedulingAlgorithm
from pilothouse.services.scheduler.config import default_config
from pilothouse.services.scheduler.framework import (
    CycleState,
    Framework,
    Handle,
    PodInfo,
    Snapshot,
)
from pilothouse.services.scheduler.plugins import load_registry
from pilothouse.services.scheduler.plugins.defaultpreemption import (
    Candidate,
    pick_one_node,
)
from pilothouse.services.scheduler.testing import make_node, make_pod


def attempt(nodes: list[Any], pods: list[Any], preemptor: Any,
            **handle_kwargs: Any) -> tuple[str, list[str], str]:
    """(nominated node, evicted pod names, post-filter message) for one failed attempt."""
    snap = Snapshot.from_objects(nodes, pods)
    events: list[tuple[str, str]] = []
    handle = Handle(snapshot=snap, rng=random.Random(0),
                    event=lambda obj, _t, reason, _m: events.append((reason, obj.metadata.name)),
                    **handle_kwargs)
    fwk = Framework(default_config().profiles[0], load_registry(entry_points=False), handle)
    state = CycleState()
    pod = PodInfo(preemptor)
    with pytest.raises(FitError) as info:
        SchedulingAlgorithm(rng=random.Random(0)).schedule(fwk, state, pod, snap)
    result, status = fwk.run_post_filter(state, pod, info.value.diagnosis.node_to_status)
    victims = sorted(name for reason, name in events if reason == "Preempted")
    nominated = result.nominated_node_name if result is not None else ""
    return nominated, victims, "" if status.is_success() else status.message()


def test_evicts_the_fewest_lowest_priority_pods() -> None:
    nodes = [make_node("n1", cpu="4"), make_node("n2", cpu="4")]
    pods = [make_pod("n1-low", cpu="2", priority=10, node_name="n1"),
            make_pod("n1-mid", cpu="2", priority=50, node_name="n1"),
            make_pod("n2-a", cpu="2", priority=10, node_name="n2"),
            make_pod("n2-b", cpu="2", priority=10, node_name="n2")]
    # Needs 2 cpu: on n1 evicting n1-low suffices (highest victim priority 10); on n2 one
    # of the two also suffices; ties go by sum and count and then start time.
    nominated, victims, msg = attempt(nodes, pods, make_pod("big", cpu="2", priority=100))
    assert msg == ""
    assert (nominated, victims) in (("n1", ["n1-low"]), ("n2", ["n2-a"]), ("n2", ["n2-b"]))


def test_prefers_lower_victim_priority() -> None:
    nodes = [make_node("n1", cpu="2"), make_node("n2", cpu="2")]
    pods = [make_pod("mid", cpu="2", priority=50, node_name="n1"),
            make_pod("low", cpu="2", priority=10, node_name="n2")]
    nominated, victims, _ = attempt(nodes, pods, make_pod("big", cpu="2", priority=100))
    assert (nominated, victims) == ("n2", ["low"])


def test_reprieves_pods_that_need_not_go() -> None:
    nodes = [make_node("n1", cpu="4")]
    pods = [make_pod("a", cpu="1", priority=1, node_name="n1", start_time=100),
            make_pod("b", cpu="1", priority=2, node_name="n1", start_time=100),
            make_pod("c", cpu="2", priority=1, node_name="n1", start_time=100)]
    # Needs 2 cpu of 4 with 4 used: reprieving most important first keeps b, then a
    # (b+a = 2 used, 2 free); c must go.
    nominated, victims, _ = attempt(nodes, pods, make_pod("big", cpu="2", priority=100))
    assert (nominated, victims) == ("n1", ["c"])


def test_never_preempts_equal_or_higher_priority() -> None:
    nodes = [make_node("n1", cpu="2")]
    pods = [make_pod("peer", cpu="2", priority=100, node_name="n1")]
    nominated, victims, msg = attempt(nodes, pods, make_pod("big", cpu="2", priority=100))
    assert (nominated, victims) == ("", [])
    assert msg == ("preemption: 0/1 nodes are available: 1 No preemption victims found for "
                   "incoming pod.")


def test_unresolvable_nodes_are_not_candidates() -> None:
    nodes = [make_node("tainted", cpu="8", taints=[("k", "v", "NoSchedule")]),
             make_node("small", cpu="1")]
    pods = [make_pod("low", cpu="1", priority=0, node_name="small")]
    nominated, victims, msg = attempt(nodes, pods, make_pod("big", cpu="4", priority=100))
    assert (nominated, victims) == ("", [])
    assert msg == ("preemption: 0/2 nodes are available: 2 Preemption is not helpful for "
                   "scheduling.")


def test_preemption_policy_never() -> None:
    nodes = [make_node("n1", cpu="2")]
    pods = [make_pod("low", cpu="2", priority=0, node_name="n1")]
    _, victims, msg = attempt(nodes, pods, make_pod("big", cpu="2", priority=100,
                                                     preemption_policy="Never"))
    assert victims == [] and msg == "preemption: not eligible due to preemptionPolicy=Never."


def test_pdb_violations_are_avoided() -> None:
    nodes = [make_node("n1", cpu="2"), make_node("n2", cpu="2")]
    pods = [make_pod("guarded", cpu="2", priority=0, node_name="n1", labels={"app": "db"}),
            make_pod("free", cpu="2", priority=5, node_name="n2")]
    pdbs = [("default", LabelSelector.from_set({"app": "db"}), 0)]
    nominated, victims, _ = attempt(nodes, pods, make_pod("big", cpu="2", priority=100),
                                    pdbs=lambda: pdbs)
    assert (nominated, victims) == ("n2", ["free"])


def test_anti_affinity_victims() -> None:
    nodes = [make_node("n1", zone="a")]
    pods = [make_pod("web", node_name="n1", priority=0, labels={"app": "web"})]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    nominated, victims, _ = attempt(nodes, pods, make_pod("p", priority=10, affinity=anti))
    assert (nominated, victims) == ("n1", ["web"])


def _victim(name: str, priority: int, start: int = 0) -> PodInfo:
    return PodInfo(make_pod(name, priority=priority, start_time=start))


@pytest.mark.parametrize(("candidates", "want"), [
    pytest.param([Candidate("a", [_victim("x", 1)], 1), Candidate("b", [_victim("y", 5)], 0)],
                 "b", id="fewest-pdb-violations"),
    pytest.param([Candidate("a", [_victim("x", 5)], 0), Candidate("b", [_victim("y", 1)], 0)],
                 "b", id="lowest-highest-priority"),
    pytest.param([Candidate("a", [_victim("x", 1), _victim("y", 1)], 0),
                  Candidate("b", [_victim("z", 1)], 0)], "b", id="smallest-sum"),
    pytest.param([Candidate("a", [_victim("x", 1, start=100)], 0),
                  Candidate("b", [_victim("y", 1, start=200)], 0)], "b",
                 id="latest-start-time"),
    pytest.param([Candidate("a", [_victim("x", 1)], 0), Candidate("b", [], 0)], "b",
                 id="no-victims-wins"),
])
def test_pick_one_node(candidates: list[Candidate], want: str) -> None:
    best = pick_one_node(candidates)
    assert best is not None and best.node_name == want
