"""v20 JSON <-> fastexec values: the only place decimal strings are touched.

Requests are built as plain dicts and serialised once with orjson; responses
are parsed with orjson and turned into the typed events of ``base`` straight
from the transaction objects, so the same function maps a transaction whether
it came in an HTTP response, from ``/transactions/sinceid`` or from the
transaction stream (one mapping means the engine's dedupe by ``txn_id`` sees
identical events on every path).

Prices read from the venue are parsed at the full PRICE_SCALE precision
(9 decimals) rather than the instrument's, because fills carry VWAPs and
conversion-derived values that the venue may render with more digits than
``displayPrecision``; prices we *send* are formatted at the instrument's
precision, where too many decimals is an error and never silent rounding.
"""
from __future__ import annotations

import calendar
import time as _time
from typing import Any, Callable, Optional

from fastexec._core.fixedpoint import (
    FixedPointError,
    format_price,
    format_units,
    parse_money,
    parse_price,
    parse_units,
)

from ..base import (
    BrokerEvent,
    BrokerOrder,
    BrokerPosition,
    AccountSnapshot,
    ExitDetails,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderRequest,
    PriceTick,
    TimeInForce,
    V20OrderType,
)

PRICE_DECIMALS = 9

# ----------------------------------------------------------------------------- time

_minute_cache: dict[str, int] = {}
_POW10 = (1, 10, 100, 1000, 10**4, 10**5, 10**6, 10**7, 10**8, 10**9)


def parse_time_ns(text: Optional[str]) -> int:
    """RFC3339 (``2016-10-24T21:48:18.593753865Z``) or UNIX (``1474383950.163791738``)
    to integer nanoseconds, without datetime objects or floats.

    Every fill carries a timestamp, so this is on the hot path: the epoch of
    the ``YYYY-MM-DDTHH:MM`` prefix is cached (a handful of entries live at
    any time) and only seconds and the fraction are parsed per call.
    """
    if not text:
        return 0
    if text[10:11] == "T":
        key = text[:16]
        base = _minute_cache.get(key)
        if base is None:
            base = calendar.timegm(
                (int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), 0, 0, 0, 0)
            )
            if len(_minute_cache) > 64:
                _minute_cache.clear()
            _minute_cache[key] = base
        ns = (base + int(text[17:19])) * 1_000_000_000
        if text[19:20] == ".":
            frac = text[20:-1] if text[-1] == "Z" else text[20:]
            n = len(frac)
            if n >= 9:
                return ns + int(frac[:9])
            if n:
                return ns + int(frac) * _POW10[9 - n]
        return ns
    whole, _, frac = text.partition(".")
    frac = frac[:9]
    return int(whole) * 1_000_000_000 + (int(frac) * _POW10[9 - len(frac)] if frac else 0)


def format_time(ns: int) -> str:
    """Integer nanoseconds to the RFC3339 form v20 accepts for ``gtdTime``."""
    secs, frac = divmod(ns, 1_000_000_000)
    t = _time.gmtime(secs)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, frac)


# ----------------------------------------------------------------------------- requests


class LocalReject(Exception):
    """The request cannot be expressed in v20 (e.g. a price with more decimals
    than the instrument allows); carries the v20 reason the venue would give,
    so the engine sees the same code whether we or OANDA refuse it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_ON_FILL_TIF = ("GTC", "GTD", "GFD")


def _fmt_price(value: int, precision: int, reason: str, what: str) -> str:
    try:
        return format_price(value, precision)
    except FixedPointError as exc:
        if exc.code == "PRECISION_EXCEEDED":
            raise LocalReject(reason, f"{what} has more than {precision} decimals") from None
        raise LocalReject(reason.replace("PRECISION_EXCEEDED", "INVALID"), f"{what}: {exc}") from None


def _exit(details: ExitDetails, precision: int, prefix: str, allow_distance: bool) -> dict:
    out: dict[str, Any] = {}
    if details.price is not None:
        out["price"] = _fmt_price(details.price, precision, f"{prefix}_PRICE_PRECISION_EXCEEDED", f"{prefix} price")
    if details.distance is not None:
        if not allow_distance:
            raise LocalReject(f"{prefix}_PRICE_INVALID", f"{prefix} takes a price, not a distance")
        reason = (
            "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_PRECISION_EXCEEDED"
            if prefix == "TRAILING_STOP_LOSS_ON_FILL"
            else f"{prefix}_DISTANCE_PRECISION_EXCEEDED"
        )
        out["distance"] = _fmt_price(details.distance, precision, reason, f"{prefix} distance")
    tif = details.time_in_force.value
    out["timeInForce"] = tif
    if tif == "GTD":
        if details.gtd_time_ns is None:
            raise LocalReject(f"{prefix}_GTD_TIMESTAMP_MISSING", f"{prefix} is GTD without a time")
        out["gtdTime"] = format_time(details.gtd_time_ns)
    return out


def order_body(req: OrderRequest, precision: int, gslo_style: str = "legacy") -> dict:
    """The ``{"order": {...}}`` body of a create or replace (DESIGN's mapping).

    A guaranteed stop loss goes out as ``stopLossOnFill`` with
    ``"guaranteed": true`` (``gslo_style="legacy"``, v20 3.0.25) or as
    ``guaranteedStopLossOnFill`` without the flag (``"modern"``, newer
    servers, which name its errors ``GUARANTEED_STOP_LOSS_ON_FILL_*``)."""
    typ = req.type
    o: dict[str, Any] = {"type": typ.value, "instrument": req.instrument, "units": format_units(req.units)}
    if typ is not V20OrderType.MARKET:
        if req.price is None:
            raise LocalReject("PRICE_MISSING", f"{typ.value} order needs a price")
        o["price"] = _fmt_price(req.price, precision, "PRICE_PRECISION_EXCEEDED", "price")
    if req.price_bound is not None:
        if typ is V20OrderType.LIMIT:
            raise LocalReject("PRICE_BOUND_INVALID", "LIMIT orders take no priceBound")
        o["priceBound"] = _fmt_price(req.price_bound, precision, "PRICE_BOUND_PRECISION_EXCEEDED", "priceBound")
    if req.time_in_force is not None:
        o["timeInForce"] = req.time_in_force.value
        if req.time_in_force is TimeInForce.GTD:
            if req.gtd_time_ns is None:
                raise LocalReject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING", "GTD order without gtd time")
            o["gtdTime"] = format_time(req.gtd_time_ns)
    o["positionFill"] = req.position_fill.value
    if typ is not V20OrderType.MARKET:
        o["triggerCondition"] = req.trigger_condition.value
    ext: dict[str, str] = {"id": req.client_id}
    if req.tag:
        ext["tag"] = req.tag
    if req.comment:
        ext["comment"] = req.comment
    o["clientExtensions"] = ext
    if req.take_profit is not None:
        o["takeProfitOnFill"] = _exit(req.take_profit, precision, "TAKE_PROFIT_ON_FILL", False)
    if req.stop_loss is not None:
        if req.stop_loss.guaranteed and gslo_style == "modern":
            o["guaranteedStopLossOnFill"] = _exit(req.stop_loss, precision, "GUARANTEED_STOP_LOSS_ON_FILL", True)
        else:
            sl = _exit(req.stop_loss, precision, "STOP_LOSS_ON_FILL", True)
            if req.stop_loss.guaranteed:
                sl["guaranteed"] = True
            o["stopLossOnFill"] = sl
    if req.trailing_stop is not None:
        if req.trailing_stop.distance is None:
            raise LocalReject("TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MISSING", "trailing stop needs a distance")
        o["trailingStopLossOnFill"] = _exit(req.trailing_stop, precision, "TRAILING_STOP_LOSS_ON_FILL", True)
    return {"order": o}


def units_arg(units, what: str) -> str:
    """A close request's units: "ALL", or a positive whole number."""
    if isinstance(units, str):
        if units in ("ALL", "NONE"):
            return units
        raise LocalReject("UNITS_INVALID", f"{what} must be 'ALL', 'NONE' or a positive integer")
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise LocalReject("UNITS_INVALID", f"{what} must be 'ALL', 'NONE' or a positive integer")
    return format_units(units)


# ----------------------------------------------------------------------------- transactions -> events

ORDER_CREATE_TYPES = frozenset({"MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER", "MARKET_IF_TOUCHED_ORDER"})


def _money(t: dict, key: str) -> int:
    v = t.get(key)
    return parse_money(v) if v else 0


def _price(text: Optional[str]) -> Optional[int]:
    return parse_price(text, PRICE_DECIMALS) if text else None


def client_id_of(t: dict) -> Optional[str]:
    """The engine's client order id on any order-related transaction."""
    cid = t.get("clientOrderID")
    if cid:
        return cid
    ext = t.get("clientExtensions")
    if ext:
        return ext.get("id")
    return None


def txn_event(account_id: str, t: dict, message: str = "", client_ids: Optional[dict] = None) -> Optional[BrokerEvent]:
    """One v20 transaction as a broker event, or None when the engine has no
    use for it (on-fill exit orders being created, funding, financing...).

    ``client_ids`` maps broker order id -> client id for transactions that do
    not repeat the client id (some fills and cancels omit ``clientOrderID``).
    """
    typ = t.get("type")
    if typ == "ORDER_FILL":
        oid = t["orderID"]
        cid = t.get("clientOrderID") or (client_ids.get(oid) if client_ids else None)
        price_text = t.get("price") or t.get("fullVWAP")
        opened = t.get("tradeOpened")
        if not price_text and opened:
            price_text = opened.get("price")
        closed = tuple(tc["tradeID"] for tc in t.get("tradesClosed") or ())
        reduced = t.get("tradeReduced")
        if reduced:
            closed = closed + (reduced["tradeID"],)
        bal = t.get("accountBalance")
        return OrderFilled(
            account_id=account_id,
            client_id=cid,
            broker_order_id=oid,
            txn_id=int(t["id"]),
            instrument=t["instrument"],
            units=parse_units(t["units"]),
            price=parse_price(price_text, PRICE_DECIMALS) if price_text else 0,
            reason=t.get("reason", ""),
            time_ns=parse_time_ns(t.get("time")),
            pl=_money(t, "pl"),
            financing=_money(t, "financing"),
            commission=_money(t, "commission"),
            account_balance=parse_money(bal) if bal else None,
            trade_opened_id=opened.get("tradeID") if opened else None,
            trades_closed=closed,
        )
    if typ == "ORDER_CANCEL":
        if t.get("reason") == "CLIENT_REQUEST_REPLACED":
            return None  # implied by the OrderReplaced of the replacing order
        oid = t["orderID"]
        cid = t.get("clientOrderID") or (client_ids.get(oid) if client_ids else None)
        return OrderCancelled(
            account_id=account_id,
            client_id=cid,
            broker_order_id=oid,
            txn_id=int(t["id"]),
            reason=t.get("reason", ""),
            time_ns=parse_time_ns(t.get("time")),
            replaced_by_order_id=t.get("replacedByOrderID"),
        )
    if typ in ORDER_CREATE_TYPES:
        reason = t.get("reason")
        if reason == "CLIENT_ORDER":
            cid = client_id_of(t)
            if client_ids is not None and cid:
                client_ids[t["id"]] = cid
            return OrderAccepted(account_id, cid, t["id"], int(t["id"]), parse_time_ns(t.get("time")))
        if reason == "REPLACEMENT":
            cid = client_id_of(t)
            if client_ids is not None and cid:
                client_ids[t["id"]] = cid
            return OrderReplaced(
                account_id, cid, t.get("replacesOrderID", ""), t["id"], int(t["id"]), parse_time_ns(t.get("time"))
            )
        return None
    if typ and typ.endswith("_REJECT"):
        reason = t.get("rejectReason", typ)
        return OrderRejected(
            account_id=account_id,
            client_id=client_id_of(t),
            txn_id=int(t["id"]),
            reason=reason,
            message=message or reason,
            time_ns=parse_time_ns(t.get("time")),
        )
    return None


# What turning one transaction into an event can raise: a field missing or
# of the wrong type, a number our fixed-point types refuse (FixedPointError is
# a ValueError), such as the fractional units of an instrument traded in
# tenths the engine never trades itself.
TXN_PARSE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


def txns_events(
    account_id: str,
    txns: list,
    message: str = "",
    client_ids: Optional[dict] = None,
    on_error: Optional[Callable[[dict, Exception], None]] = None,
) -> list:
    """Events of consecutive transactions (one response, a sinceid page, a
    replay), with the same rule as the in-process simulated broker: an order
    that filled or was cancelled in the batch that created it is reported by
    that fill/cancel alone, so ``OrderAccepted`` always means "working".

    With ``on_error``, a transaction that cannot be turned into an event is
    handed to it and left out, and the others still are: a stream replay must
    not lose a batch of fills to one transaction it cannot read. Without it
    the error propagates (a request's own answer is all one order's)."""
    done = set()
    for t in txns:
        typ = t.get("type")
        if typ == "ORDER_FILL" or typ == "ORDER_CANCEL":
            done.add((t.get("batchID"), t.get("orderID")))
    out = []
    for t in txns:
        if done and t.get("type") in ORDER_CREATE_TYPES and t.get("reason") == "CLIENT_ORDER" and (
            t.get("batchID"),
            t.get("id"),
        ) in done:
            cid = client_id_of(t)
            if client_ids is not None and cid:
                client_ids[t["id"]] = cid
            continue
        if on_error is None:
            ev = txn_event(account_id, t, message, client_ids)
        else:
            try:
                ev = txn_event(account_id, t, message, client_ids)
            except TXN_PARSE_ERRORS as exc:
                on_error(t, exc)
                continue
        if ev is not None:
            out.append(ev)
    return out


def response_events(account_id: str, body: dict, keys: tuple[str, ...], client_ids: Optional[dict] = None) -> list:
    """Events of a 2xx/4xx order-ish response, in transaction-id order."""
    txns = [body[k] for k in keys if k in body]
    if len(txns) > 1:
        txns.sort(key=lambda t: int(t["id"]))
    return txns_events(account_id, txns, body.get("errorMessage", ""), client_ids)


CREATE_KEYS = (
    "orderCreateTransaction",
    "orderFillTransaction",
    "orderCancelTransaction",
    "orderReissueTransaction",
    "orderReissueRejectTransaction",
    "orderRejectTransaction",
)
REPLACE_KEYS = CREATE_KEYS + ("replacingOrderCancelTransaction", "orderCancelRejectTransaction")
CANCEL_KEYS = ("orderCancelTransaction", "orderCancelRejectTransaction")
CLOSE_TRADE_KEYS = ("orderCreateTransaction", "orderFillTransaction", "orderCancelTransaction", "orderRejectTransaction")
CLOSE_POSITION_KEYS = (
    "longOrderCreateTransaction",
    "longOrderFillTransaction",
    "longOrderCancelTransaction",
    "shortOrderCreateTransaction",
    "shortOrderFillTransaction",
    "shortOrderCancelTransaction",
    "longOrderRejectTransaction",
    "shortOrderRejectTransaction",
)


# ----------------------------------------------------------------------------- snapshots


def account_snapshot(a: dict) -> AccountSnapshot:
    return AccountSnapshot(
        account_id=a["id"],
        currency=a.get("currency", ""),
        balance=_money(a, "balance"),
        unrealized_pl=_money(a, "unrealizedPL"),
        nav=_money(a, "NAV"),
        margin_used=_money(a, "marginUsed"),
        margin_available=_money(a, "marginAvailable"),
        open_trade_count=int(a.get("openTradeCount", 0)),
        open_position_count=int(a.get("openPositionCount", 0)),
        pending_order_count=int(a.get("pendingOrderCount", 0)),
        last_txn_id=int(a.get("lastTransactionID", 0)),
    )


def position(account_id: str, p: dict) -> BrokerPosition:
    lg = p.get("long") or {}
    sh = p.get("short") or {}
    return BrokerPosition(
        account_id=account_id,
        instrument=p["instrument"],
        long_units=parse_units(lg.get("units", "0")),
        long_average_price=_price(lg.get("averagePrice")),
        short_units=parse_units(sh.get("units", "0")),
        short_average_price=_price(sh.get("averagePrice")),
        unrealized_pl=_money(p, "unrealizedPL"),
        pl=_money(p, "pl"),
    )


def order(account_id: str, o: dict) -> BrokerOrder:
    units = o.get("units")
    ftx = o.get("fillingTransactionID")
    ctx = o.get("cancellingTransactionID")
    ext = o.get("clientExtensions") or {}
    return BrokerOrder(
        account_id=account_id,
        broker_order_id=o["id"],
        client_id=ext.get("id"),
        instrument=o.get("instrument"),
        units=parse_units(units) if units and units != "ALL" else 0,
        type=o.get("type", ""),
        state=o.get("state", ""),
        price=_price(o.get("price")),
        filling_txn_id=int(ftx) if ftx else None,
        cancelling_txn_id=int(ctx) if ctx else None,
    )


def price_tick(p: dict) -> Optional[PriceTick]:
    bids = p.get("bids")
    asks = p.get("asks")
    bid = bids[0]["price"] if bids else p.get("closeoutBid")
    ask = asks[0]["price"] if asks else p.get("closeoutAsk")
    if not bid or not ask:
        return None
    return PriceTick(
        instrument=p["instrument"],
        bid=parse_price(bid, PRICE_DECIMALS),
        ask=parse_price(ask, PRICE_DECIMALS),
        time_ns=parse_time_ns(p.get("time")),
        tradeable=bool(p.get("tradeable", p.get("status", "tradeable") == "tradeable")),
    )
