"""Helm as a real Go client of pilothouse: install, list, upgrade, rollback, uninstall.

Helm (``.venv/bin/helm``, from the ``helm-binary`` package in the ``dev`` extra) talks
to the apiserver with client-go's typed clients: discovery, server-side dry runs of
its manifests, and its release records as Secrets, written and deleted with
``application/vnd.kubernetes.protobuf`` bodies.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import Cluster

HELM = Path(sys.executable).parent / "helm"

CHART = {
    "Chart.yaml": """\
apiVersion: v2
name: hello
description: a ConfigMap and a Deployment of the local busybox image
version: 0.1.0
appVersion: "1.0"
""",
    "values.yaml": """\
message: hello
replicas: 1
""",
    "templates/configmap.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  labels:
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  message: {{ .Values.message | quote }}
""",
    "templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-app
  labels:
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .Release.Name }}
      annotations:
        checksum/config: {{ .Values.message | sha256sum }}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "exec sleep 3600"]
        env:
        - name: MESSAGE
          valueFrom:
            configMapKeyRef:
              name: {{ .Release.Name }}-config
              key: message
""",
}


class Helm:
    """``helm`` against the cluster, with its caches and config in a temporary home."""

    def __init__(self, cluster: Cluster, home: Path) -> None:
        self.cluster = cluster
        self.env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig),
                        HELM_CACHE_HOME=str(home / "cache"),
                        HELM_CONFIG_HOME=str(home / "config"),
                        HELM_DATA_HOME=str(home / "data"))

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(HELM), *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


def wait_until(check: Callable[[], Any], what: str, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        time.sleep(0.25)


def kubectl_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def decode_release(secret: dict[str, Any]) -> dict[str, Any]:
    """Helm's release record: base64 (Secret data) of base64 of gzipped JSON."""
    inner = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    release: dict[str, Any] = json.loads(gzip.decompress(inner))
    return release


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    root = tmp_path / "hello"
    for name, text in CHART.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def helm(cluster: Cluster, tmp_path: Path) -> Helm:
    return Helm(cluster, tmp_path / "helm-home")


def test_install_list_upgrade_rollback_uninstall(cluster: Cluster, helm: Helm,
                                                 chart: Path) -> None:
    ns = "helm-lifecycle"
    # install: Helm creates the namespace, applies the chart and waits for the
    # Deployment's pods to be ready (they really run, on this machine's kubelet).
    helm("install", "demo", str(chart), "-n", ns, "--create-namespace",
         "--wait", "--timeout", "150s")
    [release] = helm.json("list", "-n", ns)
    assert (release["name"], release["namespace"], release["revision"], release["status"],
            release["chart"]) == ("demo", ns, "1", "deployed", "hello-0.1.0")
    config = kubectl_json(cluster, "get", "configmap", "-n", ns, "demo-config")
    assert config["data"] == {"message": "hello"}
    deploy = kubectl_json(cluster, "get", "deployment", "-n", ns, "demo-app")
    assert deploy["status"]["readyReplicas"] == 1
    # The release record is a Secret of Helm's own type, labelled as Helm lists it.
    record = kubectl_json(cluster, "get", "secret", "-n", ns, "sh.helm.release.v1.demo.v1")
    assert record["type"] == "helm.sh/release.v1"
    labels = record["metadata"]["labels"]
    assert {k: labels[k] for k in ("name", "owner", "status", "version")} == {
        "name": "demo", "owner": "helm", "status": "deployed", "version": "1"}
    stored = decode_release(record)
    assert (stored["name"], stored["version"], stored["info"]["status"]) == ("demo", 1,
                                                                             "deployed")

    # upgrade: a changed value reaches the ConfigMap and (through the checksum
    # annotation) rolls the Deployment; two replicas become ready.
    helm("upgrade", "demo", str(chart), "-n", ns, "--set", "message=bye", "--set", "replicas=2",
         "--wait", "--timeout", "150s")
    assert helm.json("get", "values", "demo", "-n", ns) == {"message": "bye", "replicas": 2}
    assert kubectl_json(cluster, "get", "configmap", "-n", ns, "demo-config")["data"] == \
        {"message": "bye"}
    deploy = kubectl_json(cluster, "get", "deployment", "-n", ns, "demo-app")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["status"]["readyReplicas"] == 2
    history = helm.json("history", "demo", "-n", ns)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"),
                                                                (2, "deployed")]

    # rollback to revision 1: a new revision 3 with revision 1's values.
    helm("rollback", "demo", "1", "-n", ns, "--wait", "--timeout", "150s")
    history = helm.json("history", "demo", "-n", ns)
    assert [(h["revision"], h["status"]) for h in history] == [
        (1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert history[2]["description"] == "Rollback to 1"
    assert kubectl_json(cluster, "get", "configmap", "-n", ns, "demo-config")["data"] == \
        {"message": "hello"}
    assert kubectl_json(cluster, "get", "deployment", "-n", ns, "demo-app")["spec"][
        "replicas"] == 1
    wait_until(lambda: kubectl_json(cluster, "get", "deployment", "-n", ns, "demo-app")
               ["status"].get("replicas") == 1, "the rolled-back Deployment at one replica")

    # uninstall: the chart's objects and every release record are deleted.
    out = helm("uninstall", "demo", "-n", ns, "--wait", "--timeout", "150s").stdout
    assert out.strip() == 'release "demo" uninstalled'
    assert helm.json("list", "-n", ns, "--all") == []
    assert kubectl_json(cluster, "get", "secrets", "-n", ns, "-l", "owner=helm")["items"] == []
    gone = cluster.kubectl("get", "configmap,deployment", "-n", ns, "demo-config", "demo-app",
                           "--ignore-not-found", "-o", "name").stdout
    assert gone == ""


def test_upgrade_install_is_idempotent_and_failures_are_recorded(cluster: Cluster, helm: Helm,
                                                                  chart: Path) -> None:
    ns = "helm-failures"
    cluster.kubectl("create", "namespace", ns)
    helm("upgrade", "--install", "idem", str(chart), "-n", ns, "--set", "replicas=0")
    helm("upgrade", "--install", "idem", str(chart), "-n", ns, "--set", "replicas=0")
    assert [h["revision"] for h in helm.json("history", "idem", "-n", ns)] == [1, 2]
    status = helm.json("status", "idem", "-n", ns)
    assert (status["version"], status["info"]["status"]) == (2, "deployed")

    # An object the apiserver rejects: the error reaches Helm, which records a
    # failed revision and keeps the last good one's objects.
    bad = helm("upgrade", "idem", str(chart), "-n", ns, "--set", "replicas=-1", check=False)
    assert bad.returncode != 0
    assert "replicas" in bad.stderr
    history = helm.json("history", "idem", "-n", ns)
    assert [(h["revision"], h["status"]) for h in history] == [
        (1, "superseded"), (2, "deployed"), (3, "failed")]
    assert kubectl_json(cluster, "get", "deployment", "-n", ns, "idem-app")["spec"][
        "replicas"] == 0
    helm("uninstall", "idem", "-n", ns)
    assert kubectl_json(cluster, "get", "secrets", "-n", ns, "-l", "owner=helm")["items"] == []


CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "pilothouse"


def test_pilothouse_chart_objects_pass_the_apiservers_validation(cluster: Cluster,
                                                                  helm: Helm) -> None:
    """The repository's own chart, rendered by Helm, is accepted object by object by
    pilothouse's apiserver in a server-side dry run (no pod starts: the images are not
    on this machine), and ``helm install --dry-run=server`` prints its NOTES."""
    ns = "helm-chart-dry-run"
    cluster.kubectl("create", "namespace", ns)
    rendered = helm("template", "ph", str(CHART_DIR), "-n", ns, "--set", "node.enabled=true",
                    "--set", "grafanaDashboard.enabled=true").stdout
    applied = cluster.kubectl("apply", "-n", ns, "--dry-run=server", "-o", "name", "-f", "-",
                              input=rendered).stdout.split()
    assert sorted(applied) == sorted([
        "configmap/ph-pilothouse-dashboard",
        "service/ph-pilothouse-apiserver", "service/ph-pilothouse-apiserver-headless",
        "service/ph-pilothouse-scheduler", "service/ph-pilothouse-controller-manager",
        "service/ph-pilothouse-kubelet",
        "statefulset.apps/ph-pilothouse-apiserver", "deployment.apps/ph-pilothouse-scheduler",
        "deployment.apps/ph-pilothouse-controller-manager", "daemonset.apps/ph-pilothouse-node",
    ])
    # A dry run leaves nothing behind.
    left = cluster.kubectl("get", "statefulsets,deployments,daemonsets,services", "-n", ns,
                           "-o", "name").stdout
    assert left == ""
    out = helm("install", "ph", str(CHART_DIR), "-n", ns, "--dry-run=server").stdout
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl -n helm-chart-dry-run port-forward svc/ph-pilothouse-apiserver 6443:6443" \
        in notes
    assert "PersistentVolumeClaim data-ph-pilothouse-apiserver-0" in notes
    assert helm.json("list", "-n", ns, "--all") == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def probe(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0


def test_chart_command_lines_run_and_answer_their_probes(tmp_path: Path) -> None:
    """The control plane as the chart runs it, minus Kubernetes: the apiserver,
    scheduler and controller-manager started with the exact args the chart renders
    (only ports, the data folder and the apiserver's address moved to this machine),
    each answering the readiness and liveness probes the chart declares."""
    rendered = subprocess.run(
        [str(HELM), "template", "ph", str(CHART_DIR), "-n", "control"], capture_output=True,
        text=True, check=True, timeout=60).stdout
    workloads = {d["metadata"]["name"].removeprefix("ph-pilothouse-"): d
                 for d in yaml.safe_load_all(rendered)
                 if d and d["kind"] in ("StatefulSet", "Deployment")}
    assert set(workloads) == {"apiserver", "scheduler", "controller-manager"}
    rest, grpc = free_port(), free_port()
    ports = {"apiserver": rest, "scheduler": free_port(), "controller-manager": free_port()}
    moved = {
        "--port": lambda name: str(ports[name]),
        "--grpc-port": lambda name: str(grpc),
        "--data-dir": lambda name: str(tmp_path / "data"),
        "--master": lambda name: f"grpc://127.0.0.1:{grpc}",
        "--apiserver": lambda name: f"grpc://127.0.0.1:{grpc}",
        "--bind-address": lambda name: "127.0.0.1",
        "--identity": lambda name: "ph-pilothouse-controller-manager-0",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("apiserver", "scheduler", "controller-manager"):
            [c] = workloads[name]["spec"]["template"]["spec"]["containers"]
            argv = []
            for arg in c["args"]:
                flag, eq, _value = arg.partition("=")
                argv.append(f"{flag}={moved[flag](name)}" if eq and flag in moved else arg)
            log = (tmp_path / f"{name}.log").open("wb")
            processes.append(subprocess.Popen([sys.executable, "-m", "pilothouse.cli", *argv],
                                              stdout=log, stderr=subprocess.STDOUT))
            container_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for kind in ("readinessProbe", "livenessProbe"):
                get = c[kind]["httpGet"]
                assert container_ports[get["port"]] == int(flags_of(c)["--port"])
                url = f"http://127.0.0.1:{ports[name]}{get['path']}"
                wait_until(lambda url=url: probe(url) == 200,
                           f"{name} {kind} {get['path']} answers 200", within=60)
        # The controller-manager leads under the identity the chart gives it.
        lease = httpx.get(f"http://127.0.0.1:{rest}/apis/coordination.k8s.io/v1/namespaces/"
                          "kube-system/leases/kube-controller-manager", timeout=5).json()
        assert lease["spec"]["holderIdentity"] == "ph-pilothouse-controller-manager-0"
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def flags_of(c: dict[str, Any]) -> dict[str, str]:
    return dict(arg.partition("=")[::2] for arg in c["args"][1:])
