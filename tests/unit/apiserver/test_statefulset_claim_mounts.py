"""A StatefulSet's containers may mount its volumeClaimTemplates by name (the
controller gives every pod those claims as volumes), as in Kubernetes; a mount of a
name that is neither a volume nor a claim is still refused."""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.apiserver.test_strategies import TEMPLATE, as_dict, create, fields

CLAIM = {"metadata": {"name": "data"}, "spec": {
    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


def statefulset(mounts: list[str], volumes: list[str] | None = None) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    container = template["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": n, "mountPath": f"/mnt/{n}"} for n in mounts]
    template["spec"]["volumes"] = [{"name": n, "emptyDir": {}} for n in volumes or []]
    return {"metadata": {"name": "db", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "db",
                     "template": template, "volumeClaimTemplates": [copy.deepcopy(CLAIM)]}}


def test_mount_of_a_claim_template_is_valid_and_not_added_to_the_template() -> None:
    obj, causes = create("statefulsets.apps", statefulset(["data"], volumes=["tmp"]))
    assert causes == []
    # Validation saw the claim as a volume; the stored template is unchanged.
    assert [v["name"] for v in as_dict(obj)["spec"]["template"]["spec"]["volumes"]] == ["tmp"]


def test_mount_of_an_unknown_name_is_still_not_found() -> None:
    _, causes = create("statefulsets.apps", statefulset(["data", "logs"]))
    assert fields(causes) == ["spec.template.spec.containers[0].volumeMounts[1].name"]
    assert causes[0].message == 'Not found: "logs"'


def test_a_deployment_has_no_claims_to_mount() -> None:
    doc = statefulset(["data"])
    doc["spec"].pop("volumeClaimTemplates")
    doc["spec"].pop("serviceName")
    _, causes = create("deployments.apps", doc)
    assert fields(causes) == ["spec.template.spec.containers[0].volumeMounts[0].name"]
