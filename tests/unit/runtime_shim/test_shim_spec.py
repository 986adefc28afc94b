"""Command, environment and user merge of image config and CRI config (Kubernetes' rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.errors import InvalidArgument
from pilothouse.runtime_shim.spec import merge_command, merge_env, process_spec, resolve_user


@pytest.mark.parametrize(("entrypoint", "cmd", "command", "args", "expected"), [
    (["/ep"], ["c1"], [], [], ["/ep", "c1"]),
    (["/ep"], ["c1"], ["/x"], [], ["/x"]),
    (["/ep"], ["c1"], ["/x"], ["a"], ["/x", "a"]),
    (["/ep"], ["c1"], [], ["a", "b"], ["/ep", "a", "b"]),
    ([], ["sh"], [], [], ["sh"]),
    ([], ["sh"], [], ["-c", "true"], ["-c", "true"]),
], ids=["image-only", "command-drops-cmd", "command-args", "args-replace-cmd", "cmd-only",
        "args-without-entrypoint"])
def test_merge_command(entrypoint: list[str], cmd: list[str], command: list[str],
                       args: list[str], expected: list[str]) -> None:
    assert merge_command(entrypoint, cmd, command, args) == expected


def test_container_env_overrides_image_env_in_place() -> None:
    merged = merge_env(["PATH=/bin", "A=1", "B=2"], [("A", "x"), ("C", "3")])
    assert merged == ["PATH=/bin", "A=x", "B=2", "C=3"]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    return tmp_path


def security(**kw: object) -> cri.LinuxContainerSecurityContext:
    ctx = cri.LinuxContainerSecurityContext()
    if "uid" in kw:
        ctx.run_as_user.value = int(kw["uid"])  # type: ignore[call-overload]
    if "gid" in kw:
        ctx.run_as_group.value = int(kw["gid"])  # type: ignore[call-overload]
    if "name" in kw:
        ctx.run_as_username = str(kw["name"])
    return ctx


@pytest.mark.parametrize(("image_user", "ctx", "expected"), [
    ("", security(), (0, 0)),
    ("app", security(), (1000, 1001)),
    ("1000", security(), (1000, 1001)),
    ("4242", security(), (4242, 0)),
    ("app:staff", security(), (1000, 50)),
    ("app", security(uid=7), (7, 0)),
    ("", security(uid=1000, gid=9), (1000, 9)),
    ("", security(name="app"), (1000, 1001)),
], ids=["default-root", "image-name", "image-uid-known", "image-uid-unknown", "user-group",
        "runAsUser-wins", "runAsGroup", "username"])
def test_resolve_user(rootfs: Path, image_user: str, ctx: cri.LinuxContainerSecurityContext,
                      expected: tuple[int, int]) -> None:
    uid, gid, _ = resolve_user(rootfs, image_user, ctx)
    assert (uid, gid) == expected


def test_unknown_user_name_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="nobody-here"):
        resolve_user(rootfs, "nobody-here", security())


def test_process_spec_needs_a_command(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="no command"):
        process_spec(rootfs=rootfs, entrypoint=[], cmd=[], image_env=[], image_working_dir="",
                     image_user="", config=cri.ContainerConfig())


def test_process_spec_working_dir(rootfs: Path) -> None:
    config = cri.ContainerConfig(args=["true"])
    spec = process_spec(rootfs=rootfs, entrypoint=[], cmd=["sh"], image_env=["PATH=/bin"],
                        image_working_dir="/srv", image_user="", config=config)
    assert (spec.argv, spec.cwd, spec.env) == (["true"], "/srv", ["PATH=/bin"])
    config.working_dir = "/data"
    spec = process_spec(rootfs=rootfs, entrypoint=[], cmd=["sh"], image_env=[],
                        image_working_dir="/srv", image_user="", config=config)
    assert spec.cwd == "/data"
