"""The garbage collector: delete what nobody owns any more, in the order asked.

The ownership graph is not a separate structure here: every monitored
informer indexes its objects by the UIDs in their ``ownerReferences``, so
"dependents of X" is one index lookup per kind, always as fresh as the
caches. Work items are ``<resource>:<namespace>/<name>`` keys of objects.

``sync(key)`` of an object:

- **being deleted with the ``orphan`` finalizer**: remove the references to
  it from its dependents, then the finalizer (the dependents stay);
- **being deleted with the ``foregroundDeletion`` finalizer**: queue its
  dependents (they see an owner waiting for them and are deleted); when none
  with ``blockOwnerDeletion`` is left, remove the finalizer;
- **with ownerReferences**: classify each owner as solid (exists), dangling
  (gone, or a different UID under that name: checked with a live GET, never
  from a cache that may lag) or waiting (being deleted in the foreground).
  Any solid owner keeps the object, minus its references to dangling and
  waiting owners. Otherwise it is deleted: in the foreground when a waiting
  owner needs it gone and it has dependents of its own, else with the policy
  its own finalizers ask for (background by default).

Event handlers queue an object when one of its owners is not in the caches
or is being deleted, an owner's dependents when the owner goes away, and an
object being deleted with one of the two finalizers.

Only dependents of monitored kinds (``MONITORED``) are seen; an owner can be
of any served kind (it is looked up through the apiserver).
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.message import Message

from pilothouse.api.kinds import Kind
from pilothouse.client import APIError, Informer, meta_namespace_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.discovery.v1 import discovery_pb2
from pilothouse.gen.k8s.policy.v1 import policy_pb2
from pilothouse.services.controllers.base import (
    Controller,
    ControllerContext,
    ControllerDescriptor,
)
from pilothouse.services.controllers.replicaset_utils import release_patch

__all__ = ["DESCRIPTOR", "FOREGROUND", "MONITORED", "ORPHAN", "GarbageCollector", "gc_key"]

log = logging.getLogger("pilothouse.controllers.garbagecollector")

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
OWNER_INDEX = "gc-owner-uid"
UID_INDEX = "gc-uid"

# The kinds whose objects have owners in practice.
MONITORED: tuple[type[Message], ...] = (
    core_pb2.Pod, core_pb2.ConfigMap, core_pb2.Secret, core_pb2.Service, core_pb2.Endpoints,
    core_pb2.ServiceAccount, core_pb2.PersistentVolumeClaim, core_pb2.ReplicationController,
    core_pb2.PodTemplate,
    apps_pb2.ReplicaSet, apps_pb2.Deployment, apps_pb2.StatefulSet, apps_pb2.DaemonSet,
    apps_pb2.ControllerRevision,
    batch_pb2.Job, batch_pb2.CronJob,
    discovery_pb2.EndpointSlice,
    coordination_pb2.Lease,
    policy_pb2.PodDisruptionBudget,
)

SOLID, DANGLING, WAITING = "solid", "dangling", "waiting"


def gc_key(kind: Kind, obj: Any) -> str:
    """The work-queue key of an object: ``<resource>:<namespace>/<name>``."""
    return f"{kind.resource}:{meta_namespace_key(obj)}"


def _owner_uids(obj: Any) -> list[str]:
    return [ref.uid for ref in obj.metadata.ownerReferences]


def _uid(obj: Any) -> list[str]:
    return [obj.metadata.uid]


def _finalizers_patch(obj: Any, drop: str) -> dict[str, Any]:
    keep = [f for f in obj.metadata.finalizers if f != drop]
    return {"metadata": {"finalizers": keep or None,
                         "resourceVersion": obj.metadata.resourceVersion}}


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, ctx: ControllerContext,
                 monitored: tuple[type[Message], ...] = MONITORED) -> None:
        super().__init__(ctx)
        self.informers: dict[str, Informer[Any]] = {}
        for cls in monitored:
            informer = ctx.informers.informer_for(cls)
            names = informer.indexer.index_names
            if OWNER_INDEX not in names:
                informer.add_indexer(OWNER_INDEX, _owner_uids)
            if UID_INDEX not in names:
                informer.add_indexer(UID_INDEX, _uid)
            self.informers[informer.kind.resource] = informer
            self._watch(informer)

    def _watch(self, informer: Informer[Any]) -> None:
        kind = informer.kind

        def on_add(obj: Any) -> None:
            self._observe(kind, obj)

        def on_update(old: Any, new: Any) -> None:
            self._updated(kind, old, new)

        def on_delete(obj: Any) -> None:
            self._deleted(kind, object_of(obj))

        informer.add_event_handler(on_add=on_add, on_update=on_update, on_delete=on_delete)

    # -- the graph, from the caches ---------------------------------------------------------

    def cached_by_uid(self, uid: str) -> tuple[Kind, Any] | None:
        for informer in self.informers.values():
            found = informer.by_index(UID_INDEX, uid)
            if found:
                return informer.kind, found[0]
        return None

    def dependents(self, uid: str) -> list[tuple[Kind, Any]]:
        out: list[tuple[Kind, Any]] = []
        for informer in self.informers.values():
            out.extend((informer.kind, obj) for obj in informer.by_index(OWNER_INDEX, uid))
        return out

    # -- event handlers ------------------------------------------------------------------------

    def _observe(self, kind: Kind, obj: Any) -> None:
        meta = obj.metadata
        if meta.HasField("deletionTimestamp") and (ORPHAN in meta.finalizers
                                                   or FOREGROUND in meta.finalizers):
            self.enqueue(gc_key(kind, obj))
            return
        for ref in meta.ownerReferences:
            owner = self.cached_by_uid(ref.uid)
            if owner is None or owner[1].metadata.HasField("deletionTimestamp"):
                self.enqueue(gc_key(kind, obj))
                return

    def _updated(self, kind: Kind, old: Any, new: Any) -> None:
        if old.metadata.resourceVersion == new.metadata.resourceVersion:
            return
        self._observe(kind, new)
        if old.metadata.ownerReferences != new.metadata.ownerReferences:
            # A dependent that let go may have been what a foreground deletion waited for.
            for ref in old.metadata.ownerReferences:
                self._enqueue_deleting_owner(ref.uid)

    def _deleted(self, kind: Kind, obj: Any) -> None:
        for dep_kind, dep in self.dependents(obj.metadata.uid):
            self.enqueue(gc_key(dep_kind, dep))
        for ref in obj.metadata.ownerReferences:
            self._enqueue_deleting_owner(ref.uid)

    def _enqueue_deleting_owner(self, uid: str) -> None:
        found = self.cached_by_uid(uid)
        if found is not None and found[1].metadata.HasField("deletionTimestamp"):
            self.enqueue(gc_key(*found))

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        resource, sep, ns_key = key.partition(":")
        informer = self.informers.get(resource)
        if not sep or informer is None:
            log.error("unexpected garbage collector key", extra={"key": key})
            return
        obj = informer.get_by_key(ns_key)
        if obj is None:
            return
        kind = informer.kind
        meta = obj.metadata
        if meta.HasField("deletionTimestamp"):
            if ORPHAN in meta.finalizers:
                await self.orphan_dependents(kind, obj)
            elif FOREGROUND in meta.finalizers:
                await self.process_deleting_dependents(kind, obj)
            return
        if meta.ownerReferences:
            await self.attempt_to_delete(kind, obj)

    async def orphan_dependents(self, kind: Kind, owner: Any) -> None:
        """Remove references to ``owner`` from its dependents, then its ``orphan`` finalizer."""
        uid = owner.metadata.uid
        for dep_kind, dep in self.dependents(uid):
            try:
                await self._patch(dep_kind, dep, release_patch(dep, [uid]))
            except APIError as exc:
                if not exc.is_not_found():
                    raise
        await self._patch(kind, owner, _finalizers_patch(owner, ORPHAN))
        log.info("orphaned dependents", extra={"owner": gc_key(kind, owner)})

    async def process_deleting_dependents(self, kind: Kind, owner: Any) -> None:
        """Foreground deletion: dependents go first; the owner's finalizer goes when no
        dependent with ``blockOwnerDeletion`` is left."""
        uid = owner.metadata.uid
        blocking = []
        for dep_kind, dep in self.dependents(uid):
            if any(r.uid == uid and r.blockOwnerDeletion for r in dep.metadata.ownerReferences):
                blocking.append(dep)
            if not dep.metadata.HasField("deletionTimestamp"):
                self.enqueue(gc_key(dep_kind, dep))
        if blocking:
            return  # their deletion events bring us back
        await self._patch(kind, owner, _finalizers_patch(owner, FOREGROUND))
        log.info("dependents deleted, foreground deletion finished",
                 extra={"owner": gc_key(kind, owner)})

    async def attempt_to_delete(self, kind: Kind, obj: Any) -> None:
        states: dict[str, list[Any]] = {SOLID: [], DANGLING: [], WAITING: []}
        for ref in obj.metadata.ownerReferences:
            states[await self.owner_state(obj, ref)].append(ref)
        solid, dangling, waiting = states[SOLID], states[DANGLING], states[WAITING]
        if solid:
            if not dangling and not waiting:
                return
            drop = [r.uid for r in dangling + waiting]
            await self._patch(kind, obj, release_patch(obj, drop))
            return
        meta = obj.metadata
        if waiting and self.dependents(meta.uid):
            policy = "Foreground"
        elif ORPHAN in meta.finalizers:
            policy = "Orphan"
        elif FOREGROUND in meta.finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("deleting object whose owners are gone",
                 extra={"object": gc_key(kind, obj), "propagation": policy})
        try:
            await self.client.delete(kind.message, meta.name,  # type: ignore[arg-type]
                                     namespace=meta.namespace, propagation_policy=policy,
                                     precondition_uid=meta.uid)
        except APIError as exc:
            # Gone already, or a new object under that name: nothing of ours to delete.
            if not (exc.is_not_found() or exc.is_conflict()):
                raise

    async def owner_state(self, dependent: Any, ref: Any) -> str:
        """solid, dangling or waiting (see the module docstring)."""
        owner_kind = self.client.kinds.by_kind(ref.apiVersion, ref.kind)
        if owner_kind is None or owner_kind.message is None:
            return SOLID  # a kind we cannot look up: never delete on a guess
        namespace = dependent.metadata.namespace if owner_kind.namespaced else ""
        if owner_kind.namespaced and not namespace:
            return DANGLING  # a cluster-scoped object cannot have a namespaced owner
        owner: Any = None
        cached = self.cached_by_uid(ref.uid)
        if cached is not None:
            owner = cached[1]
        else:
            try:
                owner = await self.client.get(owner_kind.message, ref.name, namespace=namespace)
            except APIError as exc:
                if exc.is_not_found():
                    return DANGLING
                raise
            if owner.metadata.uid != ref.uid:
                return DANGLING
        meta = owner.metadata
        if meta.HasField("deletionTimestamp") and FOREGROUND in meta.finalizers:
            return WAITING
        return SOLID

    async def _patch(self, kind: Kind, obj: Any, patch: dict[str, Any]) -> None:
        await self.client.patch(kind.message, obj.metadata.name,  # type: ignore[arg-type]
                                patch, namespace=obj.metadata.namespace)


async def start_garbagecollector(ctx: ControllerContext) -> None:
    workers = int(ctx.settings.get("concurrent-garbagecollector-syncs", 20))  # type: ignore[call-overload]
    controller = GarbageCollector(ctx)
    ctx.informers.start()
    await controller.run(workers=workers)


DESCRIPTOR = ControllerDescriptor("garbagecollector", start_garbagecollector)
