"""Endpoints controller: one core/v1 Endpoints per selecting Service.

Level-triggered over ``namespace/name`` Service keys. ``sync`` lists the
Service's pods from the cache, puts each pod with an IP into a subset by the
ports its containers resolve the Service's ports to (named target ports are
looked up per pod, so pods may differ), ready pods under ``addresses`` and
the others under ``notReadyAddresses`` (all under ``addresses`` with
``publishNotReadyAddresses``), and writes the Endpoints only when it differs.
Services without a selector are left alone (their Endpoints belong to the
user); a deleted Service's Endpoints are deleted. At most 1000 addresses
are kept, as Kubernetes does, with the ``endpoints.kubernetes.io/over-capacity:
truncated`` annotation.
"""

from __future__ import annotations

from typing import Any

from pilothouse.client import APIError, copy_object, meta_namespace_key, split_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.endpoints_utils import (
    ResolvedPort,
    endpoint_hostname,
    endpoints_labels,
    pod_reference,
    resolve_ports,
    selects_pods,
    service_selector,
    should_pod_be_in_endpoints,
)
from pilothouse.services.controllers.pod_utils import is_pod_ready
from pilothouse.services.controllers.settings import workers

__all__ = ["DESCRIPTOR", "EndpointsController", "build_subsets"]

MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def build_subsets(service: core_pb2.Service,
                  pods: list[core_pb2.Pod]) -> list[core_pb2.EndpointSubset]:
    """The subsets of a Service's Endpoints (deterministic order), truncated to 1000
    addresses (ready ones kept first)."""
    publish = service.spec.publishNotReadyAddresses
    groups: dict[tuple[ResolvedPort, ...], tuple[list[Any], list[Any]]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, include_terminating=publish):
            continue
        ports = resolve_ports(pod, service.spec.ports)
        if service.spec.ports and not ports:
            continue  # the pod serves none of the Service's ports
        address = core_pb2.EndpointAddress(ip=pod.status.podIP or pod.status.podIPs[0].ip)
        if pod.spec.nodeName:
            address.nodeName = pod.spec.nodeName
        hostname = endpoint_hostname(pod, service)
        if hostname:
            address.hostname = hostname
        address.targetRef.CopyFrom(pod_reference(pod))
        ready, not_ready = groups.setdefault(ports, ([], []))
        (ready if publish or is_pod_ready(pod) else not_ready).append(address)
    subsets = []
    budget = MAX_CAPACITY
    for ports in sorted(groups):
        ready, not_ready = groups[ports]
        ready.sort(key=lambda a: (a.ip, a.targetRef.name))
        not_ready.sort(key=lambda a: (a.ip, a.targetRef.name))
        ready, not_ready = ready[:budget], not_ready[:max(budget - len(ready), 0)]
        budget -= len(ready) + len(not_ready)
        if not ready and not not_ready:
            continue
        subset = core_pb2.EndpointSubset(addresses=ready, notReadyAddresses=not_ready)
        for p in ports:
            port = subset.ports.add(name=p.name, port=p.port, protocol=p.protocol)
            if p.app_protocol:
                port.appProtocol = p.app_protocol
        subsets.append(subset)
    return subsets


def _address_count(pods: list[core_pb2.Pod], service: core_pb2.Service) -> int:
    publish = service.spec.publishNotReadyAddresses
    return sum(1 for p in pods if should_pod_be_in_endpoints(p, include_terminating=publish))


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.informers.informer_for(core_pb2.Service)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        self.endpoints = ctx.informers.informer_for(core_pb2.Endpoints)
        self.services.add_event_handler(
            on_add=self._enqueue_service,
            on_update=lambda old, new: self._enqueue_service(new),
            on_delete=self._enqueue_service)
        self.pods.add_event_handler(
            on_add=self._pod_changed,
            on_update=self._pod_updated,
            on_delete=self._pod_changed)
        self.endpoints.add_event_handler(
            on_add=self._enqueue_service,
            on_update=lambda old, new: self._enqueue_service(new),
            on_delete=self._enqueue_service)

    def _enqueue_service(self, obj: Any) -> None:
        self.enqueue(meta_namespace_key(obj))

    def services_for_pod(self, pod: core_pb2.Pod) -> list[str]:
        keys = []
        for svc in self.services.list(pod.metadata.namespace):
            if selects_pods(svc) and service_selector(svc).matches(dict(pod.metadata.labels)):
                keys.append(meta_namespace_key(svc))
        return keys

    def _pod_changed(self, obj: Any) -> None:
        for key in self.services_for_pod(object_of(obj)):
            self.enqueue(key)

    def _pod_updated(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        if old.metadata.resourceVersion == new.metadata.resourceVersion:
            return
        for key in set(self.services_for_pod(old)) | set(self.services_for_pod(new)):
            self.enqueue(key)

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.get(name, namespace)
        if service is None:
            try:
                await self.client.delete(core_pb2.Endpoints, name, namespace=namespace)
            except APIError as exc:
                if not exc.is_not_found():
                    raise
            return
        if not selects_pods(service):
            return
        pods = self.pods.list(namespace, service_selector(service))
        subsets = build_subsets(service, pods)
        truncated = _address_count(pods, service) > MAX_CAPACITY
        labels = endpoints_labels(service)
        current = self.endpoints.get(name, namespace)
        if current is None:
            ep = core_pb2.Endpoints(subsets=subsets)
            ep.metadata.name, ep.metadata.namespace = name, namespace
            ep.metadata.labels.update(labels)
            if truncated:
                ep.metadata.annotations[OVER_CAPACITY] = "truncated"
            # AlreadyExists means our cache is behind: the error retries the key
            # (with back-off) until the cache shows the object to update.
            await self.client.create(ep)
            return
        same_annotation = (current.metadata.annotations.get(OVER_CAPACITY) == "truncated") \
            == truncated
        if list(current.subsets) == subsets and dict(current.metadata.labels) == labels \
                and same_annotation:
            return
        ep = copy_object(current)
        del ep.subsets[:]
        ep.subsets.extend(subsets)
        ep.metadata.ClearField("labels")
        ep.metadata.labels.update(labels)
        if truncated:
            ep.metadata.annotations[OVER_CAPACITY] = "truncated"
        else:
            ep.metadata.annotations.pop(OVER_CAPACITY, None)
        await self.client.update(ep)


async def start_endpoints(ctx: ControllerContext) -> None:
    controller = EndpointsController(ctx)
    ctx.informers.start()  # informers asked for above start now (start() is idempotent)
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("endpoints", start_endpoints)
