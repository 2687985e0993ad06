# cython: language_level=3
"""Decimal text <-> fixed-point integers, and the checked arithmetic on them.

The scales, ranges and rounding rules are written once, in ``fixedpoint.pxd``.
This module is the only door between decimal text (v20 JSON strings, REST
bodies) and the integers the rest of the core works on. Parsing is exact: text
with more decimals than allowed, or outside the range, is refused with a stable
code instead of being rounded, because a silently rounded price or unit count is
an order the user did not ask for.

Python ``int`` is the only accepted numeric type: ``bool`` (an ``int``
subclass) and floating-point numbers raise ``TypeError``, so binary fractions never leak in.
"""
from libc.stdint cimport int64_t

PRICE_SCALE = 10 ** 9
UNITS_SCALE = 1
MONEY_SCALE = 10 ** 6
RATE_SCALE = 10 ** 12
MAX_PRICE = 10 ** 18
MAX_UNITS = 10 ** 12
MAX_MONEY = 9 * 10 ** 15
MAX_RATE = 10 ** 18
PRICE_DECIMALS = 9
MONEY_DECIMALS = 6
RATE_DECIMALS = 12
MAX_TEXT_LENGTH = 64

INVALID_NUMBER = "INVALID_NUMBER"
PRECISION_EXCEEDED = "PRECISION_EXCEEDED"
OUT_OF_RANGE = "OUT_OF_RANGE"

_KIND_NAMES = ("price", "units", "money", "rate")
_KIND_MAX = (MAX_PRICE, MAX_UNITS, MAX_MONEY, MAX_RATE)
_KIND_DECIMALS = (9, 0, 6, 12)


class FixedPointError(ValueError):
    """Bad numeric input. ``code`` is stable (API error codes are built on it);
    the message names the value and the limit it broke."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class FixedPointRangeError(FixedPointError, OverflowError):
    """A value or result outside its kind's range. It is an ``OverflowError``
    too, so arithmetic callers can catch overflow without knowing about text."""

    def __init__(self, message):
        super().__init__(OUT_OF_RANGE, message)


cdef str _i128_str(int128 v):
    # Python cannot take an int128 directly; split it into two int64 halves.
    cdef int128 base = 1000000000000000000
    cdef bint neg = v < 0
    if neg:
        v = -v
    cdef int64_t hi = <int64_t>(v / base)
    cdef int64_t lo = <int64_t>(v - (v / base) * base)
    cdef object r = int(hi) * 10 ** 18 + int(lo)
    return str(-r if neg else r)


cdef int64_t raise_range(int kind, int128 value) except? -9223372036854775807:
    raise FixedPointRangeError(
        f"{_KIND_NAMES[kind]} {_i128_str(value)} (raw integer) outside range "
        f"+-{_KIND_MAX[kind]} (raw integer)"
    )


cdef inline object _check_int(object value, str name):
    if type(value) is bool or not isinstance(value, int):
        raise TypeError(f"{name} must be an int at fixed-point scale, got {type(value).__name__}")
    return value


cdef int64_t _checked(object value, int kind, str name) except? -9223372036854775807:
    """Python int -> int64 of a kind, refusing bools, floats and out-of-range."""
    _check_int(value, name)
    if value > _KIND_MAX[kind] or value < -_KIND_MAX[kind]:
        raise FixedPointRangeError(
            f"{name} {value} (raw {_KIND_NAMES[kind]}) outside range +-{_KIND_MAX[kind]}"
        )
    return <int64_t>value


cdef int _check_places(object places, int hi) except -1:
    _check_int(places, "precision")
    if places < 0 or places > hi:
        raise ValueError(f"precision {places} outside 0..{hi}")
    return <int>places


cdef int64_t _POW10[19]
cdef int _k
_POW10[0] = 1
for _k in range(1, 19):
    _POW10[_k] = _POW10[_k - 1] * 10


cdef int64_t _parse(object text, int allowed, int kind) except? -9223372036854775807:
    """Exact decimal text -> int64 at the kind's scale.

    Grammar: ``[+-]digits[.digits]`` in ASCII, no exponent, no spaces, at most
    MAX_TEXT_LENGTH characters. Decimals beyond ``allowed`` are accepted only
    when they are zeros ("1.0" as units), because then the value is exact.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"{_KIND_NAMES[kind]} must be a decimal string, got {type(text).__name__}"
        )
    cdef Py_ssize_t n = len(<str>text)
    if n == 0 or n > MAX_TEXT_LENGTH:
        raise FixedPointError(
            INVALID_NUMBER,
            f"{_KIND_NAMES[kind]} {text[:MAX_TEXT_LENGTH]!r} is not a decimal number "
            f"of 1..{MAX_TEXT_LENGTH} characters",
        )
    cdef bytes raw
    try:
        raw = (<str>text).encode("ascii")
    except UnicodeEncodeError:
        raise FixedPointError(INVALID_NUMBER, f"{_KIND_NAMES[kind]} {text!r} is not a decimal number")
    cdef const char* s = raw
    cdef Py_ssize_t i = 0
    cdef bint neg = False
    cdef bint big = False
    cdef bint excess = False
    cdef int128 ip = 0
    cdef int128 fp = 0
    cdef int nint = 0
    cdef int nfrac = 0
    cdef int kept = 0
    cdef int scale_digits = _KIND_DECIMALS[kind]
    cdef char c
    if s[0] == c'-' or s[0] == c'+':
        neg = s[0] == c'-'
        i = 1
    while i < n and c'0' <= s[i] <= c'9':
        if ip > 10000000000000000000:  # far above every kind's integer part
            big = True
        else:
            ip = ip * 10 + (s[i] - c'0')
        nint += 1
        i += 1
    if nint == 0:
        raise FixedPointError(INVALID_NUMBER, f"{_KIND_NAMES[kind]} {text!r} is not a decimal number")
    if i < n and s[i] == c'.':
        i += 1
        while i < n and c'0' <= s[i] <= c'9':
            c = s[i]
            nfrac += 1
            if nfrac <= allowed:
                fp = fp * 10 + (c - c'0')
                kept += 1
            elif c != c'0':
                excess = True
            i += 1
        if nfrac == 0:
            raise FixedPointError(INVALID_NUMBER, f"{_KIND_NAMES[kind]} {text!r} is not a decimal number")
    if i != n:
        raise FixedPointError(INVALID_NUMBER, f"{_KIND_NAMES[kind]} {text!r} is not a decimal number")
    if excess:
        raise FixedPointError(
            PRECISION_EXCEEDED,
            f"{_KIND_NAMES[kind]} {text!r} has more than {allowed} decimal places",
        )
    cdef int128 v = ip * _POW10[scale_digits] + fp * _POW10[scale_digits - kept]
    if big or v > max_of(kind):
        raise FixedPointRangeError(
            f"{_KIND_NAMES[kind]} {text!r} outside range +-{_fmt_plain(_KIND_MAX[kind], scale_digits)}"
        )
    return <int64_t>(-v if neg else v)


cdef str _fmt_plain(object value, int decimals):
    """Exact text of an integer at 10**-decimals, with exactly `decimals` places."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    if decimals == 0:
        return f"{sign}{value}"
    q, r = divmod(value, _POW10[decimals])
    return f"{sign}{q}.{r:0{decimals}d}"


# --- parse -----------------------------------------------------------------

def parse_price(text, precision):
    """Price text at an instrument's ``precision`` (0..9 decimals) -> int at PRICE_SCALE."""
    return _parse(text, _check_places(precision, 9), KIND_PRICE)


def parse_units(text):
    """Signed whole units ("-10000"); "1.0" is exact and accepted, "1.5" is not."""
    return _parse(text, 0, KIND_UNITS)


def parse_money(text):
    """Money text with up to 6 decimals -> int at MONEY_SCALE."""
    return _parse(text, 6, KIND_MONEY)


def parse_rate(text):
    """Rate/ratio/factor text with up to 12 decimals -> int at RATE_SCALE."""
    return _parse(text, 12, KIND_RATE)


# --- format ----------------------------------------------------------------

def format_price(value, precision):
    """Exact price text with exactly ``precision`` decimals (v20 renders prices
    padded to displayPrecision). A value finer than ``precision`` raises: the
    caller has a price the instrument cannot carry, and hiding that by rounding
    would send a different price than the one risk-checked."""
    cdef int p = _check_places(precision, 9)
    cdef int64_t v = _checked(value, KIND_PRICE, "price")
    cdef int64_t unit = _POW10[9 - p]
    if v % unit != 0:
        raise FixedPointError(
            PRECISION_EXCEEDED,
            f"price {_fmt_plain(value, 9).rstrip('0')} has more than {p} decimal places",
        )
    return _fmt_plain(v // unit, p)


def format_units(value):
    return str(_checked(value, KIND_UNITS, "units"))


def format_money(value, places=4):
    """Money text rounded half-even to ``places`` decimals (0..6). Output only:
    v20 renders account money with 4 decimals; never parse this back as the
    stored value, the stored integer stays exact."""
    cdef int p = _check_places(places, 6)
    cdef int64_t v = _checked(value, KIND_MONEY, "money")
    cdef int64_t q = <int64_t>div_half_even(v, _POW10[6 - p])
    return _fmt_plain(q, p)


def format_rate(value):
    """Shortest exact decimal text of a rate ("0.02", "1", "0.000000000001")."""
    cdef int64_t v = _checked(value, KIND_RATE, "rate")
    s = _fmt_plain(v, 12).rstrip("0")
    if s.endswith("."):
        s = s[:len(s) - 1]
    return "0" if s in ("-0", "") else s


# --- arithmetic (Python wrappers over the pxd inline functions) -------------

def notional(units, price):
    """|units| * price as money of the instrument's quote currency (half-even)."""
    return c_notional(_checked(units, KIND_UNITS, "units"), _checked(price, KIND_PRICE, "price"))


def convert(money, rate):
    """money * rate, same money scale (half-even)."""
    return c_convert(_checked(money, KIND_MONEY, "money"), _checked(rate, KIND_RATE, "rate"))


def pnl(units, open_price, close_price):
    """units * (close - open) as money of the quote currency (half-even)."""
    return c_pnl(
        _checked(units, KIND_UNITS, "units"),
        _checked(open_price, KIND_PRICE, "open_price"),
        _checked(close_price, KIND_PRICE, "close_price"),
    )


def mul_price(money, price):
    """money * price (a price used as a conversion factor), half-even."""
    return c_mul_price(_checked(money, KIND_MONEY, "money"), _checked(price, KIND_PRICE, "price"))


def div_price(money, price):
    """money / price (a price used as an inverse conversion factor), half-even;
    price must be positive."""
    cdef int64_t p = _checked(price, KIND_PRICE, "price")
    if p <= 0:
        raise FixedPointError(OUT_OF_RANGE, f"price {price} must be positive to divide by")
    return c_div_price(_checked(money, KIND_MONEY, "money"), p)


def units_value(units, per_unit):
    """|units| * per_unit (home money per unit, at RATE_SCALE) -> money,
    half-even. This is how position value and margin are formed from the
    per-unit values the ledger keeps at each mark."""
    cdef int64_t u = _checked(units, KIND_UNITS, "units")
    cdef int64_t r = _checked(per_unit, KIND_RATE, "per_unit")
    if r < 0:
        raise FixedPointError(OUT_OF_RANGE, f"per_unit {per_unit} must not be negative")
    if u < 0:
        u = -u
    return narrow(c_units_value(u, r), KIND_MONEY)


def round_half_even(numerator, denominator):
    """numerator / denominator rounded half-even (denominator > 0); exposed so
    tests can pin the one rounding primitive every operation uses. Both must
    fit int64."""
    cdef int64_t n = _check_int(numerator, "numerator")
    cdef int64_t d = _check_int(denominator, "denominator")
    if d <= 0:
        raise ValueError(f"denominator {denominator} must be positive")
    return <int64_t>div_half_even(n, d)
