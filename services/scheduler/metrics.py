"""Scheduler metrics, with Kubernetes' names and labels.

Each Scheduler has its own ``CollectorRegistry`` (tests run several in one
process); the HTTP endpoint serves it at /metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["SchedulerMetrics"]


def _exponential(start: float, factor: float, count: int) -> list[float]:
    return [start * factor**i for i in range(count)]


class _PendingPods(Collector):
    def __init__(self, pending: Callable[[], dict[str, int]]) -> None:
        self.pending = pending

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("scheduler_pending_pods",
                              "Number of pending pods, by the queue type.", labels=["queue"])
        for queue, n in self.pending().items():
            g.add_metric([queue], n)
        yield g


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.schedule_attempts = Counter(
            "scheduler_schedule_attempts", "Number of attempts to schedule pods, by the result.",
            ["result", "profile"], registry=r)
        self.attempt_duration = Histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            ["result", "profile"], buckets=_exponential(0.001, 2, 15), registry=r)
        self.extension_point_duration = Histogram(
            "scheduler_framework_extension_point_duration_seconds",
            "Latency for running all plugins of a specific extension point.",
            ["extension_point", "status", "profile"], buckets=_exponential(0.0001, 2, 12),
            registry=r)
        self.preemption_attempts = Counter(
            "scheduler_preemption_attempts", "Total preemption attempts in the cluster till now",
            registry=r)
        self.preemption_victims = Histogram(
            "scheduler_preemption_victims", "Number of selected preemption victims",
            buckets=_exponential(1, 2, 7), registry=r)
        #: client-go's leader election gauge: 1 while this process holds the Lease ``name``.
        self.leader_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master. 'name' is the string used to identify the lease.",
            ["name"], registry=r)
        self._ep_children: dict[tuple[str, str, str], Histogram] = {}

    def watch_queue(self, pending: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_PendingPods(pending))

    def observer(self, profile: str) -> Callable[[str, str, float], None]:
        children = self._ep_children

        def observe(extension_point: str, status: str, seconds: float) -> None:
            key = (extension_point, status, profile)
            child = children.get(key)
            if child is None:
                child = children[key] = self.extension_point_duration.labels(*key)
            child.observe(seconds)
        return observe

    def attempt(self, result: str, profile: str, seconds: float) -> None:
        self.schedule_attempts.labels(result, profile).inc()
        self.attempt_duration.labels(result, profile).observe(seconds)
