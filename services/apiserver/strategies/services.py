"""Services: defaults, cluster IP and node port allocation, validation.

Allocation happens in ``prepare_for_create``/``prepare_for_update`` from
``ctx.allocators["service-ip"]`` and ``ctx.allocators["node-port"]``. The
object is validated first, so an invalid Service allocates nothing; a value
that cannot be allocated (taken, out of range) is an Invalid error naming the
field, as in Kubernetes.

Releasing: ``on_delete`` frees everything a deleted Service held;
``after_update`` frees what a stored update gave up (a type change to ClusterIP
drops node ports). When a prepared write is not stored (invalid metadata,
AlreadyExists, a conflict retry, dry run) the registry calls ``abort_create`` /
``abort_update`` to give back what the prepare step took.

Updates that leave allocated values out (``kubectl replace`` of a manifest
without ``clusterIP``) keep the old ones, as Kubernetes' ``patchAllocatedValues``
does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from google.protobuf.message import Message

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.apiserver import errors
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy, set_default
from pilothouse.services.apiserver.strategy import Allocator, StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    duplicate,
    each,
    forbidden,
    immutable,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_ip,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns1035_label,
    not_supported,
    required,
    validate_labels,
)

SERVICE_TYPES: Final = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES: Final = ("ClientIP", "None")
TRAFFIC_POLICIES: Final = ("Cluster", "Local")
PROTOCOLS: Final = ("SCTP", "TCP", "UDP")
DEFAULT_CLIENT_IP_TIMEOUT: Final = 10800
IP_ALLOCATOR: Final = "service-ip"
PORT_ALLOCATOR: Final = "node-port"


def needs_cluster_ip(svc: core_pb2.Service) -> bool:
    return svc.spec.type != "ExternalName"


def is_headless(svc: core_pb2.Service) -> bool:
    return svc.spec.clusterIP == "None"


def needs_node_ports(svc: core_pb2.Service) -> bool:
    t = svc.spec.type
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and (not svc.spec.HasField("allocateLoadBalancerNodePorts")
                                    or svc.spec.allocateLoadBalancerNodePorts)


def needs_health_check_port(svc: core_pb2.Service) -> bool:
    return svc.spec.type == "LoadBalancer" and svc.spec.externalTrafficPolicy == "Local"


def default_service(svc: core_pb2.Service) -> None:
    spec = svc.spec
    if not spec.type:
        spec.type = "ClusterIP"
    if not spec.sessionAffinity:
        spec.sessionAffinity = "None"
    if spec.sessionAffinity == "ClientIP":
        set_default(spec.sessionAffinityConfig.clientIP, "timeoutSeconds",
                    DEFAULT_CLIENT_IP_TIMEOUT)
    for port in spec.ports:
        set_default(port, "protocol", "TCP")
        target = port.targetPort
        if not port.HasField("targetPort") or (target.type == 0 and target.intVal == 0):
            port.targetPort.type = 0
            port.targetPort.intVal = port.port
    if spec.type in ("NodePort", "LoadBalancer") and not spec.externalTrafficPolicy:
        spec.externalTrafficPolicy = "Cluster"
    if spec.type != "ExternalName" and not spec.internalTrafficPolicy:
        spec.internalTrafficPolicy = "Cluster"
    if spec.type == "LoadBalancer":
        set_default(spec, "allocateLoadBalancerNodePorts", True)
    if spec.clusterIP and not spec.clusterIPs:
        spec.clusterIPs.append(spec.clusterIP)


def validate_service(svc: core_pb2.Service) -> list[Cause]:
    spec = svc.spec
    causes: list[Cause] = []
    if spec.type not in SERVICE_TYPES:
        causes.append(not_supported("spec.type", spec.type, SERVICE_TYPES))
    if spec.type == "ExternalName":
        name = spec.externalName.removesuffix(".")
        if not name:
            causes.append(required("spec.externalName"))
        else:
            causes.extend(each("spec.externalName", spec.externalName,
                               is_dns1123_subdomain(name)))
        if spec.clusterIP:
            causes.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
    elif not spec.ports and not is_headless(svc):
        causes.append(required("spec.ports"))
    if spec.clusterIP not in ("", "None") and is_valid_ip(spec.clusterIP):
        causes.append(invalid("spec.clusterIPs[0]", spec.clusterIP,
                              "must be empty, 'None', or a valid IP address"))
    if spec.clusterIPs and spec.clusterIP and spec.clusterIPs[0] != spec.clusterIP:
        causes.append(invalid("spec.clusterIPs", list(spec.clusterIPs),
                              "first value must match `clusterIP`"))
    if spec.sessionAffinity not in SESSION_AFFINITIES:
        causes.append(not_supported("spec.sessionAffinity", spec.sessionAffinity,
                                    SESSION_AFFINITIES))
    causes.extend(validate_labels(dict(spec.selector), "spec.selector"))
    names: set[str] = set()
    ports: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        if len(spec.ports) > 1 or port.name:
            if not port.name:
                causes.append(required(f"{path}.name"))
            else:
                causes.extend(each(f"{path}.name", port.name, is_dns1123_label(port.name)))
                if port.name in names:
                    causes.append(duplicate(f"{path}.name", port.name))
                names.add(port.name)
        causes.extend(each(f"{path}.port", port.port, is_valid_port_num(port.port)))
        if port.protocol not in PROTOCOLS:
            causes.append(not_supported(f"{path}.protocol", port.protocol, PROTOCOLS))
        key = (port.port, port.protocol)
        if key in ports:
            causes.append(duplicate(path, f"{port.port}/{port.protocol}"))
        ports.add(key)
        target = port.targetPort
        if target.type == 1:
            causes.extend(each(f"{path}.targetPort", target.strVal,
                               is_valid_port_name(target.strVal)))
        else:
            causes.extend(each(f"{path}.targetPort", target.intVal,
                               is_valid_port_num(target.intVal)))
        if port.nodePort:
            if spec.type == "ClusterIP":
                causes.append(forbidden(f"{path}.nodePort",
                                        "may not be used when `type` is 'ClusterIP'"))
            else:
                causes.extend(each(f"{path}.nodePort", port.nodePort,
                                   is_valid_port_num(port.nodePort)))
                nkey = (port.nodePort, port.protocol)
                if nkey in node_ports:
                    causes.append(duplicate(f"{path}.nodePort", port.nodePort))
                node_ports.add(nkey)
    external = spec.type in ("NodePort", "LoadBalancer")
    if spec.externalTrafficPolicy:
        if not external:
            causes.append(invalid("spec.externalTrafficPolicy", spec.externalTrafficPolicy,
                                  "may only be set for externally-accessible services"))
        elif spec.externalTrafficPolicy not in TRAFFIC_POLICIES:
            causes.append(not_supported("spec.externalTrafficPolicy",
                                        spec.externalTrafficPolicy, TRAFFIC_POLICIES))
    elif external:
        causes.append(required("spec.externalTrafficPolicy"))
    if spec.internalTrafficPolicy and spec.internalTrafficPolicy not in TRAFFIC_POLICIES:
        causes.append(not_supported("spec.internalTrafficPolicy", spec.internalTrafficPolicy,
                                    TRAFFIC_POLICIES))
    if spec.healthCheckNodePort and not needs_health_check_port(svc):
        causes.append(invalid("spec.healthCheckNodePort", spec.healthCheckNodePort,
                              "may only be set when `type` is 'LoadBalancer' and "
                              "`externalTrafficPolicy` is 'Local'"))
    for i, ip in enumerate(spec.externalIPs):
        causes.extend(each(f"spec.externalIPs[{i}]", ip, is_valid_ip(ip)))
    return causes


def _held(svc: core_pb2.Service) -> tuple[set[str], set[str]]:
    """(cluster IPs, node ports) a stored Service holds."""
    ips = {ip for ip in svc.spec.clusterIPs if ip and ip != "None"}
    if svc.spec.clusterIP and svc.spec.clusterIP != "None":
        ips.add(svc.spec.clusterIP)
    ports = {str(p.nodePort) for p in svc.spec.ports if p.nodePort}
    if svc.spec.healthCheckNodePort:
        ports.add(str(svc.spec.healthCheckNodePort))
    return ips, ports


def held_values(services: list[core_pb2.Service]) -> Iterator[tuple[str, str]]:
    """(allocator name, value) for every value the stored Services hold: what the
    registry feeds to ``mark_used`` at start."""
    for svc in services:
        ips, ports = _held(svc)
        for ip in sorted(ips):
            yield IP_ALLOCATOR, ip
        for port in sorted(ports):
            yield PORT_ALLOCATOR, port


class _Transaction:
    """Allocations made for one request; undone if a later one fails."""

    def __init__(self, ctx: StrategyContext, svc: core_pb2.Service) -> None:
        self.ctx = ctx
        self.svc = svc
        self.done: list[tuple[Allocator, str]] = []

    def allocator(self, name: str) -> Allocator:
        allocator = self.ctx.allocators.get(name)
        if allocator is None:
            raise errors.internal(f"no {name!r} allocator is configured")
        return allocator

    def take(self, name: str, requested: str, path: str, shown: Any) -> str:
        allocator = self.allocator(name)
        try:
            value = allocator.allocate(requested)
        except ValueError as exc:
            self.rollback()
            message = str(exc)
            if not requested:
                raise errors.StatusError(
                    500, "InternalError",
                    f"Internal error occurred: failed to allocate a {name}: {message}") from None
            raise errors.invalid("Service", self.svc.metadata.name,
                                 [invalid(path, shown, message)]) from None
        self.done.append((allocator, value))
        return value

    def rollback(self) -> None:
        for allocator, value in self.done:
            allocator.release(value)
        self.done.clear()


def _allocate(svc: core_pb2.Service, old: core_pb2.Service | None, ctx: StrategyContext) -> None:
    old_ips, old_ports = _held(old) if old is not None else (set(), set())
    spec = svc.spec
    tx = _Transaction(ctx, svc)
    if needs_cluster_ip(svc):
        if is_headless(svc):
            del spec.clusterIPs[:]
            spec.clusterIPs.append("None")
        elif spec.clusterIP not in old_ips:
            requested = spec.clusterIP
            ip = tx.take(IP_ALLOCATOR, requested, "spec.clusterIPs", [requested])
            spec.clusterIP = ip
            del spec.clusterIPs[:]
            spec.clusterIPs.append(ip)
        if not spec.ipFamilies:
            spec.ipFamilies.append("IPv4")
        if not spec.ipFamilyPolicy:
            spec.ipFamilyPolicy = "SingleStack"
    if needs_node_ports(svc):
        for i, port in enumerate(spec.ports):
            if port.nodePort and str(port.nodePort) in old_ports:
                continue
            requested = str(port.nodePort) if port.nodePort else ""
            port.nodePort = int(tx.take(PORT_ALLOCATOR, requested, f"spec.ports[{i}].nodePort",
                                        port.nodePort))
    kept = spec.healthCheckNodePort and str(spec.healthCheckNodePort) in old_ports
    if needs_health_check_port(svc) and not kept:
        requested = str(spec.healthCheckNodePort) if spec.healthCheckNodePort else ""
        spec.healthCheckNodePort = int(tx.take(PORT_ALLOCATOR, requested,
                                               "spec.healthCheckNodePort",
                                               spec.healthCheckNodePort))


def _keep_allocated(new: core_pb2.Service, old: core_pb2.Service) -> None:
    """Values an update left out are the old ones (``patchAllocatedValues``)."""
    spec, was = new.spec, old.spec
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not spec.clusterIP:
            spec.clusterIP = was.clusterIP
        if not spec.clusterIPs and spec.clusterIP == was.clusterIP:
            spec.clusterIPs.extend(was.clusterIPs)
        if not spec.ipFamilies:
            spec.ipFamilies.extend(was.ipFamilies)
        if not spec.ipFamilyPolicy and was.ipFamilyPolicy:
            spec.ipFamilyPolicy = was.ipFamilyPolicy
    if needs_node_ports(old) and needs_node_ports(new):
        used = {p.nodePort for p in spec.ports if p.nodePort}
        for port in spec.ports:
            if port.nodePort:
                continue
            for old_port in was.ports:
                if (old_port.port == port.port and old_port.protocol == port.protocol
                        and old_port.nodePort and old_port.nodePort not in used):
                    port.nodePort = old_port.nodePort
                    used.add(old_port.nodePort)
                    break
    if needs_health_check_port(old) and needs_health_check_port(new) \
            and not spec.healthCheckNodePort:
        spec.healthCheckNodePort = was.healthCheckNodePort


def _cluster_ip_changes(new: core_pb2.Service, old: core_pb2.Service) -> list[Cause]:
    if not needs_cluster_ip(new) or not needs_cluster_ip(old):
        return []
    if is_headless(new) and is_headless(old):
        return []
    causes = []
    for i, ip in enumerate(old.spec.clusterIPs):
        if i < len(new.spec.clusterIPs) and new.spec.clusterIPs[i] != ip:
            causes.append(invalid(f"spec.clusterIPs[{i}]", list(new.spec.clusterIPs),
                                  "may not change once set"))
    if old.spec.clusterIP and new.spec.clusterIP != old.spec.clusterIP and not causes:
        causes.append(immutable("spec.clusterIP", new.spec.clusterIP))
    return causes


@register_strategy("", "services")
class ServiceStrategy(KindStrategy):
    name_validator = staticmethod(name_is_dns1035_label)

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Service)
        default_service(obj)

    def prepare_for_create(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Service)
        super().prepare_for_create(obj, ctx)
        obj.ClearField("status")
        obj.status.loadBalancer.SetInParent()
        if validate_service(obj):
            return  # validation reports it; allocate nothing for an invalid Service
        _allocate(obj, None, ctx)

    def prepare_for_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        assert isinstance(new, core_pb2.Service) and isinstance(old, core_pb2.Service)
        super().prepare_for_update(new, old, ctx)
        _keep_allocated(new, old)
        if validate_service(new) or _cluster_ip_changes(new, old):
            return
        _allocate(new, old, ctx)

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.Service)
        return validate_service(obj)

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, core_pb2.Service) and isinstance(old, core_pb2.Service)
        return validate_service(new) + _cluster_ip_changes(new, old)

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, core_pb2.Service)
        return {
            "metadata.name": obj.metadata.name,
            "metadata.namespace": obj.metadata.namespace,
            "spec.clusterIP": obj.spec.clusterIP,
            "spec.type": obj.spec.type,
        }

    def on_delete(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Service)
        self._release(*_held(obj), ctx)

    def abort_create(self, obj: Message, ctx: StrategyContext) -> None:
        self.on_delete(obj, ctx)

    def after_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        assert isinstance(new, core_pb2.Service) and isinstance(old, core_pb2.Service)
        new_ips, new_ports = _held(new)
        old_ips, old_ports = _held(old)
        self._release(old_ips - new_ips, old_ports - new_ports, ctx)

    def abort_update(self, new: Message, old: Message, ctx: StrategyContext) -> None:
        self.after_update(old, new, ctx)  # free what new took and old never held

    @staticmethod
    def _release(ips: set[str], ports: set[str], ctx: StrategyContext) -> None:
        ip_alloc = ctx.allocators.get(IP_ALLOCATOR)
        port_alloc = ctx.allocators.get(PORT_ALLOCATOR)
        if ip_alloc is not None:
            for ip in ips:
                ip_alloc.release(ip)
        if port_alloc is not None:
            for port in ports:
                port_alloc.release(port)
