"""Key and argument helpers: prefix ranges and validation."""

from __future__ import annotations

import pytest

from pilothouse.storage.keys import check_key, check_prefix, check_revision, check_value, prefix_end


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("", None),
        ("/registry/pods/", "/registry/pods0"),
        ("a", "b"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("x\ud7ff", "x\ue000"),
        ("é", "ê"),
    ],
    ids=["empty", "slash", "letter", "max-tail", "all-max", "skips-surrogates", "non-ascii"],
)
def test_prefix_end(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end


@pytest.mark.parametrize(
    "key",
    ["/registry/pods/default/a", "/a", "/k/\U0010ffff", "/k/\U0010ffff\U0010ffffz", "/k/\ud7ff!"],
)
def test_every_key_with_the_prefix_sorts_below_prefix_end(key: str) -> None:
    for cut in range(len(key) + 1):
        prefix = key[:cut]
        end = prefix_end(prefix)
        assert key >= prefix
        assert end is None or key < end
        assert end is None or end.encode() > key.encode()  # the same order in UTF-8 bytes


@pytest.mark.parametrize(
    ("key", "error", "words"),
    [
        ("", ValueError, "empty"),
        ("/a\x00", ValueError, "NUL"),
        ("/a\udc80", ValueError, "Unicode"),
        (b"/a", TypeError, "bytes"),
        (None, TypeError, "NoneType"),
    ],
    ids=["empty", "nul", "surrogate", "bytes", "none"],
)
def test_bad_keys(key: object, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        check_key(key)


def test_empty_prefix_is_fine_but_not_a_nul() -> None:
    assert check_prefix("") == ""
    with pytest.raises(ValueError):
        check_prefix("\x00")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"x", b"x"), (bytearray(b"y"), b"y"), (memoryview(b"z"), b"z")],
    ids=["bytes", "bytearray", "memoryview"],
)
def test_values_become_bytes(value: object, expected: bytes) -> None:
    assert check_value(value) == expected
    assert type(check_value(value)) is bytes


def test_text_is_not_a_value() -> None:
    with pytest.raises(TypeError, match="str"):
        check_value("text")


@pytest.mark.parametrize(
    ("revision", "error"),
    [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("3", TypeError)],
    ids=["negative", "float", "bool", "str"],
)
def test_bad_revisions(revision: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_revision(revision)


def test_good_revisions() -> None:
    assert [check_revision(r) for r in (0, 1, 2**62)] == [0, 1, 2**62]
