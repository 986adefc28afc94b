"""KubeSchedulerConfiguration: the YAML a scheduler is configured with.

The ``kubescheduler.config.k8s.io/v1`` shape: ``profiles`` (one per
``schedulerName``), each with ``plugins`` per extension point
(``enabled``/``disabled``, ``"*"`` disables every default) and ``multiPoint``,
``pluginConfig`` args, and ``percentageOfNodesToScore`` (global or per
profile; 0 = Kubernetes' adaptive default). Defaults and the multiPoint
expansion follow Kubernetes: a user's multiPoint entry replaces the default
one in place; a plugin named at a specific extension point overrides its
multiPoint entry there and comes first; ``disabled`` at a point removes it.

Unknown fields and bad values are errors with their path, as Kubernetes'
strict decoding gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from pilothouse.services.scheduler.framework.runtime import (
    EXTENSION_POINTS,
    PluginSpec,
    ProfileConfig,
)
from pilothouse.services.scheduler.plugins import DEFAULT_MULTI_POINT, IN_TREE_REGISTRY

__all__ = [
    "API_VERSION",
    "ConfigError",
    "LeaderElectionConfig",
    "SchedulerConfig",
    "default_config",
    "load_config",
    "parse_config",
    "resolve_profile",
]

API_VERSION: Final = "kubescheduler.config.k8s.io/v1"
DEFAULT_SCHEDULER_NAME: Final = "default-scheduler"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field."""


@dataclass
class LeaderElectionConfig:
    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    resource_name: str = "kube-scheduler"
    resource_namespace: str = "kube-system"


@dataclass
class SchedulerConfig:
    profiles: list[ProfileConfig] = field(default_factory=list)
    percentage_of_nodes_to_score: int | None = None
    pod_initial_backoff_seconds: float = 1.0
    pod_max_backoff_seconds: float = 10.0
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    parallelism: int = 16


def _duration(value: Any, path: str) -> float:
    from pilothouse.api.timeutil import DurationError, parse_duration

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value) / 1e9
        except DurationError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    raise ConfigError(f"{path}: expected a duration such as 15s, got {value!r}")


def _check_keys(obj: Any, allowed: set[str], path: str) -> Mapping[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{path or 'configuration'}: expected an object, "
                          f"got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown field \"{where}{unknown[0]}\"")
    return obj


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{path}: Invalid value: {value!r}: not in valid range [{lo}-{hi}]")
    return value


def _plugin_set(raw: Any, path: str) -> tuple[list[PluginSpec], list[str]]:
    obj = _check_keys(raw, {"enabled", "disabled"}, path)
    enabled: list[PluginSpec] = []
    disabled: list[str] = []
    for key, out in (("enabled", enabled), ("disabled", disabled)):
        items = obj.get(key) or []
        if not isinstance(items, list):
            raise ConfigError(f"{path}.{key}: expected a list")
        for i, item in enumerate(items):
            p = _check_keys(item, {"name", "weight"}, f"{path}.{key}[{i}]")
            name = p.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{path}.{key}[{i}].name: Required value")
            if key == "enabled":
                weight = p.get("weight", 0)
                if not isinstance(weight, int) or weight < 0:
                    raise ConfigError(f"{path}.{key}[{i}].weight: must be a non-negative "
                                      "integer")
                out.append(PluginSpec(name, weight))  # type: ignore[arg-type]
            else:
                out.append(name)  # type: ignore[arg-type]
    return enabled, disabled


def _merge(defaults: Sequence[PluginSpec], enabled: list[PluginSpec],
           disabled: list[str]) -> list[PluginSpec]:
    """Kubernetes' mergePluginSet: custom entries replace defaults in place, the rest
    are appended; ``disabled`` ("*" = all) removes defaults."""
    custom = {p.name: i for i, p in enumerate(enabled)}
    replaced: set[int] = set()
    out: list[PluginSpec] = []
    if "*" not in disabled:
        for d in defaults:
            if d.name in disabled:
                continue
            if d.name in custom:
                replaced.add(custom[d.name])
                d = enabled[custom[d.name]]
            out.append(d)
    out.extend(p for i, p in enumerate(enabled) if i not in replaced)
    return out


def resolve_profile(raw: Any, *, path: str = "profiles[0]",
                    registry: Mapping[str, Any] | None = None,
                    default_percentage: int | None = None) -> ProfileConfig:
    """A profile document -> the plugins enabled at each extension point, in order."""
    registry = registry if registry is not None else IN_TREE_REGISTRY
    obj = _check_keys(raw, {"schedulerName", "plugins", "pluginConfig",
                            "percentageOfNodesToScore"}, path)
    name = obj.get("schedulerName", DEFAULT_SCHEDULER_NAME)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.schedulerName: Required value")
    points = _check_keys(obj.get("plugins"), {"multiPoint", *EXTENSION_POINTS},
                         f"{path}.plugins")
    mp_enabled, mp_disabled = _plugin_set(points.get("multiPoint"), f"{path}.plugins.multiPoint")
    multi = _merge([PluginSpec(n, w) for n, w in DEFAULT_MULTI_POINT], mp_enabled, mp_disabled)
    for spec in multi:
        if spec.name not in registry:
            raise ConfigError(f"{path}.plugins.multiPoint: plugin {spec.name!r} is not "
                              "registered")
    resolved: dict[str, list[PluginSpec]] = {}
    for point, method in EXTENSION_POINTS.items():
        enabled, disabled = _plugin_set(points.get(point), f"{path}.plugins.{point}")
        for spec in enabled:
            factory = registry.get(spec.name)
            if factory is None:
                raise ConfigError(f"{path}.plugins.{point}: plugin {spec.name!r} is not "
                                  "registered")
        specific = {s.name for s in enabled}
        expanded: list[PluginSpec] = []
        overrides: list[PluginSpec] = []
        if "*" not in disabled:
            for spec in multi:
                if not callable(getattr(registry[spec.name], method, None)):
                    continue
                if spec.name in disabled:
                    continue
                if spec.name in specific:
                    overrides.append(next(s for s in enabled if s.name == spec.name))
                    continue
                expanded.append(spec)
        override_names = {s.name for s in overrides}
        rest = [s for s in enabled if s.name not in override_names]
        final = overrides + expanded + rest
        names = [s.name for s in final]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"{path}.plugins.{point}: plugin {dup!r} already registered")
        if final:
            resolved[point] = final
    args: dict[str, Mapping[str, Any]] = {}
    raw_args = obj.get("pluginConfig") or []
    if not isinstance(raw_args, list):
        raise ConfigError(f"{path}.pluginConfig: expected a list")
    for i, pc in enumerate(raw_args):
        pc = _check_keys(pc, {"name", "args"}, f"{path}.pluginConfig[{i}]")
        pname = pc.get("name")
        if not isinstance(pname, str) or not pname:
            raise ConfigError(f"{path}.pluginConfig[{i}].name: Required value")
        if pname in args:
            raise ConfigError(f"{path}.pluginConfig[{i}]: Duplicate value: {pname!r}")
        pargs = pc.get("args") or {}
        if not isinstance(pargs, Mapping):
            raise ConfigError(f"{path}.pluginConfig[{i}].args: expected an object")
        args[pname] = {k: v for k, v in pargs.items() if k not in ("apiVersion", "kind")}
    pct = obj.get("percentageOfNodesToScore")
    if pct is not None:
        pct = _int(pct, f"{path}.percentageOfNodesToScore", 0, 100)
    else:
        pct = default_percentage
    return ProfileConfig(scheduler_name=name, plugins=resolved, plugin_args=args,
                         percentage_of_nodes_to_score=pct)


def parse_config(doc: Any, *, registry: Mapping[str, Any] | None = None) -> SchedulerConfig:
    """A KubeSchedulerConfiguration document (already parsed YAML/JSON)."""
    obj = _check_keys(doc, {"apiVersion", "kind", "profiles", "percentageOfNodesToScore",
                            "podInitialBackoffSeconds", "podMaxBackoffSeconds",
                            "leaderElection", "parallelism", "clientConnection",
                            "extenders", "delayCacheUntilActive",
                            "enableProfiling", "enableContentionProfiling"}, "")
    api_version = obj.get("apiVersion", API_VERSION)
    if api_version != API_VERSION:
        raise ConfigError(f"apiVersion: Unsupported value: {api_version!r}: supported values: "
                          f"{API_VERSION!r}")
    kind = obj.get("kind", "KubeSchedulerConfiguration")
    if kind != "KubeSchedulerConfiguration":
        raise ConfigError(f"kind: Unsupported value: {kind!r}: supported values: "
                          "'KubeSchedulerConfiguration'")
    if obj.get("extenders"):
        raise ConfigError("extenders: not supported by pilothouse (use an out-of-tree plugin)")
    cfg = SchedulerConfig()
    pct = obj.get("percentageOfNodesToScore")
    if pct is not None:
        cfg.percentage_of_nodes_to_score = _int(pct, "percentageOfNodesToScore", 0, 100)
    if "podInitialBackoffSeconds" in obj:
        cfg.pod_initial_backoff_seconds = float(
            _int(obj["podInitialBackoffSeconds"], "podInitialBackoffSeconds", 1, 2**31))
    if "podMaxBackoffSeconds" in obj:
        cfg.pod_max_backoff_seconds = float(
            _int(obj["podMaxBackoffSeconds"], "podMaxBackoffSeconds", 1, 2**31))
    if cfg.pod_max_backoff_seconds < cfg.pod_initial_backoff_seconds:
        raise ConfigError("podMaxBackoffSeconds: Invalid value: must be greater than or equal "
                          "to PodInitialBackoffSeconds")
    if "parallelism" in obj:
        cfg.parallelism = _int(obj["parallelism"], "parallelism", 1, 2**31)
    le = _check_keys(obj.get("leaderElection"),
                     {"leaderElect", "leaseDuration", "renewDeadline", "retryPeriod",
                      "resourceLock", "resourceName", "resourceNamespace"}, "leaderElection")
    lec = cfg.leader_election
    if "leaderElect" in le:
        lec.leader_elect = bool(le["leaderElect"])
    if "leaseDuration" in le:
        lec.lease_duration = _duration(le["leaseDuration"], "leaderElection.leaseDuration")
    if "renewDeadline" in le:
        lec.renew_deadline = _duration(le["renewDeadline"], "leaderElection.renewDeadline")
    if "retryPeriod" in le:
        lec.retry_period = _duration(le["retryPeriod"], "leaderElection.retryPeriod")
    lec.resource_name = str(le.get("resourceName", lec.resource_name))
    lec.resource_namespace = str(le.get("resourceNamespace", lec.resource_namespace))
    if lec.renew_deadline >= lec.lease_duration:
        raise ConfigError("leaderElection.leaseDuration: Invalid value: must be greater than "
                          "renewDeadline")
    profiles = obj.get("profiles")
    if profiles is None:
        profiles = [{}]
    if not isinstance(profiles, list) or not profiles:
        raise ConfigError("profiles: Required value: at least one profile")
    seen: set[str] = set()
    for i, p in enumerate(profiles):
        prof = resolve_profile(p, path=f"profiles[{i}]", registry=registry,
                               default_percentage=cfg.percentage_of_nodes_to_score)
        if prof.scheduler_name in seen:
            raise ConfigError(f"profiles[{i}].schedulerName: Duplicate value: "
                              f"{prof.scheduler_name!r}")
        seen.add(prof.scheduler_name)
        qs = prof.plugins.get("queueSort", [])
        if i > 0 and [s.name for s in qs] != [
                s.name for s in cfg.profiles[0].plugins.get("queueSort", [])]:
            raise ConfigError(f"profiles[{i}].plugins.queueSort: Invalid value: must be the "
                              "same for all profiles")
        cfg.profiles.append(prof)
    return cfg


def load_config(path: str | Path, *, registry: Mapping[str, Any] | None = None,
                ) -> SchedulerConfig:
    """Read and parse a configuration file; errors name the file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read scheduler config {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_config(doc, registry=registry)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def default_config(*, registry: Mapping[str, Any] | None = None) -> SchedulerConfig:
    return parse_config({}, registry=registry)
