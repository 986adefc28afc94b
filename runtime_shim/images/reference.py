"""Image references, normalised as the kubelet and containerd do (pure).

``busybox`` → ``docker.io/library/busybox:latest``; ``localhost:5000/x`` keeps
its registry; ``name@sha256:…`` is a digest reference; a bare
``sha256:<64 hex>`` is an image ID, not a reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


class BadReference(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"

    @property
    def tagged(self) -> str:
        return f"{self.name}:{self.tag or 'latest'}"


def is_image_id(text: str) -> bool:
    return bool(_DIGEST.match(text))


def parse(text: str) -> Reference:
    """Parse and normalise a reference; raises :class:`BadReference` with the reason."""
    if not text or text != text.strip():
        raise BadReference(f"invalid image reference {text!r}")
    rest, digest = text, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise BadReference(f"invalid digest in image reference {text!r}")
    tag = ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise BadReference(f"invalid tag {tag!r} in image reference {text!r}")
    parts = rest.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0], parts[1:]
    else:
        registry, path = DEFAULT_REGISTRY, parts
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = ["library", *path]
    for component in path:
        if not _NAME_COMPONENT.match(component):
            raise BadReference(f"invalid repository name in image reference {text!r}")
    if not tag and not digest:
        tag = "latest"
    return Reference(registry, "/".join(path), tag, digest)
