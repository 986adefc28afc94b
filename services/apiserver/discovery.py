"""API discovery documents: /api, /apis, per group-version lists, aggregated v2, /version.

kubectl 1.32 first asks for the aggregated form (apidiscovery.k8s.io/v2
``APIGroupDiscoveryList``: every group, version, resource and subresource in
two requests) and falls back to the legacy per-group documents. Both are built
from the ``KindRegistry`` and cached until it changes.
"""

from __future__ import annotations

import platform
from typing import Any

from pilothouse import KUBERNETES_VERSION, __version__
from pilothouse.api.kinds import Kind, KindRegistry

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# subresource -> (group, version, kind of the response; "" = the parent kind), verbs
SUBRESOURCES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "status": ("", "", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "binding": ("", "v1", "Binding", ("create",)),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "log": ("", "", "", ("get",)),
    "exec": ("", "v1", "PodExecOptions", ("create", "get")),
    "attach": ("", "v1", "PodAttachOptions", ("create", "get")),
    "portforward": ("", "v1", "PodPortForwardOptions", ("create", "get")),
    "proxy": ("", "v1", "", ("create", "delete", "get", "patch", "update")),
    "ephemeralcontainers": ("", "", "", ("get", "patch", "update")),
    "resize": ("", "", "", ("get", "patch", "update")),
    "finalize": ("", "", "", ("update",)),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
    "approval": ("", "", "", ("get", "patch", "update")),
}
PROXY_KINDS = {"pods": "PodProxyOptions", "nodes": "NodeProxyOptions",
               "services": "ServiceProxyOptions"}


def version_info() -> dict[str, str]:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"{KUBERNETES_VERSION}+pilothouse.{__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": f"linux/{arch}",
    }


def _sub_kind(kind: Kind, sub: str) -> tuple[str, str, str]:
    group, version, kind_name, _ = SUBRESOURCES.get(sub, ("", "", "", ()))
    if sub == "proxy":
        kind_name = PROXY_KINDS.get(kind.plural, "")
    if not kind_name:
        return kind.group, kind.version, kind.kind
    return group, version or kind.version, kind_name


def _sub_verbs(sub: str) -> list[str]:
    return list(SUBRESOURCES.get(sub, ("", "", "", ("get",)))[3])


def resource_list(kinds: KindRegistry, group: str, version: str) -> dict[str, Any]:
    """The legacy APIResourceList of one group-version."""
    resources: list[dict[str, Any]] = []
    for kind in sorted(kinds.in_group_version(group, version), key=lambda k: k.plural):
        entry: dict[str, Any] = {
            "name": kind.plural,
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": list(kind.verbs),
        }
        if kind.short_names:
            entry["shortNames"] = list(kind.short_names)
        if kind.categories:
            entry["categories"] = list(kind.categories)
        resources.append(entry)
        for sub in kind.subresources:
            sub_group, sub_version, sub_kind = _sub_kind(kind, sub)
            sub_entry: dict[str, Any] = {
                "name": f"{kind.plural}/{sub}",
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": sub_kind,
                "verbs": _sub_verbs(sub),
            }
            if sub_group != kind.group:
                sub_entry["group"] = sub_group
            if sub_version != kind.version:
                sub_entry["version"] = sub_version
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                        "serverAddress": server_address}],
    }


def _group_doc(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(kinds: KindRegistry) -> dict[str, Any]:
    groups = [
        _group_doc(group, versions)
        for group, versions in sorted(kinds.groups().items(), key=lambda gv: _group_order(gv[0]))
        if group
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(kinds: KindRegistry, group: str) -> dict[str, Any] | None:
    versions = kinds.groups().get(group)
    if not versions or not group:
        return None
    doc = _group_doc(group, versions)
    doc.update(kind="APIGroup", apiVersion="v1")
    return doc


def _group_order(group: str) -> tuple[int, str]:
    # Kubernetes lists the built-in groups before extension groups.
    return (0 if "." not in group or group.endswith(".k8s.io") else 1, group)


def _aggregated_resource(kind: Kind) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": kind.plural,
        "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.singular,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    subs = []
    for sub in kind.subresources:
        group, version, sub_kind = _sub_kind(kind, sub)
        subs.append({
            "subresource": sub,
            "responseKind": {"group": group, "version": version, "kind": sub_kind},
            "verbs": _sub_verbs(sub),
        })
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(kinds: KindRegistry, *, legacy: bool) -> dict[str, Any]:
    """The APIGroupDiscoveryList of /api (legacy=True: the core group) or /apis."""
    items = []
    for group, versions in sorted(kinds.groups().items(), key=lambda gv: _group_order(gv[0])):
        if (group == "") != legacy:
            continue
        version_docs = []
        for version in versions:
            resources = [_aggregated_resource(k) for k in
                         sorted(kinds.in_group_version(group, version), key=lambda k: k.plural)]
            version_docs.append({"version": version, "resources": resources,
                                 "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None},
                      "versions": version_docs})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}
