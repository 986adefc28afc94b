"""Per-node columns: one plugin verdict or raw score per node slot, for a pod "shape".

The pods of one workload share their requests, tolerations and node affinity,
and between two of their cycles only a node or two changed (the one the last
pod was assumed on, the one whose bound pod the informer confirmed). A plugin
whose per-node answer depends only on (the pod's shape, that node) can keep a
column of answers indexed by the node's slot in ``Snapshot.node_info_list``,
bring it up to date from the snapshot's change log (only the changed nodes are
recomputed) and hand the framework the whole column: Filter then reduces a
range of nodes with C-level byte operations, and Score gathers a slice,
instead of one Python call per (plugin, node).

A column belongs to one snapshot (``uid``) and one node list
(``list_version``: nodes added/removed or reordered rebuild it); a shape is
given a column only once it has been seen ``build_after`` times (building
costs one evaluation per node, so a pod with a shape of its own gains nothing
and keeps the per-batch path). At most ``capacity`` shapes are kept per store
(least recently used go first).

Filter columns also keep ``passed``: a bytearray with 1 for the nodes that pass
and 0 for the ones that fail, and ``failed``, how many fail, so the framework can
combine the columns of several plugins and pick feasible nodes with
``bytes.count``/``itertools.compress``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from itertools import repeat
from operator import eq
from typing import Any, Generic, Protocol, TypeVar

from pilothouse.services.scheduler.framework.snapshot import Snapshot
from pilothouse.services.scheduler.framework.status import Code, Status
from pilothouse.services.scheduler.framework.types import NodeInfo

__all__ = ["Column", "ColumnStore", "DomainColumn", "FilterColumn", "NodeSlots",
           "VerdictColumn"]

V = TypeVar("V")


class Column(Generic[V]):
    """One answer per node slot (``values[i]`` is for ``snapshot.node_info_list[i]``)."""

    __slots__ = ("fn", "list_version", "log_pos", "snapshot_uid", "values")

    def __init__(self, fn: Callable[[NodeInfo], V]) -> None:
        self.fn = fn
        self.values: list[V] = []
        self.snapshot_uid = -1
        self.list_version = -1
        self.log_pos = 0

    def rebuild(self, snapshot: Snapshot) -> None:
        self.values = list(map(self.fn, snapshot.node_info_list))
        self.snapshot_uid = snapshot.uid
        self.list_version = snapshot.list_version
        self.log_pos = snapshot.changes_end

    def set(self, slot: int, value: V) -> None:
        self.values[slot] = value

    def refresh(self, snapshot: Snapshot) -> None:
        """Bring the column up to date with ``snapshot`` (changed nodes only)."""
        if self.snapshot_uid != snapshot.uid or self.list_version != snapshot.list_version:
            self.rebuild(snapshot)
            return
        end = snapshot.changes_end
        if end == self.log_pos:
            return
        changed = snapshot.changed_since(self.log_pos)
        if changed is None:
            self.rebuild(snapshot)
            return
        slot_of = snapshot.slot_of
        nodes = snapshot.node_info_list
        fn = self.fn
        for name in (set(changed) if len(changed) > 1 else changed):
            i = slot_of.get(name)
            if i is not None:
                self.set(i, fn(nodes[i]))
        self.log_pos = end


class FilterColumn(Column["Status | None"]):
    """Filter verdicts per slot (None = passes), with a pass/fail byte mask."""

    __slots__ = ("failed", "passed")

    def __init__(self, fn: Callable[[NodeInfo], Status | None]) -> None:
        super().__init__(fn)
        self.passed = bytearray()
        self.failed = 0

    def rebuild(self, snapshot: Snapshot) -> None:
        fn = self.fn
        values: list[Status | None] = []
        for ni in snapshot.node_info_list:
            s = fn(ni)
            values.append(None if s is None or s.code is Code.SUCCESS else s)
        self.values = values
        self.passed = bytearray(0 if v is not None else 1 for v in values)
        self.failed = len(values) - self.passed.count(1)
        self.snapshot_uid = snapshot.uid
        self.list_version = snapshot.list_version
        self.log_pos = snapshot.changes_end

    def set(self, slot: int, value: Status | None) -> None:
        if value is not None and value.code is Code.SUCCESS:
            value = None
        was = self.passed[slot]
        now = 1 if value is None else 0
        self.values[slot] = value
        if was != now:
            self.passed[slot] = now
            self.failed += 1 if was else -1


class VerdictColumn(Protocol):
    """What the framework reads from a plugin's ``filter_column``: the verdict per slot
    (None = passes), a mask with 1 per passing slot (0 per failing one), how many fail."""

    @property
    def values(self) -> Sequence[Status | None]: ...

    @property
    def passed(self) -> bytes | bytearray: ...

    @property
    def failed(self) -> int: ...

    # Optionally, ``values.gather(slots)``: the verdicts at ``slots`` (faster than one
    # ``values[slot]`` per slot when the verdicts are computed, not stored).


class DomainColumn(Column["str | None"]):
    """Each node's value of one label (a topology domain; None: the node lacks it), and
    per domain a byte mask of its nodes, for plugins whose verdict is per domain."""

    __slots__ = ("_masks", "max_domains")

    def __init__(self, key: str, max_domains: int = 64) -> None:
        super().__init__(lambda ni: ni.labels.get(key))
        self.max_domains = max_domains
        self._masks: dict[str, int] | None = None

    def rebuild(self, snapshot: Snapshot) -> None:
        super().rebuild(snapshot)
        self._masks = None

    def set(self, slot: int, value: str | None) -> None:
        if self.values[slot] != value:
            self.values[slot] = value
            self._masks = None

    def masks(self) -> dict[str, int] | None:
        """domain -> its nodes as an int whose byte i is 1 when slot i is in the domain
        (bytes of one int OR together as the union of domains); None when there are more
        than ``max_domains`` domains (per-node work is cheaper then)."""
        if self._masks is None:
            domains = set(self.values)
            domains.discard(None)
            if len(domains) > self.max_domains:
                return None
            values = self.values
            self._masks = {
                d: int.from_bytes(bytes(map(eq, values, repeat(d))), "little")
                for d in domains if d is not None}
        return self._masks


C = TypeVar("C", bound=Column[Any])


class ColumnStore(Generic[C]):
    """A plugin's columns by shape key, for one kind of column (filter or score)."""

    __slots__ = ("_columns", "_factory", "_seen", "build_after", "capacity")

    def __init__(self, factory: Callable[[Callable[[NodeInfo], Any]], C], *,
                 capacity: int = 8, build_after: int = 2) -> None:
        self._factory = factory
        self._columns: dict[Hashable, C] = {}
        self._seen: dict[Hashable, int] = {}
        self.capacity = capacity
        self.build_after = build_after

    def get(self, snapshot: Snapshot, key: Hashable,
            fn: Callable[[], Callable[[NodeInfo], Any]]) -> C | None:
        """The up-to-date column for ``key`` over ``snapshot``; None while the shape is
        not yet worth one. ``fn()`` makes the per-node function (called only to build)."""
        col = self._columns.get(key)
        if col is None:
            seen = self._seen.get(key, 0) + 1
            if seen < self.build_after:
                if len(self._seen) >= 4 * self.capacity:
                    self._seen.clear()
                self._seen[key] = seen
                return None
            self._seen.pop(key, None)
            if len(self._columns) >= self.capacity:
                del self._columns[next(iter(self._columns))]
            col = self._columns[key] = self._factory(fn())
        elif next(reversed(self._columns)) != key:
            # Most recently used last (the first key is the one evicted).
            del self._columns[key]
            self._columns[key] = col
        col.refresh(snapshot)
        return col

    def clear(self) -> None:
        self._columns.clear()
        self._seen.clear()


class NodeSlots:
    """Which slots of the node list a cycle scores, in order: ``count`` consecutive slots
    from ``start`` (wrapping around ``n``), or the explicit ``slots`` list."""

    __slots__ = ("count", "n", "slots", "start")

    def __init__(self, n: int, start: int = 0, count: int = 0,
                 slots: list[int] | None = None) -> None:
        self.n = n
        self.start = start
        self.count = len(slots) if slots is not None else count
        self.slots = slots

    def gather(self, values: list[V]) -> list[V]:
        """``values`` at these slots, in order."""
        if self.slots is not None:
            return list(map(values.__getitem__, self.slots))
        end = self.start + self.count
        if end <= self.n:
            return values[self.start:end]
        return values[self.start:] + values[:end - self.n]
