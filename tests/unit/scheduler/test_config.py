"""KubeSchedulerConfiguration parsing: defaults, multiPoint expansion, overrides, errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.services.scheduler.config import ConfigError, load_config, parse_config


def names(cfg: Any, point: str, profile: int = 0) -> list[str]:
    return [s.name for s in cfg.profiles[profile].plugins.get(point, [])]


def weights(cfg: Any, profile: int = 0) -> dict[str, int]:
    return {s.name: s.weight for s in cfg.profiles[profile].plugins.get("score", [])}


def test_defaults_are_kubernetes_defaults() -> None:
    cfg = parse_config({})
    assert [p.scheduler_name for p in cfg.profiles] == ["default-scheduler"]
    assert names(cfg, "filter") == ["NodeUnschedulable", "NodeName", "TaintToleration",
                                    "NodeAffinity", "NodePorts", "NodeResourcesFit",
                                    "PodTopologySpread", "InterPodAffinity"]
    assert weights(cfg) == {"TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesFit": 1,
                            "PodTopologySpread": 2, "InterPodAffinity": 2,
                            "NodeResourcesBalancedAllocation": 1, "ImageLocality": 1}
    assert names(cfg, "postFilter") == ["DefaultPreemption"]
    assert (cfg.pod_initial_backoff_seconds, cfg.pod_max_backoff_seconds) == (1.0, 10.0)
    assert cfg.percentage_of_nodes_to_score is None


DOC = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
leaderElection: {leaderElect: false}
profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packer
  percentageOfNodesToScore: 70
  plugins:
    score:
      disabled: [{name: NodeResourcesBalancedAllocation}]
      enabled: [{name: ImageLocality, weight: 5}]
    filter:
      disabled: [{name: TaintToleration}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy: {type: MostAllocated}
"""


def test_profiles_overrides_and_plugin_args() -> None:
    cfg = parse_config(yaml.safe_load(DOC))
    assert [p.scheduler_name for p in cfg.profiles] == ["default-scheduler", "bin-packer"]
    assert cfg.profiles[0].percentage_of_nodes_to_score == 30
    assert cfg.profiles[1].percentage_of_nodes_to_score == 70
    assert "NodeResourcesBalancedAllocation" not in names(cfg, "score", 1)
    assert "TaintToleration" not in names(cfg, "filter", 1)
    assert "TaintToleration" in names(cfg, "score", 1)  # disabled only at filter
    assert names(cfg, "score", 1)[0] == "ImageLocality"  # explicit overrides come first
    assert weights(cfg, 1)["ImageLocality"] == 5
    assert cfg.profiles[1].plugin_args["NodeResourcesFit"] == {
        "scoringStrategy": {"type": "MostAllocated"}}
    assert cfg.leader_election.leader_elect is False


def test_disable_all_with_star() -> None:
    cfg = parse_config({"profiles": [{"plugins": {"score": {"disabled": [{"name": "*"}]}}}]})
    assert names(cfg, "score") == []
    assert names(cfg, "filter")  # other points keep their defaults


def test_multipoint_reconfigures_default_in_place() -> None:
    cfg = parse_config({"profiles": [{"plugins": {"multiPoint": {"enabled": [
        {"name": "TaintToleration", "weight": 9}]}}}]})
    assert weights(cfg)["TaintToleration"] == 9
    assert names(cfg, "filter").index("TaintToleration") == 2


@pytest.mark.parametrize(("doc", "message"), [
    pytest.param({"profiles": [{"schedulerName": "a"}, {"schedulerName": "a"}]},
                 "Duplicate value", id="duplicate-profile"),
    pytest.param({"profiles": [{"plugins": {"filter": {"enabled": [{"name": "Nope"}]}}}]},
                 "'Nope' is not registered", id="unknown-plugin"),
    pytest.param({"profiles": [{"plugins": {"filter": {"enabled": [
        {"name": "NodeName"}]}, "multiPoint": {"enabled": [{"name": "NodeName"}]}}}]},
        "", id="no-error-for-override"),
    pytest.param({"profiles": [{"plugins": {"filtr": {}}}]}, 'unknown field "profiles[0].plugins'
                 '.filtr"', id="unknown-field"),
    pytest.param({"percentageOfNodesToScore": 101}, "not in valid range", id="percentage"),
    pytest.param({"apiVersion": "kubescheduler.config.k8s.io/v1beta3"}, "Unsupported value",
                 id="api-version"),
    pytest.param({"podInitialBackoffSeconds": 20}, "podMaxBackoffSeconds", id="backoff"),
    pytest.param({"profiles": []}, "at least one profile", id="no-profiles"),
])
def test_bad_configs(doc: dict[str, Any], message: str) -> None:
    if not message:
        parse_config(doc)
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(doc)


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(DOC)
    assert len(load_config(good).profiles) == 2
