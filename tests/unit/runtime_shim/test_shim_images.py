"""Building images from busybox-static, the OCI layout, the image store."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.images.store import ImageError, ImageStore, apply_layer


@pytest.fixture(scope="module")
def busybox_image() -> oci.Image:
    return oci.build_busybox()


def test_build_is_reproducible(busybox_image: oci.Image) -> None:
    again = oci.build_busybox()
    assert again.config_digest == busybox_image.config_digest
    assert again.manifest_digest == busybox_image.manifest_digest


def test_config_has_diff_ids_of_the_uncompressed_layer(busybox_image: oci.Image) -> None:
    manifest = json.loads(busybox_image.blobs[busybox_image.manifest_digest])
    config = json.loads(busybox_image.blobs[manifest["config"]["digest"]])
    layer = busybox_image.blobs[manifest["layers"][0]["digest"]]
    assert manifest["layers"][0]["mediaType"] == oci.MEDIA_LAYER_GZIP
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    assert config["rootfs"]["diff_ids"] == [diff_id]
    assert config["config"]["Cmd"] == ["sh"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert names["bin/busybox"].isfile()
    assert names["bin/sh"].issym() and names["bin/sh"].linkname == "/bin/busybox"
    assert names["tmp"].mode == 0o1777


def test_pause_image_sleeps_forever() -> None:
    pause = oci.build_pause()
    config = json.loads(pause.blobs[pause.config_digest])
    assert config["config"]["Entrypoint"] == ["/bin/sleep", "infinity"]
    assert pause.tag == "registry.k8s.io/pause:3.10"


def test_oci_layout_tarball_imports(tmp_path: Path, busybox_image: oci.Image) -> None:
    archive = tmp_path / "bb.tar"
    oci.write_oci_layout(archive, [busybox_image])
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json"} <= names
    store = ImageStore(tmp_path / "store")
    [record] = store.import_archive(archive)
    assert record.id == busybox_image.config_digest
    assert record.repo_tags == ["docker.io/library/busybox:latest"]
    assert store.resolve("busybox") == record
    assert store.resolve(record.id) == record
    assert store.resolve(record.id.removeprefix("sha256:")[:12]) == record
    assert store.resolve(record.repo_digests[0]) == record
    rootfs = store.rootfs(record)
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"
    assert (rootfs / "bin" / "busybox").stat().st_mode & 0o111
    assert store.config(record).cmd == ["sh"]
    assert store.remove(record.id)
    assert store.resolve("busybox") is None
    assert not rootfs.exists()
    assert list((tmp_path / "store" / "blobs" / "sha256").iterdir()) == []
    assert not store.remove(record.id)


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_docker_archive_imports(tmp_path: Path) -> None:
    layer = _tar([("etc", None), ("etc/motd", b"hi\n")])
    config = json.dumps({"config": {"Cmd": ["cat", "/etc/motd"]}, "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    manifest = json.dumps([{"Config": "cfg.json", "RepoTags": ["example.com/motd:1"],
                            "Layers": ["l1/layer.tar"]}]).encode()
    archive = tmp_path / "docker.tar"
    archive.write_bytes(_tar([("cfg.json", config), ("l1", None), ("l1/layer.tar", layer),
                              ("manifest.json", manifest)]))
    store = ImageStore(tmp_path / "store")
    [record] = store.import_archive(archive)
    assert record.repo_tags == ["example.com/motd:1"]
    assert (store.rootfs(record) / "etc" / "motd").read_text() == "hi\n"


def test_whiteouts_delete_lower_files(tmp_path: Path) -> None:
    lower = tmp_path / "lower.tar"
    lower.write_bytes(_tar([("a", None), ("a/keep", b"1"), ("a/gone", b"2"), ("d", None),
                            ("d/x", b"3")]))
    upper = tmp_path / "upper.tar"
    upper.write_bytes(_tar([("a/.wh.gone", b""), ("d", None), ("d/.wh..wh..opq", b""),
                            ("d/y", b"4")]))
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(lower, root)
    apply_layer(upper, root)
    assert sorted(p.name for p in (root / "a").iterdir()) == ["keep"]
    assert sorted(p.name for p in (root / "d").iterdir()) == ["y"]


@pytest.mark.parametrize("name", ["../evil", "a/../../evil"])
def test_members_escaping_the_root_are_refused(tmp_path: Path, name: str) -> None:
    layer = tmp_path / "bad.tar"
    layer.write_bytes(_tar([(name, b"x")]))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ImageError, match="escapes"):
        apply_layer(layer, root)
    assert not (tmp_path / "evil").exists()


def test_writes_through_a_symlinked_parent_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        f = tarfile.TarInfo("etc/passwd")
        f.size = 1
        tar.addfile(f, io.BytesIO(b"x"))
    layer = tmp_path / "l.tar"
    layer.write_bytes(buf.getvalue())
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ImageError, match="symlink"):
        apply_layer(layer, root)
    assert list(outside.iterdir()) == []


def test_diff_id_mismatch_is_an_error(tmp_path: Path) -> None:
    layer = tmp_path / "l.tar"
    layer.write_bytes(_tar([("f", b"1")]))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ImageError, match="diff_id"):
        apply_layer(layer, root, "sha256:" + "0" * 64)


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.tar"
    bogus.write_bytes(b"not a tar")
    with pytest.raises(ImageError, match="cannot read"):
        ImageStore(tmp_path / "s").import_archive(bogus)
    empty = tmp_path / "e.tar"
    empty.write_bytes(_tar([("hello", b"")]))
    with pytest.raises(ImageError, match="neither"):
        ImageStore(tmp_path / "s").import_archive(empty)


def test_image_cli_build_import_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pilothouse.cli import main

    assert main(["image", "build", "pause", "--output", str(tmp_path / "p.tar")]) == 0
    assert main(["image", "import", str(tmp_path / "p.tar"), "--root", str(tmp_path)]) == 0
    assert main(["image", "list", "--root", str(tmp_path)]) == 0
    assert "registry.k8s.io/pause:3.10" in capsys.readouterr().out
    assert main(["image", "import", str(tmp_path / "missing.tar"), "--root",
                 str(tmp_path)]) == 1
    assert "no such file" in capsys.readouterr().err
