"""The namespace controller: a deleted namespace is emptied, then let go.

Deleting a Namespace only marks it (deletionTimestamp, phase Terminating):
its ``kubernetes`` finalizer in ``spec.finalizers`` keeps it until this
controller has deleted every namespaced object in it. ``sync(name)``:

1. Read the namespace fresh from the apiserver (not being deleted, or the
   ``kubernetes`` finalizer already gone: nothing to do).
2. For every namespaced kind the apiserver serves (from the KindRegistry),
   list the namespace's objects and delete those not already being deleted.
3. Report what is left in the status conditions Kubernetes sets
   (NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsingFailure,
   NamespaceDeletionContentFailure, NamespaceContentRemaining,
   NamespaceFinalizersRemaining); if anything remains (pods terminating,
   objects with finalizers), look again shortly.
4. Empty: remove ``kubernetes`` through the ``finalize`` subresource; the
   apiserver deletes the namespace when its last finalizer is gone.

Custom resources are not deleted yet (they have no protobuf message for the
typed client).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pilothouse.api.kinds import Kind
from pilothouse.client import APIError, copy_object
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.base import (
    Controller,
    ControllerContext,
    ControllerDescriptor,
)
from pilothouse.services.controllers.pod_utils import set_condition

__all__ = ["DESCRIPTOR", "FINALIZER_KUBERNETES", "NamespaceController", "content_conditions"]

log = logging.getLogger("pilothouse.controllers.namespace")

FINALIZER_KUBERNETES = "kubernetes"
# How soon to look again while content remains (terminating pods, finalizers).
RECHECK_SECONDS = 1.0
MAX_RECHECK_SECONDS = 15.0


@dataclass
class ContentReport:
    """What one pass over a namespace's content found."""

    remaining: Counter[str] = field(default_factory=Counter)   # "pods." -> count
    finalizers: Counter[str] = field(default_factory=Counter)  # finalizer -> count
    errors: list[str] = field(default_factory=list)
    estimate: float = 0.0  # seconds until terminating pods should be gone


def content_conditions(report: ContentReport) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of the five deletion conditions."""
    conds = [
        ("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered",
         "All resources successfully discovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions",
         "All legacy kube types successfully parsed"),
    ]
    if report.errors:
        conds.append(("NamespaceDeletionContentFailure", "True", "ContentDeletionFailed",
                      f"Failed to delete all resource types, {len(report.errors)} remaining: "
                      + ", ".join(report.errors)))
    else:
        conds.append(("NamespaceDeletionContentFailure", "False", "ContentDeleted",
                      "All content successfully deleted, may be waiting on finalization"))
    if report.remaining:
        parts = sorted(f"{res} has {n} resource instances"
                       for res, n in report.remaining.items())
        conds.append(("NamespaceContentRemaining", "True", "SomeResourcesRemain",
                      "Some resources are remaining: " + ", ".join(parts)))
    else:
        conds.append(("NamespaceContentRemaining", "False", "ContentRemoved",
                      "All content successfully removed"))
    if report.finalizers:
        parts = sorted(f"{fin} in {n} resource instances"
                       for fin, n in report.finalizers.items())
        conds.append(("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
                      "Some content in the namespace has finalizers remaining: "
                      + ", ".join(parts)))
    else:
        conds.append(("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers",
                      "All content-preserving finalizers finished"))
    return conds


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.namespaces = ctx.informers.informer_for(core_pb2.Namespace)
        self.namespaces.add_event_handler(on_add=self._changed,
                                          on_update=lambda old, new: self._changed(new))
        self._rechecks: dict[str, float] = {}

    def _changed(self, ns: core_pb2.Namespace) -> None:
        if ns.metadata.HasField("deletionTimestamp"):
            self.enqueue(ns.metadata.name)

    def content_kinds(self) -> list[Kind]:
        """Namespaced kinds that can be listed and deleted, in a stable order."""
        return sorted((k for k in self.client.kinds
                       if k.namespaced and k.message is not None
                       and "list" in k.verbs and "delete" in k.verbs),
                      key=lambda k: (k.group, k.plural))

    async def sync(self, key: str) -> None:
        name = key
        cached = self.namespaces.get(name)
        if cached is None or not cached.metadata.HasField("deletionTimestamp"):
            self._rechecks.pop(name, None)
            return
        try:
            ns = await self.client.get(core_pb2.Namespace, name)
        except APIError as exc:
            if exc.is_not_found():
                return
            raise
        if (not ns.metadata.HasField("deletionTimestamp")
                or FINALIZER_KUBERNETES not in ns.spec.finalizers):
            return
        report = await self.delete_all_content(name)
        ns = await self._update_conditions(ns, report)
        if report.errors:
            raise RuntimeError(f"namespace {name}: " + "; ".join(report.errors))
        if report.remaining:
            delay = self._rechecks.get(name, RECHECK_SECONDS)
            self._rechecks[name] = min(delay * 2, MAX_RECHECK_SECONDS)
            self.enqueue_after(name, max(delay, min(report.estimate, MAX_RECHECK_SECONDS)))
            return
        self._rechecks.pop(name, None)
        await self.finalize(ns)

    async def delete_all_content(self, namespace: str) -> ContentReport:
        report = ContentReport()
        now = self.ctx.now().timestamp()
        for kind in self.content_kinds():
            cls: Any = kind.message
            try:
                listed = await self.client.list(cls, namespace=namespace)
            except APIError as exc:
                if exc.code in (404, 405):
                    continue  # not served here
                report.errors.append(f"{kind.resource}: {exc}")
                continue
            if not listed.items:
                continue
            for obj in listed.items:
                if obj.metadata.HasField("deletionTimestamp"):
                    continue
                try:
                    await self.client.delete(cls, obj.metadata.name, namespace=namespace,
                                             propagation_policy="Background")
                except APIError as exc:
                    if not exc.is_not_found():
                        report.errors.append(f"{kind.resource}/{obj.metadata.name}: {exc}")
            try:
                left = (await self.client.list(cls, namespace=namespace)).items
            except APIError as exc:
                report.errors.append(f"{kind.resource}: {exc}")
                continue
            if left:
                report.remaining[f"{kind.plural}.{kind.group}"] += len(left)
            for obj in left:
                for fin in obj.metadata.finalizers:
                    report.finalizers[fin] += 1
                if obj.metadata.HasField("deletionTimestamp"):
                    report.estimate = max(report.estimate,
                                          obj.metadata.deletionTimestamp.seconds - now)
        return report

    async def _update_conditions(self, ns: core_pb2.Namespace,
                                 report: ContentReport) -> core_pb2.Namespace:
        new = copy_object(ns)
        now = self.ctx.now()
        changed = False
        for type_, status, reason, message in content_conditions(report):
            changed = set_condition(new.status.conditions, type_, status, reason, message,
                                    now) or changed
        if not changed:
            return ns
        try:
            return await self.client.update_status(new)
        except APIError as exc:
            if exc.is_conflict():
                return ns  # the next pass writes them
            raise

    async def finalize(self, ns: core_pb2.Namespace) -> None:
        new = copy_object(ns)
        keep = [f for f in new.spec.finalizers if f != FINALIZER_KUBERNETES]
        del new.spec.finalizers[:]
        new.spec.finalizers.extend(keep)
        try:
            await self.client.finalize(new)
        except APIError as exc:
            if not exc.is_not_found():
                raise
        log.info("namespace finalized", extra={"namespace": ns.metadata.name})


async def start_namespace(ctx: ControllerContext) -> None:
    workers = int(ctx.settings.get("concurrent-namespace-syncs", ctx.workers))  # type: ignore[call-overload]
    controller = NamespaceController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers)


DESCRIPTOR = ControllerDescriptor("namespace", start_namespace)
