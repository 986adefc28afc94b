"""The scheduler cache: nodes and the pods on them, assumed pods included.

Informer events and the scheduler's own assumptions (a pod is counted on its
node as soon as the scheduling cycle picks it, before the bind lands) keep
NodeInfos current. Every change bumps the NodeInfo's generation and moves it
to the end of an ordered dict, so ``update_snapshot`` walks back from the end
and copies only the NodeInfos newer than the snapshot (Kubernetes' cache
keeps a linked list for the same purpose).

Assumed pods: ``assume_pod`` adds the pod to its node; the bind's success
(``finish_binding``) and the informer's add of the bound pod (``add_pod``)
confirm it; a failed bind ``forget_pod``s it. As in Kubernetes 1.32,
assumed pods do not expire.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.scheduler.framework import NodeInfo, PodInfo, Snapshot
from pilothouse.services.scheduler.framework.snapshot import (
    add_node_images,
    remove_node_images,
    zone_interleaved,
    zone_key,
)
from pilothouse.services.scheduler.framework.types import ImageState, next_generation

__all__ = ["Cache"]

log = logging.getLogger("pilothouse.scheduler.cache")


@dataclass
class _PodState:
    info: PodInfo
    node_name: str
    assumed: bool = False
    binding_finished: bool = False


class Cache:
    def __init__(self) -> None:
        self._nodes: OrderedDict[str, NodeInfo] = OrderedDict()
        self._zones: dict[str, list[str]] = {}
        self._node_zone: dict[str, str] = {}
        self._tree_version = 0
        self._tree_order: list[str] | None = None
        self._live_nodes = 0
        self._pods: dict[str, _PodState] = {}
        self._images: dict[str, ImageState] = {}

    # -- nodes -------------------------------------------------------------------

    def _touch(self, ni: NodeInfo) -> None:
        self._nodes.move_to_end(ni.name)

    def _node_info(self, name: str) -> NodeInfo:
        ni = self._nodes.get(name)
        if ni is None:
            ni = NodeInfo()
            ni.name = name
            self._nodes[name] = ni
        return ni

    def _tree_add(self, name: str, zone: str) -> None:
        self._zones.setdefault(zone, []).append(name)
        self._node_zone[name] = zone
        self._tree_version += 1
        self._tree_order = None

    def _tree_remove(self, name: str) -> None:
        zone = self._node_zone.pop(name, None)
        if zone is None:
            return
        names = self._zones[zone]
        names.remove(name)
        if not names:
            del self._zones[zone]
        self._tree_version += 1
        self._tree_order = None

    def add_node(self, node: core_pb2.Node) -> NodeInfo:
        name = node.metadata.name
        ni = self._node_info(name)
        had_node = ni.node is not None
        if had_node:
            remove_node_images(ni, self._images)
        else:
            self._live_nodes += 1
        ni.set_node(node)
        add_node_images(ni, self._images)
        zone = zone_key(ni.labels)
        if self._node_zone.get(name) != zone:
            self._tree_remove(name)
            self._tree_add(name, zone)
        self._touch(ni)
        return ni

    def update_node(self, old: core_pb2.Node | None, new: core_pb2.Node) -> NodeInfo:
        return self.add_node(new)

    def remove_node(self, name: str) -> None:
        ni = self._nodes.get(name)
        if ni is None or ni.node is None:
            return
        remove_node_images(ni, self._images)
        self._tree_remove(name)
        self._live_nodes -= 1
        if ni.pods:
            # Pods still point here until their deletions arrive; keep the totals.
            ni.node = None
            ni.generation = next_generation()
            self._touch(ni)
        else:
            del self._nodes[name]

    @property
    def node_count(self) -> int:
        return self._live_nodes

    def node_names(self) -> list[str]:
        return [n for n, ni in self._nodes.items() if ni.node is not None]

    # -- pods --------------------------------------------------------------------

    def _add_to_node(self, pi: PodInfo, node_name: str) -> None:
        ni = self._node_info(node_name)
        ni.add_pod(pi)
        self._touch(ni)

    def _remove_from_node(self, key: str, node_name: str) -> None:
        ni = self._nodes.get(node_name)
        if ni is None:
            return
        ni.remove_pod(key)
        if ni.node is None and not ni.pods:
            del self._nodes[node_name]
        else:
            self._touch(ni)

    def assume_pod(self, pi: PodInfo, node_name: str) -> None:
        """Count ``pi`` on ``node_name`` before the bind lands."""
        if pi.key in self._pods:
            raise ValueError(f"pod {pi.key} is already in the cache; it cannot be assumed")
        self._add_to_node(pi, node_name)
        self._pods[pi.key] = _PodState(pi, node_name, assumed=True)

    def finish_binding(self, key: str) -> None:
        st = self._pods.get(key)
        if st is not None and st.assumed:
            st.binding_finished = True

    def forget_pod(self, key: str) -> None:
        """Undo ``assume_pod`` (the bind failed)."""
        st = self._pods.get(key)
        if st is None or not st.assumed:
            return
        self._remove_from_node(key, st.node_name)
        del self._pods[key]

    def is_assumed(self, key: str) -> bool:
        st = self._pods.get(key)
        return st is not None and st.assumed

    def add_pod(self, pod: core_pb2.Pod, pi: PodInfo | None = None) -> None:
        """An assigned pod from the informer (confirms an assumed one)."""
        pi = pi or PodInfo(pod)
        node_name = pod.spec.nodeName
        st = self._pods.get(pi.key)
        if st is not None:
            self._remove_from_node(pi.key, st.node_name)
        self._add_to_node(pi, node_name)
        self._pods[pi.key] = _PodState(pi, node_name)

    def update_pod(self, old: core_pb2.Pod | None, new: core_pb2.Pod,
                   pi: PodInfo | None = None) -> None:
        self.add_pod(new, pi)

    def remove_pod(self, key: str) -> None:
        st = self._pods.pop(key, None)
        if st is not None:
            self._remove_from_node(key, st.node_name)

    def get_pod(self, key: str) -> PodInfo | None:
        st = self._pods.get(key)
        return st.info if st is not None else None

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    # -- snapshots ---------------------------------------------------------------------

    def _ordered_names(self) -> list[str]:
        if self._tree_order is None:
            self._tree_order = zone_interleaved(self._zones.values())
        return self._tree_order

    def update_snapshot(self, snapshot: Snapshot) -> int:
        """Bring ``snapshot`` up to date; returns how many NodeInfos were copied."""
        last = snapshot.generation
        update_all = snapshot.tree_version != self._tree_version
        flipped: list[tuple[NodeInfo, bool, bool]] = []
        copied = 0
        newest = last
        for ni in reversed(self._nodes.values()):
            if ni.generation <= last:
                break
            newest = max(newest, ni.generation)
            existing = snapshot.node_info_map.get(ni.name)
            snapshot.note_changed(ni.name)
            if ni.node is None:
                if existing is not None:
                    del snapshot.node_info_map[ni.name]
                    update_all = True
                continue
            copied += 1
            if existing is None:
                snapshot.node_info_map[ni.name] = ni.clone()
                update_all = True
                continue
            had_aff = bool(existing.pods_with_affinity)
            had_anti = bool(existing.pods_with_required_anti_affinity)
            ni.clone(into=existing)
            if had_aff != bool(existing.pods_with_affinity) or \
                    had_anti != bool(existing.pods_with_required_anti_affinity):
                flipped.append((existing, had_aff, had_anti))
        snapshot.generation = newest
        snapshot.images = self._images
        if len(snapshot.node_info_map) > self._live_nodes:
            for name in [n for n in snapshot.node_info_map
                         if n not in self._nodes or self._nodes[n].node is None]:
                del snapshot.node_info_map[name]
                snapshot.note_changed(name)
            update_all = True
        if update_all:
            snapshot.rebuild_lists(self._ordered_names())
            snapshot.tree_version = self._tree_version
        else:
            # Only nodes that started or stopped hosting affinity pods: patch the two
            # lists (their order carries no meaning) instead of rescanning every node.
            for info, had_aff, had_anti in flipped:
                snapshot.affinity_changed(info, had_aff, had_anti)
        return copied
