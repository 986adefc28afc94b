"""``pilothouse runtime-shim``: serve the CRI on a unix socket with a chosen backend.

    pilothouse runtime-shim --backend process --listen unix:///run/pilothouse/cri.sock \
        --root /var/lib/pilothouse/runtime-shim
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pilothouse.loop import run_event_loop
from pilothouse.runtime_shim.backend import RuntimeBackend

DEFAULT_LISTEN = "unix:///run/pilothouse/cri.sock"
DEFAULT_ROOT = Path("/var/lib/pilothouse/runtime-shim")
DEFAULT_NETNS_POOL = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["process", "containerd"], default="process")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="unix:///PATH of the CRI socket")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="state, images and container files")
    parser.add_argument("--bridge", default="pilothouse0",
                        help="pod bridge (process: its own; containerd: the CNI bridge)")
    parser.add_argument("--pod-cidr", default="10.88.0.0/16",
                        help="pod IPs (process: its own IPAM; containerd: CNI host-local)")
    parser.add_argument("--cgroup-parent", default="/pilothouse",
                        help="cgroup of sandboxes without a cgroup_parent")
    parser.add_argument("--containerd-address", default="unix:///run/containerd/containerd.sock",
                        help="containerd backend: containerd's gRPC socket")
    parser.add_argument("--containerd-namespace", default="pilothouse",
                        help="containerd backend: the containerd namespace to use")
    parser.add_argument("--cni-bin-dir", default="/usr/lib/cni",
                        help="containerd backend: CNI plugin binaries")
    parser.add_argument("--streaming-address", default="127.0.0.1:0",
                        help="HOST:PORT of the streaming server behind Exec, Attach and "
                        "PortForward (port 0: any free port)")
    parser.add_argument("--netns-pool", type=int, default=DEFAULT_NETNS_POOL, metavar="N",
                        help="process: network namespaces kept ready (wired to the bridge), "
                        "so a new sandbox does not wait for one (0: none)")
    parser.add_argument("--log-level", default="INFO")


def make_backend(args: argparse.Namespace) -> RuntimeBackend:
    if args.backend == "process":
        from pilothouse.runtime_shim.process.backend import ProcessBackend

        if args.netns_pool < 0:
            raise ValueError(f"--netns-pool must be 0 or more, not {args.netns_pool}")
        return ProcessBackend(root=args.root, bridge=args.bridge, pod_cidr=args.pod_cidr,
                              cgroup_parent=args.cgroup_parent, netns_pool=args.netns_pool)
    from pilothouse.runtime_shim.containerd.backend import ContainerdBackend
    from pilothouse.runtime_shim.containerd.client import address_of

    address_of(args.containerd_address)  # a clear error for a malformed address
    return ContainerdBackend(root=args.root, address=args.containerd_address,
                             namespace=args.containerd_namespace, cni_bin_dir=args.cni_bin_dir,
                             bridge=args.bridge, pod_cidr=args.pod_cidr,
                             cgroup_parent=args.cgroup_parent)


def run(args: argparse.Namespace) -> int:
    from pilothouse.runtime_shim.server import serve, unix_path

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        unix_path(args.listen)
        host, _, port = args.streaming_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--streaming-address must be HOST:PORT, got "
                             f"{args.streaming_address!r}")
        backend = make_backend(args)
    except (ValueError, OSError) as err:
        print(f"pilothouse runtime-shim: {err}", file=sys.stderr)
        return 2
    try:
        # uvloop where installed: its scheduling is several times cheaper than the standard
        # loop's, and a burst of pod starts is thousands of short RPCs and pipe reads
        run_event_loop(serve(backend, args.listen, args.streaming_address))
    except OSError as err:
        print(f"pilothouse runtime-shim: {err}", file=sys.stderr)
        return 1
    return 0
