"""The container packaging, checked without a Docker engine, and the Helm chart,
rendered by the real ``helm`` (``.venv/bin/helm`` from the ``helm-binary`` package).

The Dockerfile cannot be built here (no engine, no registry), so its promises are
checked against the repository: every COPY source exists and survives
.dockerignore, the context those lines copy builds a wheel with every module,
the entrypoint is the console script, the exposed ports are the components'
defaults. The chart is linted and rendered for several sets of values, and every
command line it renders is parsed by the component's own argument parser.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pilothouse import cli
from pilothouse.client.workqueue import WorkQueueMetrics
from pilothouse.services.apiserver import server as apiserver_server
from pilothouse.services.apiserver.metrics import APIServerMetrics
from pilothouse.services.controllers import manager as controller_manager
from pilothouse.services.kubelet import config as kubelet_config
from pilothouse.services.scheduler import server as scheduler_server
from pilothouse.services.scheduler.metrics import SchedulerMetrics

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHART = REPO / "helm" / "pilothouse"
HELM = Path(sys.executable).parent / "helm"
RELEASE, NAMESPACE = "ph", "control"
FULLNAME = f"{RELEASE}-pilothouse"
APISERVER_GRPC = f"grpc://{FULLNAME}-apiserver.{NAMESPACE}.svc:6444"


# -- the Dockerfile ---------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions by stage name (in order; the last is the default target)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions(text):
        if word == "FROM":
            parts = rest.split()
            assert len(parts) == 3 and parts[1].upper() == "AS", f"unnamed stage: FROM {rest}"
            current = result.setdefault(parts[2], [])
            current.append((word, parts[0]))
        elif current is not None:
            current.append((word, rest))
    return result


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule, for the pattern forms .dockerignore uses: a path is excluded when it
    or one of its parent folders matches (``**/`` matches any depth, including none)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        assert not pattern.startswith("!"), "exception patterns are not modelled here"
        forms = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        for prefix in prefixes:
            for form in forms:
                if fnmatch.fnmatchcase(prefix, form):
                    return True
                if pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1],
                                                                      form):
                    return True
    return False


def copy_sources() -> list[str]:
    """Sources of the COPY lines that read the build context (not ``--from=`` a stage)."""
    sources: list[str] = []
    for word, rest in instructions(DOCKERFILE.read_text()):
        if word != "COPY":
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        assert len(args) >= 2, f"COPY {rest}"
        sources += args[:-1]
    return sources


def context_files(source: str, patterns: list[str]) -> Iterator[Path]:
    """The files of ``source`` that reach the build context."""
    path = REPO / source
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in candidates:
        if not ignored(p.relative_to(REPO).as_posix(), patterns):
            yield p


def test_every_copy_source_exists_and_reaches_the_build_context() -> None:
    patterns = dockerignore_patterns()
    sources = copy_sources()
    assert {"pyproject.toml", "setup.py", "pilothouse_layout.py", "README.md",
            "pilothouse/"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source.rstrip("/"), patterns), f"COPY {source}: .dockerignore drops it"
        assert any(context_files(source, patterns)), f"COPY {source}: nothing reaches the context"


def test_every_package_folder_is_copied() -> None:
    """setup.py installs the folders of pilothouse_layout.PACKAGE_DIRS: each must be copied."""
    sys.path.insert(0, str(REPO))
    try:
        layout = importlib.import_module("pilothouse_layout")
    finally:
        sys.path.remove(str(REPO))
    copied = {s.rstrip("/") for s in copy_sources()}
    assert set(layout.PACKAGE_DIRS.values()) <= copied


def test_the_build_context_builds_a_wheel_with_every_module(tmp_path: Path) -> None:
    """What the COPY lines bring into the image is enough for ``pip install .``: build the
    wheel from exactly those files and find every module and the console script in it."""
    patterns = dockerignore_patterns()
    context = tmp_path / "context"
    for source in copy_sources():
        for f in context_files(source, patterns):
            target = context / f.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--quiet", "-w", str(tmp_path / "dist"),
                           str(context)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    [wheel] = (tmp_path / "dist").glob("pilothouse-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    assert "pilothouse = pilothouse.cli:main" in scripts
    cli.build_parser()
    for module, _help in cli.SUBCOMMANDS.values():
        assert module.replace(".", "/") + ".py" in names, f"{module} is not in the wheel"
    sys.path.insert(0, str(REPO))
    try:
        layout = importlib.import_module("pilothouse_layout")
    finally:
        sys.path.remove(str(REPO))
    for package, folder in layout.PACKAGE_DIRS.items():
        for py in (REPO / folder).rglob("*.py"):
            if "__pycache__" in py.parts:
                continue
            inside = package.replace(".", "/") + "/" + py.relative_to(REPO / folder).as_posix()
            assert inside in names, f"{inside} is not in the wheel"


def test_entrypoint_is_the_pilothouse_console_script() -> None:
    runtime = dict(stages(DOCKERFILE.read_text()))["runtime"]
    [entrypoint] = [rest for word, rest in runtime if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["pilothouse"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    target = pyproject["project"]["scripts"]["pilothouse"]
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_exposed_ports_are_the_components_default_ports() -> None:
    runtime = dict(stages(DOCKERFILE.read_text()))["runtime"]
    exposed = {int(p.split("/")[0]) for word, rest in runtime if word == "EXPOSE"
               for p in rest.split()}
    assert exposed == {
        apiserver_server.DEFAULT_PORT,        # REST
        apiserver_server.DEFAULT_GRPC_PORT,   # gRPC
        kubelet_config.DEFAULT_PORT,          # 10250
        controller_manager.DEFAULT_PORT,      # 10257
        scheduler_server.DEFAULT_PORT,        # 10259
    }
    assert exposed == {6443, 6444, 10250, 10257, 10259}


def test_stages_base_image_users_and_node_packages() -> None:
    text = DOCKERFILE.read_text()
    args = dict(rest.split("=", 1) for word, rest in instructions(text) if word == "ARG")
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    by_name = stages(text)
    assert [name for name in by_name] == ["build", "runtime", "node", "control-plane"]
    assert by_name["build"][0] == ("FROM", "${PYTHON_IMAGE}")
    assert by_name["runtime"][0] == ("FROM", "${PYTHON_IMAGE}")
    # The build installs the package for real (not editable).
    runs = " ".join(rest for word, rest in by_name["build"] if word == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs) and "-e " not in runs
    # Default target (the last stage): an unprivileged user.
    users = [rest for word, rest in by_name["control-plane"] if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert int(users[-1].split(":")[0]) >= 1000
    # node: root, with the system tools the runtime shim and kubelet call.
    node_users = [rest for word, rest in by_name["node"] if word == "USER"]
    assert node_users[-1] in ("root", "0")
    node_runs = " ".join(rest for word, rest in by_name["node"] if word == "RUN")
    for package in ("busybox-static", "iproute2", "util-linux"):
        assert package in node_runs.split(), package
    assert by_name["node"][0] == ("FROM", "runtime")
    assert by_name["control-plane"][0] == ("FROM", "runtime")


@pytest.mark.parametrize("path", [
    ".venv/bin/python", "build/devtree/x.py", "dist/pilothouse.whl",
    "pilothouse.egg-info/PKG-INFO", ".pytest_cache/v/cache", ".mypy_cache/3.11/x.json",
    ".ruff_cache/x", ".hypothesis/examples/x", "pilothouse/__pycache__/cli.cpython-311.pyc",
    "services/apiserver/__pycache__/rest.cpython-311.pyc", ".git/HEAD", "tests/unit/x.py",
])
def test_dockerignore_excludes_local_state(path: str) -> None:
    assert ignored(path, dockerignore_patterns())


def test_dockerignore_keeps_sources() -> None:
    patterns = dockerignore_patterns()
    for path in ("pilothouse/cli.py", "services/apiserver/rest.py", "runtime_shim/cli.py",
                 "pyproject.toml", "README.md"):
        assert not ignored(path, patterns), path


# -- the Helm chart ---------------------------------------------------------------------------


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def render(tmp_path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    files = tmp_path / "values.yaml"
    files.write_text(yaml.safe_dump(values or {}))
    proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(files))
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    [c] = [c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return c


def flags(c: dict[str, Any]) -> dict[str, str]:
    """``--name=value`` arguments as a dict (bare flags map to "")."""
    out: dict[str, str] = {}
    for arg in c["args"][1:]:
        name, _, value = arg.partition("=")
        out[name] = value
    return out


EVERYTHING: dict[str, Any] = {
    "node": {"enabled": True, "maxPods": 50, "nodeLabels": {"zone": "a", "tier": "edge"},
             "clusterDNS": ["10.96.0.10"]},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "grafanaDashboard": {"enabled": True},
    "scheduler": {"config": "apiVersion: kubescheduler.config.k8s.io/v1\n"
                            "kind: KubeSchedulerConfiguration\n"},
    "controllerManager": {"concurrent": {"replicaset": 10}, "settings": {
        "node-monitor-grace-period": 40}},
    "imagePullSecrets": [{"name": "regcred"}],
    "verbose": True,
}


@pytest.mark.parametrize("values", [
    pytest.param({}, id="defaults"),
    pytest.param(EVERYTHING, id="everything-on"),
    pytest.param({"storage": {"etcd": {"url": "etcd://etcd.db.svc:2379"}}}, id="etcd"),
])
def test_helm_lint_passes(tmp_path: Path, values: dict[str, Any]) -> None:
    files = tmp_path / "values.yaml"
    files.write_text(yaml.safe_dump(values))
    proc = helm("lint", "--strict", str(CHART), "-f", str(files))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_default_render(tmp_path: Path) -> None:
    objects = by_kind(render(tmp_path))
    assert set(objects) == {
        ("StatefulSet", f"{FULLNAME}-apiserver"),
        ("Service", f"{FULLNAME}-apiserver"),
        ("Service", f"{FULLNAME}-apiserver-headless"),
        ("Deployment", f"{FULLNAME}-scheduler"),
        ("Service", f"{FULLNAME}-scheduler"),
        ("Deployment", f"{FULLNAME}-controller-manager"),
        ("Service", f"{FULLNAME}-controller-manager"),
    }
    # apiserver: one replica, SQLite in --data-dir on a PVC, REST and gRPC, probes.
    sts = objects[("StatefulSet", f"{FULLNAME}-apiserver")]
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == f"{FULLNAME}-apiserver-headless"
    api = container(sts, "apiserver")
    assert api["image"] == "pilothouse:0.1.0"
    assert api["args"][0] == "apiserver"
    f = flags(api)
    assert f["--data-dir"] == "/var/lib/pilothouse"
    assert "--storage" not in f
    assert (f["--bind-address"], f["--port"], f["--grpc-port"]) == ("0.0.0.0", "6443", "6444")
    assert {m["name"]: m["mountPath"] for m in api["volumeMounts"]}["data"] == \
        "/var/lib/pilothouse"
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {
        "rest": apiserver_server.DEFAULT_PORT, "grpc": apiserver_server.DEFAULT_GRPC_PORT}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "rest"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "rest"}
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    svc = objects[("Service", f"{FULLNAME}-apiserver")]
    assert svc["spec"]["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "rest": (6443, "rest"), "grpc": (6444, "grpc")}
    assert svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"][
        "labels"].items()

    # scheduler and controller-manager: the apiserver Service's gRPC port, leader election.
    sched = objects[("Deployment", f"{FULLNAME}-scheduler")]
    s = container(sched, "scheduler")
    assert s["args"][0] == "scheduler"
    assert flags(s)["--master"] == APISERVER_GRPC
    assert flags(s)["--leader-elect"] == "true"
    assert flags(s)["--port"] == str(scheduler_server.DEFAULT_PORT)
    assert s["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert s["readinessProbe"]["httpGet"]["path"] == "/readyz"
    cm = objects[("Deployment", f"{FULLNAME}-controller-manager")]
    c = container(cm, "controller-manager")
    assert c["args"][0] == "controller-manager"
    assert flags(c)["--apiserver"] == APISERVER_GRPC
    assert "--leader-elect" in flags(c) and "--no-leader-elect" not in flags(c)
    assert flags(c)["--port"] == str(controller_manager.DEFAULT_PORT)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    for deploy, port in ((sched, 10259), (cm, 10257)):
        [p] = container(deploy, deploy["metadata"]["labels"]["app.kubernetes.io/component"]
                        )["ports"]
        assert (p["name"], p["containerPort"]) == ("metrics", port)


def test_every_rendered_command_line_parses_with_the_components_parser(tmp_path: Path) -> None:
    """The chart uses the components' real flags: each container's args go through the
    same parser ``pilothouse <component>`` builds (and the config checks behind it)."""
    docs = render(tmp_path, EVERYTHING)
    seen: set[str] = set()
    cli.build_parser()
    for doc in docs:
        if doc["kind"] not in ("StatefulSet", "Deployment", "DaemonSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod["containers"]:
            argv = [expand(a, c.get("env", [])) for a in c["args"]]
            seen.add(argv[0])
            args = parse(argv)
            if argv[0] == "apiserver":
                apiserver_server.config_from_args(args)
            if argv[0] == "kubelet":
                from pilothouse.services.kubelet.cli import config_from_args
                config = config_from_args(args)
                assert (config.node_name, config.node_ip) == ("node-a", "10.0.0.7")
            # Whatever port the process listens on is the port the container declares.
            ports = {p["containerPort"] for p in c.get("ports", [])}
            if "port" in vars(args) and ports:
                assert args.port in ports, (argv[0], args.port, ports)
        for c in pod.get("initContainers", []):
            script = c["args"][0]
            lines = re.sub(r"\\\n\s*", " ", script).splitlines()
            commands = [shlex.split(line.strip().replace("$kind", "busybox"))
                        for line in lines if line.strip().startswith("pilothouse ")]
            assert len(commands) == 2
            for command in commands:
                seen.add(command[1] + " " + command[2])
                parse(command[1:])
    assert seen == {"apiserver", "scheduler", "controller-manager", "kubelet", "runtime-shim",
                    "image build", "image import"}


# What the kubelet would put in the downward-API variables the chart uses.
FIELD_VALUES = {"spec.nodeName": "node-a", "status.podIP": "10.0.0.7",
                "metadata.name": "pilothouse-controller-manager-7d9f-x2"}


def expand(arg: str, env: list[dict[str, Any]]) -> str:
    """``$(VAR)`` in ``arg`` as Kubernetes expands it from the container's env."""
    values = {e["name"]: FIELD_VALUES[e["valueFrom"]["fieldRef"]["fieldPath"]] for e in env}
    return re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], arg)


def parse(argv: list[str]) -> argparse.Namespace:
    module_name, _help = cli.SUBCOMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"pilothouse {argv[0]}", exit_on_error=False)
    module.add_arguments(parser)
    try:
        args: argparse.Namespace = parser.parse_args(argv[1:])
    except SystemExit:
        raise AssertionError(f"pilothouse {' '.join(argv)}: rejected by its parser") from None
    return args


def test_etcd_storage_has_no_volume_claim(tmp_path: Path) -> None:
    url = "etcd://etcd-0.etcd.db.svc:2379"
    objects = by_kind(render(tmp_path, {"storage": {"etcd": {"url": url}}}))
    sts = objects[("StatefulSet", f"{FULLNAME}-apiserver")]
    assert "volumeClaimTemplates" not in sts["spec"]
    f = flags(container(sts, "apiserver"))
    assert f["--storage"] == url
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_persistence_and_service_overrides(tmp_path: Path) -> None:
    objects = by_kind(render(tmp_path, {
        "storage": {"persistence": {"size": "20Gi", "storageClass": "fast"}},
        "apiserver": {"service": {"type": "NodePort", "nodePorts": {"rest": 30443}}},
        "scheduler": {"enabled": False},
    }))
    [claim] = objects[("StatefulSet", f"{FULLNAME}-apiserver")]["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    svc = objects[("Service", f"{FULLNAME}-apiserver")]
    assert svc["spec"]["type"] == "NodePort"
    assert {p["name"]: p.get("nodePort") for p in svc["spec"]["ports"]} == {
        "rest": 30443, "grpc": None}
    assert ("Deployment", f"{FULLNAME}-scheduler") not in objects


def test_node_daemonset(tmp_path: Path) -> None:
    objects = by_kind(render(tmp_path, {"node": {"enabled": True, "nodeLabels": {"a": "1"}}}))
    ds = objects[("DaemonSet", f"{FULLNAME}-node")]
    pod = ds["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["runtime-shim", "kubelet"]
    shim, kubelet = pod["containers"]
    for c in (shim, kubelet):
        assert c["image"] == "pilothouse-node:0.1.0"
        assert c["securityContext"]["privileged"] is True
        assert c["securityContext"]["runAsUser"] == 0
    socket = "unix:///run/pilothouse/cri.sock"
    assert flags(shim)["--listen"] == socket
    assert flags(shim)["--backend"] == "process"
    k = flags(kubelet)
    assert k["--runtime-endpoint"] == socket
    assert k["--apiserver"] == APISERVER_GRPC
    assert k["--node-name"] == "$(NODE_NAME)"
    assert k["--node-labels"] == "a=1"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in kubelet["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "POD_IP": "status.podIP"}
    # The socket's folder and the state are shared by both containers.
    mounts = [{m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in (shim, kubelet)]
    assert mounts[0] == mounts[1] == {"run": "/run/pilothouse", "state": "/var/lib/pilothouse"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/pilothouse-node"
    [images] = pod["initContainers"]
    assert "pilothouse image import" in images["args"][0]
    assert kubelet["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {p["containerPort"] for p in kubelet["ports"]} == {kubelet_config.DEFAULT_PORT}


def metric_services(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: doc for (kind, name), doc in objects.items() if kind == "Service"}


def test_service_monitor_scrapes_every_component_once(tmp_path: Path) -> None:
    objects = by_kind(render(tmp_path, {"serviceMonitor": {"enabled": True,
                                                           "labels": {"release": "prom"}},
                                        "node": {"enabled": True}}))
    monitor = objects[("ServiceMonitor", FULLNAME)]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert all(e["path"] == "/metrics" for e in endpoints.values())
    scraped: dict[str, list[str]] = {}
    for name, svc in metric_services(objects).items():
        if selector.items() <= svc["metadata"]["labels"].items():
            scraped[name] = [p["name"] for p in svc["spec"]["ports"] if p["name"] in endpoints]
    # Each component once, on the port that serves its /metrics (not the headless twin).
    assert scraped == {
        f"{FULLNAME}-apiserver": ["rest"],
        f"{FULLNAME}-scheduler": ["metrics"],
        f"{FULLNAME}-controller-manager": ["metrics"],
        f"{FULLNAME}-kubelet": ["metrics"],
    }
    # And each Service's selector finds its component's pods.
    workloads = [d for d in objects.values()
                 if d["kind"] in ("StatefulSet", "Deployment", "DaemonSet")]
    for name in scraped:
        selector_labels = objects[("Service", name)]["spec"]["selector"].items()
        assert sum(selector_labels <= w["spec"]["template"]["metadata"]["labels"].items()
                   for w in workloads) == 1, name


def exposed_metric_names(*registries: CollectorRegistry) -> set[str]:
    """Names as Prometheus sees them (counters with _total, histograms with _bucket)."""
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            suffix = {"counter": "_total", "histogram": "_bucket"}.get(family.type, "")
            names.add(family.name + suffix)
    return names


def test_grafana_dashboard(tmp_path: Path) -> None:
    objects = by_kind(render(tmp_path, {"grafanaDashboard": {"enabled": True}}))
    config = objects[("ConfigMap", f"{FULLNAME}-dashboard")]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["pilothouse.json"])
    assert dashboard["uid"] == "pilothouse-overview"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:apiserver|scheduler|workqueue)_\w+)", e)}
    assert used == {"apiserver_request_total", "apiserver_request_duration_seconds_bucket",
                    "scheduler_schedule_attempts_total", "workqueue_depth"}
    workqueue = CollectorRegistry()
    WorkQueueMetrics(workqueue)
    exposed = exposed_metric_names(APIServerMetrics().registry, SchedulerMetrics().registry,
                                   workqueue)
    assert used <= exposed, used - exposed
    assert any("histogram_quantile(0.99" in e for e in exprs)
    assert any("rate(apiserver_request_total" in e for e in exprs)


def test_optional_objects_are_off_by_default(tmp_path: Path) -> None:
    kinds = {d["kind"] for d in render(tmp_path)}
    assert not kinds & {"DaemonSet", "ServiceMonitor", "ConfigMap"}


@pytest.mark.parametrize(("values", "message"), [
    pytest.param({"logFormat": "xml"}, 'logFormat must be one of the following: "text", "json"',
                 id="log-format"),
    pytest.param({"apiserver": {"prot": 1}}, "Additional property prot is not allowed",
                 id="typo"),
    pytest.param({"scheduler": {"leaderElect": "maybe"}}, "Expected: boolean",
                 id="leader-elect"),
    pytest.param({"apiserver": {"service": {"type": "Ingress"}}}, "apiserver.service.type",
                 id="service-type"),
    pytest.param({"apiserver": {"port": 70000}}, "apiserver.port", id="port"),
])
def test_bad_values_get_a_clear_error(tmp_path: Path, values: dict[str, Any],
                                      message: str) -> None:
    files = tmp_path / "values.yaml"
    files.write_text(yaml.safe_dump(values))
    proc = helm("template", RELEASE, str(CHART), "-f", str(files))
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "panic" not in proc.stderr
