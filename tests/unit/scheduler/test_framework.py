"""Framework core: statuses, requests, NodeInfo/Snapshot, the Framework with fake plugins,
and the scheduling algorithm's node sampling and messages."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pilothouse.services.scheduler.algorithm import (
    Diagnosis,
    FitError,
    SchedulingAlgorithm,
    SchedulingError,
    num_feasible_nodes_to_find,
)
from pilothouse.services.scheduler.framework import (
    Code,
    CycleState,
    Framework,
    Handle,
    NodeInfo,
    PluginSpec,
    PodInfo,
    PreFilterResult,
    ProfileConfig,
    Snapshot,
    Status,
)
from pilothouse.services.scheduler.framework.types import pod_requests
from pilothouse.services.scheduler.plugins.queuesort import PrioritySort
from pilothouse.services.scheduler.testing import make_node, make_pod

# -- statuses and cycle state -------------------------------------------------------------

def test_status_codes_and_messages() -> None:
    s = Status.unschedulable("Insufficient cpu", "Insufficient memory", plugin="Fit")
    assert s.is_unschedulable() and s.is_rejected() and not s.is_success()
    assert s.message() == "Insufficient cpu, Insufficient memory"
    assert s.code_name == "Unschedulable"
    assert Status.unresolvable("x").code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert Status.skip().is_skip()
    err = Status.as_error(ValueError("boom"), "P")
    assert err.code is Code.ERROR and err.message() == "boom" and err.plugin == "P"
    assert s.with_plugin("Fit") is s
    assert s.with_plugin("Other").plugin == "Other" and s.plugin == "Fit"


def test_cycle_state_clone_copies_cloneable_values() -> None:
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def clone(self) -> Counter:
            c = Counter()
            c.n = self.n
            return c

    state = CycleState()
    state.write("c", Counter())
    state.write("plain", [1])
    state.skip_filter_plugins.add("X")
    copy = state.clone()
    copy.read("c").n = 5
    assert state.read("c").n == 0
    assert copy.read("plain") is state.read("plain")
    copy.skip_filter_plugins.add("Y")
    assert state.skip_filter_plugins == {"X"}
    with pytest.raises(KeyError):
        state.read("missing")


# -- requests as Kubernetes computes them -------------------------------------------------

REQUEST_CASES = [
    pytest.param(dict(cpu="500m", memory="1Gi"), 500, 1 << 30, 500, 1 << 30, id="plain"),
    pytest.param(dict(), 0, 0, 100, 200 << 20, id="best-effort-non-zero-defaults"),
    pytest.param(dict(cpu="100m", containers=3), 300, 0, 300, 3 * (200 << 20), id="3-containers"),
    pytest.param(dict(cpu="100m", init_cpu="1"), 1000, 0, 1000, 200 << 20,
                 id="init-container-larger"),
    pytest.param(dict(cpu="2", init_cpu="1"), 2000, 0, 2000, 200 << 20,
                 id="init-container-smaller"),
    pytest.param(dict(cpu="1", overhead={"cpu": "250m", "memory": "10Mi"}), 1250, 10 << 20,
                 1250, (200 << 20) + (10 << 20), id="overhead"),
    pytest.param(dict(cpu="0.0001"), 1, 0, 1, 200 << 20, id="milli-rounds-up"),
]


@pytest.mark.parametrize(("kwargs", "cpu", "mem", "nz_cpu", "nz_mem"), REQUEST_CASES)
def test_pod_requests(kwargs: dict[str, Any], cpu: int, mem: int, nz_cpu: int,
                      nz_mem: int) -> None:
    pi = PodInfo(make_pod(**kwargs))
    assert (pi.req_cpu, pi.req_mem, pi.nz_cpu, pi.nz_mem) == (cpu, mem, nz_cpu, nz_mem)


def test_sidecar_init_containers_add_up() -> None:
    pod = make_pod(cpu="1")
    sidecar = pod.spec.initContainers.add(name="sidecar", restartPolicy="Always")
    sidecar.resources.requests["cpu"].string = "500m"
    late = pod.spec.initContainers.add(name="late")
    late.resources.requests["cpu"].string = "1200m"
    # containers 1 + sidecar 0.5 = 1.5; the late init container runs beside the sidecar:
    # 1.2 + 0.5 = 1.7 is the peak.
    assert pod_requests(pod)["cpu"] == 1_700_000_000


# -- NodeInfo and Snapshot ----------------------------------------------------------------

def test_node_info_accounting_and_generations() -> None:
    ni = NodeInfo(make_node("n1", cpu="4", memory="8Gi", pods="10"))
    assert (ni.alloc_cpu, ni.alloc_mem, ni.alloc_pods) == (4000, 8 << 30, 10)
    g0 = ni.generation
    a = PodInfo(make_pod("a", cpu="1", memory="1Gi", node_name="n1", host_ports=[80]))
    ni.add_pod(a)
    assert ni.generation > g0
    assert (ni.req_cpu, ni.req_mem, ni.used_ports) == (1000, 1 << 30, {("0.0.0.0", "TCP", 80)})
    clone = ni.clone()
    b = PodInfo(make_pod("b", cpu="500m", node_name="n1"))
    clone.add_pod(b)
    assert ni.req_cpu == 1000 and clone.req_cpu == 1500 and len(ni.pods) == 1
    assert ni.remove_pod("default/a") is a
    assert (ni.req_cpu, ni.req_mem, ni.used_ports, ni.pods) == (0, 0, set(), [])
    assert ni.remove_pod("default/a") is None
    assert clone.used_ports == {("0.0.0.0", "TCP", 80)}  # the clone kept its own ports


def test_snapshot_interleaves_zones() -> None:
    nodes = [make_node("a1", zone="a"), make_node("a2", zone="a"), make_node("a3", zone="a"),
             make_node("b1", zone="b"), make_node("c1", zone="c"), make_node("c2", zone="c")]
    snap = Snapshot.from_objects(nodes)
    assert [n.name for n in snap.list()] == ["a1", "b1", "c1", "a2", "c2", "a3"]


# -- the framework with fake plugins ---------------------------------------------------

class FakeFilter:
    def __init__(self, name: str, reject: dict[str, Status], calls: list[str]) -> None:
        self.name = name
        self.reject = reject
        self.calls = calls

    def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
        self.calls.append(f"{self.name}:{ni.name}")
        return self.reject.get(ni.name)


class FakeScore:
    def __init__(self, name: str, scores: dict[str, int], normalize: bool = False) -> None:
        self.name = name
        self.scores = scores
        self.normalize = normalize

    def score(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> int:
        return self.scores[ni.name]


class FakeNormalizingScore(FakeScore):
    def normalize_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                        scores: list[int]) -> Status | None:
        top = max(scores)
        scores[:] = [s * 100 // top for s in scores]
        return None


class FakeBinder:
    name = "FakeBinder"

    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        return None


def build(plugins: dict[str, Any], points: dict[str, list[tuple[str, int]]],
          snapshot: Snapshot | None = None) -> Framework:
    def const(p: Any) -> Any:
        return lambda args, handle: p

    registry = {name: const(p) for name, p in plugins.items()}
    registry["PrioritySort"] = PrioritySort
    registry["FakeBinder"] = lambda args, handle: FakeBinder()
    resolved = {k: [PluginSpec(n, w) for n, w in v] for k, v in points.items()}
    resolved["queueSort"] = [PluginSpec("PrioritySort")]
    resolved["bind"] = [PluginSpec("FakeBinder")]
    return Framework(ProfileConfig(plugins=resolved), registry,
                     Handle(snapshot=snapshot or Snapshot()))


def test_filter_runs_in_order_and_first_failure_wins() -> None:
    calls: list[str] = []
    f1 = FakeFilter("F1", {"n2": Status.unschedulable("f1 says no")}, calls)
    f2 = FakeFilter("F2", {"n2": Status.unschedulable("f2 says no"),
                           "n3": Status.unresolvable("f2 hates n3")}, calls)
    snap = Snapshot.from_objects([make_node("n1"), make_node("n2"), make_node("n3")])
    fwk = build({"F1": f1, "F2": f2}, {"filter": [("F1", 0), ("F2", 0)]}, snap)
    statuses: dict[str, Status] = {}
    passed = fwk.filter_nodes(CycleState(), PodInfo(make_pod()), snap.list(), statuses)
    assert isinstance(passed, list) and [n.name for n in passed] == ["n1"]
    assert statuses["n2"].plugin == "F1" and statuses["n2"].message() == "f1 says no"
    assert statuses["n3"].plugin == "F2"
    assert "F2:n2" not in calls  # F2 never saw the node F1 rejected


def test_filter_exception_becomes_error_status_naming_plugin() -> None:
    class Broken:
        name = "Broken"

        def filter(self, state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status | None:
            raise ZeroDivisionError("oops")

    snap = Snapshot.from_objects([make_node("n1")])
    fwk = build({"Broken": Broken()}, {"filter": [("Broken", 0)]}, snap)
    result = fwk.filter_nodes(CycleState(), PodInfo(make_pod()), snap.list(), {})
    assert isinstance(result, Status) and result.code is Code.ERROR
    assert result.plugin == "Broken" and "n1" in result.message()


def test_prefilter_skip_skips_filter() -> None:
    calls: list[str] = []

    class Skipper(FakeFilter):
        def pre_filter(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                       ) -> tuple[PreFilterResult | None, Status | None]:
            return None, Status.skip()

    sk = Skipper("S", {"n1": Status.unschedulable("no")}, calls)
    snap = Snapshot.from_objects([make_node("n1")])
    fwk = build({"S": sk}, {"preFilter": [("S", 0)], "filter": [("S", 0)]}, snap)
    state = CycleState()
    _, status = fwk.run_pre_filter(state, PodInfo(make_pod()), snap.list())
    assert status is None and "S" in state.skip_filter_plugins
    assert fwk.filter_nodes(state, PodInfo(make_pod()), snap.list(), {}) == snap.list()
    assert calls == []


def test_scores_are_normalized_weighted_and_summed() -> None:
    snap = Snapshot.from_objects([make_node("n1"), make_node("n2")])
    a = FakeScore("A", {"n1": 10, "n2": 20})
    b = FakeNormalizingScore("B", {"n1": 5, "n2": 1})
    fwk = build({"A": a, "B": b}, {"score": [("A", 1), ("B", 3)]}, snap)
    records: list[Any] = []
    totals = fwk.run_score(CycleState(), PodInfo(make_pod()), snap.list(), records)
    assert totals == [10 + 3 * 100, 20 + 3 * 20]
    assert [(r.plugin, r.raw, r.normalized) for r in records] == [
        ("A", [10, 20], [10, 20]), ("B", [5, 1], [100, 20])]


def test_score_out_of_range_is_an_error() -> None:
    snap = Snapshot.from_objects([make_node("n1")])
    fwk = build({"A": FakeScore("A", {"n1": 101})}, {"score": [("A", 1)]}, snap)
    result = fwk.run_score(CycleState(), PodInfo(make_pod()), snap.list())
    assert isinstance(result, Status) and "invalid score 101" in result.message()


def test_plugin_without_the_extension_point_is_rejected() -> None:
    with pytest.raises(ValueError, match="does not extend score"):
        build({"F": FakeFilter("F", {}, [])}, {"score": [("F", 1)]})


def test_unknown_plugin_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'Nope' is not registered"):
        build({}, {"filter": [("Nope", 0)]})


async def test_permit_wait_then_allow() -> None:
    class Waiter:
        name = "W"

        def permit(self, state: CycleState, pod: PodInfo, node: str) -> tuple[Status, float]:
            return Status(Code.WAIT), 30.0

    fwk = build({"W": Waiter()}, {"permit": [("W", 0)]})
    pod = PodInfo(make_pod())
    status, timeout = fwk.run_permit(CycleState(), pod, "n1")
    assert status is not None and status.is_wait() and timeout == 30.0
    assert fwk.allow_waiting_pod(pod.key)
    assert await fwk.wait_on_permit(pod, timeout) is None


# -- the algorithm -------------------------------------------------------------------

@pytest.mark.parametrize(("pct", "nodes", "want"), [
    (None, 50, 50), (None, 99, 99), (None, 100, 100), (None, 1000, 420), (None, 5000, 500),
    (None, 6000, 300), (None, 20000, 1000), (None, 1200, 492), (50, 1000, 500),
    (100, 5000, 5000), (1, 5000, 100), (None, 3000, 780),
])
def test_num_feasible_nodes_to_find(pct: int | None, nodes: int, want: int) -> None:
    assert num_feasible_nodes_to_find(pct, nodes) == want


def make_cluster(n: int, **node_kwargs: Any) -> Snapshot:
    return Snapshot.from_objects([make_node(f"n{i:04d}", **node_kwargs) for i in range(n)])


def test_round_robin_start_index_and_sampling() -> None:
    snap = make_cluster(1000)
    fwk = build({"F": FakeFilter("F", {}, [])}, {"filter": [("F", 0)]}, snap)
    alg = SchedulingAlgorithm(rng=random.Random(1))
    pod = PodInfo(make_pod())
    feasible, _, evaluated = alg.find_nodes_that_fit(fwk, CycleState(), pod, snap)
    assert len(feasible) == 420 and evaluated == 420
    assert feasible[0].name == "n0000" and alg.next_start_node_index == 420
    feasible, _, _ = alg.find_nodes_that_fit(fwk, CycleState(), pod, snap)
    assert feasible[0].name == "n0420"
    feasible, _, _ = alg.find_nodes_that_fit(fwk, CycleState(), pod, snap)
    assert feasible[0].name == "n0840" and feasible[-1].name == "n0259"  # wrapped around


def test_sampling_skips_failing_nodes_and_counts_them() -> None:
    snap = make_cluster(1000)
    reject = {f"n{i:04d}": Status.unschedulable("odd") for i in range(1, 1000, 2)}
    fwk = build({"F": FakeFilter("F", reject, [])}, {"filter": [("F", 0)]}, snap)
    alg = SchedulingAlgorithm()
    feasible, _, evaluated = alg.find_nodes_that_fit(
        fwk, CycleState(), PodInfo(make_pod()), snap)
    assert len(feasible) == 420 and all(int(n.name[1:]) % 2 == 0 for n in feasible)
    assert evaluated == 839 and alg.next_start_node_index == 839


def test_fit_error_message_like_kubernetes() -> None:
    statuses = {"n1": Status.unschedulable("Insufficient cpu"),
                "n2": Status.unschedulable("Insufficient cpu", "Insufficient memory"),
                "n3": Status.unschedulable("Insufficient cpu"),
                "n4": Status.unresolvable("node(s) had untolerated taint {dedicated: gpu}"),
                "n5": Status.unresolvable("node(s) had untolerated taint {dedicated: gpu}")}
    err = FitError(PodInfo(make_pod()), 5, Diagnosis(node_to_status=statuses))
    assert str(err) == ("0/5 nodes are available: 1 Insufficient memory, 2 node(s) had "
                        "untolerated taint {dedicated: gpu}, 3 Insufficient cpu.")
    err.diagnosis.post_filter_msg = "preemption: 0/5 nodes are available: 5 Preemption is " \
        "not helpful for scheduling."
    assert str(err).endswith("3 Insufficient cpu. preemption: 0/5 nodes are available: 5 "
                             "Preemption is not helpful for scheduling..")


def test_schedule_picks_best_and_breaks_ties_at_random() -> None:
    snap = make_cluster(3)
    score = FakeScore("A", {"n0000": 50, "n0001": 90, "n0002": 90})
    fwk = build({"A": score}, {"score": [("A", 1)]}, snap)
    picks = set()
    for seed in range(20):
        alg = SchedulingAlgorithm(rng=random.Random(seed))
        picks.add(alg.schedule(fwk, CycleState(), PodInfo(make_pod()), snap).suggested_host)
    assert picks == {"n0001", "n0002"}


def test_schedule_error_from_filter_raises_scheduling_error() -> None:
    snap = make_cluster(2)
    f = FakeFilter("F", {"n0000": Status.as_error("api down")}, [])
    fwk = build({"F": f}, {"filter": [("F", 0)]}, snap)
    with pytest.raises(SchedulingError, match="api down"):
        SchedulingAlgorithm().schedule(fwk, CycleState(), PodInfo(make_pod()), snap)
