"""Shared validators, worded as Kubernetes words them.

Two layers, as in k8s.io/apimachinery:

- ``is_*`` functions check one value and return a list of problem strings
  (``IsDNS1123Label`` and friends): the detail part of a message.
- Cause builders (``required``, ``invalid``, ``not_supported``, ...) turn a
  field path and a detail into a :class:`Cause` whose message reads like
  Kubernetes' ``field.Error.ErrorBody()`` (``Invalid value: "Foo": a lowercase
  RFC 1123 label must ...``), and ``validate_*`` functions return causes.

Field paths are plain strings built the way ``field.Path`` prints them:
``spec.containers[0].ports[1].name``, ``metadata.labels``,
``spec.containers[0].resources.limits[cpu]``.

Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from pilothouse.api.quantity import Quantity, QuantityError, parse_quantity
from pilothouse.api.selectors import validate_label_key, validate_label_value
from pilothouse.services.apiserver.errors import Cause

NameValidator = Callable[[str, bool], list[str]]

# -- field.ErrorType names (the ``reason`` of a cause) ---------------------------------------

NOT_FOUND: Final = "FieldValueNotFound"
REQUIRED: Final = "FieldValueRequired"
DUPLICATE: Final = "FieldValueDuplicate"
INVALID: Final = "FieldValueInvalid"
NOT_SUPPORTED: Final = "FieldValueNotSupported"
FORBIDDEN: Final = "FieldValueForbidden"
TOO_LONG: Final = "FieldValueTooLong"
TOO_MANY: Final = "FieldValueTooMany"
TYPE_INVALID: Final = "FieldValueTypeInvalid"

FIELD_IMMUTABLE: Final = "field is immutable"


def go_value(value: Any) -> str:
    """How a value is shown in a message (Go's ``%q`` for strings, ``%v`` for numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, Quantity):
        return str(value)
    if isinstance(value, list | tuple):
        return "[]string{" + ", ".join(go_value(v) for v in value) + "}"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{go_value(k)}:{go_value(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return str(value)


def required(path: str, detail: str = "") -> Cause:
    return Cause(REQUIRED, "Required value" + (f": {detail}" if detail else ""), path)


def invalid(path: str, value: Any, detail: str) -> Cause:
    body = f"Invalid value: {go_value(value)}"
    return Cause(INVALID, body + (f": {detail}" if detail else ""), path)


def not_supported(path: str, value: Any, valid: Iterable[str]) -> Cause:
    quoted = ", ".join(json.dumps(v) for v in valid)
    return Cause(NOT_SUPPORTED,
                 f"Unsupported value: {go_value(value)}: supported values: {quoted}", path)


def duplicate(path: str, value: Any) -> Cause:
    return Cause(DUPLICATE, f"Duplicate value: {go_value(value)}", path)


def forbidden(path: str, detail: str) -> Cause:
    return Cause(FORBIDDEN, f"Forbidden: {detail}", path)


def not_found(path: str, value: Any) -> Cause:
    return Cause(NOT_FOUND, f"Not found: {go_value(value)}", path)


def too_long(path: str, max_length: int) -> Cause:
    unit = "byte" if max_length == 1 else "bytes"
    return Cause(TOO_LONG, f"Too long: may not be more than {max_length} {unit}", path)


def too_many(path: str, actual: int, maximum: int) -> Cause:
    return Cause(TOO_MANY, f"Too many: {actual}: must have at most {maximum} items", path)


def immutable(path: str, value: Any) -> Cause:
    return invalid(path, value, FIELD_IMMUTABLE)


# -- value checks (IsDNS1123Label, IsQualifiedName, ...) -------------------------------------

def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Kubernetes' ``RegexError`` wording, double space included."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MSG: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_LABEL_MAX: Final = 63
DNS1123_SUBDOMAIN_FMT: Final = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_MAX: Final = 253
DNS1035_LABEL_FMT: Final = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_MSG: Final = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character"
)
_DNS1123_LABEL_RE: Final = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE: Final = re.compile(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE: Final = re.compile(DNS1035_LABEL_FMT)


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(max_len_error(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        errs.append(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(max_len_error(DNS1123_LABEL_MAX))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label key / annotation key / finalizer: ``[prefix/]name``."""
    return validate_label_key(value)


def is_label_value(value: str) -> list[str]:
    return validate_label_value(value)


def _mask_trailing_dash(name: str) -> str:
    # generateName prefixes may end in '-': the random suffix follows it.
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def is_valid_path_segment_name(name: str, prefix: bool = False) -> list[str]:
    """Names that only need to be one URL path segment (RBAC objects)."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    errs = []
    for bad in ("/", "%"):
        if bad in name:
            errs.append(f"may not contain '{bad}'")
    return errs


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


_PORT_NAME_CHARS: Final = re.compile("[-a-z0-9]+")
_HAS_LETTER: Final = re.compile("[a-z]")


def is_valid_port_name(name: str) -> list[str]:
    """An IANA_SVC_NAME: at most 15 characters, lowercase letters, digits and single hyphens."""
    errs = []
    if len(name) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARS.fullmatch(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and not _HAS_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


ENV_VAR_NAME_FMT: Final = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_NAME_RE: Final = re.compile(ENV_VAR_NAME_FMT)


def is_env_var_name(name: str) -> list[str]:
    errs = []
    if not _ENV_VAR_NAME_RE.fullmatch(name):
        errs.append(regex_error(
            "a valid environment variable name must consist of alphabetic characters, digits, "
            "'_', '-', or '.', and must not start with a digit",
            ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    errs.extend(_path_traversal(name))
    return errs


CONFIG_KEY_FMT: Final = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE: Final = re.compile(CONFIG_KEY_FMT)


def _path_traversal(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_config_map_key(key: str) -> list[str]:
    """A ConfigMap/Secret data key (it becomes a file name in a volume)."""
    errs = []
    if len(key) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_KEY_RE.fullmatch(key):
        errs.append(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    errs.extend(_path_traversal(key))
    return errs


def is_valid_ip(value: str) -> list[str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


PERCENT_FMT: Final = "[0-9]+%"
_PERCENT_RE: Final = re.compile(PERCENT_FMT)


def is_percent(value: str) -> list[str]:
    if _PERCENT_RE.fullmatch(value):
        return []
    return [regex_error("a valid percent string must be a numeric string followed by an "
                        "ending '%'", PERCENT_FMT, "1%", "93%")]


# -- cause-returning validators ---------------------------------------------------------------

def each(path: str, value: Any, messages: Iterable[str]) -> list[Cause]:
    """One Invalid cause per message."""
    return [invalid(path, value, m) for m in messages]


def validate_dns1123_label(value: str, path: str) -> list[Cause]:
    return each(path, value, is_dns1123_label(value))


def validate_dns1123_subdomain(value: str, path: str) -> list[Cause]:
    return each(path, value, is_dns1123_subdomain(value))


def validate_nonnegative(value: int, path: str) -> list[Cause]:
    return [] if value >= 0 else [invalid(path, value, "must be greater than or equal to 0")]


def validate_positive(value: int, path: str) -> list[Cause]:
    return [] if value > 0 else [invalid(path, value, "must be greater than 0")]


def validate_labels(labels: Mapping[str, str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in sorted(labels):
        causes.extend(each(path, key, is_qualified_name(key)))
        causes.extend(each(path, labels[key], is_label_value(labels[key])))
    return causes


TOTAL_ANNOTATION_SIZE_LIMIT: Final = 256 * 1024


def validate_annotations(annotations: Mapping[str, str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in sorted(annotations):
        causes.extend(each(path, key, is_qualified_name(key.lower())))
    total = sum(len(k) + len(v) for k, v in annotations.items())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def validate_label_selector(selector: Any, path: str, *, allow_empty: bool = True) -> list[Cause]:
    """A ``meta.v1.LabelSelector`` message (``ValidateLabelSelector``)."""
    causes: list[Cause] = []
    labels_path = f"{path}.matchLabels"
    causes.extend(validate_labels(dict(selector.matchLabels), labels_path))
    for i, expr in enumerate(selector.matchExpressions):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.operator
        if op in ("In", "NotIn"):
            if not expr.values:
                causes.append(required(f"{epath}.values",
                                       "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if expr.values:
                causes.append(forbidden(
                    f"{epath}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(invalid(f"{epath}.operator", op, "not a valid selector operator"))
        causes.extend(each(f"{epath}.key", expr.key, is_qualified_name(expr.key)))
    return causes


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a ``meta.v1.LabelSelector`` message selects ``labels`` (empty selects all)."""
    for key, value in selector.matchLabels.items():
        if labels.get(key) != value:
            return False
    for expr in selector.matchExpressions:
        present = expr.key in labels
        if expr.operator == "In" and (not present or labels[expr.key] not in expr.values):
            return False
        if expr.operator == "NotIn" and present and labels[expr.key] in expr.values:
            return False
        if expr.operator == "Exists" and not present:
            return False
        if expr.operator == "DoesNotExist" and present:
            return False
    return True


def selector_is_empty(selector: Any) -> bool:
    return not selector.matchLabels and not selector.matchExpressions


def quantity_of(value: Any) -> Quantity | None:
    """The parsed ``resource.Quantity`` message (``None`` when it does not parse)."""
    try:
        return parse_quantity(value.string)
    except QuantityError:
        return None


def validate_nonnegative_quantity(value: Any, path: str) -> list[Cause]:
    q = quantity_of(value)
    if q is None:
        return [invalid(path, value.string, "must be a valid quantity")]
    if q.sign() < 0:
        return [invalid(path, str(q), "must be greater than or equal to 0")]
    return []


STANDARD_CONTAINER_RESOURCES: Final = frozenset({"cpu", "memory", "ephemeral-storage"})


def _is_container_resource_name(name: str) -> bool:
    if name in STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-"):
        return True
    # Extended resources: fully qualified, outside the kubernetes.io domain.
    if "/" not in name or is_qualified_name(name):
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def validate_resource_requirements(resources: Any, path: str) -> list[Cause]:
    """Container ``resources``: known names, quantities >= 0, requests <= limits."""
    causes: list[Cause] = []
    limits: dict[str, Quantity] = {}
    for name in sorted(resources.limits):
        qpath = f"{path}.limits[{name}]"
        if not _is_container_resource_name(name):
            causes.append(invalid(qpath, name, "must be a standard resource for containers"))
        more = validate_nonnegative_quantity(resources.limits[name], qpath)
        causes.extend(more)
        q = quantity_of(resources.limits[name])
        if not more and q is not None:
            limits[name] = q
    for name in sorted(resources.requests):
        qpath = f"{path}.requests[{name}]"
        if not _is_container_resource_name(name):
            causes.append(invalid(qpath, name, "must be a standard resource for containers"))
        more = validate_nonnegative_quantity(resources.requests[name], qpath)
        causes.extend(more)
        q = quantity_of(resources.requests[name])
        if more or q is None:
            continue
        limit = limits.get(name)
        if limit is not None and q > limit:
            causes.append(invalid(qpath, str(q),
                                  f"must be less than or equal to {name} limit of {limit}"))
    return causes


def validate_int_or_percent(value: Any, path: str) -> list[Cause]:
    """maxSurge/maxUnavailable-style int-or-string: int >= 0, or ``N%`` with N <= 100."""
    if value.type == 1:
        errs = is_percent(value.strVal)
        if errs:
            return each(path, value.strVal, errs)
        if int(value.strVal[:-1]) > 100:
            return [invalid(path, value.strVal, "must not be greater than 100%")]
        return []
    return validate_nonnegative(value.intVal, path)


def unique_names(items: Sequence[Any], path: str, attr: str = "name") -> list[Cause]:
    """Duplicate causes for repeated ``attr`` values (``spec.volumes[1].name``)."""
    seen: set[str] = set()
    causes = []
    for i, item in enumerate(items):
        value = getattr(item, attr)
        if value in seen:
            causes.append(duplicate(f"{path}[{i}].{attr}", value))
        seen.add(value)
    return causes


# -- ObjectMeta ---------------------------------------------------------------------------------

_FINALIZER_ORPHAN: Final = "orphan"
_FINALIZER_FOREGROUND: Final = "foregroundDeletion"


def validate_owner_references(refs: Sequence[Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    controllers = []
    for i, ref in enumerate(refs):
        rpath = f"{path}[{i}]"
        if not ref.apiVersion:
            causes.append(invalid(f"{rpath}.apiVersion", ref.apiVersion,
                                  "version must not be empty"))
        if not ref.kind:
            causes.append(invalid(f"{rpath}.kind", ref.kind, "kind must not be empty"))
        if not ref.name:
            causes.append(invalid(f"{rpath}.name", ref.name, "name must not be empty"))
        if not ref.uid:
            causes.append(invalid(f"{rpath}.uid", ref.uid, "uid must not be empty"))
        if ref.HasField("controller") and ref.controller:
            controllers.append(f"{ref.kind}/{ref.name}")
    if len(controllers) > 1:
        causes.append(invalid(
            path, [], "Only one reference can have Controller set to true. Found \"true\" in "
            f"references for {' and '.join(controllers)}"))
    return causes


def validate_finalizers(finalizers: Sequence[str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, name in enumerate(finalizers):
        causes.extend(each(f"{path}[{i}]", name, is_qualified_name(name)))
    if _FINALIZER_ORPHAN in finalizers and _FINALIZER_FOREGROUND in finalizers:
        causes.append(invalid(path, list(finalizers),
                              "finalizer orphan and foregroundDeletion cannot be both set"))
    return causes


def validate_object_meta(meta: Any, namespaced: bool, *,
                         name_validator: NameValidator = name_is_dns_subdomain,
                         path: str = "metadata") -> list[Cause]:
    """Kubernetes ``ValidateObjectMeta``: name/generateName, namespace, labels,
    annotations, ownerReferences, finalizers. ``meta`` is a ``meta.v1.ObjectMeta``."""
    causes: list[Cause] = []
    if meta.generateName:
        causes.extend(each(f"{path}.generateName", meta.generateName,
                           name_validator(meta.generateName, True)))
    if not meta.name:
        causes.append(required(f"{path}.name", "name or generateName is required"))
    else:
        causes.extend(each(f"{path}.name", meta.name, name_validator(meta.name, False)))
    if namespaced:
        if not meta.namespace:
            causes.append(required(f"{path}.namespace"))
        else:
            causes.extend(each(f"{path}.namespace", meta.namespace,
                               is_dns1123_label(meta.namespace)))
    elif meta.namespace:
        causes.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    causes.extend(validate_nonnegative(meta.generation, f"{path}.generation"))
    causes.extend(validate_labels(dict(meta.labels), f"{path}.labels"))
    causes.extend(validate_annotations(dict(meta.annotations), f"{path}.annotations"))
    causes.extend(validate_owner_references(meta.ownerReferences, f"{path}.ownerReferences"))
    causes.extend(validate_finalizers(meta.finalizers, f"{path}.finalizers"))
    return causes


def validate_object_meta_update(new: Any, old: Any, path: str = "metadata") -> list[Cause]:
    """Kubernetes ``ValidateObjectMetaUpdate``: what an update may never change."""
    causes: list[Cause] = []
    for name in ("name", "namespace", "uid"):
        if getattr(new, name) != getattr(old, name):
            causes.append(immutable(f"{path}.{name}", getattr(new, name)))
    if new.creationTimestamp != old.creationTimestamp:
        causes.append(immutable(f"{path}.creationTimestamp", "creationTimestamp"))
    if new.HasField("deletionTimestamp") and old.HasField("deletionTimestamp") \
            and new.deletionTimestamp != old.deletionTimestamp:
        causes.append(immutable(f"{path}.deletionTimestamp", "deletionTimestamp"))
    causes.extend(validate_nonnegative(new.generation, f"{path}.generation"))
    if new.generation < old.generation:
        causes.append(invalid(f"{path}.generation", new.generation,
                              "must not be decremented"))
    return causes
