"""StatefulSet controller: stable, ordered pods with their own claims.

Level-triggered over StatefulSet keys. Pods are ``<set>-<ordinal>`` (ordinals
from ``spec.ordinals.start``), labelled ``statefulset.kubernetes.io/pod-name``,
``apps.kubernetes.io/pod-index`` and ``controller-revision-hash`` (the
revision's name), with hostname = pod name and subdomain = serviceName; each
``volumeClaimTemplates`` entry becomes the PVC ``<template>-<set>-<ordinal>``,
created before its pod and mounted by it. ``sync``:

1. Revisions (``sync_revisions``): the update revision is the current
   template; ``status.currentRevision`` the one the set is rolling from.
2. Ascending ordinals: a missing pod is created (with the current revision
   below the RollingUpdate partition, the update revision otherwise), a
   Failed pod is deleted to be recreated. Under OrderedReady the walk stops
   at the first pod that is not Running and Ready (for minReadySeconds) or
   is terminating; under Parallel it does not wait.
3. Pods beyond the replicas are deleted highest ordinal first: one at a time
   and only when the rest is healthy under OrderedReady, all at once under
   Parallel. With ``persistentVolumeClaimRetentionPolicy.whenScaled: Delete``
   their claims get the pod as owner, so they go with it.
4. RollingUpdate: when every pod is healthy, the highest ordinal at or
   above ``partition`` not on the update revision is deleted (and recreated
   by step 2). When all pods are updated and ready, currentRevision moves.
5. Status: replicas, ready, available, current and updated replicas,
   revisions, observedGeneration.

Names are deterministic, so a lagging cache at worst gets AlreadyExists
(ignored): no expectations needed.
"""

from __future__ import annotations

from typing import Any

from pilothouse.api.selectors import label_selector_from_api
from pilothouse.client import APIError, copy_object, split_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.pod_utils import (
    controller_ref,
    is_owned_by,
    is_pod_available,
    is_pod_ready,
    new_owner_reference,
)
from pilothouse.services.controllers.revisions import (
    REVISION_HASH_LABEL,
    revision_template,
    sync_revisions,
)
from pilothouse.services.controllers.settings import workers
from pilothouse.services.controllers.statefulset_utils import (
    claim_name,
    new_claims,
    new_pod,
    ordinal_of,
    ordinals,
    uses_current_revision,
)

__all__ = ["DESCRIPTOR", "StatefulSetController"]


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.sets = ctx.informers.informer_for(apps_pb2.StatefulSet)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        self.claims = ctx.informers.informer_for(core_pb2.PersistentVolumeClaim)
        self.revisions = ctx.informers.informer_for(apps_pb2.ControllerRevision)
        self.sets.add_event_handler(
            on_add=self._enqueue_obj,
            on_update=lambda old, new: self._enqueue_obj(new),
            on_delete=self._enqueue_obj)
        self.pods.add_event_handler(
            on_add=self._pod_changed,
            on_update=lambda old, new: self._pod_changed(new),
            on_delete=self._pod_changed)

    def _enqueue_obj(self, obj: Any) -> None:
        o = object_of(obj)
        self.enqueue(f"{o.metadata.namespace}/{o.metadata.name}")

    def _pod_changed(self, obj: Any) -> None:
        pod = object_of(obj)
        ref = controller_ref(pod)
        if ref is not None and ref.kind == "StatefulSet":
            self.enqueue(f"{pod.metadata.namespace}/{ref.name}")

    def _healthy(self, sts: apps_pb2.StatefulSet, pod: core_pb2.Pod) -> bool:
        return pod.status.phase == "Running" and not pod.metadata.HasField("deletionTimestamp") \
            and is_pod_available(pod, sts.spec.minReadySeconds, self.ctx.now())

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        sts = self.sets.get(name, namespace)
        if sts is None or sts.metadata.HasField("deletionTimestamp"):
            return
        selector = label_selector_from_api(sts.spec.selector, "spec.selector")
        pods: dict[int, core_pb2.Pod] = {}
        for pod in self.pods.list(namespace, selector):
            ordinal = ordinal_of(name, pod.metadata.name)
            if ordinal is not None and is_owned_by(pod, sts):
                pods[ordinal] = pod
        live = {p.metadata.labels.get(REVISION_HASH_LABEL, "") for p in pods.values()}
        if sts.status.currentRevision:
            live.add(sts.status.currentRevision)
        history = sts.spec.revisionHistoryLimit if sts.spec.HasField("revisionHistoryLimit") \
            else 10
        revs = await sync_revisions(self.client, sts, "StatefulSet",
                                    self.revisions.list(namespace), live, history)
        update_rev = revs.update.metadata.name
        current_rev = sts.status.currentRevision or update_rev
        current_tmpl = sts.spec.template
        for rev in revs.all:
            if rev.metadata.name == current_rev:
                current_tmpl = revision_template(rev) or sts.spec.template
        parallel = sts.spec.podManagementPolicy == "Parallel"
        wanted = ordinals(sts)

        blocked = False
        for ordinal in wanted:
            current = pods.get(ordinal)
            if current is not None and current.status.phase == "Failed" and \
                    not current.metadata.HasField("deletionTimestamp"):
                await self._delete_pod(sts, current)
                pods.pop(ordinal)
                blocked = True
                if not parallel:
                    break
                continue
            if current is None:
                old = uses_current_revision(sts, ordinal)
                await self._create_pod(sts, ordinal, current_tmpl if old else sts.spec.template,
                                       current_rev if old else update_rev)
                blocked = True
                if not parallel:
                    break
                continue
            if not self._healthy(sts, current):
                blocked = True
                if not parallel:
                    break

        condemned = sorted((o for o in pods if o not in wanted), reverse=True)
        if condemned and (parallel or not blocked):
            if parallel:
                doomed = [o for o in condemned
                          if not pods[o].metadata.HasField("deletionTimestamp")]
            elif any(pods[o].metadata.HasField("deletionTimestamp") for o in condemned):
                doomed = []  # one at a time: wait for the one going away
            else:
                doomed = condemned[:1]
            for ordinal in doomed:
                await self._release_claims_on_scale_down(sts, pods[ordinal], ordinal)
                await self._delete_pod(sts, pods[ordinal])
                blocked = True

        if sts.spec.updateStrategy.type != "OnDelete" and not blocked and \
                all(o in pods and self._healthy(sts, pods[o]) for o in wanted):
            partition = sts.spec.updateStrategy.rollingUpdate.partition \
                if sts.spec.updateStrategy.HasField("rollingUpdate") else 0
            for ordinal in reversed(wanted):
                if ordinal < partition:
                    break
                pod = pods[ordinal]
                if pod.metadata.labels.get(REVISION_HASH_LABEL) != update_rev:
                    await self._delete_pod(sts, pod)
                    break

        await self._update_status(sts, pods, wanted, current_rev, update_rev)

    async def _create_pod(self, sts: apps_pb2.StatefulSet, ordinal: int, template: Any,
                          revision: str) -> None:
        pod = new_pod(sts, template, ordinal, revision)
        for claim in new_claims(sts, ordinal):
            if self.claims.get(claim.metadata.name, claim.metadata.namespace) is not None:
                continue
            try:
                await self.client.create(claim)
            except APIError as exc:
                if not exc.is_already_exists():
                    self.recorder.event(sts, "Warning", "FailedCreate",
                                        f"create Claim {claim.metadata.name} for Pod "
                                        f"{pod.metadata.name} in StatefulSet "
                                        f"{sts.metadata.name} failed error: {exc.message}")
                    raise
            else:
                self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                    f"create Claim {claim.metadata.name} Pod "
                                    f"{pod.metadata.name} in StatefulSet {sts.metadata.name} "
                                    "success")
        try:
            await self.client.create(pod)
        except APIError as exc:
            if exc.is_already_exists():
                return  # our cache is behind
            self.recorder.event(sts, "Warning", "FailedCreate",
                                f"create Pod {pod.metadata.name} in StatefulSet "
                                f"{sts.metadata.name} failed error: {exc.message}")
            raise
        self.recorder.event(sts, "Normal", "SuccessfulCreate",
                            f"create Pod {pod.metadata.name} in StatefulSet "
                            f"{sts.metadata.name} successful")

    async def _delete_pod(self, sts: apps_pb2.StatefulSet, pod: core_pb2.Pod) -> None:
        try:
            await self.client.delete(core_pb2.Pod, pod.metadata.name,
                                     namespace=pod.metadata.namespace,
                                     precondition_uid=pod.metadata.uid)
        except APIError as exc:
            if exc.is_not_found() or exc.is_conflict():
                return
            self.recorder.event(sts, "Warning", "FailedDelete",
                                f"delete Pod {pod.metadata.name} in StatefulSet "
                                f"{sts.metadata.name} failed error: {exc.message}")
            raise
        self.recorder.event(sts, "Normal", "SuccessfulDelete",
                            f"delete Pod {pod.metadata.name} in StatefulSet "
                            f"{sts.metadata.name} successful")

    async def _release_claims_on_scale_down(self, sts: apps_pb2.StatefulSet,
                                            pod: core_pb2.Pod, ordinal: int) -> None:
        """whenScaled: Delete -> the condemned pod owns its claims (they go with it)."""
        if sts.spec.persistentVolumeClaimRetentionPolicy.whenScaled != "Delete":
            return
        for template in sts.spec.volumeClaimTemplates:
            name = claim_name(template.metadata.name, sts.metadata.name, ordinal)
            claim = self.claims.get(name, sts.metadata.namespace)
            if claim is None or any(r.uid == pod.metadata.uid
                                    for r in claim.metadata.ownerReferences):
                continue
            updated = copy_object(claim)
            ref = new_owner_reference(pod, "v1", "Pod")
            ref.controller = False
            updated.metadata.ownerReferences.append(ref)
            try:
                await self.client.update(updated)
            except APIError as exc:
                if not exc.is_not_found():
                    raise

    async def _update_status(self, sts: apps_pb2.StatefulSet, pods: dict[int, core_pb2.Pod],
                             wanted: range, current_rev: str, update_rev: str) -> None:
        now = self.ctx.now()
        existing = [p for p in pods.values() if not p.metadata.HasField("deletionTimestamp")]
        status = copy_object(sts).status
        status.observedGeneration = sts.metadata.generation
        status.replicas = len(existing)
        status.readyReplicas = sum(1 for p in existing if is_pod_ready(p))
        status.availableReplicas = sum(1 for p in existing
                                       if is_pod_available(p, sts.spec.minReadySeconds, now))
        status.currentReplicas = sum(1 for p in existing
                                     if p.metadata.labels.get(REVISION_HASH_LABEL) == current_rev)
        status.updatedReplicas = sum(1 for p in existing
                                     if p.metadata.labels.get(REVISION_HASH_LABEL) == update_rev)
        status.updateRevision = update_rev
        status.currentRevision = current_rev
        if status.updatedReplicas == len(wanted) and status.readyReplicas == len(wanted) and \
                status.replicas == len(wanted):
            status.currentRevision = update_rev
            status.currentReplicas = status.updatedReplicas
        if status == sts.status:
            return
        new = copy_object(sts)
        new.status.CopyFrom(status)
        await self.client.update_status(new)


async def start_statefulset(ctx: ControllerContext) -> None:
    controller = StatefulSetController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("statefulset", start_statefulset)
