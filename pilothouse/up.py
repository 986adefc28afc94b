"""``pilothouse up``: a whole working cluster on this machine, in one command.

Starts the components in one process, each as it lands (today: the apiserver
with SQLite storage under ``--data-dir``), writes ``DATA_DIR/kubeconfig``,
shows progress until the cluster is ready, and stops cleanly on Ctrl-C or
SIGTERM. Running it again on the same data dir resumes the same cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pilothouse.logs import setup_logging
from pilothouse.loop import run_event_loop
from pilothouse.storage.interface import StorageError


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


async def _up(args: argparse.Namespace) -> int:
    from pilothouse.services.apiserver.server import (
        APIServer,
        APIServerConfig,
        run_until_signalled,
        write_kubeconfig,
    )

    data_dir: Path = (args.data_dir or default_data_dir()).resolve()
    progress = Progress(total=2)
    t = progress.begin(f"starting the apiserver (state in {data_dir})")
    apiserver = APIServer(APIServerConfig(data_dir=data_dir, host=args.bind_address,
                                          port=args.port, grpc_port=args.grpc_port,
                                          http2=args.http2))
    await apiserver.start()
    progress.done(t, f"REST {apiserver.url}, gRPC {apiserver.grpc_address}")
    t = progress.begin("writing the admin kubeconfig")
    kubeconfig = write_kubeconfig(data_dir / "kubeconfig", apiserver.url)
    progress.done(t, str(kubeconfig))
    print(f"\npilothouse is ready ({time.monotonic() - progress.started:.1f}s). Use it with:\n"
          f"  export KUBECONFIG={kubeconfig}\n  kubectl get namespaces\n"
          "Stop with Ctrl-C; `pilothouse up` again resumes the same cluster.", flush=True)
    await run_until_signalled(apiserver)
    print("pilothouse stopped.", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, verbose=args.verbose)
    try:
        return run_event_loop(_up(args))
    except (OSError, StorageError) as exc:
        print(f"pilothouse up failed: {exc}", file=sys.stderr)
        return 1
