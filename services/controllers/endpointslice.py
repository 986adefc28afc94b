"""EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for selecting Services.

Level-triggered over Service keys. ``sync`` computes the desired endpoints
(ready/serving/terminating conditions, ports resolved by name per pod,
``publishNotReadyAddresses``, targetRef, nodeName, zone from the node's
``topology.kubernetes.io/zone`` label) and hands them with the slices it
manages (label ``endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io``) to ``plan_slices``, which decides the
writes (at most ``max-endpoints-per-slice``, default 100, per slice). New
slices are named ``<service>-<random>`` and owned by the Service (the
garbage collector deletes them with it; the controller also deletes them
when it sees the Service gone). Services without a selector are left alone.
"""

from __future__ import annotations

from typing import Any

from pilothouse.client import APIError, meta_namespace_key, split_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.discovery.v1 import discovery_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.endpoints_utils import (
    endpoints_labels,
    selects_pods,
    service_families,
    service_selector,
)
from pilothouse.services.controllers.endpointslice_utils import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    MAX_ENDPOINTS_PER_SLICE,
    ZONE_LABEL,
    desired_endpoints,
    plan_slices,
)
from pilothouse.services.controllers.pod_utils import new_owner_reference
from pilothouse.services.controllers.settings import workers

__all__ = ["DESCRIPTOR", "EndpointSliceController"]

SERVICE_INDEX = "endpointslice-controller/service"


def _service_index(s: Any) -> list[str]:
    if s.metadata.labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        return []
    name = s.metadata.labels.get(LABEL_SERVICE_NAME)
    return [f"{s.metadata.namespace}/{name}"] if name else []


class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        limit = ctx.settings.get("max-endpoints-per-slice", MAX_ENDPOINTS_PER_SLICE)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise ValueError(f"setting max-endpoints-per-slice must be an integer from 1 to "
                             f"1000, not {limit!r}")
        self.max_per_slice = limit
        self.services = ctx.informers.informer_for(core_pb2.Service)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        self.nodes = ctx.informers.informer_for(core_pb2.Node)
        self.slices = ctx.informers.informer_for(discovery_pb2.EndpointSlice)
        # Writes whose watch events the cache has not shown yet, by Service key:
        # slice name -> resourceVersion we wrote (0 for a delete). Until they
        # arrive the cache is behind and a sync would create duplicates, so it
        # waits for them (each arriving event enqueues the Service again).
        self._pending: dict[str, dict[str, int]] = {}
        if SERVICE_INDEX not in self.slices.indexer.index_names:
            self.slices.add_indexer(SERVICE_INDEX, _service_index)
        self.services.add_event_handler(
            on_add=self._enqueue_obj,
            on_update=lambda old, new: self._enqueue_obj(new),
            on_delete=self._enqueue_obj)
        self.pods.add_event_handler(
            on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)
        self.slices.add_event_handler(
            on_add=self._slice_changed,
            on_update=lambda old, new: self._slice_changed(new),
            on_delete=lambda obj: self._slice_changed(obj, deleted=True))

    def _enqueue_obj(self, obj: Any) -> None:
        self.enqueue(meta_namespace_key(obj))

    def services_for_pod(self, pod: core_pb2.Pod) -> set[str]:
        return {meta_namespace_key(svc) for svc in self.services.list(pod.metadata.namespace)
                if selects_pods(svc)
                and service_selector(svc).matches(dict(pod.metadata.labels))}

    def _pod_changed(self, obj: Any) -> None:
        for key in self.services_for_pod(object_of(obj)):
            self.enqueue(key)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if old.metadata.resourceVersion == new.metadata.resourceVersion:
            return
        for key in self.services_for_pod(old) | self.services_for_pod(new):
            self.enqueue(key)

    def _slice_changed(self, obj: Any, deleted: bool = False) -> None:
        s = object_of(obj)
        for key in _service_index(s):
            pending = self._pending.get(key)
            if pending is not None and s.metadata.name in pending:
                wanted = pending[s.metadata.name]
                if deleted or (wanted and int(s.metadata.resourceVersion or 0) >= wanted):
                    del pending[s.metadata.name]
                if not pending:
                    del self._pending[key]
            self.enqueue(key)

    def _expect(self, key: str, s: discovery_pb2.EndpointSlice, deleted: bool = False) -> None:
        # The watch event may have beaten the write's response here.
        cached = self.slices.get(s.metadata.name, s.metadata.namespace)
        if deleted and cached is None:
            return
        if not deleted and cached is not None and \
                int(cached.metadata.resourceVersion or 0) >= int(s.metadata.resourceVersion or 0):
            return
        self._pending.setdefault(key, {})[s.metadata.name] = \
            0 if deleted else int(s.metadata.resourceVersion or 0)

    def cache_caught_up(self, key: str) -> bool:
        return not self._pending.get(key)

    def managed_slices(self, namespace: str, service: str) -> list[discovery_pb2.EndpointSlice]:
        return self.slices.by_index(SERVICE_INDEX, f"{namespace}/{service}")

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        if not self.cache_caught_up(key):
            return  # the awaited slice events will enqueue this Service again
        service = self.services.get(name, namespace)
        existing = self.managed_slices(namespace, name)
        if service is None:
            for s in existing:
                if await self._delete(s):
                    self._expect(key, s, deleted=True)
            return
        if not selects_pods(service):
            return
        # Slices owned by an older Service of the same name are not ours to reuse.
        stale = [s for s in existing if s.metadata.ownerReferences
                 and s.metadata.ownerReferences[0].uid != service.metadata.uid]
        existing = [s for s in existing if s not in stale]
        pods = self.pods.list(namespace, service_selector(service))
        zones = {n.metadata.name: n.metadata.labels[ZONE_LABEL] for n in self.nodes.list()
                 if ZONE_LABEL in n.metadata.labels}
        desired = desired_endpoints(service, pods, zones)
        labels = endpoints_labels(service)
        labels[LABEL_SERVICE_NAME] = name
        labels[LABEL_MANAGED_BY] = MANAGED_BY
        plan = plan_slices(existing, desired, labels,
                           placeholder_type=service_families(service)[0],
                           max_per_slice=self.max_per_slice)
        plan.delete.extend(stale)
        try:
            for s in plan.create:
                s.metadata.generateName = f"{name}-"
                s.metadata.namespace = namespace
                s.metadata.ownerReferences.append(new_owner_reference(service, "v1", "Service"))
                self._expect(key, await self.client.create(s))
            for s in plan.update:
                self._expect(key, await self.client.update(s))
            for s in plan.delete:
                if await self._delete(s):
                    self._expect(key, s, deleted=True)
        except APIError as exc:
            if not exc.is_conflict():
                self.recorder.event(service, "Warning", "FailedToUpdateEndpointSlices",
                                    f"Error updating Endpoint Slices for Service "
                                    f"{namespace}/{name}: {exc}")
            raise

    async def _delete(self, s: discovery_pb2.EndpointSlice) -> bool:
        """Delete a slice; False if it was already gone."""
        try:
            await self.client.delete(discovery_pb2.EndpointSlice, s.metadata.name,
                                     namespace=s.metadata.namespace)
        except APIError as exc:
            if not exc.is_not_found():
                raise
            return False
        return True


async def start_endpointslice(ctx: ControllerContext) -> None:
    controller = EndpointSliceController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("endpointslice", start_endpointslice)
