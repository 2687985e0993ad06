"""Render venue objects as v20 JSON bodies (REFERENCE.md §3-§6).

Only the HTTP face and tests call this; the venue keeps ints and references.
Numbers become decimal strings at their wire precision: prices at the
instrument's displayPrecision, units as signed integers, money with 4
decimals, rates as their shortest exact decimal, percents with 5 decimals.
"""
from __future__ import annotations

import calendar
import re
import time
from typing import Optional

from .fixed import RATE_SCALE, format_money, format_price, format_price_round, format_rate, round_half_even_int
from .venue import DEPENDENT_TYPES, MARKET, MARKET_IF_TOUCHED, STOP_LOSS, TAKE_PROFIT, \
    TRAILING_STOP_LOSS, Account, Fill, OnFill, Order, Position, Trade, Txn, Venue

_RFC = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def fmt_time(ns: int, unix: bool = False) -> str:
    """v20 DateTime: RFC3339 with nanoseconds and Z, or UNIX seconds with 9 decimals."""
    s, frac = divmod(ns, 1_000_000_000)
    if unix:
        return f"{s}.{frac:09d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:09d}Z"


def parse_rfc3339(text: str) -> int:
    """RFC3339 or UNIX-seconds text -> ns since the epoch (ValueError when neither)."""
    m = _RFC.match(text)
    if not m:
        whole, dot, frac = text.partition(".")
        if whole.isdigit() and (not dot or frac.isdigit()):
            return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
        raise ValueError(f"not a DateTime: {text!r}")
    y, mo, d, h, mi, se, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(se), 0, 0, 0))
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + int((frac or "").ljust(9, "0"))


def money(v: int) -> str:
    return format_money(v, 4)


def pct(rate: int) -> str:
    """A ratio at RATE_SCALE with OANDA's 5 decimals (half-even)."""
    q = round_half_even_int(rate, 10**7)
    s = "-" if q < 0 else ""
    q = abs(q)
    return f"{s}{q // 100000}.{q % 100000:05d}"


def _px(o_inst, v: Optional[int]) -> Optional[str]:
    return None if v is None else format_price(v, o_inst.display_precision)


def _ce(ce: Optional[dict]) -> Optional[dict]:
    if not ce:
        return None
    return {k: v for k, v in ce.items() if v is not None}


def _details(inst, of: Optional[OnFill], unix: bool, kind: str) -> Optional[dict]:
    if of is None:
        return None
    d: dict = {}
    if of.price is not None:
        d["price"] = format_price(of.price, inst.display_precision)
    if of.distance is not None:
        d["distance"] = format_price(of.distance, inst.display_precision)
    d["timeInForce"] = of.tif
    if of.gtd_ns is not None:
        d["gtdTime"] = fmt_time(of.gtd_ns, unix)
    if kind == "sl" and of.guaranteed is not None:
        d["guaranteed"] = of.guaranteed
    ce = _ce(of.client_ext)
    if ce:
        d["clientExtensions"] = ce
    return d


def order_echo(o: Order, unix: bool = False) -> dict:
    """The request fields of an order, defaults filled in, prices normalised —
    what v20 puts in ``*_ORDER`` and ``*_ORDER_REJECT`` transactions."""
    d: dict = {}
    t = o.type
    inst = o.inst
    if t in DEPENDENT_TYPES:
        if o.trade_id is not None:
            d["tradeID"] = str(o.trade_id)
        if o.client_trade_id is not None:
            d["clientTradeID"] = o.client_trade_id
        if t != TRAILING_STOP_LOSS and o.price is not None and inst is not None:
            d["price"] = _px(inst, o.price)
        if t != TAKE_PROFIT and o.distance is not None and inst is not None:
            d["distance"] = _px(inst, o.distance)
        d["timeInForce"] = o.tif
        if o.gtd_ns is not None:
            d["gtdTime"] = fmt_time(o.gtd_ns, unix)
        d["triggerCondition"] = o.trigger
        if t == STOP_LOSS and o.guaranteed is not None:
            d["guaranteed"] = o.guaranteed
    else:
        if inst is not None:
            d["instrument"] = inst.name
        d["units"] = str(o.units)
        if t != MARKET and o.price is not None and inst is not None:
            d["price"] = _px(inst, o.price)
        if o.price_bound is not None and inst is not None:
            d["priceBound"] = _px(inst, o.price_bound)
        d["timeInForce"] = o.tif
        if o.gtd_ns is not None and t != MARKET:
            d["gtdTime"] = fmt_time(o.gtd_ns, unix)
        if t != MARKET:
            d["triggerCondition"] = o.trigger
            d["partialFill"] = "DEFAULT"
        d["positionFill"] = o.position_fill
        if inst is not None:
            for key, of, kind in (("takeProfitOnFill", o.tp, "tp"), ("stopLossOnFill", o.sl, "sl"),
                                  ("trailingStopLossOnFill", o.tsl, "tsl")):
                x = _details(inst, of, unix, kind)
                if x is not None:
                    d[key] = x
        tce = _ce(o.trade_client_ext)
        if tce:
            d["tradeClientExtensions"] = tce
        if o.trade_close_units is not None:
            d["tradeClose"] = {"tradeID": str(o.trade_id), "units": str(o.trade_close_units)}
        if o.closeout is not None and inst is not None:
            side, u = o.closeout
            if side in ("long", "short"):
                d[side + "PositionCloseout"] = {"instrument": inst.name, "units": str(u)}
            else:
                d["marginCloseout"] = {"reason": "MARGIN_CHECK_VIOLATION"}
    ce = _ce(o.client_ext)
    if ce:
        d["clientExtensions"] = ce
    d["reason"] = o.reason
    return d


def _base(acct: Account, t: Txn, unix: bool) -> dict:
    d = {"id": str(t.id), "time": fmt_time(t.time, unix), "userID": acct.user_id, "accountID": acct.id,
         "batchID": str(t.batch), "type": t.type}
    if t.req is not None:
        d["requestID"] = t.req
    return d


def render_txn(venue: Venue, acct: Account, t: Txn, unix: bool = False) -> dict:
    d = _base(acct, t, unix)
    p = t.p
    typ = t.type
    if typ == "ORDER_FILL":
        d.update(_fill(acct, p, unix))
    elif typ == "ORDER_CANCEL":
        o, reason = p
        d["orderID"] = str(o.id)
        cid = o.client_id
        if cid is not None:
            d["clientOrderID"] = cid
        d["reason"] = reason
        if reason == "CLIENT_REQUEST_REPLACED" and o.replaced_by_id is not None:
            d["replacedByOrderID"] = str(o.replaced_by_id)
    elif typ.endswith("_REJECT"):
        echo, reason = p
        d.update(echo)
        d["rejectReason"] = reason
    elif isinstance(p, Order):
        d.update(order_echo(p, unix))
        if p.replaces_id is not None:
            d["replacesOrderID"] = str(p.replaces_id)
            if p.cancelling_txn_for_replace is not None:
                d["cancellingTransactionID"] = str(p.cancelling_txn_for_replace)
        if p.on_fill_txn is not None:
            d["orderFillTransactionID"] = str(p.on_fill_txn)
    elif typ == "TRANSFER_FUNDS":
        d["amount"] = money(p["amount"])
        d["fundingReason"] = p["fundingReason"]
        d["accountBalance"] = money(p["accountBalance"])
    else:
        d.update(p)
    return d


def _client_price(inst, bid: int, ask: int, ptime: int, unix: bool, liquidity: int = 10_000_000) -> dict:
    return {
        "type": "PRICE",
        "instrument": inst.name,
        "time": fmt_time(ptime, unix),
        "bids": [{"price": format_price(bid, inst.display_precision), "liquidity": liquidity}],
        "asks": [{"price": format_price(ask, inst.display_precision), "liquidity": liquidity}],
        "closeoutBid": format_price(bid, inst.display_precision),
        "closeoutAsk": format_price(ask, inst.display_precision),
    }


def _fill(acct: Account, f: Fill, unix: bool) -> dict:
    o = f.order
    inst = o.inst
    dp = inst.display_precision
    d = {
        "orderID": str(o.id),
        "instrument": inst.name,
        "units": str(f.units),
        "requestedUnits": str(o.units),
        "price": format_price(f.price, dp),
        "fullVWAP": format_price(f.price, dp),
        "fullPrice": _client_price(inst, f.bid, f.ask, f.ptime, unix),
        "reason": f.reason,
        "pl": money(f.pl),
        "financing": "0.0000",
        "commission": "0.0000",
        "guaranteedExecutionFee": "0.0000",
        "accountBalance": money(f.balance),
        "gainQuoteHomeConversionFactor": format_rate(f.gain),
        "lossQuoteHomeConversionFactor": format_rate(f.loss),
        "halfSpreadCost": money(f.half_spread),
    }
    cid = o.client_id
    if cid is not None:
        d["clientOrderID"] = cid
    if f.opened is not None:
        tid, u, px, hs, im, ce = f.opened
        to = {"tradeID": str(tid), "units": str(u), "price": format_price(px, dp), "guaranteedExecutionFee": "0.0000",
              "halfSpreadCost": money(hs), "initialMarginRequired": money(im)}
        ce = _ce(ce)
        if ce:
            to["clientExtensions"] = ce
        d["tradeOpened"] = to
    if f.closed:
        d["tradesClosed"] = [_reduce(e, dp) for e in f.closed]
    if f.reduced is not None:
        d["tradeReduced"] = _reduce(f.reduced, dp)
    return d


def _reduce(e, dp) -> dict:
    tid, u, px, pl, hs = e
    return {"tradeID": str(tid), "units": str(u), "price": format_price(px, dp), "realizedPL": money(pl),
            "financing": "0.0000", "guaranteedExecutionFee": "0.0000", "halfSpreadCost": money(hs)}


# --------------------------------------------------------------------------- state objects


def render_order(venue: Venue, acct: Account, o: Order, unix: bool = False) -> dict:
    d = {"id": str(o.id), "createTime": fmt_time(o.create_ns, unix), "state": o.state, "type": o.type}
    echo = order_echo(o, unix)
    echo.pop("reason", None)
    echo.pop("tradeClose", None)
    echo.pop("longPositionCloseout", None)
    echo.pop("shortPositionCloseout", None)
    echo.pop("marginCloseout", None)
    d.update(echo)
    if o.type == MARKET_IF_TOUCHED and o.initial_market_price is not None:
        d["initialMarketPrice"] = format_price(o.initial_market_price, o.inst.display_precision)
    if o.type == TRAILING_STOP_LOSS and o.trailing_value is not None and o.state == "PENDING":
        d["trailingStopValue"] = format_price_round(o.trailing_value, o.inst.display_precision)
    if o.replaces_id is not None:
        d["replacesOrderID"] = str(o.replaces_id)
    if o.replaced_by_id is not None:
        d["replacedByOrderID"] = str(o.replaced_by_id)
    if o.fill_txn is not None:
        d["fillingTransactionID"] = str(o.fill_txn)
        d["filledTime"] = fmt_time(o.filled_ns, unix)
        if o.trade_opened_id is not None:
            d["tradeOpenedID"] = str(o.trade_opened_id)
        if o.trade_reduced_id is not None:
            d["tradeReducedID"] = str(o.trade_reduced_id)
        if o.fill_closed:
            d["tradeClosedIDs"] = [str(e[0]) for e in o.fill_closed]
    if o.cancel_txn is not None:
        d["cancellingTransactionID"] = str(o.cancel_txn)
        d["cancelledTime"] = fmt_time(o.cancelled_ns, unix)
    return d


def render_trade(venue: Venue, acct: Account, tr: Trade, summary: bool = False, unix: bool = False) -> dict:
    inst = tr.inst
    dp = inst.display_precision
    upl, mu = venue.trade_numbers(acct, tr)
    d = {
        "id": str(tr.id),
        "instrument": inst.name,
        "price": format_price(tr.price, dp),
        "openTime": fmt_time(tr.open_ns, unix),
        "state": tr.state,
        "initialUnits": str(tr.initial_units),
        "initialMarginRequired": money(tr.initial_margin),
        "currentUnits": str(tr.units),
        "realizedPL": money(tr.realized_pl),
        "unrealizedPL": money(upl),
        "marginUsed": money(mu),
        "financing": "0.0000",
    }
    if tr.closed_units:
        d["averageClosePrice"] = format_price_round(round_half_even_int(tr.closed_value, tr.closed_units), dp)
    if tr.closing_txn_ids:
        d["closingTransactionIDs"] = [str(x) for x in tr.closing_txn_ids]
    if tr.close_ns is not None:
        d["closeTime"] = fmt_time(tr.close_ns, unix)
    ce = _ce(tr.client_ext)
    if ce:
        d["clientExtensions"] = ce
    for key, o in (("takeProfitOrder", tr.tp), ("stopLossOrder", tr.sl), ("trailingStopLossOrder", tr.tsl)):
        if o is not None:
            if summary:
                d[key + "ID"] = str(o.id)
            else:
                d[key] = render_order(venue, acct, o, unix)
    return d


def render_position(venue: Venue, acct: Account, pos: Position) -> dict:
    inst = pos.inst
    upl, _cupl, _pv, mu, _ = venue.position_numbers(acct, pos)
    u = pos.units

    def side(long_: bool) -> dict:
        open_ = (u > 0) if long_ else (u < 0)
        s = {"units": str(u if open_ else 0), "pl": money(pos.long_pl if long_ else pos.short_pl),
             "resettablePL": money(pos.long_pl if long_ else pos.short_pl), "financing": "0.0000",
             "guaranteedExecutionFees": "0.0000", "unrealizedPL": money(upl if open_ else 0)}
        if open_:
            s["averagePrice"] = format_price_round(round_half_even_int(abs(pos.cost), abs(u)), inst.display_precision)
            s["tradeIDs"] = [str(t.id) for t in pos.trades]
        return s

    return {
        "instrument": inst.name,
        "pl": money(pos.pl),
        "unrealizedPL": money(upl),
        "marginUsed": money(mu),
        "resettablePL": money(pos.resettable_pl),
        "financing": "0.0000",
        "commission": "0.0000",
        "guaranteedExecutionFees": "0.0000",
        "long": side(True),
        "short": side(False),
    }


_NUMS = ("unrealizedPL", "NAV", "marginUsed", "marginAvailable", "positionValue", "marginCloseoutUnrealizedPL",
         "marginCloseoutNAV", "marginCloseoutMarginUsed", "marginCloseoutPositionValue", "withdrawalLimit",
         "marginCallMarginUsed")


def render_account_numbers(n: dict) -> dict:
    d = {k: money(n[k]) for k in _NUMS}
    d["marginCloseoutPercent"] = pct(n["marginCloseoutPercent"])
    d["marginCallPercent"] = pct(n["marginCallPercent"])
    return d


def render_account(venue: Venue, acct: Account, full: bool = False, unix: bool = False) -> dict:
    n = venue.account_numbers(acct)
    open_pos = sum(1 for p in acct.positions.values() if p.units)
    d = {
        "id": acct.id,
        "alias": acct.alias,
        "currency": acct.currency,
        "balance": money(acct.balance),
        "createdByUserID": acct.user_id,
        "createdTime": fmt_time(acct.created_ns, unix),
        "guaranteedStopLossOrderMode": acct.gslo_mode,
        "pl": money(acct.pl),
        "resettablePL": money(acct.resettable_pl),
        "resettablePLTime": "0",
        "financing": money(acct.financing),
        "commission": money(acct.commission),
        "guaranteedExecutionFees": "0.0000",
        "marginCallExtensionCount": 0,
        "openTradeCount": len(acct.open_trades),
        "openPositionCount": open_pos,
        "pendingOrderCount": len(acct.pending),
        "hedgingEnabled": acct.hedging,
        "lastTransactionID": str(acct.last_id),
    }
    if acct.last_fill_ns is not None:
        d["lastOrderFillTimestamp"] = fmt_time(acct.last_fill_ns, unix)
    d.update(render_account_numbers(n))
    if full:
        d["trades"] = [render_trade(venue, acct, t, summary=True, unix=unix) for t in acct.open_trades.values()]
        d["positions"] = [render_position(venue, acct, p) for p in acct.positions.values()]
        d["orders"] = [render_order(venue, acct, o, unix) for o in acct.pending.values()]
    return d


def render_price(venue: Venue, inst, unix: bool = False, acct: Optional[Account] = None) -> dict:
    i = inst.index
    bid, ask, t = venue.bids[i], venue.asks[i], venue.ptimes[i]
    d = _client_price(inst, bid, ask, t, unix, venue.liquidity)
    d["status"] = "tradeable"
    d["tradeable"] = True
    if acct is not None:
        gain, loss, _ = venue.factors(acct.currency, inst)
        d["quoteHomeConversionFactors"] = {"positiveUnits": format_rate(gain), "negativeUnits": format_rate(loss)}
    return d


def render_instrument(inst) -> dict:
    d = dict(inst.v20)
    return d


__all__ = ["fmt_time", "parse_rfc3339", "render_txn", "render_order", "render_trade", "render_position",
           "render_account", "render_price", "order_echo", "money", "pct", "RATE_SCALE"]
