"""Label selectors, field selectors, node selector terms: Kubernetes' grammar and semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilothouse.api.selectors import (
    DEFAULT_SUPPORTED_FIELDS,
    SUPPORTED_FIELDS,
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    Operator,
    Requirement,
    SelectorError,
    compile_node_selector,
    compile_node_selector_term,
    field_error,
    label_selector_from_api,
    node_selector_matches,
    node_selector_term_matches,
    parse_field_selector,
    parse_label_selector,
    supported_fields,
    validate_label_key,
    validate_label_selector,
    validate_label_value,
)
from pilothouse.gen.k8s.core.v1 import core_pb2
from pilothouse.gen.k8s.meta.v1 import meta_pb2

# -- label selector grammar ----------------------------------------------------------------

# (selector, canonical string) -- the canonical form sorts requirements by key and values
PARSE_CASES = [
    ("", ""),
    ("x=a", "x=a"),
    ("x=a,y=b,z=c", "x=a,y=b,z=c"),
    ("z=c,x=a,y=b", "x=a,y=b,z=c"),
    ("x==a", "x==a"),
    ("x!=a", "x!=a"),
    ("x=", "x="),
    ("x= ", "x="),
    ("x=,z= ", "x=,z="),
    ("x= ,z= ", "x=,z="),
    ("!x", "!x"),
    ("x", "x"),
    ("x>1", "x>1"),
    ("x<1", "x<1"),
    (" x = a , y ", "x=a,y"),
    ("\tx\t=\ta\n", "x=a"),
    ("x in (b,a)", "x in (a,b)"),
    ("x in (a,a,b)", "x in (a,b)"),
    ("x in (a)", "x in (a)"),
    ("x in ()", "x in ()"),
    ("x in (,)", "x in ()"),
    ("x in (,a)", "x in (,a)"),
    ("x in (a,)", "x in (,a)"),
    ("x in (a,,b)", "x in (,a,b)"),
    ("x notin (a)", "x notin (a)"),
    ("x in (in,notin)", "x in (in,notin)"),
    ("x=in", "x=in"),
    ("x in(a)", "x in (a)"),
    ("x  in  (  a  ,  b  )", "x in (a,b)"),
    ("example.com/app=web", "example.com/app=web"),
    ("a.b-c_d=e.f-g_h", "a.b-c_d=e.f-g_h"),
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", "a=b,c!=d,e in (x,y),f notin (z),g,!h"),
    ("x=a,x!=b", "x=a,x!=b"),  # same key twice keeps input order
]


@pytest.mark.parametrize(("text", "expect"), PARSE_CASES, ids=[repr(c[0]) for c in PARSE_CASES])
def test_parse_label_selector(text: str, expect: str) -> None:
    selector = parse_label_selector(text)
    assert str(selector) == expect
    assert parse_label_selector(str(selector)) == selector


def test_parsed_requirements() -> None:
    selector = parse_label_selector("env in (prod, qa),!legacy,tier=web,size>3")
    assert selector.requirements == (
        Requirement("env", Operator.IN, ("prod", "qa")),
        Requirement("legacy", Operator.DOES_NOT_EXIST, ()),
        Requirement("size", Operator.GREATER_THAN, ("3",)),
        Requirement("tier", Operator.EQUALS, ("web",)),
    )
    assert not selector.empty
    assert parse_label_selector("").empty
    assert parse_label_selector(" ").empty


BAD_LABEL_SELECTORS = [
    (
        "space-in-requirement",
        "x y",
        "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
    ),
    ("two-values", "x=a b", "found 'b', expected: ',' or 'end of string'"),
    ("leading-comma", ",x", "found ',', expected: !, identifier, or 'end of string'"),
    ("trailing-comma", "x=a,", "found '', expected: identifier after ','"),
    ("double-comma", "x=a,,y=b", "found ',', expected: identifier after ','"),
    ("bang-alone", "!", "unable to parse requirement: found '', expected: identifier"),
    ("bang-with-value", "!x=a", "found '=', expected: ',' or 'end of string'"),
    ("bang-bang", "!!x", "unable to parse requirement: found '!', expected: identifier"),
    ("bang-in-middle", "x!y", "found '!', expected: in, notin"),
    ("double-equals-value", "x=a=b", "found '=', expected: ',' or 'end of string'"),
    ("in-without-paren", "x in a", "found 'a' expected: '('"),
    ("in-unclosed", "x in (a", "found '', expected: ',' or ')'"),
    ("in-space-separated", "x in (a b)", "found 'b', expected: ',' or ')'"),
    ("in-nothing", "x in", "found '' expected: '('"),
    ("in-operator-inside", "x in (=)", "found '=', expected: ',', ')' or identifier"),
    ("value-paren", "x=(", "found '(', expected: identifier"),
    ("after-set", "x in (a)y", "found 'y', expected: ',' or 'end of string'"),
    ("gt-word", "x>a", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("gt-empty", "x>", "the value must be an integer"),
    ("gt-float", "x<1.5", "the value must be an integer"),
    ("gt-negative", "x>-1", 'values[0][x]: Invalid value: "-1"'),  # also a label value
    ("bad-key", "-x=a", 'key: Invalid value: "-x": name part must consist of alphanumeric'),
    ("bad-key-slashes", "a/b/c=a", "a qualified name must consist of"),
    ("bad-prefix", "Example.com/x=a", "prefix part a lowercase RFC 1123 subdomain"),
    ("empty-prefix", "/x=a", "prefix part must be non-empty"),
    ("long-key", "k" * 64 + "=a", "name part must be no more than 63 characters"),
    (
        "bad-value",
        "x=-a",
        'values[0][x]: Invalid value: "-a": a valid label must be an empty string',
    ),
    ("bad-set-value", "x in (a,b_)", 'values[1][x]: Invalid value: "b_"'),
    ("long-value", "x=" + "v" * 64, "must be no more than 63 characters"),
    ("only-operator", "=", "found '=', expected: !, identifier, or 'end of string'"),
    ("close-paren", ")", "found ')', expected: !, identifier"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [c[1:] for c in BAD_LABEL_SELECTORS],
    ids=[c[0] for c in BAD_LABEL_SELECTORS],
)
def test_bad_label_selectors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert message in str(info.value)


def test_non_string_selector() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(None)  # type: ignore[arg-type]


# -- label selector matching -----------------------------------------------------------------

# (selector, labels, matches)
MATCH_CASES = [
    ("", {}, True),
    ("", {"x": "y"}, True),
    ("x=y", {"x": "y"}, True),
    ("x=y", {"x": "z"}, False),
    ("x=y", {}, False),
    ("x==y", {"x": "y"}, True),
    ("x=", {"x": ""}, True),
    ("x=", {}, False),
    ("x!=y", {"x": "z"}, True),
    ("x!=y", {}, True),
    ("x!=y", {"x": "y"}, False),
    ("x", {"x": ""}, True),
    ("x", {"y": "x"}, False),
    ("!x", {}, True),
    ("!x", {"x": ""}, False),
    ("x in (a,b)", {"x": "a"}, True),
    ("x in (a,b)", {"x": "b"}, True),
    ("x in (a,b)", {"x": "c"}, False),
    ("x in (a,b)", {}, False),
    ("x in ()", {"x": ""}, True),
    ("x in ()", {}, False),
    ("x notin (a,b)", {"x": "c"}, True),
    ("x notin (a,b)", {}, True),
    ("x notin (a,b)", {"x": "a"}, False),
    ("x>1", {"x": "2"}, True),
    ("x>1", {"x": "1"}, False),
    ("x>1", {"x": "+5"}, True),
    ("x>1", {"x": "abc"}, False),
    ("x>1", {"x": "1.5"}, False),
    ("x>1", {"x": " 5"}, False),
    ("x>1", {}, False),
    ("x<1", {"x": "0"}, True),
    ("x<1", {"x": "-100"}, True),
    ("x<1", {"x": "99999999999999999999"}, False),  # beyond int64: not a number
    ("x<0", {"x": "-9223372036854775808"}, True),
    ("x=a,y=b", {"x": "a", "y": "b"}, True),
    ("x=a,y=b", {"x": "a", "y": "c"}, False),
    ("x=a,!y", {"x": "a"}, True),
    ("x=a,x!=b", {"x": "a"}, True),
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", {"a": "b", "e": "x", "g": "", "f": "q"}, True),
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", {"a": "b", "e": "x", "g": "", "h": ""}, False),
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", {"a": "b", "e": "x", "g": "", "f": "z"}, False),
]


@pytest.mark.parametrize(
    ("text", "labels", "expect"), MATCH_CASES, ids=[f"{c[0]!r}~{c[1]}" for c in MATCH_CASES]
)
def test_label_matching(text: str, labels: dict[str, str], expect: bool) -> None:
    selector = parse_label_selector(text)
    assert selector.matches(labels) is expect
    assert all(r.matches(labels) for r in selector.requirements) is expect


def test_everything_and_nothing() -> None:
    assert LabelSelector.everything().matches({"a": "b"})
    assert LabelSelector.everything().empty
    nothing = LabelSelector.nothing()
    assert not nothing.matches({})
    assert not nothing.empty
    assert nothing.is_nothing
    assert str(nothing) == ""
    assert nothing.add(Requirement("a", Operator.EXISTS)).is_nothing


def test_requires_exact_match() -> None:
    selector = parse_label_selector("app=web,tier in (a),env in (x,y),!gone,z!=q")
    assert selector.requires_exact_match("app") == "web"
    assert selector.requires_exact_match("tier") == "a"
    assert selector.requires_exact_match("env") is None
    assert selector.requires_exact_match("gone") is None
    assert selector.requires_exact_match("z") is None
    assert selector.requires_exact_match("missing") is None


def test_from_set_and_add() -> None:
    selector = LabelSelector.from_set({"b": "2", "a": "1"})
    assert str(selector) == "a=1,b=2"
    assert selector.matches({"a": "1", "b": "2", "c": "3"})
    more = selector.add(Requirement.create("c", Operator.NOT_IN, ["3"]))
    assert str(more) == "a=1,b=2,c notin (3)"
    assert not more.matches({"a": "1", "b": "2", "c": "3"})
    with pytest.raises(SelectorError):
        LabelSelector.from_set({"bad key": "x"})
    assert hash(parse_label_selector("a=1,b=2")) == hash(selector)


REQUIREMENT_ERRORS = [
    ("in-empty", "x", Operator.IN, [], "values set can't be empty"),
    (
        "equals-two",
        "x",
        Operator.EQUALS,
        ["a", "b"],
        "exact-match compatibility requires one single value",
    ),
    (
        "exists-values",
        "x",
        Operator.EXISTS,
        ["a"],
        "values set must be empty for exists and does not exist",
    ),
    ("gt-two", "x", Operator.GREATER_THAN, ["1", "2"], "exactly one value is required"),
    ("lt-word", "x", Operator.LESS_THAN, ["a"], "the value must be an integer"),
    ("bad-key", "x y", Operator.EXISTS, [], 'key: Invalid value: "x y"'),
]


@pytest.mark.parametrize(
    ("key", "op", "values", "message"),
    [c[1:] for c in REQUIREMENT_ERRORS],
    ids=[c[0] for c in REQUIREMENT_ERRORS],
)
def test_requirement_validation(key: str, op: Operator, values: list[str], message: str) -> None:
    with pytest.raises(SelectorError) as info:
        Requirement.create(key, op, values)
    assert message in str(info.value)


def test_requirement_errors_are_aggregated() -> None:
    with pytest.raises(SelectorError) as info:
        Requirement.create("-k", Operator.IN, ["-v"])
    message = str(info.value)
    assert message.startswith("[") and message.endswith("]")
    assert 'key: Invalid value: "-k"' in message
    assert 'values[0][-k]: Invalid value: "-v"' in message


KEY_CASES = [
    ("simple", "app", True),
    ("prefixed", "kubernetes.io/hostname", True),
    ("digits", "123-abc", True),
    ("dots", "my.name", True),
    ("uppercase", "MyName", True),
    ("empty", "", False),
    ("leading-dash", "-a", False),
    ("trailing-dot", "a.", False),
    ("space", "a b", False),
    ("two-slashes", "a/b/c", False),
    ("upper-prefix", "Kubernetes.io/x", False),
    ("empty-name", "example.com/", False),
    ("63", "a" * 63, True),
    ("64", "a" * 64, False),
    ("prefix-253", ("a" * 63 + ".") * 3 + "a" * 61 + "/x", True),
    ("prefix-254", ("a" * 63 + ".") * 3 + "a" * 62 + "/x", False),
]


@pytest.mark.parametrize(
    ("key", "valid"), [c[1:] for c in KEY_CASES], ids=[c[0] for c in KEY_CASES]
)
def test_validate_label_key(key: str, valid: bool) -> None:
    assert (validate_label_key(key) == []) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("", True),
        ("a", True),
        ("a-b_c.d", True),
        ("-a", False),
        ("a-", False),
        ("a b", False),
        ("v" * 63, True),
        ("v" * 64, False),
        ("a/b", False),
    ],
    ids=["empty", "one", "mixed", "leading-dash", "trailing-dash", "space", "63", "64", "slash"],
)
def test_validate_label_value(value: str, valid: bool) -> None:
    assert (validate_label_value(value) == []) is valid


# -- API form ---------------------------------------------------------------------------------

API_CASES = [
    ("match-labels", {"matchLabels": {"app": "web"}}, "app=web"),
    (
        "expressions",
        {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists", "values": []},
            ]
        },
        "!canary,env notin (dev),team,tier in (a,b)",
    ),
    (
        "both",
        {
            "matchLabels": {"z": "1", "a": "2"},
            "matchExpressions": [{"key": "m", "operator": "Exists"}],
        },
        "a=2,m,z=1",
    ),
    ("empty", {}, ""),
    ("empty-lists", {"matchLabels": {}, "matchExpressions": []}, ""),
    ("null-parts", {"matchLabels": None, "matchExpressions": None}, ""),
]


@pytest.mark.parametrize(
    ("selector", "expect"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_label_selector_from_api(selector: dict[str, object], expect: str) -> None:
    got = label_selector_from_api(selector)
    assert str(got) == expect
    assert not got.is_nothing


def test_label_selector_from_proto() -> None:
    proto = meta_pb2.LabelSelector(
        matchLabels={"app": "web"},
        matchExpressions=[
            meta_pb2.LabelSelectorRequirement(key="tier", operator="In", values=["a"])
        ],
    )
    selector = label_selector_from_api(proto)
    assert str(selector) == "app=web,tier in (a)"
    assert selector.matches({"app": "web", "tier": "a"})
    assert not selector.matches({"app": "web"})
    assert label_selector_from_api(meta_pb2.LabelSelector()).empty


def test_null_api_selector_selects_nothing() -> None:
    assert label_selector_from_api(None).is_nothing
    assert not label_selector_from_api(None).matches({})
    assert label_selector_from_api({}).matches({"any": "thing"})


BAD_API = [
    (
        "bad-operator",
        {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
        'spec.selector.matchExpressions[0].operator: Invalid value: "Equals": '
        "not a valid selector operator",
    ),
    (
        "in-without-values",
        {"matchExpressions": [{"key": "a", "operator": "In"}]},
        "spec.selector.matchExpressions[0].values: Required value: "
        "must be specified when `operator` is 'In' or 'NotIn'",
    ),
    (
        "exists-with-values",
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        "spec.selector.matchExpressions[0].values: Forbidden: may not be specified",
    ),
    (
        "bad-key",
        {"matchExpressions": [{"key": "a b", "operator": "Exists"}]},
        'spec.selector.matchExpressions[0].key: Invalid value: "a b"',
    ),
    (
        "bad-value",
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "-no"]}]},
        'spec.selector.matchExpressions[0].values[1]: Invalid value: "-no"',
    ),
    (
        "bad-label-key",
        {"matchLabels": {"a b": "x"}},
        'spec.selector.matchLabels: Invalid value: "a b"',
    ),
    (
        "bad-label-value",
        {"matchLabels": {"a": "x y"}},
        'spec.selector.matchLabels: Invalid value: "x y"',
    ),
    ("label-not-string", {"matchLabels": {"a": 1}}, "keys and values must be strings"),
    ("labels-not-object", {"matchLabels": ["a"]}, "matchLabels: must be an object"),
    (
        "expressions-not-list",
        {"matchExpressions": {"key": "a"}},
        "matchExpressions: must be a list",
    ),
    (
        "expression-not-object",
        {"matchExpressions": ["a"]},
        "matchExpressions[0]: must be an object",
    ),
    (
        "values-not-strings",
        {"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]},
        "values: must be a list of strings",
    ),
    ("unknown-field", {"matchLabel": {"a": "b"}}, "unknown field(s) in label selector: matchLabel"),
]


@pytest.mark.parametrize(
    ("selector", "message"), [c[1:] for c in BAD_API], ids=[c[0] for c in BAD_API]
)
def test_bad_api_selectors(selector: dict[str, object], message: str) -> None:
    assert any(message in e for e in validate_label_selector(selector, "spec.selector"))
    with pytest.raises(SelectorError) as info:
        label_selector_from_api(selector, "spec.selector")
    assert message in str(info.value)


def test_validate_reports_every_problem() -> None:
    errors = validate_label_selector(
        {"matchLabels": {"-a": "b"}, "matchExpressions": [{"key": "x", "operator": "Bad"}]}
    )
    assert len(errors) == 2
    assert errors[0].startswith("selector.matchLabels:")
    assert validate_label_selector(None) == []
    assert validate_label_selector("nope") == [
        "selector: a label selector must be an object, got str"
    ]  # type: ignore[arg-type]


# -- node selector terms ----------------------------------------------------------------------


def req(key: str, op: str, *values: str) -> dict[str, object]:
    return {"key": key, "operator": op, "values": list(values)}


NODE = ({"zone": "a", "cpus": "8", "gpu": ""}, {"metadata.name": "node-1"})

# (term, matches NODE)
TERM_CASES = [
    ("in", {"matchExpressions": [req("zone", "In", "a", "b")]}, True),
    ("in-miss", {"matchExpressions": [req("zone", "In", "b")]}, False),
    ("notin", {"matchExpressions": [req("zone", "NotIn", "b")]}, True),
    ("notin-absent", {"matchExpressions": [req("rack", "NotIn", "r1")]}, True),
    ("notin-miss", {"matchExpressions": [req("zone", "NotIn", "a")]}, False),
    ("exists", {"matchExpressions": [req("gpu", "Exists")]}, True),
    ("exists-miss", {"matchExpressions": [req("tpu", "Exists")]}, False),
    ("does-not-exist", {"matchExpressions": [req("tpu", "DoesNotExist")]}, True),
    ("does-not-exist-miss", {"matchExpressions": [req("gpu", "DoesNotExist")]}, False),
    ("gt", {"matchExpressions": [req("cpus", "Gt", "4")]}, True),
    ("gt-equal", {"matchExpressions": [req("cpus", "Gt", "8")]}, False),
    ("lt", {"matchExpressions": [req("cpus", "Lt", "16")]}, True),
    ("lt-miss", {"matchExpressions": [req("cpus", "Lt", "8")]}, False),
    ("gt-absent", {"matchExpressions": [req("mem", "Gt", "1")]}, False),
    ("gt-non-int-label", {"matchExpressions": [req("zone", "Gt", "1")]}, False),
    ("and", {"matchExpressions": [req("zone", "In", "a"), req("cpus", "Gt", "4")]}, True),
    ("and-miss", {"matchExpressions": [req("zone", "In", "a"), req("cpus", "Gt", "10")]}, False),
    ("field-in", {"matchFields": [req("metadata.name", "In", "node-1")]}, True),
    ("field-in-miss", {"matchFields": [req("metadata.name", "In", "node-2")]}, False),
    ("field-notin", {"matchFields": [req("metadata.name", "NotIn", "node-2")]}, True),
    ("field-notin-miss", {"matchFields": [req("metadata.name", "NotIn", "node-1")]}, False),
    (
        "labels-and-fields",
        {
            "matchExpressions": [req("zone", "In", "a")],
            "matchFields": [req("metadata.name", "In", "node-1")],
        },
        True,
    ),
    (
        "labels-and-fields-miss",
        {
            "matchExpressions": [req("zone", "In", "b")],
            "matchFields": [req("metadata.name", "In", "node-1")],
        },
        False,
    ),
    ("empty-term", {}, False),
    ("empty-lists", {"matchExpressions": [], "matchFields": []}, False),
    # invalid terms match nothing
    ("bad-operator", {"matchExpressions": [req("zone", "Equals", "a")]}, False),
    ("in-no-values", {"matchExpressions": [req("zone", "In")]}, False),
    ("exists-with-values", {"matchExpressions": [req("gpu", "Exists", "x")]}, False),
    ("gt-two-values", {"matchExpressions": [req("cpus", "Gt", "1", "2")]}, False),
    ("gt-word", {"matchExpressions": [req("cpus", "Gt", "many")]}, False),
    ("notin-bad-key", {"matchExpressions": [req("bad key", "NotIn", "x")]}, False),
    ("field-two-values", {"matchFields": [req("metadata.name", "In", "node-1", "node-2")]}, False),
    ("field-unknown-key", {"matchFields": [req("spec.unschedulable", "NotIn", "true")]}, False),
    ("field-exists", {"matchFields": [req("metadata.name", "Exists")]}, False),
]


@pytest.mark.parametrize(
    ("term", "expect"), [c[1:] for c in TERM_CASES], ids=[c[0] for c in TERM_CASES]
)
def test_node_selector_terms(term: dict[str, object], expect: bool) -> None:
    assert node_selector_term_matches(term, *NODE) is expect


@pytest.mark.parametrize(
    ("term", "message"),
    [
        (
            {"matchExpressions": [req("zone", "Equals", "a")]},
            'matchExpressions[0].operator: Invalid value: "Equals": '
            "not a valid node selector operator",
        ),
        (
            {"matchExpressions": [req("zone", "In")]},
            "matchExpressions[0].values: Invalid value: []",
        ),
        ({"matchExpressions": [req("cpus", "Gt", "many")]}, "matchExpressions[0].values[0]"),
        (
            {"matchFields": [req("metadata.name", "In", "a", "b")]},
            "matchFields[0].values: Invalid value: [a b]: must have one element",
        ),
        (
            {"matchFields": [req("spec.x", "In", "a")]},
            'matchFields[0].key: Invalid value: "spec.x": not a valid field selector key',
        ),
        (
            {"matchFields": [req("metadata.name", "Gt", "1")]},
            'matchFields[0].operator: Unsupported value: "Gt": supported values: "In", "NotIn"',
        ),
        ({"matchExpressions": "zone"}, "must be lists"),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]},
            "malformed node selector requirement",
        ),
        ("zone=a", "a node selector term must be an object"),
    ],
    ids=[
        "operator",
        "in-empty",
        "gt-word",
        "field-values",
        "field-key",
        "field-operator",
        "not-lists",
        "non-string-values",
        "not-object",
    ],
)
def test_node_selector_term_errors(term: object, message: str) -> None:
    compiled = compile_node_selector_term(term)  # type: ignore[arg-type]
    assert any(message in e for e in compiled.errors), compiled.errors
    assert not compiled.matches(*NODE)


def test_node_selector_term_from_proto() -> None:
    term = core_pb2.NodeSelectorTerm(
        matchExpressions=[
            core_pb2.NodeSelectorRequirement(key="zone", operator="In", values=["a", "b"]),
            core_pb2.NodeSelectorRequirement(key="cpus", operator="Gt", values=["4"]),
        ],
        matchFields=[
            core_pb2.NodeSelectorRequirement(key="metadata.name", operator="NotIn", values=["n2"])
        ],
    )
    compiled = compile_node_selector_term(term)
    assert compiled.errors == ()
    assert compiled.matches({"zone": "b", "cpus": "5"}, {"metadata.name": "n1"})
    assert not compiled.matches({"zone": "b", "cpus": "5"}, {"metadata.name": "n2"})
    assert not compiled.matches({"zone": "c", "cpus": "5"}, {"metadata.name": "n1"})


def test_node_selector_ors_terms_and_skips_bad_ones() -> None:
    selector = {
        "nodeSelectorTerms": [
            {},
            {"matchExpressions": [req("zone", "Bogus", "a")]},
            {"matchExpressions": [req("zone", "In", "z")]},
            {"matchFields": [req("metadata.name", "In", "node-1")]},
        ]
    }
    compiled = compile_node_selector(selector)
    assert compiled.matches(*NODE)
    assert not compiled.matches({"zone": "a"}, {"metadata.name": "node-9"})
    assert len(compiled.errors) == 1
    assert compiled.errors[0].startswith("nodeSelectorTerms[1].matchExpressions[0].operator")
    assert node_selector_matches(selector, {"zone": "z"}, {"metadata.name": "x"})
    proto = core_pb2.NodeSelector(
        nodeSelectorTerms=[
            core_pb2.NodeSelectorTerm(
                matchExpressions=[core_pb2.NodeSelectorRequirement(key="zone", operator="Exists")]
            )
        ]
    )
    assert node_selector_matches(proto, {"zone": ""}, {})
    assert not node_selector_matches({"nodeSelectorTerms": []}, {}, {})
    assert compile_node_selector("bad").errors  # type: ignore[arg-type]


# -- field selectors ----------------------------------------------------------------------------

FIELD_PARSE_CASES = [
    ("", "", []),
    ("a=b", "a=b", [("a", Operator.EQUALS, "b")]),
    ("a==b", "a=b", [("a", Operator.EQUALS, "b")]),
    ("a!=b", "a!=b", [("a", Operator.NOT_EQUALS, "b")]),
    ("b=1,a=2", "a=2,b=1", [("a", Operator.EQUALS, "2"), ("b", Operator.EQUALS, "1")]),
    ("a=1,,b=2,", "a=1,b=2", [("a", Operator.EQUALS, "1"), ("b", Operator.EQUALS, "2")]),
    ("spec.nodeName=", "spec.nodeName=", [("spec.nodeName", Operator.EQUALS, "")]),
    ("a=x\\,y", "a=x\\,y", [("a", Operator.EQUALS, "x,y")]),
    ("a=x\\=y", "a=x\\=y", [("a", Operator.EQUALS, "x=y")]),
    ("a=x\\\\y", "a=x\\\\y", [("a", Operator.EQUALS, "x\\y")]),
    ("a!=b==", None, None),  # bad: "=" unescaped in the value
    ("a b=c d", "a b=c d", [("a b", Operator.EQUALS, "c d")]),  # fields are not trimmed
    (
        "metadata.name=n,status.phase!=Failed",
        "metadata.name=n,status.phase!=Failed",
        [("metadata.name", Operator.EQUALS, "n"), ("status.phase", Operator.NOT_EQUALS, "Failed")],
    ),
    ("=x", "=x", [("", Operator.EQUALS, "x")]),
]


@pytest.mark.parametrize(
    ("text", "canonical", "reqs"),
    [c for c in FIELD_PARSE_CASES if c[1] is not None],
    ids=[repr(c[0]) for c in FIELD_PARSE_CASES if c[1] is not None],
)
def test_parse_field_selector(
    text: str, canonical: str, reqs: list[tuple[str, Operator, str]]
) -> None:
    selector = parse_field_selector(text)
    assert str(selector) == canonical
    assert [(r.field, r.operator, r.value) for r in selector.requirements] == reqs
    assert parse_field_selector(str(selector)) == selector
    assert selector.empty is (not reqs)


BAD_FIELD_SELECTORS = [
    ("no-operator", "abc", "invalid selector: 'abc'; can't understand 'abc'"),
    ("second-term-no-operator", "a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
    ("bad-escape", "a=b\\x", "invalid field selector: invalid escape sequence: \\x"),
    ("trailing-backslash", "a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ("unescaped-equals", "a=b=c", "invalid field selector: unescaped character in value: '='"),
    ("double-operator", "a!=b==", "unescaped character in value: '='"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [c[1:] for c in BAD_FIELD_SELECTORS],
    ids=[c[0] for c in BAD_FIELD_SELECTORS],
)
def test_bad_field_selectors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_field_selector(text)
    assert message in str(info.value)
    with pytest.raises(SelectorError):
        parse_field_selector(3)  # type: ignore[arg-type]


FIELD_MATCH_CASES = [
    ("", {}, True),
    ("spec.nodeName=", {}, True),
    ("spec.nodeName=", {"spec.nodeName": ""}, True),
    ("spec.nodeName=", {"spec.nodeName": "n1"}, False),
    ("spec.nodeName=n1", {"spec.nodeName": "n1"}, True),
    ("spec.nodeName!=n1", {"spec.nodeName": "n2"}, True),
    ("spec.nodeName!=n1", {}, True),
    ("spec.nodeName!=", {}, False),
    ("a=1,b!=2", {"a": "1", "b": "3"}, True),
    ("a=1,b!=2", {"a": "1", "b": "2"}, False),
    ("a=x\\,y", {"a": "x,y"}, True),
]


@pytest.mark.parametrize(
    ("text", "fields", "expect"),
    FIELD_MATCH_CASES,
    ids=[f"{c[0]!r}~{c[1]}" for c in FIELD_MATCH_CASES],
)
def test_field_matching(text: str, fields: dict[str, str], expect: bool) -> None:
    assert parse_field_selector(text).matches(fields) is expect


def test_field_selector_helpers() -> None:
    selector = parse_field_selector("spec.nodeName=n1,status.phase!=Failed")
    assert selector.fields() == {"spec.nodeName", "status.phase"}
    assert selector.requires_exact_match("spec.nodeName") == "n1"
    assert selector.requires_exact_match("status.phase") is None
    assert FieldSelector.from_set({"b": "1", "a": "x,y"}) == parse_field_selector("a=x\\,y,b=1")
    assert FieldSelector.everything().matches({"anything": "at all"})
    assert str(FieldRequirement("a", Operator.NOT_EQUALS, "=")) == "a!=\\="
    assert FieldSelector.parse("a=b") == parse_field_selector("a==b")
    assert repr(parse_field_selector("a=b")) == "FieldSelector('a=b')"


SUPPORT_CASES = [
    ("pods", "spec.nodeName", True),
    ("pods", "status.podIPs", True),
    ("pods", "spec.containers", False),
    ("nodes", "spec.unschedulable", True),
    ("nodes", "metadata.namespace", False),
    ("namespaces", "status.phase", True),
    ("events", "involvedObject.uid", True),
    ("secrets", "type", True),
    ("services", "spec.clusterIP", True),
    ("replicasets.apps", "status.replicas", True),
    ("jobs.batch", "status.successful", True),
    ("configmaps", "metadata.name", True),
    ("configmaps", "data", False),
    ("deployments.apps", "metadata.namespace", True),
]


@pytest.mark.parametrize(
    ("resource", "field_name", "supported"),
    SUPPORT_CASES,
    ids=[f"{r}:{f}" for r, f, _ in SUPPORT_CASES],
)
def test_supported_fields(resource: str, field_name: str, supported: bool) -> None:
    assert (field_name in supported_fields(resource)) is supported
    selector = parse_field_selector(f"{field_name}=x")
    if supported:
        assert selector.for_resource(resource) == selector
    else:
        with pytest.raises(SelectorError, match=f"^field label not supported: {field_name}$"):
            selector.for_resource(resource)


def test_field_aliases_and_tables() -> None:
    assert str(parse_field_selector("spec.host=n1").for_resource("pods")) == "spec.nodeName=n1"
    assert field_error("foo") == "field label not supported: foo"
    assert supported_fields("widgets.example.com") == DEFAULT_SUPPORTED_FIELDS
    assert all("metadata.name" in fields for fields in SUPPORTED_FIELDS.values())


# -- properties -------------------------------------------------------------------------------

_names = st.from_regex(r"[a-z]([a-z0-9.-]{0,8}[a-z0-9])?", fullmatch=True)
_values = st.one_of(st.just(""), _names)
_requirements = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _names, _values),
    st.builds(lambda k, v: f"{k}!={v}", _names, _values),
    st.builds(
        lambda k, vs: f"{k} in ({','.join(vs)})", _names, st.lists(_names, min_size=1, max_size=3)
    ),
    st.builds(
        lambda k, vs: f"{k} notin ({','.join(vs)})",
        _names,
        st.lists(_names, min_size=1, max_size=3),
    ),
    st.builds(lambda k: k, _names),
    st.builds(lambda k: f"!{k}", _names),
    st.builds(lambda k, n: f"{k}>{n}", _names, st.integers(0, 100)),
)


@given(st.lists(_requirements, max_size=5), st.dictionaries(_names, _values, max_size=5))
def test_label_selector_string_round_trip(reqs: list[str], labels: dict[str, str]) -> None:
    selector = parse_label_selector(",".join(reqs))
    again = parse_label_selector(str(selector))
    assert again == selector
    assert again.matches(labels) == selector.matches(labels)
    assert selector.matches(labels) == all(r.matches(labels) for r in selector.requirements)


@given(st.dictionaries(st.sampled_from(["a", "b.c", "d"]), st.text(max_size=6), max_size=3))
def test_field_selector_escaping_round_trip(fields: dict[str, str]) -> None:
    selector = FieldSelector.from_set(fields)
    parsed = parse_field_selector(str(selector))
    assert parsed == selector
    assert parsed.matches(fields)
