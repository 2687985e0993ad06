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
from fastexec.brokers.base import ExitDetails, OrderRequest, PositionFill, TimeInForce, TriggerCondition, V20OrderType
from fastexec.errors import ValidationError

from .clock import datetime_to_ns
from .types import ExitSpec, OrderSpec, OrderType

class TypeInfo:
    """Everything the engine needs to know about one order type, looked up
    once per order. Which of price / stop_price / trailing_distance the type
    needs (True), accepts optionally (None) or refuses (False); allowed
    time-in-force values and the default (v20 §4.1); the v20 type sent for
    it (for fok/ioc: a MARKET when unpriced, a LIMIT when priced)."""

    __slots__ = ("otype", "name", "need_price", "need_stop", "need_trail", "tifs", "default_tif", "emulated",
                 "v20", "v20_priced", "child_tif", "plain")

    def __init__(self, otype, need, tifs, default_tif, v20, v20_priced=None, child_tif=None):
        self.otype = otype
        self.name = otype.value
        self.need_price, self.need_stop, self.need_trail = need
        self.tifs = frozenset(tifs)
        self.default_tif = default_tif
        self.emulated = otype in (OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)
        self.v20 = v20
        self.v20_priced = v20_priced or v20
        self.child_tif = child_tif  # forced time in force of the child sent at trigger
        # A spec of this type with every optional field None is valid as it is
        # (no price, stop or trailing distance required; the default time in
        # force needs no gtd_time): normalize's fast path.
        self.plain = self.need_price is not True and not self.need_stop and not self.need_trail and default_tif != "GTD"


_V = V20OrderType
_INFO_LIST = [
    TypeInfo(OrderType.MARKET, (False, False, False), ("FOK", "IOC"), "FOK", _V.MARKET),
    TypeInfo(OrderType.LIMIT, (True, False, False), ("GTC", "GTD", "GFD", "FOK", "IOC"), "GTC", _V.LIMIT),
    TypeInfo(OrderType.STOP, (True, False, False), ("GTC", "GTD", "GFD", "FOK", "IOC"), "GTC", _V.STOP),
    TypeInfo(OrderType.MARKET_IF_TOUCHED, (True, False, False), ("GTC", "GTD", "GFD"), "GTC", _V.MARKET_IF_TOUCHED),
    TypeInfo(OrderType.STOP_LIMIT, (True, True, False), ("GTC", "GTD", "GFD"), "GTC", _V.LIMIT),
    TypeInfo(OrderType.TRAILING_STOP, (False, False, True), ("GTC", "GTD", "GFD"), "GTC", _V.MARKET, child_tif="FOK"),
    TypeInfo(OrderType.FOK, (None, False, False), ("FOK",), "FOK", _V.MARKET, _V.LIMIT),
    TypeInfo(OrderType.IOC, (None, False, False), ("IOC",), "IOC", _V.MARKET, _V.LIMIT),
]
# Keyed by the value string and by the member's id(): hashing an Enum member
# runs Python code, hashing a str or an int does not.
_INFO_BY_NAME = {i.name: i for i in _INFO_LIST}
_INFO_BY_ID = {id(i.otype): i for i in _INFO_LIST}
INFO = {i.otype: i for i in _INFO_LIST}
EMULATED = frozenset({OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
_TIF_ENUM = {t.value: t for t in TimeInForce}
_V_MARKET = V20OrderType.MARKET
MAX_CLIENT_ID_LENGTH = 128  # v20 ClientID limit
_PF_DEFAULT = PositionFill.DEFAULT
_TC_DEFAULT = TriggerCondition.DEFAULT


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
        "info", "otype", "units", "price", "stop_price", "trailing_distance", "tif", "gtd_ns",
        "stop_loss", "take_profit", "trailing_stop", "client_order_id", "emulated",
    )

    def __init__(self, info, units, price, stop_price, trailing_distance, tif, gtd_ns, sl, tp, tsl, coid):
        self.info = info
        self.otype = info.otype
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
        self.emulated = info.emulated


_new = object.__new__


def _normalized(info, units, price, stop_price, trailing_distance, tif, gtd_ns, sl, tp, tsl, coid) -> Normalized:
    """``Normalized(...)`` without the class call: calling a Python class runs
    type_call -> slot_tp_init -> a bound ``__init__`` (about 1.5k instructions
    of interpreter overhead in 3.11); a plain function call and the same slot
    stores cost less than half. Sets every slot, like ``__init__``."""
    n = _new(Normalized)
    n.info = info
    n.otype = info.otype
    n.units = units
    n.price = price
    n.stop_price = stop_price
    n.trailing_distance = trailing_distance
    n.tif = tif
    n.gtd_ns = gtd_ns
    n.stop_loss = sl
    n.take_profit = tp
    n.trailing_stop = tsl
    n.client_order_id = coid
    n.emulated = info.emulated
    return n


def with_units(n: Normalized, units: int) -> Normalized:
    """A copy of ``n`` for ``units`` (the remainder of a partly filled order,
    which is what a broker-side replacement must carry)."""
    return Normalized(n.info, units, n.price, n.stop_price, n.trailing_distance, n.tif, n.gtd_ns,
                      n.stop_loss, n.take_profit, n.trailing_stop, n.client_order_id)


def normalize(spec: OrderSpec, instrument, now_ns: int) -> Normalized:
    """Validate ``spec`` against ``instrument``; raise ValidationError on the first problem."""
    # type_info and signed_units inlined for the common case (two Python calls
    # less per order); anything unusual goes to them, which raise as before.
    info = _INFO_BY_ID.get(id(spec.type))
    if info is None:
        info = type_info(spec.type)
    units = spec.units
    side = spec.side
    if (type(units) is int and 0 < units <= MAX_UNITS and units <= instrument.maximum_order_units
            and units >= instrument.minimum_trade_size and (side == "buy" or side == "sell")):
        if side == "sell":
            units = -units
    else:
        units = signed_units(spec, instrument)
    if (info.plain and spec.price is None and spec.stop_price is None and spec.trailing_distance is None
            and spec.time_in_force is None and spec.gtd_time is None and spec.stop_loss is None
            and spec.take_profit is None and spec.trailing_stop_distance is None):
        # A plain order (a market order without exits, the common case): what
        # the checks below would conclude for it, without running them.
        coid = spec.client_order_id
        if coid is not None:
            coid = check_client_order_id(coid)
        return _normalized(info, units, None, None, None, info.default_tif, None, None, None, None, coid)
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
        raise _bad("TRAILING_DISTANCE_OUT_OF_RANGE", f"{field}={value} outside [{lo}, {hi}] for {instrument.name}", field)


_new_request = object.__new__


def broker_request(n: Normalized, client_id: str, account_id: str, instrument: str) -> OrderRequest:
    """The v20 order for a validated spec (for emulated types: the child order
    sent at trigger time)."""
    info = n.info
    vtype = info.v20 if n.price is None else info.v20_priced
    tif = info.child_tif or n.tif
    # ``OrderRequest(...)`` without the class call (type_call -> the
    # dataclass's __init__): the same field stores, every field set.
    r = _new_request(OrderRequest)
    r.client_id = client_id
    r.account_id = account_id
    r.instrument = instrument
    r.units = n.units
    r.type = vtype
    r.price = None if vtype is _V_MARKET else n.price
    r.price_bound = None
    r.time_in_force = _TIF_ENUM[tif]
    r.gtd_time_ns = n.gtd_ns if tif == "GTD" else None
    r.position_fill = _PF_DEFAULT
    r.trigger_condition = _TC_DEFAULT
    r.stop_loss = n.stop_loss
    r.take_profit = n.take_profit
    r.trailing_stop = n.trailing_stop
    r.tag = None
    r.comment = None
    return r
