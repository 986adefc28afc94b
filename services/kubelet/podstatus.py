"""What the runtime says about a pod, and the PodStatus the kubelet writes from it (pure).

``RuntimePod`` is one pod's sandboxes and containers as the CRI lists them
(newest first), found by the ``io.kubernetes.pod.uid`` label. ``generate``
turns it, plus what the pod worker knows (why a container is waiting, probe
results), into a ``PodStatus`` the way Kubernetes' kubelet does: phase,
conditions, init and regular container statuses with state/lastState,
restartCount, ready, started, imageID, containerID, pod IPs, host IP,
startTime and QoS class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pilothouse.api.quantity import Quantity
from pilothouse.api.timeutil import time_to_proto
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.services.kubelet import runtime as rt

RUNNING = cri.CONTAINER_RUNNING
EXITED = cri.CONTAINER_EXITED
CREATED = cri.CONTAINER_CREATED

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


@dataclass
class ContainerRecord:
    """One runtime container of a pod."""

    id: str
    name: str
    state: int
    created_at: int = 0  # ns since the epoch
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_ref: str = ""
    hash: str = ""
    restart_count: int = 0
    log_path: str = ""
    termination_message_path: str = ""

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def exited(self) -> bool:
        return self.state == EXITED

    @classmethod
    def from_status(cls, status: cri.ContainerStatus) -> ContainerRecord:
        ann = status.annotations
        try:
            restarts = int(ann.get(rt.RESTART_COUNT_ANNOTATION, "0"))
        except ValueError:
            restarts = 0
        return cls(id=status.id, name=status.labels.get(rt.CONTAINER_NAME_LABEL,
                                                         status.metadata.name),
                   state=status.state, created_at=status.created_at,
                   started_at=status.started_at, finished_at=status.finished_at,
                   exit_code=status.exit_code, reason=status.reason, message=status.message,
                   image=status.image.image, image_ref=status.image_ref,
                   hash=ann.get(rt.CONTAINER_HASH_ANNOTATION, ""), restart_count=restarts,
                   log_path=status.log_path,
                   termination_message_path=ann.get(rt.TERMINATION_MESSAGE_PATH_ANNOTATION,
                                                    ""))


@dataclass
class SandboxRecord:
    id: str
    ready: bool
    created_at: int
    attempt: int = 0
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)


@dataclass
class RuntimePod:
    uid: str
    sandboxes: list[SandboxRecord] = field(default_factory=list)  # newest first
    containers: list[ContainerRecord] = field(default_factory=list)  # newest first

    def sandbox(self) -> SandboxRecord | None:
        """The newest sandbox (ready or not)."""
        return self.sandboxes[0] if self.sandboxes else None

    def ready_sandbox(self) -> SandboxRecord | None:
        sb = self.sandbox()
        return sb if sb is not None and sb.ready else None

    def all(self, name: str) -> list[ContainerRecord]:
        return [c for c in self.containers if c.name == name]

    def latest(self, name: str) -> ContainerRecord | None:
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def previous(self, name: str) -> ContainerRecord | None:
        found = self.all(name)
        return found[1] if len(found) > 1 else None

    def running(self) -> list[ContainerRecord]:
        return [c for c in self.containers if c.running]


# -- what the pod worker adds ----------------------------------------------------------


@dataclass
class WorkerView:
    """The pod worker's knowledge that the runtime does not hold."""

    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> reason, msg
    ready: dict[str, bool] = field(default_factory=dict)  # container id -> readiness
    started: dict[str, bool] = field(default_factory=dict)  # container id -> startup passed
    termination_messages: dict[str, str] = field(default_factory=dict)  # container id -> msg
    failed_init: bool = False  # an init container failed under restartPolicy Never
    terminal_reason: str = ""
    # Set when the kubelet itself ends the pod (eviction): phase, status.message, and the
    # DisruptionTarget condition's reason ("" for none).
    terminal_phase: str = ""
    terminal_message: str = ""
    disruption_reason: str = ""


# -- pure helpers --------------------------------------------------------------------------


def is_sidecar(container: core_pb2.Container) -> bool:
    return container.restartPolicy == "Always"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def qos_class(pod: core_pb2.Pod) -> str:
    """Guaranteed, Burstable or BestEffort, by Kubernetes' rules (cpu and memory only)."""
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    guaranteed = True
    containers = list(pod.spec.initContainers) + list(pod.spec.containers)
    any_set = False
    for c in containers:
        req = {k: Quantity(v.string) for k, v in c.resources.requests.items()
               if k in ("cpu", "memory") and Quantity(v.string)}
        lim = {k: Quantity(v.string) for k, v in c.resources.limits.items()
               if k in ("cpu", "memory") and Quantity(v.string)}
        if req or lim:
            any_set = True
        for k, v in req.items():
            requests[k] = requests.get(k, Quantity(0)) + v
        for k, v in lim.items():
            limits[k] = limits.get(k, Quantity(0)) + v
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
        for k, v in req.items():
            if k not in lim or lim[k] != v:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    if guaranteed:
        return "Guaranteed"
    return "Burstable"


def _time(ns: int) -> meta_pb2.Time:
    return meta_pb2.Time(seconds=ns // 1_000_000_000)


def _terminated(c: ContainerRecord, runtime_name: str, message: str = ""
                ) -> core_pb2.ContainerStateTerminated:
    t = core_pb2.ContainerStateTerminated(exitCode=c.exit_code,
                                          reason=c.reason or ("Completed" if c.exit_code == 0
                                                              else "Error"),
                                          containerID=f"{runtime_name}://{c.id}")
    if message or c.message:
        t.message = message or c.message
    if c.started_at:
        t.startedAt.CopyFrom(_time(c.started_at))
    if c.finished_at:
        t.finishedAt.CopyFrom(_time(c.finished_at))
    return t


def container_status(spec: core_pb2.Container, rp: RuntimePod, view: WorkerView,
                     runtime_name: str, *, default_waiting: str) -> core_pb2.ContainerStatus:
    status = core_pb2.ContainerStatus(name=spec.name, image=spec.image, ready=False,
                                      restartCount=0)
    latest = rp.latest(spec.name)
    waiting = view.waiting.get(spec.name)
    if latest is None:
        reason, message = waiting or (default_waiting, "")
        status.state.waiting.reason = reason
        if message:
            status.state.waiting.message = message
        status.started = False
        return status
    status.restartCount = latest.restart_count
    status.imageID = latest.image_ref
    status.containerID = f"{runtime_name}://{latest.id}"
    previous = rp.previous(spec.name)
    if latest.running:
        status.state.running.startedAt.CopyFrom(_time(latest.started_at))
        status.started = view.started.get(latest.id, True)
        status.ready = bool(status.started and view.ready.get(latest.id, True))
        if previous is not None and previous.exited:
            status.lastState.terminated.CopyFrom(
                _terminated(previous, runtime_name, view.termination_messages.get(previous.id,
                                                                                  "")))
    elif latest.exited:
        term = _terminated(latest, runtime_name, view.termination_messages.get(latest.id, ""))
        status.started = False
        if waiting is not None:  # going to restart (back-off, pulling, creating)
            status.state.waiting.reason = waiting[0]
            if waiting[1]:
                status.state.waiting.message = waiting[1]
            status.lastState.terminated.CopyFrom(term)
        else:
            status.state.terminated.CopyFrom(term)
            if previous is not None and previous.exited:
                status.lastState.terminated.CopyFrom(
                    _terminated(previous, runtime_name,
                                view.termination_messages.get(previous.id, "")))
    else:  # created, not started
        reason, message = waiting or ("ContainerCreating", "")
        status.state.waiting.reason = reason
        if message:
            status.state.waiting.message = message
        status.started = False
    return status


def _init_done(spec: core_pb2.Container, st: core_pb2.ContainerStatus) -> bool:
    if is_sidecar(spec):
        return st.started
    return st.state.HasField("terminated") and st.state.terminated.exitCode == 0


def pod_phase(pod: core_pb2.Pod, init: list[core_pb2.ContainerStatus],
              regular: list[core_pb2.ContainerStatus], view: WorkerView) -> str:
    """Kubernetes' getPhase."""
    policy = pod.spec.restartPolicy or "Always"
    specs = list(pod.spec.initContainers)
    pending_init = 0
    failed_init = view.failed_init
    for spec, st in zip(specs, init, strict=True):
        if _init_done(spec, st):
            continue
        if is_sidecar(spec):
            pending_init += 1
            continue
        last = st.state.terminated if st.state.HasField("terminated") else (
            st.lastState.terminated if st.lastState.HasField("terminated") else None)
        if last is not None and last.exitCode != 0:
            failed_init = True
        pending_init += 1
    if failed_init and policy == "Never":
        return "Failed"
    running = waiting = stopped = succeeded = unknown = 0
    for st in regular:
        if st.state.HasField("running"):
            running += 1
        elif st.state.HasField("terminated"):
            stopped += 1
            if st.state.terminated.exitCode == 0:
                succeeded += 1
        elif st.state.HasField("waiting"):
            if st.lastState.HasField("terminated"):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if pending_init and not running and not stopped:
        return "Pending"
    if waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(type_: str, ok: bool, reason: str = "", message: str = ""
               ) -> core_pb2.PodCondition:
    cond = core_pb2.PodCondition(type=type_, status="True" if ok else "False")
    if not ok and reason:
        cond.reason = reason
    if not ok and message:
        cond.message = message
    return cond


def generate(pod: core_pb2.Pod, rp: RuntimePod, view: WorkerView, *, runtime_name: str,
             host_ip: str, now: datetime,
             written: core_pb2.PodStatus | None = None) -> core_pb2.PodStatus:
    """The PodStatus for ``pod`` given the runtime's view and the worker's knowledge.

    ``written``: the status this kubelet last wrote, newer than ``pod.status`` until its
    write comes back through the watch; the kubelet's own conditions and startTime carry
    on from it (a sync in between would otherwise move their times)."""
    old = pod.status
    own = written if written is not None else old
    status = core_pb2.PodStatus()
    status.hostIP = host_ip
    status.hostIPs.add(ip=host_ip)
    sandbox = rp.ready_sandbox() or rp.sandbox()
    if sandbox is not None and sandbox.ip:
        status.podIP = sandbox.ip
        status.podIPs.add(ip=sandbox.ip)
        for extra in sandbox.additional_ips:
            status.podIPs.add(ip=extra)
    elif old.podIP:
        status.podIP = old.podIP
        status.podIPs.extend(old.podIPs)
    if pod.spec.hostNetwork and not status.podIP:
        status.podIP = host_ip
        status.podIPs.add(ip=host_ip)
    if old.HasField("startTime"):
        status.startTime.CopyFrom(old.startTime)
    elif own.HasField("startTime"):
        status.startTime.CopyFrom(own.startTime)
    else:
        status.startTime.CopyFrom(time_to_proto(now))
    status.qosClass = qos_class(pod)
    if old.nominatedNodeName:
        status.nominatedNodeName = old.nominatedNodeName

    init = [container_status(c, rp, view, runtime_name, default_waiting="PodInitializing")
            for c in pod.spec.initContainers]
    # Until the init containers are done, regular containers wait on them.
    init_ok = all(_init_done(spec, st) for spec, st in zip(pod.spec.initContainers, init,
                                                             strict=True))
    regular = [container_status(c, rp, view, runtime_name,
                                default_waiting="ContainerCreating" if init_ok
                                else "PodInitializing")
               for c in pod.spec.containers]
    status.initContainerStatuses.extend(init)
    status.containerStatuses.extend(regular)
    status.phase = view.terminal_phase or pod_phase(pod, init, regular, view)
    if old.phase in ("Succeeded", "Failed"):  # terminal phases never change
        status.phase = old.phase

    terminal = status.phase in ("Succeeded", "Failed")
    ready_to_start = rp.ready_sandbox() is not None
    incomplete_init = [spec.name for spec, st in zip(pod.spec.initContainers, init, strict=True)
                       if not _init_done(spec, st)]
    unready = [st.name for st in regular if not st.ready]
    unready += [st.name for spec, st in zip(pod.spec.initContainers, init, strict=True)
                if is_sidecar(spec) and not st.ready]
    conds = [_condition("PodReadyToStartContainers", ready_to_start)]
    if terminal and status.phase == "Succeeded" and not incomplete_init:
        conds.append(_condition("Initialized", True))
    elif incomplete_init:
        msg = f"containers with incomplete status: [{' '.join(incomplete_init)}]"
        conds.append(_condition("Initialized", False, "ContainersNotInitialized", msg))
    else:
        conds.append(_condition("Initialized", True))
    if terminal:
        conds.append(_condition("ContainersReady", False, "PodCompleted", ""))
        conds.append(_condition("Ready", False, "PodCompleted", ""))
    elif unready:
        msg = f"containers with unready status: [{' '.join(unready)}]"
        conds.append(_condition("ContainersReady", False, "ContainersNotReady", msg))
        conds.append(_condition("Ready", False, "ContainersNotReady", msg))
    else:
        conds.append(_condition("ContainersReady", True))
        conds.append(_condition("Ready", True))
    if view.disruption_reason:
        conds.append(_condition("DisruptionTarget", True))
        conds[-1].reason = view.disruption_reason
        conds[-1].message = view.terminal_message
    old_conds = {c.type: c for c in own.conditions}
    for c in old.conditions:  # conditions others own (PodScheduled, readiness gates, ...)
        if c.type not in KUBELET_CONDITIONS and not (view.disruption_reason and
                                                     c.type == "DisruptionTarget"):
            status.conditions.add().CopyFrom(c)
    for c in conds:
        prev = old_conds.get(c.type)
        if prev is not None and prev.status == c.status:
            c.lastTransitionTime.CopyFrom(prev.lastTransitionTime)
        else:
            c.lastTransitionTime.CopyFrom(time_to_proto(now))
        status.conditions.add().CopyFrom(c)
    if view.terminal_reason:
        status.reason = view.terminal_reason
    elif old.phase in ("Succeeded", "Failed") and old.reason:
        status.reason = old.reason  # a restarted kubelet keeps why the pod ended
    if view.terminal_message:
        status.message = view.terminal_message
    elif old.phase in ("Succeeded", "Failed") and old.message:
        status.message = old.message
    return status


def status_equal(a: core_pb2.PodStatus, b: core_pb2.PodStatus) -> bool:
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
