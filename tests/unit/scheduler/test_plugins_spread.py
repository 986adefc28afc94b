"""Table tests: InterPodAffinity and PodTopologySpread."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.api.selectors import LabelSelector
from pilothouse.services.scheduler.framework import Code
from pilothouse.services.scheduler.plugins.interpodaffinity import InterPodAffinity
from pilothouse.services.scheduler.plugins.podtopologyspread import PodTopologySpread
from pilothouse.services.scheduler.testing import make_node, make_pod
from tests.unit.scheduler.helpers import filter_all, reasons, score_all

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
NODES = [make_node("a1", zone="a"), make_node("a2", zone="a"), make_node("b1", zone="b"),
         make_node("b2", zone="b")]


def term(key: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def affinity(kind: str, *terms: dict[str, Any]) -> dict[str, Any]:
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def web(name: str, node: str, **kw: Any) -> Any:
    return make_pod(name, node_name=node, labels={"app": "web"}, **kw)


# -- InterPodAffinity: Filter -----------------------------------------------------------------

AFF = "node(s) didn't match pod affinity rules"
ANTI = "node(s) didn't match pod anti-affinity rules"
EXISTING = "node(s) didn't satisfy existing pods anti-affinity rules"

IPA_CASES = [
    pytest.param(dict(affinity=affinity("podAffinity", term(ZONE, {"app": "web"}))),
                 [web("w", "a1")], {"a1": "", "a2": "", "b1": AFF, "b2": AFF},
                 id="affinity-zone"),
    pytest.param(dict(affinity=affinity("podAffinity", term(HOST, {"app": "web"}))),
                 [web("w", "a1")], {"a1": "", "a2": AFF, "b1": AFF, "b2": AFF},
                 id="affinity-host"),
    pytest.param(dict(affinity=affinity("podAffinity", term(ZONE, {"app": "db"}))),
                 [web("w", "a1")], {"a1": AFF, "a2": AFF, "b1": AFF, "b2": AFF},
                 id="affinity-nothing-matches"),
    pytest.param(dict(labels={"app": "db"},
                      affinity=affinity("podAffinity", term(ZONE, {"app": "db"}))),
                 [web("w", "a1")], {"a1": "", "a2": "", "b1": "", "b2": ""},
                 id="affinity-first-of-its-group"),
    pytest.param(dict(affinity=affinity("podAntiAffinity", term(HOST, {"app": "web"}))),
                 [web("w", "a1")], {"a1": ANTI, "a2": "", "b1": "", "b2": ""},
                 id="anti-affinity-host"),
    pytest.param(dict(affinity=affinity("podAntiAffinity", term(ZONE, {"app": "web"}))),
                 [web("w", "a1")], {"a1": ANTI, "a2": ANTI, "b1": "", "b2": ""},
                 id="anti-affinity-zone"),
    pytest.param(dict(labels={"app": "web"}),
                 [make_pod("guard", node_name="b1", labels={"app": "guard"},
                           affinity=affinity("podAntiAffinity", term(ZONE, {"app": "web"})))],
                 {"a1": "", "a2": "", "b1": EXISTING, "b2": EXISTING},
                 id="existing-pods-anti-affinity"),
    pytest.param(dict(affinity=affinity("podAntiAffinity", term(HOST, {"app": "web"}))),
                 [make_pod("w", namespace="other", node_name="a1", labels={"app": "web"})],
                 {"a1": "", "a2": "", "b1": "", "b2": ""}, id="other-namespace-ignored"),
    pytest.param(dict(affinity=affinity("podAntiAffinity",
                                        term(HOST, {"app": "web"}, namespaces=["other"]))),
                 [make_pod("w", namespace="other", node_name="a1", labels={"app": "web"})],
                 {"a1": ANTI, "a2": "", "b1": "", "b2": ""}, id="named-namespace"),
]


@pytest.mark.parametrize(("pod", "existing", "want"), IPA_CASES)
def test_inter_pod_affinity_filter(pod: dict[str, Any], existing: list[Any],
                                   want: dict[str, str]) -> None:
    assert reasons(filter_all(InterPodAffinity, make_pod("p", **pod), NODES, existing)) == want


def test_inter_pod_affinity_codes() -> None:
    pod = make_pod("p", affinity=affinity("podAffinity", term(HOST, {"app": "web"})))
    got = filter_all(InterPodAffinity, pod, NODES, [web("w", "a1")])
    assert got["a2"] is not None and got["a2"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    pod = make_pod("p", affinity=affinity("podAntiAffinity", term(HOST, {"app": "web"})))
    got = filter_all(InterPodAffinity, pod, NODES, [web("w", "a1")])
    assert got["a1"] is not None and got["a1"].code is Code.UNSCHEDULABLE


def test_inter_pod_affinity_namespace_selector() -> None:
    pod = make_pod("p", affinity=affinity("podAntiAffinity", term(
        HOST, {"app": "web"}, namespaceSelector={"matchLabels": {"team": "x"}})))
    existing = [make_pod("w", namespace="team-x", node_name="a2", labels={"app": "web"})]
    got = reasons(filter_all(
        InterPodAffinity, pod, NODES, existing,
        namespaces_matching=lambda sel: [ns for ns, labels in {"team-x": {"team": "x"}}.items()
                                         if sel.matches(labels)]))
    assert got == {"a1": "", "a2": ANTI, "b1": "", "b2": ""}


def test_inter_pod_affinity_skips_without_affinity_anywhere() -> None:
    assert filter_all(InterPodAffinity, make_pod(), NODES, [web("w", "a1")]) == {
        n.metadata.name: None for n in NODES}


def test_inter_pod_affinity_preferred_scores() -> None:
    preferred = "preferredDuringSchedulingIgnoredDuringExecution"
    pod = make_pod("p", affinity={
        "podAffinity": {preferred: [{"weight": 50, "podAffinityTerm": term(ZONE, {"app": "web"})}]},
        "podAntiAffinity": {preferred: [
            {"weight": 20, "podAffinityTerm": term(HOST, {"app": "web"})}]}})
    got = score_all(InterPodAffinity, pod, NODES, [web("w", "a1")])
    # zone a: +50 for both a nodes; host a1: -20. min 0 (b), max 50 (a2).
    assert got == {"a1": 60, "a2": 100, "b1": 0, "b2": 0}


def test_inter_pod_affinity_existing_pods_required_affinity_scores() -> None:
    lover = make_pod("lover", node_name="b2", affinity=affinity(
        "podAffinity", term(HOST, {"app": "web"})))
    got = score_all(InterPodAffinity, make_pod("p", labels={"app": "web"}), NODES, [lover])
    assert got == {"a1": 0, "a2": 0, "b1": 0, "b2": 100}


# -- PodTopologySpread -----------------------------------------------------------------------

SPREAD_NOT = "node(s) didn't match pod topology spread constraints"


def spread(key: str, skew: int = 1, when: str = "DoNotSchedule", **extra: Any) -> dict[str, Any]:
    return {"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}, **extra}


PTS_CASES = [
    pytest.param([spread(ZONE)], ["a1"], {"a1": SPREAD_NOT, "a2": SPREAD_NOT, "b1": "", "b2": ""},
                 id="zone-skew-1"),
    pytest.param([spread(ZONE, 2)], ["a1"], {"a1": "", "a2": "", "b1": "", "b2": ""},
                 id="zone-skew-2"),
    pytest.param([spread(HOST)], ["a1", "b1"], {"a1": SPREAD_NOT, "a2": "", "b1": SPREAD_NOT,
                                                "b2": ""}, id="host-skew-1"),
    pytest.param([spread(ZONE), spread(HOST)], ["a1", "b1", "b2"],
                 {"a1": SPREAD_NOT, "a2": "", "b1": SPREAD_NOT, "b2": SPREAD_NOT},
                 id="two-constraints"),
    pytest.param([spread(ZONE, 1, minDomains=3)], ["a1", "b1"],
                 {"a1": SPREAD_NOT, "a2": SPREAD_NOT, "b1": SPREAD_NOT, "b2": SPREAD_NOT},
                 id="min-domains-not-met-counts-global-min-as-0"),
    pytest.param([spread(ZONE, when="ScheduleAnyway")], ["a1"],
                 {"a1": "", "a2": "", "b1": "", "b2": ""}, id="soft-constraints-do-not-filter"),
]


@pytest.mark.parametrize(("constraints", "existing_on", "want"), PTS_CASES)
def test_pod_topology_spread_filter(constraints: list[dict[str, Any]], existing_on: list[str],
                                    want: dict[str, str]) -> None:
    existing = [web(f"w{i}", n) for i, n in enumerate(existing_on)]
    pod = make_pod("p", labels={"app": "web"}, spread=constraints)
    assert reasons(filter_all(PodTopologySpread, pod, NODES, existing)) == want


def test_pod_topology_spread_missing_label_is_unresolvable() -> None:
    nodes = [*NODES, make_node("nozone")]
    got = filter_all(PodTopologySpread, make_pod("p", labels={"app": "web"},
                                                 spread=[spread(ZONE)]), nodes)
    assert got["nozone"] is not None
    assert got["nozone"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert "missing required label" in got["nozone"].message()


def test_pod_topology_spread_node_affinity_policy() -> None:
    # Zone b is excluded by the pod's node selector, so it is no domain: the pod may go to a.
    existing = [web("w0", "a1")]
    pod = make_pod("p", labels={"app": "web"}, spread=[spread(ZONE)],
                   node_selector={ZONE: "a"})
    assert reasons(filter_all(PodTopologySpread, pod, NODES, existing))["a2"] == ""
    ignore = make_pod("p", labels={"app": "web"}, node_selector={ZONE: "a"},
                      spread=[spread(ZONE, nodeAffinityPolicy="Ignore")])
    assert reasons(filter_all(PodTopologySpread, ignore, NODES, existing))["a2"] == SPREAD_NOT


def test_pod_topology_spread_scores_prefer_emptier_domains() -> None:
    existing = [web("w0", "a1"), web("w1", "a2"), web("w2", "b1")]
    pod = make_pod("p", labels={"app": "web"}, spread=[spread(ZONE, when="ScheduleAnyway")])
    got = score_all(PodTopologySpread, pod, NODES, existing)
    assert got is not None and got["b1"] == got["b2"] > got["a1"] == got["a2"]


def test_pod_topology_spread_system_defaults_need_an_owner_selector() -> None:
    pod = make_pod("p", labels={"app": "web"})
    assert score_all(PodTopologySpread, pod, NODES, [web("w0", "a1")]) is None
    got = score_all(PodTopologySpread, pod, NODES, [web("w0", "a1")],
                    owner_selectors=lambda _p: [LabelSelector.from_set({"app": "web"})])
    assert got is not None and got["a1"] < got["b1"]


def test_pod_topology_spread_bad_args() -> None:
    with pytest.raises(ValueError):
        PodTopologySpread({"defaultingType": "Sometimes"})
    with pytest.raises(ValueError):
        PodTopologySpread({"defaultingType": "System", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]})


def test_pod_topology_spread_counts_follow_the_cache() -> None:
    """The cross-cycle counts, updated from the snapshot's change log after pods are
    assumed, bound, removed and nodes relabelled, added and removed, equal a full
    recount every time, and the Filter verdicts match a fresh plugin's."""
    import random

    from pilothouse.services.scheduler.cache import Cache
    from pilothouse.services.scheduler.framework import CycleState, Handle, PodInfo, Snapshot
    from pilothouse.services.scheduler.plugins.nodeaffinity import RequiredNodeAffinity
    from pilothouse.services.scheduler.plugins.podtopologyspread import SpreadCounts

    rng = random.Random(7)
    cache = Cache()
    names = [f"n{i}" for i in range(12)]
    for i, n in enumerate(names):
        cache.add_node(make_node(n, zone="abc"[i % 3]))
    snap = Snapshot()
    cache.update_snapshot(snap)
    plugin = PodTopologySpread(None, Handle(snapshot=snap))
    pod = make_pod("p", labels={"app": "web"}, spread=[spread(ZONE, 2), spread(HOST, 3)])
    pi = PodInfo(pod)
    placed: dict[str, str] = {}
    for step in range(300):
        action = rng.random()
        if action < 0.5 or not placed:
            key = f"w{step}"
            node = rng.choice(names)
            labels = {"app": "web"} if rng.random() < 0.7 else {"app": "db"}
            p = PodInfo(make_pod(key, labels=labels, node_name=node))
            if rng.random() < 0.5:
                cache.assume_pod(p, node)
            else:
                cache.add_pod(p.pod, p)
            placed[p.key] = node
        elif action < 0.8:
            key = rng.choice(sorted(placed))
            cache.remove_pod(key)
            del placed[key]
        elif action < 0.9:
            n = rng.choice(names)
            cache.update_node(None, make_node(n, zone=rng.choice("abcd")))
        else:
            n = f"extra{step}"
            cache.add_node(make_node(n, zone=rng.choice("ab")))
            names.append(n)
            if rng.random() < 0.5:
                gone = names.pop(0)
                cache.remove_node(gone)
        cache.update_snapshot(snap)
        state = CycleState()
        _, status = plugin.pre_filter(state, pi, snap.list())
        assert status is None
        counter = next(iter(plugin._counters.values()))
        fresh = SpreadCounts(pi, counter.constraints, RequiredNodeAffinity(pi))
        fresh.sync(snap)  # first sync: a full recount
        assert counter.counts == fresh.counts, step
        assert counter.members == fresh.members, step
        other = PodTopologySpread(None, Handle(snapshot=snap))
        other_state = CycleState()
        other.pre_filter(other_state, pi, snap.list())
        want = [other.filter(other_state, pi, ni) for ni in snap.list()]
        assert plugin.filter_many(state, pi, snap.list()) == want, step
    assert sum(counter.counts[0].values()) > 0  # the walk did place matching pods


def test_inter_pod_affinity_counts_follow_the_cache() -> None:
    """PreFilter's three count maps, kept across cycles and updated from the snapshot's
    change log, equal a fresh plugin's full count after every cache change."""
    import random

    from pilothouse.services.scheduler.cache import Cache
    from pilothouse.services.scheduler.framework import CycleState, Handle, PodInfo, Snapshot

    rng = random.Random(11)
    cache = Cache()
    names = [f"n{i}" for i in range(10)]
    for i, n in enumerate(names):
        cache.add_node(make_node(n, zone="abc"[i % 3]))
    snap = Snapshot()
    cache.update_snapshot(snap)
    plugin = InterPodAffinity(None, Handle(snapshot=snap))
    incoming = [
        PodInfo(make_pod("p", labels={"app": "web"}, affinity={
            **affinity("podAntiAffinity", term(HOST, {"app": "web"})),
            **affinity("podAffinity", term(ZONE, {"app": "db"}))})),
        PodInfo(make_pod("q", labels={"app": "db"})),
        PodInfo(make_pod("r", labels={"app": "web"}, affinity=affinity(
            "podAntiAffinity", term(HOST, {"app": "web"}), term(ZONE, {"app": "db"})))),
        PodInfo(make_pod("s", labels={"app": "web"}, affinity={"podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 7, "podAffinityTerm": term(ZONE, {"app": "db"})}]}})),
    ]
    scored = 0
    shapes = [
        {"labels": {"app": "web"}, "affinity": affinity("podAntiAffinity",
                                                       term(HOST, {"app": "web"}))},
        {"labels": {"app": "db"}, "affinity": affinity("podAntiAffinity",
                                                      term(ZONE, {"app": "db"}))},
        {"labels": {"app": "db"}},
        {"labels": {"app": "web"}},
        {"labels": {"app": "cache"}, "affinity": {
            **affinity("podAffinity", term(ZONE, {"app": "web"})),
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": term(HOST, {"app": "web"})}]}}},
    ]
    placed: list[str] = []
    seen_counts = 0
    for step in range(250):
        action = rng.random()
        if action < 0.55 or not placed:
            node = rng.choice(names)
            p = PodInfo(make_pod(f"w{step}", node_name=node, **rng.choice(shapes)))
            if rng.random() < 0.5:
                cache.assume_pod(p, node)
            else:
                cache.add_pod(p.pod, p)
            placed.append(p.key)
        elif action < 0.85:
            cache.remove_pod(placed.pop(rng.randrange(len(placed))))
        else:
            n = rng.choice(names)
            cache.update_node(None, make_node(n, zone=rng.choice("abd")))
        cache.update_snapshot(snap)
        for pi in incoming:
            state = CycleState()
            fresh = InterPodAffinity(None, Handle(snapshot=snap))
            score_state, fresh_score_state = CycleState(), CycleState()
            got_s = plugin.pre_score(score_state, pi, snap.list())
            want_s = fresh.pre_score(fresh_score_state, pi, snap.list())
            assert (got_s is None) == (want_s is None), step
            if got_s is None:
                assert score_state.read("PreScoreInterPodAffinity") == \
                    fresh_score_state.read("PreScoreInterPodAffinity"), step
                scored += 1
            _, status = plugin.pre_filter(state, pi, snap.list())
            fresh = InterPodAffinity(None, Handle(snapshot=snap))
            fresh_state = CycleState()
            _, fresh_status = fresh.pre_filter(fresh_state, pi, snap.list())
            assert status == fresh_status, step
            if status is not None:
                continue
            got = state.read("PreFilterInterPodAffinity")
            want = fresh_state.read("PreFilterInterPodAffinity")
            assert got.existing_anti_affinity_counts == want.existing_anti_affinity_counts
            assert got.affinity_counts == want.affinity_counts, step
            assert got.anti_affinity_counts == want.anti_affinity_counts, step
            seen_counts += len(got.existing_anti_affinity_counts) + len(got.anti_affinity_counts)
            verdicts = [plugin.filter(state, pi, ni) for ni in snap.list()]
            assert verdicts == [fresh.filter(fresh_state, pi, ni) for ni in snap.list()], step
            assert plugin.filter_many(state, pi, snap.list()) == verdicts, step
    assert seen_counts > 0 and scored > 0
