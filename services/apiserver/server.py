"""``pilothouse apiserver``: storage + registry + REST frontend in one asyncio process.

``APIServer`` is also the library entry point tests and ``pilothouse up`` use:

    async with APIServer(APIServerConfig(data_dir=tmp_path, port=0)) as server:
        print(server.url)

Start-up order: open storage (a corrupt or newer database fails here with a
clear error), start one watch cache per kind, make the system namespaces,
then listen. Shutdown (SIGTERM/SIGINT or leaving the context) stops
listening, ends every watch and closes storage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from pilothouse.api.kinds import KindRegistry
from pilothouse.logs import setup_logging
from pilothouse.loop import (
    freeze_startup_heap,
    run_event_loop,
    shorten_switch_interval,
    tune_gc_for_growing_heap,
)
from pilothouse.services.apiserver import strategies  # noqa: F401  (registers strategies)
from pilothouse.services.apiserver.grpc_frontend import GRPCServer
from pilothouse.services.apiserver.metrics import APIServerMetrics
from pilothouse.services.apiserver.registry import Registry
from pilothouse.services.apiserver.rest import RestAPI
from pilothouse.services.apiserver.strategies.allocators import default_allocators
from pilothouse.services.apiserver.strategies.services import held_values
from pilothouse.services.apiserver.streaming import PassThroughWebSocketProtocol
from pilothouse.storage import CompactionPolicy, Compactor, open_storage
from pilothouse.storage.interface import Storage, StorageError

log = logging.getLogger("pilothouse.apiserver")

DEFAULT_PORT = 6443
DEFAULT_GRPC_PORT = 6444
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORTS = "30000-32767"


@dataclass
class APIServerConfig:
    data_dir: Path | None = None
    storage_url: str = ""  # default: sqlite in data_dir (memory:// when no data_dir)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    grpc_port: int | None = 0  # the gRPC frontend (0: any free port; None: not served)
    service_cidr: str = DEFAULT_SERVICE_CIDR
    node_port_range: str = DEFAULT_NODE_PORTS
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)
    http2: bool = False  # serve HTTP/1.1 and HTTP/2 (hypercorn) instead of HTTP/1.1 only
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        if self.data_dir is not None:
            return f"sqlite://{Path(self.data_dir).resolve() / 'state.db'}"
        return "memory://"


class APIServer:
    def __init__(self, config: APIServerConfig) -> None:
        self.config = config
        self.metrics = APIServerMetrics()
        self.storage: Storage | None = None
        self.registry: Registry | None = None
        self.app: RestAPI | None = None
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._hypercorn_stop: asyncio.Event | None = None
        self.grpc: GRPCServer | None = None
        self.port = config.port
        self.grpc_port = config.grpc_port or 0
        self.ready = False

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC frontend (``pilothouse.apiserver.v1.API``)."""
        return f"{self.config.host}:{self.grpc_port}"

    async def start(self) -> None:
        if self.config.data_dir is not None:
            await asyncio.to_thread(Path(self.config.data_dir).mkdir, parents=True,
                                    exist_ok=True)
        self.storage = await open_storage(self.config.resolved_storage_url())
        allocators = default_allocators(self.config.service_cidr, self.config.node_port_range)
        # Keep a window of history (5 min / 1000 revisions), as Kubernetes compacts etcd.
        self._compactor = asyncio.create_task(
            Compactor(self.storage, policy=self.config.compaction).run(), name="compactor")
        self.registry = Registry(self.storage, KindRegistry.builtin(), allocators=allocators)
        await self.registry.start()
        await self._seed_allocators()
        self.app = RestAPI(self.registry, metrics=self.metrics,
                           server_address=f"{self.config.host}:{self.config.port}",
                           is_ready=lambda: self.ready)
        if self.config.http2:
            await self._serve_hypercorn()
        else:
            await self._serve_uvicorn()
        self.app.server_address = f"{self.config.host}:{self.port}"
        if self.config.grpc_port is not None:
            self.grpc = GRPCServer(self.registry, metrics=self.metrics)
            self.grpc_port = await self.grpc.start(self.config.host, self.config.grpc_port)
            await self.grpc.set_serving(True)
            log.info("apiserver gRPC listening", extra={"address": self.grpc_address})
        freeze_startup_heap()
        _tune_process()
        self.ready = True
        log.info("apiserver listening", extra={"url": self.url})

    async def _serve_uvicorn(self) -> None:
        """HTTP/1.1 with httptools: the fastest path, the default."""
        assert self.app is not None
        # uvicorn binds the socket itself: a socket passed in loses TCP_NODELAY on
        # accepted connections, which costs 40 ms per keep-alive request.
        uv_config = uvicorn.Config(self.app, host=self.config.host, port=self.config.port,
                                   log_config=None, access_log=False, lifespan="off",
                                   timeout_graceful_shutdown=2, timeout_keep_alive=120,
                                   http="httptools", loop="none",
                                   # pods/exec & co. (streaming.py): any subprotocol
                                   ws=PassThroughWebSocketProtocol, ws_per_message_deflate=False)
        self._server = uvicorn.Server(uv_config)
        server = self._server
        where = f"{self.config.host}:{self.config.port}"

        async def serve() -> None:
            # uvicorn calls sys.exit when it cannot bind; a SystemExit escaping a
            # task would stop the whole event loop, so it becomes an OSError here.
            try:
                await server.serve()
            except SystemExit:
                raise OSError(f"cannot listen on {where} (address in use?)") from None

        self._serve_task = asyncio.create_task(serve())
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()  # raises the OSError
                raise OSError(f"cannot listen on {where}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def _serve_hypercorn(self) -> None:
        """HTTP/1.1 and HTTP/2 (h2c, prior knowledge or upgrade) on one port."""
        assert self.app is not None
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        port = self.config.port or _free_port(self.config.host)
        config = Config()
        config.bind = [f"{self.config.host}:{port}"]
        config.accesslog = None
        config.errorlog = None
        config.keep_alive_timeout = 120
        config.graceful_timeout = 2
        self._hypercorn_stop = asyncio.Event()
        self._serve_task = asyncio.create_task(
            serve(self.app, config, shutdown_trigger=self._hypercorn_stop.wait,  # type: ignore[arg-type]
                  mode="asgi"))
        deadline = asyncio.get_running_loop().time() + 10
        while not await _listening(self.config.host, port):
            if self._serve_task.done():
                self._serve_task.result()
                raise OSError(f"cannot listen on {self.config.host}:{port}")
            if asyncio.get_running_loop().time() > deadline:
                raise OSError(f"HTTP/2 server did not start on {self.config.host}:{port}")
            await asyncio.sleep(0.02)
        self.port = port

    async def _seed_allocators(self) -> None:
        """Mark cluster IPs and node ports of stored Services as taken."""
        assert self.registry is not None
        services = self.registry.store_for("", "services")
        stored = [cached.obj for cached in services.cache.list()]
        for allocator, value in held_values(stored):  # type: ignore[arg-type]
            self.registry.allocators[allocator].mark_used([value])

    async def stop(self) -> None:
        self.ready = False
        if self.grpc is not None:
            await self.grpc.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._hypercorn_stop is not None:
            self._hypercorn_stop.set()
        if self._serve_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._serve_task, 5)
        if self.registry is not None:
            await self.registry.stop()
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        if self.storage is not None:
            await self.storage.close()

    async def __aenter__(self) -> APIServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


_process_tuned = False


def _tune_process() -> None:
    """Process-wide settings for serving (pilothouse/loop.py says why): the
    collector policy for a cache that grows, and a short GIL switch interval so
    the storage threads' results reach the loop without waiting. Once per process."""
    global _process_tuned
    if not _process_tuned:
        _process_tuned = True
        tune_gc_for_growing_heap()
        shorten_switch_interval()


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _listening(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    return True


def write_kubeconfig(path: Path, url: str, *, name: str = "pilothouse") -> Path:
    """An admin kubeconfig for ``url`` (written atomically, mode 0600)."""
    text = (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {name}\n"
        "  cluster:\n"
        f"    server: {url}\n"
        "users:\n"
        "- name: admin\n"
        "  user: {}\n"
        "contexts:\n"
        f"- name: {name}\n"
        "  context:\n"
        f"    cluster: {name}\n"
        "    user: admin\n"
        "    namespace: default\n"
        f"current-context: {name}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


async def run_until_signalled(*servers: Any) -> None:
    """Wait for SIGTERM/SIGINT, then stop ``servers`` in reverse order."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for server in reversed(servers):
            await server.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where state lives (SQLite database); default: in memory")
    parser.add_argument("--storage", default="",
                        help="storage URL: sqlite:///PATH, memory:// (default: sqlite in "
                             "--data-dir)")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help="port of the gRPC frontend (0: any free port)")
    parser.add_argument("--service-cluster-ip-range", default=DEFAULT_SERVICE_CIDR)
    parser.add_argument("--service-node-port-range", default=DEFAULT_NODE_PORTS)
    parser.add_argument("--http2", action="store_true",
                        help="serve HTTP/2 (h2c) beside HTTP/1.1 (slower HTTP/1.1 path)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true")


def config_from_args(args: argparse.Namespace) -> APIServerConfig:
    return APIServerConfig(data_dir=args.data_dir, storage_url=args.storage,
                           host=args.bind_address, port=args.port, grpc_port=args.grpc_port,
                           service_cidr=args.service_cluster_ip_range,
                           node_port_range=args.service_node_port_range, http2=args.http2)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, verbose=args.verbose)

    async def main() -> None:
        server = APIServer(config_from_args(args))
        await server.start()
        if args.data_dir is not None:
            kubeconfig = write_kubeconfig(Path(args.data_dir) / "kubeconfig", server.url)
            print(f"kubeconfig: {kubeconfig}", flush=True)
        await run_until_signalled(server)

    try:
        run_event_loop(main())
    except (OSError, StorageError) as exc:
        log.error("apiserver failed: %s", exc)
        return 1
    return 0
