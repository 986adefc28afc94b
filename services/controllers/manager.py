"""``pilothouse controller-manager``: every controller in one process, one leader at a time.

    client ──▶ LeaderElector (Lease kube-system/kube-controller-manager)
                 └─ while leading: one SharedInformerFactory, and for each
                    enabled descriptor ``start(ctx)`` in one TaskGroup

A controller that raises takes the whole group down (structured concurrency:
nothing fails silently); losing the lease stops every controller and the
process exits non-zero so that its supervisor restarts it as a candidate, as
kube-controller-manager does. ``/healthz``, ``/readyz`` and ``/metrics`` are
served on their own small HTTP port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from pilothouse.client import (
    Client,
    ClientError,
    EventRecorder,
    LeaderElector,
    SharedInformerFactory,
    connect,
)
from pilothouse.client.clock import AsyncClock, real_clock
from pilothouse.logs import setup_logging
from pilothouse.loop import run_event_loop
from pilothouse.services.controllers.base import ControllerContext, ControllerDescriptor

__all__ = ["ControllerManager", "HealthServer", "add_arguments", "run",
           "select_controllers"]

log = logging.getLogger("pilothouse.controllers.manager")

DEFAULT_APISERVER = "grpc://127.0.0.1:6444"
DEFAULT_PORT = 10257
LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kube-controller-manager"
SHUTDOWN_GRACE = 10.0

LEADER_STATUS = Gauge("leader_election_master_status",
                      "1 while this process leads (Kubernetes' leader election metric)",
                      ["name"])


# -- which controllers ----------------------------------------------------------------------

def select_controllers(spec: str | Sequence[str],
                       known: Sequence[ControllerDescriptor]) -> list[ControllerDescriptor]:
    """The descriptors ``--controllers`` enables (kube-controller-manager's rules).

    ``*`` enables every controller that is on by default, ``foo`` enables
    ``foo``, ``-foo`` disables it (a disable wins, whatever the order).
    Unknown names raise ``ValueError`` listing the known ones.
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise ValueError("--controllers is empty: give '*' or controller names")
    names = {d.name for d in known}
    for item in items:
        name = item.removeprefix("-")
        if item != "*" and name not in names:
            raise ValueError(f"unknown controller {name!r}; known controllers: "
                             f"{', '.join(sorted(names))}")
    star = "*" in items
    chosen = []
    for desc in known:
        if f"-{desc.name}" in items:
            continue
        if desc.name in items or (star and desc.enabled_by_default):
            chosen.append(desc)
    return chosen


# -- the manager ------------------------------------------------------------------------------

class ControllerManager:
    """Runs ``controllers`` against ``client``, under leader election when ``elector`` is set."""

    def __init__(self, client: Client, controllers: Sequence[ControllerDescriptor], *,
                 elector: LeaderElector | None = None, workers: int = 5,
                 settings: dict[str, object] | None = None,
                 clock: AsyncClock | None = None) -> None:
        self.client = client
        self.controllers = list(controllers)
        self.elector = elector
        self.workers = workers
        self.settings = dict(settings or {})
        self.clock = clock or real_clock()
        self.factory: SharedInformerFactory | None = None
        self.leading = False
        self.synced = False
        self.leadership_lost = False

    @property
    def ready(self) -> bool:
        """Ready: leading with synced caches, or a standby that can see the leader."""
        if self.elector is not None and not self.leading:
            return bool(self.elector.get_leader())
        return self.synced

    async def run(self) -> None:
        """Run until cancelled; returns when leadership is lost (``leadership_lost``)."""
        if self.elector is None:
            await self.run_controllers()
            return
        await self.elector.run(self.run_controllers, on_stopped_leading=self._stopped_leading,
                               on_new_leader=self._new_leader)
        self.leadership_lost = True

    def _new_leader(self, identity: str) -> None:
        log.info("new leader", extra={"leader": identity})

    def _stopped_leading(self) -> None:
        self.leading = False
        LEADER_STATUS.labels(LEASE_NAME).set(0)

    async def run_controllers(self) -> None:
        """Start the informers and every controller; return only if all of them do."""
        self.leading = True
        LEADER_STATUS.labels(LEASE_NAME).set(1)
        factory = SharedInformerFactory(self.client, clock=self.clock)
        self.factory = factory
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(factory.shutdown)
            recorders = {}
            for desc in self.controllers:
                recorder = EventRecorder(self.client, f"{desc.name}-controller",
                                         clock=self.clock)
                recorders[desc.name] = await stack.enter_async_context(recorder)
            async with asyncio.TaskGroup() as group:
                for desc in self.controllers:
                    ctx = ControllerContext(self.client, factory, recorders[desc.name],
                                            clock=self.clock, workers=self.workers,
                                            settings=self.settings)
                    group.create_task(_run(desc.start(ctx)), name=f"controller:{desc.name}")
                    log.info("starting controller", extra={"controller": desc.name})
                group.create_task(self._watch_sync(factory))

    async def _watch_sync(self, factory: SharedInformerFactory) -> None:
        await asyncio.sleep(0)  # let every controller ask for its informers first
        factory.start()
        await factory.wait_for_sync()
        self.synced = True
        log.info("caches synced", extra={"informers": len(factory.informers)})


async def _run(work: Awaitable[None]) -> None:
    await work


# -- health and metrics -------------------------------------------------------------------------

class HealthServer:
    """``/healthz``, ``/livez``, ``/readyz`` and ``/metrics`` over plain HTTP/1.1.

    Deliberately tiny: one request per connection, GET only, no keep-alive.
    """

    def __init__(self, manager: ControllerManager, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT) -> None:
        self.manager = manager
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def respond(self, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path in ("/healthz", "/livez"):
            return 200, "text/plain; charset=utf-8", b"ok"
        if path == "/readyz":
            if self.manager.ready:
                return 200, "text/plain; charset=utf-8", b"ok"
            return 503, "text/plain; charset=utf-8", b"not ready: caches not synced"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
        return 404, "text/plain; charset=utf-8", b"404 page not found"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            if len(parts) != 3:
                code, ctype, body = 400, "text/plain; charset=utf-8", b"bad request"
            elif parts[0] not in ("GET", "HEAD"):
                code, ctype, body = 405, "text/plain; charset=utf-8", b"method not allowed"
            else:
                code, ctype, body = self.respond(parts[1])
                if parts[0] == "HEAD":
                    body = b""
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                      405: "Method Not Allowed", 503: "Service Unavailable"}[code]
            writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# -- command line -------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apiserver", default=DEFAULT_APISERVER,
                        help="apiserver URL: grpc://host:port (default %(default)s) or "
                             "http(s)://host:port")
    parser.add_argument("--controllers", default="*",
                        help="comma-separated controllers to run: '*' for the defaults, "
                             "'foo' enables foo, '-foo' disables it (e.g. '*,-job')")
    parser.add_argument("--bind-address", default="127.0.0.1",
                        help="address for /healthz, /readyz, /metrics")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port for /healthz, /readyz, /metrics (0: any free port)")
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                        help="take the kube-system/kube-controller-manager Lease before "
                             "running controllers (default on)")
    parser.add_argument("--leader-elect-lease-duration", type=float, default=15.0)
    parser.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    parser.add_argument("--leader-elect-retry-period", type=float, default=2.0)
    parser.add_argument("--leader-elect-resource-namespace", default=LEASE_NAMESPACE)
    parser.add_argument("--leader-elect-resource-name", default=LEASE_NAME)
    parser.add_argument("--identity", default="",
                        help="leader election identity (default: hostname_<random>)")
    parser.add_argument("--workers", type=int, default=5,
                        help="workers per controller unless --concurrent says otherwise")
    parser.add_argument("--concurrent", action="append", default=[], metavar="NAME=N",
                        help="workers of one controller, e.g. replicaset=10 (repeatable)")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a controller setting, e.g. node-monitor-grace-period=40 "
                             "(repeatable)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("-v", "--verbose", action="store_true")


def _parse_settings(args: argparse.Namespace,
                    controllers: Sequence[ControllerDescriptor]) -> dict[str, object]:
    settings: dict[str, object] = {}
    names = {d.name for d in controllers}
    for item in args.concurrent:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--concurrent {item!r}: expected NAME=N with N >= 1")
        if name not in names:
            raise ValueError(f"--concurrent {item!r}: unknown controller {name!r}")
        settings[f"concurrent-{name}-syncs"] = int(value)
    for item in args.setting:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--setting {item!r}: expected KEY=VALUE")
        parsed: object = value
        with contextlib.suppress(ValueError):
            parsed = float(value)
            if float(value).is_integer() and "." not in value:
                parsed = int(value)
        settings[key] = parsed
    return settings


def _validate(args: argparse.Namespace) -> None:
    if not args.apiserver.startswith(("grpc://", "http://", "https://")):
        raise ValueError(f"--apiserver {args.apiserver!r}: expected grpc://host:port or "
                         "http(s)://host:port")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: must be 0..65535")
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be at least 1")
    if args.leader_elect and not (args.leader_elect_lease_duration >
                                  args.leader_elect_renew_deadline >
                                  args.leader_elect_retry_period > 0):
        raise ValueError("leader election needs lease-duration > renew-deadline > "
                         "retry-period > 0")


def run(args: argparse.Namespace) -> int:
    from pilothouse.services.controllers.registry import CONTROLLERS

    try:
        _validate(args)
        controllers = select_controllers(args.controllers, CONTROLLERS)
        settings = _parse_settings(args, CONTROLLERS)
    except ValueError as exc:
        print(f"pilothouse controller-manager: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_format, verbose=args.verbose)
    try:
        return run_event_loop(_serve(args, controllers, settings))
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace, controllers: list[ControllerDescriptor],
                 settings: dict[str, object]) -> int:
    client = connect(args.apiserver)
    elector = None
    if args.leader_elect:
        identity = args.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        elector = LeaderElector(client, args.leader_elect_resource_namespace,
                                args.leader_elect_resource_name, identity,
                                lease_duration=args.leader_elect_lease_duration,
                                renew_deadline=args.leader_elect_renew_deadline,
                                retry_period=args.leader_elect_retry_period)
    manager = ControllerManager(client, controllers, elector=elector, workers=args.workers,
                                settings=settings)
    health = HealthServer(manager, args.bind_address, args.port)
    try:
        await health.start()
    except OSError as exc:
        print(f"pilothouse controller-manager: error: cannot listen on "
              f"{args.bind_address}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        await client.close()
        return 1
    log.info("serving health and metrics", extra={"address": f"{health.host}:{health.port}",
                                                  "controllers": ",".join(
                                                      d.name for d in controllers)})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(manager.run(), name="controller-manager")
    stopper = asyncio.create_task(stop.wait())
    code = 0
    try:
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            failure = runner.exception()
            if failure is not None:
                log.error("controller-manager failed", exc_info=failure)
                code = 1
            elif manager.leadership_lost:
                log.error("leader election lost")
                code = 1
        else:
            log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        stopper.cancel()
        runner.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_GRACE):
                await asyncio.gather(runner, return_exceptions=True)
        await health.stop()
        with contextlib.suppress(ClientError, OSError):
            await client.close()
    return code
