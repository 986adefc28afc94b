"""Server-side Table output (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``).

``kubectl get`` asks the server for a ``meta.k8s.io/v1`` Table and prints its
columns as they come, so what ``kubectl get pods -o wide`` shows is decided
here. The columns and cell rules are Kubernetes' own (its printers in
pkg/printers/internalversion): the pod STATUS reason logic (``Init:0/1``,
``CrashLoopBackOff``, ``Completed``, ``Terminating``...), READY ``1/1``,
RESTARTS ``3 (5m ago)``, ages in Kubernetes' human duration form.

Everything here is pure: objects arrive as Kubernetes JSON dicts, the clock is
the ``now`` argument. Like the apiserver, rows always carry every column
(``wide=True``); kubectl hides priority-1 columns unless ``-o wide``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pilothouse.api.codec import parse_time
from pilothouse.api.kinds import Kind

Obj = Mapping[str, Any]
Cell = Any
INCLUDE_OBJECT = ("None", "Metadata", "Object")


class TableError(ValueError):
    """A Table request that cannot be answered (bad includeObject, bad column path)."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


# ---------------------------------------------------------------------------
# Small helpers shared by the printers


def _get(obj: Any, *path: str | int, default: Any = None) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or not -len(obj) <= step < len(obj):
                return default
            obj = obj[step]
        else:
            if not isinstance(obj, Mapping):
                return default
            obj = obj.get(step)
        if obj is None:
            return default
    return obj


def _list(obj: Any, *path: str) -> list[Any]:
    value = _get(obj, *path, default=[])
    return value if isinstance(value, list) else []


def _str(obj: Any, *path: str) -> str:
    value = _get(obj, *path, default="")
    return value if isinstance(value, str) else str(value)


def _int(obj: Any, *path: str) -> int:
    value = _get(obj, *path, default=0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _trunc(value: int, unit: int) -> int:
    """Go's integer division (toward zero)."""
    quotient = abs(value) // unit
    return quotient if value >= 0 else -quotient


def human_duration(nanos: int) -> str:
    """Kubernetes' ``duration.HumanDuration``: about two significant figures."""
    second, minute, hour = 10**9, 60 * 10**9, 3600 * 10**9
    seconds = _trunc(nanos, second)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = nanos // minute
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = nanos // hour
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _time_ns(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        seconds, nanos = parse_time(text)
    except ValueError:
        return None
    return seconds * 10**9 + nanos


def _now_ns(now: datetime) -> int:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    whole = int(now.timestamp())
    return whole * 10**9 + now.microsecond * 1000


def since(timestamp: Any, now: datetime) -> str:
    """``translateTimestampSince``: ``<unknown>`` for a missing time, else its age."""
    at = _time_ns(timestamp)
    if at is None:
        return "<unknown>"
    return human_duration(_now_ns(now) - at)


def _age(obj: Obj, now: datetime) -> str:
    return since(_get(obj, "metadata", "creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return _str(obj, "metadata", "name")


def format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: ``a=b,c=d`` sorted by key, ``<none>`` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def selector_string(selector: Any) -> str:
    """A LabelSelector as Kubernetes writes it (``app=web,tier in (a,b),!gone``)."""
    if not isinstance(selector, Mapping):
        return ""
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator", "")
        values = ",".join(sorted(expr.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                "Exists": key, "DoesNotExist": f"!{key}"}.get(op)
        if text is None:
            return "<error>"
        parts.append((key, text))
    parts.sort(key=lambda p: p[0])
    return ",".join(text for _, text in parts)


def format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` for an empty or missing selector."""
    return selector_string(selector) or "<none>"


def _containers_cells(containers: list[Any]) -> tuple[str, str]:
    names = ",".join(_str(c, "name") for c in containers)
    images = ",".join(_str(c, "image") for c in containers)
    return names, images


def _template_containers(obj: Obj, *path: str) -> tuple[str, str]:
    return _containers_cells(_list(obj, *path, "template", "spec", "containers"))


def _bool_ptr(value: Any) -> str:
    if value is None:
        return "<unset>"
    return "True" if value else "False"


def _quantity(value: Any) -> str:
    if value is None or value == "":
        return "0"
    return str(value)


def _int_or_string(value: Any) -> str:
    return str(value)


def _more(items: list[str], count: int, limit: int, *, empty: str) -> str:
    text = ",".join(items)
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


# ---------------------------------------------------------------------------
# Printers: (columns, row function). A row function returns the cells and the
# row's conditions (Kubernetes marks finished pods with a Completed condition).

Row = tuple[list[Cell], list[dict[str, str]] | None]
RowFn = Callable[[Obj, datetime], Row]

NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column("Age", description="The time since the object was created.")
CONTAINERS = Column("Containers", priority=1, description="Names of each container in the "
                    "template.")
IMAGES = Column("Images", priority=1, description="Images referenced by each container in the "
                "template.")
SELECTOR = Column("Selector", priority=1, description="The label selector of the pods.")


# -- pods ---------------------------------------------------------------------

POD_COLUMNS = (
    NAME,
    Column("Ready", description="The aggregate readiness state of this pod for accepting "
           "traffic."),
    Column("Status", description="The aggregate status of the containers in this pod."),
    Column("Restarts", description="The number of times the containers in this pod have been "
           "restarted and when the last container in this pod has restarted."),
    AGE,
    Column("IP", priority=1, description="The pod's IP address."),
    Column("Node", priority=1, description="The node the pod is bound to."),
    Column("Nominated Node", priority=1, description="The node the scheduler nominated for "
           "this pod after preempting others."),
    Column("Readiness Gates", priority=1, description="How many of the pod's readiness gates "
           "are true."),
)
_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "PodCompleted",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "PodFailed",
                "message": "The pod failed."}]


def _condition_true(conditions: list[Any], type_: str) -> bool:
    return any(_str(c, "type") == type_ and _str(c, "status") == "True" for c in conditions)


def pod_status_reason(pod: Obj) -> tuple[str, int, int, int, int | None]:
    """(STATUS, ready containers, total containers, restarts, last restart time ns)
    computed as kubectl shows them."""
    spec = _get(pod, "spec", default={})
    status = _get(pod, "status", default={})
    conditions = _list(status, "conditions")
    init_specs = {_str(c, "name"): c for c in _list(spec, "initContainers")}

    def restartable(name: str) -> bool:
        return _str(init_specs.get(name), "restartPolicy") == "Always"

    total = len(_list(spec, "containers")) + sum(1 for n in init_specs if restartable(n))
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: int | None = None
    last_sidecar_restart: int | None = None
    phase = _str(status, "phase")
    reason = _str(status, "reason") or phase
    for cond in conditions:
        if _str(cond, "type") == "PodScheduled" and _str(cond, "reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def later(current: int | None, candidate: Any) -> int | None:
        at = _time_ns(candidate)
        if at is None:
            return current
        return at if current is None or at > current else current

    initializing = False
    init_statuses = _list(status, "initContainerStatuses")
    for i, container in enumerate(init_statuses):
        name = _str(container, "name")
        restarts += _int(container, "restartCount")
        finished = _get(container, "lastState", "terminated", "finishedAt")
        last_restart = later(last_restart, finished)
        if restartable(name):
            sidecar_restarts += _int(container, "restartCount")
            last_sidecar_restart = later(last_sidecar_restart, finished)
        terminated = _get(container, "state", "terminated")
        waiting = _get(container, "state", "waiting")
        if terminated is not None and _int(terminated, "exitCode") == 0:
            continue
        if restartable(name) and _get(container, "started") is True:
            if _get(container, "ready") is True:
                ready += 1
            continue
        if terminated is not None:
            if _str(terminated, "reason"):
                reason = "Init:" + _str(terminated, "reason")
            elif _int(terminated, "signal"):
                reason = f"Init:Signal:{_int(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{_int(terminated, 'exitCode')}"
        elif waiting is not None and _str(waiting, "reason") and \
                _str(waiting, "reason") != "PodInitializing":
            reason = "Init:" + _str(waiting, "reason")
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        for container in reversed(_list(status, "containerStatuses")):
            restarts += _int(container, "restartCount")
            last_restart = later(last_restart,
                                 _get(container, "lastState", "terminated", "finishedAt"))
            waiting = _get(container, "state", "waiting")
            terminated = _get(container, "state", "terminated")
            if waiting is not None and _str(waiting, "reason"):
                reason = _str(waiting, "reason")
            elif terminated is not None and _str(terminated, "reason"):
                reason = _str(terminated, "reason")
            elif terminated is not None:
                if _int(terminated, "signal"):
                    reason = f"Signal:{_int(terminated, 'signal')}"
                else:
                    reason = f"ExitCode:{_int(terminated, 'exitCode')}"
            elif _get(container, "ready") is True and \
                    _get(container, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    deleting = _get(pod, "metadata", "deletionTimestamp") is not None
    if deleting and _str(status, "reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_row(pod: Obj, now: datetime) -> Row:
    reason, ready, total, restarts, last_restart = pod_status_reason(pod)
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(_now_ns(now) - last_restart)} ago)"
    status = _get(pod, "status", default={})
    ips = _list(status, "podIPs")
    ip = _str(ips[0], "ip") if ips else ""
    gates = _list(pod, "spec", "readinessGates")
    gates_text = "<none>"
    if gates:
        conditions = _list(status, "conditions")
        true_gates = 0
        for gate in gates:
            for cond in conditions:
                if _str(cond, "type") == _str(gate, "conditionType"):
                    true_gates += _str(cond, "status") == "True"
                    break
        gates_text = f"{true_gates}/{len(gates)}"
    cells = [_name(pod), f"{ready}/{total}", reason, restarts_text, _age(pod, now),
             ip or "<none>", _str(pod, "spec", "nodeName") or "<none>",
             _str(status, "nominatedNodeName") or "<none>", gates_text]
    phase = _str(status, "phase")
    row_conditions = _POD_SUCCEEDED if phase == "Succeeded" else \
        _POD_FAILED if phase == "Failed" else None
    return cells, row_conditions


# -- workloads ---------------------------------------------------------------------

DEPLOYMENT_COLUMNS = (
    NAME,
    Column("Ready", description="Number of the pod with ready state"),
    Column("Up-to-date", description="Total number of pods updated to the latest template."),
    Column("Available", description="Total number of available pods."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _deployment_row(obj: Obj, now: datetime) -> Row:
    names, images = _template_containers(obj, "spec")
    return [_name(obj), f"{_int(obj, 'status', 'readyReplicas')}/{_int(obj, 'spec', 'replicas')}",
            _int(obj, "status", "updatedReplicas"), _int(obj, "status", "availableReplicas"),
            _age(obj, now), names, images, selector_string(_get(obj, "spec", "selector"))], None


REPLICA_SET_COLUMNS = (
    NAME,
    Column("Desired", "integer", "Number of desired pods."),
    Column("Current", "integer", "Number of actually running pods."),
    Column("Ready", "integer", "Number of pods ready."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _replica_set_row(obj: Obj, now: datetime) -> Row:
    return _replicas_row(obj, now, format_label_selector(_get(obj, "spec", "selector")))


def _replication_controller_row(obj: Obj, now: datetime) -> Row:
    # A ReplicationController's selector is a plain label map.
    return _replicas_row(obj, now, format_labels(_get(obj, "spec", "selector")))


def _replicas_row(obj: Obj, now: datetime, selector_text: str) -> Row:
    names, images = _template_containers(obj, "spec")
    return [_name(obj), _int(obj, "spec", "replicas"), _int(obj, "status", "replicas"),
            _int(obj, "status", "readyReplicas"), _age(obj, now), names, images,
            selector_text], None


STATEFUL_SET_COLUMNS = (NAME, Column("Ready", description="Number of the pod with ready state"),
                        AGE, CONTAINERS, IMAGES)


def _stateful_set_row(obj: Obj, now: datetime) -> Row:
    names, images = _template_containers(obj, "spec")
    return [_name(obj), f"{_int(obj, 'status', 'readyReplicas')}/{_int(obj, 'spec', 'replicas')}",
            _age(obj, now), names, images], None


DAEMON_SET_COLUMNS = (
    NAME,
    Column("Desired", "integer", "The number of nodes that should be running the daemon pod."),
    Column("Current", "integer", "The number of nodes running at least one daemon pod."),
    Column("Ready", "integer", "The number of nodes with a ready daemon pod."),
    Column("Up-to-date", "integer", "The number of nodes running the updated daemon pod."),
    Column("Available", "integer", "The number of nodes with an available daemon pod."),
    Column("Node Selector", description="The node selector of the daemon pods."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _daemon_set_row(obj: Obj, now: datetime) -> Row:
    names, images = _template_containers(obj, "spec")
    status = _get(obj, "status", default={})
    return [_name(obj), _int(status, "desiredNumberScheduled"),
            _int(status, "currentNumberScheduled"), _int(status, "numberReady"),
            _int(status, "updatedNumberScheduled"), _int(status, "numberAvailable"),
            format_labels(_get(obj, "spec", "template", "spec", "nodeSelector")),
            _age(obj, now), names, images,
            format_label_selector(_get(obj, "spec", "selector"))], None


JOB_COLUMNS = (
    NAME,
    Column("Status", description="Status of the job."),
    Column("Completions", description="The number of pods which reached phase Succeeded, out "
           "of the desired completions."),
    Column("Duration", description="Time required to complete the job."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _job_row(obj: Obj, now: datetime) -> Row:
    spec = _get(obj, "spec", default={})
    status = _get(obj, "status", default={})
    succeeded = _int(status, "succeeded")
    if _get(spec, "completions") is not None:
        completions = f"{succeeded}/{_int(spec, 'completions')}"
    elif _int(spec, "parallelism") > 1:
        completions = f"{succeeded}/1 of {_int(spec, 'parallelism')}"
    else:
        completions = f"{succeeded}/1"
    start = _time_ns(_get(status, "startTime"))
    end = _time_ns(_get(status, "completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration((end if end is not None else _now_ns(now)) - start)
    conditions = _list(status, "conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _get(obj, "metadata", "deletionTimestamp") is not None:
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _template_containers(obj, "spec")
    return [_name(obj), state, completions, duration, _age(obj, now), names, images,
            format_label_selector(_get(spec, "selector"))], None


CRON_JOB_COLUMNS = (
    NAME,
    Column("Schedule", description="The schedule in Cron format."),
    Column("Timezone", description="The time zone of the schedule."),
    Column("Suspend", "boolean", "Whether later executions are suspended."),
    Column("Active", "integer", "The number of running jobs."),
    Column("Last Schedule", description="When the job was last scheduled."),
    AGE, CONTAINERS, IMAGES, SELECTOR,
)


def _cron_job_row(obj: Obj, now: datetime) -> Row:
    spec = _get(obj, "spec", default={})
    last = _get(obj, "status", "lastScheduleTime")
    names, images = _template_containers(obj, "spec", "jobTemplate", "spec")
    return [_name(obj), _str(spec, "schedule"), _get(spec, "timeZone") or "<none>",
            _bool_ptr(_get(spec, "suspend")), len(_list(obj, "status", "active")),
            since(last, now) if last is not None else "<none>", _age(obj, now), names, images,
            format_label_selector(_get(spec, "jobTemplate", "spec", "selector"))], None


POD_TEMPLATE_COLUMNS = (NAME, Column("Containers", description="Names of each container."),
                        Column("Images", description="Images of each container."),
                        Column("Pod Labels", description="The labels of the pods."))


def _pod_template_row(obj: Obj, now: datetime) -> Row:
    names, images = _containers_cells(_list(obj, "template", "spec", "containers"))
    return [_name(obj), names, images,
            format_labels(_get(obj, "template", "metadata", "labels"))], None


CONTROLLER_REVISION_COLUMNS = (
    NAME, Column("Controller", description="The controller owning this revision."),
    Column("Revision", "integer", "The revision number."), AGE)


def _controller_revision_row(obj: Obj, now: datetime) -> Row:
    controller = "<none>"
    for ref in _list(obj, "metadata", "ownerReferences"):
        if _get(ref, "controller") is True:
            group = _str(ref, "apiVersion").rpartition("/")[0]
            kind = _str(ref, "kind") + (f".{group}" if group else "")
            controller = f"{kind.lower()}/{_str(ref, 'name')}"
            break
    return [_name(obj), controller, _int(obj, "revision"), _age(obj, now)], None


# -- services and networking ----------------------------------------------------------

SERVICE_COLUMNS = (
    NAME,
    Column("Type", description="The type of the service."),
    Column("Cluster-IP", description="The IP address of the service inside the cluster."),
    Column("External-IP", description="The addresses the service is reachable at from "
           "outside the cluster."),
    Column("Port(s)", description="The ports the service exposes."),
    AGE,
    Column("Selector", priority=1, description="The labels of the pods the service routes "
           "to."),
)


def _load_balancer_addresses(status: Any) -> str:
    return ",".join(_str(i, "ip") or _str(i, "hostname") for i in _list(status, "ingress")
                    if _str(i, "ip") or _str(i, "hostname"))


def _service_external_ip(svc: Obj) -> str:
    spec = _get(svc, "spec", default={})
    external = [str(ip) for ip in _list(spec, "externalIPs")]
    svc_type = _str(spec, "type")
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if svc_type == "LoadBalancer":
        lb = _load_balancer_addresses(_get(svc, "status", "loadBalancer"))
        addresses = ([*lb.split(",")] if lb else []) + external
        return ",".join(addresses) or "<pending>"
    if svc_type == "ExternalName":
        return _str(spec, "externalName")
    return "<unknown>"


def _service_ports(ports: list[Any]) -> str:
    pieces = []
    for port in ports:
        protocol = _str(port, "protocol")
        if _int(port, "nodePort") > 0:
            pieces.append(f"{_int(port, 'port')}:{_int(port, 'nodePort')}/{protocol}")
        else:
            pieces.append(f"{_int(port, 'port')}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_row(obj: Obj, now: datetime) -> Row:
    spec = _get(obj, "spec", default={})
    cluster_ips = _list(spec, "clusterIPs")
    cluster_ip = str(cluster_ips[0]) if cluster_ips else (_str(spec, "clusterIP") or "<none>")
    return [_name(obj), _str(spec, "type"), cluster_ip, _service_external_ip(obj),
            _service_ports(_list(spec, "ports")), _age(obj, now),
            format_labels(_get(spec, "selector"))], None


ENDPOINTS_COLUMNS = (NAME, Column("Endpoints", description="The endpoint addresses."), AGE)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _endpoints_row(obj: Obj, now: datetime) -> Row:
    subsets = _list(obj, "subsets")
    if not subsets:
        return [_name(obj), "<none>", _age(obj, now)], None
    items: list[str] = []
    count = 0
    limit = 3
    for subset in subsets:
        addresses = _list(subset, "addresses")
        ports = _list(subset, "ports")
        if not ports:
            count += len(addresses)
            for address in addresses:
                if len(items) == limit:
                    break
                items.append(_str(address, "ip"))
            continue
        for port in ports:
            count += len(addresses)
            for address in addresses:
                if len(items) == limit:
                    break
                items.append(_join_host_port(_str(address, "ip"), _int(port, "port")))
    text = ",".join(items)
    if count > limit:
        text = f"{text} + {count - limit} more..."
    return [_name(obj), text, _age(obj, now)], None


ENDPOINT_SLICE_COLUMNS = (
    NAME, Column("AddressType", description="The type of the addresses."),
    Column("Ports", description="The ports of the endpoints."),
    Column("Endpoints", description="The endpoint addresses."), AGE)


def _endpoint_slice_row(obj: Obj, now: datetime) -> Row:
    ports: list[str] = []
    for port in _list(obj, "ports"):
        if len(ports) < 3:
            number = _get(port, "port")
            ports.append(str(number) if number is not None else _str(port, "name") or "*")
    addresses: list[str] = []
    count = 0
    for endpoint in _list(obj, "endpoints"):
        for address in _list(endpoint, "addresses"):
            if len(addresses) < 3:
                addresses.append(str(address))
            count += 1
    return [_name(obj), _str(obj, "addressType"),
            _more(ports, len(_list(obj, "ports")), 3, empty="<unset>"),
            _more(addresses, count, 3, empty="<unset>"), _age(obj, now)], None


INGRESS_COLUMNS = (
    NAME, Column("Class", description="The ingress class."),
    Column("Hosts", description="The hosts of the rules."),
    Column("Address", description="The addresses of the load balancer."),
    Column("Ports", description="The ports served."), AGE)


def _ingress_row(obj: Obj, now: datetime) -> Row:
    rules = _list(obj, "spec", "rules")
    hosts = [_str(r, "host") for r in rules if _str(r, "host")][:3]
    hosts_text = ",".join(hosts) or "*"
    if len(rules) > 3 and hosts:
        hosts_text = f"{hosts_text} + {len(rules) - 3} more..."
    ports = "80, 443" if _list(obj, "spec", "tls") else "80"
    return [_name(obj), _get(obj, "spec", "ingressClassName") or "<none>", hosts_text,
            _load_balancer_addresses(_get(obj, "status", "loadBalancer")), ports,
            _age(obj, now)], None


INGRESS_CLASS_COLUMNS = (
    NAME, Column("Controller", description="The controller implementing the class."),
    Column("Parameters", description="The parameters object."), AGE)


def _ingress_class_row(obj: Obj, now: datetime) -> Row:
    params = _get(obj, "spec", "parameters")
    text = "<none>"
    if isinstance(params, Mapping):
        group = _str(params, "apiGroup")
        kind = _str(params, "kind") + (f".{group}" if group else "")
        text = f"{kind}/{_str(params, 'name')}"
    return [_name(obj), _str(obj, "spec", "controller"), text, _age(obj, now)], None


NETWORK_POLICY_COLUMNS = (NAME, Column("Pod-Selector", description="The pods the policy "
                                       "applies to."), AGE)


def _network_policy_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), format_label_selector(_get(obj, "spec", "podSelector", default={})),
            _age(obj, now)], None


# -- cluster objects ---------------------------------------------------------------------

NODE_COLUMNS = (
    NAME, Column("Status", description="The status of the node."),
    Column("Roles", description="The roles of the node."), AGE,
    Column("Version", description="Kubelet Version reported by the node."),
    Column("Internal-IP", priority=1, description="The node's internal IP address."),
    Column("External-IP", priority=1, description="The node's external IP address."),
    Column("OS-Image", priority=1, description="OS image reported by the node."),
    Column("Kernel-Version", priority=1, description="Kernel version reported by the node."),
    Column("Container-Runtime", priority=1, description="Container runtime version reported "
           "by the node."),
)
NODE_ROLE_PREFIX = "node-role.kubernetes.io/"


def node_roles(labels: Any) -> list[str]:
    roles: set[str] = set()
    for key, value in (labels or {}).items():
        if key.startswith(NODE_ROLE_PREFIX) and key[len(NODE_ROLE_PREFIX):]:
            roles.add(key[len(NODE_ROLE_PREFIX):])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return sorted(roles)


def _node_address(node: Obj, type_: str) -> str:
    for address in _list(node, "status", "addresses"):
        if _str(address, "type") == type_:
            return _str(address, "address")
    return "<none>"


def _node_row(obj: Obj, now: datetime) -> Row:
    status: list[str] = []
    for cond in _list(obj, "status", "conditions"):
        if _str(cond, "type") == "Ready":
            status = ["Ready" if _str(cond, "status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if _get(obj, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    info = _get(obj, "status", "nodeInfo", default={})
    return [_name(obj), ",".join(status),
            ",".join(node_roles(_get(obj, "metadata", "labels"))) or "<none>", _age(obj, now),
            _str(info, "kubeletVersion"), _node_address(obj, "InternalIP"),
            _node_address(obj, "ExternalIP"), _str(info, "osImage") or "<unknown>",
            _str(info, "kernelVersion") or "<unknown>",
            _str(info, "containerRuntimeVersion") or "<unknown>"], None


NAMESPACE_COLUMNS = (NAME, Column("Status", description="The status of the namespace."), AGE)


def _namespace_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), _str(obj, "status", "phase"), _age(obj, now)], None


CONFIG_MAP_COLUMNS = (NAME, Column("Data", description="The number of keys."), AGE)


def _config_map_row(obj: Obj, now: datetime) -> Row:
    keys = len(_get(obj, "data", default={})) + len(_get(obj, "binaryData", default={}))
    return [_name(obj), keys, _age(obj, now)], None


SECRET_COLUMNS = (NAME, Column("Type", description="The type of the secret."),
                  Column("Data", description="The number of keys."), AGE)


def _secret_row(obj: Obj, now: datetime) -> Row:
    keys = len(_get(obj, "data", default={}))
    return [_name(obj), _str(obj, "type"), keys, _age(obj, now)], None


SERVICE_ACCOUNT_COLUMNS = (NAME, Column("Secrets", description="The number of secrets."), AGE)


def _service_account_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), len(_list(obj, "secrets")), _age(obj, now)], None


EVENT_COLUMNS = (
    Column("Last Seen", description="The time since the event was last seen."),
    Column("Type", description="The type of the event."),
    Column("Reason", description="The reason of the event."),
    Column("Object", description="The object the event is about."),
    Column("Subobject", priority=1, description="The part of the object the event is about."),
    Column("Source", priority=1, description="The component reporting the event."),
    Column("Message", description="A human-readable description of the event."),
    Column("First Seen", priority=1, description="The time since the event was first seen."),
    Column("Count", priority=1, description="The number of times the event occurred."),
    Column("Name", priority=1, format="name", description="The name of the event object."),
)


def _event_row(obj: Obj, now: datetime) -> Row:
    if _get(obj, "apiVersion") == "events.k8s.io/v1" or "regarding" in obj or "note" in obj:
        obj = _core_event(obj)
    first = _get(obj, "firstTimestamp")
    first_seen = since(first, now) if first else since(_get(obj, "eventTime"), now)
    last = _get(obj, "lastTimestamp")
    last_seen = since(last, now) if last else first_seen
    count = _int(obj, "count")
    series = _get(obj, "series")
    if isinstance(series, Mapping):
        last_seen = since(_get(series, "lastObservedTime"), now)
        count = _int(series, "count")
    elif count == 0:
        count = 1
    involved = _get(obj, "involvedObject", default={})
    kind = _str(involved, "kind").lower()
    target = f"{kind}/{_str(involved, 'name')}" if _str(involved, "name") else kind
    component = _str(obj, "source", "component") or _str(obj, "reportingComponent")
    instance = _str(obj, "source", "host") or _str(obj, "reportingInstance")
    source = f"{component}, {instance}" if instance else component
    return [last_seen, _str(obj, "type"), _str(obj, "reason"), target,
            _str(involved, "fieldPath"), source, _str(obj, "message").strip(), first_seen, count,
            _name(obj)], None


def _core_event(obj: Obj) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in the core Event's field names, as Kubernetes
    converts it before printing."""
    out: dict[str, Any] = {
        "metadata": obj.get("metadata", {}),
        "involvedObject": obj.get("regarding", {}),
        "reason": obj.get("reason", ""),
        "message": obj.get("note", ""),
        "type": obj.get("type", ""),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount", 0),
        "source": obj.get("deprecatedSource", {}),
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
        "eventTime": obj.get("eventTime"),
    }
    if obj.get("series"):
        out["series"] = obj["series"]
    return out


LEASE_COLUMNS = (NAME, Column("Holder", description="The holder of the lease."), AGE)


def _lease_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), _str(obj, "spec", "holderIdentity"), _age(obj, now)], None


PRIORITY_CLASS_COLUMNS = (
    NAME, Column("Value", "integer", "The priority of the pods of this class."),
    Column("Global-Default", "boolean", "Whether this is the default priority class."), AGE,
    Column("PreemptionPolicy", description="Whether pods of this class preempt others."))


def _priority_class_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), _int(obj, "value"), _get(obj, "globalDefault") is True, _age(obj, now),
            _str(obj, "preemptionPolicy") or "PreemptLowerPriority"], None


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def access_modes(modes: Any) -> str:
    present = set(modes or [])
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


def _storage_class_of(obj: Obj) -> str:
    annotation = _get(obj, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class")
    if annotation is not None:
        return str(annotation)
    return _str(obj, "spec", "storageClassName")


PV_COLUMNS = (
    NAME, Column("Capacity", description="The capacity of the volume."),
    Column("Access Modes", description="How the volume can be mounted."),
    Column("Reclaim Policy", description="What happens to the volume when released."),
    Column("Status", description="The phase of the volume."),
    Column("Claim", description="The claim bound to the volume."),
    Column("StorageClass", description="The storage class of the volume."),
    Column("VolumeAttributesClass", description="The volume attributes class."),
    Column("Reason", description="Why the volume is in its phase."), AGE,
    Column("VolumeMode", priority=1, description="Filesystem or Block."),
)


def _pv_row(obj: Obj, now: datetime) -> Row:
    spec = _get(obj, "spec", default={})
    claim = ""
    if isinstance(_get(spec, "claimRef"), Mapping):
        claim = f"{_str(spec, 'claimRef', 'namespace')}/{_str(spec, 'claimRef', 'name')}"
    phase = _str(obj, "status", "phase")
    if _get(obj, "metadata", "deletionTimestamp") is not None:
        phase = "Terminating"
    return [_name(obj), _quantity(_get(spec, "capacity", "storage")),
            access_modes(_get(spec, "accessModes")),
            _str(spec, "persistentVolumeReclaimPolicy"), phase, claim, _storage_class_of(obj),
            _get(spec, "volumeAttributesClassName") or "<unset>",
            _str(obj, "status", "reason"), _age(obj, now),
            _get(spec, "volumeMode") or "<unset>"], None


PVC_COLUMNS = (
    NAME, Column("Status", description="The phase of the claim."),
    Column("Volume", description="The volume bound to the claim."),
    Column("Capacity", description="The capacity of the bound volume."),
    Column("Access Modes", description="How the volume can be mounted."),
    Column("StorageClass", description="The storage class of the claim."),
    Column("VolumeAttributesClass", description="The volume attributes class."), AGE,
    Column("VolumeMode", priority=1, description="Filesystem or Block."),
)


def _pvc_row(obj: Obj, now: datetime) -> Row:
    spec = _get(obj, "spec", default={})
    phase = _str(obj, "status", "phase")
    if _get(obj, "metadata", "deletionTimestamp") is not None:
        phase = "Terminating"
    capacity = modes = ""
    if _str(spec, "volumeName"):
        modes = access_modes(_get(obj, "status", "accessModes"))
        capacity = _quantity(_get(obj, "status", "capacity", "storage"))
    return [_name(obj), phase, _str(spec, "volumeName"), capacity, modes,
            _storage_class_of(obj), _get(spec, "volumeAttributesClassName") or "<unset>",
            _age(obj, now), _get(spec, "volumeMode") or "<unset>"], None


STORAGE_CLASS_COLUMNS = (
    NAME, Column("Provisioner", description="The volume plugin provisioning volumes."),
    Column("ReclaimPolicy", description="What happens to released volumes."),
    Column("VolumeBindingMode", description="When volumes are bound."),
    Column("AllowVolumeExpansion", description="Whether volumes can grow."), AGE)


def _storage_class_row(obj: Obj, now: datetime) -> Row:
    name = _name(obj)
    annotations = _get(obj, "metadata", "annotations", default={})
    if "true" in (annotations.get("storageclass.kubernetes.io/is-default-class"),
                  annotations.get("storageclass.beta.kubernetes.io/is-default-class")):
        name += " (default)"
    return [name, _str(obj, "provisioner"), _str(obj, "reclaimPolicy") or "Delete",
            _str(obj, "volumeBindingMode") or "Immediate",
            _get(obj, "allowVolumeExpansion") is True, _age(obj, now)], None


# -- autoscaling, policy, rbac, extensions ---------------------------------------------------

HPA_COLUMNS = (
    NAME, Column("Reference", description="The scaled object."),
    Column("Targets", description="Current and target metric values."),
    Column("MinPods", description="The lower replica limit."),
    Column("MaxPods", description="The upper replica limit."),
    Column("Replicas", description="The current number of replicas."), AGE)


def _metric_value(target: Any, field: str) -> str:
    value = _get(target, field)
    return str(value) if value is not None else "<unknown>"


def format_hpa_metrics(specs: list[Any], statuses: list[Any]) -> str:
    if not specs:
        return "<none>"
    items: list[str] = []
    for i, spec in enumerate(specs):
        status = statuses[i] if i < len(statuses) else {}
        kind = _str(spec, "type")
        if kind in ("Resource", "ContainerResource"):
            key = "resource" if kind == "Resource" else "containerResource"
            source = _get(spec, key, default={})
            current_source = _get(status, key, "current", default={})
            name = _str(source, "name")
            if _get(source, "target", "averageValue") is not None:
                current = _metric_value(current_source, "averageValue")
                items.append(f"{name}: {current}/{_get(source, 'target', 'averageValue')}")
            else:
                utilization = _get(current_source, "averageUtilization")
                current = f"{utilization}%" if utilization is not None else "<unknown>"
                target = _get(source, "target", "averageUtilization")
                target_text = f"{target}%" if target is not None else "<auto>"
                items.append(f"{name}: {current}/{target_text}")
        elif kind == "Pods":
            current = _metric_value(_get(status, "pods", "current"), "averageValue")
            items.append(f"{current}/{_get(spec, 'pods', 'target', 'averageValue')}")
        elif kind in ("Object", "External"):
            key = kind.lower()
            target = _get(spec, key, "target", default={})
            current_source = _get(status, key, "current")
            if _get(target, "averageValue") is not None:
                current = _metric_value(current_source, "averageValue")
                items.append(f"{current}/{_get(target, 'averageValue')} (avg)")
            else:
                current = _metric_value(current_source, "value")
                items.append(f"{current}/{_get(target, 'value')}")
        else:
            items.append("<unknown type>")
    text = ", ".join(items[:2])
    if len(items) > 2:
        text = f"{text} + {len(items) - 2} more..."
    return text


def _hpa_row(obj: Obj, now: datetime) -> Row:
    spec = _get(obj, "spec", default={})
    ref = f"{_str(spec, 'scaleTargetRef', 'kind')}/{_str(spec, 'scaleTargetRef', 'name')}"
    min_pods = _get(spec, "minReplicas")
    return [_name(obj), ref, format_hpa_metrics(_list(spec, "metrics"),
                                                _list(obj, "status", "currentMetrics")),
            str(min_pods) if min_pods is not None else "<unset>", _int(spec, "maxReplicas"),
            _int(obj, "status", "currentReplicas"), _age(obj, now)], None


PDB_COLUMNS = (
    NAME, Column("Min Available", description="The minimum number of available pods."),
    Column("Max Unavailable", description="The maximum number of unavailable pods."),
    Column("Allowed Disruptions", "integer", "How many pods may be disrupted now."), AGE)


def _pdb_row(obj: Obj, now: datetime) -> Row:
    spec = _get(obj, "spec", default={})
    min_available = _get(spec, "minAvailable")
    max_unavailable = _get(spec, "maxUnavailable")
    return [_name(obj),
            _int_or_string(min_available) if min_available is not None else "N/A",
            _int_or_string(max_unavailable) if max_unavailable is not None else "N/A",
            _int(obj, "status", "disruptionsAllowed"), _age(obj, now)], None


CREATED_AT_STRING = Column("Created At", description="When the object was created.")
ROLE_COLUMNS = (NAME, CREATED_AT_STRING)


def _created_at(obj: Obj) -> str:
    at = _time_ns(_get(obj, "metadata", "creationTimestamp"))
    if at is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(at // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _role_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), _created_at(obj)], None


ROLE_BINDING_COLUMNS = (
    NAME, Column("Role", description="The role bound."), AGE,
    Column("Users", priority=1, description="The users bound."),
    Column("Groups", priority=1, description="The groups bound."),
    Column("ServiceAccounts", priority=1, description="The service accounts bound."))


def _role_binding_row(obj: Obj, now: datetime) -> Row:
    users: list[str] = []
    groups: list[str] = []
    accounts: list[str] = []
    for subject in _list(obj, "subjects"):
        kind = _str(subject, "kind")
        if kind == "User":
            users.append(_str(subject, "name"))
        elif kind == "Group":
            groups.append(_str(subject, "name"))
        elif kind == "ServiceAccount":
            accounts.append(f"{_str(subject, 'namespace')}/{_str(subject, 'name')}")
    role = f"{_str(obj, 'roleRef', 'kind')}/{_str(obj, 'roleRef', 'name')}"
    return [_name(obj), role, _age(obj, now), ", ".join(users), ", ".join(groups),
            ", ".join(accounts)], None


CREATED_AT_DATE = Column("Created At", "date", "When the object was created.")
CRD_COLUMNS = (NAME, CREATED_AT_DATE)


def _crd_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), _created_at(obj)], None


RESOURCE_QUOTA_COLUMNS = (NAME, AGE, Column("Request", description="Used and hard requests."),
                          Column("Limit", description="Used and hard limits."))


def _resource_quota_row(obj: Obj, now: datetime) -> Row:
    hard = _get(obj, "spec", "hard", default={})
    used = _get(obj, "status", "used", default={})
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        pieces = resource.split(".")
        target = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        target.append(f"{resource}: {_quantity(used.get(resource))}/{_quantity(hard[resource])}")
    return [_name(obj), _age(obj, now), ", ".join(requests), ", ".join(limits)], None


RUNTIME_CLASS_COLUMNS = (NAME, Column("Handler", description="The CRI handler."), AGE)


def _runtime_class_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), _str(obj, "handler"), _age(obj, now)], None


WEBHOOK_COLUMNS = (NAME, Column("Webhooks", "integer", "The number of webhooks."), AGE)


def _webhook_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), len(_list(obj, "webhooks")), _age(obj, now)], None


CSR_COLUMNS = (
    NAME, AGE, Column("SignerName", description="The signer asked to sign."),
    Column("Requestor", description="Who asked."),
    Column("RequestedDuration", description="The validity asked for."),
    Column("Condition", description="Approved, Denied, Issued, Failed or Pending."))


def _csr_row(obj: Obj, now: datetime) -> Row:
    conditions = [_str(c, "type") for c in _list(obj, "status", "conditions")
                  if _str(c, "status") in ("True", "")]
    if _get(obj, "status", "certificate"):
        conditions.append("Issued")
    seconds = _get(obj, "spec", "expirationSeconds")
    duration = human_duration(int(seconds) * 10**9) if isinstance(seconds, int) else "<none>"
    return [_name(obj), _age(obj, now), _str(obj, "spec", "signerName"),
            _str(obj, "spec", "username"), duration, ",".join(conditions) or "Pending"], None


DEFAULT_COLUMNS = (NAME, AGE)


def _default_row(obj: Obj, now: datetime) -> Row:
    return [_name(obj), _age(obj, now)], None


# (group, kind) -> (columns, row function); the version does not matter.
PRINTERS: dict[tuple[str, str], tuple[tuple[Column, ...], RowFn]] = {
    ("", "Pod"): (POD_COLUMNS, _pod_row),
    ("", "PodTemplate"): (POD_TEMPLATE_COLUMNS, _pod_template_row),
    ("", "ReplicationController"): (REPLICA_SET_COLUMNS, _replication_controller_row),
    ("", "Service"): (SERVICE_COLUMNS, _service_row),
    ("", "Endpoints"): (ENDPOINTS_COLUMNS, _endpoints_row),
    ("", "Node"): (NODE_COLUMNS, _node_row),
    ("", "Namespace"): (NAMESPACE_COLUMNS, _namespace_row),
    ("", "ConfigMap"): (CONFIG_MAP_COLUMNS, _config_map_row),
    ("", "Secret"): (SECRET_COLUMNS, _secret_row),
    ("", "ServiceAccount"): (SERVICE_ACCOUNT_COLUMNS, _service_account_row),
    ("", "Event"): (EVENT_COLUMNS, _event_row),
    ("", "PersistentVolume"): (PV_COLUMNS, _pv_row),
    ("", "PersistentVolumeClaim"): (PVC_COLUMNS, _pvc_row),
    ("", "ResourceQuota"): (RESOURCE_QUOTA_COLUMNS, _resource_quota_row),
    ("", "LimitRange"): (ROLE_COLUMNS, _role_row),
    ("apps", "Deployment"): (DEPLOYMENT_COLUMNS, _deployment_row),
    ("apps", "ReplicaSet"): (REPLICA_SET_COLUMNS, _replica_set_row),
    ("apps", "StatefulSet"): (STATEFUL_SET_COLUMNS, _stateful_set_row),
    ("apps", "DaemonSet"): (DAEMON_SET_COLUMNS, _daemon_set_row),
    ("apps", "ControllerRevision"): (CONTROLLER_REVISION_COLUMNS, _controller_revision_row),
    ("batch", "Job"): (JOB_COLUMNS, _job_row),
    ("batch", "CronJob"): (CRON_JOB_COLUMNS, _cron_job_row),
    ("events.k8s.io", "Event"): (EVENT_COLUMNS, _event_row),
    ("discovery.k8s.io", "EndpointSlice"): (ENDPOINT_SLICE_COLUMNS, _endpoint_slice_row),
    ("coordination.k8s.io", "Lease"): (LEASE_COLUMNS, _lease_row),
    ("scheduling.k8s.io", "PriorityClass"): (PRIORITY_CLASS_COLUMNS, _priority_class_row),
    ("networking.k8s.io", "Ingress"): (INGRESS_COLUMNS, _ingress_row),
    ("networking.k8s.io", "IngressClass"): (INGRESS_CLASS_COLUMNS, _ingress_class_row),
    ("networking.k8s.io", "NetworkPolicy"): (NETWORK_POLICY_COLUMNS, _network_policy_row),
    ("storage.k8s.io", "StorageClass"): (STORAGE_CLASS_COLUMNS, _storage_class_row),
    ("autoscaling", "HorizontalPodAutoscaler"): (HPA_COLUMNS, _hpa_row),
    ("policy", "PodDisruptionBudget"): (PDB_COLUMNS, _pdb_row),
    ("rbac.authorization.k8s.io", "Role"): (ROLE_COLUMNS, _role_row),
    ("rbac.authorization.k8s.io", "ClusterRole"): (ROLE_COLUMNS, _role_row),
    ("rbac.authorization.k8s.io", "RoleBinding"): (ROLE_BINDING_COLUMNS, _role_binding_row),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (ROLE_BINDING_COLUMNS,
                                                          _role_binding_row),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): (CRD_COLUMNS, _crd_row),
    ("node.k8s.io", "RuntimeClass"): (RUNTIME_CLASS_COLUMNS, _runtime_class_row),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): (WEBHOOK_COLUMNS,
                                                                       _webhook_row),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (WEBHOOK_COLUMNS,
                                                                         _webhook_row),
    ("certificates.k8s.io", "CertificateSigningRequest"): (CSR_COLUMNS, _csr_row),
}


# ---------------------------------------------------------------------------
# The Table


def _row_object(obj: Obj, include_object: str) -> Any:
    if include_object == "Object":
        return obj
    if include_object == "Metadata":
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {})}
    return None


def _check_include(include_object: str) -> None:
    if include_object not in INCLUDE_OBJECT:
        raise TableError(f'includeObject must be one of None, Metadata, Object, '
                         f'not "{include_object}"')


def _table(columns: Sequence[Column], rows: Iterable[tuple[Obj, Row]], *, include_object: str,
           wide: bool, list_meta: Mapping[str, Any] | None) -> dict[str, Any]:
    keep = [i for i, c in enumerate(columns) if wide or c.priority == 0]
    out_rows: list[dict[str, Any]] = []
    for obj, (cells, conditions) in rows:
        row: dict[str, Any] = {"cells": [cells[i] for i in keep]}
        if conditions:
            row["conditions"] = conditions
        if include_object != "None":
            row["object"] = _row_object(obj, include_object)
        out_rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_meta or {}),
        "columnDefinitions": [columns[i].definition() for i in keep],
        "rows": out_rows,
    }


def columns_for(kind: Kind) -> tuple[Column, ...]:
    return PRINTERS.get((kind.group, kind.kind), (DEFAULT_COLUMNS, _default_row))[0]


def table_for(kind: Kind, objects: Iterable[Obj], *, include_object: str = "Metadata",
              wide: bool = True, now: datetime,
              list_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``meta.k8s.io/v1`` Table of ``objects`` (Kubernetes JSON dicts of ``kind``).

    ``include_object`` is the request's includeObject (None, Metadata, Object);
    ``wide=False`` drops the priority-1 columns (the apiserver sends them all);
    ``list_meta`` becomes the Table's metadata (resourceVersion, continue).
    Raises TableError for a bad includeObject.
    """
    _check_include(include_object)
    columns, row_fn = PRINTERS.get((kind.group, kind.kind), (DEFAULT_COLUMNS, _default_row))
    rows = ((obj, row_fn(obj, now)) for obj in objects)
    return _table(columns, rows, include_object=include_object, wide=wide, list_meta=list_meta)


# ---------------------------------------------------------------------------
# Custom resources: additionalPrinterColumns


_PATH_TOKEN = re.compile(
    r"""\.((?:\\.|[^.\[\\])+)"""  # .name, with \. escapes
    r"""|\[(-?\d+)\]"""  # [0]
    r"""|\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]"""  # ['key'] ["key"]
)


def parse_json_path(path: str) -> list[str | int]:
    """The simple JSONPath of a printer column (``.spec.replicas``,
    ``.status.conditions[0].type``, ``.metadata.labels['app.kubernetes.io/name']``,
    ``.metadata.labels.app\\.kubernetes\\.io/name``) -> steps. Raises TableError."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None:
            raise TableError(f"unsupported JSONPath {path!r} at {text[pos:]!r}")
        name, index, single, double = m.groups()
        if name is not None:
            steps.append(re.sub(r"\\(.)", r"\1", name))
        elif index is not None:
            steps.append(int(index))
        else:
            steps.append(single if single is not None else double)
        pos = m.end()
    if not steps:
        raise TableError(f"empty JSONPath {path!r}")
    return steps


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _custom_cell(type_: str, value: Any, now: datetime) -> Cell:
    if value is None:
        return None
    if type_ == "string":
        return _text(value)
    if type_ == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if type_ == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if type_ == "date" and isinstance(value, str):
        if _time_ns(value) is None:
            return "<invalid>"
        return since(value, now)
    return None


DEFAULT_CUSTOM_COLUMNS = ({"name": "Age", "type": "date",
                           "jsonPath": ".metadata.creationTimestamp",
                           "description": AGE.description},)


def table_for_custom(columns: Sequence[Mapping[str, Any]], objects: Iterable[Obj], *,
                     include_object: str = "Metadata", wide: bool = True, now: datetime,
                     list_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Table of custom resources from their CRD version's
    ``additionalPrinterColumns`` (name, type, format, description, priority,
    jsonPath); no columns means the default Age column, as Kubernetes does.
    A path that finds nothing gives a null cell. Raises TableError for a
    column path outside the supported subset or a bad includeObject."""
    _check_include(include_object)
    specs = list(columns) or list(DEFAULT_CUSTOM_COLUMNS)
    parsed = []
    defs = [NAME]
    for spec in specs:
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise TableError("printer column without a name")
        type_ = str(spec.get("type", "string"))
        defs.append(Column(name, type_, str(spec.get("description", "")),
                           int(spec.get("priority", 0) or 0), str(spec.get("format", ""))))
        parsed.append((type_, parse_json_path(str(spec.get("jsonPath", "")))))

    def row(obj: Obj) -> Row:
        cells: list[Cell] = [_name(obj)]
        for type_, steps in parsed:
            cells.append(_custom_cell(type_, _get(obj, *steps), now))
        return cells, None

    return _table(defs, ((obj, row(obj)) for obj in objects), include_object=include_object,
                  wide=wide, list_meta=list_meta)
