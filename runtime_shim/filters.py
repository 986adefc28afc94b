"""CRI list filters (pure): ID prefix, state, sandbox and label selectors."""

from __future__ import annotations

from collections.abc import Mapping

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every selector key is present with the same value (the CRI's equality selector)."""
    return all(labels.get(k) == v for k, v in selector.items())


def sandbox_matches(flt: cri.PodSandboxFilter | None, item: cri.PodSandbox) -> bool:
    if flt is None:
        return True
    if flt.id and not item.id.startswith(flt.id):
        return False
    if flt.HasField("state") and item.state != flt.state.state:
        return False
    return labels_match(flt.label_selector, item.labels)


def container_matches(flt: cri.ContainerFilter | None, item: cri.Container) -> bool:
    if flt is None:
        return True
    if flt.id and not item.id.startswith(flt.id):
        return False
    if flt.pod_sandbox_id and not item.pod_sandbox_id.startswith(flt.pod_sandbox_id):
        return False
    if flt.HasField("state") and item.state != flt.state.state:
        return False
    return labels_match(flt.label_selector, item.labels)
