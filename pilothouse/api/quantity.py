"""Kubernetes resource quantities (``cpu: 500m``, ``memory: 1.5Gi``) with exact arithmetic.

Semantics follow k8s.io/apimachinery ``resource.Quantity`` (release 1.32):

* Grammar ``<signedNumber><suffix>``; the suffix is binary (``Ki Mi Gi Ti Pi Ei``), decimal SI
  (``n u m "" k M G T P E``) or a decimal exponent (``e3``, ``E-3``, ``e+6``).
* A quantity remembers the *format* of its suffix (BinarySI, DecimalSI, DecimalExponent) and
  prints itself in that format, in canonical form: no fractional digits, the largest suffix that
  loses nothing.  Binary values that are below 1024 in magnitude or not whole numbers print as
  DecimalSI (``0.5Gi`` -> ``512Mi`` but ``1.5`` Ki-less -> ``1500m``).
* Parsing rounds up (away from zero) to the nano unit: ``0.1n`` -> ``1n``. BinarySI values are
  capped at 2**63-1 in magnitude, as Kubernetes does.
* As in Kubernetes, an input that is already written in canonical form keeps its spelling on
  output (``+1``, ``1E3``, ``010`` are echoed), so a manifest round-trips unchanged.

Representation: the value is held as an exact integer count of nano-units (``nanos``) -- every
parsed quantity is a whole number of nanos and add/sub/neg/mul-by-int keep it so.  No float is
ever involved in the value.  Deviations from Kubernetes, all for inputs no real manifest uses:
decimal exponents beyond +-``MAX_EXPONENT`` are rejected (Go would wrap or build gigantic
numbers), DecimalSI values of 1000E and more print with the ``E`` suffix (Go drops the suffix),
and ``value()``/``milli_value()`` return exact Python ints instead of overflowing int64.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from fractions import Fraction
from typing import Final

__all__ = [
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "Format",
    "Quantity",
    "QuantityError",
    "canonical",
    "parse_quantity",
    "quantity_from_json",
]


class QuantityError(ValueError):
    """A string (or number) that is not a valid Kubernetes quantity; the message names it."""


class Format(enum.Enum):
    """How a quantity prints: the three suffix families of Kubernetes."""

    DECIMAL_EXPONENT = "DecimalExponent"  # 12e6
    BINARY_SI = "BinarySI"  # 12Mi
    DECIMAL_SI = "DecimalSI"  # 12M


# Kubernetes' own wording; users grep for it.
SPLIT_RE_STRING: Final = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_FORMAT_WRONG: Final = "quantities must match the regular expression '" + SPLIT_RE_STRING + "'"
_NUMERIC: Final = "unable to parse numeric part of quantity"
_SUFFIX: Final = "unable to parse quantity's suffix"

#: Largest decimal exponent (of the suffix) accepted; beyond it exact arithmetic is unbounded work.
MAX_EXPONENT: Final = 1000

#: Most digits accepted in the number part (Python refuses to print ints of 4300+ digits).
MAX_DIGITS: Final = 1000

_NANO: Final = 10**9
_MAX_INT64: Final = 2**63 - 1
_MAX_BINARY_NANOS: Final = _MAX_INT64 * _NANO
_BINARY_THRESHOLD_NANOS: Final = 1024 * _NANO

# The scanner's language is exactly Kubernetes' (sign, digits, optional '.digits', a run of
# suffix letters, optional sign, digits); the suffix is then checked against the tables.
_SCAN = re.compile(r"([+-]?)([0-9]*)(?:(\.)([0-9]*))?([eEinumkKMGTP]*[+-]?[0-9]*)")

_DECIMAL_SUFFIXES: Final[dict[str, int]] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES: Final[dict[str, int]] = {
    "Ki": 10,
    "Mi": 20,
    "Gi": 30,
    "Ti": 40,
    "Pi": 50,
    "Ei": 60,
}
_DECIMAL_BY_EXPONENT: Final = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_POWER: Final = {e // 10: s for s, e in _BINARY_SUFFIXES.items()}


def _error(text: object, reason: str) -> QuantityError:
    return QuantityError(f"invalid quantity {text!r}: {reason}")


def _interpret_suffix(text: str, suffix: str) -> tuple[int, int, Format]:
    """Map a suffix to (base, exponent, format), or raise QuantityError."""
    exponent = _DECIMAL_SUFFIXES.get(suffix)
    if exponent is not None:
        return 10, exponent, Format.DECIMAL_SI
    exponent = _BINARY_SUFFIXES.get(suffix)
    if exponent is not None:
        return 2, exponent, Format.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        rest = suffix[1:]
        body = rest[1:] if rest[0] in "+-" else rest
        if body.isdigit():
            exponent = int(rest)
            if abs(exponent) > MAX_EXPONENT:
                raise _error(text, f"exponent {exponent} is out of range (|e| <= {MAX_EXPONENT})")
            return 10, exponent, Format.DECIMAL_EXPONENT
    raise _error(text, _SUFFIX)


def _ceil_div_abs(numerator: int, denominator: int) -> int:
    """ceil(numerator / denominator) for numerator >= 0, denominator > 0."""
    return -(-numerator // denominator)


def _div_away_from_zero(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded away from zero (denominator > 0)."""
    if numerator >= 0:
        return -(-numerator // denominator)
    return -((-numerator + denominator - 1) // denominator)


def _parse(text: str) -> Quantity:
    if not text:
        raise _error(text, _FORMAT_WRONG)
    if text == "0":
        return Quantity._make(0, Format.DECIMAL_SI, "0")
    match = _SCAN.fullmatch(text)
    if match is None:
        raise _error(text, _FORMAT_WRONG)
    sign, int_digits, _dot, frac_digits, suffix = match.groups()
    frac_digits = frac_digits or ""
    base, exponent, fmt = _interpret_suffix(text, suffix)
    negative = sign == "-"

    stripped = int_digits.lstrip("0") or "0"
    digits = stripped + frac_digits
    if len(digits) > MAX_DIGITS:
        raise _error(text, f"more than {MAX_DIGITS} significant digits")
    magnitude = int(digits)  # the number without its decimal point
    has_digit = bool(int_digits or frac_digits)

    # Kubernetes has a fast int64 path and a big-decimal path; they agree on the value, but
    # only the fast path remembers the input spelling when it is already canonical, and only
    # the slow path insists on a digit, caps BinarySI and demotes tiny BinarySI values.
    fast = False
    keep_spelling = False
    if base == 10:
        scale = exponent - len(frac_digits)
        if len(digits) <= 18 and scale >= -9:
            fast = True
            keep_spelling = scale % 3 == 0 and not digits.endswith("000") and digits[0] != "0"
    else:
        small = not frac_digits and len(stripped) + (exponent * 3) // 10 + 1 <= 15
        if small and magnitude << exponent <= _MAX_INT64:
            fast = True
            keep_spelling = magnitude & 0x07 != 0

    if fast:
        if base == 10:
            shift = scale + 9
            nanos = magnitude * 10**shift
        else:
            nanos = (magnitude << exponent) * _NANO
        return Quantity._make(-nanos if negative else nanos, fmt, text if keep_spelling else None)

    if not has_digit:
        raise _error(text, _NUMERIC)
    # value = magnitude * base**exponent / 10**len(frac); rounded up to whole nanos.
    if base == 10:
        shift = exponent - len(frac_digits) + 9
        if shift >= 0:
            nanos = magnitude * 10**shift
        elif magnitude == 0:
            nanos = 0
        elif -shift > len(digits):  # below one nano: rounds up to exactly one
            nanos = 1
        else:
            nanos = _ceil_div_abs(magnitude, 10**-shift)
    else:
        nanos = _ceil_div_abs((magnitude << exponent) * _NANO, 10 ** len(frac_digits))
    if fmt is Format.BINARY_SI:
        nanos = min(nanos, _MAX_BINARY_NANOS)
        if 0 < nanos < _NANO:
            fmt = Format.DECIMAL_SI
    return Quantity._make(-nanos if negative else nanos, fmt, None)


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str) -> Quantity:
    return _parse(text)


class Quantity:
    """An immutable, hashable, ordered Kubernetes quantity.

    ``Quantity("500m")`` parses like :func:`parse_quantity`. Equality, hashing and ordering use
    the numeric value only (``Quantity("1Ki") == Quantity("1024")``); the format only affects
    :meth:`__str__`. Arithmetic returns new quantities; as in Kubernetes, adding to or
    subtracting from a zero quantity takes the other operand's format.
    """

    __slots__ = ("_format", "_nanos", "_s")

    _nanos: int
    _format: Format
    _s: str | None

    def __new__(cls, value: str | int | float | Quantity = 0) -> Quantity:
        if isinstance(value, Quantity):
            return value
        return parse_quantity(value)

    @classmethod
    def _make(cls, nanos: int, fmt: Format, spelling: str | None) -> Quantity:
        q = object.__new__(cls)
        object.__setattr__(q, "_nanos", nanos)
        object.__setattr__(q, "_format", fmt)
        object.__setattr__(q, "_s", spelling)
        return q

    @classmethod
    def from_nanos(cls, nanos: int, fmt: Format = Format.DECIMAL_SI) -> Quantity:
        """The quantity ``nanos * 10**-9`` printed in ``fmt``."""
        return cls._make(int(nanos), fmt, None)

    @classmethod
    def from_milli(cls, milli: int, fmt: Format = Format.DECIMAL_SI) -> Quantity:
        """The quantity ``milli / 1000`` (Kubernetes ``NewMilliQuantity``)."""
        return cls._make(int(milli) * 1_000_000, fmt, None)

    @classmethod
    def from_int(cls, value: int, fmt: Format = Format.DECIMAL_SI) -> Quantity:
        """The whole-number quantity ``value`` (Kubernetes ``NewQuantity``)."""
        return cls._make(int(value) * _NANO, fmt, None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Quantity is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Quantity is immutable")

    def __reduce__(self) -> tuple[object, tuple[int, str, str | None]]:
        return (_restore, (self._nanos, self._format.value, self._s))

    def __copy__(self) -> Quantity:
        return self

    def __deepcopy__(self, memo: object) -> Quantity:
        return self

    # -- accessors ---------------------------------------------------------------------------

    @property
    def nanos(self) -> int:
        """The exact value in nano-units (an integer)."""
        return self._nanos

    @property
    def format(self) -> Format:
        """The suffix family this quantity prints in."""
        return self._format

    def is_zero(self) -> bool:
        """True when the value is 0."""
        return self._nanos == 0

    def sign(self) -> int:
        """-1, 0 or 1 according to the sign of the value."""
        return (self._nanos > 0) - (self._nanos < 0)

    def scaled_value(self, scale: int) -> int:
        """``value / 10**scale`` rounded away from zero (Kubernetes ``ScaledValue``).

        ``scale`` is a power of ten: 0 for units, -3 for milli-units, 3 for kilo-units.
        """
        shift = scale + 9
        if shift <= 0:
            return self._nanos * 10**-shift
        return _div_away_from_zero(self._nanos, 10**shift)

    def value(self) -> int:
        """The value rounded up (away from zero) to an integer, like Kubernetes ``Value()``."""
        return _div_away_from_zero(self._nanos, _NANO)

    def milli_value(self) -> int:
        """``value * 1000`` rounded up (away from zero), like Kubernetes ``MilliValue()``."""
        n = self._nanos
        if n >= 0:
            return -(-n // 1_000_000)
        return -((999_999 - n) // 1_000_000)

    def as_float(self) -> float:
        """The value as the nearest float (for display and ratios, never for accounting)."""
        return self._nanos / _NANO

    def as_fraction(self) -> Fraction:
        """The exact value."""
        return Fraction(self._nanos, _NANO)

    def with_format(self, fmt: Format) -> Quantity:
        """The same value, printed in ``fmt``."""
        return Quantity._make(self._nanos, fmt, None)

    # -- arithmetic --------------------------------------------------------------------------

    def __add__(self, other: Quantity) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        fmt = other._format if self._nanos == 0 else self._format
        return Quantity._make(self._nanos + other._nanos, fmt, None)

    def __sub__(self, other: Quantity) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        fmt = other._format if self._nanos == 0 else self._format
        return Quantity._make(self._nanos - other._nanos, fmt, None)

    def __neg__(self) -> Quantity:
        return Quantity._make(-self._nanos, self._format, None)

    def __pos__(self) -> Quantity:
        return self

    def __abs__(self) -> Quantity:
        return self if self._nanos >= 0 else -self

    def __mul__(self, factor: int) -> Quantity:
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return Quantity._make(self._nanos * factor, self._format, None)

    __rmul__ = __mul__

    def __bool__(self) -> bool:
        return self._nanos != 0

    # -- comparison --------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._nanos == other._nanos

    def __hash__(self) -> int:
        return hash(self._nanos)

    def __lt__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._nanos < other._nanos

    def __le__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._nanos <= other._nanos

    def __gt__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._nanos > other._nanos

    def __ge__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._nanos >= other._nanos

    # -- printing ----------------------------------------------------------------------------

    def __str__(self) -> str:
        s = self._s
        if s is None:
            s = _canonicalize(self._nanos, self._format)
            object.__setattr__(self, "_s", s)
        return s

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"


def _restore(nanos: int, fmt: str, spelling: str | None) -> Quantity:
    return Quantity._make(nanos, Format(fmt), spelling)


def _canonicalize(nanos: int, fmt: Format) -> str:
    """Kubernetes' canonical spelling of ``nanos * 10**-9`` in format ``fmt``."""
    if nanos == 0:
        return "0"
    if fmt is Format.BINARY_SI:
        if -_BINARY_THRESHOLD_NANOS < nanos < _BINARY_THRESHOLD_NANOS or nanos % _NANO:
            fmt = Format.DECIMAL_SI  # small or fractional: shown exactly in decimal
        else:
            whole = nanos // _NANO
            power = 0
            while power < 6 and whole % 1024 == 0 and abs(whole) >= 1024:
                whole //= 1024
                power += 1
            return f"{whole}{_BINARY_BY_POWER[power] if power else ''}"
    mantissa, exponent = nanos, -9
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    adjust = exponent % 3  # Python's % floors, so this moves the exponent down
    if adjust:
        mantissa *= 10**adjust
        exponent -= adjust
    if fmt is Format.DECIMAL_EXPONENT:
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    if exponent > 18:
        mantissa *= 10 ** (exponent - 18)
        exponent = 18
    return f"{mantissa}{_DECIMAL_BY_EXPONENT[exponent]}"


def parse_quantity(value: str | int | float) -> Quantity:
    """Parse a quantity as Kubernetes' ``ParseQuantity`` does, or raise :class:`QuantityError`.

    Strings are parsed exactly (no surrounding whitespace allowed); ints are parsed from their
    decimal text; floats from their shortest repr (``0.5`` -> ``500m``), NaN and infinities
    are errors. String parses are memoized: scheduler fit checks parse the same few requests
    over and over.
    """
    if isinstance(value, str):
        return _parse_cached(value)
    if isinstance(value, bool):
        raise QuantityError(f"invalid quantity {value!r}: a boolean is not a quantity")
    if isinstance(value, int):
        return _parse_cached(str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"invalid quantity {value!r}: not a finite number")
        return _parse_cached(repr(value))
    raise QuantityError(
        f"invalid quantity {value!r}: expected a string or number, got {type(value).__name__}"
    )


def quantity_from_json(value: object) -> Quantity:
    """Decode a quantity from a JSON value as Kubernetes' ``UnmarshalJSON`` does.

    Like Kubernetes, surrounding whitespace in a string is ignored. Anything that is not a
    string or a number raises :class:`QuantityError`.
    """
    if isinstance(value, str):
        return _parse_cached(value.strip())
    if isinstance(value, int | float):
        return parse_quantity(value)
    raise QuantityError(
        f"invalid quantity {value!r}: expected a string or number, got {type(value).__name__}"
    )


def canonical(value: str | int | float | Quantity) -> str:
    """The string Kubernetes stores and returns for ``value`` (``"1.5Gi"`` -> ``"1536Mi"``)."""
    if isinstance(value, Quantity):
        return str(value)
    return str(parse_quantity(value))
