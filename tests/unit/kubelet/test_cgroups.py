"""Pod cgroup paths (Kubernetes' cgroupfs layout) and their removal, on a fake cgroup tree."""

from __future__ import annotations

from pathlib import Path

from pilothouse.services.kubelet import cgroups, cri_config

from .conftest import make_pod


def test_pod_cgroup_paths_follow_the_qos_class() -> None:
    best = make_pod("a", uid="u1")
    burst = make_pod("b", uid="u2")
    burst.spec.containers[0].resources.requests["memory"].string = "64Mi"
    guaranteed = make_pod("c", uid="u3")
    for k, v in (("cpu", "1"), ("memory", "64Mi")):
        guaranteed.spec.containers[0].resources.requests[k].string = v
        guaranteed.spec.containers[0].resources.limits[k].string = v
    assert cgroups.pod_cgroup("", best) == ""
    assert cgroups.pod_cgroup("/", best) == "/kubepods/besteffort/podu1"
    assert cgroups.pod_cgroup("/node-a", burst) == "/node-a/kubepods/burstable/podu2"
    assert cgroups.pod_cgroup("/node-a/", guaranteed) == "/node-a/kubepods/podu3"
    assert cgroups.all_pod_cgroups("/r", "u9") == [
        "/r/kubepods/podu9", "/r/kubepods/burstable/podu9", "/r/kubepods/besteffort/podu9"]
    config = cri_config.sandbox_config(burst, attempt=0, log_dir=Path("/l"), cluster_dns=[],
                                       cluster_domain="cluster.local",
                                       cgroup_parent="/r/kubepods/burstable/podu2")
    assert config.linux.cgroup_parent == "/r/kubepods/burstable/podu2"
    plain = cri_config.sandbox_config(burst, attempt=0, log_dir=Path("/l"), cluster_dns=[],
                                      cluster_domain="cluster.local")
    assert not plain.linux.cgroup_parent


def test_removal_and_discovery_over_v1_hierarchies(tmp_path: Path) -> None:
    for hierarchy in ("memory", "cpu", "pids"):
        (tmp_path / hierarchy / "r/kubepods/besteffort/podu1/sandbox/c1").mkdir(parents=True)
        (tmp_path / hierarchy / "r/kubepods/podu3").mkdir(parents=True)
    found = cgroups.pod_uids_with_cgroups("/r", fs=tmp_path)
    assert found == {"u1": ["/r/kubepods/besteffort/podu1"], "u3": ["/r/kubepods/podu3"]}
    assert cgroups.remove_cgroup("/r/kubepods/besteffort/podu1", fs=tmp_path)
    assert not any((tmp_path / h / "r/kubepods/besteffort/podu1").exists()
                   for h in ("memory", "cpu", "pids"))
    assert (tmp_path / "memory" / "r/kubepods/podu3").is_dir()
    assert cgroups.pod_uids_with_cgroups("/r", fs=tmp_path) == {"u3": ["/r/kubepods/podu3"]}
    assert cgroups.remove_cgroup("", fs=tmp_path)  # nothing named: nothing to do
