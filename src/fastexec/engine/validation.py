"""Checking an ``OrderSpec`` and turning it into what the broker receives.

Validation is about *shape* (is this a well-formed order for this instrument),
the risk gateway is about *limits* (may this account place it now). Keeping the
two apart means a malformed order is refused with a ValidationError naming the
field before any account state is read, and nothing is half-applied.

The type mapping follows DESIGN.md's table: six types go to v20 as they are;
stop-limit and trailing-stop entries are emulated here and, once triggered,
become a LIMIT (at the limit price) or a MARKET order.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from fastexec._core.fixedpoint import MAX_PRICE, MAX_UNITS, PRICE_SCALE
from fastexec.brokers.base import ExitDetails, OrderRequest, TimeInForce, V20OrderType
from fastexec.errors import ValidationError

from .clock import datetime_to_ns
from .types import ExitSpec, OrderSpec, OrderType

# Per engine type: allowed time-in-force values and the default (v20 §4.1).
_TIF: dict[OrderType, tuple[frozenset[str], str]] = {
    OrderType.MARKET: (frozenset({"FOK", "IOC"}), "FOK"),
    OrderType.LIMIT: (frozenset({"GTC", "GTD", "GFD", "FOK", "IOC"}), "GTC"),
    OrderType.STOP: (frozenset({"GTC", "GTD", "GFD", "FOK", "IOC"}), "GTC"),
    OrderType.MARKET_IF_TOUCHED: (frozenset({"GTC", "GTD", "GFD"}), "GTC"),
    OrderType.STOP_LIMIT: (frozenset({"GTC", "GTD", "GFD"}), "GTC"),
    OrderType.TRAILING_STOP: (frozenset({"GTC", "GTD", "GFD"}), "GTC"),
    OrderType.FOK: (frozenset({"FOK"}), "FOK"),
    OrderType.IOC: (frozenset({"IOC"}), "IOC"),
}
# Which of price / stop_price / trailing_distance each type needs (True),
# accepts optionally (None) or refuses (False).
_FIELDS: dict[OrderType, tuple[Optional[bool], bool, bool]] = {
    OrderType.MARKET: (False, False, False),
    OrderType.LIMIT: (True, False, False),
    OrderType.STOP: (True, False, False),
    OrderType.MARKET_IF_TOUCHED: (True, False, False),
    OrderType.STOP_LIMIT: (True, True, False),
    OrderType.TRAILING_STOP: (False, False, True),
    OrderType.FOK: (None, False, False),
    OrderType.IOC: (None, False, False),
}
EMULATED = frozenset({OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
_TYPES = {t.value: t for t in OrderType}
_TIF_ENUM = {t.value: t for t in TimeInForce}
MAX_CLIENT_ID_LENGTH = 128  # v20 ClientID limit


def _bad(code: str, message: str, field: str) -> ValidationError:
    return ValidationError(message, code=code, field=field)


def check_int(value, field: str, code: str = "INVALID_NUMBER") -> int:
    if type(value) is not int:  # bool and float are refused on purpose
        raise _bad(code, f"{field} must be an integer at the core scale, got {type(value).__name__}", field)
    return value


def check_price(value, field: str, precision: int) -> int:
    """A positive price at PRICE_SCALE with no more decimals than the instrument quotes."""
    check_int(value, field, "INVALID_PRICE")
    if value <= 0 or value > MAX_PRICE:
        raise _bad("INVALID_PRICE", f"{field}={value} must be > 0 and <= {MAX_PRICE}", field)
    step = 10 ** (9 - precision)
    if value % step:
        raise _bad(
            "PRICE_PRECISION_EXCEEDED",
            f"{field}={value} has more than {precision} decimals (must be a multiple of {step} at scale {PRICE_SCALE})",
            field,
        )
    return value


def order_type_of(value) -> OrderType:
    if isinstance(value, OrderType):
        return value
    t = _TYPES.get(value) if isinstance(value, str) else None
    if t is None:
        raise _bad("INVALID_ORDER_TYPE", f"type={value!r} is not one of {sorted(_TYPES)}", "type")
    return t


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


def check_client_order_id(value) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_ID_LENGTH or not value.isprintable() or " " in value:
        raise _bad(
            "INVALID_CLIENT_ORDER_ID",
            f"client_order_id must be 1..{MAX_CLIENT_ID_LENGTH} printable characters without spaces",
            "client_order_id",
        )
    return value


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


class Normalized:
    """A validated order: everything the engine needs, in core units."""

    __slots__ = (
        "otype", "units", "price", "stop_price", "trailing_distance", "tif", "gtd_ns",
        "stop_loss", "take_profit", "trailing_stop", "client_order_id", "emulated",
    )

    def __init__(self, otype, units, price, stop_price, trailing_distance, tif, gtd_ns, sl, tp, tsl, coid):
        self.otype = otype
        self.units = units
        self.price = price
        self.stop_price = stop_price
        self.trailing_distance = trailing_distance
        self.tif = tif
        self.gtd_ns = gtd_ns
        self.stop_loss = sl
        self.take_profit = tp
        self.trailing_stop = tsl
        self.client_order_id = coid
        self.emulated = otype in EMULATED


def normalize(spec: OrderSpec, instrument, now_ns: int) -> Normalized:
    """Validate ``spec`` against ``instrument``; raise ValidationError on the first problem."""
    otype = order_type_of(spec.type)
    units = signed_units(spec, instrument)
    precision = instrument.display_precision
    need_price, need_stop, need_trail = _FIELDS[otype]
    price = spec.price
    if price is None:
        if need_price:
            raise _bad("PRICE_REQUIRED", f"a {otype.value} order needs price", "price")
    elif need_price is False:
        raise _bad("PRICE_NOT_ALLOWED", f"a {otype.value} order takes no price", "price")
    else:
        check_price(price, "price", precision)
    stop_price = spec.stop_price
    if stop_price is None:
        if need_stop:
            raise _bad("STOP_PRICE_REQUIRED", "a stop_limit order needs stop_price (its trigger)", "stop_price")
    elif not need_stop:
        raise _bad("STOP_PRICE_NOT_ALLOWED", f"a {otype.value} order takes no stop_price", "stop_price")
    else:
        check_price(stop_price, "stop_price", precision)
    trail = spec.trailing_distance
    if trail is None:
        if need_trail:
            raise _bad("TRAILING_DISTANCE_REQUIRED", "a trailing_stop order needs trailing_distance", "trailing_distance")
    elif not need_trail:
        raise _bad("TRAILING_DISTANCE_NOT_ALLOWED", f"a {otype.value} order takes no trailing_distance", "trailing_distance")
    else:
        _trail_distance(trail, "trailing_distance", instrument)
    allowed, default = _TIF[otype]
    tif = spec.time_in_force
    if tif is None:
        tif = default
    elif tif not in allowed:
        raise _bad("TIME_IN_FORCE_INVALID", f"time_in_force={tif!r} is not allowed on {otype.value} (allowed: {sorted(allowed)})", "time_in_force")
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
    elif spec.gtd_time is not None:
        raise _bad("GTD_TIME_NOT_ALLOWED", "gtd_time is only allowed with time_in_force GTD", "gtd_time")
    sl = _exit(spec.stop_loss, "stop_loss", instrument, allow_distance=True, allow_guaranteed=True)
    tp = _exit(spec.take_profit, "take_profit", instrument, allow_distance=False, allow_guaranteed=False)
    tsl = None
    if spec.trailing_stop_distance is not None:
        _trail_distance(spec.trailing_stop_distance, "trailing_stop_distance", instrument)
        tsl = ExitDetails(distance=spec.trailing_stop_distance)
    coid = check_client_order_id(spec.client_order_id)
    return Normalized(otype, units, price, stop_price, trail, tif, gtd_ns, sl, tp, tsl, coid)


def _trail_distance(value, field: str, instrument) -> None:
    check_price(value, field, instrument.display_precision)
    lo = instrument.minimum_trailing_stop_distance
    hi = instrument.maximum_trailing_stop_distance
    if value < lo or value > hi:
        raise _bad("TRAILING_DISTANCE_OUT_OF_RANGE", f"{field}={value} outside [{lo}, {hi}] for {instrument.name}", field)


def broker_request(n: Normalized, client_id: str, account_id: str, instrument: str) -> OrderRequest:
    """The v20 order for a validated spec (for emulated types: the child order
    sent at trigger time)."""
    otype = n.otype
    tif = n.tif
    if otype is OrderType.MARKET:
        vtype = V20OrderType.MARKET
    elif otype is OrderType.LIMIT or otype is OrderType.STOP_LIMIT:
        vtype = V20OrderType.LIMIT
    elif otype is OrderType.STOP:
        vtype = V20OrderType.STOP
    elif otype is OrderType.MARKET_IF_TOUCHED:
        vtype = V20OrderType.MARKET_IF_TOUCHED
    elif otype is OrderType.TRAILING_STOP:
        vtype = V20OrderType.MARKET
        tif = "FOK"
    else:  # fok / ioc: a limit when priced, a market otherwise
        vtype = V20OrderType.MARKET if n.price is None else V20OrderType.LIMIT
    return OrderRequest(
        client_id=client_id,
        account_id=account_id,
        instrument=instrument,
        units=n.units,
        type=vtype,
        price=None if vtype is V20OrderType.MARKET else n.price,
        time_in_force=_TIF_ENUM[tif],
        gtd_time_ns=n.gtd_ns if tif == "GTD" else None,
        stop_loss=n.stop_loss,
        take_profit=n.take_profit,
        trailing_stop=n.trailing_stop,
    )
