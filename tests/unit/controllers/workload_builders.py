"""Builders for ReplicaSets, Deployments and their pods in controller unit tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pilothouse.api.intstr import from_json
from pilothouse.api.timeutil import time_to_proto
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2


def template(image: str = "nginx:1", **labels: str) -> core_pb2.PodTemplateSpec:
    t = core_pb2.PodTemplateSpec()
    t.metadata.labels.update(labels or {"app": "web"})
    t.spec.containers.add(name="c", image=image)
    return t


def make_rs(name: str = "web", *, replicas: int = 3, namespace: str = "default",
            labels: dict[str, str] | None = None, image: str = "nginx:1",
            min_ready: int = 0, owner: Any = None,
            annotations: dict[str, str] | None = None) -> apps_pb2.ReplicaSet:
    labels = labels or {"app": "web"}
    rs = apps_pb2.ReplicaSet()
    rs.metadata.name = name
    rs.metadata.namespace = namespace
    rs.metadata.labels.update(labels)
    rs.metadata.annotations.update(annotations or {})
    rs.spec.replicas = replicas
    rs.spec.minReadySeconds = min_ready
    rs.spec.selector.matchLabels.update(labels)
    rs.spec.template.CopyFrom(template(image, **labels))
    if owner is not None:
        rs.metadata.ownerReferences.append(owned_by(owner, "apps/v1", "Deployment"))
    return rs


def owned_by(owner: Any, api_version: str, kind: str, *, controller: bool = True,
             block: bool = True) -> meta_pb2.OwnerReference:
    return meta_pb2.OwnerReference(apiVersion=api_version, kind=kind, name=owner.metadata.name,
                                   uid=owner.metadata.uid, controller=controller,
                                   blockOwnerDeletion=block)


def make_pod(name: str, *, owner: Any = None, owner_kind: str = "ReplicaSet",
             namespace: str = "default", labels: dict[str, str] | None = None,
             node: str = "", phase: str = "Running", ready: bool | None = True,
             ready_since: datetime | None = None, restarts: int = 0,
             deletion_cost: int | None = None, terminating: bool = False) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.labels.update(labels if labels is not None else {"app": "web"})
    if owner is not None:
        api = "apps/v1" if owner_kind in ("ReplicaSet", "Deployment") else "v1"
        pod.metadata.ownerReferences.append(owned_by(owner, api, owner_kind))
    if deletion_cost is not None:
        pod.metadata.annotations["controller.kubernetes.io/pod-deletion-cost"] = \
            str(deletion_cost)
    pod.spec.containers.add(name="c", image="nginx:1")
    pod.spec.nodeName = node
    pod.status.phase = phase
    if ready is not None:
        cond = pod.status.conditions.add(type="Ready", status="True" if ready else "False")
        if ready_since is not None:
            cond.lastTransitionTime.CopyFrom(time_to_proto(ready_since))
    if restarts:
        pod.status.containerStatuses.add(name="c", restartCount=restarts)
    if terminating:
        pod.metadata.deletionTimestamp.seconds = 1
    return pod


def make_deployment(name: str = "web", *, replicas: int = 3, namespace: str = "default",
                    image: str = "nginx:1", strategy: str = "RollingUpdate",
                    max_surge: int | str = "25%", max_unavailable: int | str = "25%",
                    history: int = 10, progress_deadline: int | None = 600,
                    min_ready: int = 0, paused: bool = False,
                    labels: dict[str, str] | None = None) -> apps_pb2.Deployment:
    labels = labels or {"app": "web"}
    d = apps_pb2.Deployment()
    d.metadata.name = name
    d.metadata.namespace = namespace
    d.spec.replicas = replicas
    d.spec.selector.matchLabels.update(labels)
    d.spec.template.CopyFrom(template(image, **labels))
    d.spec.strategy.type = strategy
    if strategy == "RollingUpdate":
        d.spec.strategy.rollingUpdate.maxSurge.CopyFrom(from_json(max_surge))
        d.spec.strategy.rollingUpdate.maxUnavailable.CopyFrom(from_json(max_unavailable))
    d.spec.revisionHistoryLimit = history
    if progress_deadline is not None:
        d.spec.progressDeadlineSeconds = progress_deadline
    d.spec.minReadySeconds = min_ready
    d.spec.paused = paused
    return d
