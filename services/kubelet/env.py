"""A container's environment, as Kubernetes' kubelet builds it (pure).

Order of precedence, lowest first: the service-link variables of the pod's
namespace (and the ``kubernetes`` master service), then ``envFrom``, then
``env`` in order. ``env`` values expand ``$(VAR)`` against variables defined
before them (``$$`` is a literal ``$``; an unknown reference stays as
written), and so do ``command`` and ``args`` (``expand``).

ConfigMaps and Secrets are looked up beforehand (``referenced`` says which)
and passed in ``EnvSources``; a missing one that is not ``optional`` is a
``ConfigError`` (the container waits with ``CreateContainerConfigError``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from pilothouse.api.quantity import Quantity
from pilothouse.gen.k8s.core.v1 import core_pb2

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container cannot be configured (``CreateContainerConfigError``)."""


@dataclass
class EnvSources:
    configmaps: dict[str, core_pb2.ConfigMap | None] = field(default_factory=dict)
    secrets: dict[str, core_pb2.Secret | None] = field(default_factory=dict)
    services: list[core_pb2.Service] = field(default_factory=list)
    node_allocatable: dict[str, str] = field(default_factory=dict)
    pod_ips: list[str] = field(default_factory=list)
    host_ip: str = ""


def referenced(pod: core_pb2.Pod, container: core_pb2.Container) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) the container's environment needs."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for src in container.envFrom:
        if src.HasField("configMapRef"):
            cms.add(src.configMapRef.localObjectReference.name)
        if src.HasField("secretRef"):
            secrets.add(src.secretRef.localObjectReference.name)
    for var in container.env:
        vf = var.valueFrom
        if vf.HasField("configMapKeyRef"):
            cms.add(vf.configMapKeyRef.localObjectReference.name)
        if vf.HasField("secretKeyRef"):
            secrets.add(vf.secretKeyRef.localObjectReference.name)
    return cms, secrets


def expand(text: str, mapping: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    if name in mapping:
                        out.append(mapping[name])
                    else:
                        out.append(text[i:end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def _service_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(services: list[core_pb2.Service], namespace: str,
                enable_service_links: bool) -> dict[str, str]:
    """The ``{SVC}_SERVICE_HOST``/``{SVC}_PORT...`` variables (docker-links style)."""
    env: dict[str, str] = {}
    chosen: dict[str, core_pb2.Service] = {}
    for svc in services:
        ip = svc.spec.clusterIP
        if not ip or ip == "None":
            continue
        if svc.metadata.namespace == "default" and svc.metadata.name == "kubernetes":
            chosen.setdefault("kubernetes", svc)  # the master service is always there
        elif enable_service_links and svc.metadata.namespace == namespace:
            chosen[svc.metadata.name] = svc
    for name in sorted(chosen):
        svc = chosen[name]
        prefix = _service_name(name)
        ip = svc.spec.clusterIP
        ports = list(svc.spec.ports)
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].port)
        for p in ports:
            if p.name:
                env[f"{prefix}_SERVICE_PORT_{_service_name(p.name)}"] = str(p.port)
        first = ports[0]
        proto = (first.protocol or "TCP").lower()
        env[f"{prefix}_PORT"] = f"{proto}://{ip}:{first.port}"
        for p in ports:
            proto_l = (p.protocol or "TCP").lower()
            stem = f"{prefix}_PORT_{p.port}_{(p.protocol or 'TCP').upper()}"
            env[stem] = f"{proto_l}://{ip}:{p.port}"
            env[f"{stem}_PROTO"] = proto_l
            env[f"{stem}_PORT"] = str(p.port)
            env[f"{stem}_ADDR"] = ip
    return env


def field_ref(pod: core_pb2.Pod, path: str, sources: EnvSources) -> str:
    meta = pod.metadata
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        values = meta.labels if m.group(1) == "labels" else meta.annotations
        return values.get(m.group(2), "")
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.nodeName,
        "spec.serviceAccountName": pod.spec.serviceAccountName,
        "status.hostIP": sources.host_ip,
        "status.hostIPs": sources.host_ip,
        "status.podIP": sources.pod_ips[0] if sources.pod_ips else "",
        "status.podIPs": ",".join(sources.pod_ips),
    }
    if path in simple:
        return simple[path]
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted(meta.labels.items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"' for k, v in sorted(meta.annotations.items()))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def resource_field_ref(pod: core_pb2.Pod, container: core_pb2.Container,
                       ref: core_pb2.ResourceFieldSelector, sources: EnvSources) -> str:
    target = container
    if ref.containerName:
        found = [c for c in list(pod.spec.containers) + list(pod.spec.initContainers)
                 if c.name == ref.containerName]
        if not found:
            raise ConfigError(f"resourceFieldRef: no container named {ref.containerName!r}")
        target = found[0]
    kind, _, resource = ref.resource.partition(".")
    if kind not in ("limits", "requests") or not resource:
        raise ConfigError(f"unsupported resourceFieldRef resource {ref.resource!r}")
    values = target.resources.limits if kind == "limits" else target.resources.requests
    if resource in values:
        amount = Quantity(values[resource].string)
    elif kind == "limits" or resource in sources.node_allocatable:
        # An unset limit is the node's allocatable, as Kubernetes reports it.
        amount = Quantity(sources.node_allocatable.get(resource, "0"))
    else:
        amount = Quantity(0)
    divisor = Quantity(ref.divisor.string) if ref.HasField("divisor") and ref.divisor.string \
        else Quantity(1)
    if divisor.is_zero():
        divisor = Quantity(1)
    value = Fraction(amount.nanos, divisor.nanos)
    return str(max(math.ceil(value), 0 if amount.is_zero() else 1)
               if resource == "cpu" else math.ceil(value))


def _data(obj: core_pb2.ConfigMap | core_pb2.Secret) -> dict[str, str]:
    if isinstance(obj, core_pb2.Secret):
        out = {k: v.decode(errors="replace") for k, v in obj.data.items()}
        out.update(obj.stringData)
        return out
    out = dict(obj.data)
    out.update({k: v.decode(errors="replace") for k, v in obj.binaryData.items()})
    return out


def build_env(pod: core_pb2.Pod, container: core_pb2.Container,
              sources: EnvSources) -> list[tuple[str, str]]:
    """The container's variables, in the order they were defined."""
    ns = pod.metadata.namespace
    enable_links = pod.spec.enableServiceLinks if pod.spec.HasField("enableServiceLinks") \
        else True
    env: dict[str, str] = {}
    for src in container.envFrom:
        if src.HasField("configMapRef"):
            name = src.configMapRef.localObjectReference.name
            obj: core_pb2.ConfigMap | core_pb2.Secret | None = sources.configmaps.get(name)
            if obj is None:
                if src.configMapRef.optional:
                    continue
                raise ConfigError(f'configmap "{name}" not found')
        elif src.HasField("secretRef"):
            name = src.secretRef.localObjectReference.name
            obj = sources.secrets.get(name)
            if obj is None:
                if src.secretRef.optional:
                    continue
                raise ConfigError(f'secret "{name}" not found')
        else:
            continue
        for key, value in sorted(_data(obj).items()):
            full = src.prefix + key
            if _ENV_NAME.match(full):
                env[full] = value
    services = service_env(sources.services, ns, enable_links)
    for var in container.env:
        if not var.HasField("valueFrom"):
            mapping = dict(services)
            mapping.update(env)
            env[var.name] = expand(var.value, mapping)
            continue
        vf = var.valueFrom
        if vf.HasField("fieldRef"):
            env[var.name] = field_ref(pod, vf.fieldRef.fieldPath, sources)
        elif vf.HasField("resourceFieldRef"):
            env[var.name] = resource_field_ref(pod, container, vf.resourceFieldRef, sources)
        elif vf.HasField("configMapKeyRef"):
            ref = vf.configMapKeyRef
            name = ref.localObjectReference.name
            cm = sources.configmaps.get(name)
            if cm is None:
                if ref.optional:
                    continue
                raise ConfigError(f'configmap "{name}" not found')
            data = _data(cm)
            if ref.key not in data:
                if ref.optional:
                    continue
                raise ConfigError(f"couldn't find key {ref.key} in ConfigMap {ns}/{name}")
            env[var.name] = data[ref.key]
        elif vf.HasField("secretKeyRef"):
            sref = vf.secretKeyRef
            name = sref.localObjectReference.name
            secret = sources.secrets.get(name)
            if secret is None:
                if sref.optional:
                    continue
                raise ConfigError(f'secret "{name}" not found')
            data = _data(secret)
            if sref.key not in data:
                if sref.optional:
                    continue
                raise ConfigError(f"couldn't find key {sref.key} in Secret {ns}/{name}")
            env[var.name] = data[sref.key]
    for k, v in services.items():
        env.setdefault(k, v)
    return list(env.items())
