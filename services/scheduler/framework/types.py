"""``PodInfo`` and ``NodeInfo``: pods and nodes pre-digested for the hot path.

Kubernetes' filters and scores run once per (pod, node) pair, thousands of
times per second, so nothing they read should be parsed there: a ``PodInfo``
holds a pod's requests as plain ints (milli-CPU, bytes), its labels as a dict,
its host ports, tolerations and compiled affinity terms; a ``NodeInfo`` holds
a node's allocatable ints, taints, labels, the pods on it and what they request
in total (``requested`` and ``non_zero_requested``, as Kubernetes computes them).

Requests follow Kubernetes' ``PodRequests``: the sum of the containers,
raised to the largest init container (restartable "sidecar" init containers
add up and stay), plus the pod overhead. ``non_zero`` requests count a
container without a cpu/memory request as 100m / 200Mi, so that many
zero-request pods do not all pile onto one node when scoring.

Every change to a NodeInfo takes a new ``generation`` from one global counter;
the scheduler cache uses it to copy only changed NodeInfos into a cycle's
snapshot.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.api.quantity import QuantityError, parse_quantity
from pilothouse.api.selectors import LabelSelector, SelectorError, label_selector_from_api
from pilothouse.gen.k8s.core.v1 import core_pb2

__all__ = [
    "DEFAULT_MEMORY_REQUEST",
    "DEFAULT_MILLI_CPU_REQUEST",
    "LABEL_HOSTNAME",
    "LABEL_ZONE",
    "AffinityTerm",
    "ImageState",
    "NodeInfo",
    "PodInfo",
    "Taint",
    "Toleration",
    "WeightedAffinityTerm",
    "find_untolerated_taint",
    "next_generation",
    "normalized_image_name",
    "pod_key",
    "pod_requests",
    "tolerates_taint",
]

DEFAULT_MILLI_CPU_REQUEST: Final = 100  # 0.1 core
DEFAULT_MEMORY_REQUEST: Final = 200 * 1024 * 1024  # 200 MiB
LABEL_HOSTNAME: Final = "kubernetes.io/hostname"
LABEL_ZONE: Final = "topology.kubernetes.io/zone"
LABEL_REGION: Final = "topology.kubernetes.io/region"

_NATIVE: Final = frozenset({"cpu", "memory", "ephemeral-storage", "pods", "storage"})

_generation = itertools.count(1)


def next_generation() -> int:
    """A new generation number, larger than every one handed out before."""
    return next(_generation)


def pod_key(pod: core_pb2.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


# -- resources ---------------------------------------------------------------------------


def _nanos(q: Any) -> int:
    try:
        return parse_quantity(q.string).nanos
    except QuantityError:
        return 0  # the apiserver validates quantities; a broken one counts as nothing


def _resource_list(requests: Mapping[str, Any]) -> dict[str, int]:
    return {name: _nanos(q) for name, q in requests.items()}


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, v in other.items():
        into[name] = into.get(name, 0) + v


def _max(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, v in other.items():
        if v > into.get(name, 0):
            into[name] = v


def pod_requests(pod: core_pb2.Pod, *, non_missing: Mapping[str, int] | None = None,
                 exclude_overhead: bool = False) -> dict[str, int]:
    """A pod's effective requests in nano-units per resource (Kubernetes' ``PodRequests``).

    ``non_missing`` gives nano-unit defaults for resources a container does not
    request at all (how the non-zero requests are computed).
    """
    def container_reqs(c: core_pb2.Container) -> dict[str, int]:
        reqs = _resource_list(c.resources.requests)
        if non_missing:
            for name, v in non_missing.items():
                if name not in reqs:
                    reqs[name] = v
        return reqs

    total: dict[str, int] = {}
    for c in pod.spec.containers:
        _add(total, container_reqs(c))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in pod.spec.initContainers:
        reqs = container_reqs(c)
        if c.restartPolicy == "Always":
            _add(total, reqs)
            _add(sidecars, reqs)
            effective = dict(sidecars)
        else:
            effective = dict(reqs)
            _add(effective, sidecars)
        _max(init_max, effective)
    _max(total, init_max)
    if not exclude_overhead and pod.spec.overhead:
        _add(total, _resource_list(pod.spec.overhead))
    return total


def _milli(nanos: int) -> int:
    return -(-nanos // 1_000_000)


def _value(nanos: int) -> int:
    return -(-nanos // 1_000_000_000)


def is_scalar_resource(name: str) -> bool:
    """Extended resources, hugepages and attachable volumes: counted, never defaulted."""
    return name not in _NATIVE


_NON_ZERO_DEFAULTS: Final = {"cpu": DEFAULT_MILLI_CPU_REQUEST * 1_000_000,
                             "memory": DEFAULT_MEMORY_REQUEST * 1_000_000_000}


# -- taints and tolerations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{{{self.key}: {self.value}}}"


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' ``ToleratesTaint``."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        if self.operator in ("", "Equal"):
            return self.value == taint.value
        return False


def tolerates_taint(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    return any(t.tolerates(taint) for t in tolerations)


def find_untolerated_taint(taints: Iterable[Taint], tolerations: tuple[Toleration, ...],
                           effects: frozenset[str]) -> Taint | None:
    """The first taint with one of ``effects`` that no toleration tolerates."""
    for taint in taints:
        if taint.effect in effects and not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None


# -- affinity terms --------------------------------------------------------------------------


class AffinityTerm:
    """A pod (anti-)affinity term, compiled: which pods it selects, and where.

    ``namespaces`` is the pod's own namespace when the term names none and has
    no namespace selector; ``namespace_selector`` ``None`` selects no namespace.
    """

    __slots__ = ("namespace_selector", "namespaces", "selector", "topology_key")

    def __init__(self, namespaces: frozenset[str], selector: LabelSelector,
                 topology_key: str, namespace_selector: LabelSelector | None) -> None:
        self.namespaces = namespaces
        self.selector = selector
        self.topology_key = topology_key
        self.namespace_selector = namespace_selector

    def matches(self, pod: PodInfo, ns_labels: Mapping[str, str] | None) -> bool:
        if pod.namespace in self.namespaces or (
                self.namespace_selector is not None and ns_labels is not None
                and self.namespace_selector.matches(ns_labels)):
            return self.selector.matches(pod.labels)
        return False

    def with_namespaces(self, extra: Iterable[str]) -> AffinityTerm:
        """This term with the namespaces its selector matched merged in (and no selector)."""
        return AffinityTerm(self.namespaces | frozenset(extra), self.selector,
                            self.topology_key, None)


@dataclass(frozen=True, slots=True)
class WeightedAffinityTerm:
    term: AffinityTerm
    weight: int


def _affinity_term(pod: core_pb2.Pod, term: core_pb2.PodAffinityTerm,
                   labels: Mapping[str, str]) -> AffinityTerm:
    selector = (label_selector_from_api(term.labelSelector)
                if term.HasField("labelSelector") else LabelSelector.nothing())
    # matchLabelKeys / mismatchLabelKeys: the incoming pod's own label values.
    if not selector.is_nothing:
        from pilothouse.api.selectors import Operator, Requirement

        extra = [Requirement(k, Operator.IN, (labels[k],)) for k in term.matchLabelKeys
                 if k in labels]
        extra += [Requirement(k, Operator.NOT_IN, (labels[k],)) for k in term.mismatchLabelKeys
                  if k in labels]
        if extra:
            selector = selector.add(*extra)
    ns_selector = (label_selector_from_api(term.namespaceSelector)
                   if term.HasField("namespaceSelector") else None)
    namespaces = frozenset(term.namespaces)
    if not namespaces and ns_selector is None:
        namespaces = frozenset((pod.metadata.namespace,))
    return AffinityTerm(namespaces, selector, term.topologyKey, ns_selector)


# -- PodInfo ------------------------------------------------------------------------------


class PodInfo:
    """A pod and what the scheduler needs from it, computed once."""

    __slots__ = (
        "affinity_error", "key", "labels", "name", "namespace", "node_name", "nz_cpu",
        "nz_mem", "pod", "ports", "preemption_policy", "preferred_affinity_terms",
        "preferred_anti_affinity_terms", "priority", "req_cpu", "req_eph", "req_mem",
        "req_scalar", "required_affinity_terms", "required_anti_affinity_terms",
        "start_time", "terminating", "tolerations", "uid",
    )

    def __init__(self, pod: core_pb2.Pod, *, priority: int | None = None) -> None:
        meta, spec = pod.metadata, pod.spec
        self.pod = pod
        self.name = meta.name
        self.namespace = meta.namespace
        self.key = f"{meta.namespace}/{meta.name}"
        self.uid = meta.uid
        self.labels: dict[str, str] = dict(meta.labels)
        self.node_name = spec.nodeName
        self.priority = priority if priority is not None else (
            spec.priority if spec.HasField("priority") else 0)
        self.preemption_policy = spec.preemptionPolicy or "PreemptLowerPriority"
        self.terminating = meta.HasField("deletionTimestamp")
        self.start_time = (pod.status.startTime.seconds * 1_000_000_000 +
                           pod.status.startTime.nanos
                           if pod.status.HasField("startTime") else 0)
        reqs = pod_requests(pod)
        self.req_cpu = _milli(reqs.pop("cpu", 0))
        self.req_mem = _value(reqs.pop("memory", 0))
        self.req_eph = _value(reqs.pop("ephemeral-storage", 0))
        reqs.pop("pods", None)
        self.req_scalar: dict[str, int] = {k: _value(v) for k, v in reqs.items() if v}
        nz = pod_requests(pod, non_missing=_NON_ZERO_DEFAULTS)
        self.nz_cpu = _milli(nz.get("cpu", 0))
        self.nz_mem = _value(nz.get("memory", 0))
        self.tolerations: tuple[Toleration, ...] = tuple(
            Toleration(t.key, t.operator, t.value, t.effect) for t in spec.tolerations)
        ports: list[tuple[str, str, int]] = []
        for c in itertools.chain(spec.containers,
                                 (c for c in spec.initContainers if c.restartPolicy == "Always")):
            for p in c.ports:
                if p.hostPort > 0:
                    ports.append((p.hostIP or "0.0.0.0", p.protocol or "TCP", p.hostPort))
        self.ports = tuple(ports)
        self.affinity_error = ""
        self.required_affinity_terms: tuple[AffinityTerm, ...] = ()
        self.required_anti_affinity_terms: tuple[AffinityTerm, ...] = ()
        self.preferred_affinity_terms: tuple[WeightedAffinityTerm, ...] = ()
        self.preferred_anti_affinity_terms: tuple[WeightedAffinityTerm, ...] = ()
        if spec.HasField("affinity") and (spec.affinity.HasField("podAffinity") or
                                          spec.affinity.HasField("podAntiAffinity")):
            self._compile_affinity(pod)

    def _compile_affinity(self, pod: core_pb2.Pod) -> None:
        aff = pod.spec.affinity
        labels = self.labels
        try:
            self.required_affinity_terms = tuple(
                _affinity_term(pod, t, labels)
                for t in aff.podAffinity.requiredDuringSchedulingIgnoredDuringExecution)
            self.required_anti_affinity_terms = tuple(
                _affinity_term(pod, t, labels)
                for t in aff.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution)
            self.preferred_affinity_terms = tuple(
                WeightedAffinityTerm(_affinity_term(pod, w.podAffinityTerm, labels), w.weight)
                for w in aff.podAffinity.preferredDuringSchedulingIgnoredDuringExecution
                if w.weight)
            self.preferred_anti_affinity_terms = tuple(
                WeightedAffinityTerm(_affinity_term(pod, w.podAffinityTerm, labels), w.weight)
                for w in aff.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution
                if w.weight)
        except SelectorError as exc:
            self.affinity_error = str(exc)

    def rebound(self, pod: core_pb2.Pod) -> PodInfo | None:
        """This PodInfo for ``pod``, a newer version of the same pod (typically the bound
        one, which differs in ``spec.nodeName`` and its status conditions), without parsing
        it again; None when anything ``__init__`` reads from a pod differs (build anew).
        Keep in step with ``__init__``."""
        old = self.pod
        om, nm = old.metadata, pod.metadata
        os_, ns = old.spec, pod.spec
        if not (om.uid == nm.uid and om.name == nm.name and om.namespace == nm.namespace
                and om.labels == nm.labels
                and om.HasField("deletionTimestamp") == nm.HasField("deletionTimestamp")
                and old.status.startTime == pod.status.startTime
                and os_.containers == ns.containers
                and os_.initContainers == ns.initContainers
                and os_.overhead == ns.overhead and os_.tolerations == ns.tolerations
                and os_.affinity == ns.affinity
                and os_.HasField("affinity") == ns.HasField("affinity")
                and os_.HasField("priority") == ns.HasField("priority")
                and os_.priority == ns.priority
                and os_.preemptionPolicy == ns.preemptionPolicy):
            return None
        new = PodInfo.__new__(PodInfo)
        for name in PodInfo.__slots__:
            setattr(new, name, getattr(self, name))
        new.pod = pod
        new.node_name = ns.nodeName
        return new

    @property
    def has_affinity(self) -> bool:
        """Any pod affinity or anti-affinity (Kubernetes' ``podWithAffinity``)."""
        spec = self.pod.spec
        return spec.HasField("affinity") and (spec.affinity.HasField("podAffinity") or
                                              spec.affinity.HasField("podAntiAffinity"))

    @property
    def has_required_anti_affinity(self) -> bool:
        return bool(self.required_anti_affinity_terms)

    def __repr__(self) -> str:
        return f"<PodInfo {self.key}>"


# -- NodeInfo --------------------------------------------------------------------------------


class ImageState:
    """One image's size and the nodes that have it, shared by every NodeInfo listing it."""

    __slots__ = ("nodes", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.nodes: set[str] = set()

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)


def normalized_image_name(name: str) -> str:
    """``name:latest`` when the image has no tag (Kubernetes' image locality rule)."""
    if name.rfind(":") <= name.rfind("/"):
        return name + ":latest"
    return name


_NO_SCHEDULE_EFFECTS: Final = frozenset({"NoSchedule", "NoExecute"})


class NodeInfo:
    """A node, the pods on it (assumed ones included) and their totals."""

    __slots__ = (
        "alloc_cpu", "alloc_eph", "alloc_mem", "alloc_pods", "alloc_scalar", "generation",
        "image_states", "labels", "name", "node", "nz_cpu", "nz_mem",
        "pods", "pods_with_affinity", "pods_with_required_anti_affinity",
        "prefer_no_schedule_taints", "req_cpu", "req_eph", "req_mem", "req_scalar",
        "schedule_taints", "taints", "unschedulable", "used_ports",
    )

    def __init__(self, node: core_pb2.Node | None = None) -> None:
        self.node: core_pb2.Node | None = None
        self.name = ""
        self.labels: dict[str, str] = {}
        self.taints: tuple[Taint, ...] = ()
        self.schedule_taints: tuple[Taint, ...] = ()
        self.prefer_no_schedule_taints: tuple[Taint, ...] = ()
        self.unschedulable = False
        self.alloc_cpu = self.alloc_mem = self.alloc_eph = self.alloc_pods = 0
        self.alloc_scalar: dict[str, int] = {}
        self.image_states: dict[str, ImageState] = {}
        self.pods: list[PodInfo] = []
        self.pods_with_affinity: list[PodInfo] = []
        self.pods_with_required_anti_affinity: list[PodInfo] = []
        self.used_ports: set[tuple[str, str, int]] = set()
        self.req_cpu = self.req_mem = self.req_eph = 0
        self.req_scalar: dict[str, int] = {}
        self.nz_cpu = self.nz_mem = 0
        self.generation = next_generation()
        if node is not None:
            self.set_node(node)

    def set_node(self, node: core_pb2.Node) -> None:
        """Take a (new version of the) node; pods and their totals stay."""
        self.node = node
        self.name = node.metadata.name
        self.labels = dict(node.metadata.labels)
        self.taints = tuple(Taint(t.key, t.value, t.effect) for t in node.spec.taints)
        self.schedule_taints = tuple(t for t in self.taints if t.effect in _NO_SCHEDULE_EFFECTS)
        self.prefer_no_schedule_taints = tuple(
            t for t in self.taints if t.effect == "PreferNoSchedule")
        self.unschedulable = node.spec.unschedulable
        alloc = _resource_list(node.status.allocatable)
        self.alloc_cpu = _milli(alloc.pop("cpu", 0))
        self.alloc_mem = _value(alloc.pop("memory", 0))
        self.alloc_eph = _value(alloc.pop("ephemeral-storage", 0))
        self.alloc_pods = _value(alloc.pop("pods", 0))
        self.alloc_scalar = {k: _value(v) for k, v in alloc.items()}
        self.generation = next_generation()

    # -- pods ----------------------------------------------------------------------------

    def add_pod(self, pi: PodInfo) -> None:
        self.pods.append(pi)
        if pi.has_affinity:
            self.pods_with_affinity.append(pi)
        if pi.required_anti_affinity_terms:
            self.pods_with_required_anti_affinity.append(pi)
        self._update(pi, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        """Remove the pod with ``key``; the removed PodInfo, or None if it was not here."""
        for i, pi in enumerate(self.pods):
            if pi.key == key:
                del self.pods[i]
                break
        else:
            return None
        if pi.has_affinity:
            self.pods_with_affinity = [p for p in self.pods_with_affinity if p.key != key]
        if pi.required_anti_affinity_terms:
            self.pods_with_required_anti_affinity = [
                p for p in self.pods_with_required_anti_affinity if p.key != key]
        self._update(pi, -1)
        return pi

    def _update(self, pi: PodInfo, sign: int) -> None:
        self.req_cpu += sign * pi.req_cpu
        self.req_mem += sign * pi.req_mem
        self.req_eph += sign * pi.req_eph
        if pi.req_scalar:
            scalar = dict(self.req_scalar)  # copy-on-write: clones share this dict
            for name, v in pi.req_scalar.items():
                scalar[name] = scalar.get(name, 0) + sign * v
            self.req_scalar = scalar
        self.nz_cpu += sign * pi.nz_cpu
        self.nz_mem += sign * pi.nz_mem
        if pi.ports:
            ports = set(self.used_ports)
            if sign > 0:
                ports.update(pi.ports)
            else:
                ports.difference_update(pi.ports)
            self.used_ports = ports
        self.generation = next_generation()

    def clone(self, into: NodeInfo | None = None) -> NodeInfo:
        """A copy whose pod lists and totals can change without touching this one
        (written into ``into`` when given, so references to it stay valid)."""
        new = into if into is not None else NodeInfo.__new__(NodeInfo)
        new.node = self.node
        new.name = self.name
        new.labels = self.labels
        new.taints = self.taints
        new.schedule_taints = self.schedule_taints
        new.prefer_no_schedule_taints = self.prefer_no_schedule_taints
        new.unschedulable = self.unschedulable
        new.alloc_cpu, new.alloc_mem = self.alloc_cpu, self.alloc_mem
        new.alloc_eph, new.alloc_pods = self.alloc_eph, self.alloc_pods
        new.alloc_scalar = self.alloc_scalar
        new.image_states = self.image_states
        new.pods = list(self.pods)
        new.pods_with_affinity = list(self.pods_with_affinity)
        new.pods_with_required_anti_affinity = list(self.pods_with_required_anti_affinity)
        new.used_ports = self.used_ports  # copy-on-write in _update
        new.req_cpu, new.req_mem, new.req_eph = self.req_cpu, self.req_mem, self.req_eph
        new.req_scalar = self.req_scalar  # copy-on-write in _update
        new.nz_cpu, new.nz_mem = self.nz_cpu, self.nz_mem
        new.generation = self.generation
        return new

    def __repr__(self) -> str:
        return (f"<NodeInfo {self.name} pods={len(self.pods)} cpu={self.req_cpu}/"
                f"{self.alloc_cpu}m mem={self.req_mem}/{self.alloc_mem}>")
