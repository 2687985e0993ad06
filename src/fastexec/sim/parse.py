"""Turn v20 JSON request bodies into venue objects, or into v20 reject reasons.

Syntax and precision are checked here (a price with more decimals than the
instrument allows is ``PRICE_PRECISION_EXCEEDED``, never rounded); business
rules (time-in-force combinations, unit limits, client id uniqueness) are the
venue's, so the in-process face gets the same rejects as the HTTP face.
"""
from __future__ import annotations

from typing import Any, Optional

from .fixed import FixedPointError, parse_price, parse_units
from .render import parse_rfc3339
from .venue import DEPENDENT_TYPES, ENTRY_TYPES, MARKET, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP_LOSS, Account, \
    OnFill, Order, Venue


class BadRequest(Exception):
    """Malformed body: 400 with an errorMessage and no transaction (§5.4)."""

    def __init__(self, message: str = "The request was missing required data"):
        super().__init__(message)
        self.message = message


class ParseReject(Exception):
    """Well-formed but invalid field: a ``*_REJECT`` transaction with ``reason``."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _price(text: Any, precision: int, invalid: str, precision_reason: str) -> int:
    if not isinstance(text, str):
        raise ParseReject(invalid)
    try:
        v = parse_price(text, precision)
    except FixedPointError as e:
        raise ParseReject(precision_reason if e.code == "PRECISION_EXCEEDED" else invalid) from None
    if v <= 0:
        raise ParseReject(invalid)
    return v


def _client_ext(d: Any, invalid: str) -> Optional[dict]:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ParseReject(invalid)
    out = {}
    for k in ("id", "tag", "comment"):
        v = d.get(k)
        if v is not None:
            if not isinstance(v, str):
                raise ParseReject(invalid)
            out[k] = v
    return out or None


def _time(text: Any, reason: str) -> int:
    if not isinstance(text, str):
        raise ParseReject(reason)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ParseReject(reason) from None


def _details(d: Any, inst, prefix: str, kind: str) -> Optional[OnFill]:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise BadRequest()
    p = inst.display_precision
    of = OnFill()
    if kind == "tsl":
        if "distance" in d:
            of.distance = _price(d["distance"], p, prefix + "_PRICE_DISTANCE_INVALID",
                                 prefix + "_PRICE_DISTANCE_PRECISION_EXCEEDED")
    else:
        if "price" in d:
            of.price = _price(d["price"], p, prefix + "_PRICE_INVALID", prefix + "_PRICE_PRECISION_EXCEEDED")
        if kind == "sl" and "distance" in d:
            of.distance = _price(d["distance"], p, prefix + "_DISTANCE_INVALID", prefix + "_DISTANCE_PRECISION_EXCEEDED")
    tif = d.get("timeInForce", "GTC")
    if not isinstance(tif, str):
        raise ParseReject(prefix + "_TIME_IN_FORCE_INVALID")
    of.tif = tif
    if d.get("gtdTime") is not None:
        of.gtd_ns = _time(d["gtdTime"], prefix + "_GTD_TIMESTAMP_MISSING")
    of.client_ext = _client_ext(d.get("clientExtensions"), prefix + "_CLIENT_ORDER_ID_INVALID")
    if kind == "sl" and "guaranteed" in d:
        if not isinstance(d["guaranteed"], bool):
            raise BadRequest("Invalid value specified for 'guaranteed'")
        of.guaranteed = d["guaranteed"]
    return of


def order_type_of(body: Any) -> str:
    """The order type of a POST/PUT body, or BadRequest."""
    if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
        raise BadRequest()
    t = body["order"].get("type")
    if t is None:
        raise BadRequest()
    if t not in ENTRY_TYPES and t not in DEPENDENT_TYPES:
        raise BadRequest("Invalid value specified for 'type'")
    return t


def parse_order(venue: Venue, acct: Account, body: Any) -> Order:
    """v20 ``{"order": {...}}`` -> Order (not yet placed)."""
    t = order_type_of(body)
    d = body["order"]
    if t in ENTRY_TYPES:
        name = d.get("instrument")
        if name is None:
            raise ParseReject("INSTRUMENT_MISSING")
        inst = venue.by_name.get(name) if isinstance(name, str) else None
        if inst is None:
            raise ParseReject("INSTRUMENT_UNKNOWN")
        if "units" not in d:
            raise ParseReject("UNITS_MISSING")
        u = d["units"]
        if not isinstance(u, str):
            raise ParseReject("UNITS_INVALID")
        try:
            units = parse_units(u)
        except FixedPointError as e:
            raise ParseReject("UNITS_PRECISION_EXCEEDED" if e.code == "PRECISION_EXCEEDED" else
                              ("UNITS_LIMIT_EXCEEDED" if e.code == "OUT_OF_RANGE" else "UNITS_INVALID")) from None
        o = Order(t, inst, units)
        p = inst.display_precision
        if t != MARKET and "price" in d:
            o.price = _price(d["price"], p, "PRICE_INVALID", "PRICE_PRECISION_EXCEEDED")
        if "priceBound" in d:
            o.price_bound = _price(d["priceBound"], p, "PRICE_BOUND_INVALID", "PRICE_BOUND_PRECISION_EXCEEDED")
        pf = d.get("positionFill", "DEFAULT")
        o.position_fill = pf if isinstance(pf, str) else "?"
        if t != MARKET:
            tc = d.get("triggerCondition", "DEFAULT")
            o.trigger = tc if isinstance(tc, str) else "?"
        o.tp = _details(d.get("takeProfitOnFill"), inst, "TAKE_PROFIT_ON_FILL", "tp")
        o.sl = _details(d.get("stopLossOnFill"), inst, "STOP_LOSS_ON_FILL", "sl")
        o.tsl = _details(d.get("trailingStopLossOnFill"), inst, "TRAILING_STOP_LOSS_ON_FILL", "tsl")
        o.trade_client_ext = _client_ext(d.get("tradeClientExtensions"), "CLIENT_TRADE_ID_INVALID")
    else:
        o = Order(t)
        tid = d.get("tradeID")
        if tid is not None:
            if not isinstance(tid, str) or not tid.isdigit():
                raise ParseReject("TRADE_DOESNT_EXIST", 404)
            o.trade_id = int(tid)
        ctid = d.get("clientTradeID")
        if ctid is not None:
            o.client_trade_id = str(ctid)
        trade = acct.trades.get(o.trade_id) if o.trade_id is not None else (
            acct.trades_by_client.get(o.client_trade_id) if o.client_trade_id is not None else None)
        if trade is None:
            raise ParseReject("TRADE_ID_UNSPECIFIED" if tid is None and ctid is None else "TRADE_DOESNT_EXIST",
                              400 if tid is None and ctid is None else 404)
        inst = trade.inst
        o.inst = inst
        p = inst.display_precision
        if t != TRAILING_STOP_LOSS and "price" in d:
            o.price = _price(d["price"], p, "PRICE_INVALID", "PRICE_PRECISION_EXCEEDED")
        if t != TAKE_PROFIT and "distance" in d:
            o.distance = _price(d["distance"], p, "PRICE_DISTANCE_INVALID", "PRICE_DISTANCE_PRECISION_EXCEEDED")
        tc = d.get("triggerCondition", "DEFAULT")
        o.trigger = tc if isinstance(tc, str) else "?"
        if t == STOP_LOSS and "guaranteed" in d:
            if not isinstance(d["guaranteed"], bool):
                raise BadRequest("Invalid value specified for 'guaranteed'")
            o.guaranteed = d["guaranteed"]
    tif = d.get("timeInForce")
    if tif is not None:
        if not isinstance(tif, str):
            raise ParseReject("TIME_IN_FORCE_INVALID")
        o.tif = tif
    if d.get("gtdTime") is not None:
        o.gtd_ns = _time(d["gtdTime"], "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING")
    o.client_ext = _client_ext(d.get("clientExtensions"), "CLIENT_ORDER_ID_INVALID")
    return o


def parse_details_map(acct: Account, trade, body: Any) -> dict:
    """Body of PUT /trades/{id}/orders -> {key: OnFill | None}."""
    if not isinstance(body, dict):
        raise BadRequest()
    out = {}
    inst = trade.inst
    for key, prefix, kind in (("takeProfit", "TAKE_PROFIT_ON_FILL", "tp"), ("stopLoss", "STOP_LOSS_ON_FILL", "sl"),
                              ("trailingStopLoss", "TRAILING_STOP_LOSS_ON_FILL", "tsl")):
        if key in body:
            out[key] = _details(body[key], inst, prefix, kind) if body[key] is not None else None
    return out


def parse_close_units(v: Any, allow_none: bool = False):
    """"ALL" | "NONE" | positive whole units -> "ALL" | None | int (BadRequest otherwise)."""
    if v is None:
        return None
    if v == "ALL":
        return "ALL"
    if v == "NONE" and allow_none:
        return None
    if not isinstance(v, str):
        raise BadRequest("Invalid value specified for 'units'")
    try:
        u = parse_units(v)
    except FixedPointError:
        raise BadRequest("Invalid value specified for 'units'") from None
    if u <= 0:
        raise BadRequest("Invalid value specified for 'units'")
    return u
