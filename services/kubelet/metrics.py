"""The kubelet's Prometheus metrics, with Kubernetes' names and labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Kubernetes' buckets for pod start durations (seconds).
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360,
                     480, 600, 900, 1200, 1800, 2700, 3600)
OPERATION_BUCKETS = (0.005, 0.0125, 0.03125, 0.078125, 0.1953125, 0.48828125, 1.220703125,
                     3.0517578125, 7.62939453125, 19.073486328125, 47.6837158203125)


class KubeletMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.running_pods = Gauge("kubelet_running_pods",
                                  "Number of pods that have a running pod sandbox", registry=r)
        self.running_containers = Gauge(
            "kubelet_running_containers", "Number of containers currently running",
            ["container_state"], registry=r)
        self.pod_start_duration = Histogram(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod "
            "starting to run", buckets=POD_START_BUCKETS, registry=r)
        self.pod_start_sli_duration = Histogram(
            "kubelet_pod_start_sli_duration_seconds",
            "Duration in seconds to start a pod, excluding time to pull images and run init "
            "containers, measured from pod creation timestamp to when all its containers are "
            "reported as started and observed via watch", buckets=POD_START_BUCKETS, registry=r)
        self.runtime_operations = Counter(
            "kubelet_runtime_operations_total",
            "Cumulative number of runtime operations by operation type.",
            ["operation_type"], registry=r)
        self.runtime_operations_duration = Histogram(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type.",
            ["operation_type"], buckets=OPERATION_BUCKETS, registry=r)
        self.runtime_operations_errors = Counter(
            "kubelet_runtime_operations_errors_total",
            "Cumulative number of runtime operation errors by operation type.",
            ["operation_type"], registry=r)
        self.pleg_relist_duration = Histogram(
            "kubelet_pleg_relist_duration_seconds",
            "Duration in seconds for relisting pods in PLEG.",
            buckets=OPERATION_BUCKETS, registry=r)
        self.started_pods = Counter(
            "kubelet_started_pods_total", "Cumulative number of pods started", registry=r)
        self.started_pods_errors = Counter(
            "kubelet_started_pods_errors_total",
            "Cumulative number of errors when starting pods", registry=r)
        self.started_containers = Counter(
            "kubelet_started_containers_total", "Cumulative number of containers started",
            ["container_type"], registry=r)
