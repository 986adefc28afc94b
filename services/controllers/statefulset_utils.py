"""Pure helpers of the StatefulSet controller: stable identities, the pod and
claims for an ordinal, and which revision an ordinal runs."""

from __future__ import annotations

import re

from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.controllers.pod_utils import new_owner_reference, pod_from_template

__all__ = [
    "POD_INDEX_LABEL",
    "POD_NAME_LABEL",
    "claim_name",
    "new_claims",
    "new_pod",
    "ordinal_of",
    "ordinals",
    "uses_current_revision",
]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def ordinal_of(sts_name: str, pod_name: str) -> int | None:
    """The ordinal of ``<sts>-<ordinal>``, or None if the name is not of that form."""
    match = _ORDINAL.match(pod_name)
    if match is None or match.group(1) != sts_name:
        return None
    return int(match.group(2))


def ordinals(sts: apps_pb2.StatefulSet) -> range:
    """The ordinals the set should have: ``ordinals.start`` .. + replicas."""
    start = sts.spec.ordinals.start if sts.spec.HasField("ordinals") else 0
    replicas = sts.spec.replicas if sts.spec.HasField("replicas") else 1
    return range(start, start + replicas)


def claim_name(template_name: str, sts_name: str, ordinal: int) -> str:
    return f"{template_name}-{sts_name}-{ordinal}"


def uses_current_revision(sts: apps_pb2.StatefulSet, ordinal: int) -> bool:
    """Whether a pod created now for ``ordinal`` gets the current (old) revision:
    below the RollingUpdate partition it does; otherwise the update revision."""
    strategy = sts.spec.updateStrategy
    if strategy.type == "OnDelete":
        return False
    partition = strategy.rollingUpdate.partition if strategy.HasField("rollingUpdate") else 0
    return ordinal < partition


def new_pod(sts: apps_pb2.StatefulSet, template: core_pb2.PodTemplateSpec, ordinal: int,
            revision: str) -> core_pb2.Pod:
    """The pod of one ordinal: stable name, identity labels, hostname/subdomain,
    one volume per claim template pointing at that ordinal's claim."""
    name = f"{sts.metadata.name}-{ordinal}"
    pod = pod_from_template(template, sts, "apps/v1", "StatefulSet", name=name)
    pod.metadata.labels[POD_NAME_LABEL] = name
    pod.metadata.labels[POD_INDEX_LABEL] = str(ordinal)
    pod.metadata.labels[REVISION_LABEL] = revision
    pod.spec.hostname = name
    if sts.spec.serviceName:
        pod.spec.subdomain = sts.spec.serviceName
    for claim in sts.spec.volumeClaimTemplates:
        cname = claim.metadata.name
        kept = [v for v in pod.spec.volumes if v.name != cname]
        del pod.spec.volumes[:]
        pod.spec.volumes.extend(kept)
        volume = pod.spec.volumes.add(name=cname)
        claim_ref = volume.volumeSource.persistentVolumeClaim
        claim_ref.claimName = claim_name(cname, sts.metadata.name, ordinal)
    return pod


def new_claims(sts: apps_pb2.StatefulSet, ordinal: int) -> list[core_pb2.PersistentVolumeClaim]:
    """The PVCs of one ordinal, labelled with the set's selector; owned by the set
    when ``persistentVolumeClaimRetentionPolicy.whenDeleted`` is Delete."""
    out = []
    policy = sts.spec.persistentVolumeClaimRetentionPolicy
    for template in sts.spec.volumeClaimTemplates:
        pvc = core_pb2.PersistentVolumeClaim()
        pvc.CopyFrom(template)
        pvc.ClearField("status")
        pvc.metadata.Clear()
        pvc.metadata.name = claim_name(template.metadata.name, sts.metadata.name, ordinal)
        pvc.metadata.namespace = sts.metadata.namespace
        pvc.metadata.labels.update(template.metadata.labels)
        pvc.metadata.labels.update(sts.spec.selector.matchLabels)
        pvc.metadata.annotations.update(template.metadata.annotations)
        if policy.whenDeleted == "Delete":
            ref = new_owner_reference(sts, "apps/v1", "StatefulSet")
            ref.blockOwnerDeletion = True
            pvc.metadata.ownerReferences.append(ref)
        out.append(pvc)
    return out
