"""How a container's process is derived from its image and its CRI config (pure).

Kubernetes' rules (the same as Docker's and containerd's CRI plugin):

* ``command`` set → it replaces the image Entrypoint, and ``args`` replace Cmd
  (the image Cmd is dropped even when ``args`` is empty);
* only ``args`` set → image Entrypoint + ``args``;
* neither → image Entrypoint + image Cmd.
* Environment: the image's, then the container's; a container variable
  overrides an image variable of the same name, order of first appearance kept.
* Working directory: the container's, else the image's, else ``/``.
* User: ``run_as_user`` / ``run_as_group`` / ``run_as_username`` from the
  security context, else the image's ``User`` (``uid[:gid]`` or a name looked
  up in the image's /etc/passwd and /etc/group).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.errors import InvalidArgument


@dataclass
class ProcessSpec:
    argv: list[str]
    env: list[str]
    cwd: str
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)


def merge_command(
    entrypoint: Sequence[str], cmd: Sequence[str], command: Sequence[str], args: Sequence[str]
) -> list[str]:
    if command:
        return [*command, *args]
    if args:
        return [*entrypoint, *args]
    return [*entrypoint, *cmd]


def merge_env(image_env: Iterable[str], container_env: Iterable[tuple[str, str]]) -> list[str]:
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    for key, value in container_env:
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def _lookup(path: Path, name: str, field_index: int) -> tuple[int, int] | None:
    """(id, gid) of ``name`` in a passwd/group-style file; gid is -1 for group files."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":")
        if len(parts) > field_index and parts[0] == name:
            try:
                return int(parts[2]), int(parts[3]) if field_index >= 3 else -1
            except ValueError:
                return None
    return None


def resolve_user(
    rootfs: Path,
    image_user: str,
    security: cri.LinuxContainerSecurityContext,
) -> tuple[int, int, list[int]]:
    """(uid, gid, supplemental groups) for the container's process."""
    uid, gid = 0, 0
    user, group = "", ""
    if security.HasField("run_as_user"):
        user = str(security.run_as_user.value)
    elif security.run_as_username:
        user = security.run_as_username
    elif image_user:
        user, _, group = image_user.partition(":")
    if user:
        if user.lstrip("-").isdigit():
            uid = int(user)
            # a numeric user keeps its passwd entry's group if it has one, else group 0
            found = _lookup(rootfs / "etc" / "passwd", _name_of(rootfs, uid), 3)
            gid = found[1] if found else 0
        else:
            found = _lookup(rootfs / "etc" / "passwd", user, 3)
            if found is None:
                raise InvalidArgument(f"user {user!r} not found in the image's /etc/passwd")
            uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found_group = _lookup(rootfs / "etc" / "group", group, 2)
            if found_group is None:
                raise InvalidArgument(f"group {group!r} not found in the image's /etc/group")
            gid = found_group[0]
    if security.HasField("run_as_group"):
        gid = int(security.run_as_group.value)
    if uid < 0 or gid < 0:
        raise InvalidArgument("runAsUser and runAsGroup must not be negative")
    groups = [int(g) for g in security.supplemental_groups]
    return uid, gid, groups


def _name_of(rootfs: Path, uid: int) -> str:
    try:
        for line in (rootfs / "etc" / "passwd").read_text(errors="replace").splitlines():
            parts = line.split(":")
            if len(parts) > 3 and parts[2] == str(uid):
                return parts[0]
    except OSError:
        pass
    return ""


def process_spec(
    *,
    rootfs: Path,
    entrypoint: Sequence[str],
    cmd: Sequence[str],
    image_env: Sequence[str],
    image_working_dir: str,
    image_user: str,
    config: cri.ContainerConfig,
) -> ProcessSpec:
    argv = merge_command(entrypoint, cmd, config.command, config.args)
    if not argv:
        raise InvalidArgument("no command: the image has no Entrypoint or Cmd and the "
                              "container sets neither command nor args")
    env = merge_env(image_env, [(kv.key, kv.value) for kv in config.envs])
    cwd = config.working_dir or image_working_dir or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"working_dir {cwd!r} must be absolute")
    uid, gid, groups = resolve_user(rootfs, image_user, config.linux.security_context)
    return ProcessSpec(argv=argv, env=env, cwd=cwd, uid=uid, gid=gid, groups=groups)
