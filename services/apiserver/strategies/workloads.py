"""What every pod-template workload shares: template defaults and validation,
the selector rules, and the selector-immutability check of apps/v1."""

from __future__ import annotations

from typing import Any

from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies.pods import default_pod_spec, validate_pod_spec
from pilothouse.services.apiserver.validation import (
    forbidden,
    go_value,
    invalid,
    not_supported,
    required,
    selector_is_empty,
    selector_matches,
    validate_annotations,
    validate_label_selector,
    validate_labels,
    validate_nonnegative,
)


def selector_value(selector: Any) -> str:
    """A label selector shown in a message (Go prints the struct)."""
    labels = go_value(dict(selector.matchLabels)) if selector.matchLabels \
        else "map[string]string(nil)"
    exprs = ", ".join(
        f'{{Key:{go_value(e.key)}, Operator:{go_value(e.operator)}, '
        f'Values:{go_value(list(e.values))}}}' for e in selector.matchExpressions)
    exprs_text = f"[]v1.LabelSelectorRequirement{{{exprs}}}" if exprs \
        else "[]v1.LabelSelectorRequirement(nil)"
    return f"&v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs_text}}}"


class _Shown:
    """A value whose message text is already formatted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def default_template(template: Any) -> None:
    """Pod-template defaults (``SetDefaults_PodSpec`` through the template)."""
    default_pod_spec(template.spec)


def validate_template(template: Any, path: str, *,
                      restart_policies: tuple[str, ...] | None = ("Always",),
                      allow_active_deadline: bool = False) -> list[Cause]:
    causes: list[Cause] = []
    meta = template.metadata
    causes.extend(validate_labels(dict(meta.labels), f"{path}.metadata.labels"))
    causes.extend(validate_annotations(dict(meta.annotations), f"{path}.metadata.annotations"))
    causes.extend(validate_pod_spec(template.spec, f"{path}.spec"))
    policy = template.spec.restartPolicy
    if restart_policies is not None and policy and policy not in restart_policies:
        causes.append(not_supported(f"{path}.spec.restartPolicy", policy, restart_policies))
    if not allow_active_deadline and template.spec.HasField("activeDeadlineSeconds"):
        causes.append(forbidden(f"{path}.spec.activeDeadlineSeconds",
                                "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return causes


def validate_selector_and_template(spec: Any, path: str, word: str) -> list[Cause]:
    """``selector`` present, valid, non-empty, and matching the template's labels."""
    causes: list[Cause] = []
    if not spec.HasField("selector"):
        return [required(f"{path}.selector")]
    selector = spec.selector
    causes.extend(validate_label_selector(selector, f"{path}.selector"))
    if selector_is_empty(selector):
        causes.append(invalid(f"{path}.selector", _Shown(selector_value(selector)),
                              f"empty selector is invalid for {word}"))
    elif not causes:
        labels = dict(spec.template.metadata.labels)
        if not selector_matches(selector, labels):
            causes.append(invalid(f"{path}.template.metadata.labels", labels,
                                  "`selector` does not match template `labels`"))
    return causes


def validate_counts(spec: Any, path: str, names: tuple[str, ...]) -> list[Cause]:
    causes: list[Cause] = []
    for name in names:
        if name in spec.DESCRIPTOR.fields_by_name and spec.HasField(name):
            causes.extend(validate_nonnegative(getattr(spec, name), f"{path}.{name}"))
    return causes


def selector_immutable(new: Any, old: Any, path: str) -> list[Cause]:
    if new.selector != old.selector or new.HasField("selector") != old.HasField("selector"):
        return [invalid(f"{path}.selector", _Shown(selector_value(new.selector)),
                        "field is immutable")]
    return []
