"""``pilothouse scheduler``: the process, its HTTP endpoint, and ``explain``.

The scheduler serves, on its own port (10259 by default, plain HTTP):
``/metrics`` (Prometheus), ``/healthz`` ``/livez``, ``/readyz`` (informers
synced), ``/debug/explain/NAMESPACE/POD`` (the pod's last attempt as JSON)
and ``/debug/queue`` (pending pods per queue).

``pilothouse scheduler explain NAMESPACE/POD`` reads the explain endpoint
and prints, per node, the filter that rejected it and, for the best nodes,
each score plugin's raw and normalized score.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilothouse.logs import setup_logging
from pilothouse.loop import run_event_loop
from pilothouse.services.scheduler.config import ConfigError, default_config, load_config
from pilothouse.services.scheduler.explain import format_attempt
from pilothouse.services.scheduler.scheduler import Scheduler

__all__ = ["SchedulerHTTP", "add_arguments", "run"]

log = logging.getLogger("pilothouse.scheduler")

DEFAULT_PORT = 10259
DEFAULT_MASTER = "http://127.0.0.1:6443"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SchedulerHTTP:
    """The scheduler's own small HTTP server (an ASGI app on uvicorn)."""

    def __init__(self, scheduler: Scheduler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.scheduler = scheduler
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status, ctype, body = self.handle(scope.get("method", "GET"), scope["path"])
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def handle(self, method: str, path: str) -> tuple[int, str, bytes]:
        s = self.scheduler
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path in ("/healthz", "/livez"):
            return 200, "text/plain", b"ok"
        if path == "/readyz":
            if s.synced:
                return 200, "text/plain", b"ok"
            return 503, "text/plain", b"informers not synced\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(s.metrics.registry)
        if path == "/debug/queue":
            return 200, "application/json", json.dumps(s.queue.pending()).encode()
        if path.startswith("/debug/explain/"):
            key = path.removeprefix("/debug/explain/")
            if key.count("/") != 1 or not all(key.split("/")):
                return 400, "application/json", json.dumps(
                    {"error": "expected /debug/explain/NAMESPACE/POD"}).encode()
            attempt = s.explain.get(key)
            if attempt is None:
                where = s.queue.where(key)
                msg = (f"pod {key} is queued ({where}) and has not been tried yet" if where
                       else f"no scheduling attempt of pod {key} is known to this scheduler")
                return 404, "application/json", json.dumps({"error": msg}).encode()
            doc = attempt.to_dict()
            doc["queue"] = s.queue.where(key)
            return 200, "application/json", json.dumps(doc).encode()
        return 404, "text/plain", b"not found\n"

    async def start(self) -> None:
        config = uvicorn.Config(self, host=self.host, port=self.port, log_config=None,
                                access_log=False, lifespan="off", loop="none",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                with contextlib.suppress(SystemExit):
                    self._task.result()
                raise OSError(f"cannot listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(SystemExit, asyncio.CancelledError):
                await self._task


# -- the command -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", default=DEFAULT_MASTER,
                        help="apiserver URL: http(s)://host:port or grpc://host:port "
                             f"(default {DEFAULT_MASTER})")
    parser.add_argument("--config", default="", help="KubeSchedulerConfiguration YAML file")
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port for /metrics, /healthz, /readyz, /debug/explain "
                             f"(default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--leader-elect", choices=["true", "false"], default=None,
                        help="override leaderElection.leaderElect of the configuration")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    explain = sub.add_parser("explain", help="why a pod went where it went, or fits nowhere")
    explain.add_argument("pod", metavar="NAMESPACE/POD")
    explain.add_argument("--address", default=f"http://127.0.0.1:{DEFAULT_PORT}",
                         help="the scheduler's HTTP address")
    explain.add_argument("-o", "--output", choices=["text", "json"], default="text")


def explain_main(args: argparse.Namespace) -> int:
    import httpx

    key = args.pod
    if key.count("/") != 1 or not all(key.split("/")):
        print(f"error: expected NAMESPACE/POD, got {key!r}", file=sys.stderr)
        return 2
    url = f"{args.address.rstrip('/')}/debug/explain/{key}"
    try:
        resp = httpx.get(url, timeout=10)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the scheduler at {args.address}: {exc}", file=sys.stderr)
        return 1
    try:
        doc = resp.json()
    except ValueError:
        print(f"error: unexpected answer from {url}: HTTP {resp.status_code}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(f"error: {doc.get('error', resp.text)}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2) if args.output == "json" else format_attempt(doc))
    return 0


async def serve(args: argparse.Namespace) -> None:
    from pilothouse.client import connect

    config = load_config(args.config) if args.config else default_config()
    if args.leader_elect is not None:
        config.leader_election.leader_elect = args.leader_elect == "true"
    client = connect(args.master)
    scheduler = Scheduler(client, config=config, freeze_heap_after_sync=True)
    http = SchedulerHTTP(scheduler, args.bind_address, args.port)
    await http.start()
    log.info("scheduler serving", extra={"url": http.url, "master": args.master})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(scheduler.run())
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([runner, stopper], return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            runner.result()
    finally:
        runner.cancel()
        stopper.cancel()
        await asyncio.gather(runner, stopper, return_exceptions=True)
        await http.stop()
        await client.close()


def run(args: argparse.Namespace) -> int:
    if args.action == "explain":
        return explain_main(args)
    setup_logging(args.log_format, verbose=args.verbose)
    try:
        run_event_loop(serve(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        log.error("scheduler failed: %s", exc)
        return 1
    return 0
