"""Table tests: NodeResourcesFit, BalancedAllocation, NodeName, NodePorts,
NodeUnschedulable, NodeAffinity, TaintToleration, ImageLocality, SchedulingGates."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.services.scheduler.framework import Code, PodInfo
from pilothouse.services.scheduler.plugins.imagelocality import ImageLocality
from pilothouse.services.scheduler.plugins.nodeaffinity import NodeAffinity
from pilothouse.services.scheduler.plugins.nodename import NodeName
from pilothouse.services.scheduler.plugins.nodeports import NodePorts
from pilothouse.services.scheduler.plugins.noderesources.balanced_allocation import (
    BalancedAllocation,
)
from pilothouse.services.scheduler.plugins.noderesources.fit import Fit
from pilothouse.services.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from pilothouse.services.scheduler.plugins.schedulinggates import SchedulingGates
from pilothouse.services.scheduler.plugins.tainttoleration import TaintToleration
from pilothouse.services.scheduler.testing import make_node, make_pod
from tests.unit.scheduler.helpers import filter_all, reasons, score_all

# -- NodeResourcesFit: Filter ----------------------------------------------------------------

FIT_CASES = [
    pytest.param(dict(cpu="1"), dict(cpu="2"), [], "", id="fits"),
    pytest.param(dict(cpu="3"), dict(cpu="4"), [dict(cpu="2")], "Insufficient cpu",
                 id="insufficient-cpu"),
    pytest.param(dict(memory="3Gi"), dict(memory="4Gi"), [dict(memory="2Gi")],
                 "Insufficient memory", id="insufficient-memory"),
    pytest.param(dict(cpu="3", memory="3Gi"), dict(cpu="4", memory="4Gi"),
                 [dict(cpu="2", memory="2Gi")], "Insufficient cpu, Insufficient memory",
                 id="both"),
    pytest.param(dict(), dict(pods="1"), [dict()], "Too many pods", id="too-many-pods"),
    pytest.param(dict(cpu="1", init_cpu="3"), dict(cpu="4"), [dict(cpu="2")],
                 "Insufficient cpu", id="init-container-counts"),
    pytest.param(dict(cpu="1", overhead={"cpu": "1500m"}), dict(cpu="4"), [dict(cpu="2")],
                 "Insufficient cpu", id="overhead-counts"),
    pytest.param(dict(extended={"example.com/gpu": "2"}),
                 dict(extended={"example.com/gpu": "1"}), [], "Insufficient example.com/gpu",
                 id="extended-resource"),
    pytest.param(dict(cpu="0"), dict(cpu="1"), [dict(cpu="1")], "", id="zero-request-fits"),
]


@pytest.mark.parametrize(("pod", "node", "existing", "want"), FIT_CASES)
def test_fit_filter(pod: dict[str, Any], node: dict[str, Any], existing: list[dict[str, Any]],
                    want: str) -> None:
    pods = [make_pod(f"e{i}", node_name="n", **e) for i, e in enumerate(existing)]
    got = filter_all(Fit, make_pod("p", **pod), [make_node("n", **node)], pods)
    assert reasons(got) == {"n": want}


def test_fit_request_above_allocatable_is_unresolvable() -> None:
    got = filter_all(Fit, make_pod(cpu="8"), [make_node("n", cpu="4"), make_node("m", cpu="10")],
                     [make_pod("e", cpu="5", node_name="m")])
    assert got["n"] is not None and got["n"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert got["m"] is not None and got["m"].code is Code.UNSCHEDULABLE  # preemption helps


def test_fit_ignored_resources() -> None:
    got = filter_all(Fit, make_pod(extended={"example.com/gpu": "2"}), [make_node("n")],
                     args={"ignoredResources": ["example.com/gpu"]})
    assert got == {"n": None}


# -- NodeResourcesFit: Score -----------------------------------------------------------------

def _two_nodes() -> list[Any]:
    return [make_node("idle", cpu="4", memory="8Gi"), make_node("busy", cpu="4", memory="8Gi")]


@pytest.mark.parametrize(("strategy", "want"), [
    # pod 1 cpu 2Gi; busy already has 2 cpu 4Gi.
    # least: idle cpu (4-1)/4=75 mem (8-2)/8=75 -> 75; busy (4-3)/4=25, (8-6)/8=25 -> 25
    pytest.param({"type": "LeastAllocated"}, {"idle": 75, "busy": 25}, id="least"),
    pytest.param({"type": "MostAllocated"}, {"idle": 25, "busy": 75}, id="most"),
    pytest.param({"type": "LeastAllocated",
                  "resources": [{"name": "cpu", "weight": 3}, {"name": "memory", "weight": 1}]},
                 {"idle": 75, "busy": 25}, id="least-weighted"),
    pytest.param({"type": "RequestedToCapacityRatio",
                  "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0},
                                                         {"utilization": 100, "score": 10}]}},
                 {"idle": 25, "busy": 75}, id="rtcr-bin-packing"),
    pytest.param({"type": "RequestedToCapacityRatio",
                  "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 10},
                                                         {"utilization": 100, "score": 0}]}},
                 {"idle": 75, "busy": 25}, id="rtcr-spreading"),
])
def test_fit_score_strategies(strategy: dict[str, Any], want: dict[str, int]) -> None:
    existing = [make_pod("e", cpu="2", memory="4Gi", node_name="busy")]
    got = score_all(Fit, make_pod(cpu="1", memory="2Gi"), _two_nodes(), existing,
                    args={"scoringStrategy": strategy})
    assert got == want


def test_fit_score_counts_zero_request_pods_as_non_zero() -> None:
    # Ten best-effort pods on "busy" count as 10 x 100m, 10 x 200Mi.
    existing = [make_pod(f"e{i}", node_name="busy") for i in range(10)]
    got = score_all(Fit, make_pod(), _two_nodes(), existing)
    assert got is not None and got["idle"] > got["busy"]


@pytest.mark.parametrize("args", [
    {"scoringStrategy": {"type": "Nope"}},
    {"scoringStrategy": {"type": "RequestedToCapacityRatio"}},
    {"scoringStrategy": {"resources": [{"name": "cpu", "weight": 0}]}},
])
def test_fit_bad_args(args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fit(args)


def test_balanced_allocation() -> None:
    # pod 1 cpu, 1Gi -> idle: cpu 1/4 = .25, mem 1/8 = .125 -> std .0625 -> 93
    # busy (+2 cpu): cpu 3/4 = .75, mem .125 -> std .3125 -> 68
    existing = [make_pod("e", cpu="2", node_name="busy")]
    got = score_all(BalancedAllocation, make_pod(cpu="1", memory="1Gi"), _two_nodes(), existing)
    assert got == {"idle": 93, "busy": 68}


# -- the small filters ---------------------------------------------------------------------

def test_node_name() -> None:
    nodes = [make_node("a"), make_node("b")]
    assert reasons(filter_all(NodeName, make_pod(node_name="b"), nodes)) == {
        "a": "node(s) didn't match the requested node name", "b": ""}
    assert reasons(filter_all(NodeName, make_pod(), nodes)) == {"a": "", "b": ""}


@pytest.mark.parametrize(("wanted", "used", "fits"), [
    pytest.param([80], [], True, id="free"),
    pytest.param([80], [80], False, id="same-port"),
    pytest.param([(80, "UDP", "")], [80], True, id="other-protocol"),
    pytest.param([(80, "TCP", "10.0.0.1")], [(80, "TCP", "10.0.0.2")], True, id="other-ip"),
    pytest.param([(80, "TCP", "10.0.0.1")], [80], False, id="wildcard-used"),
    pytest.param([80], [(80, "TCP", "10.0.0.2")], False, id="wildcard-wanted"),
])
def test_node_ports(wanted: list[Any], used: list[Any], fits: bool) -> None:
    existing = [make_pod("e", node_name="n", host_ports=used)] if used else []
    got = reasons(filter_all(NodePorts, make_pod(host_ports=wanted), [make_node("n")], existing))
    assert got == {"n": "" if fits else
                   "node(s) didn't have free ports for the requested pod ports"}


def test_node_unschedulable() -> None:
    nodes = [make_node("cordoned", unschedulable=True), make_node("ok")]
    assert reasons(filter_all(NodeUnschedulable, make_pod(), nodes)) == {
        "cordoned": "node(s) were unschedulable", "ok": ""}
    tolerant = make_pod(tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                      "operator": "Exists", "effect": "NoSchedule"}])
    assert reasons(filter_all(NodeUnschedulable, tolerant, nodes)) == {"cordoned": "", "ok": ""}


# -- NodeAffinity ---------------------------------------------------------------------------

ZONES = [make_node("a1", zone="a", labels={"disk": "ssd"}), make_node("b1", zone="b"),
         make_node("c1", zone="c", labels={"disk": "hdd", "gen": "5"})]
NOT_MATCH = "node(s) didn't match Pod's node affinity/selector"


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}


@pytest.mark.parametrize(("pod_kwargs", "fits"), [
    pytest.param({}, {"a1", "b1", "c1"}, id="nothing"),
    pytest.param({"node_selector": {"disk": "ssd"}}, {"a1"}, id="node-selector"),
    pytest.param({"affinity": required({"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}]})},
        {"a1", "b1"}, id="in"),
    pytest.param({"affinity": required({"matchExpressions": [
        {"key": "disk", "operator": "DoesNotExist"}]})}, {"b1"}, id="does-not-exist"),
    pytest.param({"affinity": required({"matchExpressions": [
        {"key": "gen", "operator": "Gt", "values": ["4"]}]})}, {"c1"}, id="gt"),
    pytest.param({"affinity": required(
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]})},
        {"a1", "c1"}, id="terms-are-ored"),
    pytest.param({"affinity": required({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["b1"]}]})}, {"b1"},
        id="match-fields"),
    pytest.param({"node_selector": {"disk": "ssd"}, "affinity": required({"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["c"]}]})},
        set(), id="selector-and-affinity-both-apply"),
])
def test_node_affinity_filter(pod_kwargs: dict[str, Any], fits: set[str]) -> None:
    got = reasons(filter_all(NodeAffinity, make_pod(**pod_kwargs), ZONES))
    assert {n for n, r in got.items() if not r} == fits
    assert all(r in ("", NOT_MATCH, "not in PreFilterResult") for r in got.values())


def test_node_affinity_prefilter_narrows_to_named_nodes() -> None:
    from pilothouse.services.scheduler.framework import CycleState, Handle, Snapshot

    plugin = NodeAffinity(None, Handle())
    pod = PodInfo(make_pod(affinity=required(
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a1", "c1"]}]})))
    result, status = plugin.pre_filter(CycleState(), pod, Snapshot.from_objects(ZONES).list())
    assert status is None and result is not None and result.node_names == {"a1", "c1"}
    conflict = PodInfo(make_pod(affinity=required(
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a1"]},
                         {"key": "metadata.name", "operator": "In", "values": ["b1"]}]})))
    _, status = plugin.pre_filter(CycleState(), conflict, [])
    assert status is not None and status.message() == "pod affinity terms conflict"


def test_node_affinity_preferred_scores() -> None:
    pod = make_pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "Exists"}]}},
        {"weight": 30, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}})
    assert score_all(NodeAffinity, pod, ZONES) == {"a1": 100, "b1": 0, "c1": 25}
    assert score_all(NodeAffinity, make_pod(), ZONES) is None  # skipped


def test_node_affinity_memo_follows_label_changes() -> None:
    """Remembered verdicts are shared by pods with the same terms and dropped when a
    node's labels change (the cache's set_node gives the NodeInfo a new labels dict)."""
    from pilothouse.services.scheduler.cache import Cache
    from pilothouse.services.scheduler.framework import CycleState, Handle, Snapshot
    from pilothouse.services.scheduler.plugins.nodeaffinity import RequiredNodeAffinity

    cache = Cache()
    for n in ZONES:
        cache.add_node(n)
    snap = Snapshot()
    cache.update_snapshot(snap)
    plugin = NodeAffinity(None, Handle(snapshot=snap))
    pod = make_pod(affinity=required({"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}))

    def verdicts(p: Any) -> dict[str, bool]:
        state = CycleState()
        pi = PodInfo(p)
        plugin.pre_filter(state, pi, snap.list())
        many = plugin.filter_many(state, pi, snap.list())
        fresh = RequiredNodeAffinity(pi)
        for ni, v in zip(snap.list(), many, strict=True):
            assert (v is None) == fresh.matches(ni)
        return {ni.name: v is None for ni, v in zip(snap.list(), many, strict=True)}

    assert verdicts(pod) == {"a1": False, "b1": True, "c1": False}
    twin = make_pod("twin", affinity=required({"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}))
    assert RequiredNodeAffinity(PodInfo(twin)).memo is RequiredNodeAffinity(PodInfo(pod)).memo
    moved = make_node("a1", zone="b")
    cache.update_node(None, moved)
    cache.update_snapshot(snap)
    assert verdicts(pod) == {"a1": True, "b1": True, "c1": False}


def test_node_affinity_added_affinity_from_args() -> None:
    args = {"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}]}}}
    got = reasons(filter_all(NodeAffinity, make_pod(), ZONES, args=args))
    assert got == {"a1": "node(s) didn't match scheduler-enforced node affinity", "b1": "",
                   "c1": "node(s) didn't match scheduler-enforced node affinity"}


# -- TaintToleration ------------------------------------------------------------------------

TAINTED = [make_node("clean"), make_node("gpu", taints=[("dedicated", "gpu", "NoSchedule")]),
           make_node("evict", taints=[("bad", "", "NoExecute")]),
           make_node("soft", taints=[("meh", "x", "PreferNoSchedule")])]


@pytest.mark.parametrize(("tolerations", "fits"), [
    pytest.param([], {"clean", "soft"}, id="none"),
    pytest.param([{"key": "dedicated", "operator": "Equal", "value": "gpu",
                   "effect": "NoSchedule"}], {"clean", "soft", "gpu"}, id="equal"),
    pytest.param([{"key": "dedicated", "operator": "Equal", "value": "tpu"}],
                 {"clean", "soft"}, id="wrong-value"),
    pytest.param([{"key": "dedicated", "operator": "Exists"}], {"clean", "soft", "gpu"},
                 id="exists-any-effect"),
    pytest.param([{"operator": "Exists"}], {"clean", "soft", "gpu", "evict"},
                 id="tolerate-everything"),
    pytest.param([{"key": "bad", "operator": "Exists", "effect": "NoSchedule"}],
                 {"clean", "soft"}, id="wrong-effect"),
])
def test_taint_toleration_filter(tolerations: list[dict[str, Any]], fits: set[str]) -> None:
    got = reasons(filter_all(TaintToleration, make_pod(tolerations=tolerations), TAINTED))
    assert {n for n, r in got.items() if not r} == fits
    if "gpu" not in fits:
        assert got["gpu"] == "node(s) had untolerated taint {dedicated: gpu}"


def test_taint_toleration_score_prefers_fewer_prefer_no_schedule_taints() -> None:
    got = score_all(TaintToleration, make_pod(), TAINTED)
    assert got == {"clean": 100, "gpu": 100, "evict": 100, "soft": 0}
    tolerant = make_pod(tolerations=[{"key": "meh", "operator": "Exists",
                                      "effect": "PreferNoSchedule"}])
    assert score_all(TaintToleration, tolerant, TAINTED) == {
        "clean": 100, "gpu": 100, "evict": 100, "soft": 100}


# -- ImageLocality, SchedulingGates -------------------------------------------------------

def test_image_locality_prefers_nodes_with_the_image() -> None:
    mb = 1024 * 1024
    nodes = [make_node("has", images=[(["example.com/app:v1"], 500 * mb)]), make_node("hasnt"),
             make_node("other", images=[(["example.com/other:v1"], 900 * mb)])]
    got = score_all(ImageLocality, make_pod(image="example.com/app:v1"), nodes)
    # 500 MiB on 1 of 3 nodes counts as 166 MiB: 100 * (166 - 23) / (1000 - 23) = 14
    assert got == {"has": 14, "hasnt": 0, "other": 0}
    untagged = score_all(ImageLocality, make_pod(image="example.com/app"), [
        make_node("latest", images=[(["example.com/app:latest"], 500 * mb)])])
    assert untagged == {"latest": 48}  # "app" means "app:latest"; on 1 of 1 nodes


def test_scheduling_gates() -> None:
    gates = SchedulingGates()
    status = gates.pre_enqueue(PodInfo(make_pod(scheduling_gates=["a", "b"])))
    assert status is not None and status.message() == "waiting for scheduling gates: [a b]"
    assert gates.pre_enqueue(PodInfo(make_pod())) is None


@pytest.mark.parametrize("plugin_cls", [Fit, BalancedAllocation])
def test_remembered_resource_scores_follow_node_changes(plugin_cls: Any) -> None:
    """Scores remembered per node generation equal a fresh plugin's after pods come and
    go and the node's capacity changes, for pods of different sizes."""
    from pilothouse.services.scheduler.cache import Cache
    from pilothouse.services.scheduler.framework import CycleState, Handle, Snapshot

    cache = Cache()
    for n in ("a", "b", "c"):
        cache.add_node(make_node(n, cpu="4", memory="8Gi"))
    snap = Snapshot()
    plugin = plugin_cls(None, Handle(snapshot=snap))
    small, big = PodInfo(make_pod("s", cpu="100m", memory="1Gi")), \
        PodInfo(make_pod("b", cpu="1", memory="512Mi"))

    def scores(p: Any, pl: Any) -> list[int]:
        state = CycleState()
        pl.pre_score(state, p, snap.list())
        return list(pl.score_nodes(state, p, snap.list()))

    history = []
    steps = [lambda: cache.add_pod(make_pod("e1", cpu="2", memory="1Gi", node_name="a")),
             lambda: cache.add_pod(make_pod("e2", cpu="1", memory="6Gi", node_name="b")),
             lambda: cache.remove_pod("default/e1"),
             lambda: cache.update_node(None, make_node("c", cpu="2", memory="8Gi"))]
    for step in [lambda: None, *steps]:
        step()
        cache.update_snapshot(snap)
        for p in (small, big, small):
            got = scores(p, plugin)
            assert got == scores(p, plugin_cls(None, Handle(snapshot=snap)))
            history.append(tuple(got))
    assert len(set(history)) > 2  # the changes did move the scores
