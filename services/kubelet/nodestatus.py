"""The Node object the kubelet registers and keeps up to date (pure, plus /proc readers).

``machine_info()`` reads what the node has (cores, memory, disk under the
kubelet root, kernel, OS, IDs) once; ``build_node`` turns it into a Node
with capacity, allocatable, labels, addresses, daemon endpoints, nodeInfo
and conditions; ``set_conditions`` recomputes the conditions so the node
agent can tell whether anything changed (``status_changed``) before writing.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pilothouse import KUBERNETES_VERSION
from pilothouse.api.timeutil import time_to_proto
from pilothouse.gen.k8s.core.v1 import core_pb2

# What the kubelet keeps back from allocatable: Kubernetes' default hard eviction thresholds
# (memory.available<100Mi, nodefs.available<10%).
RESERVED_MEMORY = 100 * 1024 * 1024
DISK_AVAILABLE_FRACTION = 0.10

ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64"}


@dataclass
class MachineInfo:
    cores: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    hostname: str
    kernel_version: str
    os_image: str
    architecture: str
    machine_id: str = ""
    system_uuid: str = ""
    boot_id: str = ""
    pid_max: int = 32768


@dataclass
class NodeHealth:
    runtime_ready: bool = True
    network_ready: bool = True
    runtime_message: str = ""
    # The pressure conditions the eviction manager reports (MemoryPressure, DiskPressure,
    # PIDPressure).
    pressure: set[str] = field(default_factory=set)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def machine_info(root: Path) -> MachineInfo:
    """What this machine has, read from /proc, /sys and statvfs of the kubelet root."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    st = os.statvfs(root if root.exists() else "/")
    pid_max = _read("/proc/sys/kernel/pid_max")
    return MachineInfo(
        cores=cores,
        memory_bytes=meminfo().get("MemTotal", 0),
        ephemeral_storage_bytes=st.f_blocks * st.f_frsize,
        hostname=socket.gethostname(),
        kernel_version=platform.release(),
        os_image=_os_image(),
        architecture=ARCHES.get(platform.machine(), platform.machine()),
        machine_id=_read("/etc/machine-id"),
        system_uuid=_read("/sys/class/dmi/id/product_uuid"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        pid_max=int(pid_max) if pid_max.isdigit() else 32768,
    )


def host_ip() -> str:
    """The host's primary IPv4 (the source address of its default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent for UDP connect
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def max_pods_for(cores: int) -> int:
    return min(110, 10 * cores)


def capacity(machine: MachineInfo, max_pods: int | None) -> dict[str, str]:
    return {
        "cpu": str(machine.cores),
        "memory": f"{machine.memory_bytes // 1024}Ki",
        "ephemeral-storage": f"{machine.ephemeral_storage_bytes // 1024}Ki",
        "pods": str(max_pods if max_pods is not None else max_pods_for(machine.cores)),
    }


def allocatable(machine: MachineInfo, max_pods: int | None) -> dict[str, str]:
    cap = capacity(machine, max_pods)
    memory = max(machine.memory_bytes - RESERVED_MEMORY, 0)
    storage = int(machine.ephemeral_storage_bytes * (1 - DISK_AVAILABLE_FRACTION))
    cap["memory"] = f"{memory // 1024}Ki"
    cap["ephemeral-storage"] = str(storage)
    return cap


def node_labels(node_name: str, machine: MachineInfo, extra: dict[str, str]) -> dict[str, str]:
    labels = {
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": machine.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": machine.architecture,
    }
    labels.update(extra)
    return labels


def build_node(node_name: str, machine: MachineInfo, *, node_ip: str, kubelet_port: int,
               runtime_version: str, max_pods: int | None = None,
               labels: dict[str, str] | None = None) -> core_pb2.Node:
    """The Node as first registered (conditions are set by ``set_conditions``)."""
    node = core_pb2.Node()
    node.metadata.name = node_name
    for k, v in node_labels(node_name, machine, labels or {}).items():
        node.metadata.labels[k] = v
    node.metadata.annotations["volumes.kubernetes.io/controller-managed-attach-detach"] = "true"
    set_machine_status(node, machine, node_ip=node_ip, kubelet_port=kubelet_port,
                       runtime_version=runtime_version, max_pods=max_pods)
    return node


def set_machine_status(node: core_pb2.Node, machine: MachineInfo, *, node_ip: str,
                       kubelet_port: int, runtime_version: str,
                       max_pods: int | None = None) -> None:
    """Capacity, allocatable, addresses, endpoints and nodeInfo (everything but conditions)."""
    status = node.status
    status.capacity.clear()
    for k, v in capacity(machine, max_pods).items():
        status.capacity[k].string = v
    status.allocatable.clear()
    for k, v in allocatable(machine, max_pods).items():
        status.allocatable[k].string = v
    del status.addresses[:]
    status.addresses.add(type="InternalIP", address=node_ip)
    status.addresses.add(type="Hostname", address=node.metadata.name)
    status.daemonEndpoints.kubeletEndpoint.Port = kubelet_port
    info = status.nodeInfo
    info.machineID = machine.machine_id
    info.systemUUID = machine.system_uuid
    info.bootID = machine.boot_id
    info.kernelVersion = machine.kernel_version
    info.osImage = machine.os_image
    info.containerRuntimeVersion = runtime_version
    info.kubeletVersion = KUBERNETES_VERSION
    info.kubeProxyVersion = KUBERNETES_VERSION
    info.operatingSystem = "linux"
    info.architecture = machine.architecture


def _condition(type_: str, status: bool, reason: str, message: str
               ) -> tuple[str, str, str, str]:
    return type_, "True" if status else "False", reason, message


def desired_conditions(health: NodeHealth) -> list[tuple[str, str, str, str]]:
    mem = "MemoryPressure" in health.pressure
    disk = "DiskPressure" in health.pressure
    pid = "PIDPressure" in health.pressure
    out = [
        _condition("MemoryPressure", mem,
                   "KubeletHasInsufficientMemory" if mem else "KubeletHasSufficientMemory",
                   "kubelet has insufficient memory available" if mem
                   else "kubelet has sufficient memory available"),
        _condition("DiskPressure", disk,
                   "KubeletHasDiskPressure" if disk else "KubeletHasNoDiskPressure",
                   "kubelet has disk pressure" if disk else "kubelet has no disk pressure"),
        _condition("PIDPressure", pid,
                   "KubeletHasInsufficientPID" if pid else "KubeletHasSufficientPID",
                   "kubelet has insufficient PID available" if pid
                   else "kubelet has sufficient PID available"),
    ]
    ready = health.runtime_ready and health.network_ready
    if ready:
        out.append(_condition("Ready", True, "KubeletReady", "kubelet is posting ready status"))
    else:
        why = health.runtime_message or (
            "container runtime is down" if not health.runtime_ready
            else "container runtime network not ready")
        out.append(_condition("Ready", False, "KubeletNotReady", why))
    return out


def set_conditions(node: core_pb2.Node, health: NodeHealth, now: datetime) -> bool:
    """Write the conditions into ``node``; True when any status/reason/message changed.

    ``lastHeartbeatTime`` is always ``now``; ``lastTransitionTime`` moves only
    when a condition's status flips.
    """
    existing = {c.type: c for c in node.status.conditions}
    changed = False
    new: list[core_pb2.NodeCondition] = []
    for type_, status, reason, message in desired_conditions(health):
        cond = core_pb2.NodeCondition(type=type_, status=status, reason=reason,
                                      message=message)
        old = existing.get(type_)
        cond.lastHeartbeatTime.CopyFrom(time_to_proto(now))
        if old is not None and old.status == status:
            cond.lastTransitionTime.CopyFrom(old.lastTransitionTime)
        else:
            cond.lastTransitionTime.CopyFrom(time_to_proto(now))
        if old is None or (old.status, old.reason, old.message) != (status, reason, message):
            changed = True
        new.append(cond)
    del node.status.conditions[:]
    node.status.conditions.extend(new)
    return changed


def status_changed(old: core_pb2.Node, new: core_pb2.Node) -> bool:
    """Whether ``new``'s status differs from ``old``'s in anything but heartbeat times."""
    def strip(node: core_pb2.Node) -> bytes:
        status = core_pb2.NodeStatus()
        status.CopyFrom(node.status)
        for c in status.conditions:
            c.ClearField("lastHeartbeatTime")
        return status.SerializeToString(deterministic=True)

    return strip(old) != strip(new)
