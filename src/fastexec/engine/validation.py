"""Checking an ``OrderSpec`` and turning it into what the broker receives.

Validation is about *shape* (is this a well-formed order for this instrument),
the risk gateway is about *limits* (may this account place it now). Keeping the
two apart means a malformed order is refused with a ValidationError naming the
field before any account state is read, and nothing is half-applied.

The type mapping follows DESIGN.md's table: six types go to v20 as they are;
stop-limit and trailing-stop entries are emulated here and, once triggered,
become a LIMIT (at the limit price) or a MARKET order.

The type table, ``Normalized``, the plain-order fast path and the broker
request are compiled (``hotpath.pyx``): they run on every order. ``normalize``
here is the one entry point and the reference for every other spec.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from fastexec._core.fixedpoint import MAX_PRICE, MAX_UNITS, format_price
from fastexec.brokers.base import ExitDetails
from fastexec.errors import ValidationError

from .clock import datetime_to_ns
from .hotpath import _INFO_BY_NAME, _INFO_LIST, Normalized, TypeInfo, check_client_order_id
from .hotpath import normalized as _normalized
from .hotpath import plain as _plain
from .types import ExitSpec, OrderSpec, OrderType

# The order-type table, Normalized, the plain-order fast path and the broker
# request live in the compiled engine module (typed, read per order there).
_INFO_BY_ID = {id(i.otype): i for i in _INFO_LIST}
INFO = {i.otype: i for i in _INFO_LIST}
EMULATED = frozenset({OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


#: The latest ``gtd_time`` an order may carry (exclusive): 2200-01-01T00:00:00Z. A product
#: rule: an expiry further out is a typo or a GTC in disguise (use GTC). It keeps every
#: expiry well inside what the engine, the journal and the broker carry (signed 64-bit
#: nanoseconds end in 2262; OANDA renders DateTimes as RFC 3339 and as Unix seconds with
#: nine decimals), so a far-future date is refused here, never half-recorded later.
MAX_GTD_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)
MAX_GTD_NS = datetime_to_ns(MAX_GTD_TIME)
_MAX_GTD_TEXT = "2200-01-01T00:00:00Z"


def _bad(code: str, message: str, field: str) -> ValidationError:
    return ValidationError(message, code=code, field=field)


def decimal_text(value, precision: int) -> str:
    """A price-scale integer as the decimal a client writes: ``precision`` places (as
    responses render it), more when the value is finer (so an over-precise input shows
    as sent). Only for messages: never raises."""
    try:
        return format_price(value, precision)
    except Exception:  # finer than precision, negative or out of range
        try:
            sign = "-" if value < 0 else ""
            q, r = divmod(abs(int(value)), 10**9)
            frac = f"{r:09d}".rstrip("0")
            frac = frac.ljust(precision, "0") if len(frac) < precision else frac
            return f"{sign}{q}.{frac}" if frac else f"{sign}{q}"
        except Exception:
            return repr(value)


def check_int(value, field: str, code: str = "INVALID_NUMBER") -> int:
    if type(value) is not int:  # bool and float are refused on purpose
        raise _bad(code, f"{field} must be an integer at the core scale, got {type(value).__name__}", field)
    return value


def check_price(value, field: str, precision: int) -> int:
    """A positive price at PRICE_SCALE with no more decimals than the instrument quotes."""
    check_int(value, field, "INVALID_PRICE")
    if value <= 0 or value > MAX_PRICE:
        raise _bad("INVALID_PRICE",
                   f"{field}={decimal_text(value, precision)} must be > 0 and <= {decimal_text(MAX_PRICE, 0)}", field)
    step = 10 ** (9 - precision)
    if value % step:
        raise _bad(
            "PRICE_PRECISION_EXCEEDED",
            f"{field}={decimal_text(value, precision)} has more than {precision} decimals",
            field,
        )
    return value


def type_info(value) -> TypeInfo:
    info = _INFO_BY_ID.get(id(value))
    if info is None:
        info = _INFO_BY_NAME.get(value) if type(value) is str else None
        if info is None:
            raise _bad("INVALID_ORDER_TYPE", f"type={value!r} is not one of {sorted(_INFO_BY_NAME)}", "type")
    return info


def order_type_of(value) -> OrderType:
    return type_info(value).otype


def signed_units(spec: OrderSpec, instrument) -> int:
    units = spec.units
    if type(units) is not int:
        raise _bad("INVALID_UNITS", f"units must be a whole number, got {type(units).__name__}", "units")
    if units <= 0:
        raise _bad("INVALID_UNITS", f"units={units} must be > 0 (side gives the direction)", "units")
    if units > MAX_UNITS or units > instrument.maximum_order_units:
        raise _bad(
            "UNITS_LIMIT_EXCEEDED",
            f"units={units} exceeds the instrument maximum {min(MAX_UNITS, instrument.maximum_order_units)}",
            "units",
        )
    if units < instrument.minimum_trade_size:
        raise _bad("UNITS_MINIMUM_NOT_MET", f"units={units} is below the minimum trade size {instrument.minimum_trade_size}", "units")
    side = spec.side
    if side == "buy":
        return units
    if side == "sell":
        return -units
    raise _bad("INVALID_SIDE", f"side={side!r} must be 'buy' or 'sell'", "side")


def _exit(spec, field: str, instrument, *, allow_distance: bool, allow_guaranteed: bool) -> Optional[ExitDetails]:
    if spec is None:
        return None
    if not isinstance(spec, ExitSpec):
        raise _bad("INVALID_EXIT", f"{field} must be an ExitSpec", field)
    has_price = spec.price is not None
    has_distance = spec.distance is not None
    if has_price == has_distance:
        raise _bad("INVALID_EXIT", f"{field} needs exactly one of price or distance", field)
    if has_distance and not allow_distance:
        raise _bad("EXIT_DISTANCE_NOT_SUPPORTED", f"{field} takes a price only (v20 has no take-profit distance)", field)
    if type(spec.guaranteed) is not bool:
        raise _bad("INVALID_EXIT", f"{field}.guaranteed must be a boolean", field)
    if spec.guaranteed and not allow_guaranteed:
        raise _bad("GUARANTEED_NOT_ALLOWED", f"{field} cannot be guaranteed (stop losses only)", field)
    precision = instrument.display_precision
    if has_price:
        check_price(spec.price, f"{field}.price", precision)
        return ExitDetails(price=spec.price, guaranteed=spec.guaranteed)
    check_price(spec.distance, f"{field}.distance", precision)
    return ExitDetails(distance=spec.distance, guaranteed=spec.guaranteed)


def normalize(spec: OrderSpec, instrument, now_ns: int) -> Normalized:
    """Validate ``spec`` against ``instrument``; raise ValidationError on the first problem."""
    n = _plain(spec, instrument)  # a plain order (market, no exits): compiled, the common case
    if n is not None:
        return n
    info = _INFO_BY_ID.get(id(spec.type))
    if info is None:
        info = type_info(spec.type)
    units = signed_units(spec, instrument)
    precision = instrument.display_precision
    need_price = info.need_price
    need_stop = info.need_stop
    need_trail = info.need_trail
    tname = info.name
    price = spec.price
    if price is None:
        if need_price:
            raise _bad("PRICE_REQUIRED", f"a {tname} order needs price", "price")
    elif need_price is False:
        raise _bad("PRICE_NOT_ALLOWED", f"a {tname} order takes no price", "price")
    else:
        check_price(price, "price", precision)
    stop_price = spec.stop_price
    if stop_price is None:
        if need_stop:
            raise _bad("STOP_PRICE_REQUIRED", "a stop_limit order needs stop_price (its trigger)", "stop_price")
    elif not need_stop:
        raise _bad("STOP_PRICE_NOT_ALLOWED", f"a {tname} order takes no stop_price", "stop_price")
    else:
        check_price(stop_price, "stop_price", precision)
    trail = spec.trailing_distance
    if trail is None:
        if need_trail:
            raise _bad("TRAILING_DISTANCE_REQUIRED", "a trailing_stop order needs trailing_distance", "trailing_distance")
    elif not need_trail:
        raise _bad("TRAILING_DISTANCE_NOT_ALLOWED", f"a {tname} order takes no trailing_distance", "trailing_distance")
    else:
        _trail_distance(trail, "trailing_distance", instrument)
    allowed = info.tifs
    tif = spec.time_in_force
    if tif is None:
        tif = info.default_tif
    elif type(tif) is not str or tif not in allowed:
        raise _bad("TIME_IN_FORCE_INVALID", f"time_in_force={tif!r} is not allowed on {tname} (allowed: {sorted(allowed)})", "time_in_force")
    gtd_ns = None
    if tif == "GTD":
        gtd = spec.gtd_time
        if gtd is None:
            raise _bad("GTD_TIME_REQUIRED", "time_in_force GTD needs gtd_time", "gtd_time")
        if not isinstance(gtd, datetime) or gtd.tzinfo is None:
            raise _bad("INVALID_GTD_TIME", "gtd_time must be a timezone-aware datetime", "gtd_time")
        gtd_ns = datetime_to_ns(gtd)
        if gtd_ns <= now_ns:
            raise _bad("GTD_TIME_IN_PAST", "gtd_time must be in the future", "gtd_time")
        if gtd_ns >= MAX_GTD_NS:
            raise _bad("INVALID_GTD_TIME", f"gtd_time must be before {_MAX_GTD_TEXT} (use GTC for no expiry)", "gtd_time")
    elif spec.gtd_time is not None:
        raise _bad("GTD_TIME_NOT_ALLOWED", "gtd_time is only allowed with time_in_force GTD", "gtd_time")
    sl = spec.stop_loss
    if sl is not None:
        sl = _exit(sl, "stop_loss", instrument, allow_distance=True, allow_guaranteed=True)
    tp = spec.take_profit
    if tp is not None:
        tp = _exit(tp, "take_profit", instrument, allow_distance=False, allow_guaranteed=False)
    tsl = None
    if spec.trailing_stop_distance is not None:
        _trail_distance(spec.trailing_stop_distance, "trailing_stop_distance", instrument)
        tsl = ExitDetails(distance=spec.trailing_stop_distance)
    coid = spec.client_order_id
    if coid is not None:
        coid = check_client_order_id(coid)
    return _normalized(info, units, price, stop_price, trail, tif, gtd_ns, sl, tp, tsl, coid)


def _trail_distance(value, field: str, instrument) -> None:
    check_price(value, field, instrument.display_precision)
    lo = instrument.minimum_trailing_stop_distance
    hi = instrument.maximum_trailing_stop_distance
    if value < lo or value > hi:
        p = instrument.display_precision
        raise _bad("TRAILING_DISTANCE_OUT_OF_RANGE",
                   f"{field}={decimal_text(value, p)} outside [{decimal_text(lo, p)}, {decimal_text(hi, p)}] "
                   f"for {instrument.name}", field)
