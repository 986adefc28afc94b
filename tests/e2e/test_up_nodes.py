"""``pilothouse up --nodes 2``: two real kubelets on this machine, each with its own
runtime shim in its own network namespace (eth0 on ``up``'s own bridge, a node IP, a
/24 of the pod CIDR). A Deployment with required pod anti-affinity puts one pod on
each node; both run with an IP from their node's slice, their logs come back through
the apiserver from each kubelet's server at its node IP, a pod reaches the pod on the
other node (routed through the host), and stopping ``up`` removes
the namespaces, links, routes, pods and processes.

One cluster for the module; the last test stops it. The first tests need no
cluster: the layout of the node network, and the flag combinations ``up`` refuses."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pilothouse.up import NodePlan, UsageError, plan_node_network
from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.test_up_runtimes import (
    mounts_under,
    netns_alive,
    pod_netns_inode,
    processes_mentioning,
)
from tests.e2e.test_workloads import pods, running, wait_until

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 2
  selector:
    matchLabels: {app: spread}
  template:
    metadata:
      labels: {app: spread}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {app: spread}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: main
        image: busybox
        imagePullPolicy: IfNotPresent
        command:
        - sh
        - -c
        - echo hello from $(hostname) on $(ip -4 -o addr show eth0 | awk '{print $4}');
          exec sleep 3600
"""


def test_node_network_layout() -> None:
    net = plan_node_network(count=2, pod_cidr="10.50.0.0/16", bridge="pilothouse0",
                            node_cidr=None, base_name="host")
    assert (net.bridge, net.gateway, net.prefixlen) == ("pilothouse0-n", "10.50.255.1", 24)
    assert net.nodes == (
        NodePlan(1, "host-1", "pilothouse-pilothouse0-1", "10.50.255.2", "pilothouse0-v1",
                 "pilothouse0-1", "10.50.0.0/24"),
        NodePlan(2, "host-2", "pilothouse-pilothouse0-2", "10.50.255.3", "pilothouse0-v2",
                 "pilothouse0-2", "10.50.1.0/24"))
    # an explicit node network leaves the whole pod CIDR to the pods
    own = plan_node_network(count=4, pod_cidr="10.50.0.0/22", bridge="b",
                            node_cidr="192.168.77.0/28", base_name="n")
    assert [n.pod_cidr for n in own.nodes] == [f"10.50.{i}.0/24" for i in range(4)]
    assert (own.gateway, own.nodes[-1].ip, own.prefixlen) == ("192.168.77.1",
                                                              "192.168.77.5", 28)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"count": 0}, "--nodes must be at least 1"),
    ({"pod_cidr": "10.50.0.0/24"}, "each node gets a /24"),
    ({"pod_cidr": "10.50.0.0/23", "count": 2}, "room for 1 nodes"),
    ({"pod_cidr": "10.50.0.0.0/16"}, "is not a CIDR"),
    ({"pod_cidr": "fd00::/64"}, "only IPv4"),
    ({"node_cidr": "10.50.3.0/24"}, "overlaps --pod-cidr"),
    ({"node_cidr": "192.168.1.0/30"}, "no address for 2 nodes"),
    ({"bridge": "a-long-bridge"}, "over Linux's 15 characters"),
], ids=["zero", "pod-cidr-24", "too-many", "bad-cidr", "ipv6", "overlap", "small-node-net",
        "long-bridge"])
def test_node_network_refusals(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"count": 2, "pod_cidr": "10.50.0.0/16", "bridge": "br",
                               "node_cidr": None, "base_name": "n", **kwargs}
    with pytest.raises(UsageError, match=message):
        plan_node_network(**args)  # type: ignore[arg-type]


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.mark.parametrize(("user", "argv", "message"), [
    ([], ["--nodes", "0"], "--nodes must be at least 1"),
    ([], ["--nodes", "2", "--runtime", "containerd"], "--nodes runs each node's runtime shim"),
    ([], ["--nodes", "2", "--pod-cidr", "10.50.0.0/24"], "each node gets a /24"),
    ([], ["--node-cidr", "10.9.0.0/24"], "--node-cidr is for --nodes"),
    ([], ["--pod-bridge", "sixteen-chars-xx"], "must be 1 to 15 characters"),
    (NOBODY, ["--nodes", "2"], "--nodes needs root"),
    (NOBODY, ["--runtime", "containerd"], "--runtime containerd needs root"),
], ids=["zero", "containerd", "small-cidr", "node-cidr-alone", "long-bridge",
        "nodes-not-root", "containerd-not-root"])
def test_up_refuses_clearly(tmp_path: object, user: list[str], argv: list[str],
                            message: str) -> None:
    proc = subprocess.run(
        [*user, sys.executable, "-m", "pilothouse.cli", "up", "--data-dir", str(tmp_path),
         "--port", "0", "--grpc-port", "0", *argv],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # refused before anything started


@pytest.fixture(scope="module")
def nodes_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running_cluster = start_cluster(tmp_path_factory.mktemp("nodes"),
                                    ["--nodes", "2", "--node-name", "e2e"])
    try:
        yield running_cluster
    finally:
        stop_cluster(running_cluster)


def expected_nodes(cluster: Cluster) -> dict[str, tuple[str, ipaddress.IPv4Network]]:
    """node name -> (InternalIP, pod slice): the i-th /24 of the pod CIDR, and the
    (i+1)-th address of its last /24, the node network."""
    pods_net = ipaddress.IPv4Network(cluster.pod_cidr)
    last = int(pods_net.broadcast_address) - 255
    return {f"e2e-{i}": (str(ipaddress.IPv4Address(last + 1 + i)),
                         ipaddress.IPv4Network((int(pods_net.network_address) + 256 * (i - 1),
                                                24)))
            for i in (1, 2)}


def test_two_nodes_ready_in_their_namespaces(nodes_cluster: Cluster) -> None:
    cluster = nodes_cluster
    items = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    got = {}
    for node in items:
        ready = [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"]
        internal = [a["address"] for a in node["status"]["addresses"]
                    if a["type"] == "InternalIP"]
        got[node["metadata"]["name"]] = (ready, internal)
    want = expected_nodes(cluster)
    assert got == {name: (["True"], [ip]) for name, (ip, _) in want.items()}
    for i in (1, 2):  # each kubelet and shim runs in its node's namespace
        assert os.path.exists(f"/run/netns/pilothouse-{cluster.bridge}-{i}")


def test_one_pod_per_node_with_ips_and_logs(nodes_cluster: Cluster) -> None:
    cluster = nodes_cluster
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT)
    names = wait_until(lambda: len(running(pods(cluster, "default", "app=spread"))) == 2 and
                       running(pods(cluster, "default", "app=spread")), "2 pods Running",
                       within=90)
    assert isinstance(names, list)
    want = expected_nodes(cluster)
    placed = {}
    for name in names:
        pod = json.loads(cluster.kubectl("get", "pod", name, "-o", "json").stdout)
        node = pod["spec"]["nodeName"]
        node_ip, pod_slice = want[node]
        ip = pod["status"]["podIP"]
        assert ipaddress.IPv4Address(ip) in pod_slice, (name, node, ip)
        assert pod["status"]["hostIP"] == node_ip
        # the log comes from that node's kubelet (apiserver -> NODE_IP:10250)
        log = wait_until(lambda n=name: cluster.kubectl("logs", n).stdout, "a log line")
        assert log == f"hello from {name} on {ip}/24\n"
        placed[node] = name
    assert sorted(placed) == ["e2e-1", "e2e-2"]
    # pod to pod across nodes: node 1's bridge, node 1, the host, node 2, its bridge
    target = json.loads(cluster.kubectl("get", "pod", placed["e2e-2"], "-o", "json").stdout)
    ping = cluster.kubectl("exec", placed["e2e-1"], "--", "ping", "-c", "1", "-W", "10",
                           target["status"]["podIP"], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "1 packets received" in ping.stdout


def test_stop_removes_namespaces_links_and_pods(nodes_cluster: Cluster) -> None:
    cluster = nodes_cluster
    names = running(pods(cluster, "default", "app=spread"))
    assert len(names) == 2  # the pods of the test above, whose traces must go
    inodes = [pod_netns_inode(cluster, "default", name) for name in names]
    cluster.process.terminate()
    assert cluster.process.wait(timeout=90) == 0
    assert processes_mentioning(str(cluster.data_dir)) == []
    assert mounts_under(cluster.data_dir) == []
    # (a process SIGKILLed a moment ago may still be leaving its namespace)
    wait_until(lambda: not any(netns_alive(inode) for inode in inodes),
               "the pods' network namespaces gone", within=10)
    assert [n for n in os.listdir("/run/netns")
            if n.startswith(f"pilothouse-{cluster.bridge}-")] == []
    assert [link for link in os.listdir("/sys/class/net")
            if link == cluster.bridge or link.startswith(f"{cluster.bridge}-")] == []
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True,
                            check=True).stdout
    pods_net = ipaddress.IPv4Network(cluster.pod_cidr)
    assert [line for line in routes.splitlines()
            if ipaddress.IPv4Network(line.split()[0] if line[0].isdigit() else "0.0.0.0/32")
            .subnet_of(pods_net)] == []
    assert stop_cluster(cluster) == 0
