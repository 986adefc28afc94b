"""ControllerRevisions for DaemonSets and StatefulSets (Kubernetes' controller history).

A revision snapshots a pod template: ``data`` holds the patch
``{"spec": {"template": {..., "$patch": "replace"}}}``, the name is
``<owner>-<hash>`` (hash of the template and the owner's collisionCount),
``revision`` is a number that only grows, and the revision's labels are the
template's plus ``controller-revision-hash``. ``sync_revisions`` finds or
creates the revision of the current template (re-numbering an old one that
is reused, as a rollback does), and prunes revisions beyond
``revisionHistoryLimit`` that no live pod uses. A name taken by a revision
with other data is a hash collision: ``collisionCount`` grows and the
caller retries with a new name.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pilothouse.api.codec import dict_to_message
from pilothouse.client import APIError, Client
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.pod_utils import (
    compute_hash,
    is_owned_by,
    new_owner_reference,
    template_json,
)

__all__ = [
    "REVISION_HASH_LABEL",
    "HashCollision",
    "Revisions",
    "revision_data",
    "revision_template",
    "sync_revisions",
]

REVISION_HASH_LABEL = "controller-revision-hash"


class HashCollision(Exception):
    """The revision name for a template is taken by a different template."""


def revision_data(template: core_pb2.PodTemplateSpec) -> dict[str, Any]:
    tmpl = template_json(template)
    tmpl["$patch"] = "replace"
    return {"spec": {"template": tmpl}}


def _data_of(rev: apps_pb2.ControllerRevision) -> Any:
    try:
        return json.loads(rev.data.raw or b"null")
    except ValueError:
        return None


def revision_template(rev: apps_pb2.ControllerRevision) -> core_pb2.PodTemplateSpec | None:
    """The template a revision holds (None if its data is not ours to read)."""
    data = _data_of(rev)
    try:
        tmpl = dict(data["spec"]["template"])
    except (KeyError, TypeError):
        return None
    tmpl.pop("$patch", None)
    try:
        return dict_to_message(core_pb2.PodTemplateSpec, tmpl)  # type: ignore[return-value]
    except ValueError:
        return None


@dataclass
class Revisions:
    """The owner's revisions after a sync: the one of the current template, all of them."""

    update: apps_pb2.ControllerRevision
    all: list[apps_pb2.ControllerRevision]

    @property
    def hash(self) -> str:
        return str(self.update.metadata.labels.get(REVISION_HASH_LABEL, ""))


async def sync_revisions(client: Client, owner: Any, kind: str,
                         revisions: Sequence[apps_pb2.ControllerRevision],
                         live_hashes: Collection[str], history_limit: int) -> Revisions:
    """Find or create the revision for ``owner.spec.template``; prune old ones.

    ``revisions`` are the cached ControllerRevisions in the owner's namespace;
    ``live_hashes`` are the revision-hash labels (or names) pods still use.
    Raises HashCollision after bumping ``status.collisionCount`` on the
    owner (the caller retries).
    """
    owned = sorted((r for r in revisions if is_owned_by(r, owner)),
                   key=lambda r: (r.revision, r.metadata.name))
    template = owner.spec.template
    data = revision_data(template)
    collision = owner.status.collisionCount if owner.status.HasField("collisionCount") else 0
    hash_ = compute_hash(template, collision)
    name = f"{owner.metadata.name}-{hash_}"
    top = max((r.revision for r in owned), default=0)
    update = next((r for r in owned if _data_of(r) == data), None)
    if update is not None and update.revision != top:
        renumbered = apps_pb2.ControllerRevision()
        renumbered.CopyFrom(update)
        renumbered.revision = top + 1
        update = await client.update(renumbered)
    elif update is None:
        rev = apps_pb2.ControllerRevision(revision=top + 1)
        rev.metadata.name = name
        rev.metadata.namespace = owner.metadata.namespace
        rev.metadata.labels.update(template.metadata.labels)
        rev.metadata.labels[REVISION_HASH_LABEL] = hash_
        rev.metadata.ownerReferences.append(new_owner_reference(owner, "apps/v1", kind))
        rev.data.raw = json.dumps(data, sort_keys=True).encode()
        try:
            update = await client.create(rev)
        except APIError as exc:
            if not exc.is_already_exists():
                raise
            existing = await client.get(apps_pb2.ControllerRevision, name,
                                        namespace=owner.metadata.namespace)
            if _data_of(existing) == data and is_owned_by(existing, owner):
                update = existing
            else:
                bumped = type(owner)()
                bumped.CopyFrom(owner)
                bumped.status.collisionCount = collision + 1
                await client.update_status(bumped)
                raise HashCollision(f"revision name {name} is taken") from None
        owned.append(update)
    # Prune the oldest revisions no pod uses, beyond the history limit.
    old = [r for r in owned if r.metadata.name != update.metadata.name
           and r.metadata.labels.get(REVISION_HASH_LABEL) not in live_hashes
           and r.metadata.name not in live_hashes]
    doomed = old[:max(len(old) - history_limit, 0)]
    for r in doomed:
        try:
            await client.delete(apps_pb2.ControllerRevision, r.metadata.name,
                                namespace=r.metadata.namespace)
        except APIError as exc:
            if not exc.is_not_found():
                raise
    gone = {r.metadata.name for r in doomed}
    kept = [r for r in owned if r.metadata.name not in gone and
            r.metadata.name != update.metadata.name] + [update]
    return Revisions(update, kept)
