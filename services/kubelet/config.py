"""The kubelet's settings (what ``pilothouse kubelet`` flags fill in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.services.kubelet.eviction import DEFAULT_EVICTION_HARD

DEFAULT_ROOT = Path("/var/lib/pilothouse/kubelet")
DEFAULT_PORT = 10250


@dataclass
class KubeletConfig:
    node_name: str
    runtime_endpoint: str  # unix:///path of a CRI runtime.v1 server
    apiserver: str = "grpc://127.0.0.1:6444"
    root_dir: Path = DEFAULT_ROOT
    # The kubelet's HTTP server (logs, stats, metrics). 0: any free port.
    address: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    # The address advertised as the Node's InternalIP ("" = the host's primary IPv4).
    node_ip: str = ""
    static_pod_path: Path | None = None
    max_pods: int | None = None  # None: min(110, 10 x cores)
    node_labels: dict[str, str] = field(default_factory=dict)
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    # Timings, as Kubernetes' defaults.
    node_lease_duration: int = 40
    node_lease_renew_interval: float = 10.0
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 300.0
    pleg_relist_period: float = 1.0
    resync_period: float = 10.0
    housekeeping_period: float = 2.0
    file_check_frequency: float = 5.0  # static pod manifests are re-read this often
    # CrashLoopBackOff and image pull back-off.
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    # A container that ran this long before exiting starts its back-off afresh.
    backoff_reset: float = 600.0
    runtime_request_timeout: float = 120.0
    # New pods started (sandbox + containers) at once; 0: no limit.
    concurrent_pod_starts: int = 16
    # Eviction (hard thresholds, ``signal<quantity|N%``; see eviction.py).
    eviction_hard: str = DEFAULT_EVICTION_HARD
    eviction_monitoring_interval: float = 10.0
    eviction_pressure_transition_period: float = 300.0
    # Image garbage collection.
    image_gc_high_threshold_percent: int = 85
    image_gc_low_threshold_percent: int = 80
    image_minimum_gc_age: float = 120.0
    image_gc_period: float = 300.0
    # Pod-level cgroups under <cgroup_root>/kubepods/... ("": the runtime places pods).
    cgroup_root: str = ""
    # The sandbox image, never garbage-collected.
    pod_infra_container_image: str = "registry.k8s.io/pause:3.10"
