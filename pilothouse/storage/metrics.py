"""Prometheus metrics of a storage backend.

Names follow the Kubernetes apiserver's storage metrics
(``etcd_request_duration_seconds``, ``apiserver_storage_db_total_size_in_bytes``)
under a ``pilothouse_storage_`` prefix, so they never collide with the
apiserver's own. The owner creates one :class:`StorageMetrics` per registry
and passes it to the backend; ``StorageMetrics(registry=None)`` records
nothing (the default, so tests and tools can open many stores).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class StorageMetrics:
    """The collectors, or nothing when ``registry`` is None."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        self.request_duration = Histogram(
            "pilothouse_storage_request_duration_seconds",
            "Latency of storage requests, by operation and backend.",
            ["operation", "backend"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_errors = Counter(
            "pilothouse_storage_request_errors_total",
            "Storage requests that raised, by operation, backend and error type.",
            ["operation", "backend", "error"],
            registry=registry,
        )
        self.commit_batch_size = Histogram(
            "pilothouse_storage_commit_batch_size",
            "Writes committed together by one transaction (group commit).",
            ["backend"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_duration = Histogram(
            "pilothouse_storage_commit_duration_seconds",
            "Time of one write transaction, including the sync to disk.",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.watchers = Gauge(
            "pilothouse_storage_watchers",
            "Open watches on the store.",
            ["backend"],
            registry=registry,
        )
        self.watch_overflows = Counter(
            "pilothouse_storage_watch_overflows_total",
            "Watches closed because their consumer fell too far behind.",
            ["backend"],
            registry=registry,
        )
        self.current_revision = Gauge(
            "pilothouse_storage_current_revision",
            "The revision of the last acknowledged write.",
            ["backend"],
            registry=registry,
        )
        self.compact_revision = Gauge(
            "pilothouse_storage_compact_revision",
            "The revision history has been compacted to.",
            ["backend"],
            registry=registry,
        )
        self.db_size = Gauge(
            "pilothouse_storage_db_total_size_in_bytes",
            "Size of the database file(s) on disk.",
            ["backend"],
            registry=registry,
        )

    def observe_request(self, operation: str, backend: str, seconds: float) -> None:
        if self.enabled:
            self.request_duration.labels(operation, backend).observe(seconds)

    def count_error(self, operation: str, backend: str, error: BaseException) -> None:
        if self.enabled:
            self.request_errors.labels(operation, backend, type(error).__name__).inc()

    def observe_commit(self, backend: str, batch_size: int, seconds: float) -> None:
        if self.enabled:
            self.commit_batch_size.labels(backend).observe(batch_size)
            self.commit_duration.labels(backend).observe(seconds)

    def watcher_opened(self, backend: str) -> None:
        if self.enabled:
            self.watchers.labels(backend).inc()

    def watcher_closed(self, backend: str, *, overflowed: bool) -> None:
        if self.enabled:
            self.watchers.labels(backend).dec()
            if overflowed:
                self.watch_overflows.labels(backend).inc()

    def set_revisions(self, backend: str, current: int, compacted: int) -> None:
        if self.enabled:
            self.current_revision.labels(backend).set(current)
            self.compact_revision.labels(backend).set(compacted)

    def set_db_size(self, backend: str, size: int) -> None:
        if self.enabled:
            self.db_size.labels(backend).set(size)
