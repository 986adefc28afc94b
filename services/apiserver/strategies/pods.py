"""Pods: defaulting, validation, the spec-update rule, binding, graceful delete.

The pod-spec parts (``default_pod_spec``, ``validate_pod_spec``) are shared with
every kind that embeds a pod template (Deployments, Jobs, ...). What Kubernetes
does only to Pods themselves -- requests from limits, ``enableServiceLinks``,
the service account, priority, the not-ready/unreachable tolerations of the
DefaultTolerationSeconds admission plugin, hostPorts under hostNetwork -- is in
``default_pod`` (every write) and ``admit_pod`` (create only, as admission does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from google.protobuf.message import Message

from pilothouse.api.quantity import Quantity
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.intstr.intstr_pb2 import IntOrString
from pilothouse.services.apiserver import errors
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import (
    KindStrategy,
    diff_paths,
    set_bool_str,
    set_default,
    to_time,
)
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    duplicate,
    each,
    forbidden,
    go_value,
    inclusive_range_error,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    is_valid_port_name,
    is_valid_port_num,
    not_found,
    not_supported,
    quantity_of,
    required,
    validate_dns1123_label,
    validate_labels,
    validate_nonnegative,
    validate_resource_requirements,
)

RESTART_POLICIES: Final = ("Always", "OnFailure", "Never")
DNS_POLICIES: Final = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")
PROTOCOLS: Final = ("SCTP", "TCP", "UDP")
TERMINATION_MESSAGE_POLICIES: Final = ("File", "FallbackToLogsOnError")
TAINT_EFFECTS: Final = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATION_OPERATORS: Final = ("Equal", "Exists")
HOST_PATH_TYPES: Final = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
                          "Socket", "CharDevice", "BlockDevice")

DEFAULT_TERMINATION_GRACE_PERIOD: Final = 30
DEFAULT_SCHEDULER: Final = "default-scheduler"
DEFAULT_FILE_MODE: Final = 0o644
DEFAULT_TOLERATION_SECONDS: Final = 300
TAINT_NOT_READY: Final = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE: Final = "node.kubernetes.io/unreachable"
# Priorities of the built-in classes (scheduling.k8s.io), known without a lookup.
SYSTEM_PRIORITIES: Final = {
    "system-node-critical": 2000001000,
    "system-cluster-critical": 2000000000,
}

UPDATABLE_POD_SPEC_FIELDS: Final = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
    "negative)",
)

_MAX_INT32: Final = 2**31 - 1


# -- defaulting ---------------------------------------------------------------------------------

def image_tag(image: str) -> str:
    """The tag of an image reference ("" with only a digest, "latest" with neither)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def default_pull_policy(image: str) -> str:
    return "Always" if image_tag(image) == "latest" else "IfNotPresent"


def _default_http_get(action: Any) -> None:
    set_default(action, "path", "/")
    set_default(action, "scheme", "HTTP")


def _default_probe(probe: Any) -> None:
    set_default(probe, "timeoutSeconds", 1)
    set_default(probe, "periodSeconds", 10)
    set_default(probe, "successThreshold", 1)
    set_default(probe, "failureThreshold", 3)
    if probe.handler.HasField("httpGet"):
        _default_http_get(probe.handler.httpGet)


def _default_container(c: Any) -> None:
    set_default(c, "terminationMessagePath", "/dev/termination-log")
    set_default(c, "terminationMessagePolicy", "File")
    if not c.imagePullPolicy:
        c.imagePullPolicy = default_pull_policy(c.image)
    for port in c.ports:
        set_default(port, "protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.HasField(probe_name):
            _default_probe(getattr(c, probe_name))
    if c.HasField("lifecycle"):
        for hook in ("postStart", "preStop"):
            handler = getattr(c.lifecycle, hook)
            if c.lifecycle.HasField(hook) and handler.HasField("httpGet"):
                _default_http_get(handler.httpGet)
    for env in c.env:
        if env.HasField("valueFrom") and env.valueFrom.HasField("fieldRef"):
            set_default(env.valueFrom.fieldRef, "apiVersion", "v1")


_VOLUME_SOURCES: Final = tuple(f.name for f in core_pb2.VolumeSource.DESCRIPTOR.fields)


def _default_volume(volume: Any) -> None:
    src = volume.volumeSource
    if not any(src.HasField(name) for name in _VOLUME_SOURCES):
        src.emptyDir.SetInParent()
    for name in ("configMap", "secret", "projected", "downwardAPI"):
        if src.HasField(name):
            set_default(getattr(src, name), "defaultMode", DEFAULT_FILE_MODE)
    if src.HasField("hostPath"):
        set_default(src.hostPath, "type", "")
    if src.HasField("downwardAPI"):
        for item in src.downwardAPI.items:
            if item.HasField("fieldRef"):
                set_default(item.fieldRef, "apiVersion", "v1")


def default_pod_spec(spec: Any) -> None:
    """Kubernetes' ``SetDefaults_PodSpec`` and what it recurses into (templates too)."""
    set_default(spec, "dnsPolicy", "ClusterFirst")
    set_default(spec, "restartPolicy", "Always")
    set_default(spec, "terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_PERIOD)
    set_default(spec, "schedulerName", DEFAULT_SCHEDULER)
    spec.securityContext.SetInParent()
    # The v1 conversion keeps the deprecated serviceAccount a mirror of the name.
    if not spec.serviceAccountName and spec.serviceAccount:
        spec.serviceAccountName = spec.serviceAccount
    if spec.serviceAccountName:
        spec.serviceAccount = spec.serviceAccountName
    for c in list(spec.initContainers) + list(spec.containers):
        _default_container(c)
    for volume in spec.volumes:
        _default_volume(volume)


def _tolerates(tolerations: Sequence[Any], key: str) -> bool:
    return any(
        (t.key == key or not t.key) and (t.effect == "NoExecute" or not t.effect)
        for t in tolerations
    )


def default_pod(pod: core_pb2.Pod) -> None:
    """``SetDefaults_Pod``: what a Pod gets on top of its spec's defaults."""
    spec = pod.spec
    default_pod_spec(spec)
    set_default(spec, "enableServiceLinks", True)
    for c in list(spec.initContainers) + list(spec.containers):
        for name, limit in c.resources.limits.items():
            if name not in c.resources.requests:
                c.resources.requests[name].CopyFrom(limit)
        if spec.hostNetwork:
            for port in c.ports:
                if not port.hostPort:
                    port.hostPort = port.containerPort


def admit_pod(pod: core_pb2.Pod) -> None:
    """What Kubernetes' admission plugins add to a Pod on create only: the
    ServiceAccount, Priority (for the built-in classes; other class names are
    resolved by the admission chain) and DefaultTolerationSeconds plugins."""
    spec = pod.spec
    if not spec.serviceAccountName:
        spec.serviceAccountName = spec.serviceAccount = "default"
    # Priority admission for the classes known without a lookup (others: admission).
    if not spec.HasField("priority"):
        if not spec.priorityClassName:
            spec.priority = 0
        elif spec.priorityClassName in SYSTEM_PRIORITIES:
            spec.priority = SYSTEM_PRIORITIES[spec.priorityClassName]
        if spec.HasField("priority"):
            set_default(spec, "preemptionPolicy", "PreemptLowerPriority")
    # DefaultTolerationSeconds admission.
    for key in (TAINT_NOT_READY, TAINT_UNREACHABLE):
        if not _tolerates(spec.tolerations, key):
            spec.tolerations.add(key=key, operator="Exists", effect="NoExecute",
                                 tolerationSeconds=DEFAULT_TOLERATION_SECONDS)


# -- QoS ------------------------------------------------------------------------------------------

_QOS_RESOURCES: Final = ("cpu", "memory")


def qos_class(pod: core_pb2.Pod) -> str:
    """Guaranteed, Burstable or BestEffort, as Kubernetes' ``GetPodQOS`` decides."""
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    guaranteed = True
    for c in list(pod.spec.initContainers) + list(pod.spec.containers):
        for name, value in c.resources.requests.items():
            q = quantity_of(value)
            if name in _QOS_RESOURCES and q is not None and q.sign() > 0:
                requests[name] = requests.get(name, Quantity(0)) + q
        found = set()
        for name, value in c.resources.limits.items():
            q = quantity_of(value)
            if name in _QOS_RESOURCES and q is not None and q.sign() > 0:
                found.add(name)
                limits[name] = limits.get(name, Quantity(0)) + q
        if not found.issuperset(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for name, req in requests.items():
            if limits.get(name) != req:
                guaranteed = False
                break
    if guaranteed and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


# -- validation -----------------------------------------------------------------------------------

def _validate_port_ref(port: IntOrString, path: str) -> list[Cause]:
    if port.type == 1:
        return each(path, port.strVal, is_valid_port_name(port.strVal))
    return each(path, port.intVal, is_valid_port_num(port.intVal))


def _validate_handler(handler: Any, path: str, kinds: Sequence[str]) -> list[Cause]:
    present = [k for k in kinds if handler.HasField(k)]
    if not present:
        return [required(path, "must specify a handler type")]
    causes = [forbidden(f"{path}.{k}", "may not specify more than 1 handler type")
              for k in present[1:]]
    if handler.HasField("httpGet"):
        get = handler.httpGet
        causes.extend(_validate_port_ref(get.port, f"{path}.httpGet.port"))
        if get.scheme not in ("HTTP", "HTTPS"):
            causes.append(not_supported(f"{path}.httpGet.scheme", get.scheme, ("HTTP", "HTTPS")))
    if handler.HasField("tcpSocket"):
        causes.extend(_validate_port_ref(handler.tcpSocket.port, f"{path}.tcpSocket.port"))
    if handler.HasField("exec") and not handler.exec.command:
        causes.append(required(f"{path}.exec.command"))
    if "grpc" in kinds and handler.HasField("grpc"):
        causes.extend(each(f"{path}.grpc.port", handler.grpc.port,
                           is_valid_port_num(handler.grpc.port)))
    return causes


def _validate_probe(probe: Any, path: str, *, success_must_be_one: bool) -> list[Cause]:
    causes = _validate_handler(probe.handler, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for name in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                 "failureThreshold"):
        causes.extend(validate_nonnegative(getattr(probe, name), f"{path}.{name}"))
    if success_must_be_one and probe.successThreshold != 1:
        causes.append(invalid(f"{path}.successThreshold", probe.successThreshold, "must be 1"))
    return causes


def _validate_env(env: Sequence[Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, var in enumerate(env):
        epath = f"{path}[{i}]"
        if not var.name:
            causes.append(required(f"{epath}.name"))
        else:
            causes.extend(each(f"{epath}.name", var.name, is_env_var_name(var.name)))
        if var.HasField("valueFrom"):
            src = var.valueFrom
            kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef",
                                 "secretKeyRef") if src.HasField(k)]
            if var.value:
                causes.append(invalid(f"{epath}.valueFrom", "",
                                      "may not be specified when `value` is not empty"))
            if not kinds:
                causes.append(invalid(f"{epath}.valueFrom", "",
                                      "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                      "`configMapKeyRef` or `secretKeyRef`"))
            elif len(kinds) > 1:
                causes.append(invalid(f"{epath}.valueFrom", "",
                                      "may not have more than one field specified at a time"))
            for ref in ("configMapKeyRef", "secretKeyRef"):
                if src.HasField(ref):
                    sel = getattr(src, ref)
                    if not sel.key:
                        causes.append(required(f"{epath}.valueFrom.{ref}.key"))
                    if not sel.localObjectReference.name:
                        causes.append(required(f"{epath}.valueFrom.{ref}.name"))
            if src.HasField("fieldRef") and not src.fieldRef.fieldPath:
                causes.append(required(f"{epath}.valueFrom.fieldRef.fieldPath"))
    return causes


def _validate_container(c: Any, path: str, volumes: set[str], *, init: bool) -> list[Cause]:
    causes: list[Cause] = []
    if not c.image:
        causes.append(required(f"{path}.image"))
    elif c.image != c.image.strip():
        causes.append(invalid(f"{path}.image", c.image,
                              "must not have leading or trailing whitespace"))
    port_names: set[str] = set()
    for j, port in enumerate(c.ports):
        ppath = f"{path}.ports[{j}]"
        if port.name:
            causes.extend(each(f"{ppath}.name", port.name, is_valid_port_name(port.name)))
            if port.name in port_names:
                causes.append(duplicate(f"{ppath}.name", port.name))
            port_names.add(port.name)
        if port.containerPort == 0:
            causes.append(required(f"{ppath}.containerPort"))
        else:
            causes.extend(each(f"{ppath}.containerPort", port.containerPort,
                               is_valid_port_num(port.containerPort)))
        if port.hostPort:
            causes.extend(each(f"{ppath}.hostPort", port.hostPort,
                               is_valid_port_num(port.hostPort)))
        if not port.protocol:
            causes.append(required(f"{ppath}.protocol"))
        elif port.protocol not in PROTOCOLS:
            causes.append(not_supported(f"{ppath}.protocol", port.protocol, PROTOCOLS))
    causes.extend(_validate_env(c.env, f"{path}.env"))
    mount_paths: set[str] = set()
    for j, mount in enumerate(c.volumeMounts):
        mpath = f"{path}.volumeMounts[{j}]"
        if not mount.name:
            causes.append(required(f"{mpath}.name"))
        elif mount.name not in volumes:
            causes.append(not_found(f"{mpath}.name", mount.name))
        if not mount.mountPath:
            causes.append(required(f"{mpath}.mountPath"))
        elif mount.mountPath in mount_paths:
            causes.append(invalid(f"{mpath}.mountPath", mount.mountPath, "must be unique"))
        mount_paths.add(mount.mountPath)
        if mount.subPath and (mount.subPath.startswith("/") or ".." in mount.subPath.split("/")):
            causes.append(invalid(f"{mpath}.subPath", mount.subPath,
                                  "must be a relative path without '..'"))
    causes.extend(validate_resource_requirements(c.resources, f"{path}.resources"))
    sidecar = init and c.restartPolicy == "Always"
    if c.HasField("restartPolicy") and (not init or c.restartPolicy != "Always"):
        if init:
            causes.append(not_supported(f"{path}.restartPolicy", c.restartPolicy, ("Always",)))
        else:
            causes.append(forbidden(f"{path}.restartPolicy",
                                    "may not be set for non-init containers"))
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if not c.HasField(probe_name):
            continue
        ppath = f"{path}.{probe_name}"
        if init and not sidecar:
            causes.append(forbidden(ppath, "may not be set for init containers without "
                                           "restartPolicy=Always"))
            continue
        causes.extend(_validate_probe(getattr(c, probe_name), ppath,
                                      success_must_be_one=probe_name != "readinessProbe"))
    if c.HasField("lifecycle"):
        for hook in ("postStart", "preStop"):
            if c.lifecycle.HasField(hook):
                causes.extend(_validate_handler(getattr(c.lifecycle, hook),
                                                f"{path}.lifecycle.{hook}",
                                                ("exec", "httpGet", "tcpSocket", "sleep")))
    if c.imagePullPolicy and c.imagePullPolicy not in PULL_POLICIES:
        causes.append(not_supported(f"{path}.imagePullPolicy", c.imagePullPolicy, PULL_POLICIES))
    elif not c.imagePullPolicy:
        causes.append(required(f"{path}.imagePullPolicy"))
    if c.terminationMessagePolicy not in TERMINATION_MESSAGE_POLICIES:
        if not c.terminationMessagePolicy:
            causes.append(required(f"{path}.terminationMessagePolicy"))
        else:
            causes.append(not_supported(f"{path}.terminationMessagePolicy",
                                        c.terminationMessagePolicy,
                                        TERMINATION_MESSAGE_POLICIES))
    return causes


def _validate_file_mode(mode: int, path: str) -> list[Cause]:
    if 0 <= mode <= 0o777:
        return []
    return [invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")]


def validate_volumes(volumes: Sequence[Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        vpath = f"{path}[{i}]"
        if not volume.name:
            causes.append(required(f"{vpath}.name"))
        else:
            causes.extend(validate_dns1123_label(volume.name, f"{vpath}.name"))
            if volume.name in seen:
                causes.append(duplicate(f"{vpath}.name", volume.name))
            seen.add(volume.name)
        src = volume.volumeSource
        kinds = [name for name in _VOLUME_SOURCES if src.HasField(name)]
        if not kinds:
            causes.append(required(vpath, "must specify a volume type"))
            continue
        for extra in kinds[1:]:
            causes.append(forbidden(f"{vpath}.{extra}",
                                    "may not specify more than 1 volume type"))
        if src.HasField("configMap"):
            if not src.configMap.localObjectReference.name:
                causes.append(required(f"{vpath}.configMap.name"))
            causes.extend(_validate_file_mode(src.configMap.defaultMode,
                                              f"{vpath}.configMap.defaultMode"))
        if src.HasField("secret"):
            if not src.secret.secretName:
                causes.append(required(f"{vpath}.secret.secretName"))
            causes.extend(_validate_file_mode(src.secret.defaultMode,
                                              f"{vpath}.secret.defaultMode"))
        if src.HasField("hostPath"):
            if not src.hostPath.path:
                causes.append(required(f"{vpath}.hostPath.path"))
            if src.hostPath.type not in HOST_PATH_TYPES:
                causes.append(not_supported(f"{vpath}.hostPath.type", src.hostPath.type,
                                            HOST_PATH_TYPES))
        if src.HasField("persistentVolumeClaim") and not src.persistentVolumeClaim.claimName:
            causes.append(required(f"{vpath}.persistentVolumeClaim.claimName"))
        if src.HasField("emptyDir") and src.emptyDir.medium not in ("", "Memory") \
                and not src.emptyDir.medium.startswith("HugePages"):
            causes.append(not_supported(f"{vpath}.emptyDir.medium", src.emptyDir.medium,
                                        ("", "Memory", "HugePages")))
    return causes


def validate_tolerations(tolerations: Sequence[Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, t in enumerate(tolerations):
        tpath = f"{path}[{i}]"
        if t.key:
            causes.extend(each(f"{tpath}.key", t.key, is_qualified_name(t.key)))
        elif t.operator != "Exists":
            causes.append(invalid(f"{tpath}.operator", t.operator,
                                  "operator must be Exists when `key` is empty, which means "
                                  "\"match all values and all keys\""))
        if t.operator == "Exists" and t.value:
            causes.append(invalid(f"{tpath}.operator", t.value,
                                  "value must be empty when `operator` is 'Exists'"))
        elif t.operator not in ("", *TOLERATION_OPERATORS):
            causes.append(not_supported(f"{tpath}.operator", t.operator, TOLERATION_OPERATORS))
        if t.HasField("tolerationSeconds") and t.effect != "NoExecute":
            causes.append(invalid(f"{tpath}.effect", t.effect,
                                  "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if t.effect and t.effect not in TAINT_EFFECTS:
            causes.append(not_supported(f"{tpath}.effect", t.effect, TAINT_EFFECTS))
    return causes


def validate_pod_spec(spec: Any, path: str = "spec") -> list[Cause]:
    """Kubernetes ``ValidatePodSpec`` (the parts real manifests exercise)."""
    causes: list[Cause] = []
    causes.extend(validate_volumes(spec.volumes, f"{path}.volumes"))
    volumes = {v.name for v in spec.volumes}
    if not spec.containers:
        causes.append(required(f"{path}.containers"))
    names: set[str] = set()
    for field_name, init in (("initContainers", True), ("containers", False)):
        for i, c in enumerate(getattr(spec, field_name)):
            cpath = f"{path}.{field_name}[{i}]"
            if not c.name:
                causes.append(required(f"{cpath}.name"))
            else:
                causes.extend(validate_dns1123_label(c.name, f"{cpath}.name"))
                if c.name in names:
                    causes.append(duplicate(f"{cpath}.name", c.name))
                names.add(c.name)
            causes.extend(_validate_container(c, cpath, volumes, init=init))
    if not spec.restartPolicy:
        causes.append(required(f"{path}.restartPolicy"))
    elif spec.restartPolicy not in RESTART_POLICIES:
        causes.append(not_supported(f"{path}.restartPolicy", spec.restartPolicy,
                                    RESTART_POLICIES))
    if not spec.dnsPolicy:
        causes.append(required(f"{path}.dnsPolicy"))
    elif spec.dnsPolicy not in DNS_POLICIES:
        causes.append(not_supported(f"{path}.dnsPolicy", spec.dnsPolicy, DNS_POLICIES))
    elif spec.dnsPolicy == "None" and not spec.HasField("dnsConfig"):
        causes.append(required(f"{path}.dnsConfig",
                               "must provide `dnsConfig` when `dnsPolicy` is None"))
    if spec.HasField("activeDeadlineSeconds") and not 1 <= spec.activeDeadlineSeconds <= _MAX_INT32:
        causes.append(invalid(f"{path}.activeDeadlineSeconds", spec.activeDeadlineSeconds,
                              inclusive_range_error(1, _MAX_INT32)))
    if spec.HasField("terminationGracePeriodSeconds"):
        causes.extend(validate_nonnegative(spec.terminationGracePeriodSeconds,
                                           f"{path}.terminationGracePeriodSeconds"))
    causes.extend(validate_labels(dict(spec.nodeSelector), f"{path}.nodeSelector"))
    if spec.serviceAccountName:
        causes.extend(each(f"{path}.serviceAccountName", spec.serviceAccountName,
                           is_dns1123_subdomain(spec.serviceAccountName)))
    if spec.nodeName:
        causes.extend(each(f"{path}.nodeName", spec.nodeName,
                           is_dns1123_subdomain(spec.nodeName)))
    for name in ("hostname", "subdomain"):
        value = getattr(spec, name)
        if value:
            causes.extend(each(f"{path}.{name}", value, is_dns1123_label(value)))
    if spec.priorityClassName:
        causes.extend(each(f"{path}.priorityClassName", spec.priorityClassName,
                           is_dns1123_subdomain(spec.priorityClassName)))
    causes.extend(validate_tolerations(spec.tolerations, f"{path}.tolerations"))
    if spec.hostNetwork:
        for field_name in ("initContainers", "containers"):
            for i, c in enumerate(getattr(spec, field_name)):
                for j, port in enumerate(c.ports):
                    if port.hostPort and port.hostPort != port.containerPort:
                        causes.append(invalid(
                            f"{path}.{field_name}[{i}].ports[{j}].containerPort",
                            port.containerPort,
                            "must match `hostPort` when `hostNetwork` is true"))
    return causes


def _validate_tolerations_update(new: Sequence[Any], old: Sequence[Any],
                                 path: str) -> list[Cause]:
    def key(t: Any) -> tuple[str, str, str, str]:
        return (t.key, t.operator or "Equal", t.value, t.effect)

    remaining = [key(t) for t in new]
    for t in old:
        k = key(t)
        if k in remaining:
            remaining.remove(k)
        else:
            return [forbidden(path, "existing toleration can not be modified except its "
                                    "tolerationSeconds")]
    return []


def validate_pod_spec_update(new: Any, old: Any, path: str = "spec") -> list[Cause]:
    """Kubernetes' rule: a pod's spec only changes in a few places."""
    causes: list[Cause] = []
    if new.HasField("activeDeadlineSeconds"):
        value = new.activeDeadlineSeconds
        if old.HasField("activeDeadlineSeconds") and old.activeDeadlineSeconds < value:
            causes.append(invalid(f"{path}.activeDeadlineSeconds", value,
                                  "must be less than or equal to previous value"))
    elif old.HasField("activeDeadlineSeconds"):
        causes.append(invalid(f"{path}.activeDeadlineSeconds", None,
                              "must not update from a positive integer to nil value"))
    causes.extend(_validate_tolerations_update(new.tolerations, old.tolerations,
                                               f"{path}.tolerations"))
    munged = type(new)()
    munged.CopyFrom(new)
    for field_name in ("containers", "initContainers"):
        for c, o in zip(getattr(munged, field_name), getattr(old, field_name), strict=False):
            c.image = o.image
    if old.HasField("activeDeadlineSeconds"):
        munged.activeDeadlineSeconds = old.activeDeadlineSeconds
    else:
        munged.ClearField("activeDeadlineSeconds")
    del munged.tolerations[:]
    munged.tolerations.extend(old.tolerations)
    if old.terminationGracePeriodSeconds < 0 and new.terminationGracePeriodSeconds == 1:
        munged.terminationGracePeriodSeconds = old.terminationGracePeriodSeconds
    # Scheduling gates may only be removed (checked with the rest of the spec otherwise).
    if set(g.name for g in new.schedulingGates) <= set(g.name for g in old.schedulingGates):
        del munged.schedulingGates[:]
        munged.schedulingGates.extend(old.schedulingGates)
    if munged != old:
        diff = "\n".join(diff_paths(munged, old, path))
        causes.append(forbidden(
            path, "pod updates may not change fields other than "
            + ",".join(UPDATABLE_POD_SPEC_FIELDS) + ("\n" + diff if diff else "")))
    return causes


# -- binding --------------------------------------------------------------------------------------

def bind(pod: core_pb2.Pod, node_name: str, ctx: StrategyContext, *,
         target_kind: str = "Node") -> None:
    """The binding subresource: set ``spec.nodeName`` once and mark the pod scheduled.

    Raises StatusError: Invalid for a bad target, Conflict when the pod is already
    bound or is being deleted (as Kubernetes' BindingREST does).
    """
    name = pod.metadata.name
    causes = []
    if target_kind not in ("", "Node"):
        causes.append(not_supported("target.kind", target_kind, ("Node", "")))
    if not node_name:
        causes.append(required("target.name"))
    else:
        causes.extend(each("target.name", node_name, is_dns1123_subdomain(node_name)))
    if causes:
        raise errors.invalid("Binding", name, causes)
    if pod.metadata.HasField("deletionTimestamp"):
        raise errors.conflict("pods/binding", name,
                              f"pod {name} is being deleted, cannot be assigned to a host")
    if pod.spec.nodeName:
        raise errors.conflict("pods/binding", name,
                              f"pod {name} is already assigned to node "
                              f"{go_value(pod.spec.nodeName)}")
    pod.spec.nodeName = node_name
    now = to_time(ctx.now())
    for cond in pod.status.conditions:
        if cond.type == "PodScheduled":
            if cond.status != "True":
                cond.lastTransitionTime.CopyFrom(now)
            cond.status = "True"
            cond.ClearField("reason")
            cond.ClearField("message")
            break
    else:
        pod.status.conditions.add(type="PodScheduled", status="True", lastTransitionTime=now)


# -- the strategy ---------------------------------------------------------------------------------

@register_strategy("", "pods")
class PodStrategy(KindStrategy):
    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Pod)
        default_pod(obj)

    def prepare_for_create(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, core_pb2.Pod)
        super().prepare_for_create(obj, ctx)
        admit_pod(obj)
        obj.ClearField("status")
        obj.status.phase = "Pending"
        obj.status.qosClass = qos_class(obj)
        if obj.spec.HasField("terminationGracePeriodSeconds") \
                and obj.spec.terminationGracePeriodSeconds < 0:
            obj.spec.terminationGracePeriodSeconds = 1
        if obj.spec.schedulingGates:
            obj.status.conditions.add(
                type="PodScheduled", status="False", reason="SchedulingGated",
                message="Scheduling is blocked due to non-empty scheduling gates")

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, core_pb2.Pod)
        return validate_pod_spec(obj.spec, "spec")

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, core_pb2.Pod) and isinstance(old, core_pb2.Pod)
        causes = validate_pod_spec(new.spec, "spec")
        causes.extend(validate_pod_spec_update(new.spec, old.spec, "spec"))
        return causes

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, core_pb2.Pod)
        spec, status = obj.spec, obj.status
        pod_ip = status.podIPs[0].ip if status.podIPs else status.podIP
        return {
            "metadata.name": obj.metadata.name,
            "metadata.namespace": obj.metadata.namespace,
            "spec.nodeName": spec.nodeName,
            "spec.restartPolicy": spec.restartPolicy,
            "spec.schedulerName": spec.schedulerName,
            "spec.serviceAccountName": spec.serviceAccountName,
            "spec.hostNetwork": set_bool_str(spec.hostNetwork),
            "status.phase": status.phase,
            "status.podIP": pod_ip,
            "status.podIPs": pod_ip,
            "status.nominatedNodeName": status.nominatedNodeName,
        }

    def graceful_delete_seconds(self, obj: Message, requested: int | None) -> int:
        assert isinstance(obj, core_pb2.Pod)
        period = requested
        if period is None:
            period = obj.spec.terminationGracePeriodSeconds \
                if obj.spec.HasField("terminationGracePeriodSeconds") \
                else DEFAULT_TERMINATION_GRACE_PERIOD
        if not obj.spec.nodeName or obj.status.phase in ("Succeeded", "Failed"):
            return 0
        return 1 if period < 0 else period
