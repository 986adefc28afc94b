"""Environment building, $(VAR) expansion, volumes written with the atomic writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.services.kubelet import env as envlib
from pilothouse.services.kubelet import volumes as vol


@pytest.mark.parametrize("text,expected", [
    ("plain", "plain"),
    ("$(A)", "a"),
    ("x-$(A)-$(B)", "x-a-b"),
    ("$$(A)", "$(A)"),
    ("$(UNKNOWN)", "$(UNKNOWN)"),
    ("$(A", "$(A"),
    ("$", "$"),
    ("cost $5", "cost $5"),
], ids=["plain", "var", "two", "escaped", "unknown", "unclosed", "lone-dollar", "dollar-digit"])
def test_expand(text: str, expected: str) -> None:
    assert envlib.expand(text, {"A": "a", "B": "b"}) == expected


def make_pod() -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web", "shop", "u-1"
    pod.metadata.labels["app"] = "web"
    pod.metadata.annotations["note"] = "hi"
    pod.spec.nodeName = "node-a"
    pod.spec.serviceAccountName = "default"
    c = pod.spec.containers.add(name="main", image="busybox")
    c.resources.limits["cpu"].string = "500m"
    c.resources.requests["memory"].string = "64Mi"
    return pod


def service(name: str, ns: str, ip: str, *ports: tuple[str, int]) -> core_pb2.Service:
    svc = core_pb2.Service()
    svc.metadata.name, svc.metadata.namespace = name, ns
    svc.spec.clusterIP = ip
    for pname, port in ports:
        svc.spec.ports.add(name=pname, port=port, protocol="TCP")
    return svc


def sources() -> envlib.EnvSources:
    cm = core_pb2.ConfigMap()
    cm.data["color"] = "blue"
    cm.data["bad key"] = "skipped"
    secret = core_pb2.Secret()
    secret.data["token"] = b"t0k"
    return envlib.EnvSources(
        configmaps={"cfg": cm, "missing": None}, secrets={"sec": secret},
        services=[service("kubernetes", "default", "10.96.0.1", ("https", 443)),
                  service("db-main", "shop", "10.96.0.9", ("pg", 5432)),
                  service("other", "elsewhere", "10.96.0.7", ("x", 1))],
        node_allocatable={"cpu": "2", "memory": "8Gi"}, pod_ips=["10.88.0.5"],
        host_ip="192.0.2.1")


def build(**setup: object) -> dict[str, str]:
    pod = make_pod()
    c = pod.spec.containers[0]
    for name, value in setup.items():
        var = c.env.add(name=name)
        if isinstance(value, str):
            var.value = value
        elif isinstance(value, tuple):
            kind, *args = value
            if kind == "field":
                var.valueFrom.fieldRef.fieldPath = args[0]
            elif kind == "resource":
                var.valueFrom.resourceFieldRef.resource = args[0]
                if len(args) > 1:
                    var.valueFrom.resourceFieldRef.divisor.string = args[1]
            elif kind == "cm":
                var.valueFrom.configMapKeyRef.localObjectReference.name = args[0]
                var.valueFrom.configMapKeyRef.key = args[1]
                var.valueFrom.configMapKeyRef.optional = bool(args[2:] and args[2])
            elif kind == "secret":
                var.valueFrom.secretKeyRef.localObjectReference.name = args[0]
                var.valueFrom.secretKeyRef.key = args[1]
    return dict(envlib.build_env(pod, c, sources()))


def test_downward_api_fields() -> None:
    env = build(NAME=("field", "metadata.name"), NS=("field", "metadata.namespace"),
                UID=("field", "metadata.uid"), NODE=("field", "spec.nodeName"),
                SA=("field", "spec.serviceAccountName"), IP=("field", "status.podIP"),
                HOST=("field", "status.hostIP"),
                APP=("field", "metadata.labels['app']"),
                NOTE=("field", "metadata.annotations['note']"))
    assert {k: env[k] for k in ("NAME", "NS", "UID", "NODE", "SA", "IP", "HOST", "APP",
                                "NOTE")} == {
        "NAME": "web", "NS": "shop", "UID": "u-1", "NODE": "node-a", "SA": "default",
        "IP": "10.88.0.5", "HOST": "192.0.2.1", "APP": "web", "NOTE": "hi"}


@pytest.mark.parametrize("resource,divisor,expected", [
    ("limits.cpu", "", "1"),
    ("limits.cpu", "1m", "500"),
    ("requests.memory", "1Mi", "64"),
    ("requests.memory", "", str(64 * 2**20)),
    ("limits.memory", "1Gi", "8"),  # unset limit: node allocatable
])
def test_resource_field_ref(resource: str, divisor: str, expected: str) -> None:
    spec: tuple[str, ...] = ("resource", resource, divisor) if divisor else ("resource", resource)
    assert build(V=spec)["V"] == expected


def test_config_map_secret_and_expansion_order() -> None:
    env = build(COLOR=("cm", "cfg", "color"), TOKEN=("secret", "sec", "token"),
                MSG="$(COLOR)/$(TOKEN)/$(LATER)", LATER="x")
    assert env["COLOR"] == "blue" and env["TOKEN"] == "t0k"
    assert env["MSG"] == "blue/t0k/$(LATER)"  # only variables defined before expand


def test_optional_missing_key_is_skipped_and_required_is_an_error() -> None:
    assert "X" not in build(X=("cm", "cfg", "nokey", True))
    with pytest.raises(envlib.ConfigError, match="couldn't find key nokey in ConfigMap shop/cfg"):
        build(X=("cm", "cfg", "nokey"))
    with pytest.raises(envlib.ConfigError, match='configmap "missing" not found'):
        build(X=("cm", "missing", "k"))


def test_env_from_with_prefix_skips_invalid_names() -> None:
    pod = make_pod()
    c = pod.spec.containers[0]
    src = c.envFrom.add(prefix="CFG_")
    src.configMapRef.localObjectReference.name = "cfg"
    c.env.add(name="CFG_color", value="override")
    env = dict(envlib.build_env(pod, c, sources()))
    assert env["CFG_color"] == "override"
    assert "CFG_bad key" not in env


def test_service_link_variables() -> None:
    env = build()
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["DB_MAIN_SERVICE_HOST"] == "10.96.0.9"
    assert env["DB_MAIN_PORT"] == "tcp://10.96.0.9:5432"
    assert env["DB_MAIN_PORT_5432_TCP_ADDR"] == "10.96.0.9"
    assert env["DB_MAIN_PORT_5432_TCP_PROTO"] == "tcp"
    assert not any(k.startswith("OTHER_") for k in env)  # other namespaces are not linked
    pod = make_pod()
    pod.spec.enableServiceLinks = False
    env = dict(envlib.build_env(pod, pod.spec.containers[0], sources()))
    assert "DB_MAIN_SERVICE_HOST" not in env and "KUBERNETES_SERVICE_HOST" in env


# -- volumes ---------------------------------------------------------------------------------


def test_atomic_writer_layout_and_update(tmp_path: Path) -> None:
    target = tmp_path / "v"
    assert vol.write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert (target / "a").read_text() == "1"
    assert (target / "dir" / "b").read_text() == "2"
    assert os.readlink(target / "a") == "..data/a"
    assert (target / "..data").is_symlink()
    assert oct((target / "dir" / "b").stat().st_mode & 0o777) == "0o600"
    assert not vol.write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    first = os.readlink(target / "..data")
    assert vol.write_atomic(target, {"a": (b"changed", 0o644)})
    assert (target / "a").read_text() == "changed"
    assert not (target / "dir").exists()
    assert not (target / first).exists()  # the old generation is gone


@pytest.mark.parametrize("path", ["../escape", "/abs", "..data/x", ""])
def test_atomic_writer_refuses_bad_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(vol.VolumeError):
        vol.write_atomic(tmp_path / "v", {path: (b"x", 0o644)})


def volume_pod() -> core_pb2.Pod:
    pod = make_pod()
    v = pod.spec.volumes.add(name="cfg")
    v.volumeSource.configMap.localObjectReference.name = "cfg"
    item = v.volumeSource.configMap.items.add(key="color", path="sub/colour")
    item.mode = 0o600
    v = pod.spec.volumes.add(name="sec")
    v.volumeSource.secret.secretName = "sec"
    v = pod.spec.volumes.add(name="down")
    f = v.volumeSource.downwardAPI.items.add(path="labels")
    f.fieldRef.fieldPath = "metadata.labels"
    v = pod.spec.volumes.add(name="proj")
    src = v.volumeSource.projected.sources.add()
    src.configMap.localObjectReference.name = "cfg"
    src = v.volumeSource.projected.sources.add()
    src.secret.localObjectReference.name = "sec"
    v = pod.spec.volumes.add(name="scratch")
    v.volumeSource.emptyDir.SetInParent()
    c = pod.spec.containers[0]
    c.volumeMounts.add(name="cfg", mountPath="/cfg")
    c.volumeMounts.add(name="scratch", mountPath="/data", subPath="x")
    c.volumeMounts.add(name="scratch", mountPath="/rw", readOnly=True)
    return pod


def test_volumes_are_written_and_mounted(tmp_path: Path) -> None:
    manager = vol.VolumeManager(tmp_path, can_mount=False)
    env = sources()
    pod = volume_pod()
    paths = manager.setup(pod, vol.VolumeSources(env.configmaps, env.secrets, env))
    assert (paths["cfg"] / "sub" / "colour").read_text() == "blue"
    assert oct((paths["cfg"] / "sub" / "colour").stat().st_mode & 0o777) == "0o600"
    assert (paths["sec"] / "token").read_bytes() == b"t0k"
    assert (paths["down"] / "labels").read_text() == 'app="web"'
    assert {p.name for p in paths["proj"].iterdir() if not p.name.startswith("..")} == \
        {"color", "bad key", "token"}
    assert paths["scratch"].is_dir()
    mounts = manager.mounts(pod, pod.spec.containers[0], paths, {})
    by_path = {m.container_path: m for m in mounts}
    assert by_path["/cfg"].readonly and by_path["/cfg"].host_path == str(paths["cfg"])
    assert by_path["/data"].host_path == str(paths["scratch"] / "x")
    assert by_path["/rw"].readonly
    manager.teardown(pod.metadata.uid)
    assert not manager.pod_dir(pod.metadata.uid).exists()


def test_missing_configmap_volume_fails_unless_optional(tmp_path: Path) -> None:
    manager = vol.VolumeManager(tmp_path, can_mount=False)
    pod = make_pod()
    v = pod.spec.volumes.add(name="cfg")
    v.volumeSource.configMap.localObjectReference.name = "missing"
    with pytest.raises(vol.VolumeError, match='configmap "missing" not found'):
        manager.setup(pod, vol.VolumeSources(configmaps={"missing": None}))
    v.volumeSource.configMap.optional = True
    paths = manager.setup(pod, vol.VolumeSources(configmaps={"missing": None}))
    assert paths["cfg"].is_dir()


def test_host_path_types(tmp_path: Path) -> None:
    manager = vol.VolumeManager(tmp_path / "root", can_mount=False)
    pod = make_pod()
    v = pod.spec.volumes.add(name="h")
    v.volumeSource.hostPath.path = str(tmp_path / "made")
    v.volumeSource.hostPath.type = "DirectoryOrCreate"
    assert manager.setup(pod, vol.VolumeSources())["h"].is_dir()
    v.volumeSource.hostPath.path = str(tmp_path / "absent")
    v.volumeSource.hostPath.type = "Directory"
    with pytest.raises(vol.VolumeError, match="not a directory"):
        manager.setup(pod, vol.VolumeSources())


def test_unsupported_volume_is_a_clear_error(tmp_path: Path) -> None:
    pod = make_pod()
    v = pod.spec.volumes.add(name="nfs")
    v.volumeSource.nfs.server = "x"
    with pytest.raises(vol.VolumeError, match="nfs volumes are not supported"):
        vol.VolumeManager(tmp_path, can_mount=False).setup(pod, vol.VolumeSources())


def test_etc_hosts() -> None:
    pod = make_pod()
    pod.spec.hostname, pod.spec.subdomain = "h", "sub"
    alias = pod.spec.hostAliases.add(ip="1.2.3.4")
    alias.hostnames.extend(["a", "b"])
    text = vol.etc_hosts(pod, ["10.88.0.5"], "cluster.local")
    assert "10.88.0.5\th.sub.shop.svc.cluster.local\th\n" in text
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert text.endswith("# Entries added by HostAliases.\n1.2.3.4\ta\tb\n")
