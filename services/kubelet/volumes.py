"""Pod volumes on the node, under ``<root>/pods/<uid>/volumes/<plugin>/<name>``.

emptyDir (``medium: Memory`` is a tmpfs with ``sizeLimit`` when we may mount),
configMap, secret, downwardAPI and projected volumes are written with
Kubernetes' atomic writer layout: the files live in a timestamped
``..<time>`` directory, ``..data`` is a symlink to it, and each top-level
name is a symlink through ``..data``; an update writes a new directory and
swaps ``..data`` in one rename, so a reader never sees half an update.
hostPath checks (or creates) the path per its ``type``.

Volumes reach containers as CRI mounts (bind mounts by the runtime); the
kubelet also writes the pod's ``/etc/hosts`` and each container's
termination-log file here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.api.quantity import Quantity
from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import env as envlib

EMPTY_DIR = "kubernetes.io~empty-dir"
CONFIG_MAP = "kubernetes.io~configmap"
SECRET = "kubernetes.io~secret"
DOWNWARD_API = "kubernetes.io~downward-api"
PROJECTED = "kubernetes.io~projected"
DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume cannot be set up (``FailedMount``)."""


@dataclass
class VolumeSources:
    configmaps: dict[str, core_pb2.ConfigMap | None] = field(default_factory=dict)
    secrets: dict[str, core_pb2.Secret | None] = field(default_factory=dict)
    env: envlib.EnvSources = field(default_factory=envlib.EnvSources)


def referenced(pod: core_pb2.Pod) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) the pod's volumes need."""
    cms: set[str] = set()
    secs: set[str] = set()
    for v in pod.spec.volumes:
        src = v.volumeSource
        if src.HasField("configMap"):
            cms.add(src.configMap.localObjectReference.name)
        if src.HasField("secret"):
            secs.add(src.secret.secretName)
        if src.HasField("projected"):
            for p in src.projected.sources:
                if p.HasField("configMap"):
                    cms.add(p.configMap.localObjectReference.name)
                if p.HasField("secret"):
                    secs.add(p.secret.localObjectReference.name)
    return cms, secs


# -- the atomic writer -----------------------------------------------------------------------

Payload = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def _clean_path(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or path.startswith("/") or parts[0].startswith(".."):
        raise VolumeError(f"invalid path {path!r} in a volume")
    return "/".join(parts)


def _current(target: Path) -> Payload | None:
    data = target / "..data"
    if not data.is_symlink():
        return None
    base = target / os.readlink(data)
    out: Payload = {}
    for p in base.rglob("*"):
        if p.is_file():
            out[str(p.relative_to(base))] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
    return out


def write_atomic(target: Path, payload: Payload) -> bool:
    """Make ``target`` hold exactly ``payload``; False when it already did.

    Paths are relative and may not climb out (``VolumeError`` otherwise)."""
    payload = {_clean_path(rel): value for rel, value in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    if _current(target) == payload:
        return False
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + secrets.token_hex(4)
    new_dir = target / stamp
    new_dir.mkdir()
    for rel, (content, mode) in payload.items():
        path = new_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    data = target / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(stamp)
    os.replace(tmp, data)
    tops = {rel.split("/", 1)[0] for rel in payload}
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in tops and entry.is_symlink():
            entry.unlink()
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    if old and old != stamp:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


# -- payloads ---------------------------------------------------------------------------------


def _items_payload(data: dict[str, bytes], items: list[core_pb2.KeyToPath], default_mode: int,
                   what: str, optional: bool) -> Payload:
    out: Payload = {}
    if not items:
        for k, v in data.items():
            out[_clean_path(k)] = (v, default_mode)
        return out
    for item in items:
        if item.key not in data:
            if optional:
                continue
            raise VolumeError(f"configmap references non-existent config key: {item.key}"
                              if what == "configmap"
                              else f"references non-existent secret key: {item.key}")
        mode = item.mode if item.HasField("mode") else default_mode
        out[_clean_path(item.path)] = (data[item.key], mode)
    return out


def _cm_data(cm: core_pb2.ConfigMap) -> dict[str, bytes]:
    out = {k: v.encode() for k, v in cm.data.items()}
    out.update(dict(cm.binaryData))
    return out


def _secret_data(s: core_pb2.Secret) -> dict[str, bytes]:
    out = dict(s.data)
    out.update({k: v.encode() for k, v in s.stringData.items()})
    return out


def _downward_payload(pod: core_pb2.Pod, items: list[core_pb2.DownwardAPIVolumeFile],
                      default_mode: int, sources: envlib.EnvSources) -> Payload:
    out: Payload = {}
    for item in items:
        try:
            if item.HasField("fieldRef"):
                value = envlib.field_ref(pod, item.fieldRef.fieldPath, sources)
            elif item.HasField("resourceFieldRef"):
                container = pod.spec.containers[0] if pod.spec.containers else \
                    core_pb2.Container()
                value = envlib.resource_field_ref(pod, container, item.resourceFieldRef,
                                                  sources)
            else:
                continue
        except envlib.ConfigError as e:
            raise VolumeError(str(e)) from None
        mode = item.mode if item.HasField("mode") else default_mode
        out[_clean_path(item.path)] = (value.encode(), mode)
    return out


def volume_payload(pod: core_pb2.Pod, volume: core_pb2.Volume,
                   sources: VolumeSources) -> Payload | None:
    """The files of a configMap/secret/downwardAPI/projected volume (None for others)."""
    src = volume.volumeSource
    ns = pod.metadata.namespace
    if src.HasField("configMap"):
        c = src.configMap
        name = c.localObjectReference.name
        mode = c.defaultMode if c.HasField("defaultMode") else DEFAULT_MODE
        cm = sources.configmaps.get(name)
        if cm is None:
            if c.optional:
                return {}
            raise VolumeError(f'configmap "{name}" not found')
        return _items_payload(_cm_data(cm), list(c.items), mode, "configmap", c.optional)
    if src.HasField("secret"):
        s = src.secret
        mode = s.defaultMode if s.HasField("defaultMode") else DEFAULT_MODE
        secret = sources.secrets.get(s.secretName)
        if secret is None:
            if s.optional:
                return {}
            raise VolumeError(f'secret "{s.secretName}" not found')
        return _items_payload(_secret_data(secret), list(s.items), mode, "secret", s.optional)
    if src.HasField("downwardAPI"):
        d = src.downwardAPI
        mode = d.defaultMode if d.HasField("defaultMode") else DEFAULT_MODE
        return _downward_payload(pod, list(d.items), mode, sources.env)
    if src.HasField("projected"):
        pr = src.projected
        mode = pr.defaultMode if pr.HasField("defaultMode") else DEFAULT_MODE
        out: Payload = {}
        for p in pr.sources:
            if p.HasField("configMap"):
                name = p.configMap.localObjectReference.name
                cm = sources.configmaps.get(name)
                if cm is None:
                    if p.configMap.optional:
                        continue
                    raise VolumeError(f'configmap "{name}" not found')
                out.update(_items_payload(_cm_data(cm), list(p.configMap.items), mode,
                                          "configmap", p.configMap.optional))
            elif p.HasField("secret"):
                name = p.secret.localObjectReference.name
                secret = sources.secrets.get(name)
                if secret is None:
                    if p.secret.optional:
                        continue
                    raise VolumeError(f'secret "{name}" not found')
                out.update(_items_payload(_secret_data(secret), list(p.secret.items), mode,
                                          "secret", p.secret.optional))
            elif p.HasField("downwardAPI"):
                out.update(_downward_payload(pod, list(p.downwardAPI.items), mode,
                                             sources.env))
            elif p.HasField("serviceAccountToken"):
                # No token issuer yet: the path exists, empty, so mounts do not fail.
                path = _clean_path(p.serviceAccountToken.path or "token")
                out[path] = (b"", 0o600)
        del ns
        return out
    return None


class VolumeManager:
    def __init__(self, root: Path, *, can_mount: bool | None = None) -> None:
        self.root = root
        self.can_mount = os.geteuid() == 0 if can_mount is None else can_mount

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid

    def volume_dir(self, uid: str, plugin: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / plugin / name

    def setup(self, pod: core_pb2.Pod, sources: VolumeSources) -> dict[str, Path]:
        """Create or refresh every volume; name -> host path. Raises ``VolumeError``."""
        uid = pod.metadata.uid
        paths: dict[str, Path] = {}
        for volume in pod.spec.volumes:
            src = volume.volumeSource
            if src.HasField("emptyDir"):
                path = self.volume_dir(uid, EMPTY_DIR, volume.name)
                if not path.exists():
                    path.mkdir(parents=True, mode=0o777)
                    path.chmod(0o777)
                    if src.emptyDir.medium == "Memory" and self.can_mount:
                        size = ""
                        if src.emptyDir.HasField("sizeLimit") and src.emptyDir.sizeLimit.string:
                            size = f",size={Quantity(src.emptyDir.sizeLimit.string).value()}"
                        subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0777{size}",
                                        "tmpfs", str(path)], check=False, capture_output=True)
                paths[volume.name] = path
            elif src.HasField("hostPath"):
                paths[volume.name] = _host_path(src.hostPath)
            else:
                plugin = (CONFIG_MAP if src.HasField("configMap") else
                          SECRET if src.HasField("secret") else
                          DOWNWARD_API if src.HasField("downwardAPI") else
                          PROJECTED if src.HasField("projected") else "")
                if not plugin:
                    kind = next((f.name for f, _ in src.ListFields()), "unknown")
                    raise VolumeError(f"volume {volume.name!r}: {kind} volumes are not "
                                      "supported by this kubelet")
                payload = volume_payload(pod, volume, sources)
                path = self.volume_dir(uid, plugin, volume.name)
                write_atomic(path, payload or {})
                path.chmod(0o755)
                paths[volume.name] = path
        return paths

    def mounts(self, pod: core_pb2.Pod, container: core_pb2.Container,
               paths: dict[str, Path], env: dict[str, str]) -> list[cri.Mount]:
        out: list[cri.Mount] = []
        for vm in container.volumeMounts:
            base = paths.get(vm.name)
            if base is None:
                raise VolumeError(f"volume mount {vm.name!r} has no volume")
            host = base
            sub = vm.subPath or (envlib.expand(vm.subPathExpr, env) if vm.subPathExpr else "")
            if sub:
                host = base / _clean_path(sub)
                if not host.exists() and not host.is_symlink():
                    host.mkdir(parents=True, exist_ok=True)
                host = Path(os.path.realpath(host))
            src = _volume_by_name(pod, vm.name)
            readonly = vm.readOnly or (src is not None and any(
                src.volumeSource.HasField(f) for f in ("configMap", "secret", "downwardAPI",
                                                       "projected")))
            out.append(cri.Mount(container_path=vm.mountPath, host_path=str(host),
                                 readonly=readonly))
        return out

    def teardown_volumes(self, uid: str) -> None:
        """Unmount and remove the pod's volumes (its other files stay)."""
        volumes = self.pod_dir(uid) / "volumes"
        if not volumes.exists():
            return
        self._unmount_under(volumes)
        shutil.rmtree(volumes, ignore_errors=True)

    def _unmount_under(self, path: Path) -> None:
        if not self.can_mount:
            return
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mountpoint = line.split()[4]
            if mountpoint.startswith(str(path) + "/"):
                subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)

    def teardown(self, uid: str) -> None:
        pod_dir = self.pod_dir(uid)
        if not pod_dir.exists():
            return
        self._unmount_under(pod_dir)
        shutil.rmtree(pod_dir, ignore_errors=True)


def _volume_by_name(pod: core_pb2.Pod, name: str) -> core_pb2.Volume | None:
    for v in pod.spec.volumes:
        if v.name == name:
            return v
    return None


def _host_path(hp: core_pb2.HostPathVolumeSource) -> Path:
    path = Path(hp.path)
    kind = hp.type
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind == "Directory" and not path.is_dir():
        raise VolumeError(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise VolumeError(f"hostPath type check failed: {path} is not a file")
    elif kind == "Socket" and not (path.exists() and stat.S_ISSOCK(path.stat().st_mode)):
        raise VolumeError(f"hostPath type check failed: {path} is not a socket file")
    elif kind == "CharDevice" and not (path.exists() and stat.S_ISCHR(path.stat().st_mode)):
        raise VolumeError(f"hostPath type check failed: {path} is not a character device")
    elif kind == "BlockDevice" and not (path.exists() and stat.S_ISBLK(path.stat().st_mode)):
        raise VolumeError(f"hostPath type check failed: {path} is not a block device")
    elif not kind and not path.exists():
        # Kubernetes leaves an unset type unchecked; the runtime needs something to bind.
        path.mkdir(parents=True, exist_ok=True)
    return path


# -- /etc/hosts --------------------------------------------------------------------------------


def etc_hosts(pod: core_pb2.Pod, pod_ips: list[str], cluster_domain: str) -> str:
    lines = ["# Kubernetes-managed hosts file.",
             "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix",
             "fe00::1\tip6-allnodes",
             "fe00::2\tip6-allrouters"]
    hostname = pod.spec.hostname or pod.metadata.name
    for ip in pod_ips:
        if pod.spec.subdomain:
            fqdn = f"{hostname}.{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{cluster_domain}"
            lines.append(f"{ip}\t{fqdn}\t{hostname}")
        else:
            lines.append(f"{ip}\t{hostname}")
    if pod.spec.hostAliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for alias in pod.spec.hostAliases:
            lines.append(f"{alias.ip}\t" + "\t".join(alias.hostnames))
    return "\n".join(lines) + "\n"
