"""Decimal reference model of fastexec's fixed-point core.

Written independently of the Cython code, in real decimal quantities
(prices like ``Decimal("1.10523")``, money like ``Decimal("12.345678")``), so
each documented rule is stated the way a person would check it by hand:
compute exactly, then round half-even once to the result's scale, then check
the range. Tests compare the core's integers with ``to_raw`` of these values.

Shared with other test suites: import it as ``from tests.reference_model import
...`` (or ``reference_model`` with tests/ on the path).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal

CTX = Context(prec=200, rounding=ROUND_HALF_EVEN, Emax=10**6, Emin=-(10**6))

PRICE_DECIMALS = 9
MONEY_DECIMALS = 6
RATE_DECIMALS = 12
UNITS_DECIMALS = 0

MAX_PRICE = Decimal(10**9)  # in price units
MAX_UNITS = Decimal(10**12)
MAX_MONEY = Decimal(9 * 10**9)
MAX_RATE = Decimal(10**6)

KINDS = {
    "price": (PRICE_DECIMALS, MAX_PRICE),
    "units": (UNITS_DECIMALS, MAX_UNITS),
    "money": (MONEY_DECIMALS, MAX_MONEY),
    "rate": (RATE_DECIMALS, MAX_RATE),
}


class RefError(Exception):
    """What the core must raise; ``code`` mirrors FixedPointError codes."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def to_raw(value: Decimal, kind: str) -> int:
    """Exact decimal -> raw integer at the kind's scale; must already be exact."""
    decimals, _ = KINDS[kind]
    raw = CTX.multiply(value, Decimal(10) ** decimals)
    assert raw == raw.to_integral_value(), (value, kind)
    return int(raw)


def from_raw(raw: int, kind: str) -> Decimal:
    decimals, _ = KINDS[kind]
    return CTX.divide(Decimal(raw), Decimal(10) ** decimals)


def round_to_kind(value: Decimal, kind: str) -> Decimal:
    """Round half-even to the kind's scale, then check its range."""
    decimals, limit = KINDS[kind]
    q = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN, context=CTX)
    if abs(q) > limit:
        raise RefError("OUT_OF_RANGE")
    return q


def check_range(value: Decimal, kind: str) -> Decimal:
    if abs(value) > KINDS[kind][1]:
        raise RefError("OUT_OF_RANGE")
    return value


# --- text ---------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def parse(text: str, kind: str, allowed: int | None = None) -> int:
    """Exact parse: syntax, then precision (non-zero digits beyond `allowed`),
    then range."""
    decimals, _ = KINDS[kind]
    if allowed is None:
        allowed = decimals
    if not (1 <= len(text) <= 64) or not _NUMBER.fullmatch(text) or not text.isascii():
        raise RefError("INVALID_NUMBER")
    value = Decimal(text)
    if value != value.quantize(Decimal(1).scaleb(-allowed), context=CTX):
        raise RefError("PRECISION_EXCEEDED")
    check_range(value, kind)
    return to_raw(value, kind)


def format_price(raw: int, precision: int) -> str:
    value = from_raw(raw, "price")
    check_range(value, "price")
    q = value.quantize(Decimal(1).scaleb(-precision), context=CTX)
    if q != value:
        raise RefError("PRECISION_EXCEEDED")
    return _plain(q, precision)


def format_money(raw: int, places: int = 4) -> str:
    value = check_range(from_raw(raw, "money"), "money")
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=CTX)
    return _plain(q, places)


def format_rate(raw: int) -> str:
    value = check_range(from_raw(raw, "rate"), "rate")
    s = _plain(value, RATE_DECIMALS)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _plain(value: Decimal, places: int) -> str:
    s = f"{value:.{places}f}"
    if s.startswith("-") and Decimal(s) == 0:
        s = s[1:]
    return s


# --- arithmetic (inputs and results as raw ints) ------------------------------

def notional(units: int, price: int) -> int:
    v = CTX.multiply(Decimal(abs(units)), from_raw(price, "price"))
    return to_raw(round_to_kind(v, "money"), "money")


def pnl(units: int, open_price: int, close_price: int) -> int:
    diff = from_raw(close_price, "price") - from_raw(open_price, "price")
    return to_raw(round_to_kind(CTX.multiply(Decimal(units), diff), "money"), "money")


def convert(money: int, rate: int) -> int:
    v = CTX.multiply(from_raw(money, "money"), from_raw(rate, "rate"))
    return to_raw(round_to_kind(v, "money"), "money")


def mul_price(money: int, price: int) -> int:
    v = CTX.multiply(from_raw(money, "money"), from_raw(price, "price"))
    return to_raw(round_to_kind(v, "money"), "money")


def div_price(money: int, price: int) -> int:
    v = CTX.divide(from_raw(money, "money"), from_raw(price, "price"))
    return to_raw(round_to_kind(v, "money"), "money")


def round_half_even(n: int, d: int) -> int:
    return int(CTX.divide(Decimal(n), Decimal(d)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=CTX))
