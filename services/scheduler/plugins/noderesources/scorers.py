"""Resource scoring strategies: LeastAllocated, MostAllocated, RequestedToCapacityRatio.

Each maps (requested, allocatable) per resource, with weights, to a node score
in [0, 100], integer arithmetic as in Kubernetes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pilothouse.services.scheduler.framework import MAX_NODE_SCORE, NodeInfo
from pilothouse.services.scheduler.framework.types import is_scalar_resource

__all__ = [
    "ResourceSpec",
    "ScoreMemo",
    "ScoringStrategy",
    "balanced_score",
    "broken_linear",
    "least_requested_score",
    "most_requested_score",
    "node_allocatable_requested",
    "parse_resources",
]

MAX_CUSTOM_PRIORITY_SCORE = 10
MAX_UTILIZATION = 100


@dataclass(frozen=True)
class ResourceSpec:
    name: str
    weight: int = 1


DEFAULT_RESOURCES = (ResourceSpec("cpu", 1), ResourceSpec("memory", 1))


def parse_resources(raw: Any, default: Sequence[ResourceSpec] = DEFAULT_RESOURCES,
                    ) -> tuple[ResourceSpec, ...]:
    if raw is None:
        return tuple(default)
    if not isinstance(raw, list):
        raise ValueError("resources must be a list of {name, weight}")
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, Mapping) or not isinstance(r.get("name"), str) or not r["name"]:
            raise ValueError(f"resources[{i}]: needs a name")
        weight = r.get("weight", 1)
        if not isinstance(weight, int) or not 1 <= weight <= 100:
            raise ValueError(f"resources[{i}].weight: must be an integer in 1..100")
        out.append(ResourceSpec(r["name"], weight))
    return tuple(out)


def least_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    if requested > capacity:
        requested = capacity
    return requested * MAX_NODE_SCORE // capacity


def broken_linear(shape: Sequence[tuple[int, int]]) -> Callable[[int], int]:
    """The piecewise-linear function through (utilization, score) points."""
    def f(p: int) -> int:
        for i, (u, s) in enumerate(shape):
            if p <= u:
                if i == 0:
                    return shape[0][1]
                pu, ps = shape[i - 1]
                return ps + _go_div((s - ps) * (p - pu), u - pu)
        return shape[-1][1]
    return f


def _go_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Go's."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def balanced_score(requested: Sequence[int], allocatable: Sequence[int]) -> int:
    """1 - the standard deviation of the requested fractions, times 100."""
    fractions = []
    for req, alloc in zip(requested, allocatable, strict=True):
        if alloc == 0:
            continue
        fractions.append(min(req / alloc, 1.0))
    std = 0.0
    if len(fractions) == 2:
        std = abs((fractions[0] - fractions[1]) / 2)
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    return int((1 - std) * MAX_NODE_SCORE)


def node_allocatable_requested(ni: NodeInfo, resource: str, pod_request: int,
                               use_requested: bool) -> tuple[int, int]:
    """(allocatable, requested incl. the pod) of one resource on a node; (0, 0) means
    "leave this resource out" (an extended resource the pod does not ask for)."""
    if resource == "cpu":
        return ni.alloc_cpu, (ni.req_cpu if use_requested else ni.nz_cpu) + pod_request
    if resource == "memory":
        return ni.alloc_mem, (ni.req_mem if use_requested else ni.nz_mem) + pod_request
    if resource == "ephemeral-storage":
        return ni.alloc_eph, ni.req_eph + pod_request
    if pod_request == 0 and is_scalar_resource(resource):
        return 0, 0
    alloc = ni.alloc_scalar.get(resource)
    if alloc is None:
        return 0, 0
    return alloc, ni.req_scalar.get(resource, 0) + pod_request


class ScoringStrategy:
    """A weighted per-resource scorer over (requested, allocatable) lists."""

    def __init__(self, kind: str, resources: Sequence[ResourceSpec],
                 shape: Sequence[tuple[int, int]] = ()) -> None:
        self.kind = kind
        self.resources = tuple(resources)
        self.weights = [r.weight for r in self.resources]
        if kind == "LeastAllocated":
            self.per_resource: Callable[[int, int], int] = least_requested_score
        elif kind == "MostAllocated":
            self.per_resource = most_requested_score
        elif kind == "RequestedToCapacityRatio":
            if not shape:
                raise ValueError("requestedToCapacityRatio.shape: at least one point required")
            fn = broken_linear(shape)

            def rtcr(requested: int, capacity: int) -> int:
                if capacity == 0 or requested > capacity:
                    return fn(MAX_UTILIZATION)
                return fn(requested * MAX_UTILIZATION // capacity)
            self.per_resource = rtcr
        else:
            raise ValueError(f"scoringStrategy.type: unsupported value {kind!r}: supported "
                             "values: LeastAllocated, MostAllocated, RequestedToCapacityRatio")

    def score(self, requested: Sequence[int], allocatable: Sequence[int]) -> int:
        node_score = weight_sum = 0
        rtcr = self.kind == "RequestedToCapacityRatio"
        for req, alloc, w in zip(requested, allocatable, self.weights, strict=True):
            if alloc == 0:
                continue
            s = self.per_resource(req, alloc)
            if rtcr and s <= 0:
                continue
            node_score += s * w
            weight_sum += w
        if weight_sum == 0:
            return 0
        if rtcr:
            return round(node_score / weight_sum)
        return node_score // weight_sum


def parse_shape(raw: Any) -> list[tuple[int, int]]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("requestedToCapacityRatio.shape: a non-empty list of "
                         "{utilization, score} is required")
    points: list[tuple[int, int]] = []
    for i, p in enumerate(raw):
        if not isinstance(p, Mapping):
            raise ValueError(f"shape[{i}]: must be an object")
        u, s = p.get("utilization", 0), p.get("score", 0)
        if not isinstance(u, int) or not 0 <= u <= 100:
            raise ValueError(f"shape[{i}].utilization: must be an integer in 0..100")
        if not isinstance(s, int) or not 0 <= s <= MAX_CUSTOM_PRIORITY_SCORE:
            raise ValueError(f"shape[{i}].score: must be an integer in 0..10")
        if points and u <= points[-1][0]:
            raise ValueError(f"shape[{i}].utilization: values must be sorted in increasing "
                             "order")
        points.append((u, s * (MAX_NODE_SCORE // MAX_CUSTOM_PRIORITY_SCORE)))
    return points


class ScoreMemo:
    """Per-node scores remembered by the NodeInfo's generation, one table per pod
    request vector. A NodeInfo's generation moves on every change to it (pods,
    node object) and is unique to that state, so an entry with the node's current
    generation is the score it would compute; in a cycle only the node the previous
    pod went to is recomputed."""

    __slots__ = ("tables",)

    MAX_TABLES = 16

    def __init__(self) -> None:
        self.tables: dict[tuple[int, ...], dict[str, tuple[int, int]]] = {}

    def table(self, pod_requests: tuple[int, ...]) -> dict[str, tuple[int, int]]:
        """node name -> (generation, score) for pods requesting ``pod_requests``."""
        t = self.tables.get(pod_requests)
        if t is None:
            if len(self.tables) >= self.MAX_TABLES:
                self.tables.clear()
            t = self.tables[pod_requests] = {}
        return t
