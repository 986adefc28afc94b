"""The ReplicaSet controller: keep ``spec.replicas`` pods matching the selector alive.

``sync(namespace/name)``:

1. Read the ReplicaSet from the cache (gone: forget its expectations, done).
2. Claim pods: the active pods it controls that still match its selector
   stay; matching orphans are adopted and controlled pods that stopped
   matching are released (both by patching ``ownerReferences``).
3. Unless creations or deletions it made are still unobserved
   (expectations), create the missing pods in slow-start batches (1, 2, 4,
   ...) or delete the surplus, the least valuable first (unscheduled,
   pending, not ready, ... see ``replicaset_utils.pods_to_delete``), at most
   ``BURST_REPLICAS`` per sync.
4. Write the status (replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas, observedGeneration, the ReplicaFailure condition).

Events: SuccessfulCreate / FailedCreate / SuccessfulDelete / FailedDelete
on the ReplicaSet, as Kubernetes records them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pilothouse.api.selectors import LabelSelector, SelectorError, label_selector_from_api
from pilothouse.client import (
    APIError,
    DeletedFinalStateUnknown,
    copy_object,
    is_conflict,
    is_not_found,
    meta_namespace_key,
    split_key,
)
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import (
    Controller,
    ControllerContext,
    ControllerDescriptor,
)
from pilothouse.services.controllers.pod_utils import (
    controller_ref,
    is_pod_active,
    is_pod_ready,
    new_owner_reference,
)
from pilothouse.services.controllers.replicaset_utils import (
    BURST_REPLICAS,
    SLOW_START_INITIAL_BATCH,
    ControllerExpectations,
    PodFacts,
    adopt_patch,
    calculate_status,
    is_namespace_terminating,
    plan_claims,
    pod_from_template,
    pods_to_delete,
    release_patch,
    slow_start_batch,
)

__all__ = ["CONTROLLER_UID_INDEX", "DESCRIPTOR", "ORPHAN_INDEX", "ReplicaSetController",
           "add_controller_indexers"]

log = logging.getLogger("pilothouse.controllers.replicaset")

RS_API_VERSION = "apps/v1"
RS_KIND = "ReplicaSet"
# Pods by the UID of their controller, and controller-less pods by namespace: a
# ReplicaSet's candidates are its own pods plus its namespace's orphans, never a
# scan of every pod in the namespace.
CONTROLLER_UID_INDEX = "controller-uid"
ORPHAN_INDEX = "orphans-by-namespace"


def _controller_uid(obj: Any) -> list[str]:
    ref = controller_ref(obj)
    return [ref.uid] if ref is not None else []


def _orphan_namespace(obj: Any) -> list[str]:
    return [] if controller_ref(obj) is not None else [obj.metadata.namespace]


def add_controller_indexers(informer: Any, *, orphans: bool = True) -> None:
    """Add the controller-uid (and orphan) indices to a shared informer, once."""
    names = informer.indexer.index_names
    if CONTROLLER_UID_INDEX not in names:
        informer.add_indexer(CONTROLLER_UID_INDEX, _controller_uid)
    if orphans and ORPHAN_INDEX not in names:
        informer.add_indexer(ORPHAN_INDEX, _orphan_namespace)


class ReplicaSetController(Controller):
    name = "replicaset"

    def __init__(self, ctx: ControllerContext, *, burst_replicas: int = BURST_REPLICAS) -> None:
        super().__init__(ctx)
        self.burst_replicas = burst_replicas
        self.expectations = ControllerExpectations(ctx.clock)
        self.syncs = 0  # completed syncs, for the bench
        self.replicasets = ctx.informers.informer_for(apps_pb2.ReplicaSet)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        add_controller_indexers(self.replicasets, orphans=False)
        add_controller_indexers(self.pods)
        self._selectors: dict[str, tuple[int, LabelSelector]] = {}
        self._facts: dict[int, tuple[core_pb2.Pod, PodFacts]] = {}
        self.replicasets.add_event_handler(
            on_add=self._rs_changed, on_update=lambda old, new: self._rs_changed(new),
            on_delete=self._rs_deleted)
        self.pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_changed,
                                    on_delete=self._pod_gone)

    # -- event handlers: objects to keys ------------------------------------------------------

    def _rs_changed(self, obj: Any) -> None:
        self.enqueue(meta_namespace_key(obj))

    def _rs_deleted(self, obj: Any) -> None:
        rs = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self._selectors.pop(rs.metadata.uid, None)
        self.enqueue(meta_namespace_key(obj))

    def _resolve(self, namespace: str, ref: Any) -> apps_pb2.ReplicaSet | None:
        if ref.kind != RS_KIND:
            return None
        rs = self.replicasets.get(ref.name, namespace)
        if rs is None or rs.metadata.uid != ref.uid:
            return None
        return rs

    def _matching_replicasets(self, pod: core_pb2.Pod) -> list[apps_pb2.ReplicaSet]:
        out = []
        for rs in self.replicasets.list(pod.metadata.namespace):
            try:
                if self.selector(rs).matches(dict(pod.metadata.labels)):
                    out.append(rs)
            except SelectorError:
                continue
        return out

    def _pod_added(self, pod: core_pb2.Pod) -> None:
        if pod.metadata.HasField("deletionTimestamp"):
            # A restarted controller can see a pod already being deleted: count it as gone.
            self._pod_deleted(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            rs = self._resolve(pod.metadata.namespace, ref)
            if rs is not None:
                key = meta_namespace_key(rs)
                self.expectations.creation_observed(key)
                self.enqueue(key)
            return
        for rs in self._matching_replicasets(pod):
            self.enqueue(meta_namespace_key(rs))

    def _pod_updated(self, old: core_pb2.Pod, cur: core_pb2.Pod) -> None:
        if old.metadata.resourceVersion == cur.metadata.resourceVersion:
            return  # a resync: nothing changed
        labels_changed = old.metadata.labels != cur.metadata.labels
        if cur.metadata.HasField("deletionTimestamp"):
            # Graceful deletion: replace the pod now, not when the kubelet is done with it.
            self._pod_deleted(cur)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        ref_changed = old_ref != cur_ref
        if ref_changed and old_ref is not None:
            rs = self._resolve(old.metadata.namespace, old_ref)
            if rs is not None:
                self.enqueue(meta_namespace_key(rs))
        if cur_ref is not None:
            rs = self._resolve(cur.metadata.namespace, cur_ref)
            if rs is not None:
                key = meta_namespace_key(rs)
                self.enqueue(key)
                # Availability is a matter of time: look again once minReadySeconds passed.
                if (not is_pod_ready(old) and is_pod_ready(cur)
                        and rs.spec.minReadySeconds > 0):
                    self.enqueue_after(key, rs.spec.minReadySeconds + 1.0)
            return
        if labels_changed or ref_changed:
            for rs in self._matching_replicasets(cur):
                self.enqueue(meta_namespace_key(rs))

    def _pod_gone(self, obj: core_pb2.Pod | DeletedFinalStateUnknown[core_pb2.Pod]) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self._facts.pop(id(pod), None)
        self._pod_deleted(pod)

    def _pod_changed(self, old: core_pb2.Pod, cur: core_pb2.Pod) -> None:
        if old is not cur:
            self._facts.pop(id(old), None)
        self._pod_updated(old, cur)

    def _pod_deleted(self, obj: core_pb2.Pod | DeletedFinalStateUnknown[core_pb2.Pod]) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        ref = controller_ref(pod)
        if ref is None:
            return
        rs = self._resolve(pod.metadata.namespace, ref)
        if rs is None:
            return
        key = meta_namespace_key(rs)
        self.expectations.deletion_observed(key, meta_namespace_key(pod))
        self.enqueue(key)

    # -- sync ----------------------------------------------------------------------------------

    def selector(self, rs: apps_pb2.ReplicaSet) -> LabelSelector:
        """The parsed selector (cached per generation). Raises ``SelectorError``."""
        cached = self._selectors.get(rs.metadata.uid)
        if cached is not None and cached[0] == rs.metadata.generation:
            return cached[1]
        selector = label_selector_from_api(
            rs.spec.selector if rs.spec.HasField("selector") else None, "spec.selector")
        self._selectors[rs.metadata.uid] = (rs.metadata.generation, selector)
        return selector

    async def sync(self, key: str) -> None:
        try:
            await self.sync_replicaset(key)
        except APIError as exc:
            if not exc.is_conflict():
                raise
            # Our cache is behind the object we wrote: look again (rate-limited)
            # once the informer has caught up, without an error in the log.
            log.debug("conflict, retrying", extra={"replicaset": key, "error": str(exc)})
            self.queue.add_rate_limited(key)

    async def sync_replicaset(self, key: str) -> None:
        namespace, name = split_key(key)
        rs = self.replicasets.get(name, namespace)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = self.selector(rs)
        except SelectorError as exc:
            # A spec problem: retrying cannot fix it; the next spec change re-queues.
            log.error("invalid selector", extra={"replicaset": key, "error": str(exc)})
            return
        pods, facts = await self.claim_pods(rs, selector)
        manage_error: BaseException | None = None
        if needs_sync and not rs.metadata.HasField("deletionTimestamp"):
            try:
                await self.manage_replicas(pods, rs, key)
            except Exception as exc:  # reported in the status, then retried
                manage_error = exc
        status = calculate_status(rs, pods, manage_error, self.ctx.now(), facts)
        updated = await self.update_status(rs, status)
        self.syncs += 1
        if manage_error is not None:
            raise manage_error
        if (updated is not None and updated.spec.minReadySeconds > 0
                and updated.status.readyReplicas == _replicas(updated)
                and updated.status.availableReplicas != _replicas(updated)):
            self.enqueue_after(key, float(updated.spec.minReadySeconds))

    def facts(self, pod: core_pb2.Pod) -> PodFacts:
        """The facts of a cached pod, read once per cached version.

        Keyed by the cached object itself (cached objects never change; a new
        version is a new object): the pod handlers drop an entry when its
        object leaves the cache."""
        entry = self._facts.get(id(pod))
        if entry is not None and entry[0] is pod:
            return entry[1]
        facts = PodFacts.of(pod)
        self._facts[id(pod)] = (pod, facts)
        return facts

    # -- claiming ------------------------------------------------------------------------------

    async def claim_pods(self, rs: apps_pb2.ReplicaSet, selector: LabelSelector
                         ) -> tuple[list[core_pb2.Pod], list[PodFacts]]:
        """The active pods this ReplicaSet controls after adopting and releasing, and
        their facts.

        The pods the index says we control only need the selector check (the
        hot path: a thousand of them); the namespace's orphans go through the
        full claim rules."""
        namespace = rs.metadata.namespace
        deleting = rs.metadata.HasField("deletionTimestamp")
        owned: list[core_pb2.Pod] = []
        owned_facts: list[PodFacts] = []
        release: list[core_pb2.Pod] = []
        for pod in self.pods.by_index(CONTROLLER_UID_INDEX, rs.metadata.uid):
            facts = self.facts(pod)
            if not facts.active:
                continue
            if selector.matches(facts.labels):
                owned.append(pod)
                owned_facts.append(facts)
            elif not deleting:
                release.append(pod)
        orphans = [p for p in self.pods.by_index(ORPHAN_INDEX, namespace)
                   if self.facts(p).active]
        # (Pods of another namespace never carry this ReplicaSet's UID: the
        # apiserver's UIDs are unique and owners are namespace-local.)
        plan = plan_claims(rs.metadata.uid, deleting, orphans,
                           lambda p: selector.matches(self.facts(p).labels))
        plan.release.extend(release)
        if not plan.adopt and not plan.release:
            return owned, owned_facts
        plan.owned = owned
        errors: list[BaseException] = []
        if not await self._can_adopt(rs):
            plan.adopt = []
        ref = new_owner_reference(rs, RS_API_VERSION, RS_KIND)
        for pod in plan.adopt:
            try:
                adopted = await self.client.patch(core_pb2.Pod, pod.metadata.name,
                                                  adopt_patch(pod, ref), namespace=namespace)
            except APIError as exc:
                if not exc.is_not_found():
                    errors.append(exc)
                continue
            if is_pod_active(adopted):
                plan.owned.append(adopted)
        for pod in plan.release:
            try:
                await self.client.patch(core_pb2.Pod, pod.metadata.name,
                                        release_patch(pod, [rs.metadata.uid]),
                                        namespace=namespace)
            except APIError as exc:
                if not exc.is_not_found():
                    errors.append(exc)
        if errors:
            raise errors[0]
        return plan.owned, [PodFacts.of(p) for p in plan.owned]

    async def _can_adopt(self, rs: apps_pb2.ReplicaSet) -> bool:
        """Adopt only if the ReplicaSet, read fresh, is the same one and not being deleted."""
        try:
            fresh = await self.client.get(apps_pb2.ReplicaSet, rs.metadata.name,
                                          namespace=rs.metadata.namespace)
        except APIError as exc:
            if exc.is_not_found():
                return False
            raise
        return (fresh.metadata.uid == rs.metadata.uid
                and not fresh.metadata.HasField("deletionTimestamp"))

    # -- creating and deleting -----------------------------------------------------------------

    async def manage_replicas(self, pods: list[core_pb2.Pod], rs: apps_pb2.ReplicaSet,
                              key: str) -> None:
        diff = len(pods) - _replicas(rs)
        if diff < 0:
            await self._create_pods(rs, key, min(-diff, self.burst_replicas))
        elif diff > 0:
            await self._delete_pods(rs, key, pods, min(diff, self.burst_replicas))

    async def _create_pods(self, rs: apps_pb2.ReplicaSet, key: str, count: int) -> None:
        # Expect them all before the first request: the informer may see a pod
        # before create() returns.
        self.expectations.expect_creations(key, count)
        ref = new_owner_reference(rs, RS_API_VERSION, RS_KIND)
        namespace = rs.metadata.namespace

        async def create(_: int) -> None:
            pod = pod_from_template(rs.spec.template, namespace, rs.metadata.name, ref)
            try:
                created = await self.client.create(pod, namespace=namespace)
            except APIError as exc:
                if is_namespace_terminating(exc):
                    return  # the namespace is going away: nothing to report
                self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {exc}")
                raise
            self.recorder.event(rs, "Normal", "SuccessfulCreate",
                                f"Created pod: {created.metadata.name}")

        successes, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH, create)
        # Creations that failed or were never tried will never be observed.
        for _ in range(count - successes):
            self.expectations.creation_observed(key)
        if error is not None:
            raise error

    async def _delete_pods(self, rs: apps_pb2.ReplicaSet, key: str, pods: list[core_pb2.Pod],
                           count: int) -> None:
        victims = pods_to_delete(pods, self._related_pods(rs), count, self.ctx.now())
        self.expectations.expect_deletions(key, [meta_namespace_key(p) for p in victims])

        async def delete(pod: core_pb2.Pod) -> None:
            try:
                await self.client.delete(core_pb2.Pod, pod.metadata.name,
                                         namespace=pod.metadata.namespace)
            except APIError as exc:
                self.expectations.deletion_observed(key, meta_namespace_key(pod))
                if exc.is_not_found():
                    return
                self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {exc}")
                raise
            except BaseException:
                self.expectations.deletion_observed(key, meta_namespace_key(pod))
                raise
            self.recorder.event(rs, "Normal", "SuccessfulDelete",
                                f"Deleted pod: {pod.metadata.name}")

        results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _related_pods(self, rs: apps_pb2.ReplicaSet) -> list[core_pb2.Pod]:
        """Active pods of every ReplicaSet with the same controller (or just this one's)."""
        owner = controller_ref(rs)
        if owner is None:
            siblings = [rs]
        else:
            siblings = [r for r in self.replicasets.by_index(CONTROLLER_UID_INDEX, owner.uid)
                        if r.metadata.namespace == rs.metadata.namespace]
        pods: list[core_pb2.Pod] = []
        for sibling in siblings:
            pods.extend(p for p in self.pods.by_index(CONTROLLER_UID_INDEX, sibling.metadata.uid)
                        if is_pod_active(p))
        return pods

    # -- status --------------------------------------------------------------------------------

    async def update_status(self, rs: apps_pb2.ReplicaSet,
                            status: apps_pb2.ReplicaSetStatus) -> apps_pb2.ReplicaSet | None:
        """Write ``status`` unless it is what the ReplicaSet already reports; one retry
        on a conflict with a fresh read. None when the ReplicaSet is gone."""
        status.observedGeneration = rs.metadata.generation
        if status == rs.status:
            return rs
        new = copy_object(rs)
        new.status.CopyFrom(status)
        try:
            return await self.client.update_status(new)
        except APIError as exc:
            if exc.is_not_found():
                return None
            if not is_conflict(exc):
                raise
        try:
            fresh = await self.client.get(apps_pb2.ReplicaSet, rs.metadata.name,
                                          namespace=rs.metadata.namespace)
            status.observedGeneration = fresh.metadata.generation
            fresh.status.CopyFrom(status)
            return await self.client.update_status(fresh)
        except APIError as exc:
            if is_not_found(exc):
                return None
            raise


def _replicas(rs: apps_pb2.ReplicaSet) -> int:
    return rs.spec.replicas if rs.spec.HasField("replicas") else 1


async def start_replicaset(ctx: ControllerContext) -> None:
    workers = int(ctx.settings.get("concurrent-replicaset-syncs", ctx.workers))  # type: ignore[call-overload]
    controller = ReplicaSetController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers)


DESCRIPTOR = ControllerDescriptor("replicaset", start_replicaset)
