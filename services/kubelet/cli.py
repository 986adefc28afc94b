"""``pilothouse kubelet``: the node agent.

    pilothouse kubelet --node-name node-1 --runtime-endpoint unix:///run/pilothouse/cri.sock \
        --apiserver grpc://127.0.0.1:6444
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from pilothouse.logs import setup_logging
from pilothouse.loop import run_event_loop
from pilothouse.services.kubelet.config import DEFAULT_PORT, DEFAULT_ROOT, KubeletConfig
from pilothouse.services.kubelet.eviction import DEFAULT_EVICTION_HARD, parse_thresholds

log = logging.getLogger("pilothouse.kubelet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-name", required=True, help="the Node this kubelet registers")
    parser.add_argument("--runtime-endpoint", required=True,
                        help="unix:///PATH of a CRI runtime.v1 server (our shim or containerd)")
    parser.add_argument("--apiserver", default="grpc://127.0.0.1:6444",
                        help="grpc://host:port (or http://host:port) of the apiserver")
    parser.add_argument("--root-dir", type=Path, default=DEFAULT_ROOT,
                        help="volumes, logs and pod files")
    parser.add_argument("--address", default="0.0.0.0", help="address of the kubelet's server")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port of the kubelet's server (0: any free port)")
    parser.add_argument("--node-ip", default="", help="the Node's InternalIP (default: the "
                        "host's primary IPv4)")
    parser.add_argument("--pod-manifest-path", type=Path, default=None,
                        help="directory of static pod manifests")
    parser.add_argument("--max-pods", type=int, default=None,
                        help="pods this node accepts (default: min(110, 10 x cores))")
    parser.add_argument("--node-labels", default="",
                        help="extra Node labels: key=value,key=value")
    parser.add_argument("--cluster-dns", default="", help="comma-separated DNS server IPs")
    parser.add_argument("--cluster-domain", default="cluster.local")
    parser.add_argument("--eviction-hard", default=DEFAULT_EVICTION_HARD,
                        help="hard eviction thresholds: signal<quantity or signal<N%%, "
                        "comma-separated (signals: memory.available, nodefs.available, "
                        "nodefs.inodesFree, imagefs.available, imagefs.inodesFree, "
                        "pid.available); empty: none")
    parser.add_argument("--image-gc-high-threshold", type=int, default=85,
                        help="image filesystem usage (%%) above which unused images go")
    parser.add_argument("--image-gc-low-threshold", type=int, default=80,
                        help="image filesystem usage (%%) image GC brings it down to")
    parser.add_argument("--cgroup-root", default="",
                        help="pod cgroups go under ROOT/kubepods/<qos>/pod<uid> (given to the "
                        "runtime as the sandbox's cgroup parent); default: the runtime decides")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true")


def config_from_args(args: argparse.Namespace) -> KubeletConfig:
    if not args.runtime_endpoint.startswith("unix://") or \
            len(args.runtime_endpoint) <= len("unix://"):
        raise ValueError(f"--runtime-endpoint must be unix:///PATH, "
                         f"not {args.runtime_endpoint!r}")
    if not args.apiserver.startswith(("grpc://", "http://", "https://")):
        raise ValueError(f"--apiserver must be grpc://host:port or http(s)://host:port, "
                         f"not {args.apiserver!r}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0-65535, not {args.port}")
    if args.max_pods is not None and args.max_pods < 1:
        raise ValueError(f"--max-pods must be at least 1, not {args.max_pods}")
    if args.cgroup_root and not args.cgroup_root.startswith("/"):
        raise ValueError(f"--cgroup-root must be an absolute cgroup path, not "
                         f"{args.cgroup_root!r}")
    parse_thresholds(args.eviction_hard)  # a bad threshold is a clear error, here
    if not 0 <= args.image_gc_low_threshold <= args.image_gc_high_threshold <= 100:
        raise ValueError(f"--image-gc-low-threshold ({args.image_gc_low_threshold}) must be "
                         f"at most --image-gc-high-threshold ({args.image_gc_high_threshold}),"
                         " both 0-100")
    labels: dict[str, str] = {}
    for item in filter(None, args.node_labels.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--node-labels: expected key=value, got {item!r}")
        labels[key.strip()] = value.strip()
    return KubeletConfig(node_name=args.node_name, runtime_endpoint=args.runtime_endpoint,
                         apiserver=args.apiserver, root_dir=args.root_dir,
                         address=args.address, port=args.port, node_ip=args.node_ip,
                         static_pod_path=args.pod_manifest_path, max_pods=args.max_pods,
                         node_labels=labels,
                         cluster_dns=[s for s in args.cluster_dns.split(",") if s],
                         cluster_domain=args.cluster_domain,
                         eviction_hard=args.eviction_hard, cgroup_root=args.cgroup_root,
                         image_gc_high_threshold_percent=args.image_gc_high_threshold,
                         image_gc_low_threshold_percent=args.image_gc_low_threshold)


async def _main(config: KubeletConfig) -> None:
    from pilothouse.services.kubelet.kubelet import Kubelet

    kubelet = Kubelet(config)
    task = asyncio.create_task(kubelet.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("kubelet stopped (pods keep running; a restarted kubelet adopts them)")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, verbose=args.verbose)
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"pilothouse kubelet: {e}", file=sys.stderr)
        return 2
    try:
        run_event_loop(_main(config))
    except OSError as e:
        log.error("kubelet failed: %s", e)
        return 1
    return 0
