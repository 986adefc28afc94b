"""``pilothouse fake-nodes``: N simulated nodes (KWOK-like) as one process.

Registers the nodes, keeps their leases fresh and moves pods bound to them to
Running with a pod IP (``pilothouse.services.scheduler.fakenodes.FakeNodes``),
so the scheduler and controllers can be exercised at thousands of nodes on
one machine. ``pilothouse up --fake-nodes N`` runs it as a component.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from pilothouse.client import connect
from pilothouse.logs import setup_logging
from pilothouse.loop import run_event_loop

log = logging.getLogger("pilothouse.fakenodes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", default="grpc://127.0.0.1:6444",
                        help="apiserver URL: grpc://host:port or http(s)://host:port")
    parser.add_argument("--count", type=int, required=True, help="how many nodes")
    parser.add_argument("--prefix", default="fake-node-")
    parser.add_argument("--cpu", default="32")
    parser.add_argument("--memory", default="256Gi")
    parser.add_argument("--pods", default="110")
    parser.add_argument("--zones", default="zone-a,zone-b,zone-c",
                        help="comma-separated topology.kubernetes.io/zone values, round-robin")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")


async def _main(args: argparse.Namespace) -> None:
    from pilothouse.services.scheduler.fakenodes import FakeNodes

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with connect(args.master) as client:
        nodes = FakeNodes(client, args.count, prefix=args.prefix, cpu=args.cpu,
                          memory=args.memory, pods=args.pods,
                          zones=[z for z in args.zones.split(",") if z])
        task = asyncio.create_task(nodes.run())
        await nodes.registered.wait()
        log.info("fake nodes registered", extra={"count": args.count})
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format)
    if args.count < 1:
        print("--count must be at least 1")
        return 2
    run_event_loop(_main(args))
    return 0
