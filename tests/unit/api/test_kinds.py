"""The kind declarations and the registry that holds built-in and custom kinds."""

from __future__ import annotations

import pytest

from pilothouse.api.kinds import BUILTIN_KINDS, STANDARD_VERBS, Kind, KindRegistry
from pilothouse.gen.k8s.core.v1 import core_pb2

KINDS = pytest.mark.parametrize("kind", BUILTIN_KINDS, ids=lambda k: f"{k.api_version}/{k.kind}")

ISSUE_KINDS = [
    ("v1", k) for k in ("Pod", "Node", "Service", "Endpoints", "Namespace", "ConfigMap",
                        "Secret", "Event", "ServiceAccount", "PersistentVolume",
                        "PersistentVolumeClaim", "LimitRange", "ResourceQuota", "Binding",
                        "ReplicationController", "PodTemplate")
] + [
    ("apps/v1", k) for k in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet",
                             "ControllerRevision")
] + [
    ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("coordination.k8s.io/v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice"), ("scheduling.k8s.io/v1", "PriorityClass"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ("events.k8s.io/v1", "Event"),
    ("policy/v1", "PodDisruptionBudget"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("authorization.k8s.io/v1", "SubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
    ("authentication.k8s.io/v1", "TokenReview"),
    ("authentication.k8s.io/v1", "SelfSubjectReview"),
]


@pytest.mark.parametrize(("api_version", "kind"), ISSUE_KINDS)
def test_the_kinds_the_issue_asks_for_are_served(api_version: str, kind: str) -> None:
    found = KindRegistry.builtin().by_kind(api_version, kind)
    assert found is not None and found.message is not None


@KINDS
def test_each_kind_names_its_message(kind: Kind) -> None:
    assert kind.message is not None
    assert kind.message.DESCRIPTOR.name == kind.kind
    assert "metadata" in kind.message.DESCRIPTOR.fields_by_name
    assert kind.plural == kind.plural.lower() and kind.singular == kind.kind.lower()
    assert set(kind.verbs) <= set(STANDARD_VERBS)
    assert not kind.is_custom


def test_declarations_are_unique() -> None:
    gvks = [(k.api_version, k.kind) for k in BUILTIN_KINDS]
    resources = [(k.group, k.version, k.plural) for k in BUILTIN_KINDS]
    storage = [k.storage_resource for k in BUILTIN_KINDS]
    assert len(set(gvks)) == len(gvks)
    assert len(set(resources)) == len(resources)
    assert len(set(storage)) == len(storage)


@pytest.mark.parametrize(
    ("api_version", "kind", "namespaced", "short", "subresources"),
    [
        ("v1", "Pod", True, ("po",), ("status", "binding", "eviction", "log")),
        ("v1", "Node", False, ("no",), ("status",)),
        ("v1", "Namespace", False, ("ns",), ("status", "finalize")),
        ("apps/v1", "Deployment", True, ("deploy",), ("status", "scale")),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition", False, ("crd", "crds"),
         ("status",)),
        ("batch/v1", "CronJob", True, ("cj",), ("status",)),
        ("policy/v1", "PodDisruptionBudget", True, ("pdb",), ("status",)),
    ],
)
def test_well_known_declarations(api_version: str, kind: str, namespaced: bool,
                                 short: tuple[str, ...], subresources: tuple[str, ...]) -> None:
    found = KindRegistry.builtin().by_kind(api_version, kind)
    assert found is not None
    assert found.namespaced is namespaced
    assert found.short_names == short
    assert set(subresources) <= set(found.subresources)


def test_review_kinds_and_binding_are_create_only() -> None:
    registry = KindRegistry.builtin()
    for api_version, kind in [("v1", "Binding"), ("authentication.k8s.io/v1", "TokenReview"),
                              ("authorization.k8s.io/v1", "SubjectAccessReview")]:
        found = registry.by_kind(api_version, kind)
        assert found is not None and found.verbs == ("create",)


def test_storage_keys() -> None:
    registry = KindRegistry.builtin()
    pods = registry.by_resource("", "v1", "pods")
    nodes = registry.by_resource("", "v1", "nodes")
    deployments = registry.by_resource("apps", "v1", "deployments")
    assert pods is not None and nodes is not None and deployments is not None
    assert pods.storage_key("default", "web") == "/registry/pods/default/web"
    assert pods.storage_prefix("default") == "/registry/pods/default/"
    assert pods.storage_prefix() == "/registry/pods/"
    assert nodes.storage_key("", "n1") == "/registry/nodes/n1"
    assert nodes.storage_prefix("ignored") == "/registry/nodes/"
    assert deployments.storage_key("a", "b") == "/registry/deployments/a/b"
    assert deployments.resource == "deployments.apps" and pods.resource == "pods"
    assert deployments.list_kind == "DeploymentList"


def test_custom_kinds_are_added_and_removed_at_run_time() -> None:
    registry = KindRegistry.builtin()
    crontab = Kind(group="stable.example.com", version="v1", kind="CronTab", plural="crontabs",
                   namespaced=True, message=None, short_names=("ct",))
    registry.add(crontab)
    assert crontab.is_custom and crontab.singular == "crontab"
    assert registry.by_kind("stable.example.com/v1", "CronTab") is crontab
    assert registry.by_resource("stable.example.com", "v1", "crontabs") is crontab
    assert registry.by_short_name("ct") == [crontab]
    assert crontab.storage_key("ns", "a") == "/registry/stable.example.com/crontabs/ns/a"
    assert "stable.example.com" in registry.groups()
    assert registry.in_group_version("stable.example.com", "v1") == [crontab]
    with pytest.raises(TypeError, match="custom resource"):
        crontab.new()
    registry.remove(crontab)
    assert registry.by_kind("stable.example.com/v1", "CronTab") is None
    assert "stable.example.com" not in registry.groups()


def test_lookups() -> None:
    registry = KindRegistry.builtin()
    assert registry.by_kind("v1", "Nope") is None
    assert registry.by_resource("", "v1", "pod") is None
    assert {k.api_version for k in registry.by_short_name("ev")} == {"v1", "events.k8s.io/v1"}
    assert registry.groups()[""] == ["v1"]
    assert sorted(registry.groups()["autoscaling"]) == ["v2"]
    pod = registry.by_kind("v1", "Pod")
    assert pod is not None and isinstance(pod.new(), core_pb2.Pod)
    assert len(list(registry)) == len(BUILTIN_KINDS)
