"""Static pods: pods from manifest files in a directory, with mirror pods in the apiserver.

Every ``*.yaml``/``*.yml``/``*.json`` file in the directory holds one Pod. The
kubelet runs it without asking the apiserver, as Kubernetes does: its name
gets ``-<node>`` appended, its UID is a hash of the file and the node (so an
edited file is a new pod), and it carries the ``kubernetes.io/config.*``
annotations. So that ``kubectl get pods`` shows it, the kubelet keeps a
*mirror pod* in the apiserver (annotated ``kubernetes.io/config.mirror``,
owned by the Node) and writes the static pod's status there; a mirror pod
deleted by someone is re-created, and one whose static pod is gone is deleted.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pilothouse.api.kinds import KindRegistry
from pilothouse.api.serialization import SerializationError, load_manifest
from pilothouse.gen.k8s.core.v1 import core_pb2

log = logging.getLogger("pilothouse.kubelet.static")

CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_MIRROR = "kubernetes.io/config.mirror"
CONFIG_SEEN = "kubernetes.io/config.seen"
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class StaticPod:
    path: Path
    pod: core_pb2.Pod

    @property
    def uid(self) -> str:
        return str(self.pod.metadata.uid)


def is_mirror(pod: core_pb2.Pod) -> bool:
    return CONFIG_MIRROR in pod.metadata.annotations


def read_manifest(path: Path, node_name: str, registry: KindRegistry) -> core_pb2.Pod:
    """The static pod a manifest file describes; ``ValueError`` with a clear message."""
    data = path.read_bytes()
    try:
        objects = load_manifest(registry, data)
    except SerializationError as e:
        raise ValueError(f"{path}: {e}") from None
    pods = [obj for _, obj in objects if isinstance(obj, core_pb2.Pod)]
    if len(objects) != 1 or not pods:
        raise ValueError(f"{path}: a static pod manifest holds exactly one Pod")
    pod = pods[0]
    if not pod.metadata.name:
        raise ValueError(f"{path}: the pod has no metadata.name")
    if not pod.spec.containers:
        raise ValueError(f"{path}: the pod has no containers")
    digest = hashlib.md5(data + node_name.encode() + str(path).encode(),
                         usedforsecurity=False).hexdigest()
    pod.metadata.name = f"{pod.metadata.name}-{node_name}"
    pod.metadata.namespace = pod.metadata.namespace or "default"
    pod.metadata.uid = digest
    pod.metadata.annotations[CONFIG_SOURCE] = "file"
    pod.metadata.annotations[CONFIG_HASH] = digest
    pod.spec.nodeName = node_name
    pod.metadata.creationTimestamp.seconds = int(path.stat().st_mtime)
    return pod


def scan(directory: Path, node_name: str, registry: KindRegistry,
         errors: dict[Path, str] | None = None) -> dict[str, StaticPod]:
    """Every valid manifest in ``directory``, by static pod UID. Bad files are reported
    in ``errors`` (and logged once per change) and skipped."""
    out: dict[str, StaticPod] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix not in SUFFIXES or not path.is_file():
            continue
        try:
            pod = read_manifest(path, node_name, registry)
        except (ValueError, OSError) as e:
            if errors is not None:
                if errors.get(path) != str(e):
                    log.warning("static pod manifest skipped: %s", e)
                errors[path] = str(e)
            continue
        if errors is not None:
            errors.pop(path, None)
        out[pod.metadata.uid] = StaticPod(path, pod)
    return out


def mirror_of(static: core_pb2.Pod, node_uid: str) -> core_pb2.Pod:
    mirror = core_pb2.Pod()
    mirror.CopyFrom(static)
    mirror.metadata.uid = ""
    mirror.metadata.ClearField("creationTimestamp")
    mirror.metadata.annotations[CONFIG_MIRROR] = static.metadata.annotations[CONFIG_HASH]
    mirror.ClearField("status")
    if node_uid:
        mirror.metadata.ownerReferences.add(apiVersion="v1", kind="Node",
                                            name=static.spec.nodeName, uid=node_uid,
                                            controller=True)
    return mirror
