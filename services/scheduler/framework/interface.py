"""The extension points: what a plugin may implement, and what it is given.

A plugin is a class with a ``name`` and any of the methods below; the
framework finds the extension points a plugin implements by these method
names, so a plugin implements only what it needs (Kubernetes'
``framework/interface.go``). Each method's docstring is its contract.

Statuses: ``None`` is success (see ``status.py``). A plugin never raises for
a verdict; an exception is turned into an ERROR status naming the plugin.

The scheduling cycle (PreFilter .. Permit) is synchronous: it runs on a
consistent snapshot with nothing interleaved. The binding cycle (PreBind,
Bind, PostBind, waiting on Permit) is async and runs concurrently with the
next cycles. Work a synchronous plugin must start on the API (preemption's
deletions) goes through ``Handle.spawn``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from pilothouse.services.scheduler.framework.cycle_state import CycleState
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.framework.status import Status
from pilothouse.services.scheduler.framework.types import NodeInfo, PodInfo

if TYPE_CHECKING:
    from pilothouse.api.selectors import LabelSelector
    from pilothouse.client import Client
    from pilothouse.services.scheduler.framework.runtime import Framework

__all__ = [
    "MAX_NODE_SCORE",
    "MIN_NODE_SCORE",
    "BindPlugin",
    "ClusterEvent",
    "FilterPlugin",
    "Handle",
    "NodeToStatus",
    "PermitPlugin",
    "Plugin",
    "PluginFactory",
    "PostBindPlugin",
    "PostFilterPlugin",
    "PostFilterResult",
    "PreBindPlugin",
    "PreEnqueuePlugin",
    "PreFilterExtensions",
    "PreFilterPlugin",
    "PreFilterResult",
    "PreScorePlugin",
    "QueueSortPlugin",
    "ReservePlugin",
    "ScorePlugin",
]

MAX_NODE_SCORE: Final = 100
MIN_NODE_SCORE: Final = 0

#: Failure status per node name, for nodes that did not pass Filter.
NodeToStatus = dict[str, Status]


@dataclass(frozen=True, slots=True)
class PreFilterResult:
    """PreFilter may narrow the nodes to evaluate; ``None`` node names means all nodes."""

    node_names: frozenset[str] | None = None

    def merge(self, other: PreFilterResult | None) -> PreFilterResult:
        if other is None or other.node_names is None:
            return self
        if self.node_names is None:
            return other
        return PreFilterResult(self.node_names & other.node_names)


@dataclass(frozen=True, slots=True)
class PostFilterResult:
    """What PostFilter achieved: the node the pod is nominated to (after preemption)."""

    nominated_node_name: str = ""


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """A change in the cluster that may make rejected pods schedulable.

    ``resource``: "Pod", "AssignedPod", "Node", "PriorityClass", "Namespace" or "*";
    ``action``: "Add", "Update", "Delete" or "*".
    """

    resource: str
    action: str

    def covers(self, other: ClusterEvent) -> bool:
        """Whether a plugin registering this event cares about ``other``."""
        res = self.resource == "*" or self.resource == other.resource or (
            self.resource == "Pod" and other.resource == "AssignedPod")
        return res and (self.action == "*" or self.action == other.action)

    def label(self) -> str:
        return f"{self.resource}{self.action}"


class Plugin(Protocol):
    name: str


class PluginFactory(Protocol):
    def __call__(self, args: Mapping[str, Any] | None, handle: Handle) -> Any:
        """Build a plugin from its configuration args (None: defaults) and the handle.

        Raise ``ValueError`` with a clear message for bad args.
        """
        ...


class PreEnqueuePlugin(Protocol):
    name: str

    def pre_enqueue(self, pod: PodInfo) -> Status | None:
        """Called before a pod enters the active queue; a non-success keeps it aside
        (gated) until an update to the pod makes every PreEnqueue plugin succeed."""
        ...


class QueueSortPlugin(Protocol):
    name: str

    def sort_key(self, pod: PodInfo, timestamp: float) -> Any:
        """The activeQ order: smaller keys pop first. Exactly one per profile."""
        ...


class PreFilterExtensions(Protocol):
    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo,
                node_info: NodeInfo) -> Status | None:
        """Update this plugin's cycle state as if ``pod_to_add`` ran on ``node_info``
        (nominated pods; preemption's reprieves). ``node_info`` already includes it."""
        ...

    def remove_pod(self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo,
                   node_info: NodeInfo) -> Status | None:
        """Update this plugin's cycle state as if ``pod_to_remove`` were gone (victims)."""
        ...


class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: PodInfo,
                   nodes: list[NodeInfo]) -> tuple[PreFilterResult | None, Status | None]:
        """Once per cycle, before Filter: pre-compute into ``state``. A rejection fails
        the pod on every node; ``Status.skip()`` skips this plugin's Filter this cycle."""
        ...


class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> Status | None:
        """Can ``pod`` run on ``node_info``? ``None`` yes; UNSCHEDULABLE (preemption may
        help) or UNSCHEDULABLE_AND_UNRESOLVABLE (it will not). Called per node: keep it
        to reading pre-computed ints and dicts. A plugin may add ``filter_many(state,
        pod, nodes) -> list[Status | None]`` giving exactly these verdicts for a batch."""
        ...


class PostFilterPlugin(Protocol):
    name: str

    def post_filter(self, state: CycleState, pod: PodInfo, statuses: NodeToStatus,
                    ) -> tuple[PostFilterResult | None, Status | None]:
        """The pod fits nowhere: try to make room (preemption). Success with a
        nominated node means the pod will be retried there."""
        ...


class PreScorePlugin(Protocol):
    name: str

    def pre_score(self, state: CycleState, pod: PodInfo,
                  nodes: list[NodeInfo]) -> Status | None:
        """Once per cycle with the feasible nodes; ``Status.skip()`` skips this
        plugin's Score."""
        ...


class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> int | Status:
        """The node's raw score (an int), or an ERROR status. Per node: keep it cheap.

        A plugin may define ``score_nodes(state, pod, nodes) -> list[int] | Status``
        giving exactly these scores for a batch (one call per cycle).
        A plugin may also define ``normalize_score(state, pod, nodes, scores)`` that
        rewrites ``scores`` (a list aligned with ``nodes``) into [0, 100] in place and
        returns a Status or None; without it raw scores must already be in range.
        """
        ...


class ReservePlugin(Protocol):
    name: str

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """The pod is assumed on ``node_name``: reserve what it needs."""
        ...

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        """Undo ``reserve`` (a later step failed). Must be idempotent."""
        ...


class PermitPlugin(Protocol):
    name: str

    def permit(self, state: CycleState, pod: PodInfo,
               node_name: str) -> tuple[Status | None, float]:
        """Allow (None), reject, or WAIT with a timeout in seconds before binding."""
        ...


class PreBindPlugin(Protocol):
    name: str

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """Before binding (e.g. provision volumes)."""
        ...


class BindPlugin(Protocol):
    name: str

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """Bind the pod; ``Status.skip()`` passes the pod to the next binder."""
        ...


class PostBindPlugin(Protocol):
    name: str

    def post_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        """Informational, after a successful bind."""
        ...


def _no_namespace_labels(namespace: str) -> Mapping[str, str] | None:
    return None


@dataclass
class Handle:
    """What plugins get from the scheduler: the snapshot, the API and cluster listers.

    Listers are plain callables so tests can pass lambdas; the scheduler fills
    them from its informers.
    """

    snapshot: Snapshot = field(default_factory=Snapshot)
    client: Client | None = None
    #: Labels of a namespace, or None when unknown.
    namespace_labels: Callable[[str], Mapping[str, str] | None] = _no_namespace_labels
    #: Names of the namespaces a selector matches (namespaceSelector in affinity terms).
    namespaces_matching: Callable[[LabelSelector], Iterable[str]] = lambda _s: ()
    #: value and preemptionPolicy of a PriorityClass by name, or None.
    priority_class: Callable[[str], tuple[int, str] | None] = lambda _n: None
    #: Selectors of the Services/ReplicaSets/StatefulSets/RCs selecting a pod
    #: (PodTopologySpread's system default constraints).
    owner_selectors: Callable[[PodInfo], list[LabelSelector]] = lambda _p: []
    #: PodDisruptionBudgets as (namespace, selector, disruptions allowed).
    pdbs: Callable[[], list[tuple[str, LabelSelector, int]]] = lambda: []
    #: Pods nominated to a node (higher or equal priority ones are counted in Filter).
    nominated_pods_for_node: Callable[[str], list[PodInfo]] = lambda _n: []
    #: Names of the nodes some pod is nominated to.
    nominated_node_names: Callable[[], Collection[str]] = lambda: ()
    #: Run a coroutine owned by the scheduler (API work started by a sync plugin).
    spawn: Callable[[Coroutine[Any, Any, Any]], Awaitable[Any] | None] = (
        lambda coro: asyncio.ensure_future(coro))
    #: Record a Kubernetes Event about an object: (object, type, reason, message).
    event: Callable[[Any, str, str, str], None] = lambda _o, _t, _r, _m: None
    #: Name of the scheduler profile (for messages such as DisruptionTarget's).
    scheduler_name: str = "default-scheduler"
    rng: random.Random = field(default_factory=random.Random)
    #: Set by the Framework being built (preemption re-runs the filters).
    framework: Framework | None = None
