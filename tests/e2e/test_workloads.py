"""Pods really run: `pilothouse up` with its kubelet and runtime shim, driven by kubectl."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import Cluster

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: hello
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo hello from $(hostname); exec sleep 3600"]
"""


def wait_until(check: object, what: str, within: float = 60.0) -> object:
    deadline = time.monotonic() + within
    while True:
        result = check()  # type: ignore[operator]
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        time.sleep(0.25)


def pods(cluster: Cluster, ns: str, selector: str) -> list[dict[str, object]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


def running(items: list[dict[str, object]]) -> list[str]:
    return [p["metadata"]["name"] for p in items  # type: ignore[index]
            if p.get("status", {}).get("phase") == "Running"  # type: ignore[union-attr]
            and not p["metadata"].get("deletionTimestamp")]  # type: ignore[index]


@pytest.fixture
def ns(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    name = "wl-" + request.node.name.replace("_", "-").lower()[:40].strip("-")
    cluster.kubectl("create", "namespace", name)
    return name


def test_deployment_pods_run_and_log(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    names = wait_until(lambda: len(running(pods(cluster, ns, "app=hello"))) == 2 and
                       running(pods(cluster, ns, "app=hello")), "2 pods running")
    assert isinstance(names, list)
    wait_until(lambda: cluster.kubectl("get", "deploy", "-n", ns, "hello", "-o",
                                       "jsonpath={.status.readyReplicas}").stdout == "2",
               "deployment ready", within=30)
    log = wait_until(lambda: cluster.kubectl("logs", "-n", ns, names[0]).stdout, "a log line")
    assert log == f"hello from {names[0]}\n"
    pod = json.loads(cluster.kubectl("get", "pod", "-n", ns, names[0], "-o", "json").stdout)
    assert pod["status"]["podIP"].startswith("10.")
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    # A deleted pod of the Deployment is replaced.
    cluster.kubectl("delete", "pod", "-n", ns, names[0], "--wait=false")
    wait_until(lambda: len(running(pods(cluster, ns, "app=hello"))) == 2 and
               names[0] not in running(pods(cluster, ns, "app=hello")), "a replacement pod")


def test_failed_pod_reports_its_exit_code(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("run", "-n", ns, "once", "--image=busybox", "--restart=Never",
                    "--image-pull-policy=IfNotPresent", "--command", "--",
                    "sh", "-c", "echo bye; exit 3")
    wait_until(lambda: cluster.kubectl("get", "pod", "-n", ns, "once", "-o",
                                       "jsonpath={.status.phase}").stdout == "Failed",
               "pod failed")
    state = json.loads(cluster.kubectl("get", "pod", "-n", ns, "once", "-o", "json").stdout)
    terminated = state["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert cluster.kubectl("logs", "-n", ns, "once").stdout == "bye\n"


def test_namespace_deletion_empties_it(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "doomed")
    cluster.kubectl("create", "-n", "doomed", "configmap", "c", "--from-literal=a=b")
    cluster.kubectl("delete", "namespace", "doomed", "--timeout=60s")
    gone = cluster.kubectl("get", "namespace", "doomed", check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr
