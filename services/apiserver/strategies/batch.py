"""batch/v1: Jobs and CronJobs.

A Job gets the generated selector of Kubernetes' job strategy on create
(``batch.kubernetes.io/controller-uid`` from ``metadata.uid``, which the registry
sets before ``prepare_for_create``) unless ``manualSelector`` is true. A
CronJob's schedule is checked with the standard five-field cron grammar plus
the ``@hourly``-style descriptors and ``@every <duration>``; ``timeZone`` must
name a zone of the tz database.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any, Final

from google.protobuf.message import Message

from pilothouse.api.codec import parse_duration
from pilothouse.gen.k8s.batch.v1 import batch_pb2
from pilothouse.services.apiserver.errors import Cause
from pilothouse.services.apiserver.strategies._common import KindStrategy, set_default
from pilothouse.services.apiserver.strategies.workloads import (
    _Shown,
    default_template,
    selector_value,
    validate_counts,
    validate_selector_and_template,
    validate_template,
)
from pilothouse.services.apiserver.strategy import StrategyContext, register_strategy
from pilothouse.services.apiserver.validation import (
    FIELD_IMMUTABLE,
    each,
    immutable,
    invalid,
    max_len_error,
    not_supported,
    required,
    validate_annotations,
    validate_labels,
    validate_positive,
)

JOB_RESTART_POLICIES: Final = ("OnFailure", "Never")
COMPLETION_MODES: Final = ("NonIndexed", "Indexed")
CONCURRENCY_POLICIES: Final = ("Allow", "Forbid", "Replace")
POD_REPLACEMENT_POLICIES: Final = ("TerminatingOrFailed", "Failed")
LABEL_CONTROLLER_UID: Final = "batch.kubernetes.io/controller-uid"
LABEL_JOB_NAME: Final = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID: Final = "controller-uid"
LEGACY_JOB_NAME: Final = "job-name"
CRONJOB_NAME_MAX: Final = 52
_MAX_INT32: Final = 2**31 - 1


# -- jobs -----------------------------------------------------------------------------------------

def default_job_spec(spec: Any) -> None:
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
        spec.parallelism = 1
    set_default(spec, "parallelism", 1)
    if not spec.HasField("backoffLimit"):
        spec.backoffLimit = _MAX_INT32 if spec.HasField("backoffLimitPerIndex") else 6
    set_default(spec, "completionMode", "NonIndexed")
    set_default(spec, "suspend", False)
    if not spec.HasField("podReplacementPolicy"):
        spec.podReplacementPolicy = "Failed" if spec.HasField("podFailurePolicy") \
            else "TerminatingOrFailed"
    set_default(spec, "manualSelector", False)
    if spec.HasField("podFailurePolicy"):
        for rule in spec.podFailurePolicy.rules:
            for pattern in rule.onPodConditions:
                set_default(pattern, "status", "True")
    default_template(spec.template)


def generate_selector(job: batch_pb2.Job) -> None:
    """The selector and template labels Kubernetes generates from the Job's uid."""
    uid, name = job.metadata.uid, job.metadata.name
    labels = job.spec.template.metadata.labels
    for key, value in ((LABEL_CONTROLLER_UID, uid), (LABEL_JOB_NAME, name),
                       (LEGACY_CONTROLLER_UID, uid), (LEGACY_JOB_NAME, name)):
        if key not in labels:
            labels[key] = value
    if not job.spec.HasField("selector"):
        job.spec.selector.matchLabels[LABEL_CONTROLLER_UID] = uid


def validate_job_spec(spec: Any, path: str, *, generated_selector: bool) -> list[Cause]:
    causes: list[Cause] = []
    causes.extend(validate_counts(spec, path, ("parallelism", "completions", "backoffLimit",
                                               "ttlSecondsAfterFinished")))
    if spec.HasField("activeDeadlineSeconds"):
        causes.extend(validate_positive(spec.activeDeadlineSeconds,
                                        f"{path}.activeDeadlineSeconds"))
    if spec.completionMode and spec.completionMode not in COMPLETION_MODES:
        causes.append(not_supported(f"{path}.completionMode", spec.completionMode,
                                    COMPLETION_MODES))
    elif spec.completionMode == "Indexed" and not spec.HasField("completions"):
        causes.append(required(f"{path}.completions",
                               "when completion mode is Indexed"))
    if spec.podReplacementPolicy and spec.podReplacementPolicy not in POD_REPLACEMENT_POLICIES:
        causes.append(not_supported(f"{path}.podReplacementPolicy", spec.podReplacementPolicy,
                                    POD_REPLACEMENT_POLICIES))
    if generated_selector:
        causes.extend(validate_selector_and_template(spec, path, "job"))
    else:
        # A job template's selector is generated on create; validate only what is given.
        causes.extend(validate_labels(dict(spec.template.metadata.labels),
                                      f"{path}.template.metadata.labels"))
    causes.extend(validate_template(spec.template, f"{path}.template",
                                    restart_policies=JOB_RESTART_POLICIES,
                                    allow_active_deadline=True))
    return causes


@register_strategy("batch", "jobs")
class JobStrategy(KindStrategy):
    clears_status_on_create = True

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, batch_pb2.Job)
        default_job_spec(obj.spec)
        template_labels = obj.spec.template.metadata.labels
        if template_labels and not obj.metadata.labels:
            obj.metadata.labels.update(template_labels)

    def prepare_for_create(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, batch_pb2.Job)
        super().prepare_for_create(obj, ctx)
        if not obj.spec.manualSelector:
            if obj.spec.HasField("selector"):
                # Validation refuses it: a user selector needs manualSelector.
                return
            generate_selector(obj)

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, batch_pb2.Job)
        causes = validate_job_spec(obj.spec, "spec", generated_selector=True)
        labels = obj.spec.selector.matchLabels
        if not obj.spec.manualSelector and obj.spec.HasField("selector") \
                and labels.get(LABEL_CONTROLLER_UID) != obj.metadata.uid:
            causes.append(invalid("spec.selector", _Shown(selector_value(obj.spec.selector)),
                                  "`selector` not auto-generated"))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(new, batch_pb2.Job) and isinstance(old, batch_pb2.Job)
        causes = validate_job_spec(new.spec, "spec", generated_selector=True)
        if new.spec.selector != old.spec.selector:
            causes.append(invalid("spec.selector", _Shown(selector_value(new.spec.selector)),
                                  FIELD_IMMUTABLE))
        if new.spec.completions != old.spec.completions and new.spec.completionMode != "Indexed":
            causes.append(immutable("spec.completions", new.spec.completions))
        if new.spec.completionMode != old.spec.completionMode:
            causes.append(immutable("spec.completionMode", new.spec.completionMode))
        # The template may change only while the job is suspended (and not yet started).
        if new.spec.template != old.spec.template and not old.spec.suspend:
            causes.append(invalid("spec.template", _Shown("core.PodTemplateSpec{...}"),
                                  FIELD_IMMUTABLE))
        return causes

    def field_set(self, obj: Message) -> dict[str, str]:
        assert isinstance(obj, batch_pb2.Job)
        return {"metadata.name": obj.metadata.name,
                "metadata.namespace": obj.metadata.namespace,
                "status.successful": str(obj.status.succeeded)}


# -- cron schedules ---------------------------------------------------------------------------

DESCRIPTORS: Final = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily",
                                "@midnight", "@hourly"})
_MONTHS: Final = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS: Final = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (minimum, maximum, names) for minute, hour, day of month, month, day of week.
_FIELDS: Final[tuple[tuple[int, int, dict[str, int]], ...]] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS))


def _parse_int(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"failed to parse int from {text}: strconv.Atoi: parsing "
                         f"{text!r}: invalid syntax".replace("'", '"'))
    return int(text)


def _check_range(expr: str, lo: int, hi: int, names: dict[str, int], *,
                 wildcard_ok: bool) -> None:
    range_part, *step_parts = expr.split("/")
    if len(step_parts) > 1:
        raise ValueError(f"too many slashes: {expr}")
    bounds = range_part.split("-")
    if len(bounds) > 2:
        raise ValueError(f"too many hyphens: {expr}")
    if range_part in ("*", "?") and (range_part == "*" or wildcard_ok):
        start, end = lo, hi
    else:
        start = _parse_int(bounds[0], names)
        end = _parse_int(bounds[1], names) if len(bounds) == 2 else start
    if step_parts:
        step = _parse_int(step_parts[0], {})
        if step <= 0:
            raise ValueError(f"step of range should be a positive number: {expr}")
    if start < lo:
        raise ValueError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise ValueError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")


def cron_errors(schedule: str) -> list[str]:
    """Problems with a CronJob schedule, in robfig/cron's words (what Kubernetes shows)."""
    text = schedule.strip()
    if not text:
        return ["empty spec string"]
    if text.startswith("@"):
        if text.startswith("@every "):
            try:
                if parse_duration(text[len("@every "):].strip()) <= 0:
                    raise ValueError
            except ValueError:
                return [f"failed to parse duration {text}"]
            return []
        if text in DESCRIPTORS:
            return []
        return [f"unrecognized descriptor: {text}"]
    fields = text.split()
    if fields and (fields[0].startswith("TZ=") or fields[0].startswith("CRON_TZ=")):
        fields = fields[1:]
    if len(fields) != 5:
        return [f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"]
    for i, (field_text, (lo, hi, names)) in enumerate(zip(fields, _FIELDS, strict=True)):
        try:
            for expr in field_text.split(","):
                _check_range(expr, lo, hi, names, wildcard_ok=i in (2, 4))
        except ValueError as exc:
            return [str(exc)]
    return []


def time_zone_errors(name: str) -> list[str]:
    if not name:
        return ["timeZone must be nil or non-empty string"]
    if name.lower() == "local":
        return ["timeZone must be an explicit time zone as defined in "
                "https://www.iana.org/time-zones"]
    if not re.fullmatch(r"[A-Za-z.\-_0-9+/]+", name) or ".." in name or name.startswith("/"):
        return [f"unknown time zone {name}"]
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return [f"unknown time zone {name}"]
    return []


@register_strategy("batch", "cronjobs")
class CronJobStrategy(KindStrategy):
    clears_status_on_create = True

    def default(self, obj: Message, ctx: StrategyContext) -> None:
        assert isinstance(obj, batch_pb2.CronJob)
        spec = obj.spec
        set_default(spec, "concurrencyPolicy", "Allow")
        set_default(spec, "suspend", False)
        set_default(spec, "successfulJobsHistoryLimit", 3)
        set_default(spec, "failedJobsHistoryLimit", 1)
        default_template(spec.jobTemplate.spec.template)

    def validate(self, obj: Message, ctx: StrategyContext) -> list[Cause]:
        assert isinstance(obj, batch_pb2.CronJob)
        spec = obj.spec
        causes: list[Cause] = []
        if len(obj.metadata.name) > CRONJOB_NAME_MAX:
            causes.append(invalid("metadata.name", obj.metadata.name,
                                  max_len_error(CRONJOB_NAME_MAX)))
        if not spec.schedule:
            causes.append(required("spec.schedule"))
        else:
            causes.extend(each("spec.schedule", spec.schedule, cron_errors(spec.schedule)))
            if "TZ" in spec.schedule:
                detail = ("cannot use both timeZone field and TZ or CRON_TZ in schedule"
                          if spec.HasField("timeZone") else
                          "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
                causes.append(invalid("spec.schedule", spec.schedule, detail))
        if spec.HasField("timeZone"):
            causes.extend(each("spec.timeZone", spec.timeZone, time_zone_errors(spec.timeZone)))
        if spec.concurrencyPolicy not in CONCURRENCY_POLICIES:
            causes.append(not_supported("spec.concurrencyPolicy", spec.concurrencyPolicy,
                                        CONCURRENCY_POLICIES))
        causes.extend(validate_counts(spec, "spec", ("startingDeadlineSeconds",
                                                     "successfulJobsHistoryLimit",
                                                     "failedJobsHistoryLimit")))
        template = spec.jobTemplate
        causes.extend(validate_labels(dict(template.metadata.labels),
                                      "spec.jobTemplate.metadata.labels"))
        causes.extend(validate_annotations(dict(template.metadata.annotations),
                                           "spec.jobTemplate.metadata.annotations"))
        causes.extend(validate_job_spec(template.spec, "spec.jobTemplate.spec",
                                        generated_selector=False))
        if template.spec.HasField("selector") and not template.spec.manualSelector:
            causes.append(invalid("spec.jobTemplate.spec.selector",
                                  _Shown(selector_value(template.spec.selector)),
                                  "`selector` will be auto-generated"))
        return causes

    def validate_update(self, new: Message, old: Message, ctx: StrategyContext) -> list[Cause]:
        return self.validate(new, ctx)
