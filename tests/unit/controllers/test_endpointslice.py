"""EndpointSlice controller: slices from Service selectors, conditions, placement."""

from __future__ import annotations

import pytest

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.discovery.v1 import discovery_pb2
from pilothouse.services.controllers.endpoints_utils import ResolvedPort
from pilothouse.services.controllers.endpointslice import EndpointSliceController
from pilothouse.services.controllers.endpointslice_utils import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    desired_endpoints,
    plan_slices,
)
from tests.unit.controllers.fake_cluster import FakeCluster, make_node, make_pod
from tests.unit.controllers.test_endpoints import WEB, make_service


def _conditions(ep: discovery_pb2.Endpoint) -> tuple[bool, bool, bool]:
    c = ep.conditions
    return c.ready, c.serving, c.terminating


@pytest.mark.parametrize(("pod", "publish", "expected"), [
    pytest.param(make_pod("a", labels=WEB, ip="10.0.0.1", ready=True), False,
                 (True, True, False), id="ready"),
    pytest.param(make_pod("a", labels=WEB, ip="10.0.0.1", ready=False), False,
                 (False, False, False), id="not-ready"),
    pytest.param(make_pod("a", labels=WEB, ip="10.0.0.1", ready=True, terminating=True),
                 False, (False, True, True), id="terminating-still-serving"),
    pytest.param(make_pod("a", labels=WEB, ip="10.0.0.1", ready=False, terminating=True),
                 False, (False, False, True), id="terminating-not-serving"),
    pytest.param(make_pod("a", labels=WEB, ip="10.0.0.1", ready=False), True,
                 (True, True, False), id="publish-not-ready"),
])
def test_endpoint_conditions(pod: core_pb2.Pod, publish: bool,
                             expected: tuple[bool, bool, bool]) -> None:
    desired = desired_endpoints(make_service(publish=publish), [pod])
    [(key, endpoints)] = desired.items()
    assert key == ("IPv4", (ResolvedPort("http", 8080, "TCP"),))
    [ep] = endpoints.values()
    assert _conditions(ep) == expected
    assert ep.conditions.HasField("ready") and ep.conditions.HasField("terminating")


def _slices(n_endpoints: list[int]) -> list[discovery_pb2.EndpointSlice]:
    svc = make_service()
    out = []
    counter = 0
    for i, n in enumerate(n_endpoints):
        pods = [make_pod(f"p{counter + j}", labels=WEB, ip=f"10.0.0.{counter + j}", ready=True)
                for j in range(n)]
        counter += n
        [eps] = desired_endpoints(svc, pods).values()
        s = discovery_pb2.EndpointSlice(addressType="IPv4", endpoints=list(eps.values()))
        s.ports.add(name="http", port=8080, protocol="TCP")
        s.metadata.name = f"web-{i}"
        out.append(s)
    return out


LABELS = {LABEL_SERVICE_NAME: "web", LABEL_MANAGED_BY: MANAGED_BY}


def test_plan_chunks_new_endpoints() -> None:
    svc = make_service()
    pods = [make_pod(f"p{i}", labels=WEB, ip=f"10.0.1.{i}", ready=True) for i in range(250)]
    plan = plan_slices([], desired_endpoints(svc, pods), LABELS, max_per_slice=100)
    assert [len(s.endpoints) for s in plan.create] == [100, 100, 50]
    assert not plan.update and not plan.delete
    assert all(dict(s.metadata.labels) == LABELS for s in plan.create)


def test_plan_keeps_endpoints_in_place_and_fills_room() -> None:
    existing = _slices([3, 2])
    for s in existing:
        s.metadata.labels.update(LABELS)
    svc = make_service()
    # Pod p0 (slice web-0) goes, p9 is new: only web-0 is rewritten, and p9 lands there.
    pods = [make_pod(f"p{i}", labels=WEB, ip=f"10.0.0.{i}", ready=True) for i in (1, 2, 3, 4, 9)]
    plan = plan_slices(existing, desired_endpoints(svc, pods), LABELS, max_per_slice=3)
    assert not plan.create and not plan.delete
    [updated] = plan.update
    assert updated.metadata.name == "web-0"
    assert [e.addresses[0] for e in updated.endpoints] == ["10.0.0.1", "10.0.0.2", "10.0.0.9"]


def test_plan_deletes_emptied_slices_and_keeps_placeholder() -> None:
    existing = _slices([2, 2])
    for s in existing:
        s.metadata.labels.update(LABELS)
    plan = plan_slices(existing, {}, LABELS)
    assert [s.metadata.name for s in plan.delete] == ["web-1"]
    [placeholder] = plan.update
    assert not placeholder.endpoints and not placeholder.ports
    # With nothing at all, one empty placeholder is created.
    plan = plan_slices([], {}, LABELS)
    assert len(plan.create) == 1 and not plan.create[0].endpoints


async def test_sync_writes_slices_with_labels_owner_and_ports() -> None:
    cluster = FakeCluster(settings={"max-endpoints-per-slice": 2})
    controller = EndpointSliceController(cluster.ctx)
    svc = await cluster.add(make_service(target="http"))
    await cluster.add(make_node("n1", labels={"topology.kubernetes.io/zone": "z1"}))
    for i in range(3):
        await cluster.add(make_pod(f"p{i}", labels=WEB, ip=f"10.0.0.{i + 1}", ready=True,
                                   node="n1", ports={"http": 8080}))
    await controller.sync("default/web")
    cluster.settle()
    slices = cluster.objects(discovery_pb2.EndpointSlice)
    assert sorted(len(s.endpoints) for s in slices) == [1, 2]
    for s in slices:
        assert s.metadata.name.startswith("web-")
        assert s.metadata.labels[LABEL_SERVICE_NAME] == "web"
        assert s.metadata.labels[LABEL_MANAGED_BY] == MANAGED_BY
        [owner] = s.metadata.ownerReferences
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "Service", "web", svc.metadata.uid, True)
        assert [(p.name, p.port) for p in s.ports] == [("http", 8080)]
        for ep in s.endpoints:
            assert ep.nodeName == "n1" and ep.zone == "z1"
            assert ep.targetRef.kind == "Pod"
    # Level-triggered and idempotent: a second sync writes nothing.
    writes = len(cluster.writes())
    await controller.sync("default/web")
    assert len(cluster.writes()) == writes


async def test_sync_waits_for_its_own_writes() -> None:
    cluster = FakeCluster()
    controller = EndpointSliceController(cluster.ctx)
    await cluster.add(make_service())
    await cluster.add(make_pod("a", labels=WEB, ip="10.0.0.1", ready=True))
    await controller.sync("default/web")
    # The cache has not seen the new slice: another sync must not create a second one.
    await controller.sync("default/web")
    assert len(cluster.fake.objects(discovery_pb2.EndpointSlice)) == 1
    cluster.settle()
    assert controller.cache_caught_up("default/web")


async def test_selectorless_service_left_alone_and_deleted_service_cleaned() -> None:
    cluster = FakeCluster()
    controller = EndpointSliceController(cluster.ctx)
    await cluster.add(make_service(selector={}))
    await controller.sync("default/web")
    assert cluster.objects(discovery_pb2.EndpointSlice) == []
    await cluster.remove(core_pb2.Service, "web", "default")
    await cluster.add(make_service())
    await controller.sync("default/web")
    cluster.settle()
    assert len(cluster.objects(discovery_pb2.EndpointSlice)) == 1  # the placeholder
    await cluster.remove(core_pb2.Service, "web", "default")
    await controller.sync("default/web")
    cluster.settle()
    assert cluster.objects(discovery_pb2.EndpointSlice) == []


async def test_failed_write_records_event_and_raises() -> None:
    from pilothouse.client import APIError

    cluster = FakeCluster()
    controller = EndpointSliceController(cluster.ctx)
    await cluster.add(make_service())
    cluster.fake.fail_next("create", APIError(500, "InternalError", "boom"), "endpointslices")
    with pytest.raises(APIError):
        await controller.sync("default/web")
    assert cluster.recorder.reasons() == ["FailedToUpdateEndpointSlices"]


@pytest.mark.parametrize("value", ["many", 0, 5000, True])
def test_bad_max_endpoints_setting(value: object) -> None:
    with pytest.raises(ValueError, match="max-endpoints-per-slice"):
        EndpointSliceController(FakeCluster(settings={"max-endpoints-per-slice": value}).ctx)
