"""Label selectors, field selectors and node selector terms, as Kubernetes evaluates them.

* :class:`LabelSelector` -- the ``?labelSelector=`` string grammar of ``k8s.io/apimachinery``
  ``pkg/labels`` (``a=b,c!=d,e in (x,y),f notin (z),g,!h,n>3``) and the API form
  (``matchLabels`` + ``matchExpressions``) of ``metav1.LabelSelector``.
* :class:`FieldSelector` -- the ``?fieldSelector=`` grammar of ``pkg/fields`` (``=``, ``==``,
  ``!=``; ``\\,`` ``\\=`` ``\\\\`` escapes) plus the per-resource table of fields the apiserver
  lets clients select on (:data:`SUPPORTED_FIELDS`).
* :func:`compile_node_selector` / :func:`node_selector_term_matches` -- core/v1 node selector
  terms (``In NotIn Exists DoesNotExist Gt Lt`` over labels, ``In NotIn`` over
  ``metadata.name``), with Kubernetes' rule that an empty or invalid term matches nothing.

Selectors run once per object of every list and watch, so each is compiled at construction
into a tuple of small predicates; ``matches`` does no parsing and no allocation beyond them.
Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2

__all__ = [
    "DEFAULT_SUPPORTED_FIELDS",
    "FIELD_ALIASES",
    "SUPPORTED_FIELDS",
    "CompiledNodeSelector",
    "CompiledNodeSelectorTerm",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Operator",
    "Requirement",
    "SelectorError",
    "compile_node_selector",
    "compile_node_selector_term",
    "escape_field_value",
    "field_error",
    "label_selector_from_api",
    "node_selector_matches",
    "node_selector_term_matches",
    "parse_field_selector",
    "parse_label_selector",
    "supported_fields",
    "unescape_field_value",
    "validate_label_key",
    "validate_label_selector",
    "validate_label_value",
]


class SelectorError(ValueError):
    """A selector that cannot be parsed or is invalid; the message says what and where."""


class Operator(enum.Enum):
    """Requirement operators, valued by their spelling in Kubernetes' ``selection`` package."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS: Final = "in, notin, =, ==, !=, gt, lt"

# -- label key / value validation (k8s.io/apimachinery/pkg/util/validation) ----------------

_QNAME_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE: Final = re.compile(_QNAME_FMT)
_QNAME_MSG: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_FMT: Final = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE: Final = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def validate_label_key(key: str) -> list[str]:
    """Problems with ``key`` as a label key (a qualified name, optionally ``prefix/``), or []."""
    errors: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errors.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                errors.append(
                    "prefix part "
                    + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
                )
    else:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not _QNAME_RE.fullmatch(name):
        errors.append(
            "name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def validate_label_value(value: str) -> list[str]:
    """Problems with ``value`` as a label value (empty, or a qualified name part), or []."""
    errors: list[str] = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if value and not _QNAME_RE.fullmatch(value):
        errors.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errors


def _go_quote(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def _invalid(path: str, value: object, detail: str) -> str:
    return f"{path}: Invalid value: {_go_quote(value)}: {detail}"


def _aggregate(errors: Sequence[str]) -> str:
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


# -- label requirements -------------------------------------------------------------------

_Labels = Mapping[str, str]
_Check = Callable[[_Labels], bool]
_INT64_RE: Final = re.compile(r"[+-]?[0-9]+")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def _parse_int64(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 64), or None when it would fail."""
    if not _INT64_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key <operator> values`` term of a label selector.

    ``values`` is sorted and deduplicated for set operators, as Kubernetes' parser stores it.
    Construct through :meth:`create` to validate.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def create(
        cls, key: str, operator: Operator, values: Iterable[str] = (), *, path: str = ""
    ) -> Requirement:
        """A validated requirement (Kubernetes ``NewRequirement``), or :class:`SelectorError`.

        ``path`` prefixes the field paths in messages (``spec.selector.matchExpressions[0]``).
        """
        vals = tuple(values)
        errors = _requirement_errors(key, operator, vals, path)
        if errors:
            raise SelectorError(_aggregate(errors))
        return cls(key, operator, vals)

    def matches(self, labels: _Labels) -> bool:
        """Whether ``labels`` satisfy this requirement."""
        return _compile_requirement(self)(labels)

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        joined = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op is Operator.IN:
            return f"{self.key} in ({joined})"
        if op is Operator.NOT_IN:
            return f"{self.key} notin ({joined})"
        symbol = {
            Operator.EQUALS: "=",
            Operator.DOUBLE_EQUALS: "==",
            Operator.NOT_EQUALS: "!=",
            Operator.GREATER_THAN: ">",
            Operator.LESS_THAN: "<",
        }[op]
        return f"{self.key}{symbol}{joined}"


def _join(path: str, child: str) -> str:
    return f"{path}.{child}" if path else child


def _requirement_errors(key: str, op: Operator, vals: tuple[str, ...], path: str) -> list[str]:
    errors: list[str] = []
    key_errors = validate_label_key(key)
    if key_errors:
        errors.append(_invalid(_join(path, "key"), key, "; ".join(key_errors)))
    values_path = _join(path, "values")
    if op in (Operator.IN, Operator.NOT_IN):
        if not vals:
            errors.append(
                _invalid(
                    values_path,
                    list(vals),
                    "for 'in', 'notin' operators, values set can't be empty",
                )
            )
    elif op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
        if len(vals) != 1:
            errors.append(
                _invalid(
                    values_path, list(vals), "exact-match compatibility requires one single value"
                )
            )
    elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        if vals:
            errors.append(
                _invalid(
                    values_path,
                    list(vals),
                    "values set must be empty for exists and does not exist",
                )
            )
    else:  # Gt, Lt
        if len(vals) != 1:
            errors.append(
                _invalid(
                    values_path,
                    list(vals),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                )
            )
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                errors.append(
                    _invalid(
                        f"{values_path}[{i}]",
                        v,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    )
                )
    for i, v in enumerate(vals):
        value_errors = validate_label_value(v)
        if value_errors:
            errors.append(_invalid(f"{values_path}[{i}][{key}]", v, "; ".join(value_errors)))
    return errors


def _compile_requirement(req: Requirement) -> _Check:
    key, op, vals = req.key, req.operator, req.values
    if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS) or (op is Operator.IN and len(vals) == 1):
        wanted = vals[0]
        missing = object()

        def equals(labels: _Labels) -> bool:
            return labels.get(key, missing) == wanted

        return equals
    if op is Operator.IN:
        allowed = frozenset(vals)

        def is_in(labels: _Labels) -> bool:
            value = labels.get(key)
            return value is not None and value in allowed

        return is_in
    if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
        forbidden = frozenset(vals)

        def not_in(labels: _Labels) -> bool:
            value = labels.get(key)
            return value is None or value not in forbidden

        return not_in
    if op is Operator.EXISTS:
        return lambda labels: key in labels
    if op is Operator.DOES_NOT_EXIST:
        return lambda labels: key not in labels
    bound = _parse_int64(vals[0]) if len(vals) == 1 else None
    if bound is None:
        return lambda labels: False
    greater = op is Operator.GREATER_THAN

    def compare(labels: _Labels) -> bool:
        value = labels.get(key)
        if value is None:
            return False
        number = _parse_int64(value)
        if number is None:
            return False
        return number > bound if greater else number < bound

    return compare


# -- the label selector --------------------------------------------------------------------


class LabelSelector:
    """A compiled label selector: an AND of :class:`Requirement` s, or "nothing".

    ``LabelSelector.everything()`` (no requirements) matches every object;
    ``LabelSelector.nothing()`` (what a null API selector means) matches none.
    ``str()`` gives Kubernetes' canonical string form, which parses back to an equal selector.
    """

    __slots__ = ("_checks", "_nothing", "_requirements")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        reqs = sorted(requirements, key=lambda r: r.key)  # stable: equal keys keep their order
        self._requirements: tuple[Requirement, ...] = tuple(reqs)
        self._nothing = nothing
        self._checks: tuple[_Check, ...] = tuple(_compile_requirement(r) for r in reqs)

    @classmethod
    def everything(cls) -> LabelSelector:
        """The selector that matches all objects."""
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        """The selector that matches no object (a null ``LabelSelector`` in the API)."""
        return cls(nothing=True)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """See :func:`parse_label_selector`."""
        return parse_label_selector(text)

    @classmethod
    def from_set(cls, labels: Mapping[str, str]) -> LabelSelector:
        """``key=value`` for every entry (Kubernetes ``ValidatedSelectorFromSet``)."""
        return cls(Requirement.create(k, Operator.EQUALS, (v,)) for k, v in sorted(labels.items()))

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        """The requirements, sorted by key."""
        return self._requirements

    @property
    def empty(self) -> bool:
        """True for the match-everything selector (no requirements)."""
        return not self._nothing and not self._requirements

    @property
    def is_nothing(self) -> bool:
        """True for the match-nothing selector."""
        return self._nothing

    def matches(self, labels: _Labels) -> bool:
        """Whether an object with ``labels`` is selected."""
        if self._nothing:
            return False
        # A plain loop: all() over a generator costs a frame per call on this hot path.
        for check in self._checks:  # noqa: SIM110
            if not check(labels):
                return False
        return True

    def requires_exact_match(self, key: str) -> str | None:
        """The one value ``key`` must have for a match (``=``, ``==``, single ``in``), else None.

        Lets caches answer from an index instead of scanning.
        """
        for req in self._requirements:
            if req.key == key:
                exact = req.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                return req.values[0] if exact and len(req.values) == 1 else None
        return None

    def add(self, *requirements: Requirement) -> LabelSelector:
        """A new selector with extra requirements ANDed in."""
        if self._nothing:
            return self
        return LabelSelector((*self._requirements, *requirements))

    def __str__(self) -> str:
        return ",".join(str(r) for r in self._requirements)

    def __repr__(self) -> str:
        if self._nothing:
            return "LabelSelector.nothing()"
        return f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return self._nothing == other._nothing and self._requirements == other._requirements

    def __hash__(self) -> int:
        return hash((self._nothing, self._requirements))


# -- the label selector string grammar ----------------------------------------------------

_SPECIAL: Final = frozenset("=!(),><")
_WHITESPACE: Final = frozenset(" \t\r\n")
_SYMBOL_TOKENS: Final = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")


class _Tok(enum.Enum):
    END = "end of string"
    IDENT = "identifier"
    IN = "in"
    NOT_IN = "notin"
    OPEN = "("
    CLOSE = ")"
    COMMA = ","
    BANG = "!"
    EQ = "="
    DEQ = "=="
    NEQ = "!="
    GT = ">"
    LT = "<"


_SYMBOLS: Final = {
    "!=": _Tok.NEQ,
    "==": _Tok.DEQ,
    "=": _Tok.EQ,
    "!": _Tok.BANG,
    "(": _Tok.OPEN,
    ")": _Tok.CLOSE,
    ",": _Tok.COMMA,
    ">": _Tok.GT,
    "<": _Tok.LT,
}


def _lex(text: str) -> list[tuple[_Tok, str]]:
    tokens: list[tuple[_Tok, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append((_Tok.END, ""))
            return tokens
        ch = text[i]
        if ch in _SPECIAL:
            # longest symbol wins: "!=" and "==" before "!" and "="
            two = text[i : i + 2]
            if two in _SYMBOLS:
                tokens.append((_SYMBOLS[two], two))
                i += 2
            else:
                tokens.append((_SYMBOLS[ch], ch))
                i += 1
            continue
        start = i
        while i < n and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
            i += 1
        word = text[start:i]
        if word == "in":
            tokens.append((_Tok.IN, word))
        elif word == "notin":
            tokens.append((_Tok.NOT_IN, word))
        else:
            tokens.append((_Tok.IDENT, word))


class _Parser:
    """Recursive-descent parser over the token list; values positions read in/notin as words."""

    def __init__(self, text: str):
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self, as_value: bool = True) -> tuple[_Tok, str]:
        tok, lit = self.tokens[self.pos]
        if as_value and tok in (_Tok.IN, _Tok.NOT_IN):
            tok = _Tok.IDENT
        return tok, lit

    def take(self, as_value: bool = True) -> tuple[_Tok, str]:
        result = self.peek(as_value)
        self.pos += 1
        return result

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok is _Tok.END:
                return requirements
            if tok not in (_Tok.IDENT, _Tok.BANG):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            tok, lit = self.take()
            if tok is _Tok.END:
                return requirements
            if tok is not _Tok.COMMA:
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok2, lit2 = self.peek()
            if tok2 not in (_Tok.IDENT, _Tok.BANG):
                raise SelectorError(f"found '{lit2}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        operator: Operator | None = None
        tok, lit = self.take()
        if tok is _Tok.BANG:
            operator = Operator.DOES_NOT_EXIST
            tok, lit = self.take()
        if tok is not _Tok.IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        key_errors = validate_label_key(key)
        if key_errors:
            raise SelectorError(_invalid("key", key, "; ".join(key_errors)))
        if operator is None and self.peek()[0] in (_Tok.END, _Tok.COMMA):
            operator = Operator.EXISTS
        if operator is not None:
            return Requirement.create(key, operator, ())
        operator = self.operator()
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self.value_set()
        else:
            values = self.exact_value()
        return Requirement.create(key, operator, sorted(values))

    def operator(self) -> Operator:
        tok, lit = self.take(as_value=False)
        op = {
            _Tok.IN: Operator.IN,
            _Tok.NOT_IN: Operator.NOT_IN,
            _Tok.EQ: Operator.EQUALS,
            _Tok.DEQ: Operator.DOUBLE_EQUALS,
            _Tok.NEQ: Operator.NOT_EQUALS,
            _Tok.GT: Operator.GREATER_THAN,
            _Tok.LT: Operator.LESS_THAN,
        }.get(tok)
        if op is None:
            raise SelectorError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        return op

    def value_set(self) -> set[str]:
        tok, lit = self.take()
        if tok is not _Tok.OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok is _Tok.CLOSE:  # "()" is the set holding the empty string
            self.take()
            return {""}
        if tok not in (_Tok.IDENT, _Tok.COMMA):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            tok, lit = self.take()
            if tok is _Tok.IDENT:
                values.add(lit)
                tok2, lit2 = self.peek()
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSE:
                    self.take()
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Tok.COMMA:  # empty members: "(,a)", "(a,,b)", "(a,)"
                if not values:
                    values.add("")
                tok2, _ = self.peek()
                if tok2 is _Tok.CLOSE:
                    self.take()
                    values.add("")
                    return values
                if tok2 is _Tok.COMMA:
                    self.take()
                    values.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        tok, _ = self.peek()
        if tok in (_Tok.END, _Tok.COMMA):
            return {""}
        tok, lit = self.take()
        if tok is _Tok.IDENT:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse Kubernetes' label selector syntax; ``""`` selects everything.

    Raises :class:`SelectorError` with Kubernetes' wording, e.g.
    ``unable to parse requirement: found '', expected: identifier``.
    """
    if not isinstance(text, str):
        raise SelectorError(f"label selector must be a string, got {type(text).__name__}")
    return LabelSelector(_Parser(text).parse())


# -- the API form: metav1.LabelSelector -----------------------------------------------------

_API_OPERATORS: Final = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}

_ApiSelector = meta_pb2.LabelSelector | Mapping[str, Any]


def _api_parts(
    selector: _ApiSelector,
) -> tuple[list[tuple[str, str]], list[tuple[str, str, list[str]]], list[str]]:
    """(matchLabels items, matchExpressions as (key, operator, values), shape errors)."""
    errors: list[str] = []
    labels: list[tuple[str, str]] = []
    exprs: list[tuple[str, str, list[str]]] = []
    if isinstance(selector, meta_pb2.LabelSelector):
        labels = sorted(selector.matchLabels.items())
        exprs = [(e.key, e.operator, list(e.values)) for e in selector.matchExpressions]
        return labels, exprs, errors
    if not isinstance(selector, Mapping):
        return [], [], [f"a label selector must be an object, got {type(selector).__name__}"]
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        errors.append(f"unknown field(s) in label selector: {', '.join(sorted(map(str, unknown)))}")
    raw_labels = selector.get("matchLabels") or {}
    if not isinstance(raw_labels, Mapping):
        errors.append("matchLabels: must be an object of string keys and values")
    else:
        for k, v in raw_labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                errors.append(f"matchLabels: {k!r}: keys and values must be strings")
            else:
                labels.append((k, v))
    labels.sort()
    raw_exprs = selector.get("matchExpressions") or []
    if not isinstance(raw_exprs, list):
        errors.append("matchExpressions: must be a list")
        raw_exprs = []
    for i, e in enumerate(raw_exprs):
        if not isinstance(e, Mapping):
            errors.append(f"matchExpressions[{i}]: must be an object")
            continue
        key, op, vals = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        if not isinstance(key, str) or not isinstance(op, str):
            errors.append(f"matchExpressions[{i}]: key and operator must be strings")
            continue
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            errors.append(f"matchExpressions[{i}].values: must be a list of strings")
            continue
        exprs.append((key, op, list(vals)))
    return labels, exprs, errors


def validate_label_selector(selector: _ApiSelector | None, path: str = "selector") -> list[str]:
    """Kubernetes ``ValidateLabelSelector`` messages for an API-form selector, or [].

    ``selector`` is a ``meta_pb2.LabelSelector`` or its JSON dict; ``path`` is the field path
    the messages start with (``spec.selector``).
    """
    if selector is None:
        return []
    labels, exprs, errors = _api_parts(selector)
    errors = [f"{path}: {e}" for e in errors]
    labels_path = _join(path, "matchLabels")
    for k, v in labels:
        errors.extend(_invalid(labels_path, k, m) for m in validate_label_key(k))
        errors.extend(_invalid(labels_path, v, m) for m in validate_label_value(v))
    for i, (key, op, vals) in enumerate(exprs):
        expr_path = f"{_join(path, 'matchExpressions')}[{i}]"
        if op in ("In", "NotIn"):
            if not vals:
                errors.append(
                    f"{expr_path}.values: Required value: must be specified when `operator` is "
                    "'In' or 'NotIn'"
                )
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                errors.append(
                    f"{expr_path}.values: Forbidden: may not be specified when `operator` is "
                    "'Exists' or 'DoesNotExist'"
                )
        else:
            errors.append(_invalid(f"{expr_path}.operator", op, "not a valid selector operator"))
        errors.extend(_invalid(f"{expr_path}.key", key, m) for m in validate_label_key(key))
        for j, v in enumerate(vals):
            errors.extend(
                _invalid(f"{expr_path}.values[{j}]", v, m) for m in validate_label_value(v)
            )
    return errors


def label_selector_from_api(selector: _ApiSelector | None, path: str = "selector") -> LabelSelector:
    """The :class:`LabelSelector` for an API-form selector (``LabelSelectorAsSelector``).

    ``None`` (a null selector) selects nothing; an empty one selects everything. Invalid input
    raises :class:`SelectorError` listing every problem with its field path.
    """
    if selector is None:
        return LabelSelector.nothing()
    errors = validate_label_selector(selector, path)
    if errors:
        raise SelectorError(_aggregate(errors))
    labels, exprs, _ = _api_parts(selector)
    reqs = [Requirement(k, Operator.EQUALS, (v,)) for k, v in labels]
    reqs.extend(Requirement(k, _API_OPERATORS[op], tuple(vals)) for k, op, vals in exprs)
    return LabelSelector(reqs)


# -- node selector terms (core/v1 NodeSelectorTerm) ----------------------------------------

_NODE_OPERATORS: Final = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
    "Gt": Operator.GREATER_THAN,
    "Lt": Operator.LESS_THAN,
}
_NODE_FIELD_KEYS: Final = frozenset({"metadata.name"})

_NodeRequirement = core_pb2.NodeSelectorRequirement | Mapping[str, Any]
_NodeTerm = core_pb2.NodeSelectorTerm | Mapping[str, Any]
_NodeSelector = core_pb2.NodeSelector | Mapping[str, Any]


def _node_requirement_parts(req: _NodeRequirement) -> tuple[str, str, tuple[str, ...]]:
    if isinstance(req, core_pb2.NodeSelectorRequirement):
        return req.key, req.operator, tuple(req.values)
    if not isinstance(req, Mapping):
        raise SelectorError(f"a node selector requirement must be an object, got {req!r}")
    key, op, vals = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    if (
        not isinstance(key, str)
        or not isinstance(op, str)
        or not isinstance(vals, list)
        or not all(isinstance(v, str) for v in vals)
    ):
        raise SelectorError(f"malformed node selector requirement {dict(req)!r}")
    return key, op, tuple(vals)


def _term_parts(term: _NodeTerm) -> tuple[list[_NodeRequirement], list[_NodeRequirement]]:
    if isinstance(term, core_pb2.NodeSelectorTerm):
        return list(term.matchExpressions), list(term.matchFields)
    if not isinstance(term, Mapping):
        raise SelectorError(f"a node selector term must be an object, got {term!r}")
    exprs, fields_ = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not isinstance(exprs, list) or not isinstance(fields_, list):
        raise SelectorError("matchExpressions and matchFields must be lists")
    return exprs, fields_


@dataclass(frozen=True)
class CompiledNodeSelectorTerm:
    """A node selector term ready to match; a term with ``errors`` never matches.

    As in Kubernetes, a term with neither ``matchExpressions`` nor ``matchFields`` matches no
    node, and requirements within a term are ANDed.
    """

    label_selector: LabelSelector
    field_selector: FieldSelector
    errors: tuple[str, ...] = ()
    empty: bool = False

    def matches(self, labels: _Labels, fields: Mapping[str, str]) -> bool:
        """Whether a node with ``labels`` and ``fields`` (``{"metadata.name": ...}``) fits."""
        if self.errors or self.empty:
            return False
        return self.label_selector.matches(labels) and self.field_selector.matches(fields)


def compile_node_selector_term(term: _NodeTerm, path: str = "") -> CompiledNodeSelectorTerm:
    """Compile a ``NodeSelectorTerm`` (proto or dict); problems are kept in ``.errors``."""
    errors: list[str] = []
    try:
        exprs, field_reqs = _term_parts(term)
    except SelectorError as exc:
        return CompiledNodeSelectorTerm(LabelSelector(), FieldSelector(()), (str(exc),))
    if not exprs and not field_reqs:
        return CompiledNodeSelectorTerm(LabelSelector(), FieldSelector(()), (), empty=True)
    reqs: list[Requirement] = []
    for i, raw in enumerate(exprs):
        req_path = f"{_join(path, 'matchExpressions')}[{i}]"
        try:
            key, op_name, vals = _node_requirement_parts(raw)
            op = _NODE_OPERATORS.get(op_name)
            if op is None:
                raise SelectorError(
                    _invalid(f"{req_path}.operator", op_name, "not a valid node selector operator")
                )
            if op in (Operator.IN, Operator.NOT_IN):
                vals = tuple(sorted(set(vals)))
            reqs.append(Requirement.create(key, op, vals, path=req_path))
        except SelectorError as exc:
            errors.append(str(exc))
    field_terms: list[FieldRequirement] = []
    for i, raw in enumerate(field_reqs):
        req_path = f"{_join(path, 'matchFields')}[{i}]"
        try:
            key, op_name, vals = _node_requirement_parts(raw)
        except SelectorError as exc:
            errors.append(str(exc))
            continue
        if key not in _NODE_FIELD_KEYS:
            errors.append(_invalid(f"{req_path}.key", key, "not a valid field selector key"))
        if len(vals) != 1:
            errors.append(_invalid(f"{req_path}.values", list(vals), "must have one element"))
        if op_name == "In":
            field_op = Operator.EQUALS
        elif op_name == "NotIn":
            field_op = Operator.NOT_EQUALS
        else:
            errors.append(
                f'{req_path}.operator: Unsupported value: "{op_name}": supported values: '
                '"In", "NotIn"'
            )
            continue
        if len(vals) == 1:
            field_terms.append(FieldRequirement(key, field_op, vals[0]))
    return CompiledNodeSelectorTerm(LabelSelector(reqs), FieldSelector(field_terms), tuple(errors))


def node_selector_term_matches(term: _NodeTerm, labels: _Labels, fields: Mapping[str, str]) -> bool:
    """Whether a node with ``labels`` and ``fields`` satisfies one ``NodeSelectorTerm``.

    Compiles the term on every call; hot paths should keep a :func:`compile_node_selector_term`
    result instead.
    """
    return compile_node_selector_term(term).matches(labels, fields)


@dataclass(frozen=True)
class CompiledNodeSelector:
    """A ``NodeSelector``: its terms are ORed; no valid term means no node matches."""

    terms: tuple[CompiledNodeSelectorTerm, ...]
    errors: tuple[str, ...] = ()

    def matches(self, labels: _Labels, fields: Mapping[str, str]) -> bool:
        """Whether a node with ``labels`` and ``fields`` satisfies any term."""
        return any(t.matches(labels, fields) for t in self.terms)


def compile_node_selector(
    selector: _NodeSelector, path: str = "nodeSelectorTerms"
) -> CompiledNodeSelector:
    """Compile a ``NodeSelector`` (proto or dict); term problems are collected in ``.errors``."""
    if isinstance(selector, core_pb2.NodeSelector):
        raw_terms: list[_NodeTerm] = list(selector.nodeSelectorTerms)
    elif isinstance(selector, Mapping) and isinstance(
        selector.get("nodeSelectorTerms") or [], list
    ):
        raw_terms = list(selector.get("nodeSelectorTerms") or [])
    else:
        return CompiledNodeSelector((), (f"malformed node selector {selector!r}",))
    terms = tuple(compile_node_selector_term(t, f"{path}[{i}]") for i, t in enumerate(raw_terms))
    errors = tuple(e for t in terms for e in t.errors)
    return CompiledNodeSelector(terms, errors)


def node_selector_matches(
    selector: _NodeSelector, labels: _Labels, fields: Mapping[str, str]
) -> bool:
    """Whether a node satisfies a ``NodeSelector`` (any of its terms)."""
    return compile_node_selector(selector).matches(labels, fields)


# -- field selectors ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """``field = value`` (EQUALS, also spelled ``==``) or ``field != value``."""

    field: str
    operator: Operator
    value: str

    def __str__(self) -> str:
        symbol = "!=" if self.operator is Operator.NOT_EQUALS else "="
        return f"{self.field}{symbol}{escape_field_value(self.value)}"


def escape_field_value(value: str) -> str:
    """Escape ``\\``, ``,`` and ``=`` for use in a field selector string."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(value: str) -> str:
    """Undo :func:`escape_field_value`; raise :class:`SelectorError` on a bad sequence."""
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: '{ch}'")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    start = 0
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


class FieldSelector:
    """A compiled field selector: an AND of ``field=value`` / ``field!=value`` terms.

    A field missing from the object's field set reads as ``""`` (so ``spec.nodeName=`` selects
    unscheduled pods), as in Kubernetes.
    """

    __slots__ = ("_equal", "_not_equal", "_requirements")

    def __init__(self, requirements: Iterable[FieldRequirement]):
        self._requirements: tuple[FieldRequirement, ...] = tuple(requirements)
        self._equal = tuple(
            (r.field, r.value) for r in self._requirements if r.operator is not Operator.NOT_EQUALS
        )
        self._not_equal = tuple(
            (r.field, r.value) for r in self._requirements if r.operator is Operator.NOT_EQUALS
        )

    @classmethod
    def everything(cls) -> FieldSelector:
        """The selector that matches all objects."""
        return cls(())

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """See :func:`parse_field_selector`."""
        return parse_field_selector(text)

    @classmethod
    def from_set(cls, fields: Mapping[str, str]) -> FieldSelector:
        """``field=value`` for every entry."""
        return cls(FieldRequirement(k, Operator.EQUALS, v) for k, v in sorted(fields.items()))

    @property
    def requirements(self) -> tuple[FieldRequirement, ...]:
        """The terms, in the order of the canonical string."""
        return self._requirements

    @property
    def empty(self) -> bool:
        """True when there are no terms (matches everything)."""
        return not self._requirements

    def fields(self) -> frozenset[str]:
        """Every field name the selector tests; check it against :func:`supported_fields`."""
        return frozenset(r.field for r in self._requirements)

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether an object whose selectable fields are ``fields`` is selected."""
        for name, value in self._equal:
            if fields.get(name, "") != value:
                return False
        for name, value in self._not_equal:  # noqa: SIM110 (hot path, see LabelSelector)
            if fields.get(name, "") == value:
                return False
        return True

    def requires_exact_match(self, field_name: str) -> str | None:
        """The value ``field_name`` must equal for a match (an index key), else None."""
        for name, value in self._equal:
            if name == field_name:
                return value
        return None

    def for_resource(self, resource: str) -> FieldSelector:
        """This selector checked against ``resource``'s supported fields, aliases resolved.

        Raises :class:`SelectorError` (``field label not supported: x``) for the first field
        the resource cannot be selected on.
        """
        allowed = supported_fields(resource)
        aliases = FIELD_ALIASES.get(resource, {})
        out: list[FieldRequirement] = []
        for r in self._requirements:
            name = aliases.get(r.field, r.field)
            if name not in allowed:
                raise SelectorError(field_error(r.field))
            out.append(FieldRequirement(name, r.operator, r.value))
        return FieldSelector(out)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self._requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSelector):
            return NotImplemented
        return self._requirements == other._requirements

    def __hash__(self) -> int:
        return hash(self._requirements)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse Kubernetes' field selector syntax (``a=b,c!=d,e==f``); ``""`` selects everything.

    Terms are split on unescaped commas and kept in sorted order, as Kubernetes does; values
    are unescaped. Raises :class:`SelectorError` (``invalid selector: 'x'; can't understand
    'x'``) for a term without an operator or with a bad escape.
    """
    if not isinstance(text, str):
        raise SelectorError(f"field selector must be a string, got {type(text).__name__}")
    if not text:
        return FieldSelector(())
    reqs: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        value = unescape_field_value(rhs)
        operator = Operator.NOT_EQUALS if op == "!=" else Operator.EQUALS
        reqs.append(FieldRequirement(lhs, operator, value))
    return FieldSelector(reqs)


#: Fields every resource without its own table accepts (Kubernetes'
#: ``DefaultMetaV1FieldSelectorConversion``).
DEFAULT_SUPPORTED_FIELDS: Final = frozenset({"metadata.name", "metadata.namespace"})

#: Selectable fields per resource, keyed by plural (``"pods"``) or ``plural.group``
#: (``"replicasets.apps"``); from Kubernetes' field label conversion functions (1.32).
SUPPORTED_FIELDS: Final[dict[str, frozenset[str]]] = {
    "pods": frozenset(
        {
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        }
    ),
    "nodes": frozenset({"metadata.name", "spec.unschedulable"}),
    "namespaces": frozenset({"metadata.name", "status.phase"}),
    "events": frozenset(
        {
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "secrets": frozenset({"metadata.name", "metadata.namespace", "type"}),
    "services": frozenset({"metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"}),
    "replicationcontrollers": frozenset({"metadata.name", "metadata.namespace", "status.replicas"}),
    "replicasets.apps": frozenset({"metadata.name", "metadata.namespace", "status.replicas"}),
    "jobs.batch": frozenset({"metadata.name", "metadata.namespace", "status.successful"}),
    "certificatesigningrequests.certificates.k8s.io": frozenset(
        {"metadata.name", "spec.signerName"}
    ),
}

#: Old field names a resource still accepts, mapped to the current one.
FIELD_ALIASES: Final[dict[str, dict[str, str]]] = {"pods": {"spec.host": "spec.nodeName"}}


def supported_fields(resource: str) -> frozenset[str]:
    """The fields ``resource`` (``"pods"``, ``"jobs.batch"``) can be selected on."""
    return SUPPORTED_FIELDS.get(resource, DEFAULT_SUPPORTED_FIELDS)


def field_error(field_name: str) -> str:
    """Kubernetes' message for an unsupported field: ``field label not supported: foo``."""
    return f"field label not supported: {field_name}"
