"""Image reference normalisation."""

from __future__ import annotations

import pytest

from pilothouse.runtime_shim.images.reference import BadReference, is_image_id, parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "expected"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("me/app:v1", "docker.io/me/app:v1"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("localhost:5000/x/y", "localhost:5000/x/y:latest"),
    ("127.0.0.1:5000/app:dev", "127.0.0.1:5000/app:dev"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    ("index.docker.io/library/alpine", "docker.io/library/alpine:latest"),
])
def test_parse_normalises(text: str, expected: str) -> None:
    assert str(parse(text)) == expected


@pytest.mark.parametrize("text", ["", "Busybox", "a b", "x@sha256:zz", "x:bad tag", " busybox"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(BadReference):
        parse(text)


def test_image_ids_are_not_references() -> None:
    assert is_image_id(DIGEST)
    assert not is_image_id("busybox")
