"""The manifest corpus round-trips: YAML -> message -> JSON equals the input,
and so do protobuf bytes and storage values made from the message.

The corpus (tests/data/manifests/*.yaml) is written in the form Kubernetes
prints objects, so equality is exact; the normalisations Kubernetes applies
to other spellings are tested in test_codec.py.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from pilothouse.api.kinds import BUILTIN_KINDS, Kind, KindRegistry
from pilothouse.api.serialization import (
    decode_protobuf,
    decode_value,
    encode_protobuf,
    encode_value,
    load_documents,
    load_manifest,
    object_from_dict,
    object_to_dict,
)

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "manifests"
REGISTRY = KindRegistry.builtin()


def _corpus() -> list[Any]:
    cases = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for index, doc in enumerate(load_documents(path.read_text())):
            name = (doc.get("metadata") or {}).get("name") or f"#{index}"
            cases.append(pytest.param(doc, id=f"{path.stem}:{doc['kind']}/{name}"))
    return cases


CORPUS = _corpus()


def _kind(doc: dict[str, Any]) -> Kind:
    kind = REGISTRY.by_kind(doc["apiVersion"], doc["kind"])
    assert kind is not None, f"{doc['apiVersion']}/{doc['kind']} is not registered"
    return kind


@pytest.mark.parametrize("doc", CORPUS)
def test_yaml_to_message_to_json_is_the_input(doc: dict[str, Any]) -> None:
    kind = _kind(doc)
    msg = object_from_dict(kind, doc)
    assert object_to_dict(kind, msg) == doc


@pytest.mark.parametrize("doc", CORPUS)
def test_protobuf_bytes_round_trip_to_the_same_json(doc: dict[str, Any]) -> None:
    kind = _kind(doc)
    msg = object_from_dict(kind, doc)
    again = kind.new()
    again.ParseFromString(msg.SerializeToString())
    assert again == msg
    assert object_to_dict(kind, again) == doc
    framed = decode_protobuf(kind, encode_protobuf(kind, msg))
    assert object_to_dict(kind, framed) == doc
    stored = decode_value(kind, encode_value(kind, msg))
    assert object_to_dict(kind, stored) == doc


def test_the_corpus_covers_every_builtin_kind() -> None:
    seen = {(p.values[0]["apiVersion"], p.values[0]["kind"]) for p in CORPUS}
    missing = {(k.api_version, k.kind) for k in BUILTIN_KINDS} - seen
    assert not missing, f"no manifest for {sorted(missing)}"


def test_every_corpus_file_loads_as_one_manifest() -> None:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        objects = load_manifest(REGISTRY, path.read_text())
        assert len(objects) == len(list(load_documents(path.read_text()))) >= 1, path.name


def _message_names(msg: Any, out: set[str]) -> set[str]:
    out.add(msg.DESCRIPTOR.full_name)
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _message_names(item, out)
        elif fd.is_repeated:
            for item in value:
                _message_names(item, out)
        else:
            _message_names(value, out)
    return out


@pytest.mark.parametrize(
    "type_name",
    [
        # The nested types the corpus must exercise (a corpus edit that drops one fails).
        "Probe", "ExecAction", "HTTPGetAction", "TCPSocketAction", "GRPCAction",
        "NodeAffinity", "PodAffinity", "PodAntiAffinity", "WeightedPodAffinityTerm",
        "PreferredSchedulingTerm", "Toleration", "TopologySpreadConstraint",
        "PodSecurityContext", "SecurityContext", "Capabilities", "SeccompProfile",
        "AppArmorProfile", "EnvFromSource", "ConfigMapKeySelector", "SecretKeySelector",
        "ObjectFieldSelector", "ResourceFieldSelector", "ResourceRequirements", "Lifecycle",
        "LifecycleHandler", "SleepAction", "EmptyDirVolumeSource", "ConfigMapVolumeSource",
        "SecretVolumeSource", "ProjectedVolumeSource", "ServiceAccountTokenProjection",
        "DownwardAPIProjection", "HostPathVolumeSource", "PersistentVolumeClaimVolumeSource",
        "DownwardAPIVolumeSource", "CSIVolumeSource", "EphemeralVolumeSource",
        "PersistentVolumeClaimTemplate", "NFSVolumeSource", "ImageVolumeSource",
        "ContainerStatus", "ContainerStateTerminated", "ContainerStateWaiting", "NodeStatus",
        "NodeCondition", "NodeAddress", "PodFailurePolicyRule",
        "StatefulSetPersistentVolumeClaimRetentionPolicy",
        "HPAScalingRules", "JSONSchemaProps", "ManagedFieldsEntry",
    ],
)
def test_the_corpus_exercises(type_name: str) -> None:
    assert type_name in _corpus_message_types()


@functools.cache
def _corpus_message_types() -> frozenset[str]:
    names: set[str] = set()
    for param in CORPUS:
        doc = param.values[0]
        _message_names(object_from_dict(_kind(doc), doc), names)
    return frozenset(n.rsplit(".", 1)[-1] for n in names)
