"""Pod and container specs turned into CRI configs (pure).

What Kubernetes' kuberuntime does in ``generatePodSandboxConfig`` and
``generateContainerConfig``: metadata with the attempt number, the labels
and annotations that identify a pod's sandboxes and containers to a
restarted kubelet, DNS, host ports, namespaces (``pid = CONTAINER`` unless
the pod shares its process namespace), resources as cgroup values, and the
security context.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pilothouse.api.quantity import Quantity
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import runtime as rt

NODE = cri.NamespaceMode.Value("NODE")
POD = cri.NamespaceMode.Value("POD")
CONTAINER = cri.NamespaceMode.Value("CONTAINER")
PROTOCOLS = {"TCP": cri.TCP, "UDP": cri.UDP, "SCTP": cri.SCTP}
CPU_PERIOD = 100_000
MIN_SHARES = 2
DEFAULT_GRACE = 30


def pod_labels(pod: core_pb2.Pod) -> dict[str, str]:
    return {rt.POD_NAME_LABEL: pod.metadata.name,
            rt.POD_NAMESPACE_LABEL: pod.metadata.namespace,
            rt.POD_UID_LABEL: pod.metadata.uid}


def grace_period(pod: core_pb2.Pod) -> int:
    if pod.metadata.HasField("deletionGracePeriodSeconds"):
        return int(pod.metadata.deletionGracePeriodSeconds)
    if pod.spec.HasField("terminationGracePeriodSeconds"):
        return int(pod.spec.terminationGracePeriodSeconds)
    return DEFAULT_GRACE


def container_hash(container: core_pb2.Container) -> str:
    """A stable hash of the spec; a change means "replace the container"."""
    return hashlib.sha256(container.SerializeToString(deterministic=True)).hexdigest()[:16]


def log_directory(root: Path, pod: core_pb2.Pod) -> Path:
    """``<root>/logs/<namespace>_<name>_<uid>`` (Kubernetes' /var/log/pods layout)."""
    meta = pod.metadata
    return root / "logs" / f"{meta.namespace}_{meta.name}_{meta.uid}"


def container_log_path(name: str, restart_count: int) -> str:
    """Relative to the sandbox's log directory."""
    return f"{name}/{restart_count}.log"


def _host_resolv() -> tuple[list[str], list[str], list[str]]:
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        return servers, searches, options
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            searches = parts[1:]
        elif parts[0] == "options":
            options.extend(parts[1:])
    return servers, searches, options


def dns_config(pod: core_pb2.Pod, cluster_dns: list[str], cluster_domain: str,
               host: tuple[list[str], list[str], list[str]] | None = None) -> cri.DNSConfig:
    policy = pod.spec.dnsPolicy or "ClusterFirst"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    elif policy == "ClusterFirst" and pod.spec.hostNetwork:
        policy = "Default"
    if policy == "ClusterFirst" and not cluster_dns:
        policy = "Default"  # no cluster DNS configured: the node's resolver, as Kubernetes
    servers, searches, options = host if host is not None else _host_resolv()
    out = cri.DNSConfig()
    if policy == "Default":
        out.servers.extend(servers)
        out.searches.extend(searches)
        out.options.extend(options)
    elif policy == "ClusterFirst":
        ns = pod.metadata.namespace
        out.servers.extend(cluster_dns)
        out.searches.extend([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}",
                             cluster_domain] + [s for s in searches if s])
        out.options.append("ndots:5")
    if pod.spec.HasField("dnsConfig"):
        extra = pod.spec.dnsConfig
        out.servers.extend(s for s in extra.nameservers if s not in out.servers)
        out.searches.extend(s for s in extra.searches if s not in out.searches)
        opts = {o.split(":", 1)[0]: o for o in out.options}
        for o in extra.options:
            opts[o.name] = f"{o.name}:{o.value}" if o.HasField("value") else o.name
        del out.options[:]
        out.options.extend(opts.values())
    return out


def sandbox_config(pod: core_pb2.Pod, *, attempt: int, log_dir: Path, cluster_dns: list[str],
                   cluster_domain: str, cgroup_parent: str = "") -> cri.PodSandboxConfig:
    meta = pod.metadata
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=meta.name, namespace=meta.namespace,
                                        uid=meta.uid, attempt=attempt),
        log_directory=str(log_dir),
        dns_config=dns_config(pod, cluster_dns, cluster_domain))
    if not pod.spec.hostNetwork:
        config.hostname = (pod.spec.hostname or meta.name)[:63]
    for k, v in meta.labels.items():
        config.labels[k] = v
    config.labels.update(pod_labels(pod))
    for k, v in meta.annotations.items():
        config.annotations[k] = v
    for c in pod.spec.containers:
        for p in c.ports:
            if p.hostPort:
                config.port_mappings.add(protocol=PROTOCOLS.get(p.protocol or "TCP", cri.TCP),
                                         container_port=p.containerPort, host_port=p.hostPort,
                                         host_ip=p.hostIP)
    if cgroup_parent:
        config.linux.cgroup_parent = cgroup_parent
    sc = config.linux.security_context
    ns = sc.namespace_options
    ns.network = NODE if pod.spec.hostNetwork else POD
    ns.ipc = NODE if pod.spec.hostIPC else POD
    ns.pid = NODE if pod.spec.hostPID else (POD if pod.spec.shareProcessNamespace
                                            else CONTAINER)
    psc = pod.spec.securityContext
    if psc.HasField("runAsUser"):
        sc.run_as_user.value = psc.runAsUser
    if psc.HasField("runAsGroup"):
        sc.run_as_group.value = psc.runAsGroup
    sc.supplemental_groups.extend(psc.supplementalGroups)
    for s in psc.sysctls:
        config.linux.sysctls[s.name] = s.value
    return config



def linux_resources(container: core_pb2.Container) -> cri.LinuxContainerResources:
    res = cri.LinuxContainerResources()
    req = container.resources.requests
    lim = container.resources.limits
    cpu_req = Quantity(req["cpu"].string).milli_value() if "cpu" in req else 0
    cpu_lim = Quantity(lim["cpu"].string).milli_value() if "cpu" in lim else 0
    if not cpu_req and cpu_lim:
        cpu_req = cpu_lim
    res.cpu_shares = max(cpu_req * 1024 // 1000, MIN_SHARES)
    if cpu_lim:
        res.cpu_period = CPU_PERIOD
        res.cpu_quota = max(cpu_lim * CPU_PERIOD // 1000, 1000)
    if "memory" in lim:
        res.memory_limit_in_bytes = Quantity(lim["memory"].string).value()
    return res


def container_config(pod: core_pb2.Pod, container: core_pb2.Container, *, restart_count: int,
                     image: str, envs: list[tuple[str, str]], command: list[str],
                     args: list[str], mounts: list[cri.Mount], kind: str) -> cri.ContainerConfig:
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=container.name, attempt=restart_count),
        image=cri.ImageSpec(image=image), command=command, args=args,
        working_dir=container.workingDir,
        envs=[cri.KeyValue(key=k, value=v) for k, v in envs],
        mounts=mounts, log_path=container_log_path(container.name, restart_count),
        stdin=container.stdin, stdin_once=container.stdinOnce, tty=container.tty)
    config.labels.update(pod_labels(pod))
    config.labels[rt.CONTAINER_NAME_LABEL] = container.name
    ann = config.annotations
    ann[rt.CONTAINER_HASH_ANNOTATION] = container_hash(container)
    ann[rt.RESTART_COUNT_ANNOTATION] = str(restart_count)
    ann[rt.TERMINATION_MESSAGE_PATH_ANNOTATION] = container.terminationMessagePath or \
        "/dev/termination-log"
    ann[rt.GRACE_PERIOD_ANNOTATION] = str(grace_period(pod))
    ann[rt.CONTAINER_TYPE_ANNOTATION] = kind
    config.linux.resources.CopyFrom(linux_resources(container))
    sc = config.linux.security_context
    sc.namespace_options.network = NODE if pod.spec.hostNetwork else POD
    sc.namespace_options.ipc = NODE if pod.spec.hostIPC else POD
    sc.namespace_options.pid = NODE if pod.spec.hostPID else (
        POD if pod.spec.shareProcessNamespace else CONTAINER)
    psc = pod.spec.securityContext
    csc = container.securityContext
    if csc.HasField("runAsUser"):
        sc.run_as_user.value = csc.runAsUser
    elif psc.HasField("runAsUser"):
        sc.run_as_user.value = psc.runAsUser
    if csc.HasField("runAsGroup"):
        sc.run_as_group.value = csc.runAsGroup
    elif psc.HasField("runAsGroup"):
        sc.run_as_group.value = psc.runAsGroup
    sc.supplemental_groups.extend(psc.supplementalGroups)
    sc.privileged = csc.privileged
    sc.readonly_rootfs = csc.readOnlyRootFilesystem
    if csc.HasField("allowPrivilegeEscalation"):
        sc.no_new_privs = not csc.allowPrivilegeEscalation
    if csc.HasField("capabilities"):
        sc.capabilities.add_capabilities.extend(csc.capabilities.add)
        sc.capabilities.drop_capabilities.extend(csc.capabilities.drop)
    return config
