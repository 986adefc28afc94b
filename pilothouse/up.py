"""``pilothouse up``: a whole working cluster on this machine, in one command.

The apiserver runs in this process (SQLite under ``--data-dir``); every other
component is a supervised child (:mod:`pilothouse.supervisor`): the runtime
(our shim's process backend; or a private containerd with our shim's
containerd backend in front, or with the kubelet on containerd's own CRI), the
scheduler, the controller-manager and the kubelet. ``--nodes N`` makes N nodes
instead of one: a network namespace each on a bridge of ``up``'s own, with its
own shim and kubelet and a /24 of the pod CIDR (``plan_node_network`` lays
that out, pure). Progress is one line per step; ``DATA_DIR/kubeconfig`` is
written last. Ctrl-C or SIGTERM stops cleanly: pods removed through the CRI,
components stopped in reverse order, then what they leave (containerd's runc
shims and mounts, bridges, namespaces, routes). Running it again on the same
data dir resumes the same cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from pilothouse.logs import setup_logging
from pilothouse.loop import run_event_loop
from pilothouse.storage.interface import StorageError
from pilothouse.supervisor import NSENTER, Component, ComponentFailed, Supervisor

if TYPE_CHECKING:
    from pilothouse.runtime_shim.containerd.daemon import Containerd
    from pilothouse.services.apiserver.server import APIServer


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pilothouse"


RUNTIMES = ("process", "containerd", "containerd-cri", "none")
CONTAINERD_NAMESPACE = "pilothouse"  # where our shim's containerd backend keeps things
CRI_NAMESPACE = "k8s.io"  # where containerd's own CRI plugin does
KUBELET_PORT = 10250  # each --nodes kubelet has its own network namespace, so one port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"cluster state and kubeconfig (default: {default_data_dir()})")
    parser.add_argument("--port", type=int, default=6443, help="apiserver port (0: any free)")
    parser.add_argument("--grpc-port", type=int, default=6444,
                        help="apiserver gRPC port (0: any free)")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--http2", action="store_true",
                        help="serve HTTP/2 (h2c) beside HTTP/1.1 on the apiserver port")
    parser.add_argument("--runtime", choices=RUNTIMES,
                        default="process" if os.geteuid() == 0 else "none",
                        help="container runtime of this machine's node. process: the runtime "
                             "shim's process backend; containerd: a private containerd with "
                             "the runtime shim's containerd backend in front of it; "
                             "containerd-cri: the kubelet talks to that containerd's own CRI "
                             "plugin; none: control plane only. Default: process when root")
    parser.add_argument("--nodes", type=int, default=None, metavar="N",
                        help="run N kubelets, each with its own runtime shim (process "
                             "backend) in its own network namespace, on a bridge of their "
                             "own; needs root")
    parser.add_argument("--pod-cidr", default="10.88.0.0/16",
                        help="pod IPs (with --nodes: a /24 of it per node)")
    parser.add_argument("--pod-bridge", default="pilothouse0",
                        help="the Linux bridge pods attach to (with --nodes: the prefix of "
                             "the node network's links)")
    parser.add_argument("--node-cidr", default=None,
                        help="with --nodes: the node network (the host's address on it is "
                             "the first, then one per node; default: the last /24 of "
                             "--pod-cidr, which pods then do not use)")
    parser.add_argument("--node-name", default="",
                        help="name of this machine's Node (default: the host name; with "
                             "--nodes: NAME-1 ... NAME-N)")
    parser.add_argument("--fake-nodes", type=int, default=0, metavar="N",
                        help="also register N simulated nodes (KWOK-like) that run pods "
                             "bound to them")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true")


class UsageError(ValueError):
    """A flag combination `up` refuses, with the reason."""


# -- the node network of --nodes (pure) ------------------------------------------------

@dataclass(frozen=True)
class NodePlan:
    """One node of ``--nodes``: its network namespace and what lives in it."""

    index: int  # 1..N
    name: str  # the Node's name
    netns: str  # a name under /run/netns
    ip: str  # InternalIP: eth0 in the namespace, the kubelet listens there
    host_veth: str  # the host end of the namespace's eth0, on the node network's bridge
    pod_bridge: str  # the pod bridge inside the namespace (the shim's --bridge)
    pod_cidr: str  # this node's slice of --pod-cidr

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


@dataclass(frozen=True)
class NodeNetwork:
    bridge: str  # the host's bridge every node namespace is plugged into
    gateway: str  # the host's address on it: nodes route through it, the apiserver listens on it
    prefixlen: int
    nodes: tuple[NodePlan, ...]


def _link_name(base: str, suffix: str) -> str:
    name = base + suffix
    if len(name) > 15:
        raise UsageError(f"--pod-bridge {base!r} is too long for --nodes: its links are "
                         f"named like {name!r}, over Linux's 15 characters; use a shorter one")
    return name


def _network(text: str, flag: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a CIDR (e.g. 10.88.0.0/16)") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise UsageError(f"{flag} {text!r}: only IPv4 is supported")
    return net


def plan_node_network(*, count: int, pod_cidr: str, bridge: str, node_cidr: str | None,
                      base_name: str) -> NodeNetwork:
    """Names and addresses for ``--nodes count``: node i gets the i-th /24 of the pod
    CIDR, the i+1-th address of the node network and links named after ``bridge``.
    Raises UsageError for what cannot be laid out."""
    if count < 1:
        raise UsageError(f"--nodes must be at least 1, got {count}")
    pods = _network(pod_cidr, "--pod-cidr")
    if pods.prefixlen > 23:
        raise UsageError(f"--pod-cidr {pod_cidr} is too small for --nodes: each node gets a "
                         "/24 of it (give a /23 or larger, e.g. 10.88.0.0/16)")
    slices = 2 ** (24 - pods.prefixlen)
    if node_cidr is None:
        slices -= 1  # the last /24 is the node network
        nodes_net = ipaddress.IPv4Network(
            (int(pods.broadcast_address) - 255, 24))
    else:
        nodes_net = _network(node_cidr, "--node-cidr")
        if nodes_net.overlaps(pods):
            raise UsageError(f"--node-cidr {node_cidr} overlaps --pod-cidr {pod_cidr}")
    if count > slices:
        raise UsageError(f"--pod-cidr {pod_cidr} has room for {slices} nodes (a /24 each), "
                         f"not {count}")
    if count + 1 > nodes_net.num_addresses - 2:  # the gateway and one per node
        raise UsageError(f"the node network {nodes_net} has no address for {count} nodes")
    gateway = nodes_net.network_address + 1
    nodes = []
    for i in range(1, count + 1):
        slice_ = ipaddress.IPv4Network((int(pods.network_address) + 256 * (i - 1), 24))
        nodes.append(NodePlan(
            index=i, name=f"{base_name}-{i}", netns=f"pilothouse-{bridge}-{i}",
            ip=str(gateway + i), host_veth=_link_name(bridge, f"-v{i}"),
            pod_bridge=_link_name(bridge, f"-{i}"), pod_cidr=str(slice_)))
    return NodeNetwork(bridge=_link_name(bridge, "-n"), gateway=str(gateway),
                       prefixlen=nodes_net.prefixlen, nodes=tuple(nodes))


def check_arguments(args: argparse.Namespace, *, root: bool) -> NodeNetwork | None:
    """Refuse what cannot work, before anything starts; the node network of --nodes."""
    if len(args.pod_bridge) > 15 or not args.pod_bridge:
        raise UsageError(f"--pod-bridge {args.pod_bridge!r} must be 1 to 15 characters "
                         "(a Linux interface name)")
    _network(args.pod_cidr, "--pod-cidr")
    if args.fake_nodes < 0:
        raise UsageError(f"--fake-nodes must be 0 or more, got {args.fake_nodes}")
    if args.runtime in ("containerd", "containerd-cri"):
        if not root:
            raise UsageError(f"--runtime {args.runtime} needs root (containerd, runc, "
                             "network namespaces)")
        if shutil.which("containerd") is None:
            raise UsageError(f"--runtime {args.runtime}: containerd is not installed "
                             "(apt-get install containerd runc containernetworking-plugins)")
    if args.nodes is None:
        if args.node_cidr is not None:
            raise UsageError("--node-cidr is for --nodes")
        return None
    if not root:
        raise UsageError("--nodes needs root: each node is a network namespace with its "
                         "own bridge (run as root, or drop --nodes for one node on this "
                         "machine's network)")
    if args.runtime != "process":
        raise UsageError(f"--nodes runs each node's runtime shim with the process backend: "
                         f"not with --runtime {args.runtime}")
    base = args.node_name or socket.gethostname().lower()
    return plan_node_network(count=args.nodes, pod_cidr=args.pod_cidr,
                             bridge=args.pod_bridge, node_cidr=args.node_cidr,
                             base_name=base)

class Progress:
    """One line per step, with the time it took: start-up is never silent."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        self.started = time.monotonic()

    def begin(self, what: str) -> float:
        self.step += 1
        print(f"[{self.step}/{self.total}] {what} ...", flush=True)
        return time.monotonic()

    def done(self, since: float, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        print(f"      done in {time.monotonic() - since:.2f}s{extra}", flush=True)


async def _runtime_ready(socket_path: Path) -> bool:
    """The shim answers the CRI Version call on its socket."""
    import grpc

    from pilothouse.gen.cri.runtime.v1 import api_pb2, api_pb2_grpc

    if not os.path.exists(socket_path):  # noqa: ASYNC240 - a stat, not I/O worth a thread
        return False
    async with grpc.aio.insecure_channel(f"unix://{socket_path}") as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        await stub.Version(api_pb2.VersionRequest(), timeout=2)
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _http_ready(url: str) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code == 200
    return ready


def _nodes_registered(api: str, count: int, label: str) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.get(f"{api}/api/v1/nodes", params={"labelSelector": label})
            return r.status_code == 200 and len(r.json()["items"]) >= count
    return ready


def _all_ready(*checks: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        for check in checks:
            if not await check():
                return False
        return True
    return ready


def _node_ready(api: str, node: str) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.get(f"{api}/api/v1/nodes/{node}")
            if r.status_code != 200:
                return False
            conditions = r.json().get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready


async def _remove_all_pods(socket_path: Path) -> None:
    """Stop and remove every pod sandbox of the runtime: `pilothouse up` stopping is
    this machine's node going down, and no container, mount or namespace outlives it.
    (The next start's kubelet recreates the pods the apiserver still has.)"""
    import grpc

    from pilothouse.gen.cri.runtime.v1 import api_pb2, api_pb2_grpc

    async with grpc.aio.insecure_channel(f"unix://{socket_path}") as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        sandboxes = await stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10)
        for sandbox in sandboxes.items:
            await stub.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id),
                                      timeout=30)
            await stub.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=30)


# -- images ----------------------------------------------------------------------------
# Built and imported in this process (in threads): an interpreter start per image
# costs more than the work on a loaded machine.

def _build_archives(images: Path) -> tuple[list[Path], list[str]]:
    from pilothouse.runtime_shim.images import oci

    if not oci.DEFAULT_BUSYBOX.exists():
        raise ComponentFailed(f"{oci.DEFAULT_BUSYBOX} not found: install busybox-static")
    images.mkdir(parents=True, exist_ok=True)
    archives, built = [], []
    for kind, build in (("busybox", oci.build_busybox), ("pause", oci.build_pause)):
        archive = images / f"{kind}.tar"
        if not archive.exists():
            partial = images / f"{kind}.tar.partial"
            oci.write_oci_layout(partial, [build()])
            partial.rename(archive)  # a half-written archive is never taken for one
            built.append(kind)
        archives.append(archive)
    return archives, built


async def _build_images(data_dir: Path) -> tuple[list[Path], str]:
    """The busybox and pause images as OCI archives, built from Debian's busybox-static
    (no registry), once per data dir."""
    archives, built = await asyncio.to_thread(_build_archives, data_dir / "images")
    return archives, (", ".join(built) + " built") if built else "already built"


def _import_into_store(shim_root: Path, archives: list[Path]) -> None:
    from pilothouse.runtime_shim.images.store import ImageStore

    store = ImageStore(shim_root / "images")
    for archive in archives:
        store.import_archive(archive)


async def _import_into_shim(shim_root: Path, archives: list[Path]) -> str:
    """Import into the process backend's store at ``shim_root``, once."""
    marker = shim_root / ".pilothouse-images-imported"
    from pilothouse.runtime_shim.images.store import ImageError

    if marker.exists():
        return "already imported"
    try:
        await asyncio.to_thread(_import_into_store, shim_root, archives)
    except (OSError, ValueError, ImageError) as err:
        raise ComponentFailed(f"importing images into {shim_root}: {err}") from None
    marker.write_text("busybox pause\n")
    return "busybox, pause imported"


async def _import_into_containerd(daemon: Containerd, namespace: str,
                                  archives: list[Path]) -> str:
    """Import over containerd's gRPC API into ``namespace``, once per containerd root
    (the marker lives in that root: a fresh root imports again)."""
    import grpc

    from pilothouse.runtime_shim.containerd.client import Client
    from pilothouse.runtime_shim.containerd.images import import_archive
    from pilothouse.runtime_shim.images.store import ImageError

    marker = daemon.directory / "root" / f".pilothouse-images-{namespace}"
    if marker.exists():
        return f"already in namespace {namespace}"
    client = Client(daemon.address, namespace)
    try:
        await client.ensure_namespace()
        for archive in archives:
            await import_archive(client, archive, staging=daemon.directory)
    except (grpc.aio.AioRpcError, OSError, ValueError, ImageError) as err:
        detail = err.details() if isinstance(err, grpc.aio.AioRpcError) else err
        raise ComponentFailed(f"importing images into containerd: {detail}") from None
    finally:
        await client.close()
    marker.write_text("busybox pause\n")
    return f"busybox, pause imported into namespace {namespace}"


# -- the node network of --nodes (I/O) ---------------------------------------------------

async def _ip(*argv: str, batch: list[str] | None = None, check: bool = True) -> None:
    command = ["ip", *argv] + (["-batch", "-"] if batch is not None else [])
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE if batch is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate(
        "".join(f"{line}\n" for line in batch).encode() if batch is not None else None)
    if check and proc.returncode != 0:
        raise ComponentFailed(f"{' '.join(command)}: {err.decode(errors='replace').strip()}")


async def create_node_network(net: NodeNetwork) -> None:
    """The host's bridge, a namespace per node with eth0 on it (lo up, the default route
    through the host, forwarding on: it routes for its pods), a route on the host to
    each node's pod slice through that node, forwarding on in the host. What a previous
    run left is removed first."""
    await remove_node_network(net)
    host = [f"link add {net.bridge} type bridge",
            f"addr add {net.gateway}/{net.prefixlen} dev {net.bridge}",
            f"link set {net.bridge} up"]
    for node in net.nodes:
        host += [f"netns add {node.netns}",
                 f"link add {node.host_veth} type veth peer name eth0 netns {node.netns}",
                 f"link set {node.host_veth} master {net.bridge}",
                 f"link set {node.host_veth} up"]
    await _ip(batch=host)
    for node in net.nodes:
        await _ip("-n", node.netns, batch=[
            "link set lo up",
            f"addr add {node.ip}/{net.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {net.gateway}"])
        proc = await asyncio.create_subprocess_exec(
            NSENTER, f"--net={node.netns_path}", "--", "sh", "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward", stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise ComponentFailed(f"forwarding in {node.netns}: {err.decode().strip()}")
    await _ip(batch=[f"route replace {node.pod_cidr} via {node.ip} dev {net.bridge}"
                     for node in net.nodes])
    # Pod to pod across nodes goes through the host, which must forward (as the CNI
    # bridge plugin turns it on for a gateway bridge).
    await asyncio.to_thread(_enable_forwarding)


def _enable_forwarding() -> None:
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if forward.read_text().strip() != "1":
        forward.write_text("1\n")


async def remove_node_network(net: NodeNetwork) -> None:
    """Delete every namespace (and so its links: eth0, the pod bridge, the pods' veth
    ends), the host ends and the bridge (and so the routes through it); idempotent."""
    for node in net.nodes:
        if os.path.exists(node.netns_path):  # noqa: ASYNC240 - a stat
            await _ip("netns", "del", node.netns, check=False)
        if os.path.exists(f"/sys/class/net/{node.host_veth}"):  # noqa: ASYNC240
            await _ip("link", "del", node.host_veth, check=False)
    if os.path.exists(f"/sys/class/net/{net.bridge}"):  # noqa: ASYNC240 - a stat
        await _ip("link", "del", net.bridge, check=False)


async def _delete_link(name: str) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):  # noqa: ASYNC240 - a stat
        await _ip("link", "del", name, check=False)


# -- start-up ----------------------------------------------------------------------------

def _count_steps(args: argparse.Namespace, net: NodeNetwork | None) -> int:
    nodes = len(net.nodes) if net else 1
    steps = 4  # apiserver, scheduler, controller-manager, kubeconfig
    if net is not None:
        steps += 1  # the node network
    if args.runtime != "none":
        steps += 1 + nodes  # images, kubelet(s)
        steps += {"process": nodes, "containerd": 3, "containerd-cri": 2}[args.runtime]
    return steps + (1 if args.fake_nodes else 0)


async def _start_containerd(args: argparse.Namespace, data_dir: Path, supervisor: Supervisor,
                            progress: Progress, archives: list[Path]) -> str:
    """A private containerd under the supervisor; images imported; the CRI endpoint for
    the kubelet (``--runtime containerd``: our shim's containerd backend in front)."""
    from pilothouse.runtime_shim.containerd.daemon import Containerd

    daemon = Containerd(data_dir / "containerd", bridge=args.pod_bridge, subnet=args.pod_cidr)
    try:
        argv = daemon.write_config()
    except ValueError as err:
        raise UsageError(str(err)) from None
    containerd_socket = Path(daemon.address)
    own_cri = args.runtime == "containerd-cri"

    async def ready() -> bool:
        if own_cri:  # its CRI plugin answers a moment after the socket accepts
            return await _runtime_ready(containerd_socket)
        return await asyncio.to_thread(daemon.accepts)

    async def cleanup() -> None:
        # after containerd stopped: runc shims, mounts and the pod bridge it leaves
        await asyncio.to_thread(daemon.cleanup)

    t = progress.begin(f"starting containerd (private, in {daemon.directory})")
    await supervisor.start(Component(
        "containerd", argv[1:], program=argv[:1], ready=ready,
        before_stop=(lambda: _remove_all_pods(containerd_socket)) if own_cri else None,
        after_stop=cleanup, stop_timeout=60))
    progress.done(t, f"unix://{containerd_socket}")
    namespace = CRI_NAMESPACE if own_cri else CONTAINERD_NAMESPACE
    t = progress.begin("importing images into containerd")
    progress.done(t, await _import_into_containerd(daemon, namespace, archives))
    if own_cri:
        return f"unix://{containerd_socket}"
    socket_path = data_dir / "run" / "cri.sock"
    t = progress.begin("starting the runtime shim (containerd backend)")
    await supervisor.start(Component(
        "runtime-shim",
        ["runtime-shim", "--backend", "containerd", "--listen", f"unix://{socket_path}",
         "--root", str(data_dir / "runtime-shim-containerd"),
         "--containerd-address", f"unix://{containerd_socket}",
         "--containerd-namespace", CONTAINERD_NAMESPACE, "--cni-bin-dir", "/usr/lib/cni",
         "--bridge", args.pod_bridge, "--pod-cidr", args.pod_cidr],
        ready=lambda: _runtime_ready(socket_path),
        before_stop=lambda: _remove_all_pods(socket_path), stop_timeout=60))
    progress.done(t, f"unix://{socket_path}")
    return f"unix://{socket_path}"


async def _start_process_shim(name: str, supervisor: Supervisor, progress: Progress, *,
                              state_dir: Path, bridge: str, pod_cidr: str,
                              archives: list[Path], netns: str | None = None,
                              where: str = "") -> str:
    shim_root = state_dir / "runtime-shim"
    socket_path = state_dir / "run" / "cri.sock"
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    t = progress.begin(f"starting the runtime shim (process backend{where})")
    imported = await _import_into_shim(shim_root, archives)
    await supervisor.start(Component(
        name,
        ["runtime-shim", "--backend", "process", "--listen", f"unix://{socket_path}",
         "--root", str(shim_root), "--bridge", bridge, "--pod-cidr", pod_cidr],
        ready=lambda: _runtime_ready(socket_path), netns=netns,
        before_stop=lambda: _remove_all_pods(socket_path),
        # on the host the pod bridge is the shim's to remove; in a node's namespace it
        # goes with the namespace
        after_stop=None if netns else (lambda: _delete_link(bridge)), stop_timeout=60))
    progress.done(t, f"unix://{socket_path}, {pod_cidr} on {bridge}; images {imported}")
    return f"unix://{socket_path}"


async def _up(args: argparse.Namespace) -> int:
    from pilothouse.services.apiserver.server import (
        APIServer,
        APIServerConfig,
        write_kubeconfig,
    )

    net = check_arguments(args, root=os.geteuid() == 0)
    # Handle SIGTERM/SIGINT from the first moment: a stop during start-up finishes
    # the step under way, then shuts down what has started.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    data_dir: Path = (args.data_dir or default_data_dir()).resolve()
    progress = Progress(total=_count_steps(args, net))
    apiserver_host = args.bind_address
    supervisor = Supervisor(data_dir / "logs")
    apiserver: APIServer | None = None
    try:
        if net is not None:
            t = progress.begin(f"creating the node network ({len(net.nodes)} network "
                               f"namespaces on bridge {net.bridge})")
            await create_node_network(net)
            # The kubelets in the namespaces reach the apiserver through the bridge.
            apiserver_host = net.gateway
            progress.done(t, ", ".join(f"{n.name} {n.ip} pods {n.pod_cidr}"
                                       for n in net.nodes))
        t = progress.begin(f"starting the apiserver (state in {data_dir})")
        apiserver = APIServer(APIServerConfig(data_dir=data_dir, host=apiserver_host,
                                              port=args.port, grpc_port=args.grpc_port,
                                              http2=args.http2))
        await apiserver.start()
        progress.done(t, f"REST {apiserver.url}, gRPC {apiserver.grpc_address}")
        grpc_url = f"grpc://{apiserver.grpc_address}"
        endpoints: list[str] = []
        if args.runtime != "none":
            t = progress.begin("building local images (busybox, pause)")
            archives, detail = await _build_images(data_dir)
            progress.done(t, detail)
            if net is not None:
                for node in net.nodes:
                    endpoints.append(await _start_process_shim(
                        f"runtime-shim-{node.index}", supervisor, progress,
                        state_dir=data_dir / "nodes" / str(node.index),
                        bridge=node.pod_bridge, pod_cidr=node.pod_cidr, archives=archives,
                        netns=node.netns_path, where=f", node {node.name}"))
            elif args.runtime == "process":
                endpoints.append(await _start_process_shim(
                    "runtime-shim", supervisor, progress, state_dir=data_dir,
                    bridge=args.pod_bridge, pod_cidr=args.pod_cidr, archives=archives))
            else:
                endpoints.append(await _start_containerd(args, data_dir, supervisor, progress,
                                                         archives))
        host = args.bind_address
        t = progress.begin("starting the scheduler")
        port = _free_port(host)
        await supervisor.start(Component(
            "scheduler",
            ["scheduler", "--master", grpc_url, "--bind-address", host, "--port", str(port)],
            ready=_http_ready(f"http://{host}:{port}/readyz")))
        progress.done(t, f"http://{host}:{port}/metrics")
        t = progress.begin("starting the controller-manager")
        port = _free_port(host)
        await supervisor.start(Component(
            "controller-manager",
            ["controller-manager", "--apiserver", grpc_url, "--bind-address", host,
             "--port", str(port)],
            ready=_http_ready(f"http://{host}:{port}/readyz")))
        progress.done(t, f"http://{host}:{port}/metrics")
        if net is not None:
            for node, endpoint in zip(net.nodes, endpoints, strict=True):
                t = progress.begin(f"starting the kubelet of node {node.name} "
                                   f"(namespace {node.netns})")
                node_dir = data_dir / "nodes" / str(node.index)
                await supervisor.start(Component(
                    f"kubelet-{node.index}",
                    ["kubelet", "--node-name", node.name, "--runtime-endpoint", endpoint,
                     "--apiserver", grpc_url, "--root-dir", str(node_dir / "kubelet"),
                     "--address", node.ip, "--node-ip", node.ip,
                     "--port", str(KUBELET_PORT),
                     "--pod-manifest-path", str(node_dir / "manifests")],
                    # its own server first: a resumed cluster's Node is Ready already
                    ready=_all_ready(
                        _http_ready(f"http://{node.ip}:{KUBELET_PORT}/healthz"),
                        _node_ready(apiserver.url, node.name)),
                    netns=node.netns_path))
                progress.done(t, f"http://{node.ip}:{KUBELET_PORT}/healthz")
        elif endpoints:
            node_name = args.node_name or socket.gethostname().lower()
            t = progress.begin(f"starting the kubelet (node {node_name}, "
                               f"{args.runtime} runtime)")
            port = _free_port(host)
            await supervisor.start(Component(
                "kubelet",
                ["kubelet", "--node-name", node_name,
                 "--runtime-endpoint", endpoints[0], "--apiserver", grpc_url,
                 "--root-dir", str(data_dir / "kubelet"), "--address", host,
                 "--node-ip", host, "--port", str(port),
                 "--pod-manifest-path", str(data_dir / "manifests"),
                 # containerd's own CRI has pod stats only for pods given a cgroup parent
                 *(["--cgroup-root", "/"] if args.runtime == "containerd-cri" else [])],
                ready=_all_ready(_http_ready(f"http://{host}:{port}/healthz"),
                                 _node_ready(apiserver.url, node_name))))
            progress.done(t, f"http://{host}:{port}/healthz")
        if args.fake_nodes:
            t = progress.begin(f"registering {args.fake_nodes} simulated nodes")
            await supervisor.start(Component(
                "fake-nodes", ["fake-nodes", "--master", grpc_url, "--count",
                               str(args.fake_nodes)],
                ready=_nodes_registered(apiserver.url, args.fake_nodes,
                                        "pilothouse.io/fake-node"),
                ready_timeout=120 + args.fake_nodes / 20))
            progress.done(t)
        supervisor.monitor()
        # Written last: its presence means the cluster is up.
        t = progress.begin("writing the admin kubeconfig")
        kubeconfig = write_kubeconfig(data_dir / "kubeconfig", apiserver.url)
        progress.done(t, str(kubeconfig))
    except BaseException:
        await _shut_down(supervisor, apiserver, net)
        raise
    print(f"\npilothouse is ready ({time.monotonic() - progress.started:.1f}s). Use it with:\n"
          f"  export KUBECONFIG={kubeconfig}\n  kubectl get namespaces\n"
          f"Component logs: {data_dir / 'logs'}\n"
          "Stop with Ctrl-C; `pilothouse up` again resumes the same cluster.", flush=True)
    try:
        await stop.wait()
    finally:
        print("stopping ...", flush=True)
        await _shut_down(supervisor, apiserver, net)
    print("pilothouse stopped.", flush=True)
    return 0


async def _shut_down(supervisor: Supervisor, apiserver: APIServer | None,
                     net: NodeNetwork | None) -> None:
    await supervisor.stop()  # components first: they may still talk to the apiserver
    if apiserver is not None:
        await apiserver.stop()
    if net is not None:
        await remove_node_network(net)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, verbose=args.verbose)
    try:
        return run_event_loop(_up(args))
    except UsageError as exc:
        print(f"pilothouse up: {exc}", file=sys.stderr)
        return 2
    except (OSError, StorageError, ComponentFailed) as exc:
        print(f"pilothouse up failed: {exc}", file=sys.stderr)
        return 1
