"""The real kubectl against `pilothouse up`: the everyday commands work as against Kubernetes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MANIFESTS, Cluster


@pytest.fixture
def ns(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("_", "-").lower()[:50].strip("-")
    cluster.kubectl("create", "namespace", name)
    return name


def test_versions_and_resources(cluster: Cluster) -> None:
    out = cluster.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "32")
    resources = cluster.kubectl("api-resources").stdout
    assert "deployments" in resources and "deploy" in resources
    versions = cluster.kubectl("api-versions").stdout.split()
    assert {"v1", "apps/v1", "batch/v1", "coordination.k8s.io/v1"} <= set(versions)


def test_apply_multi_document_manifest_twice(cluster: Cluster, ns: str) -> None:
    out = cluster.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "app.yaml")).stdout
    assert "deployment.apps/nginx-deployment created" in out
    assert "service/my-service created" in out
    again = cluster.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "app.yaml")).stdout
    assert again.count("unchanged") == 4, again
    secret = json.loads(cluster.kubectl("get", "-n", ns, "secret", "db-credentials",
                                        "-o", "json").stdout)
    assert set(secret["data"]) == {"username", "password"}
    # stringData is write-only: merged into data by the server.
    cluster.kubectl("create", "-n", ns, "secret", "generic", "plain", "--from-literal=a=b")
    cluster.kubectl("patch", "-n", ns, "secret", "plain", "-p", '{"stringData":{"c":"d"}}')
    plain = json.loads(cluster.kubectl("get", "-n", ns, "secret", "plain", "-o", "json").stdout)
    assert plain["data"] == {"a": "Yg==", "c": "ZA=="} and "stringData" not in plain
    svc = json.loads(cluster.kubectl("get", "-n", ns, "svc", "my-service", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"].startswith("10.")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_get_output_formats(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "app.yaml"))
    wide = cluster.kubectl("get", "-n", ns, "deploy", "-o", "wide").stdout
    header = wide.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert "CONTAINERS" in header and "SELECTOR" in header
    assert "nginx-deployment" in wide
    as_yaml = cluster.kubectl("get", "-n", ns, "cm", "game-config", "-o", "yaml").stdout
    assert "enemies=aliens" in as_yaml and "kind: ConfigMap" in as_yaml
    jp = cluster.kubectl("get", "-n", ns, "deploy", "nginx-deployment", "-o",
                         "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert jp == "nginx:1.14.2"
    names = cluster.kubectl("get", "-n", ns, "all", "-o", "name").stdout.split()
    assert "deployment.apps/nginx-deployment" in names and "service/my-service" in names


def test_label_and_field_selectors(cluster: Cluster, ns: str) -> None:
    for name in ("a", "b"):
        cluster.kubectl("create", "-n", ns, "configmap", name, "--from-literal=k=v")
    cluster.kubectl("label", "-n", ns, "cm", "a", "tier=web")
    cluster.kubectl("annotate", "-n", ns, "cm", "b", "note=hello")
    assert cluster.kubectl("get", "-n", ns, "cm", "-l", "tier=web", "-o", "name"
                           ).stdout.split() == ["configmap/a"]
    assert cluster.kubectl("get", "-n", ns, "cm", "--field-selector", "metadata.name=b",
                           "-o", "name").stdout.split() == ["configmap/b"]
    note = cluster.kubectl("get", "-n", ns, "cm", "b", "-o",
                           "jsonpath={.metadata.annotations.note}").stdout
    assert note == "hello"


def test_patch_scale_edit_describe(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "app.yaml"))
    d = ("-n", ns, "deploy", "nginx-deployment")
    cluster.kubectl("scale", *d, "--replicas=5")
    cluster.kubectl("patch", *d, "--type=json", "-p",
                    '[{"op":"add","path":"/spec/minReadySeconds","value":3}]')
    cluster.kubectl("patch", *d, "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}')
    cluster.kubectl("patch", *d, "-p",
                    '{"spec":{"template":{"spec":{"containers":[{"name":"nginx",'
                    '"image":"nginx:1.16.1"}]}}}}')
    got = json.loads(cluster.kubectl("get", *d, "-o", "json").stdout)
    assert got["spec"]["replicas"] == 5
    assert got["spec"]["minReadySeconds"] == 3
    assert got["metadata"]["labels"]["m"] == "1"
    container = got["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.16.1"
    assert container["ports"][0]["containerPort"] == 80  # merged, not replaced
    # kubectl edit with a scripted editor.
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/lives=3/lives=9/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    cluster.kubectl("edit", "-n", ns, "cm", "game-config", env={"EDITOR": str(editor)})
    data = cluster.kubectl("get", "-n", ns, "cm", "game-config", "-o",
                           "jsonpath={.data.game\\.properties}").stdout
    assert "lives=9" in data
    described = cluster.kubectl("describe", *d).stdout
    assert "Replicas:" in described and "nginx:1.16.1" in described


def test_diff_reports_changes(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "app.yaml"))
    same = cluster.kubectl("diff", "-n", ns, "-f", str(MANIFESTS / "app.yaml"), check=False)
    assert same.returncode == 0, same.stderr
    changed = tmp_path / "app.yaml"
    changed.write_text((MANIFESTS / "app.yaml").read_text().replace("replicas: 3",
                                                                     "replicas: 4"))
    diff = cluster.kubectl("diff", "-n", ns, "-f", str(changed), check=False)
    assert diff.returncode == 1, diff.stderr
    assert "+  replicas: 4" in diff.stdout


def test_watch_streams_changes(cluster: Cluster, ns: str) -> None:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    watch = subprocess.Popen(["/usr/bin/kubectl", "get", "-n", ns, "cm", "-w",
                              "--output-watch-events", "--request-timeout=30s"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        cluster.kubectl("create", "-n", ns, "configmap", "watched", "--from-literal=a=b")
        assert watch.stdout is not None
        header = watch.stdout.readline().split()
        assert header == ["EVENT", "NAME", "DATA", "AGE"]
        for line in watch.stdout:
            if line.split()[:2] == ["ADDED", "watched"]:
                break
        cluster.kubectl("delete", "-n", ns, "cm", "watched")
        for line in watch.stdout:
            if line.split()[:2] == ["DELETED", "watched"]:
                break
        else:
            raise AssertionError("no DELETED event")
    finally:
        watch.kill()
        watch.wait()


def _wait(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        time.sleep(0.25)


def test_delete_cascade_modes(cluster: Cluster, ns: str) -> None:
    """background / foreground / orphan, carried out by the garbage collector."""

    def replicasets(app: str) -> list[dict[str, Any]]:
        out = cluster.kubectl("get", "rs", "-n", ns, "-l", f"app={app}", "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    for app in ("bg", "fg", "orphan"):
        cluster.kubectl("create", "deployment", "-n", ns, app, "--image=busybox",
                        "--replicas=0")
        _wait(lambda a=app: len(replicasets(a)) == 1, f"{app}'s ReplicaSet")
    cluster.kubectl("delete", "-n", ns, "deploy", "orphan", "--cascade=orphan")
    _wait(lambda: not replicasets("orphan")[0]["metadata"].get("ownerReferences"),
          "the orphaned ReplicaSet released")
    assert cluster.kubectl("get", "-n", ns, "deploy", "orphan", check=False).returncode == 1
    cluster.kubectl("delete", "-n", ns, "deploy", "fg", "--cascade=foreground")
    assert replicasets("fg") == []  # foreground: dependents go before the owner
    cluster.kubectl("delete", "-n", ns, "deploy", "bg", "--cascade=background")
    _wait(lambda: replicasets("bg") == [], "background deletion of the ReplicaSet")


def test_explain(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pods.spec.containers").stdout
    assert "KIND:       Pod" in out
    assert "image" in out and "livenessProbe" in out


def test_errors_are_statuses(cluster: Cluster, ns: str) -> None:
    missing = cluster.kubectl("get", "-n", ns, "deploy", "nope", check=False)
    assert missing.returncode == 1
    assert 'deployments.apps "nope" not found' in missing.stderr
    bad = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False, input=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndataa:\n  a: b\n"))
    assert bad.returncode == 1
    assert "dataa" in bad.stderr
