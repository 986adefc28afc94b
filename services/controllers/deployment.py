"""The Deployment controller: roll pod templates out through ReplicaSets.

A Deployment owns one ReplicaSet per template it has had, named
``<deployment>-<pod-template-hash>`` and labelled with the hash so their pods
never overlap. ``sync(namespace/name)``:

1. Claim the ReplicaSets its selector matches (adopt orphans, release strays).
2. Being deleted: only report status. Paused, or only ``replicas`` changed
   (a scaling event): scale the ReplicaSets proportionally, keep the
   revision history trimmed, report status.
3. Otherwise roll out: find the new ReplicaSet (its template equals the
   Deployment's, ignoring the hash label) or create it with revision
   max(old)+1, then
   - RollingUpdate: grow the new one up to replicas+maxSurge pods in total,
     shrink the old ones while at least replicas-maxUnavailable stay
     available (unhealthy old pods first);
   - Recreate: scale every old one to zero, wait until their pods are gone,
     then scale the new one up.
4. Once complete, delete old ReplicaSets beyond revisionHistoryLimit.
5. Status: replicas, updated/ready/available/unavailable, observedGeneration,
   and the Available / Progressing / ReplicaFailure conditions with
   Kubernetes' reasons; a stuck rollout is re-checked when its
   progressDeadlineSeconds run out and then reports ProgressDeadlineExceeded.

A rollback (``kubectl rollout undo``) is kubectl writing an old ReplicaSet's
template back into the Deployment: that ReplicaSet becomes the new one again
and its revision moves to max+1, the revision it had going to
``deployment.kubernetes.io/revision-history``.
"""

from __future__ import annotations

import logging
from typing import Any

from pilothouse.api.selectors import LabelSelector, SelectorError, label_selector_from_api
from pilothouse.client import (
    APIError,
    DeletedFinalStateUnknown,
    copy_object,
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
from pilothouse.services.controllers.deployment_utils import (
    DESIRED_REPLICAS_ANNOTATION,
    POD_TEMPLATE_HASH_LABEL,
    PROGRESSING,
    REASON_FOUND_NEW_RS,
    REASON_NEW_RS_AVAILABLE,
    REASON_NEW_RS_CREATED,
    REASON_PAUSED,
    REASON_RESUMED,
    REASON_RS_CREATE_ERROR,
    REASON_RS_UPDATED,
    REASON_TIMED_OUT,
    REPLICA_FAILURE,
    REVISION_ANNOTATION,
    active,
    actual_replicas,
    by_creation,
    by_revision,
    calculate_status,
    deployment_complete,
    deployment_progressing,
    deployment_timed_out,
    equal_ignore_hash,
    find_active_or_latest,
    find_new_replica_set,
    find_old_replica_sets,
    get_condition,
    get_proportion,
    has_progress_deadline,
    is_rolling_update,
    is_saturated,
    max_revision,
    max_surge,
    max_unavailable,
    new_condition,
    new_rs_new_replicas,
    progress_deadline,
    remove_condition,
    replicas_of,
    set_condition,
    set_deployment_revision,
    set_new_replica_set_annotations,
    set_replicas_annotations,
    total_replicas,
)
from pilothouse.services.controllers.pod_utils import (
    compute_hash,
    controller_ref,
    new_owner_reference,
)
from pilothouse.services.controllers.replicaset import (
    CONTROLLER_UID_INDEX,
    ORPHAN_INDEX,
    add_controller_indexers,
)
from pilothouse.services.controllers.replicaset_utils import (
    adopt_patch,
    plan_claims,
    release_patch,
)

__all__ = ["DESCRIPTOR", "DeploymentController"]

log = logging.getLogger("pilothouse.controllers.deployment")

API_VERSION = "apps/v1"
KIND = "Deployment"
MAX_INT32 = 2**31 - 1

RS = apps_pb2.ReplicaSet
Deployment = apps_pb2.Deployment


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.deployments = ctx.informers.informer_for(Deployment)
        self.replicasets = ctx.informers.informer_for(RS)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        add_controller_indexers(self.replicasets)
        add_controller_indexers(self.pods)
        self.deployments.add_event_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new),
            on_delete=self._enqueue)
        self.replicasets.add_event_handler(on_add=self._rs_added, on_update=self._rs_updated,
                                           on_delete=self._rs_deleted)
        self.pods.add_event_handler(on_delete=self._pod_deleted)

    # -- event handlers ------------------------------------------------------------------------

    def _enqueue(self, obj: Any) -> None:
        self.enqueue(meta_namespace_key(obj))

    def _resolve(self, namespace: str, ref: Any) -> Deployment | None:
        if ref is None or ref.kind != KIND:
            return None
        d = self.deployments.get(ref.name, namespace)
        if d is None or d.metadata.uid != ref.uid:
            return None
        return d

    def _matching_deployments(self, rs: RS) -> list[Deployment]:
        out = []
        for d in self.deployments.list(rs.metadata.namespace):
            try:
                selector = label_selector_from_api(d.spec.selector)
            except SelectorError:
                continue
            if not selector.empty and selector.matches(dict(rs.metadata.labels)):
                out.append(d)
        return out

    def _rs_added(self, rs: RS) -> None:
        if rs.metadata.HasField("deletionTimestamp"):
            self._rs_deleted(rs)
            return
        ref = controller_ref(rs)
        if ref is not None:
            d = self._resolve(rs.metadata.namespace, ref)
            if d is not None:
                self._enqueue(d)
            return
        for d in self._matching_deployments(rs):
            self._enqueue(d)

    def _rs_updated(self, old: RS, cur: RS) -> None:
        if old.metadata.resourceVersion == cur.metadata.resourceVersion:
            return
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        if old_ref != cur_ref and old_ref is not None:
            d = self._resolve(old.metadata.namespace, old_ref)
            if d is not None:
                self._enqueue(d)
        if cur_ref is not None:
            d = self._resolve(cur.metadata.namespace, cur_ref)
            if d is not None:
                self._enqueue(d)
            return
        if old.metadata.labels != cur.metadata.labels or old_ref != cur_ref:
            for d in self._matching_deployments(cur):
                self._enqueue(d)

    def _rs_deleted(self, obj: RS | DeletedFinalStateUnknown[RS]) -> None:
        rs = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        d = self._resolve(rs.metadata.namespace, controller_ref(rs))
        if d is not None:
            self._enqueue(d)

    def _pod_deleted(self, obj: Any) -> None:
        # Recreate waits for the old pods to be gone: their deletion is its signal.
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        ref = controller_ref(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.replicasets.get(ref.name, pod.metadata.namespace)
        if rs is None or rs.metadata.uid != ref.uid:
            return
        d = self._resolve(rs.metadata.namespace, controller_ref(rs))
        if d is not None and d.spec.strategy.type == "Recreate":
            self._enqueue(d)

    # -- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        try:
            await self.sync_deployment(key)
        except APIError as exc:
            if not exc.is_conflict():
                raise
            # Our cache is behind the object we wrote: look again (rate-limited)
            # once the informer has caught up, without an error in the log.
            log.debug("conflict, retrying", extra={"deployment": key, "error": str(exc)})
            self.queue.add_rate_limited(key)

    async def sync_deployment(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.deployments.get(name, namespace)
        if cached is None:
            return
        d = copy_object(cached)
        try:
            selector = label_selector_from_api(
                d.spec.selector if d.spec.HasField("selector") else None, "spec.selector")
        except SelectorError as exc:
            log.error("invalid selector", extra={"deployment": key, "error": str(exc)})
            return
        if selector.empty:
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector "
                                "is required.")
            if d.status.observedGeneration < d.metadata.generation:
                d.status.observedGeneration = d.metadata.generation
                await self.client.update_status(d)
            return
        rs_list = await self.claim_replica_sets(d, selector)
        if d.metadata.HasField("deletionTimestamp"):
            await self.sync_status_only(d, rs_list)
            return
        d = await self.check_paused_conditions(d)
        if d.spec.paused:
            await self.sync_scale(d, rs_list)
            return
        d, scaling = await self.is_scaling_event(d, rs_list)
        if scaling:
            await self.sync_scale(d, rs_list)
            return
        if d.spec.strategy.type == "Recreate":
            await self.rollout_recreate(d, rs_list)
        else:
            await self.rollout_rolling(d, rs_list)

    # -- claiming ------------------------------------------------------------------------------

    async def claim_replica_sets(self, d: Deployment, selector: LabelSelector) -> list[RS]:
        namespace = d.metadata.namespace
        candidates = [rs for rs in self.replicasets.by_index(CONTROLLER_UID_INDEX,
                                                             d.metadata.uid)
                      if rs.metadata.namespace == namespace]
        candidates += self.replicasets.by_index(ORPHAN_INDEX, namespace)
        plan = plan_claims(d.metadata.uid, d.metadata.HasField("deletionTimestamp"),
                           candidates, lambda rs: selector.matches(dict(rs.metadata.labels)))
        if not plan.adopt and not plan.release:
            return plan.owned
        if plan.adopt and not await self._can_adopt(d):
            plan.adopt = []
        ref = new_owner_reference(d, API_VERSION, KIND)
        for rs in plan.adopt:
            try:
                plan.owned.append(await self.client.patch(RS, rs.metadata.name,
                                                          adopt_patch(rs, ref),
                                                          namespace=namespace))
            except APIError as exc:
                if not exc.is_not_found():
                    raise
        for rs in plan.release:
            try:
                await self.client.patch(RS, rs.metadata.name,
                                        release_patch(rs, [d.metadata.uid]), namespace=namespace)
            except APIError as exc:
                if not exc.is_not_found():
                    raise
        return plan.owned

    async def _can_adopt(self, d: Deployment) -> bool:
        try:
            fresh = await self.client.get(Deployment, d.metadata.name,
                                          namespace=d.metadata.namespace)
        except APIError as exc:
            if exc.is_not_found():
                return False
            raise
        return (fresh.metadata.uid == d.metadata.uid
                and not fresh.metadata.HasField("deletionTimestamp"))

    # -- writes --------------------------------------------------------------------------------

    async def _write_status(self, d: Deployment) -> Deployment:
        return await self.client.update_status(d)

    async def _write_annotations(self, d: Deployment) -> Deployment:
        """The Deployment's metadata (its revision annotation); the status the caller
        was building is carried over to the returned object."""
        status = apps_pb2.DeploymentStatus()
        status.CopyFrom(d.status)
        updated = await self.client.update(d)
        updated.status.CopyFrom(status)
        return updated

    async def scale_replica_set(self, rs: RS, new_scale: int, d: Deployment) -> tuple[bool, RS]:
        """Set ``rs``'s size and its desired/max annotations; an Event when the size moves."""
        old_scale = replicas_of(rs)
        size_changed = old_scale != new_scale
        new = copy_object(rs)
        annotations_changed = set_replicas_annotations(new, replicas_of(d),
                                                       replicas_of(d) + max_surge(d))
        if not size_changed and not annotations_changed:
            return False, rs
        new.spec.replicas = new_scale
        updated = await self.client.update(new)
        if size_changed:
            direction = "up" if old_scale < new_scale else "down"
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {direction} replica set {rs.metadata.name} from "
                                f"{old_scale} to {new_scale}")
        return size_changed, updated

    async def scale_and_record(self, rs: RS, new_scale: int, d: Deployment) -> tuple[bool, RS]:
        if replicas_of(rs) == new_scale:
            return False, rs
        return await self.scale_replica_set(rs, new_scale, d)

    # -- new and old ReplicaSets ---------------------------------------------------------------

    async def get_all_replica_sets(self, d: Deployment, rs_list: list[RS], create: bool
                                   ) -> tuple[Deployment, RS | None, list[RS]]:
        """(deployment, new ReplicaSet, old ReplicaSets), syncing revisions on the way."""
        old_rss = find_old_replica_sets(d, rs_list)
        d, new_rs = await self.get_new_replica_set(d, rs_list, old_rss, create)
        return d, new_rs, old_rss

    async def get_new_replica_set(self, d: Deployment, rs_list: list[RS], old_rss: list[RS],
                                  create: bool) -> tuple[Deployment, RS | None]:
        existing = find_new_replica_set(d, rs_list)
        new_revision = max_revision(old_rss) + 1
        now = self.ctx.now()
        if existing is not None:
            candidate = copy_object(existing)
            changed = set_new_replica_set_annotations(d, candidate, new_revision, exists=True)
            if changed or candidate.spec.minReadySeconds != d.spec.minReadySeconds:
                candidate.spec.minReadySeconds = d.spec.minReadySeconds
                existing = await self.client.update(candidate)
                _replace(rs_list, existing)
            if set_deployment_revision(d, existing.metadata.annotations.get(
                    REVISION_ANNOTATION, "")):
                d = await self._write_annotations(d)
            if has_progress_deadline(d) and get_condition(d.status, PROGRESSING) is None:
                set_condition(d.status, new_condition(
                    PROGRESSING, "True", REASON_FOUND_NEW_RS,
                    f'Found new replica set "{existing.metadata.name}"', now))
                d = await self._write_status(d)
            return d, existing
        if not create:
            return d, None
        collision = d.status.collisionCount if d.status.HasField("collisionCount") else None
        pod_hash = compute_hash(d.spec.template, collision)
        rs = RS()
        rs.metadata.name = f"{d.metadata.name}-{pod_hash}"
        rs.metadata.namespace = d.metadata.namespace
        rs.metadata.ownerReferences.append(new_owner_reference(d, API_VERSION, KIND))
        rs.spec.template.CopyFrom(d.spec.template)
        rs.spec.template.metadata.labels[POD_TEMPLATE_HASH_LABEL] = pod_hash
        rs.metadata.labels.update(rs.spec.template.metadata.labels)
        rs.spec.selector.CopyFrom(d.spec.selector)
        rs.spec.selector.matchLabels[POD_TEMPLATE_HASH_LABEL] = pod_hash
        rs.spec.minReadySeconds = d.spec.minReadySeconds
        rs.spec.replicas = 0
        rs.spec.replicas = new_rs_new_replicas(d, [*old_rss, rs], rs)
        set_new_replica_set_annotations(d, rs, new_revision, exists=False)
        already_exists = False
        try:
            created = await self.client.create(rs)
        except APIError as exc:
            if exc.is_already_exists():
                found = await self.client.get(RS, rs.metadata.name,
                                              namespace=rs.metadata.namespace)
                ref = controller_ref(found)
                if (ref is not None and ref.uid == d.metadata.uid
                        and equal_ignore_hash(found.spec.template, d.spec.template)):
                    created, already_exists = found, True
                else:
                    # A different template hashed to the same name: count the
                    # collision (it goes into the next hash) and try again.
                    d.status.collisionCount = (collision or 0) + 1
                    await self._write_status(d)
                    raise
            else:
                if has_progress_deadline(d):
                    set_condition(d.status, new_condition(
                        PROGRESSING, "False", REASON_RS_CREATE_ERROR,
                        f'Failed to create new replica set "{rs.metadata.name}": {exc}', now))
                    await self._write_status(d)
                raise
        _replace(rs_list, created)
        if not already_exists and replicas_of(created) > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {created.metadata.name} from 0 to "
                                f"{replicas_of(created)}")
        if set_deployment_revision(d, str(new_revision)):
            d = await self._write_annotations(d)
        if not already_exists and has_progress_deadline(d):
            set_condition(d.status, new_condition(
                PROGRESSING, "True", REASON_NEW_RS_CREATED,
                f'Created new replica set "{created.metadata.name}"', now))
            d = await self._write_status(d)
        return d, created

    # -- scaling -------------------------------------------------------------------------------

    async def is_scaling_event(self, d: Deployment, rs_list: list[RS]
                               ) -> tuple[Deployment, bool]:
        """Some active ReplicaSet was sized for a different ``replicas`` (and the
        Deployment as it is after syncing revisions)."""
        d, new_rs, old_rss = await self.get_all_replica_sets(d, rs_list, False)
        for rs in active([*old_rss, new_rs]):
            desired = rs.metadata.annotations.get(DESIRED_REPLICAS_ANNOTATION)
            if desired is None:
                continue
            try:
                if int(desired) != replicas_of(d):
                    return d, True
            except ValueError:
                continue
        return d, False

    async def sync_scale(self, d: Deployment, rs_list: list[RS]) -> None:
        """Scale (paused, or only ``replicas`` changed), trim history when paused, status."""
        d, new_rs, old_rss = await self.get_all_replica_sets(d, rs_list, False)
        await self.scale(d, new_rs, old_rss)
        if d.spec.paused:
            await self.cleanup_deployment(old_rss, d)
        await self.sync_deployment_status([*old_rss, *([new_rs] if new_rs else [])], new_rs, d)

    async def sync_status_only(self, d: Deployment, rs_list: list[RS]) -> None:
        d, new_rs, old_rss = await self.get_all_replica_sets(d, rs_list, False)
        await self.sync_deployment_status([*old_rss, *([new_rs] if new_rs else [])], new_rs, d)

    async def scale(self, d: Deployment, new_rs: RS | None, old_rss: list[RS]) -> None:
        """Resize for a new ``replicas``: one active ReplicaSet takes all of it; during a
        rollout every active ReplicaSet grows or shrinks in proportion to its size."""
        target = find_active_or_latest(new_rs, old_rss)
        if target is not None:
            if replicas_of(target) != replicas_of(d):
                await self.scale_and_record(target, replicas_of(d), d)
            return
        if is_saturated(d, new_rs):
            for old in active(old_rss):
                await self.scale_and_record(old, 0, d)
            return
        if not is_rolling_update(d):
            return
        all_rss = active([*old_rss, new_rs])
        allowed = replicas_of(d) + max_surge(d) if replicas_of(d) > 0 else 0
        to_add = allowed - total_replicas(all_rss)
        newest_first = list(reversed(by_creation(all_rss)))
        if to_add > 0:
            all_rss = sorted(newest_first, key=lambda rs: -replicas_of(rs))
        elif to_add < 0:
            all_rss = sorted(by_creation(all_rss), key=lambda rs: -replicas_of(rs))
        sizes: dict[str, int] = {}
        added = 0
        for rs in all_rss:
            share = get_proportion(rs, d, to_add, added) if to_add else 0
            sizes[rs.metadata.uid] = replicas_of(rs) + share
            added += share
        for i, rs in enumerate(all_rss):
            if i == 0 and to_add != 0:
                sizes[rs.metadata.uid] = max(sizes[rs.metadata.uid] + to_add - added, 0)
            await self.scale_replica_set(rs, sizes[rs.metadata.uid], d)

    # -- rolling update ------------------------------------------------------------------------

    async def rollout_rolling(self, d: Deployment, rs_list: list[RS]) -> None:
        d, new_rs, old_rss = await self.get_all_replica_sets(d, rs_list, True)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        scaled_up, new_rs = await self.reconcile_new_replica_set(all_rss, new_rs, d)
        if scaled_up:
            await self.sync_rollout_status([*old_rss, new_rs], new_rs, d)
            return
        scaled_down = await self.reconcile_old_replica_sets([*old_rss, new_rs], active(old_rss),
                                                            new_rs, d)
        if scaled_down:
            await self.sync_rollout_status([*old_rss, new_rs], new_rs, d)
            return
        if deployment_complete(d, d.status):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status([*old_rss, new_rs], new_rs, d)

    async def reconcile_new_replica_set(self, all_rss: list[RS], new_rs: RS,
                                        d: Deployment) -> tuple[bool, RS]:
        if replicas_of(new_rs) == replicas_of(d):
            return False, new_rs
        if replicas_of(new_rs) > replicas_of(d):
            return await self.scale_and_record(new_rs, replicas_of(d), d)
        return await self.scale_and_record(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)

    async def reconcile_old_replica_sets(self, all_rss: list[RS], old_rss: list[RS],
                                         new_rs: RS, d: Deployment) -> bool:
        """Scale old ReplicaSets down as far as availability allows."""
        if total_replicas(old_rss) == 0:
            return False
        min_available = replicas_of(d) - max_unavailable(d)
        new_unavailable = replicas_of(new_rs) - new_rs.status.availableReplicas
        max_scaled_down = total_replicas(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        old_rss, cleaned = await self.cleanup_unhealthy_replicas(old_rss, d, max_scaled_down)
        scaled = await self.scale_down_old_for_rolling_update([*old_rss, new_rs], old_rss, d)
        return cleaned + scaled > 0

    async def cleanup_unhealthy_replicas(self, old_rss: list[RS], d: Deployment,
                                         max_cleanup: int) -> tuple[list[RS], int]:
        """Drop old replicas that are not available first: they serve nobody."""
        old_rss = by_creation(old_rss)
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            want = replicas_of(rs)
            if want == 0 or want == rs.status.availableReplicas:
                continue
            count = min(max_cleanup - total, want - rs.status.availableReplicas)
            _, old_rss[i] = await self.scale_and_record(rs, want - count, d)
            total += count
        return old_rss, total

    async def scale_down_old_for_rolling_update(self, all_rss: list[RS], old_rss: list[RS],
                                                d: Deployment) -> int:
        min_available = replicas_of(d) - max_unavailable(d)
        available = sum(rs.status.availableReplicas for rs in all_rss)
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in by_creation(old_rss):
            if total >= to_scale_down:
                break
            if replicas_of(rs) == 0:
                continue
            count = min(replicas_of(rs), to_scale_down - total)
            await self.scale_and_record(rs, replicas_of(rs) - count, d)
            total += count
        return total

    # -- recreate ------------------------------------------------------------------------------

    async def rollout_recreate(self, d: Deployment, rs_list: list[RS]) -> None:
        d, new_rs, old_rss = await self.get_all_replica_sets(d, rs_list, False)
        scaled_down = False
        for rs in active(old_rss):
            changed, _ = await self.scale_and_record(rs, 0, d)
            scaled_down = scaled_down or changed
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        if scaled_down or self.old_pods_running(new_rs, old_rss, rs_list):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            d, new_rs, old_rss = await self.get_all_replica_sets(d, rs_list, True)
            assert new_rs is not None
        scaled_up, new_rs = await self.scale_and_record(new_rs, replicas_of(d), d)
        all_rss = [*old_rss, new_rs]
        if scaled_up:
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if deployment_complete(d, d.status):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status(all_rss, new_rs, d)

    def old_pods_running(self, new_rs: RS | None, old_rss: list[RS], rs_list: list[RS]) -> bool:
        """Any pod of an old ReplicaSet that has not finished (terminating ones count)."""
        if actual_replicas(old_rss) > 0:
            return True
        new_uid = new_rs.metadata.uid if new_rs is not None else ""
        for rs in rs_list:
            if rs.metadata.uid == new_uid:
                continue
            for pod in self.pods.by_index(CONTROLLER_UID_INDEX, rs.metadata.uid):
                if pod.status.phase not in ("Failed", "Succeeded"):
                    return True
        return False

    # -- history -------------------------------------------------------------------------------

    async def cleanup_deployment(self, old_rss: list[RS], d: Deployment) -> None:
        """Delete the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        if not d.spec.HasField("revisionHistoryLimit") or \
                d.spec.revisionHistoryLimit == MAX_INT32:
            return
        alive = [rs for rs in old_rss if not rs.metadata.HasField("deletionTimestamp")]
        diff = len(alive) - d.spec.revisionHistoryLimit
        if diff <= 0:
            return
        for rs in by_revision(alive)[:diff]:
            if (rs.status.replicas != 0 or replicas_of(rs) != 0
                    or rs.metadata.generation > rs.status.observedGeneration):
                continue
            try:
                await self.client.delete(RS, rs.metadata.name, namespace=rs.metadata.namespace)
            except APIError as exc:
                if not exc.is_not_found():
                    raise

    # -- status --------------------------------------------------------------------------------

    async def check_paused_conditions(self, d: Deployment) -> Deployment:
        if not has_progress_deadline(d):
            return d
        cond = get_condition(d.status, PROGRESSING)
        if cond is not None and cond.reason == REASON_TIMED_OUT:
            return d  # a reported lack of progress is not hidden by a pause
        paused_cond = cond is not None and cond.reason == REASON_PAUSED
        now = self.ctx.now()
        if d.spec.paused and not paused_cond:
            set_condition(d.status, new_condition(PROGRESSING, "Unknown", REASON_PAUSED,
                                                  "Deployment is paused", now))
        elif not d.spec.paused and paused_cond:
            set_condition(d.status, new_condition(PROGRESSING, "Unknown", REASON_RESUMED,
                                                  "Deployment is resumed", now))
        else:
            return d
        return await self._write_status(d)

    async def sync_deployment_status(self, all_rss: list[RS], new_rs: RS | None,
                                     d: Deployment) -> None:
        status = calculate_status(all_rss, new_rs, d, self.ctx.now())
        if status == d.status:
            return
        d.status.CopyFrom(status)
        await self._write_status(d)

    async def sync_rollout_status(self, all_rss: list[RS], new_rs: RS | None,
                                  d: Deployment) -> None:
        now = self.ctx.now()
        status = calculate_status(all_rss, new_rs, d, now)
        if not has_progress_deadline(d):
            remove_condition(status, PROGRESSING)
        current = get_condition(d.status, PROGRESSING)
        complete_already = (status.replicas == status.updatedReplicas and current is not None
                            and current.reason == REASON_NEW_RS_AVAILABLE)
        rs_name = f'ReplicaSet "{new_rs.metadata.name}"' if new_rs is not None \
            else f'Deployment "{d.metadata.name}"'
        if has_progress_deadline(d) and not complete_already:
            if deployment_complete(d, status):
                set_condition(status, new_condition(
                    PROGRESSING, "True", REASON_NEW_RS_AVAILABLE,
                    f"{rs_name} has successfully progressed.", now))
            elif deployment_progressing(d, status):
                cond = new_condition(PROGRESSING, "True", REASON_RS_UPDATED,
                                     f"{rs_name} is progressing.", now)
                if current is not None:
                    if current.status == "True":
                        cond.lastTransitionTime.CopyFrom(current.lastTransitionTime)
                    remove_condition(status, PROGRESSING)
                set_condition(status, cond)
            elif deployment_timed_out(d, status, now):
                set_condition(status, new_condition(
                    PROGRESSING, "False", REASON_TIMED_OUT,
                    f"{rs_name} has timed out progressing.", now))
        failure = self._replica_failure(all_rss, new_rs)
        if failure is not None:
            set_condition(status, failure)
        else:
            remove_condition(status, REPLICA_FAILURE)
        if status == d.status:
            self._requeue_stuck(d, status)
            return
        d.status.CopyFrom(status)
        await self._write_status(d)

    @staticmethod
    def _replica_failure(all_rss: list[RS], new_rs: RS | None
                         ) -> apps_pb2.DeploymentCondition | None:
        ordered = ([new_rs] if new_rs is not None else []) + [
            rs for rs in all_rss if new_rs is None or rs.metadata.uid != new_rs.metadata.uid]
        for rs in ordered:
            for cond in rs.status.conditions:
                if cond.type == REPLICA_FAILURE:
                    return apps_pb2.DeploymentCondition(
                        type=REPLICA_FAILURE, status=cond.status, reason=cond.reason,
                        message=cond.message, lastUpdateTime=cond.lastTransitionTime,
                        lastTransitionTime=cond.lastTransitionTime)
        return None

    def _requeue_stuck(self, d: Deployment, status: apps_pb2.DeploymentStatus) -> None:
        """Look again when the progress deadline of a rollout in progress runs out."""
        current = get_condition(d.status, PROGRESSING)
        if not has_progress_deadline(d) or current is None:
            return
        if deployment_complete(d, status) or current.reason == REASON_TIMED_OUT:
            return
        updated = current.lastUpdateTime.seconds
        after = updated + progress_deadline(d) - self.ctx.now().timestamp()
        key = meta_namespace_key(d)
        if after < 1:
            self.queue.add_rate_limited(key)
        else:
            self.enqueue_after(key, after + 1)


def _replace(rs_list: list[RS], rs: RS) -> None:
    """Put the latest copy of ``rs`` into ``rs_list`` (appended if new): later steps
    of the same sync must not write from a stale resourceVersion."""
    for i, known in enumerate(rs_list):
        if known.metadata.uid == rs.metadata.uid:
            rs_list[i] = rs
            return
    rs_list.append(rs)


async def start_deployment(ctx: ControllerContext) -> None:
    workers = int(ctx.settings.get("concurrent-deployment-syncs", ctx.workers))  # type: ignore[call-overload]
    controller = DeploymentController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers)


DESCRIPTOR = ControllerDescriptor("deployment", start_deployment)
