"""``pilothouse up``: a whole working cluster on this machine, in one command.

Starts the components in one process, each as it lands (today: the apiserver
with SQLite storage under ``--data-dir``), writes ``DATA_DIR/kubeconfig``,
shows progress until the cluster is ready, and stops cleanly on Ctrl-C or
SIGTERM. Running it again on the same data dir resumes the same cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from pilothouse.logs import setup_logging
from pilothouse.loop import run_event_loop
from pilothouse.storage.interface import StorageError
from pilothouse.supervisor import Component, ComponentFailed, Supervisor


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pilothouse"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"cluster state and kubeconfig (default: {default_data_dir()})")
    parser.add_argument("--port", type=int, default=6443, help="apiserver port (0: any free)")
    parser.add_argument("--grpc-port", type=int, default=6444,
                        help="apiserver gRPC port (0: any free)")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--http2", action="store_true",
                        help="serve HTTP/2 (h2c) beside HTTP/1.1 on the apiserver port")
    parser.add_argument("--runtime", choices=["process", "none"],
                        default="process" if os.geteuid() == 0 else "none",
                        help="container runtime for this machine's node (process: the "
                             "runtime shim's process backend; none: control plane only). "
                             "Default: process when root")
    parser.add_argument("--pod-cidr", default="10.88.0.0/16",
                        help="pod IPs of this machine's node (process runtime)")
    parser.add_argument("--pod-bridge", default="pilothouse0",
                        help="the Linux bridge pods attach to (process runtime)")
    parser.add_argument("--node-name", default="",
                        help="name of this machine's Node (default: the host name)")
    parser.add_argument("--fake-nodes", type=int, default=0, metavar="N",
                        help="also register N simulated nodes (KWOK-like) that run pods "
                             "bound to them")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true")


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


async def _prepare_images(data_dir: Path, shim_root: Path) -> str:
    """Build the busybox and pause images from Debian's busybox-static (no registry)
    and import them into the runtime shim's store, once."""
    images = data_dir / "images"
    marker = shim_root / ".pilothouse-images-imported"
    if marker.exists():
        return "already imported"
    images.mkdir(parents=True, exist_ok=True)
    for kind in ("busybox", "pause"):
        archive = images / f"{kind}.tar"
        for argv in (["image", "build", kind, "--output", str(archive)],
                     ["image", "import", str(archive), "--root", str(shim_root)]):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pilothouse.cli", *argv,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise ComponentFailed(f"pilothouse {' '.join(argv)} failed:\n{out.decode()}")
    marker.write_text("busybox pause\n")
    return "busybox, pause"


async def _up(args: argparse.Namespace) -> int:
    from pilothouse.services.apiserver.server import (
        APIServer,
        APIServerConfig,
        write_kubeconfig,
    )

    # Handle SIGTERM/SIGINT from the first moment: a stop during start-up finishes
    # the step under way, then shuts down what has started.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    data_dir: Path = (args.data_dir or default_data_dir()).resolve()
    node_components = args.runtime != "none"
    steps = 4 + (3 if node_components else 0) + (1 if args.fake_nodes else 0)
    progress = Progress(total=steps)
    t = progress.begin(f"starting the apiserver (state in {data_dir})")
    apiserver = APIServer(APIServerConfig(data_dir=data_dir, host=args.bind_address,
                                          port=args.port, grpc_port=args.grpc_port,
                                          http2=args.http2))
    await apiserver.start()
    progress.done(t, f"REST {apiserver.url}, gRPC {apiserver.grpc_address}")
    supervisor = Supervisor(data_dir / "logs")
    try:
        if node_components:
            shim_root = data_dir / "runtime-shim"
            socket_path = data_dir / "run" / "cri.sock"
            socket_path.parent.mkdir(parents=True, exist_ok=True)
            t = progress.begin("building local images (busybox, pause)")
            progress.done(t, await _prepare_images(data_dir, shim_root))
            t = progress.begin(f"starting the runtime shim ({args.runtime} backend)")
            await supervisor.start(Component(
                "runtime-shim",
                ["runtime-shim", "--backend", args.runtime, "--listen", f"unix://{socket_path}",
                 "--root", str(shim_root), "--bridge", args.pod_bridge,
                 "--pod-cidr", args.pod_cidr],
                ready=lambda: _runtime_ready(socket_path),
                before_stop=lambda: _remove_all_pods(socket_path)))
            progress.done(t, f"unix://{socket_path}")
        host = args.bind_address
        grpc_url = f"grpc://{apiserver.grpc_address}"
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
        if node_components:
            node_name = args.node_name or socket.gethostname().lower()
            t = progress.begin(f"starting the kubelet (node {node_name})")
            port = _free_port(host)
            await supervisor.start(Component(
                "kubelet",
                ["kubelet", "--node-name", node_name,
                 "--runtime-endpoint", f"unix://{socket_path}", "--apiserver", grpc_url,
                 "--root-dir", str(data_dir / "kubelet"), "--address", host,
                 "--node-ip", host, "--port", str(port),
                 "--pod-manifest-path", str(data_dir / "manifests")],
                ready=_node_ready(apiserver.url, node_name)))
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
        await supervisor.stop()
        await apiserver.stop()
        raise
    print(f"\npilothouse is ready ({time.monotonic() - progress.started:.1f}s). Use it with:\n"
          f"  export KUBECONFIG={kubeconfig}\n  kubectl get namespaces\n"
          f"Component logs: {data_dir / 'logs'}\n"
          "Stop with Ctrl-C; `pilothouse up` again resumes the same cluster.", flush=True)
    try:
        await stop.wait()
    finally:
        print("stopping ...", flush=True)
        await supervisor.stop()  # components first: they may still talk to the apiserver
        await apiserver.stop()
    print("pilothouse stopped.", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, verbose=args.verbose)
    try:
        return run_event_loop(_up(args))
    except (OSError, StorageError, ComponentFailed) as exc:
        print(f"pilothouse up failed: {exc}", file=sys.stderr)
        return 1
