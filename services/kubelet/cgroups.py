"""Pod-level cgroups, as Kubernetes' kubelet lays them out with the cgroupfs driver (pure
paths, plus removal).

With a cgroup root configured (``--cgroup-root``), every pod sandbox is asked to live in
``<root>/kubepods/pod<uid>`` (Guaranteed), ``<root>/kubepods/burstable/pod<uid>`` or
``<root>/kubepods/besteffort/pod<uid>`` through ``LinuxPodSandboxConfig.cgroup_parent``;
the runtime creates it and puts the sandbox's and containers' cgroups under it. That is
what gives a CRI runtime its pod-level accounting (containerd's pod sandbox stats read
that cgroup). The runtime leaves a parent it was given alone, so the kubelet removes the
pod's cgroup once the pod's sandboxes are gone. Without a root ("", the default) the
runtime places pods itself and no cgroup is named.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet.podstatus import qos_class

CGROUP_FS = Path("/sys/fs/cgroup")


def pod_cgroup(root: str, pod: core_pb2.Pod) -> str:
    """The pod's cgroup parent ("" when no root is configured)."""
    if not root:
        return ""
    base = "/" + "/".join(p for p in (root.strip("/"), "kubepods") if p)
    qos = qos_class(pod)
    if qos == "Guaranteed":
        return f"{base}/pod{pod.metadata.uid}"
    return f"{base}/{qos.lower()}/pod{pod.metadata.uid}"


def all_pod_cgroups(root: str, uid: str) -> list[str]:
    """Every place a pod with this UID may have its cgroup (for pods whose spec is lost)."""
    if not root:
        return []
    base = "/" + "/".join(p for p in (root.strip("/"), "kubepods") if p)
    return [f"{base}/pod{uid}", f"{base}/burstable/pod{uid}", f"{base}/besteffort/pod{uid}"]


def remove_cgroup(path: str, fs: Path = CGROUP_FS) -> bool:
    """Remove ``path`` (and anything left under it) in every hierarchy, deepest first; True
    when it is gone everywhere (a cgroup still holding processes stays)."""
    if not path or not fs.is_dir():
        return True
    rel = path.strip("/")
    if not rel:
        return True
    tops = [fs / rel] + [h / rel for h in fs.iterdir() if h.is_dir() and not h.is_symlink()]
    gone = True
    for top in tops:
        if not top.is_dir():
            continue
        dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: -len(p.parts))
        for d in dirs:
            with contextlib.suppress(OSError):
                d.rmdir()
        gone = gone and not top.exists()
    return gone


def pod_uids_with_cgroups(root: str, fs: Path = CGROUP_FS) -> dict[str, list[str]]:
    """pod UID -> its cgroup paths under ``root`` (in any hierarchy)."""
    out: dict[str, set[str]] = {}
    if not root or not fs.is_dir():
        return {}
    base = "/".join(p for p in (root.strip("/"), "kubepods") if p)
    hierarchies = [fs] + [h for h in fs.iterdir() if h.is_dir() and not h.is_symlink()]
    for h in hierarchies:
        for qos_dir in ("", "burstable", "besteffort"):
            parent = h / base / qos_dir if qos_dir else h / base
            with contextlib.suppress(OSError):
                for entry in parent.iterdir():
                    if entry.name.startswith("pod") and entry.is_dir():
                        rel = "/" + "/".join(p for p in (base, qos_dir, entry.name) if p)
                        out.setdefault(entry.name[3:], set()).add(rel)
    return {uid: sorted(paths) for uid, paths in out.items()}
