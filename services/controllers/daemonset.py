"""DaemonSet controller: one pod per eligible node, rolled by ControllerRevision.

Level-triggered over DaemonSet keys. ``sync``:

1. ``sync_revisions``: the ControllerRevision of the current template (its
   hash is the pods' ``controller-revision-hash`` label).
2. For every node, ``node_fit`` (nodeSelector, required node affinity,
   taints against the template's plus the automatic daemon tolerations):
   a node that should run a daemon pod and has none gets one (pinned by
   required node affinity ``matchFields metadata.name``, as Kubernetes does;
   the scheduler binds it); failed pods are deleted (FailedDaemonPod) and
   replaced; pods on nodes where they may not continue (an untolerated
   NoExecute taint, a selector that no longer matches) or on nodes that are
   gone are deleted; extra pods on one node are deleted, oldest kept.
3. RollingUpdate: with maxSurge 0, old pods are deleted while fewer than
   maxUnavailable daemon pods are unavailable (unavailable old pods at
   once), and recreated from the new template; with maxSurge > 0, a new pod
   starts next to the old one on up to maxSurge nodes and the old one goes
   once the new one is available. OnDelete: only pods someone deleted are
   replaced (with the new template).
4. Status: desired/current/misscheduled/ready/available/unavailable/updated
   numbers and observedGeneration.

Expectations keep a lagging cache from creating two pods for one node.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pilothouse.api.selectors import label_selector_from_api
from pilothouse.client import APIError, copy_object, split_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.daemonset_utils import (
    NodeFit,
    node_fit,
    oldest_first,
    pod_for_node,
    pod_node_name,
    rolling_budgets,
)
from pilothouse.services.controllers.pod_utils import (
    Expectations,
    controller_ref,
    is_owned_by,
    is_pod_available,
    is_pod_ready,
    pod_ready_time,
)
from pilothouse.services.controllers.revisions import (
    REVISION_HASH_LABEL,
    HashCollision,
    sync_revisions,
)
from pilothouse.services.controllers.settings import workers

__all__ = ["DESCRIPTOR", "DaemonSetController"]


def _key_of_owner(obj: Any, kind: str) -> str | None:
    ref = controller_ref(obj)
    if ref is None or ref.kind != kind:
        return None
    return f"{obj.metadata.namespace}/{ref.name}"


class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.daemonsets = ctx.informers.informer_for(apps_pb2.DaemonSet)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        self.nodes = ctx.informers.informer_for(core_pb2.Node)
        self.revisions = ctx.informers.informer_for(apps_pb2.ControllerRevision)
        self.expectations = Expectations(ctx.clock.monotonic)
        self.daemonsets.add_event_handler(
            on_add=self._enqueue_obj,
            on_update=lambda old, new: self._enqueue_obj(new),
            on_delete=self._enqueue_obj)
        self.pods.add_event_handler(
            on_add=self._pod_added,
            on_update=lambda old, new: self._pod_changed(new),
            on_delete=self._pod_deleted)
        self.nodes.add_event_handler(
            on_add=lambda node: self._enqueue_all(),
            on_update=self._node_updated,
            on_delete=lambda node: self._enqueue_all())

    def _enqueue_obj(self, obj: Any) -> None:
        o = object_of(obj)
        self.enqueue(f"{o.metadata.namespace}/{o.metadata.name}")

    def _enqueue_all(self) -> None:
        for ds in self.daemonsets.list():
            self._enqueue_obj(ds)

    def _node_updated(self, old: core_pb2.Node, new: core_pb2.Node) -> None:
        if old.metadata.labels != new.metadata.labels or old.spec.taints != new.spec.taints:
            self._enqueue_all()

    def _pod_added(self, pod: core_pb2.Pod) -> None:
        key = _key_of_owner(pod, "DaemonSet")
        if key is not None:
            self.expectations.creation_observed(key)
            self.enqueue(key)

    def _pod_changed(self, pod: core_pb2.Pod) -> None:
        key = _key_of_owner(pod, "DaemonSet")
        if key is not None:
            self.enqueue(key)

    def _pod_deleted(self, obj: Any) -> None:
        pod = object_of(obj)
        key = _key_of_owner(pod, "DaemonSet")
        if key is not None:
            self.expectations.deletion_observed(key, pod.metadata.uid)
            self.enqueue(key)

    # -- sync ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        ds = self.daemonsets.get(name, namespace)
        if ds is None:
            self.expectations.forget(key)
            return
        if ds.metadata.HasField("deletionTimestamp"):
            return
        selector = label_selector_from_api(ds.spec.selector, "spec.selector")
        pods = [p for p in self.pods.list(namespace, selector) if is_owned_by(p, ds)]
        if not self.expectations.satisfied(key):
            return  # the pod events we wait for bring us back
        live = {p.metadata.labels.get(REVISION_HASH_LABEL, "") for p in pods}
        try:
            revisions = await sync_revisions(
                self.client, ds, "DaemonSet", self.revisions.list(namespace), live,
                ds.spec.revisionHistoryLimit if ds.spec.HasField("revisionHistoryLimit") else 10)
        except HashCollision:
            raise  # collisionCount grew; the retry picks a new name
        hash_ = revisions.hash
        now = self.ctx.now()
        nodes = {n.metadata.name: n for n in self.nodes.list()}
        by_node: dict[str, list[core_pb2.Pod]] = {}
        for pod in pods:
            by_node.setdefault(pod_node_name(pod), []).append(pod)
        fits = {name: node_fit(ds, node) for name, node in nodes.items()}
        creates, deletes = self._plan(ds, fits, by_node, hash_, now)
        await self._apply(key, ds, creates, deletes, hash_)
        await self._update_status(ds, fits, by_node, hash_, now, deleted=set(
            p.metadata.uid for p in deletes))

    def _plan(self, ds: apps_pb2.DaemonSet, fits: dict[str, NodeFit],
              by_node: dict[str, list[core_pb2.Pod]], hash_: str,
              now: datetime) -> tuple[list[str], list[core_pb2.Pod]]:
        creates: list[str] = []
        deletes: list[core_pb2.Pod] = []
        min_ready = ds.spec.minReadySeconds
        rolling = ds.spec.updateStrategy.type != "OnDelete"
        desired = sum(1 for f in fits.values() if f.should_run)
        surge, max_unavailable = rolling_budgets(ds, desired) if rolling else (0, 0)
        # Pods pinned to nodes that no longer exist.
        for node_name, node_pods in by_node.items():
            if node_name not in fits:
                deletes.extend(p for p in node_pods if not p.metadata.HasField("deletionTimestamp"))
        unavailable = 0
        old_on_nodes: list[tuple[str, core_pb2.Pod, core_pb2.Pod | None]] = []
        for node_name, fit in sorted(fits.items()):
            node_pods = [p for p in by_node.get(node_name, [])
                         if not p.metadata.HasField("deletionTimestamp")]
            if not fit.should_continue:
                deletes.extend(node_pods)
                continue
            failed = [p for p in node_pods if p.status.phase == "Failed"]
            for pod in failed:
                self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                    f"Found failed daemon pod {pod.metadata.namespace}/"
                                    f"{pod.metadata.name} on node {node_name}, will try to "
                                    "kill it")
            deletes.extend(failed)
            running = oldest_first([p for p in node_pods if p.status.phase != "Failed"])
            if not running:
                if fit.should_run:
                    creates.append(node_name)
                    unavailable += 1
                continue
            new = [p for p in running if p.metadata.labels.get(REVISION_HASH_LABEL) == hash_]
            old = [p for p in running if p.metadata.labels.get(REVISION_HASH_LABEL) != hash_]
            if surge > 0 and new and old:
                # Mid-surge: one new and one old pod are expected here.
                keep_new, keep_old = new[0], old[0]
                deletes.extend(new[1:] + old[1:])
                old_on_nodes.append((node_name, keep_old, keep_new))
                if not is_pod_available(keep_new, min_ready, now):
                    unavailable += 1
                continue
            keep = running[0]
            deletes.extend(running[1:])
            if not is_pod_available(keep, min_ready, now):
                unavailable += 1
            if rolling and keep.metadata.labels.get(REVISION_HASH_LABEL) != hash_:
                old_on_nodes.append((node_name, keep, None))
        if not rolling:
            return creates, deletes
        if surge == 0:
            # Unavailable old pods go first: deleting them costs no availability.
            ordered = sorted(old_on_nodes,
                             key=lambda t: is_pod_available(t[1], min_ready, now))
            for _, old_pod, _ in ordered:
                if not is_pod_available(old_pod, min_ready, now):
                    deletes.append(old_pod)
                elif unavailable < max_unavailable:
                    deletes.append(old_pod)
                    unavailable += 1
            return creates, deletes
        surging = sum(1 for _, _, new_pod in old_on_nodes if new_pod is not None)
        for node_name, old_pod, new_pod in old_on_nodes:
            if new_pod is not None:
                if is_pod_available(new_pod, min_ready, now):
                    deletes.append(old_pod)
                continue
            if not is_pod_available(old_pod, min_ready, now):
                creates.append(node_name)  # nothing to protect: replace at once
            elif surging < surge:
                creates.append(node_name)
                surging += 1
        return creates, deletes

    async def _apply(self, key: str, ds: apps_pb2.DaemonSet, creates: list[str],
                     deletes: list[core_pb2.Pod], hash_: str) -> None:
        deletes = list({p.metadata.uid: p for p in deletes}.values())  # each pod once
        if deletes:
            self.expectations.expect_deletions(key, [p.metadata.uid for p in deletes])
        for pod in deletes:
            try:
                await self.client.delete(core_pb2.Pod, pod.metadata.name,
                                         namespace=pod.metadata.namespace)
            except APIError as exc:
                self.expectations.deletion_observed(key, pod.metadata.uid)
                if not exc.is_not_found():
                    raise
                continue
            self.recorder.event(ds, "Normal", "SuccessfulDelete",
                                f"Deleted pod: {pod.metadata.name}")
        if creates:
            self.expectations.expect_creations(key, len(creates))
        for n, node_name in enumerate(creates):
            try:
                created = await self.client.create(pod_for_node(ds, node_name, hash_))
            except APIError as exc:
                for _ in creates[n:]:
                    self.expectations.creation_failed(key)
                self.recorder.event(ds, "Warning", "FailedCreate",
                                    f"Error creating: {exc.message}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulCreate",
                                f"Created pod: {created.metadata.name}")

    async def _update_status(self, ds: apps_pb2.DaemonSet, fits: dict[str, NodeFit],
                             by_node: dict[str, list[core_pb2.Pod]], hash_: str,
                             now: datetime, deleted: set[str]) -> None:
        desired = current = misscheduled = ready = available = updated = 0
        min_ready = ds.spec.minReadySeconds
        next_check: float | None = None
        for node_name, fit in fits.items():
            node_pods = [p for p in by_node.get(node_name, [])
                         if not p.metadata.HasField("deletionTimestamp")
                         and p.metadata.uid not in deleted]
            if fit.should_run:
                desired += 1
                if node_pods:
                    current += 1
                    pod = oldest_first(node_pods)[0]
                    if is_pod_ready(pod):
                        ready += 1
                        if is_pod_available(pod, min_ready, now):
                            available += 1
                        else:
                            since = pod_ready_time(pod)
                            if since is not None:
                                wait = (since + timedelta(seconds=min_ready) - now)
                                secs = wait.total_seconds()
                                next_check = secs if next_check is None else min(next_check,
                                                                                 secs)
                    if any(p.metadata.labels.get(REVISION_HASH_LABEL) == hash_
                           for p in node_pods):
                        updated += 1
            elif node_pods:
                misscheduled += 1
        status = copy_object(ds).status
        status.desiredNumberScheduled = desired
        status.currentNumberScheduled = current
        status.numberMisscheduled = misscheduled
        status.numberReady = ready
        status.numberAvailable = available
        status.numberUnavailable = desired - available
        status.updatedNumberScheduled = updated
        status.observedGeneration = ds.metadata.generation
        if next_check is not None:
            self.enqueue_after(f"{ds.metadata.namespace}/{ds.metadata.name}",
                               max(next_check, 0.0))
        if status == ds.status:
            return
        new = copy_object(ds)
        new.status.CopyFrom(status)
        await self.client.update_status(new)


async def start_daemonset(ctx: ControllerContext) -> None:
    controller = DaemonSetController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("daemonset", start_daemonset)
