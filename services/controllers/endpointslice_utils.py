"""Pure reconciliation of a Service's EndpointSlices.

``desired_endpoints`` turns the Service's pods into endpoints grouped by
(address type, resolved ports). ``plan_slices`` compares them with the slices
this controller already owns and returns what to create, update and delete,
keeping endpoints in the slice they are already in where possible (so one
pod changing rewrites one slice, not all of them), filling free room before
opening new slices, and never putting more than ``max_per_slice`` endpoints
in one slice. A Service with no endpoints at all keeps one empty placeholder
slice, as Kubernetes does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.discovery.v1 import discovery_pb2
from pilothouse.services.controllers.endpoints_utils import (
    ResolvedPort,
    endpoint_hostname,
    endpoint_ready,
    pod_ips_for_family,
    pod_reference,
    resolve_ports,
    service_families,
    should_pod_be_in_endpoints,
)

__all__ = [
    "LABEL_MANAGED_BY",
    "LABEL_SERVICE_NAME",
    "MANAGED_BY",
    "MAX_ENDPOINTS_PER_SLICE",
    "SliceKey",
    "SlicePlan",
    "desired_endpoints",
    "plan_slices",
    "slice_key",
]

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100
ZONE_LABEL = "topology.kubernetes.io/zone"

# (addressType, ports): the endpoints of one key share one set of slices.
SliceKey = tuple[str, tuple[ResolvedPort, ...]]


def _endpoint_port(p: ResolvedPort) -> discovery_pb2.EndpointPort:
    port = discovery_pb2.EndpointPort(name=p.name, port=p.port, protocol=p.protocol)
    if p.app_protocol:
        port.appProtocol = p.app_protocol
    return port


def slice_key(s: discovery_pb2.EndpointSlice) -> SliceKey:
    ports = tuple(ResolvedPort(p.name, p.port, p.protocol or "TCP", p.appProtocol)
                  for p in s.ports)
    return str(s.addressType), ports


def desired_endpoints(service: core_pb2.Service, pods: Iterable[core_pb2.Pod],
                      node_zones: Mapping[str, str] | None = None,
                      ) -> dict[SliceKey, dict[str, discovery_pb2.Endpoint]]:
    """Endpoints by slice key, each keyed by its address."""
    zones = node_zones or {}
    out: dict[SliceKey, dict[str, discovery_pb2.Endpoint]] = {}
    for family in service_families(service):
        for pod in pods:
            if not should_pod_be_in_endpoints(pod, include_terminating=True):
                continue
            ips = pod_ips_for_family(pod, family)
            if not ips:
                continue
            ports = resolve_ports(pod, service.spec.ports)
            if service.spec.ports and not ports:
                continue
            ready, serving, terminating = endpoint_ready(pod, service)
            ep = discovery_pb2.Endpoint(addresses=[ips[0]])
            ep.conditions.ready = ready
            ep.conditions.serving = serving
            ep.conditions.terminating = terminating
            hostname = endpoint_hostname(pod, service)
            if hostname:
                ep.hostname = hostname
            ep.targetRef.CopyFrom(pod_reference(pod))
            if pod.spec.nodeName:
                ep.nodeName = pod.spec.nodeName
                zone = zones.get(pod.spec.nodeName)
                if zone:
                    ep.zone = zone
            out.setdefault((family, ports), {})[ips[0]] = ep
    return out


@dataclass
class SlicePlan:
    """What to write. ``create`` slices have no name yet (generateName)."""

    create: list[discovery_pb2.EndpointSlice] = field(default_factory=list)
    update: list[discovery_pb2.EndpointSlice] = field(default_factory=list)
    delete: list[discovery_pb2.EndpointSlice] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _new_slice(key: SliceKey, endpoints: Sequence[discovery_pb2.Endpoint]
               ) -> discovery_pb2.EndpointSlice:
    s = discovery_pb2.EndpointSlice(addressType=key[0], endpoints=endpoints)
    s.ports.extend(_endpoint_port(p) for p in key[1])
    return s


def _copy(s: discovery_pb2.EndpointSlice) -> discovery_pb2.EndpointSlice:
    new = discovery_pb2.EndpointSlice()
    new.CopyFrom(s)
    return new


def _address(ep: discovery_pb2.Endpoint) -> str:
    return str(ep.addresses[0]) if ep.addresses else ""


def plan_slices(existing: Sequence[discovery_pb2.EndpointSlice],
                desired: Mapping[SliceKey, Mapping[str, discovery_pb2.Endpoint]],
                labels: Mapping[str, str], *, placeholder_type: str = "IPv4",
                max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> SlicePlan:
    """Plan the writes that turn ``existing`` (slices we manage) into ``desired``.

    Every slice written carries ``labels``; a slice whose labels differ is
    rewritten even if its endpoints are right.
    """
    plan = SlicePlan()
    by_key: dict[SliceKey, list[discovery_pb2.EndpointSlice]] = {}
    for s in sorted(existing, key=lambda s: s.metadata.name):
        by_key.setdefault(slice_key(s), []).append(s)
    wanted = {k: v for k, v in desired.items() if v}
    for key in sorted(set(by_key) | set(wanted)):
        _plan_key(plan, by_key.get(key, []), wanted.get(key, {}), key, max_per_slice)
    # Kubernetes keeps one empty slice for a Service without endpoints, so that
    # consumers can tell "no endpoints" from "not processed yet".
    if not wanted:
        placeholder = next((s for s in plan.delete if not s.endpoints and not s.ports), None)
        if placeholder is None:
            placeholder = next((s for s in existing if not s.ports), None)
        if placeholder is not None:
            plan.delete = [s for s in plan.delete
                           if s.metadata.name != placeholder.metadata.name]
            plan.update = [s for s in plan.update
                           if s.metadata.name != placeholder.metadata.name]
            if placeholder.endpoints or dict(placeholder.metadata.labels) != dict(labels):
                cleared = _copy(placeholder)
                del cleared.endpoints[:]
                plan.update.append(cleared)
        elif plan.delete:
            # Turn one doomed slice into the placeholder instead of deleting it.
            keep = _copy(plan.delete.pop(0))
            del keep.endpoints[:]
            del keep.ports[:]
            keep.addressType = placeholder_type
            plan.update.append(keep)
        else:
            plan.create.append(discovery_pb2.EndpointSlice(addressType=placeholder_type))
    for s in plan.create + plan.update:
        s.metadata.ClearField("labels")
        s.metadata.labels.update(labels)
    # Slices whose endpoints are right but whose labels are not.
    touched = {s.metadata.name for s in plan.update} | {s.metadata.name for s in plan.delete}
    for s in existing:
        if s.metadata.name not in touched and dict(s.metadata.labels) != dict(labels):
            fixed = _copy(s)
            fixed.metadata.ClearField("labels")
            fixed.metadata.labels.update(labels)
            plan.update.append(fixed)
    return plan


def _plan_key(plan: SlicePlan, slices: list[discovery_pb2.EndpointSlice],
              wanted: Mapping[str, discovery_pb2.Endpoint], key: SliceKey,
              max_per_slice: int) -> None:
    placed: set[str] = set()
    kept: list[tuple[discovery_pb2.EndpointSlice, list[discovery_pb2.Endpoint], bool]] = []
    for s in slices:
        endpoints: list[discovery_pb2.Endpoint] = []
        changed = False
        for ep in s.endpoints:
            addr = _address(ep)
            want = wanted.get(addr)
            if want is None or addr in placed or len(endpoints) >= max_per_slice:
                changed = True
                continue
            placed.add(addr)
            if want != ep:
                changed = True
            endpoints.append(want)
        kept.append((s, endpoints, changed))
    missing = [wanted[a] for a in sorted(wanted) if a not in placed]
    # Fill slices we rewrite anyway first, then others with room, then new slices.
    order = sorted(range(len(kept)), key=lambda i: (not kept[i][2], i))
    for i in order:
        s, endpoints, changed = kept[i]
        room = max_per_slice - len(endpoints)
        if room > 0 and missing:
            endpoints.extend(missing[:room])
            missing = missing[room:]
            kept[i] = (s, endpoints, True)
    for s, endpoints, changed in kept:
        if not endpoints:
            plan.delete.append(s)
        elif changed:
            new = _copy(s)
            del new.endpoints[:]
            new.endpoints.extend(endpoints)
            plan.update.append(new)
    for start in range(0, len(missing), max_per_slice):
        plan.create.append(_new_slice(key, missing[start:start + max_per_slice]))
