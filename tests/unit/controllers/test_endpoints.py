"""Endpoints controller: subsets from a Service's selector and its pods' readiness."""

from __future__ import annotations

import pytest

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString
from pilothouse.services.controllers.endpoints import (
    MAX_CAPACITY,
    OVER_CAPACITY,
    EndpointsController,
    build_subsets,
)
from pilothouse.services.controllers.endpoints_utils import find_port
from tests.unit.controllers.fake_cluster import FakeCluster, make_pod


def make_service(name: str = "web", *, selector: dict[str, str] | None = None,
                 target: int | str | None = 8080, publish: bool = False,
                 headless: bool = False, labels: dict[str, str] | None = None,
                 ) -> core_pb2.Service:
    svc = core_pb2.Service()
    svc.metadata.name = name
    svc.metadata.namespace = "default"
    svc.metadata.labels.update(labels or {})
    svc.spec.selector.update({"app": "web"} if selector is None else selector)
    port = svc.spec.ports.add(name="http", port=80, protocol="TCP")
    if isinstance(target, int):
        port.targetPort.CopyFrom(IntOrString(type=0, intVal=target))
    elif isinstance(target, str):
        port.targetPort.CopyFrom(IntOrString(type=1, strVal=target))
    svc.spec.publishNotReadyAddresses = publish
    if headless:
        svc.spec.clusterIP = "None"
    return svc


WEB = {"app": "web"}


@pytest.mark.parametrize(("target", "ports", "expected"), [
    pytest.param(8080, {}, 8080, id="number"),
    pytest.param(None, {}, 80, id="unset-means-port"),
    pytest.param("http-alt", {"http-alt": 9090}, 9090, id="name-found"),
    pytest.param("http-alt", {"other": 9090}, None, id="name-missing"),
])
def test_find_port(target: int | str | None, ports: dict[str, int], expected: int | None) -> None:
    svc = make_service(target=target)
    pod = make_pod("p", ports=ports)
    assert find_port(pod, svc.spec.ports[0]) == expected


def _ips(addresses: list[core_pb2.EndpointAddress]) -> list[str]:
    return [a.ip for a in addresses]


@pytest.mark.parametrize(("pods", "publish", "expected"), [
    pytest.param([make_pod("a", labels=WEB, ip="10.0.0.2", ready=True),
                  make_pod("b", labels=WEB, ip="10.0.0.1", ready=False)],
                 False, [(["10.0.0.2"], ["10.0.0.1"], 8080)], id="ready-and-not-ready"),
    pytest.param([make_pod("a", labels=WEB, ip="10.0.0.2", ready=False)],
                 True, [(["10.0.0.2"], [], 8080)], id="publish-not-ready"),
    pytest.param([make_pod("a", labels=WEB, ready=True)], False, [], id="no-ip-skipped"),
    pytest.param([make_pod("a", labels=WEB, ip="10.0.0.2", ready=True, phase="Succeeded")],
                 False, [], id="finished-skipped"),
    pytest.param([make_pod("a", labels=WEB, ip="10.0.0.2", ready=True, terminating=True)],
                 False, [], id="terminating-skipped"),
    pytest.param([make_pod("a", labels=WEB, ip="10.0.0.2", ready=True, terminating=True)],
                 True, [(["10.0.0.2"], [], 8080)], id="terminating-published"),
])
def test_build_subsets(pods: list[core_pb2.Pod], publish: bool,
                       expected: list[tuple[list[str], list[str], int]]) -> None:
    subsets = build_subsets(make_service(publish=publish), pods)
    assert [(_ips(s.addresses), _ips(s.notReadyAddresses), s.ports[0].port)
            for s in subsets] == expected


def test_named_ports_split_subsets() -> None:
    svc = make_service(target="http")
    pods = [make_pod("a", labels=WEB, ip="10.0.0.1", ready=True, ports={"http": 8080}),
            make_pod("b", labels=WEB, ip="10.0.0.2", ready=True, ports={"http": 9090}),
            make_pod("c", labels=WEB, ip="10.0.0.3", ready=True, ports={"other": 1})]
    subsets = build_subsets(svc, pods)
    assert [(s.ports[0].port, _ips(s.addresses)) for s in subsets] == [
        (8080, ["10.0.0.1"]), (9090, ["10.0.0.2"])]
    address = subsets[0].addresses[0]
    assert (address.targetRef.kind, address.targetRef.name) == ("Pod", "a")


async def test_sync_creates_updates_and_deletes() -> None:
    cluster = FakeCluster()
    controller = EndpointsController(cluster.ctx)
    await cluster.add(make_service(labels={"team": "a"}))
    pod = await cluster.add(make_pod("a", labels=WEB, ip="10.0.0.1", ready=False, node="n1"))
    await cluster.add(make_pod("other", labels={"app": "db"}, ip="10.0.0.9", ready=True))
    await controller.sync("default/web")
    cluster.settle()
    ep = cluster.get(core_pb2.Endpoints, "web")
    assert ep is not None
    assert dict(ep.metadata.labels) == {"team": "a"}
    assert _ips(ep.subsets[0].notReadyAddresses) == ["10.0.0.1"]
    assert ep.subsets[0].notReadyAddresses[0].nodeName == "n1"
    # The pod turns ready: an update; a second sync writes nothing.
    ready = make_pod("a", labels=WEB, ip="10.0.0.1", ready=True, node="n1")
    ready.metadata.resourceVersion = pod.metadata.resourceVersion
    await cluster.put(ready)
    await controller.sync("default/web")
    cluster.settle()
    ep = cluster.get(core_pb2.Endpoints, "web")
    assert ep is not None and _ips(ep.subsets[0].addresses) == ["10.0.0.1"]
    writes = len(cluster.writes())
    await controller.sync("default/web")
    assert len(cluster.writes()) == writes
    # The Service goes: so do its Endpoints.
    await cluster.remove(core_pb2.Service, "web", "default")
    await controller.sync("default/web")
    assert cluster.get(core_pb2.Endpoints, "web") is None


async def test_service_without_selector_left_alone() -> None:
    cluster = FakeCluster()
    controller = EndpointsController(cluster.ctx)
    await cluster.add(make_service(selector={}))
    manual = core_pb2.Endpoints()
    manual.metadata.name, manual.metadata.namespace = "web", "default"
    manual.subsets.add().addresses.add(ip="192.0.2.1")
    await cluster.add(manual)
    await cluster.add(make_pod("a", labels=WEB, ip="10.0.0.1", ready=True))
    before = len(cluster.writes())
    await controller.sync("default/web")
    assert len(cluster.writes()) == before


async def test_headless_label_and_pod_events_enqueue() -> None:
    cluster = FakeCluster()
    controller = EndpointsController(cluster.ctx)
    await cluster.add(make_service(headless=True))
    await controller.sync("default/web")
    cluster.settle()
    ep = cluster.get(core_pb2.Endpoints, "web")
    assert ep is not None and ep.metadata.labels["service.kubernetes.io/headless"] == ""
    assert list(ep.subsets) == []
    while len(controller.queue):
        key = await controller.queue.get()
        controller.queue.done(key)
    await cluster.add(make_pod("a", labels=WEB, ip="10.0.0.1", ready=True))
    assert len(controller.queue) == 1


def test_over_capacity_truncates() -> None:
    pods = [make_pod(f"p{i}", labels=WEB, ip=f"10.0.{i // 250}.{i % 250}", ready=True)
            for i in range(MAX_CAPACITY + 5)]
    subsets = build_subsets(make_service(), pods)
    assert sum(len(s.addresses) for s in subsets) == MAX_CAPACITY
    assert OVER_CAPACITY == "endpoints.kubernetes.io/over-capacity"
