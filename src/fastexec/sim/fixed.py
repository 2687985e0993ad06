"""Fixed-point helpers the simulator uses, taken from the compiled core.

The venue must agree with the engine to the last unit, so it uses the same
parsing, formatting and rounding primitives (``fastexec._core.fixedpoint``).
The pure-Python fallback below exists only so the simulator can be imported
while the core extension is not built yet (a fresh checkout before
``pip install -e .``); it follows docs/contracts.md §1 to the letter so the
two cannot disagree on any value the tests use.
"""
from __future__ import annotations

import re

PRICE_SCALE = 10**9
MONEY_SCALE = 10**6
RATE_SCALE = 10**12


def round_half_even_int(num: int, den: int) -> int:
    """num / den rounded half-even, for Python ints of any size (den > 0).

    Used where the venue forms a product wider than int64 (e.g. units * price
    delta * conversion rate) so the whole operation rounds exactly once.
    """
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q & 1):
        q += 1
    return q


try:  # pragma: no branch - which side runs depends on the build
    from fastexec._core.fixedpoint import (  # type: ignore[import-not-found]
        FixedPointError,
        format_money,
        format_price,
        format_rate,
        format_units,
        parse_money,
        parse_price,
        parse_rate,
        parse_units,
    )

    HAVE_CORE = True
except ImportError:  # pragma: no cover - only before the core is built
    HAVE_CORE = False
    _NUM = re.compile(r"^([+-]?)(\d+)(?:\.(\d+))?$")

    class FixedPointError(ValueError):  # type: ignore[no-redef]
        def __init__(self, code: str, message: str):
            super().__init__(message)
            self.code = code

    def _parse(text, places, limit, what):
        if isinstance(text, bool) or not isinstance(text, str):
            if isinstance(text, float):
                raise TypeError(f"{what} must be a decimal string, not float")
            raise FixedPointError("INVALID_NUMBER", f"{what} {text!r} is not a decimal string")
        m = _NUM.match(text.strip()) if len(text) <= 64 else None
        if not m:
            raise FixedPointError("INVALID_NUMBER", f"{what} {text!r} is not a decimal number")
        sign, whole, frac = m.groups()
        frac = (frac or "").rstrip("0")
        if len(frac) > places:
            raise FixedPointError("PRECISION_EXCEEDED", f"{what} {text} has more than {places} decimal places")
        v = int(whole) * 10**places + (int(frac.ljust(places, "0")) if places else 0)
        if v > limit:
            raise FixedPointError("OUT_OF_RANGE", f"{what} {text} exceeds {limit}")
        return -v if sign == "-" else v

    def parse_price(text, precision):  # type: ignore[no-redef]
        v = _parse(text, precision, 10**18 // 10 ** (9 - precision), "price")
        return v * 10 ** (9 - precision)

    def parse_units(text):  # type: ignore[no-redef]
        return _parse(text, 0, 10**12, "units")

    def parse_money(text):  # type: ignore[no-redef]
        return _parse(text, 6, 9 * 10**15, "money")

    def parse_rate(text):  # type: ignore[no-redef]
        return _parse(text, 12, 10**18, "rate")

    def _plain(v, d):
        s = "-" if v < 0 else ""
        v = abs(v)
        if d == 0:
            return f"{s}{v}"
        q, r = divmod(v, 10**d)
        return f"{s}{q}.{r:0{d}d}"

    def format_price(value, precision):  # type: ignore[no-redef]
        unit = 10 ** (9 - precision)
        if value % unit:
            raise FixedPointError("PRECISION_EXCEEDED", f"price {value} has more than {precision} decimal places")
        return _plain(value // unit, precision)

    def format_units(value):  # type: ignore[no-redef]
        return str(value)

    def format_money(value, places=4):  # type: ignore[no-redef]
        return _plain(round_half_even_int(value, 10 ** (6 - places)), places)

    def format_rate(value):  # type: ignore[no-redef]
        s = _plain(value, 12).rstrip("0")
        if s.endswith("."):
            s = s[:-1]
        return "0" if s in ("-0", "") else s


def format_price_round(value: int, precision: int) -> str:
    """Render a derived price (an average, a trailing value) at display precision.

    Fill and order prices are always on the instrument grid and go through
    ``format_price`` (which refuses anything finer). Averages of several trade
    prices are not, so they are rounded half-even once, for display only.
    """
    unit = 10 ** (9 - precision)
    return format_price(round_half_even_int(value, unit) * unit, precision)
