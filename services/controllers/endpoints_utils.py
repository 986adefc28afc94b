"""Pure helpers for the Endpoints and EndpointSlice controllers: which pods a
Service selects, which of them are endpoints, and which port each Service
port resolves to on each pod."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.api.selectors import LabelSelector
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.pod_utils import is_pod_ready, is_pod_terminating

__all__ = [
    "ResolvedPort",
    "pod_ips_for_family",
    "resolve_ports",
    "selects_pods",
    "service_selector",
    "should_pod_be_in_endpoints",
]

HEADLESS_LABEL = "service.kubernetes.io/headless"
# The labels Kubernetes never copies from a Service onto its endpoints.
_RESERVED = frozenset({HEADLESS_LABEL, "kubernetes.io/service-name",
                       "endpointslice.kubernetes.io/managed-by"})


def selects_pods(service: core_pb2.Service) -> bool:
    """A Service the controllers manage: it has a selector and is not ExternalName.

    Services without a selector have endpoints written by someone else; the
    controllers leave them alone. (Protobuf cannot tell a null selector from
    an empty map; both mean "no selector" here.)
    """
    return bool(service.spec.selector) and service.spec.type != "ExternalName"


def service_selector(service: core_pb2.Service) -> LabelSelector:
    return LabelSelector.from_set(dict(service.spec.selector))


def should_pod_be_in_endpoints(pod: core_pb2.Pod, include_terminating: bool) -> bool:
    """A pod with an IP that has not finished; terminating pods only when asked."""
    if pod.status.phase in ("Succeeded", "Failed"):
        return False
    if not pod.status.podIP and not pod.status.podIPs:
        return False
    return include_terminating or not is_pod_terminating(pod)


def endpoint_ready(pod: core_pb2.Pod, service: core_pb2.Service) -> tuple[bool, bool, bool]:
    """(ready, serving, terminating) as EndpointSlices report them.

    ``publishNotReadyAddresses`` makes every endpoint ready and serving; otherwise
    serving follows the pod's Ready condition, and ready is serving and not
    terminating.
    """
    publish = service.spec.publishNotReadyAddresses
    serving = publish or is_pod_ready(pod)
    terminating = is_pod_terminating(pod)
    ready = publish or (serving and not terminating)
    return ready, serving, terminating


def _family_of(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def pod_ips_for_family(pod: core_pb2.Pod, family: str) -> list[str]:
    """The pod's IPs of one family (``IPv4``/``IPv6``), primary first."""
    ips = [p.ip for p in pod.status.podIPs if p.ip] or (
        [pod.status.podIP] if pod.status.podIP else [])
    return [ip for ip in ips if _family_of(ip) == family]


def service_families(service: core_pb2.Service) -> list[str]:
    families = list(service.spec.ipFamilies)
    if not families and service.spec.clusterIP and service.spec.clusterIP != "None":
        families = [_family_of(service.spec.clusterIP)]
    return families or ["IPv4"]


@dataclass(frozen=True, order=True)
class ResolvedPort:
    """One Service port as served by one pod."""

    name: str
    port: int
    protocol: str
    app_protocol: str = ""


def find_port(pod: core_pb2.Pod, service_port: core_pb2.ServicePort) -> int | None:
    """The pod port a Service port targets (Kubernetes' podutil.FindPort).

    A named ``targetPort`` is looked up among the containers' ports with the
    same protocol; a number is used as is; no targetPort means ``port``.
    None when a name matches no container port.
    """
    target = service_port.targetPort
    protocol = service_port.protocol or "TCP"
    if service_port.HasField("targetPort") and target.type == 1:
        for container in pod.spec.containers:
            for port in container.ports:
                if port.name == target.strVal and (port.protocol or "TCP") == protocol:
                    return int(port.containerPort)
        return None
    if service_port.HasField("targetPort") and target.intVal:
        return int(target.intVal)
    return int(service_port.port)


def resolve_ports(pod: core_pb2.Pod,
                  ports: Sequence[core_pb2.ServicePort]) -> tuple[ResolvedPort, ...]:
    """Every Service port that resolves on ``pod``, in Service order."""
    out = []
    for sp in ports:
        number = find_port(pod, sp)
        if number is not None:
            out.append(ResolvedPort(sp.name, number, sp.protocol or "TCP", sp.appProtocol))
    return tuple(out)


def endpoint_hostname(pod: core_pb2.Pod, service: core_pb2.Service) -> str:
    """The pod's hostname when it lives in the Service's subdomain (headless DNS)."""
    if pod.spec.hostname and pod.spec.subdomain == service.metadata.name and \
            pod.metadata.namespace == service.metadata.namespace:
        return str(pod.spec.hostname)
    return ""


def pod_reference(pod: core_pb2.Pod) -> core_pb2.ObjectReference:
    return core_pb2.ObjectReference(kind="Pod", namespace=pod.metadata.namespace,
                                    name=pod.metadata.name, uid=pod.metadata.uid)


def endpoints_labels(service: core_pb2.Service) -> dict[str, str]:
    """The Service's labels, plus ``service.kubernetes.io/headless`` when headless."""
    labels = {k: v for k, v in service.metadata.labels.items() if k not in _RESERVED}
    if service.spec.clusterIP == "None":
        labels[HEADLESS_LABEL] = ""
    return labels
