"""Kubernetes' scheduling framework: statuses, cycle state, extension points, node snapshot."""

from pilothouse.services.scheduler.framework.columns import (
    Column,
    ColumnStore,
    DomainColumn,
    FilterColumn,
    NodeSlots,
    VerdictColumn,
)
from pilothouse.services.scheduler.framework.cycle_state import CycleState
from pilothouse.services.scheduler.framework.interface import (
    MAX_NODE_SCORE,
    MIN_NODE_SCORE,
    ClusterEvent,
    Handle,
    NodeToStatus,
    PostFilterResult,
    PreFilterResult,
)
from pilothouse.services.scheduler.framework.runtime import (
    EXTENSION_POINTS,
    Framework,
    PluginSpec,
    ProfileConfig,
    ScoreRecord,
)
from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.framework.status import Code, Status, is_success
from pilothouse.services.scheduler.framework.types import NodeInfo, PodInfo

__all__ = [
    "EXTENSION_POINTS",
    "MAX_NODE_SCORE",
    "MIN_NODE_SCORE",
    "ClusterEvent",
    "Code",
    "Column",
    "ColumnStore",
    "CycleState",
    "DomainColumn",
    "FilterColumn",
    "Framework",
    "Handle",
    "NodeInfo",
    "NodeSlots",
    "NodeToStatus",
    "PluginSpec",
    "PodInfo",
    "PostFilterResult",
    "PreFilterResult",
    "ProfileConfig",
    "ScoreRecord",
    "Snapshot",
    "Status",
    "VerdictColumn",
    "is_success",
]
