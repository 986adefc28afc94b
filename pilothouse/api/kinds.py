"""Every kind the cluster serves, declared once.

A ``Kind`` says where a resource lives in the API (group, version, plural,
scope), what it is called (kind, singular, short names, categories), what can
be done with it (verbs, subresources) and which protobuf message holds it.
Clients, the registry, REST paths, storage keys and discovery are all generic
over these declarations (lightkube's ``core/resource.py`` does the same).

Custom resources are declared at run time from a CustomResourceDefinition:
their ``message`` is None and their objects are JSON, validated by the CRD's
schema. The ``KindRegistry`` holds both.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from google.protobuf.message import Message

from pilothouse.gen.k8s.admissionregistration.v1 import admissionregistration_pb2 as admreg_v1
from pilothouse.gen.k8s.apiextensions.v1 import apiextensions_pb2 as apiext_v1
from pilothouse.gen.k8s.apps.v1 import apps_pb2 as apps_v1
from pilothouse.gen.k8s.authentication.v1 import authentication_pb2 as authn_v1
from pilothouse.gen.k8s.authorization.v1 import authorization_pb2 as authz_v1
from pilothouse.gen.k8s.autoscaling.v1 import autoscaling_pb2 as autoscaling_v1
from pilothouse.gen.k8s.autoscaling.v2 import autoscaling_pb2 as autoscaling_v2
from pilothouse.gen.k8s.batch.v1 import batch_pb2 as batch_v1
from pilothouse.gen.k8s.certificates.v1 import certificates_pb2 as certificates_v1
from pilothouse.gen.k8s.coordination.v1 import coordination_pb2 as coordination_v1
from pilothouse.gen.k8s.core.v1 import core_pb2 as core_v1
from pilothouse.gen.k8s.discovery.v1 import discovery_pb2 as discovery_v1
from pilothouse.gen.k8s.events.v1 import events_pb2 as events_v1
from pilothouse.gen.k8s.flowcontrol.v1 import flowcontrol_pb2 as flowcontrol_v1
from pilothouse.gen.k8s.networking.v1 import networking_pb2 as networking_v1
from pilothouse.gen.k8s.node.v1 import node_pb2 as node_v1
from pilothouse.gen.k8s.policy.v1 import policy_pb2 as policy_v1
from pilothouse.gen.k8s.rbac.v1 import rbac_pb2 as rbac_v1
from pilothouse.gen.k8s.scheduling.v1 import scheduling_pb2 as scheduling_v1
from pilothouse.gen.k8s.storage.v1 import storage_pb2 as storage_v1

STANDARD_VERBS: tuple[str, ...] = (
    "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
)
CREATE_ONLY: tuple[str, ...] = ("create",)


@dataclass(frozen=True, slots=True)
class Kind:
    """One served resource: ``group/version`` ``plural`` of kind ``kind``."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    message: type[Message] | None
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[str, ...] = ()
    singular: str = ""
    # Where objects live in storage (below /registry/); defaults from group+plural.
    storage_resource: str = ""

    def __post_init__(self) -> None:
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())
        if not self.storage_resource:
            legacy = self.message is not None
            prefix = self.plural if legacy else f"{self.group}/{self.plural}"
            object.__setattr__(self, "storage_resource", prefix)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def resource(self) -> str:
        """``plural`` qualified by group as kubectl writes it (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def is_custom(self) -> bool:
        return self.message is None

    def storage_prefix(self, namespace: str | None = None) -> str:
        """The storage key prefix of all objects (or one namespace's), ending in '/'."""
        base = f"/registry/{self.storage_resource}/"
        if namespace and self.namespaced:
            return f"{base}{namespace}/"
        return base

    def storage_key(self, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"/registry/{self.storage_resource}/{namespace}/{name}"
        return f"/registry/{self.storage_resource}/{name}"

    def new(self) -> Message:
        if self.message is None:
            raise TypeError(f"{self.kind} is a custom resource: its objects are JSON")
        return self.message()


def _k(
    group: str,
    version: str,
    message: type[Message],
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    verbs: tuple[str, ...] = STANDARD_VERBS,
    sub: tuple[str, ...] = (),
    kind: str = "",
) -> Kind:
    return Kind(
        group=group,
        version=version,
        kind=kind or message.DESCRIPTOR.name,
        plural=plural,
        namespaced=namespaced,
        message=message,
        short_names=short,
        categories=categories,
        verbs=verbs,
        subresources=sub,
    )


ALL = ("all",)
CLUSTER_READ = ("get", "list", "watch")

BUILTIN_KINDS: tuple[Kind, ...] = (
    # core/v1
    _k("", "v1", core_v1.Binding, "bindings", verbs=CREATE_ONLY),
    _k("", "v1", core_v1.ComponentStatus, "componentstatuses", namespaced=False, short=("cs",),
       verbs=("get", "list")),
    _k("", "v1", core_v1.ConfigMap, "configmaps", short=("cm",)),
    _k("", "v1", core_v1.Endpoints, "endpoints", short=("ep",)),
    _k("", "v1", core_v1.Event, "events", short=("ev",)),
    _k("", "v1", core_v1.LimitRange, "limitranges", short=("limits",)),
    _k("", "v1", core_v1.Namespace, "namespaces", namespaced=False, short=("ns",),
       verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
       sub=("status", "finalize")),
    _k("", "v1", core_v1.Node, "nodes", namespaced=False, short=("no",), sub=("status", "proxy")),
    _k("", "v1", core_v1.PersistentVolumeClaim, "persistentvolumeclaims", short=("pvc",),
       sub=("status",)),
    _k("", "v1", core_v1.PersistentVolume, "persistentvolumes", namespaced=False, short=("pv",),
       sub=("status",)),
    _k("", "v1", core_v1.Pod, "pods", short=("po",), categories=ALL,
       sub=("status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy",
            "ephemeralcontainers", "resize")),
    _k("", "v1", core_v1.PodTemplate, "podtemplates"),
    _k("", "v1", core_v1.ReplicationController, "replicationcontrollers", short=("rc",),
       categories=ALL, sub=("status", "scale")),
    _k("", "v1", core_v1.ResourceQuota, "resourcequotas", short=("quota",), sub=("status",)),
    _k("", "v1", core_v1.Secret, "secrets"),
    _k("", "v1", core_v1.ServiceAccount, "serviceaccounts", short=("sa",), sub=("token",)),
    _k("", "v1", core_v1.Service, "services", short=("svc",), categories=ALL,
       sub=("status", "proxy")),
    # admissionregistration.k8s.io/v1
    _k("admissionregistration.k8s.io", "v1", admreg_v1.MutatingWebhookConfiguration,
       "mutatingwebhookconfigurations", namespaced=False, categories=("api-extensions",)),
    _k("admissionregistration.k8s.io", "v1", admreg_v1.ValidatingWebhookConfiguration,
       "validatingwebhookconfigurations", namespaced=False, categories=("api-extensions",)),
    _k("admissionregistration.k8s.io", "v1", admreg_v1.ValidatingAdmissionPolicy,
       "validatingadmissionpolicies", namespaced=False, categories=("api-extensions",),
       sub=("status",)),
    _k("admissionregistration.k8s.io", "v1", admreg_v1.ValidatingAdmissionPolicyBinding,
       "validatingadmissionpolicybindings", namespaced=False, categories=("api-extensions",)),
    # apiextensions.k8s.io/v1
    _k("apiextensions.k8s.io", "v1", apiext_v1.CustomResourceDefinition,
       "customresourcedefinitions", namespaced=False, short=("crd", "crds"),
       categories=("api-extensions",), sub=("status",)),
    # apps/v1
    _k("apps", "v1", apps_v1.ControllerRevision, "controllerrevisions"),
    _k("apps", "v1", apps_v1.DaemonSet, "daemonsets", short=("ds",), categories=ALL,
       sub=("status",)),
    _k("apps", "v1", apps_v1.Deployment, "deployments", short=("deploy",), categories=ALL,
       sub=("status", "scale")),
    _k("apps", "v1", apps_v1.ReplicaSet, "replicasets", short=("rs",), categories=ALL,
       sub=("status", "scale")),
    _k("apps", "v1", apps_v1.StatefulSet, "statefulsets", short=("sts",), categories=ALL,
       sub=("status", "scale")),
    # authentication.k8s.io/v1
    _k("authentication.k8s.io", "v1", authn_v1.SelfSubjectReview, "selfsubjectreviews",
       namespaced=False, verbs=CREATE_ONLY),
    _k("authentication.k8s.io", "v1", authn_v1.TokenReview, "tokenreviews", namespaced=False,
       verbs=CREATE_ONLY),
    # authorization.k8s.io/v1
    _k("authorization.k8s.io", "v1", authz_v1.LocalSubjectAccessReview,
       "localsubjectaccessreviews", verbs=CREATE_ONLY),
    _k("authorization.k8s.io", "v1", authz_v1.SelfSubjectAccessReview,
       "selfsubjectaccessreviews", namespaced=False, verbs=CREATE_ONLY),
    _k("authorization.k8s.io", "v1", authz_v1.SelfSubjectRulesReview, "selfsubjectrulesreviews",
       namespaced=False, verbs=CREATE_ONLY),
    _k("authorization.k8s.io", "v1", authz_v1.SubjectAccessReview, "subjectaccessreviews",
       namespaced=False, verbs=CREATE_ONLY),
    # autoscaling
    _k("autoscaling", "v2", autoscaling_v2.HorizontalPodAutoscaler, "horizontalpodautoscalers",
       short=("hpa",), categories=ALL, sub=("status",)),
    # batch/v1
    _k("batch", "v1", batch_v1.CronJob, "cronjobs", short=("cj",), categories=ALL,
       sub=("status",)),
    _k("batch", "v1", batch_v1.Job, "jobs", categories=ALL, sub=("status",)),
    # certificates.k8s.io/v1
    _k("certificates.k8s.io", "v1", certificates_v1.CertificateSigningRequest,
       "certificatesigningrequests", namespaced=False, short=("csr",),
       sub=("status", "approval")),
    # coordination.k8s.io/v1
    _k("coordination.k8s.io", "v1", coordination_v1.Lease, "leases"),
    # discovery.k8s.io/v1
    _k("discovery.k8s.io", "v1", discovery_v1.EndpointSlice, "endpointslices"),
    # events.k8s.io/v1
    # Kubernetes serves one store through both Event APIs by conversion; until
    # that lands, events.k8s.io Events are stored apart from core Events.
    dataclasses.replace(_k("events.k8s.io", "v1", events_v1.Event, "events", short=("ev",)),
                        storage_resource="events.k8s.io/events"),
    # flowcontrol.apiserver.k8s.io/v1
    _k("flowcontrol.apiserver.k8s.io", "v1", flowcontrol_v1.FlowSchema, "flowschemas",
       namespaced=False, sub=("status",)),
    _k("flowcontrol.apiserver.k8s.io", "v1", flowcontrol_v1.PriorityLevelConfiguration,
       "prioritylevelconfigurations", namespaced=False, sub=("status",)),
    # networking.k8s.io/v1
    _k("networking.k8s.io", "v1", networking_v1.IngressClass, "ingressclasses",
       namespaced=False),
    _k("networking.k8s.io", "v1", networking_v1.Ingress, "ingresses", short=("ing",),
       sub=("status",)),
    _k("networking.k8s.io", "v1", networking_v1.NetworkPolicy, "networkpolicies",
       short=("netpol",)),
    # node.k8s.io/v1
    _k("node.k8s.io", "v1", node_v1.RuntimeClass, "runtimeclasses", namespaced=False),
    # policy/v1
    _k("policy", "v1", policy_v1.PodDisruptionBudget, "poddisruptionbudgets", short=("pdb",),
       sub=("status",)),
    # rbac.authorization.k8s.io/v1
    _k("rbac.authorization.k8s.io", "v1", rbac_v1.ClusterRoleBinding, "clusterrolebindings",
       namespaced=False),
    _k("rbac.authorization.k8s.io", "v1", rbac_v1.ClusterRole, "clusterroles",
       namespaced=False),
    _k("rbac.authorization.k8s.io", "v1", rbac_v1.RoleBinding, "rolebindings"),
    _k("rbac.authorization.k8s.io", "v1", rbac_v1.Role, "roles"),
    # scheduling.k8s.io/v1
    _k("scheduling.k8s.io", "v1", scheduling_v1.PriorityClass, "priorityclasses",
       namespaced=False, short=("pc",)),
    # storage.k8s.io/v1
    _k("storage.k8s.io", "v1", storage_v1.CSIDriver, "csidrivers", namespaced=False),
    _k("storage.k8s.io", "v1", storage_v1.CSINode, "csinodes", namespaced=False),
    _k("storage.k8s.io", "v1", storage_v1.CSIStorageCapacity, "csistoragecapacities"),
    _k("storage.k8s.io", "v1", storage_v1.StorageClass, "storageclasses", namespaced=False,
       short=("sc",)),
    _k("storage.k8s.io", "v1", storage_v1.VolumeAttachment, "volumeattachments",
       namespaced=False, sub=("status",)),
)

# Served versions per group, preferred first (one version each for now: objects
# are stored in their served version, so serving two needs conversion).
PREFERRED_VERSIONS: dict[str, str] = {}

# Kinds that appear only inside other requests (subresources, options), never
# stored: their messages are needed by the codec and the REST layer.
SCALE_MESSAGE = autoscaling_v1.Scale
EVICTION_MESSAGE = policy_v1.Eviction


@dataclass
class KindRegistry:
    """All served kinds, looked up by resource, by kind and by short name.

    Thread-safe for the rare writes (CRDs established or removed); lookups are
    plain dict reads on the request path.
    """

    _by_resource: dict[tuple[str, str, str], Kind] = field(default_factory=dict)
    _by_kind: dict[tuple[str, str, str], Kind] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def builtin(cls) -> KindRegistry:
        registry = cls()
        registry.add_all(BUILTIN_KINDS)
        return registry

    def add_all(self, kinds: Iterable[Kind]) -> None:
        for kind in kinds:
            self.add(kind)

    def add(self, kind: Kind) -> None:
        with self._lock:
            self._by_resource[(kind.group, kind.version, kind.plural)] = kind
            self._by_kind[(kind.group, kind.version, kind.kind)] = kind

    def remove(self, kind: Kind) -> None:
        with self._lock:
            self._by_resource.pop((kind.group, kind.version, kind.plural), None)
            self._by_kind.pop((kind.group, kind.version, kind.kind), None)

    def by_resource(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_resource.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Kind | None:
        group, _, version = api_version.rpartition("/")
        return self._by_kind.get((group, version, kind))

    def by_short_name(self, short: str) -> list[Kind]:
        """The kinds answering to ``short`` (``po``, ``deploy``; ``ev`` names two)."""
        return [k for k in self if short in k.short_names]

    def __iter__(self) -> Iterator[Kind]:
        return iter(list(self._by_resource.values()))

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, preferred version first."""
        out: dict[str, list[str]] = {}
        for kind in self:
            versions = out.setdefault(kind.group, [])
            if kind.version not in versions:
                versions.append(kind.version)
        for group, versions in out.items():
            preferred = PREFERRED_VERSIONS.get(group)
            if preferred in versions:
                versions.remove(preferred)
                versions.insert(0, preferred)
        return out

    def in_group_version(self, group: str, version: str) -> list[Kind]:
        return [k for k in self if k.group == group and k.version == version]
