"""Disruption controller: PodDisruptionBudget status, which the eviction API obeys.

Level-triggered over PDB keys. ``sync`` counts the pods the selector picks
in the PDB's namespace:

- ``currentHealthy``: those Ready and not being deleted;
- ``expectedPods`` and ``desiredHealthy``: with an integer ``minAvailable``,
  the pods found and ``minAvailable``; with a percentage, or with
  ``maxUnavailable``, the scale of the pods' controllers (ReplicaSet — or its
  Deployment —, StatefulSet, ReplicationController), ``desiredHealthy``
  being the percentage of it (rounded up) or ``expected - maxUnavailable``;
- ``disruptionsAllowed`` = max(currentHealthy - desiredHealthy, 0), and the
  DisruptionAllowed condition (SufficientPods / InsufficientPods, or SyncFailed
  when the expected count cannot be found: a pod without a scalable
  controller, which is also a CalculateExpectedPodCountFailed Event).

``disruptedPods`` entries (written by evictions) older than two minutes are
dropped, as Kubernetes drops them when the deletion never came.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pilothouse.api.intstr import IntOrStringError, scaled_value
from pilothouse.api.selectors import SelectorError, label_selector_from_api
from pilothouse.api.timeutil import time_from_proto, time_to_proto
from pilothouse.client import copy_object, split_key
from pilothouse.client.informer import object_of
from pilothouse.gen.k8s.apps.v1 import apps_pb2
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.policy.v1 import policy_pb2
from pilothouse.services.controllers.base import Controller, ControllerContext, ControllerDescriptor
from pilothouse.services.controllers.pod_utils import controller_ref, is_pod_ready
from pilothouse.services.controllers.settings import workers

__all__ = ["DESCRIPTOR", "DisruptionController", "ExpectedCountError"]

DISRUPTED_POD_TIMEOUT = timedelta(minutes=2)


class ExpectedCountError(Exception):
    """The pods' controllers (and so the expected count) cannot be found."""


class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.pdbs = ctx.informers.informer_for(policy_pb2.PodDisruptionBudget)
        self.pods = ctx.informers.informer_for(core_pb2.Pod)
        self.replicasets = ctx.informers.informer_for(apps_pb2.ReplicaSet)
        self.deployments = ctx.informers.informer_for(apps_pb2.Deployment)
        self.statefulsets = ctx.informers.informer_for(apps_pb2.StatefulSet)
        self.rcs = ctx.informers.informer_for(core_pb2.ReplicationController)
        self.pdbs.add_event_handler(
            on_add=self._enqueue_obj,
            on_update=lambda old, new: self._enqueue_obj(new))
        self.pods.add_event_handler(
            on_add=self._pod_changed,
            on_update=lambda old, new: self._pod_changed(new),
            on_delete=self._pod_changed)
        for informer in (self.replicasets, self.deployments, self.statefulsets, self.rcs):
            informer.add_event_handler(
                on_update=lambda old, new: self._enqueue_namespace(new.metadata.namespace))

    def _enqueue_obj(self, obj: Any) -> None:
        o = object_of(obj)
        self.enqueue(f"{o.metadata.namespace}/{o.metadata.name}")

    def _enqueue_namespace(self, namespace: str) -> None:
        for pdb in self.pdbs.list(namespace):
            self._enqueue_obj(pdb)

    def _pod_changed(self, obj: Any) -> None:
        pod = object_of(obj)
        for pdb in self.pdbs.list(pod.metadata.namespace):
            try:
                selector = label_selector_from_api(pdb.spec.selector, "spec.selector")
            except SelectorError:
                continue
            if selector.matches(dict(pod.metadata.labels)):
                self._enqueue_obj(pdb)

    def _scale_of(self, pod: core_pb2.Pod) -> tuple[str, int]:
        """(controller uid, replicas) of a pod's scalable controller."""
        ref = controller_ref(pod)
        ns = pod.metadata.namespace
        if ref is None:
            raise ExpectedCountError(f"Pod {ns}/{pod.metadata.name} has no controller")
        if ref.kind == "ReplicaSet":
            rs = self.replicasets.get(ref.name, ns)
            if rs is None or rs.metadata.uid != ref.uid:
                raise ExpectedCountError(f"ReplicaSet {ns}/{ref.name} not found")
            owner = controller_ref(rs)
            if owner is not None and owner.kind == "Deployment":
                deployment = self.deployments.get(owner.name, ns)
                if deployment is not None and deployment.metadata.uid == owner.uid:
                    return deployment.metadata.uid, _replicas(deployment)
            return rs.metadata.uid, _replicas(rs)
        if ref.kind == "StatefulSet":
            sts = self.statefulsets.get(ref.name, ns)
            if sts is None or sts.metadata.uid != ref.uid:
                raise ExpectedCountError(f"StatefulSet {ns}/{ref.name} not found")
            return sts.metadata.uid, _replicas(sts)
        if ref.kind == "ReplicationController":
            rc = self.rcs.get(ref.name, ns)
            if rc is None or rc.metadata.uid != ref.uid:
                raise ExpectedCountError(f"ReplicationController {ns}/{ref.name} not found")
            return rc.metadata.uid, _replicas(rc)
        raise ExpectedCountError(f"{ref.kind} {ns}/{ref.name} has no /scale subresource "
                                 "the disruption controller knows")

    def expected_counts(self, pdb: policy_pb2.PodDisruptionBudget,
                        pods: list[core_pb2.Pod]) -> tuple[int, int]:
        """(expectedPods, desiredHealthy) for the PDB's pods."""
        spec = pdb.spec
        if spec.HasField("maxUnavailable"):
            expected = self._controllers_scale(pods)
            unavailable = scaled_value(spec.maxUnavailable, expected, True)
            return expected, max(expected - unavailable, 0)
        if spec.HasField("minAvailable"):
            if spec.minAvailable.type == 0:
                return len(pods), int(spec.minAvailable.intVal)
            expected = self._controllers_scale(pods)
            return expected, scaled_value(spec.minAvailable, expected, True)
        return len(pods), len(pods)

    def _controllers_scale(self, pods: list[core_pb2.Pod]) -> int:
        scales = dict(self._scale_of(p) for p in pods)
        return sum(scales.values())

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        pdb = self.pdbs.get(name, namespace)
        if pdb is None:
            return
        now = self.ctx.now()
        status = copy_object(pdb).status
        status.observedGeneration = pdb.metadata.generation
        try:
            selector = label_selector_from_api(pdb.spec.selector, "spec.selector")
            pods = self.pods.list(namespace, selector)
            expected, desired = self.expected_counts(pdb, pods)
        except (SelectorError, ExpectedCountError, IntOrStringError) as exc:
            self.recorder.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                f"Failed to calculate the number of expected pods: {exc}")
            status.disruptionsAllowed = 0
            _set_condition(status, "False", "SyncFailed", str(exc), now,
                           pdb.metadata.generation)
            await self._write(pdb, status)
            return
        healthy = sum(1 for p in pods
                      if is_pod_ready(p) and not p.metadata.HasField("deletionTimestamp"))
        # Evictions the pod informer has not seen through yet still count as disrupted.
        for pod_name, when in list(status.disruptedPods.items()):
            pod = next((p for p in pods if p.metadata.name == pod_name), None)
            stale = now - time_from_proto(when) > DISRUPTED_POD_TIMEOUT
            if pod is None or pod.metadata.HasField("deletionTimestamp") or stale:
                del status.disruptedPods[pod_name]
            elif is_pod_ready(pod):
                healthy -= 1
        if status.disruptedPods:
            self.enqueue_after(key, DISRUPTED_POD_TIMEOUT.total_seconds())
        status.currentHealthy = healthy
        status.desiredHealthy = desired
        status.expectedPods = expected
        status.disruptionsAllowed = max(healthy - desired, 0) if expected > 0 else 0
        if status.disruptionsAllowed > 0:
            _set_condition(status, "True", "SufficientPods", "", now, pdb.metadata.generation)
        else:
            _set_condition(status, "False", "InsufficientPods", "", now,
                           pdb.metadata.generation)
        await self._write(pdb, status)

    async def _write(self, pdb: policy_pb2.PodDisruptionBudget,
                     status: policy_pb2.PodDisruptionBudgetStatus) -> None:
        if status == pdb.status:
            return
        new = copy_object(pdb)
        new.status.CopyFrom(status)
        await self.client.update_status(new)


def _replicas(obj: Any) -> int:
    return int(obj.spec.replicas) if obj.spec.HasField("replicas") else 1


def _set_condition(status: policy_pb2.PodDisruptionBudgetStatus, value: str, reason: str,
                   message: str, now: Any, generation: int) -> None:
    for cond in status.conditions:
        if cond.type == "DisruptionAllowed":
            break
    else:
        cond = status.conditions.add(type="DisruptionAllowed")
    if cond.status != value:
        cond.lastTransitionTime.CopyFrom(time_to_proto(now))
    cond.status, cond.reason, cond.message = value, reason, message
    cond.observedGeneration = generation


async def start_disruption(ctx: ControllerContext) -> None:
    controller = DisruptionController(ctx)
    ctx.informers.start()
    await controller.run(workers=workers(ctx, controller.name))


DESCRIPTOR = ControllerDescriptor("disruption", start_disruption)
