"""Pure helpers on keys, prefixes and arguments, shared by every backend.

Keys compare by their UTF-8 bytes, which for valid strings is the same order
as Python's ``str`` order (code point order). That lets the SQLite backend
turn "every key under a prefix" into the index range ``prefix <= key <
prefix_end(prefix)``.
"""

from __future__ import annotations

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def check_key(key: object) -> str:
    """``key`` if it is a valid key, else a ValueError/TypeError saying why."""
    if not isinstance(key, str):
        raise TypeError(f"storage key must be str, not {type(key).__name__}")
    if not key:
        raise ValueError("storage key must not be empty")
    _check_text(key, "key")
    return key


def check_prefix(prefix: object) -> str:
    """``prefix`` if it is a valid prefix ("" selects everything)."""
    if not isinstance(prefix, str):
        raise TypeError(f"storage prefix must be str, not {type(prefix).__name__}")
    _check_text(prefix, "prefix")
    return prefix


def check_value(value: object) -> bytes:
    """``value`` as bytes (bytes, bytearray and memoryview are accepted)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"storage value must be bytes, not {type(value).__name__}")


def check_revision(revision: object, what: str = "revision") -> int:
    """``revision`` if it is a non-negative int."""
    if not isinstance(revision, int) or isinstance(revision, bool):
        raise TypeError(f"{what} must be int, not {type(revision).__name__}")
    if revision < 0:
        raise ValueError(f"{what} must be >= 0, got {revision}")
    return revision


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise ValueError(f"storage {what} must not contain NUL: {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"storage {what} is not valid Unicode: {text!r}") from exc


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    None when there is none (the empty prefix, or one made only of the
    largest code point): the range is then unbounded above.
    """
    chars = list(prefix)
    while chars and ord(chars[-1]) == _MAX_CODE_POINT:
        chars.pop()
    if not chars:
        return None
    nxt = ord(chars[-1]) + 1
    if nxt in _SURROGATES:  # surrogates cannot be stored; the next real character
        nxt = _SURROGATES.stop
    chars[-1] = chr(nxt)
    return "".join(chars)


def in_prefix(key: str, prefix: str) -> bool:
    return key.startswith(prefix)
