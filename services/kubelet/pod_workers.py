"""Pod workers (one task per pod) and the PLEG that wakes them.

``PodWorkers.update(pod)`` hands a worker its newest pod; the worker runs
``PodSyncer.sync`` whenever it is woken — by an update, by the PLEG seeing
one of the pod's containers or sandboxes change, by a probe result — and at
the latest after the resync period or the back-off deadline ``sync``
returned. A worker never runs two syncs at once; updates that arrive during
a sync are folded into the next one (only the newest pod matters, as in
Kubernetes' pod workers). A failing sync is logged and retried after a
short delay: one pod's trouble never stops another's.

``PLEG`` (pod lifecycle event generator) relists the runtime's sandboxes and
containers every ``period`` (``kubelet_pleg_relist_duration_seconds``). It is
the kubelet's one shared snapshot of the runtime: a worker keeps the runtime
view its last sync ended with (``PodState.runtime``, what it read plus what it
started) and reuses it while the relists agree with it, so a sync woken by a
pod update or a probe makes no CRI call. A relist begun after the view was
taken that shows the pod differently (sandbox or container IDs and states)
wakes the worker, which then reads the runtime again (``RuntimeCache``): a
view is never more than one relist out of date, as with Kubernetes' pod cache.

Updates that only echo the status the worker itself wrote wake nobody: the
status is already what the runtime says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pilothouse.client.clock import AsyncClock
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2
from pilothouse.services.kubelet import runtime as rt
from pilothouse.services.kubelet.admission import Rejection
from pilothouse.services.kubelet.metrics import KubeletMetrics
from pilothouse.services.kubelet.pod_sync import EvictionRequest, PodState, PodSyncer
from pilothouse.services.kubelet.podstatus import RuntimePod
from pilothouse.services.kubelet.runtime import RuntimeClient, RuntimeError_

log = logging.getLogger("pilothouse.kubelet.workers")

SYNC_ERROR_RETRY = 1.0


@dataclass
class _Worker:
    state: PodState
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    syncs: int = 0


class PodWorkers:
    def __init__(self, syncer: PodSyncer, *, clock: AsyncClock, resync_period: float,
                 on_finished: Callable[[PodState], None] = lambda s: None,
                 runtime_has: Callable[[str], bool] = lambda uid: True,
                 concurrent_starts: int = 0) -> None:
        self.syncer = syncer
        self.clock = clock
        self.resync_period = resync_period
        self.on_finished = on_finished
        self.runtime_has = runtime_has  # does the runtime (last relist) hold this pod uid?
        # First syncs of new pods (sandbox + containers) at most this many at a time
        # (0: no limit): a burst of pods then finishes in order instead of all at the end.
        self._starts = asyncio.Semaphore(concurrent_starts) if concurrent_starts else None
        self.workers: dict[str, _Worker] = {}  # by pod uid
        self.sync_errors = 0
        self._closed = False

    # -- feeding ----------------------------------------------------------------------------

    def update(self, pod: core_pb2.Pod, *, static: bool = False, mirror_name: str = "",
               rejection: Rejection | None = None) -> None:
        """The newest version of a pod bound here (the object may be shared: not mutated).

        ``rejection``: admission refused this (new) pod; its worker only reports why."""
        if self._closed:
            return
        uid = pod.metadata.uid
        w = self.workers.get(uid)
        if w is None:
            state = PodState(pod=pod, first_seen=self.clock.monotonic(), static=static,
                             mirror_name=mirror_name, fresh=not self.runtime_has(uid),
                             rejection=rejection)
            w = _Worker(state)
            self.workers[uid] = w
            w.task = asyncio.create_task(self._run(w), name=f"pod-worker:{state.key}")
        else:
            old = w.state.pod
            w.state.pod = pod
            if static:
                w.state.mirror_name = mirror_name
            elif status_echo(old, pod, w.state):
                return  # our own status write coming back: nothing to do
        w.wake.set()

    def set_mirror(self, uid: str, mirror_name: str) -> None:
        w = self.workers.get(uid)
        if w is not None and w.state.mirror_name != mirror_name:
            w.state.mirror_name = mirror_name
            w.state.last_status = None  # write the status to the (new) mirror
            w.wake.set()

    def remove(self, uid: str) -> None:
        """The pod is gone from the apiserver: kill it and clean up."""
        w = self.workers.get(uid)
        if w is not None:
            w.state.gone = True
            w.wake.set()

    def wake(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.wake.set()

    def evict(self, uid: str, request: EvictionRequest) -> bool:
        """Hand the eviction manager's verdict to the pod's worker; False if it has none or
        the pod already ended."""
        w = self.workers.get(uid)
        if w is None or w.state.terminal or w.state.deleting:
            return False
        w.state.eviction = request
        w.wake.set()
        return True

    def state(self, uid: str) -> PodState | None:
        w = self.workers.get(uid)
        return w.state if w is not None else None

    def states(self) -> list[PodState]:
        return [w.state for w in self.workers.values()]

    def syncs(self, uid: str) -> int:
        w = self.workers.get(uid)
        return w.syncs if w is not None else 0

    # -- running ----------------------------------------------------------------------------

    async def _run(self, w: _Worker) -> None:
        state = w.state
        while True:
            w.wake.clear()
            try:
                if state.fresh and self._starts is not None:
                    async with self._starts:
                        next_wake = await self.syncer.sync(state)
                else:
                    next_wake = await self.syncer.sync(state)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.sync_errors += 1
                state.runtime = None  # the sync stopped half-way: read the runtime again
                log.exception("pod %s: sync failed; retrying", state.key)
                next_wake = self.clock.monotonic() + SYNC_ERROR_RETRY
            w.syncs += 1
            if state.finished:
                if self.workers.get(state.uid) is w:
                    del self.workers[state.uid]
                self.on_finished(state)
                return
            deadline = self.clock.monotonic() + self.resync_period
            if next_wake is not None and next_wake < deadline:
                deadline = next_wake
            if w.wake.is_set():
                continue
            await self._wait(w, deadline)

    async def _wait(self, w: _Worker, deadline: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline))
        waiter = asyncio.ensure_future(w.wake.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, waiter):
                t.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """For tests: yield until no worker task is mid-sync (each waits on its event)."""
        await asyncio.sleep(0)


def status_echo(old: core_pb2.Pod, new: core_pb2.Pod, state: PodState) -> bool:
    """Is ``new`` only ``old`` with the status this worker wrote (or is writing)?"""
    written = state.sending_status or state.last_status
    if written is None or new.status != written:
        return False
    if new.spec != old.spec:
        return False
    a, b = meta_pb2.ObjectMeta(), meta_pb2.ObjectMeta()
    a.CopyFrom(old.metadata)
    b.CopyFrom(new.metadata)
    for meta in (a, b):
        meta.resourceVersion = ""
        meta.ClearField("managedFields")
    return a == b


@dataclass
class _Seen:
    """One pod's sandboxes and containers as a relist shows them: IDs and states."""

    sandboxes: dict[str, int] = field(default_factory=dict)  # id -> state
    containers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, rp: RuntimePod) -> _Seen:
        return cls({sb.id: cri.SANDBOX_READY if sb.ready else cri.SANDBOX_NOTREADY
                    for sb in rp.sandboxes}, {c.id: c.state for c in rp.containers})


_NOTHING = _Seen()


class PLEG:
    """Relists the runtime and wakes the pods whose sandboxes or containers changed; the
    shared snapshot pod workers check their runtime views against (``RuntimeCache``)."""

    def __init__(self, runtime: RuntimeClient, *, clock: AsyncClock, period: float,
                 metrics: KubeletMetrics, on_change: Callable[[str], None],
                 on_relist: Callable[[set[str]], None] | None = None) -> None:
        self.runtime = runtime
        self.clock = clock
        self.period = period
        self.metrics = metrics
        self.on_change = on_change
        # called after each relist with the changed UIDs instead of ``on_change`` per UID
        self.on_relist = on_relist
        self._seen: dict[str, _Seen] = {}  # pod uid -> last relist
        self.relists = 0
        self.last_relist: float = -math.inf
        self.pods_with_sandboxes: set[str] = set()
        self._begun = 0  # relists begun (the epoch a worker's runtime view is taken at)
        self._snapshot = 0  # which of them ``_seen`` comes from (0: none yet)

    # -- RuntimeCache ----------------------------------------------------------------------

    def epoch(self) -> int:
        return self._begun

    def agrees(self, uid: str, rp: RuntimePod, epoch: int) -> bool:
        if self._snapshot <= epoch:
            return True  # no relist begun after the view was taken has finished
        return _Seen.of(rp) == self._seen.get(uid, _NOTHING)

    # -- relisting -------------------------------------------------------------------------

    async def relist(self) -> set[str]:
        """One relist; the pod UIDs that changed."""
        start = time.perf_counter()
        self._begun += 1
        seq = self._begun
        sandboxes = await self.runtime.pod_sandboxes()
        containers = await self.runtime.containers()
        now: dict[str, _Seen] = {}
        for sb in sandboxes:
            uid = sb.labels.get(rt.POD_UID_LABEL) or sb.metadata.uid
            now.setdefault(uid, _Seen()).sandboxes[sb.id] = sb.state
        for c in containers:
            uid = c.labels.get(rt.POD_UID_LABEL, "")
            if uid:
                now.setdefault(uid, _Seen()).containers[c.id] = c.state
        changed = {uid for uid in set(now) | set(self._seen)
                   if now.get(uid) != self._seen.get(uid)}
        self._seen = now
        self._snapshot = seq
        self.pods_with_sandboxes = set(now)
        running_pods = sum(1 for s in now.values()
                           if any(v == cri.SANDBOX_READY for v in s.sandboxes.values()))
        self.metrics.running_pods.set(running_pods)
        counts = {"running": 0, "exited": 0, "created": 0, "unknown": 0}
        names = {cri.CONTAINER_RUNNING: "running", cri.CONTAINER_EXITED: "exited",
                 cri.CONTAINER_CREATED: "created"}
        for c in containers:
            counts[names.get(c.state, "unknown")] += 1
        for k, v in counts.items():
            self.metrics.running_containers.labels(k).set(v)
        self.metrics.pleg_relist_duration.observe(time.perf_counter() - start)
        self.relists += 1
        self.last_relist = self.clock.monotonic()
        if self.on_relist is not None:
            self.on_relist(changed)
        else:
            for uid in changed:
                self.on_change(uid)
        return changed

    async def run(self) -> None:
        while True:
            with contextlib.suppress(RuntimeError_):
                await self.relist()
            await self.clock.sleep(self.period)

    def healthy(self, threshold: float = 180.0) -> bool:
        """False when the last successful relist is older than ``threshold`` (3 min)."""
        return self.clock.monotonic() - self.last_relist < threshold
