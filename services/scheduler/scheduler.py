"""``Scheduler``: informers in, bindings out; one pod at a time through the framework.

The loop (Kubernetes' ``scheduleOne``): pop the next pod; bring the snapshot
up to date from the cache; run the scheduling algorithm (synchronous: nothing
else touches the cache meanwhile); on success assume the pod on its node in
the cache, run Reserve and Permit, and start the binding cycle as a task
(PreBind, Bind, PostBind) so the next pod is scheduled while the API call is
in flight; on failure run PostFilter (preemption), record a
``FailedScheduling`` Event, set the pod's ``PodScheduled`` condition to False
(reason ``Unschedulable``) and put the pod back in the queue.

Informer handlers only update the cache and the queue. At most
``max_binding_tasks`` binds are in flight; the loop waits for a slot when
that many are (backpressure instead of an unbounded task pile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from pilothouse.api.selectors import LabelSelector
from pilothouse.api.timeutil import format_time
from pilothouse.client import Client, ClientError, is_not_found
from pilothouse.client.clock import AsyncClock, real_clock
from pilothouse.client.events import EventRecorder
from pilothouse.client.informer import (
    DeletedFinalStateUnknown,
    Informer,
    SharedInformerFactory,
    object_of,
)
from pilothouse.client.leaderelection import LeaderElector
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.policy.v1 import policy_pb2
from pilothouse.gen.k8s.scheduling.v1 import scheduling_pb2
from pilothouse.loop import freeze_startup_heap
from pilothouse.services.scheduler.algorithm import (
    FitError,
    ScheduleResult,
    SchedulingAlgorithm,
    SchedulingError,
)
from pilothouse.services.scheduler.cache import Cache
from pilothouse.services.scheduler.config import SchedulerConfig, default_config
from pilothouse.services.scheduler.explain import Attempt, ExplainStore
from pilothouse.services.scheduler.framework import (
    ClusterEvent,
    CycleState,
    Framework,
    Handle,
    PodInfo,
    Snapshot,
    Status,
)
from pilothouse.services.scheduler.framework.status import Code
from pilothouse.services.scheduler.metrics import SchedulerMetrics
from pilothouse.services.scheduler.plugins import load_registry
from pilothouse.services.scheduler.queue import QueuedPodInfo, SchedulingQueue

__all__ = ["Scheduler"]

log = logging.getLogger("pilothouse.scheduler")

POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"
_ALL_EVENTS = [ClusterEvent("*", "*")]
#: How long the loop waits for I/O between two scheduling cycles (see scheduling_loop).
CYCLE_YIELD_SECONDS = 0.0001


def _node_scheduling_changed(old: core_pb2.Node, new: core_pb2.Node) -> bool:
    """Did anything a plugin looks at change (not just heartbeats)?"""
    return (old.spec.unschedulable != new.spec.unschedulable or
            list(old.spec.taints) != list(new.spec.taints) or
            dict(old.metadata.labels) != dict(new.metadata.labels) or
            dict(old.status.allocatable) != dict(new.status.allocatable) or
            list(old.status.images) != list(new.status.images))


class Scheduler:
    """One scheduler process: its profiles, cache, queue and loop."""

    def __init__(self, client: Client, *, config: SchedulerConfig | None = None,
                 clock: AsyncClock | None = None, registry: Mapping[str, Any] | None = None,
                 identity: str = "", record_events: bool = True,
                 rng: random.Random | None = None, max_binding_tasks: int = 256,
                 explain_capacity: int = 5000, freeze_heap_after_sync: bool = False,
                 ) -> None:
        self.client = client
        self.config = config or default_config()
        self.clock = clock or real_clock()
        self.rng = rng or random.Random()
        self.identity = identity or f"{socket.gethostname()}_{random.getrandbits(32):08x}"
        self.cache = Cache()
        self.snapshot = Snapshot()
        self.metrics = SchedulerMetrics()
        self.explain = ExplainStore(explain_capacity)
        self.recorder: EventRecorder | None = (
            EventRecorder(client, "default-scheduler", self.identity) if record_events else None)
        self.factory = SharedInformerFactory(client, clock=self.clock)
        self.pods: Informer[core_pb2.Pod] = self.factory.informer_for(
            core_pb2.Pod, field_selector=POD_FIELD_SELECTOR)
        self.nodes: Informer[core_pb2.Node] = self.factory.informer_for(core_pb2.Node)
        self.priority_classes: Informer[scheduling_pb2.PriorityClass] = \
            self.factory.informer_for(scheduling_pb2.PriorityClass)
        self.namespaces: Informer[core_pb2.Namespace] = \
            self.factory.informer_for(core_pb2.Namespace)
        self.services: Informer[core_pb2.Service] = self.factory.informer_for(core_pb2.Service)
        self.replica_sets: Informer[apps_pb2.ReplicaSet] = \
            self.factory.informer_for(apps_pb2.ReplicaSet)
        self.stateful_sets: Informer[apps_pb2.StatefulSet] = \
            self.factory.informer_for(apps_pb2.StatefulSet)
        self.pdbs_informer: Informer[policy_pb2.PodDisruptionBudget] = \
            self.factory.informer_for(policy_pb2.PodDisruptionBudget)
        plugin_registry = registry if registry is not None else load_registry()
        self.frameworks: dict[str, Framework] = {}
        plugin_events: dict[str, list[ClusterEvent]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        for profile in self.config.profiles:
            handle = self._handle(profile.scheduler_name)
            fwk = Framework(profile, plugin_registry, handle,
                            observe=self.metrics.observer(profile.scheduler_name))
            self.frameworks[profile.scheduler_name] = fwk
            for name, plugin in fwk.plugins.items():
                register = getattr(plugin, "events_to_register", None)
                plugin_events[name] = list(register()) if callable(register) else _ALL_EVENTS
        first = next(iter(self.frameworks.values()))
        self.queue = SchedulingQueue(
            clock=self.clock, sort_key=first.queue_sort.sort_key,
            pre_enqueue=self._pre_enqueue, plugin_events=plugin_events,
            initial_backoff=self.config.pod_initial_backoff_seconds,
            max_backoff=self.config.pod_max_backoff_seconds)
        self.metrics.watch_queue(self.queue.pending)
        self.algorithm = SchedulingAlgorithm(
            rng=self.rng, percentage_of_nodes_to_score=self.config.percentage_of_nodes_to_score)
        self._binding_slots = asyncio.Semaphore(max_binding_tasks)
        self.record_explain = True
        #: A process running one scheduler freezes its start-up heap (the synced caches)
        #: out of the cyclic collector's way, as the apiserver does (``pilothouse.loop``).
        self.freeze_heap_after_sync = freeze_heap_after_sync
        self.synced = False
        self.leading = False
        self._leader_gauge: Any = None  # leader_election_master_status, when elected
        self.scheduled = 0
        self._install_handlers()

    # -- the handle plugins see -------------------------------------------------------

    def _handle(self, scheduler_name: str) -> Handle:
        return Handle(
            snapshot=self.snapshot, client=self.client,
            namespace_labels=self._namespace_labels,
            namespaces_matching=self._namespaces_matching,
            priority_class=self._priority_class, owner_selectors=self._owner_selectors,
            pdbs=self._pdbs,
            nominated_pods_for_node=lambda node: self.queue.nominated_pods_for_node(node),
            nominated_node_names=lambda: self.queue.nominated_node_names(),
            spawn=self.spawn, event=self._event, scheduler_name=scheduler_name, rng=self.rng)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the scheduler (cancelled on shutdown)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task failed", exc_info=task.exception())

    def _event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, message)

    def _namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        ns = self.namespaces.get(namespace)
        return dict(ns.metadata.labels) if ns is not None else None

    def _namespaces_matching(self, selector: LabelSelector) -> list[str]:
        return [ns.metadata.name for ns in self.namespaces.list()
                if selector.matches(dict(ns.metadata.labels))]

    def _priority_class(self, name: str) -> tuple[int, str] | None:
        pc = self.priority_classes.get(name)
        if pc is None:
            return None
        return pc.value, pc.preemptionPolicy or "PreemptLowerPriority"

    def _owner_selectors(self, pod: PodInfo) -> list[LabelSelector]:
        out: list[LabelSelector] = []
        labels = pod.labels
        for svc in self.services.list(namespace=pod.namespace):
            sel = dict(svc.spec.selector)
            if sel and all(labels.get(k) == v for k, v in sel.items()):
                out.append(LabelSelector.from_set(sel))
        from pilothouse.api.selectors import SelectorError, label_selector_from_api

        owners: list[Any] = [*self.replica_sets.list(namespace=pod.namespace),
                             *self.stateful_sets.list(namespace=pod.namespace)]
        for owner in owners:
            try:
                sel_ = label_selector_from_api(owner.spec.selector)
            except SelectorError:
                continue
            if not sel_.empty and sel_.matches(labels):
                out.append(sel_)
        return out

    def _pdbs(self) -> list[tuple[str, LabelSelector, int]]:
        from pilothouse.api.selectors import SelectorError, label_selector_from_api

        out = []
        for pdb in self.pdbs_informer.list():
            try:
                sel = label_selector_from_api(pdb.spec.selector)
            except SelectorError:
                continue
            out.append((pdb.metadata.namespace, sel, pdb.status.disruptionsAllowed))
        return out

    def pod_info(self, pod: core_pb2.Pod) -> PodInfo:
        """PodInfo with the priority Kubernetes' Priority admission would have set."""
        spec = pod.spec
        if spec.HasField("priority"):
            return PodInfo(pod)
        if spec.priorityClassName:
            pc = self._priority_class(spec.priorityClassName)
            if pc is not None:
                pi = PodInfo(pod, priority=pc[0])
                if not spec.preemptionPolicy:
                    pi.preemption_policy = pc[1]
                return pi
        for pc_obj in self.priority_classes.list():
            if pc_obj.globalDefault:
                return PodInfo(pod, priority=pc_obj.value)
        return PodInfo(pod, priority=0)

    def _pre_enqueue(self, pi: PodInfo) -> Status | None:
        fwk = self.frameworks.get(pi.pod.spec.schedulerName)
        return fwk.run_pre_enqueue(pi) if fwk is not None else None

    # -- informer handlers (they only touch the cache and the queue) -------------------

    def _responsible(self, pod: core_pb2.Pod) -> bool:
        return pod.spec.schedulerName in self.frameworks

    def _install_handlers(self) -> None:
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_event_handler(self._on_node_add, self._on_node_update,
                                     self._on_node_delete)
        self.priority_classes.add_event_handler(
            lambda _o: self._move(ClusterEvent("PriorityClass", "Add")))
        self.namespaces.add_event_handler(
            lambda _o: self._move(ClusterEvent("Namespace", "Add")),
            lambda _o, _n: self._move(ClusterEvent("Namespace", "Update")))

    def _move(self, event: ClusterEvent) -> None:
        self.queue.move_all_to_active_or_backoff(event)

    def _on_pod_add(self, pod: core_pb2.Pod) -> None:
        if pod.spec.nodeName:
            self.cache.add_pod(pod, self.pod_info(pod))
            self.queue.move_all_to_active_or_backoff(ClusterEvent("AssignedPod", "Add"))
        elif self._responsible(pod) and not pod.metadata.HasField("deletionTimestamp"):
            self.queue.add(self.pod_info(pod))

    def _on_pod_update(self, old: core_pb2.Pod, new: core_pb2.Pod) -> None:
        key = f"{new.metadata.namespace}/{new.metadata.name}"
        if new.spec.nodeName:
            if not old.spec.nodeName:
                self.queue.delete(key)
            # The bound version of a pod we assumed: its PodInfo carries over unparsed.
            known = self.cache.get_pod(key)
            pi = known.rebound(new) if known is not None else None
            self.cache.update_pod(old, new, pi or self.pod_info(new))
            if old.spec.nodeName:
                self.queue.move_all_to_active_or_backoff(ClusterEvent("AssignedPod", "Update"))
            return
        if not self._responsible(new) or self.cache.is_assumed(key):
            return
        if new.metadata.HasField("deletionTimestamp"):
            self.queue.delete(key)
            return
        self.queue.update(self.pod_info(new))

    def _on_pod_delete(self, obj: core_pb2.Pod | DeletedFinalStateUnknown[core_pb2.Pod]) -> None:
        pod: core_pb2.Pod = object_of(obj)
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.queue.delete(key)
        for fwk in self.frameworks.values():
            fwk.allow_waiting_pod(key, Status.unschedulable("pod deleted"))
        if pod.spec.nodeName or self.cache.get_pod(key) is not None:
            self.cache.remove_pod(key)
            self.queue.move_all_to_active_or_backoff(ClusterEvent("AssignedPod", "Delete"))

    def _on_node_add(self, node: core_pb2.Node) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff(ClusterEvent("Node", "Add"))

    def _on_node_update(self, old: core_pb2.Node, new: core_pb2.Node) -> None:
        if old.metadata.resourceVersion == new.metadata.resourceVersion and old is not new:
            return
        changed = _node_scheduling_changed(old, new)
        if changed or old is new:
            self.cache.update_node(old, new)
        if changed:
            self.queue.move_all_to_active_or_backoff(ClusterEvent("Node", "Update"))

    def _on_node_delete(self, obj: Any) -> None:
        node = object_of(obj)
        self.cache.remove_node(node.metadata.name)

    # -- one scheduling attempt ----------------------------------------------------------

    async def schedule_one(self) -> bool:
        """Schedule the next pod; False once the queue is closed."""
        qpi = await self.queue.pop()
        if qpi is None:
            return False
        pi = qpi.pod_info
        fwk = self.frameworks.get(pi.pod.spec.schedulerName)
        if fwk is None or self.cache.is_assumed(pi.key):
            self.queue.done(pi.key)
            return True
        cycle = self.queue.scheduling_cycle
        start = time.perf_counter()
        state = CycleState()
        self.cache.update_snapshot(self.snapshot)
        try:
            result = self.algorithm.schedule(fwk, state, pi, self.snapshot,
                                             record=self.record_explain)
        except FitError as err:
            self._unschedulable(fwk, state, qpi, err, cycle, start)
            return True
        except SchedulingError as err:
            self._failed(fwk, qpi, err.status, cycle, start, err_result="error")
            return True
        host = result.suggested_host
        # Assume: count the pod on its node now, before the bind lands.
        self.cache.assume_pod(pi, host)
        self.queue.delete_nominated(pi.key)
        status = fwk.run_reserve(state, pi, host)
        if status is not None:
            fwk.run_unreserve(state, pi, host)
            self.cache.forget_pod(pi.key)
            self._failed(fwk, qpi, status, cycle, start, err_result="error")
            return True
        permit, timeout = fwk.run_permit(state, pi, host)
        if permit is not None and not permit.is_wait():
            fwk.run_unreserve(state, pi, host)
            self.cache.forget_pod(pi.key)
            self._failed(fwk, qpi, permit, cycle, start,
                         err_result="unschedulable" if permit.is_rejected() else "error")
            return True
        self._record(fwk, qpi, "Scheduled", host, "", result)
        self.queue.done(pi.key)
        await self._binding_slots.acquire()
        self.spawn(self._binding_cycle(fwk, state, qpi, host, start,
                                       timeout if permit is not None else 0.0))
        return True

    async def _binding_cycle(self, fwk: Framework, state: CycleState, qpi: QueuedPodInfo,
                             host: str, start: float, permit_timeout: float) -> None:
        pi = qpi.pod_info
        try:
            status: Status | None = None
            if permit_timeout > 0:
                status = await fwk.wait_on_permit(pi, permit_timeout)
            if status is None:
                status = await fwk.run_pre_bind(state, pi, host)
            if status is None:
                status = await fwk.run_bind(state, pi, host)
            if status is not None:
                fwk.run_unreserve(state, pi, host)
                self.cache.forget_pod(pi.key)
                self.metrics.attempt("error", fwk.profile_name, time.perf_counter() - start)
                msg = f"Binding rejected: {status.message()}"
                log.warning("%s: %s", pi.key, msg)
                self._event(pi.pod, "Warning", "FailedScheduling", msg)
                self.queue.requeue_after_bind_failure(qpi)
                # Its room is free again: others may fit now.
                self.queue.move_all_to_active_or_backoff(ClusterEvent("AssignedPod", "Delete"))
                return
            self.cache.finish_binding(pi.key)
            self.scheduled += 1
            self.metrics.attempt("scheduled", fwk.profile_name, time.perf_counter() - start)
            fwk.run_post_bind(state, pi, host)
            self._event(pi.pod, "Normal", "Scheduled",
                        f"Successfully assigned {pi.key} to {host}")
        finally:
            self._binding_slots.release()

    def _record(self, fwk: Framework, qpi: QueuedPodInfo, result: str, node: str, message: str,
                sched: ScheduleResult | None = None, num_all: int = 0,
                statuses: Mapping[str, Status] | None = None, nominated: str = "") -> None:
        if not self.record_explain:
            return
        attempt = Attempt(
            pod=qpi.key, profile=fwk.profile_name, attempt=qpi.attempts, result=result,
            node=node, message=message, num_all_nodes=num_all or len(self.snapshot),
            filter_plugins=[p.name for p in fwk.filter_plugins],
            score_plugins=[p.name for p in fwk.score_plugins], nominated_node=nominated)
        if sched is not None:
            attempt.evaluated_nodes = sched.evaluated_nodes
            attempt.feasible_nodes = sched.feasible_nodes
            attempt.node_to_status = sched.node_to_status  # fresh per cycle: no copy
            attempt.scored_nodes = sched.scored_nodes
            attempt.totals = sched.totals
            attempt.score_records = sched.score_records
        if statuses is not None:
            attempt.node_to_status = dict(statuses)
            attempt.evaluated_nodes = len(statuses)
        self.explain.record(attempt)

    def _unschedulable(self, fwk: Framework, state: CycleState, qpi: QueuedPodInfo,
                       err: FitError, cycle: int, start: float) -> None:
        pi = qpi.pod_info
        nominated: str | None = None
        if fwk.post_filter_plugins and err.num_all_nodes:
            self.metrics.preemption_attempts.inc()
            result, status = fwk.run_post_filter(state, pi, err.diagnosis.node_to_status)
            if status.is_success() or status.code is Code.UNSCHEDULABLE:
                if status.reasons:
                    err.diagnosis.post_filter_msg = status.message()
                if result is not None:
                    nominated = result.nominated_node_name
            elif status.code is Code.ERROR:
                log.warning("%s: PostFilter failed: %s", pi.key, status.message())
        message = str(err)
        qpi.unschedulable_plugins = set(err.diagnosis.unschedulable_plugins)
        self._record(fwk, qpi, "Unschedulable", "", message, num_all=err.num_all_nodes,
                     statuses=err.diagnosis.node_to_status, nominated=nominated or "")
        self.metrics.attempt("unschedulable", fwk.profile_name, time.perf_counter() - start)
        self._handle_failure(fwk, qpi, "Unschedulable", message, cycle, nominated)

    def _failed(self, fwk: Framework, qpi: QueuedPodInfo, status: Status, cycle: int,
                start: float, *, err_result: str) -> None:
        message = status.message() or status.code_name
        if status.plugin:
            message = f"running {status.plugin} plugin: {message}" if \
                status.code is Code.ERROR else message
        if status.is_rejected() and status.plugin:
            qpi.unschedulable_plugins = {status.plugin}
        else:
            qpi.unschedulable_plugins = set()
        self._record(fwk, qpi, "Error" if err_result == "error" else "Unschedulable", "",
                     message)
        self.metrics.attempt(err_result, fwk.profile_name, time.perf_counter() - start)
        reason = "SchedulerError" if status.code is Code.ERROR else "Unschedulable"
        self._handle_failure(fwk, qpi, reason, message, cycle, None)

    def _handle_failure(self, fwk: Framework, qpi: QueuedPodInfo, reason: str, message: str,
                        cycle: int, nominated: str | None) -> None:
        pi = qpi.pod_info
        self.queue.add_unschedulable(qpi, cycle)
        if nominated:
            self.queue.add_nominated(pi, nominated)
        elif nominated == "":
            self.queue.delete_nominated(pi.key)
        self._event(pi.pod, "Warning", "FailedScheduling", message)
        current = self.pods.get(pi.name, pi.namespace)
        if current is None:
            return
        self.spawn(self._update_pod_status(current, reason, message, nominated))

    async def _update_pod_status(self, pod: core_pb2.Pod, reason: str, message: str,
                                 nominated: str | None) -> None:
        """PodScheduled=False with the reason, and the nominated node, unless already so."""
        for c in pod.status.conditions:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == reason and \
                    c.message == message and (nominated is None or
                                              pod.status.nominatedNodeName == nominated):
                return
        status: dict[str, Any] = {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
            "lastTransitionTime": format_time(self.clock.now()), "lastProbeTime": None}]}
        if nominated is not None:
            status["nominatedNodeName"] = nominated or None
        try:
            await self.client.patch(core_pb2.Pod, pod.metadata.name, {"status": status},
                                    namespace=pod.metadata.namespace, patch_type="strategic",
                                    subresource="status")
        except ClientError as exc:
            if not is_not_found(exc):
                log.info("updating the status of %s/%s failed: %s", pod.metadata.namespace,
                         pod.metadata.name, exc)

    # -- running -----------------------------------------------------------------------

    async def scheduling_loop(self) -> None:
        running = True
        while running:
            running = await self.schedule_one()
            # Let informers and binds run between cycles. A real (if tiny) wait, not
            # sleep(0): with sleep(0) the loop never blocks in its selector, and gRPC's
            # completions reached it in bursts — bind responses sat for 1-2 s while the
            # apiserver and the client's poller were idle (py-spy), which was the
            # seconds-long p99 attempt latency of the benchmark.
            await asyncio.sleep(CYCLE_YIELD_SECONDS)

    async def run(self, *, leader_elect: bool | None = None) -> None:
        """Start informers, wait for them, then schedule (as leader when elected)."""
        le = self.config.leader_election
        elect = le.leader_elect if leader_elect is None else leader_elect
        aux: list[asyncio.Task[Any]] = []
        self.factory.start()
        try:
            if self.recorder is not None:
                aux.append(asyncio.create_task(self.recorder.run(), name="scheduler:events"))
            aux.append(asyncio.create_task(self.queue.run(self.clock.sleep),
                                           name="scheduler:queue-flush"))
            await self.factory.wait_for_sync()
            self.synced = True
            if self.freeze_heap_after_sync:
                freeze_startup_heap()
            log.info("scheduler caches synced: %d nodes, %d pods", self.cache.node_count,
                     self.cache.pod_count)
            if elect:
                self._leader_gauge = self.metrics.leader_status.labels(le.resource_name)
                self._leader_gauge.set(0)
                elector = LeaderElector(
                    self.client, le.resource_namespace, le.resource_name, self.identity,
                    lease_duration=le.lease_duration, renew_deadline=le.renew_deadline,
                    retry_period=le.retry_period, clock=self.clock)
                await elector.run(self._lead)
            else:
                await self._lead()
        finally:
            self.queue.close()
            for task in [*aux, *self._tasks]:
                task.cancel()
            await asyncio.gather(*aux, *self._tasks, return_exceptions=True)
            await self.factory.shutdown()

    async def _lead(self) -> None:
        self.leading = True
        if self._leader_gauge is not None:
            self._leader_gauge.set(1)
        log.info("scheduling as %s", self.identity)
        try:
            await self.scheduling_loop()
        finally:
            self.leading = False
            if self._leader_gauge is not None:
                self._leader_gauge.set(0)

    async def flush_events(self) -> None:
        if self.recorder is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.recorder.flush()
