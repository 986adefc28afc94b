"""``PodInfo.rebound``: the bound version of a pod reuses its PodInfo only when nothing
the PodInfo is made of changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.scheduler.framework import PodInfo
from pilothouse.services.scheduler.testing import make_pod

AFFINITY = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
    "labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}]}}


def _pending() -> core_pb2.Pod:
    pod = make_pod("p", cpu="250m", memory="64Mi", labels={"app": "a"}, affinity=AFFINITY,
                   tolerations=[{"key": "k", "operator": "Exists"}], host_ports=[8080],
                   priority=7)
    pod.metadata.uid = "uid-1"
    return pod


def _bound(change: Callable[[core_pb2.Pod], Any] | None = None) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.CopyFrom(_pending())
    pod.spec.nodeName = "n1"
    cond = pod.status.conditions.add()
    cond.type, cond.status = "PodScheduled", "True"
    if change is not None:
        change(pod)
    return pod


def _slots(pi: PodInfo) -> dict[str, Any]:
    out = {}
    for name in PodInfo.__slots__:
        v = getattr(pi, name)
        if name.endswith("affinity_terms"):  # compiled terms: compare what they select
            v = [(t.namespaces, t.topology_key, str(t.selector)) if hasattr(t, "selector")
                 else (t.weight, t.term.topology_key) for t in v]
        out[name] = v
    return out


def test_bound_pod_reuses_the_pod_info_and_equals_a_fresh_one() -> None:
    assumed = PodInfo(_pending())
    bound = _bound()
    pi = assumed.rebound(bound)
    assert pi is not None and pi is not assumed
    assert pi.pod is bound and pi.node_name == "n1" and assumed.node_name == ""
    assert _slots(pi) == _slots(PodInfo(bound))


@pytest.mark.parametrize("change", [
    lambda p: p.metadata.labels.__setitem__("app", "b"),
    lambda p: p.spec.containers[0].resources.requests["cpu"].__setattr__("string", "1"),
    lambda p: p.spec.tolerations.add(key="other", operator="Exists"),
    lambda p: p.spec.affinity.ClearField("podAntiAffinity"),
    lambda p: p.spec.__setattr__("priority", 9),
    lambda p: p.spec.initContainers.add(name="init", image="busybox"),
    lambda p: p.metadata.deletionTimestamp.__setattr__("seconds", 5),
    lambda p: p.status.startTime.__setattr__("seconds", 5),
    lambda p: p.metadata.__setattr__("uid", "uid-2"),
], ids=["labels", "requests", "tolerations", "affinity", "priority", "init-containers",
        "deleting", "start-time", "uid"])
def test_any_input_change_builds_anew(change: Callable[[core_pb2.Pod], Any]) -> None:
    assert PodInfo(_pending()).rebound(_bound(change)) is None
