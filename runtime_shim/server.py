"""The CRI gRPC server: thin servicers over a :class:`RuntimeBackend`.

Every RPC of ``runtime.v1.RuntimeService`` and ``runtime.v1.ImageService`` is
served by the same three steps — check the request's shape
(:mod:`~pilothouse.runtime_shim.validate`), call the backend method named after
the RPC (``RunPodSandbox`` → ``run_pod_sandbox``), turn a
:class:`~pilothouse.runtime_shim.errors.CRIError` into its status code — so the
servicer methods are built from the service descriptors rather than written
out 34 times. ``GetContainerEvents`` is the one server stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from pilothouse.loop import freeze_startup_heap, tune_gc
from pilothouse.runtime_shim.backend import RuntimeBackend
from pilothouse.runtime_shim.errors import CRIError
from pilothouse.runtime_shim.validate import CHECKS

log = logging.getLogger(__name__)

STREAMING = {"GetContainerEvents"}


def snake(name: str) -> str:
    """``RunPodSandbox`` → ``run_pod_sandbox``; ``ExecSync`` → ``exec_sync``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unary(name: str) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    method = snake(name)
    check = CHECKS.get(name)

    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if check is not None:
                check(request)
            return await getattr(self.backend, method)(request)
        except CRIError as err:
            await context.abort(err.code, err.message)
        except Exception as err:  # a bug or an OS failure: say what, keep serving
            log.exception("%s failed", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"{name}: {type(err).__name__}: {err}")

    handler.__name__ = name
    return handler


async def _container_events(
    self: Any, request: cri.GetEventsRequest, context: grpc.aio.ServicerContext
) -> AsyncIterator[cri.ContainerEventResponse]:
    async for event in self.backend.container_events():
        yield event


def _servicer(base: type, service: str) -> type:
    attrs: dict[str, Any] = {
        "__init__": lambda self, backend: setattr(self, "backend", backend),
        "__doc__": f"runtime.v1.{service} served by a RuntimeBackend.",
    }
    for method in cri.DESCRIPTOR.services_by_name[service].methods:
        if method.name == "GetContainerEvents":
            attrs[method.name] = _container_events
        else:
            attrs[method.name] = _unary(method.name)
    return type(f"{service}Servicer", (base,), attrs)


RuntimeServicer = _servicer(cri_grpc.RuntimeServiceServicer, "RuntimeService")
ImageServicer = _servicer(cri_grpc.ImageServiceServicer, "ImageService")


def unix_path(listen: str) -> Path:
    """The socket path of ``unix:///run/x.sock`` (or a bare path)."""
    if listen.startswith("unix://"):
        listen = listen.removeprefix("unix://")
    if not listen.startswith("/"):
        raise ValueError(f"--listen must be unix:///ABSOLUTE/PATH, got {listen!r}")
    return Path(listen)


async def start_server(backend: RuntimeBackend, listen: str,
                       streaming_address: str | None = "127.0.0.1:0") -> grpc.aio.Server:
    """Start serving ``backend`` on the unix socket ``listen``; returns the running server.

    A backend that can stream (``stream_exec``, ``stream_attach``,
    ``port_forward_netns``) also gets a streaming server on ``streaming_address``
    (as its ``streaming`` attribute): the URLs Exec, Attach and PortForward answer.
    The streaming server stops with the gRPC server (``server.stop``)."""
    path = unix_path(listen)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket from a previous shim
    streaming = None
    if streaming_address is not None and hasattr(backend, "stream_exec"):
        from pilothouse.runtime_shim.streaming import StreamingServer

        streaming = StreamingServer(backend, streaming_address)  # type: ignore[arg-type]
        await streaming.start()
        backend.streaming = streaming  # type: ignore[attr-defined]
    await backend.start()
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024),
                 ("grpc.max_send_message_length", 16 * 1024 * 1024)],
    )
    cri_grpc.add_RuntimeServiceServicer_to_server(RuntimeServicer(backend), server)
    cri_grpc.add_ImageServiceServicer_to_server(ImageServicer(backend), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            cri.DESCRIPTOR.services_by_name["RuntimeService"].full_name,
            cri.DESCRIPTOR.services_by_name["ImageService"].full_name,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    if streaming is not None:
        _stop = server.stop

        async def stop(grace: float | None) -> None:
            await _stop(grace)
            await streaming.close()

        server.stop = stop
    os.chmod(path, 0o660)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server


async def serve(backend: RuntimeBackend, listen: str,
                streaming_address: str | None = "127.0.0.1:0") -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully (bounded) and close the backend."""
    # every RPC allocates protobuf and gRPC objects; with the default thresholds a third
    # of the shim's CPU under a burst of pod starts went to full collections walking the
    # start-up heap (modules, descriptors): collect less often, and never that heap again
    tune_gc()
    server = await start_server(backend, listen, streaming_address)
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("runtime shim (%s) serving on %s", backend.name, listen)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=5)
        await backend.close()
