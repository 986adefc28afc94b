"""``Snapshot``: the nodes one scheduling cycle sees.

The scheduler cache brings the snapshot up to date before every cycle,
copying only NodeInfos whose generation is newer than the snapshot's (one or
two per cycle in steady state: the node the previous pod was bound to). The
snapshot's NodeInfo objects are updated in place, so the lists below keep
pointing at current data; they are rebuilt only when nodes come or go. A node
that starts/stops hosting pods with affinity is added to/dropped from the
two affinity lists (whose order carries no meaning).

``node_info_list`` is ordered as Kubernetes' node tree orders it: zones
interleaved (first node of each zone, then the second of each, ...), so
scoring a fraction of the nodes still spreads over every zone. A node's index
in it is its "slot" (``slot_of``); ``list_version`` moves whenever the list is
rebuilt, which is when slots change meaning (per-node columns, ``columns.py``,
are keyed by it).

The snapshot also keeps a change log: the names of the NodeInfos that were
updated, added or removed, in order (``changed_since``). Plugins that keep
per-node aggregates across cycles (PodTopologySpread's and InterPodAffinity's
counts) read it to update only what moved. Whoever changes a snapshot's
NodeInfos outside ``Cache.update_snapshot`` must call ``note_changed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.scheduler.framework.types import (
    LABEL_REGION,
    LABEL_ZONE,
    ImageState,
    NodeInfo,
    PodInfo,
)

__all__ = ["Snapshot", "add_node_images", "remove_node_images", "zone_interleaved", "zone_key"]

_snapshot_ids = itertools.count(1)
#: The change log keeps at least this many entries (and four per node) before trimming.
_MIN_LOG = 4096


def add_node_images(info: NodeInfo, images: dict[str, ImageState]) -> None:
    """Point ``info.image_states`` at the shared per-image states and count the node in."""
    states: dict[str, ImageState] = {}
    assert info.node is not None
    for img in info.node.status.images:
        for name in img.names:
            st = images.get(name)
            if st is None:
                st = images[name] = ImageState(img.sizeBytes)
            st.nodes.add(info.name)
            states[name] = st
    info.image_states = states


def remove_node_images(info: NodeInfo, images: dict[str, ImageState]) -> None:
    for name, st in info.image_states.items():
        st.nodes.discard(info.name)
        if not st.nodes:
            images.pop(name, None)
    info.image_states = {}


def zone_key(labels: dict[str, str]) -> str:
    """Region and zone of a node ("" when it has neither), as the node tree keys zones."""
    region, zone = labels.get(LABEL_REGION, ""), labels.get(LABEL_ZONE, "")
    if not region and not zone:
        return ""
    return f"{region}:\x00:{zone}"


def zone_interleaved(names_by_zone: Iterable[list[str]]) -> list[str]:
    """Node names, zones interleaved: first of each zone, then second of each, ..."""
    zones = [z for z in names_by_zone if z]
    out: list[str] = []
    i = 0
    while zones:
        alive = []
        for z in zones:
            if i < len(z):
                out.append(z[i])
                alive.append(z)
        zones = [z for z in alive if i + 1 < len(z)]
        i += 1
    return out


class Snapshot:
    """What one cycle reads: NodeInfos by name and in node-tree order."""

    def __init__(self) -> None:
        self.node_info_map: dict[str, NodeInfo] = {}
        self.node_info_list: list[NodeInfo] = []
        self.have_pods_with_affinity_list: list[NodeInfo] = []
        self.have_pods_with_required_anti_affinity_list: list[NodeInfo] = []
        #: node name -> its index in ``node_info_list`` (a node's "slot").
        self.slot_of: dict[str, int] = {}
        #: Moves whenever ``node_info_list`` is rebuilt (slots change meaning).
        self.list_version = 0
        #: Every image some node has, by name (the states NodeInfos share); None: unknown.
        self.images: dict[str, ImageState] | None = None
        self.generation = 0
        #: The cache's node-tree version this snapshot's list was built from.
        self.tree_version = -1
        #: Distinguishes snapshots for plugins' cross-cycle aggregates.
        self.uid = next(_snapshot_ids)
        self._changes: list[str] = []
        self._changes_base = 0

    # -- the change log ------------------------------------------------------------------

    @property
    def changes_end(self) -> int:
        """The log position after the newest change (pass it to ``changed_since`` later)."""
        return self._changes_base + len(self._changes)

    def note_changed(self, name: str) -> None:
        """Record that the NodeInfo ``name`` was updated, added or removed."""
        self._changes.append(name)
        if len(self._changes) > max(_MIN_LOG, 4 * len(self.node_info_map)):
            drop = len(self._changes) // 2
            del self._changes[:drop]
            self._changes_base += drop

    def changed_since(self, position: int) -> list[str] | None:
        """Names changed since ``position`` (repeats possible); None when that part of
        the log was dropped (the caller recounts from scratch)."""
        if position < self._changes_base:
            return None
        return self._changes[position - self._changes_base:]

    @classmethod
    def from_objects(cls, nodes: Iterable[core_pb2.Node],
                     pods: Iterable[core_pb2.Pod | PodInfo] = ()) -> Snapshot:
        """A snapshot built directly (tests, simulations): pods go to their spec.nodeName."""
        snap = cls()
        by_zone: dict[str, list[str]] = {}
        for node in nodes:
            info = NodeInfo(node)
            snap.node_info_map[info.name] = info
            by_zone.setdefault(zone_key(info.labels), []).append(info.name)
        images: dict[str, ImageState] = {}
        for info in snap.node_info_map.values():
            add_node_images(info, images)
        snap.images = images
        for pod in pods:
            pi = pod if isinstance(pod, PodInfo) else PodInfo(pod)
            target = snap.node_info_map.get(pi.node_name)
            if target is not None:
                target.add_pod(pi)
        snap.rebuild_lists(zone_interleaved(by_zone.values()))
        return snap

    def rebuild_lists(self, ordered_names: list[str] | None = None) -> None:
        """Recompute the node list (from ``ordered_names``) and the affinity lists."""
        if ordered_names is not None:
            self.node_info_list = [self.node_info_map[n] for n in ordered_names
                                   if n in self.node_info_map]
            self.slot_of = {ni.name: i for i, ni in enumerate(self.node_info_list)}
            self.list_version += 1
        self.have_pods_with_affinity_list = [
            n for n in self.node_info_list if n.pods_with_affinity]
        self.have_pods_with_required_anti_affinity_list = [
            n for n in self.node_info_list if n.pods_with_required_anti_affinity]

    def affinity_changed(self, info: NodeInfo, had_affinity: bool,
                         had_required_anti_affinity: bool) -> None:
        """``info`` (in this snapshot) started or stopped hosting pods with affinity /
        required anti-affinity: add it to or drop it from those lists."""
        for had, now, lst in (
                (had_affinity, bool(info.pods_with_affinity),
                 self.have_pods_with_affinity_list),
                (had_required_anti_affinity, bool(info.pods_with_required_anti_affinity),
                 self.have_pods_with_required_anti_affinity_list)):
            if now and not had:
                lst.append(info)
            elif had and not now:
                for i, n in enumerate(lst):
                    if n is info:
                        del lst[i]
                        break

    def get(self, name: str) -> NodeInfo | None:
        return self.node_info_map.get(name)

    def list(self) -> list[NodeInfo]:
        return self.node_info_list

    def __len__(self) -> int:
        return len(self.node_info_list)
