"""Every request the engine makes through the OANDA adapter, against the v20
simulator over HTTP: the events returned, the events streamed, and what the
venue's own books say happened."""
from __future__ import annotations

import logging
import time

import pytest

from fastexec.brokers.base import (
    BrokerError,
    ExitDetails,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PositionFill,
    PriceTick,
    TimeInForce,
    TriggerCondition,
    V20OrderType,
)
from fastexec.brokers.oanda import OandaBroker

from .conftest import adapter_config, eventually, order, venue_creates

PIP = 100_000  # EUR_USD pip at PRICE_SCALE (0.0001 * 10**9)


def quote(sim, instrument="EUR_USD"):
    bid, ask, _ = sim.venue.price(instrument)
    return bid, ask


# ------------------------------------------------------------------------------------------- submit


async def test_market_order_fills_once_and_the_stream_repeats_the_same_fill(sim, broker, events, acct):
    bid, ask = quote(sim)
    got = await broker.submit(order(acct, "m-1", units=1000))
    assert [type(e) for e in got] == [OrderFilled]
    fill = got[0]
    assert fill.client_id == "m-1" and fill.units == 1000 and fill.price == ask and fill.reason == "MARKET_ORDER"
    assert fill.account_balance == 100_000 * 10**6 and fill.trade_opened_id == str(fill.txn_id)
    # the venue created exactly one order for the client id, and filled it
    (create,) = venue_creates(sim, acct, "m-1")
    assert create.type == "MARKET_ORDER" and create.p.state == "FILLED"
    # the transaction stream delivers the identical event (same txn id) once
    await eventually(lambda: events.of(OrderFilled, client_id="m-1"), what="streamed fill")
    assert events.of(OrderFilled, client_id="m-1") == [fill]
    assert sim.stats.count(path="/orders") == 1


async def test_sell_order_fills_at_the_bid(sim, broker, acct):
    bid, _ = quote(sim)
    (fill,) = await broker.submit(order(acct, "s-1", units=-2500, time_in_force=TimeInForce.IOC))
    assert fill.units == -2500 and fill.price == bid


@pytest.mark.parametrize("tif", [TimeInForce.GTC, TimeInForce.GTD, TimeInForce.GFD])
@pytest.mark.parametrize("typ", [V20OrderType.LIMIT, V20OrderType.STOP, V20OrderType.MARKET_IF_TOUCHED])
async def test_resting_orders_of_every_type_are_accepted_and_listed(sim, broker, acct, typ, tif):
    bid, ask = quote(sim)
    # a buy limit/MIT below the market and a buy stop above it stay working
    price = ask + 50 * PIP if typ is V20OrderType.STOP else bid - 50 * PIP
    gtd = time.time_ns() + 3600 * 10**9 if tif is TimeInForce.GTD else None
    req = order(acct, f"r-{typ.value}-{tif.value}", type=typ, price=price, time_in_force=tif, gtd_time_ns=gtd,
                trigger_condition=TriggerCondition.MID)
    (acc,) = await broker.submit(req)
    assert isinstance(acc, OrderAccepted) and acc.client_id == req.client_id
    (create,) = venue_creates(sim, acct, req.client_id)
    assert create.p.type == typ.value and create.p.tif == tif.value and create.p.price == price
    assert create.p.trigger == "MID" and create.p.state == "PENDING"
    pending = await broker.pending_orders(acct)
    assert [(o.broker_order_id, o.client_id, o.state, o.price) for o in pending] == [
        (acc.broker_order_id, req.client_id, "PENDING", price)
    ]
    found = await broker.order_by_client_id(acct, req.client_id)
    assert found.broker_order_id == acc.broker_order_id and found.units == 1000 and found.type == typ.value


async def test_limit_order_fills_later_and_only_the_stream_reports_it(sim, broker, events, acct):
    bid, ask = quote(sim)
    (acc,) = await broker.submit(order(acct, "l-1", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    sim.venue.set_price("EUR_USD", bid - 30 * PIP, ask - 30 * PIP)
    await eventually(lambda: events.of(OrderFilled, client_id="l-1"), what="limit fill on the stream")
    (fill,) = events.of(OrderFilled, client_id="l-1")
    assert fill.broker_order_id == acc.broker_order_id and fill.price == ask - 30 * PIP and fill.reason == "LIMIT_ORDER"
    assert events.of(OrderAccepted, client_id="l-1") == [acc]


@pytest.mark.parametrize("tif", [TimeInForce.FOK, TimeInForce.IOC])
async def test_unmarketable_fok_ioc_limit_is_cancelled_in_the_same_answer(sim, broker, acct, tif):
    bid, _ = quote(sim)
    (ev,) = await broker.submit(order(acct, f"x-{tif.value}", type=V20OrderType.LIMIT, price=bid - 10 * PIP, time_in_force=tif))
    assert isinstance(ev, OrderCancelled) and ev.reason == "INSUFFICIENT_LIQUIDITY" and ev.client_id == f"x-{tif.value}"
    assert venue_creates(sim, acct, f"x-{tif.value}")[0].p.state == "CANCELLED"


async def test_price_bound_violation_cancels(sim, broker, acct):
    _, ask = quote(sim)
    (ev,) = await broker.submit(order(acct, "pb-1", price_bound=ask - 5 * PIP))
    assert isinstance(ev, OrderCancelled) and ev.reason == "BOUNDS_VIOLATION"
    (ok,) = await broker.submit(order(acct, "pb-2", price_bound=ask + 5 * PIP))
    assert isinstance(ok, OrderFilled) and ok.price == ask


async def test_stop_with_price_bound_rests(sim, broker, acct):
    _, ask = quote(sim)
    (acc,) = await broker.submit(order(acct, "sb-1", type=V20OrderType.STOP, price=ask + 10 * PIP, price_bound=ask + 12 * PIP))
    assert isinstance(acc, OrderAccepted)
    assert venue_creates(sim, acct, "sb-1")[0].p.price_bound == ask + 12 * PIP


async def test_on_fill_exits_reach_the_trade(sim, broker, acct):
    bid, ask = quote(sim)
    req = order(
        acct, "ex-1", units=500,
        take_profit=ExitDetails(price=ask + 100 * PIP),
        stop_loss=ExitDetails(distance=50 * PIP),
        trailing_stop=ExitDetails(distance=30 * PIP),
    )
    (fill,) = await broker.submit(req)
    (trade,) = await broker.open_trades(acct)
    assert trade.trade_id == fill.trade_opened_id and trade.current_units == 500 and trade.price == ask
    assert trade.take_profit_order_id and trade.stop_loss_order_id and trade.trailing_stop_loss_order_id
    v = sim.venue.accounts[acct]
    tp = v.orders[int(trade.take_profit_order_id)]
    sl = v.orders[int(trade.stop_loss_order_id)]
    tsl = v.orders[int(trade.trailing_stop_loss_order_id)]
    assert tp.price == ask + 100 * PIP and sl.price == ask - 50 * PIP and tsl.distance == 30 * PIP


async def test_guaranteed_stop_loss_on_fill(sim, broker, acct):
    _, ask = quote(sim)
    (fill,) = await broker.submit(order(acct, "g-1", stop_loss=ExitDetails(distance=40 * PIP, guaranteed=True)))
    (trade,) = await broker.open_trades(acct)
    sl = sim.venue.accounts[acct].orders[int(trade.stop_loss_order_id)]
    assert sl.guaranteed is True and sl.price == ask - 40 * PIP


async def test_position_fill_reduce_only_closes_without_opening(sim, broker, acct):
    await broker.submit(order(acct, "po-1", units=300))
    (fill,) = await broker.submit(order(acct, "po-2", units=-1000, position_fill=PositionFill.REDUCE_ONLY))
    assert fill.units == -300 and fill.trade_opened_id is None and len(fill.trades_closed) == 1
    assert await broker.open_positions(acct) == []


async def test_v20_reject_carries_reason_code_and_is_not_retried(sim, broker, events, acct):
    before = sim.stats.count(path="/orders")
    (rej,) = await broker.submit(order(acct, "bad-1", units=0))
    assert isinstance(rej, OrderRejected)
    assert rej.reason == "UNITS_INVALID" and rej.message == "Order units specified are invalid"
    assert rej.client_id == "bad-1" and rej.txn_id == sim.venue.accounts[acct].last_id
    assert sim.stats.count(path="/orders") == before + 1
    (rej2,) = await broker.submit(order(acct, "bad-2", instrument="FOO_BAR"))
    assert rej2.reason == "INSTRUMENT_UNKNOWN"
    await eventually(lambda: events.of(OrderRejected, client_id="bad-2"), what="streamed reject")


async def test_request_not_expressible_in_v20_is_refused_without_sending(sim, broker, acct):
    bid, _ = quote(sim)
    before = len(sim.stats.requests)
    (rej,) = await broker.submit(order(acct, "p-1", type=V20OrderType.LIMIT, price=bid - PIP + 1))
    assert rej.reason == "PRICE_PRECISION_EXCEEDED" and rej.txn_id is None
    assert len(sim.stats.requests) == before and venue_creates(sim, acct, "p-1") == []


async def test_instrument_precision_comes_from_the_venue(sim, broker, acct):
    bid, ask = quote(sim, "USD_JPY")
    # 3 decimals on USD_JPY: a price at 0.001 passes, one at 0.0001 does not
    (acc,) = await broker.submit(order(acct, "j-1", instrument="USD_JPY", type=V20OrderType.LIMIT, price=bid - 1_000_000_000))
    assert isinstance(acc, OrderAccepted)
    (rej,) = await broker.submit(order(acct, "j-2", instrument="USD_JPY", type=V20OrderType.LIMIT, price=bid - 100_000))
    assert rej.reason == "PRICE_PRECISION_EXCEEDED"


# ------------------------------------------------------------------------------------ replace / cancel


async def test_replace_gives_a_new_id_and_the_old_order_is_gone(sim, broker, events, acct):
    bid, _ = quote(sim)
    (acc,) = await broker.submit(order(acct, "rp-1", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    got = await broker.replace(acct, acc.broker_order_id, order(acct, "rp-1", units=2000, type=V20OrderType.LIMIT, price=bid - 25 * PIP))
    assert [type(e) for e in got] == [OrderReplaced]
    rep = got[0]
    assert rep.old_broker_order_id == acc.broker_order_id and rep.client_id == "rp-1"
    v = sim.venue.accounts[acct]
    assert v.orders[int(acc.broker_order_id)].state == "CANCELLED"
    new = v.orders[int(rep.new_broker_order_id)]
    assert new.state == "PENDING" and new.units == 2000 and new.price == bid - 25 * PIP
    await eventually(lambda: events.of(OrderReplaced), what="streamed replace")
    assert events.of(OrderReplaced) == [rep]


async def test_replace_of_a_different_type_is_rejected_by_the_venue(sim, broker, acct):
    bid, _ = quote(sim)
    (acc,) = await broker.submit(order(acct, "rp-2", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    (rej,) = await broker.replace(acct, acc.broker_order_id, order(acct, "rp-2", type=V20OrderType.STOP, price=bid + 50 * PIP))
    assert isinstance(rej, OrderRejected) and rej.reason == "REPLACING_ORDER_INVALID"
    assert sim.venue.accounts[acct].orders[int(acc.broker_order_id)].state == "PENDING"


async def test_cancel_and_cancel_again(sim, broker, events, acct):
    bid, _ = quote(sim)
    (acc,) = await broker.submit(order(acct, "c-1", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    (can,) = await broker.cancel(acct, acc.broker_order_id)
    assert isinstance(can, OrderCancelled) and can.reason == "CLIENT_REQUEST" and can.client_id == "c-1"
    assert sim.venue.accounts[acct].orders[int(acc.broker_order_id)].state == "CANCELLED"
    (again,) = await broker.cancel(acct, acc.broker_order_id)
    assert isinstance(again, OrderRejected)
    await eventually(lambda: events.of(OrderCancelled, client_id="c-1"), what="streamed cancel")


# ------------------------------------------------------------------------------------- closing


async def test_close_trade_partially_then_fully(sim, broker, acct):
    bid, _ = quote(sim)
    (fill,) = await broker.submit(order(acct, "t-1", units=1000))
    tid = fill.trade_opened_id
    (part,) = await broker.close_trade(acct, tid, 400)
    assert part.units == -400 and part.price == bid and part.reason == "MARKET_ORDER_TRADE_CLOSE"
    assert part.client_id is None and part.trades_closed == (tid,)
    assert sim.venue.accounts[acct].trades[int(tid)].units == 600
    (rest,) = await broker.close_trade(acct, tid)
    assert rest.units == -600 and sim.venue.accounts[acct].trades[int(tid)].state == "CLOSED"
    (rej,) = await broker.close_trade(acct, tid)
    assert isinstance(rej, OrderRejected)
    assert await broker.open_trades(acct) == []


async def test_close_position_partially_then_all_and_a_missing_side(sim, broker, acct):
    await broker.submit(order(acct, "cp-1", units=1000))
    await broker.submit(order(acct, "cp-2", units=500))
    (part,) = await broker.close_position(acct, "EUR_USD", 300, None)
    assert part.units == -300 and part.reason == "MARKET_ORDER_POSITION_CLOSEOUT"
    (pos,) = await broker.open_positions(acct)
    assert pos.long_units == 1200 and pos.short_units == 0
    rej = await broker.close_position(acct, "EUR_USD", None, "ALL")
    assert {e.reason for e in rej if isinstance(e, OrderRejected)} == {"CLOSEOUT_POSITION_DOESNT_EXIST"}
    (full,) = await broker.close_position(acct, "EUR_USD", "ALL", None)
    assert full.units == -1200
    assert await broker.open_positions(acct) == []


@pytest.mark.parametrize("bad", [0, -5, "SOME", True])
async def test_bad_close_units_are_refused_locally(sim, broker, acct, bad):
    before = len(sim.stats.requests)
    (rej,) = await broker.close_trade(acct, "1", bad)
    assert rej.reason == "UNITS_INVALID" and len(sim.stats.requests) == before


# ------------------------------------------------------------------------------------------- reads


async def test_account_summary_matches_the_venue(sim, broker, acct):
    await broker.submit(order(acct, "a-1", units=10_000))
    snap = await broker.account_summary(acct)
    nums = sim.venue.account_numbers(sim.venue.accounts[acct])
    v = sim.venue.accounts[acct]
    assert snap.account_id == acct and snap.currency == "USD"
    assert snap.balance == v.balance and snap.last_txn_id == v.last_id
    assert snap.open_trade_count == 1 and snap.open_position_count == 1 and snap.pending_order_count == 0
    assert snap.nav == snap.balance + snap.unrealized_pl
    assert snap.margin_available == snap.nav - snap.margin_used
    assert snap.margin_used == nums["marginUsed"]


async def test_account_changes_and_transactions_since(sim, broker, acct):
    start = (await broker.account_summary(acct)).last_txn_id
    bid, _ = quote(sim)
    (fill,) = await broker.submit(order(acct, "ch-1", units=100))
    (acc,) = await broker.submit(order(acct, "ch-2", type=V20OrderType.LIMIT, price=bid - 10 * PIP))
    changes = await broker.account_changes(acct, start)
    assert changes.last_txn_id == sim.venue.accounts[acct].last_id
    assert [e.txn_id for e in changes.events] == [fill.txn_id, acc.txn_id]
    assert changes.changes["ordersCreated"] and changes.state["NAV"]
    since = await broker.transactions_since(acct, start)
    assert since == changes.events


async def test_instruments_from_the_venue(sim, broker, acct):
    ins = {i.name: i for i in await broker.instruments(acct)}
    assert ins["EUR_USD"].display_precision == 5 and ins["EUR_USD"].pip_location == -4
    assert ins["USD_JPY"].display_precision == 3
    (one,) = await broker.instruments(acct, ["GBP_USD"])
    assert one.name == "GBP_USD" and one.margin_rate > 0


async def test_latest_prices_and_the_price_stream(sim, broker, events, acct):
    bid, ask = quote(sim)
    ticks = await broker.latest_prices(["EUR_USD", "USD_JPY"])
    assert [(t.instrument, t.bid, t.ask) for t in ticks][0] == ("EUR_USD", bid, ask)
    await broker.subscribe_prices(["EUR_USD"])
    await eventually(lambda: events.of(PriceTick, instrument="EUR_USD"), what="snapshot tick")
    sim.venue.set_price("EUR_USD", bid + 3 * PIP, ask + 3 * PIP)
    await eventually(lambda: events.of(PriceTick, bid=bid + 3 * PIP), what="moved tick")
    assert events.of(PriceTick, bid=bid + 3 * PIP)[0].ask == ask + 3 * PIP


async def test_order_lookup_of_an_unknown_client_id(sim, broker, acct):
    assert await broker.order_by_client_id(acct, "never-sent") is None


async def test_accounts_are_discovered_when_not_configured(sim, events):
    b = OandaBroker(adapter_config(sim, account_ids=()))
    await b.start(streams=False)
    try:
        assert tuple(b.account_ids()) == tuple(sim.account_ids)
    finally:
        await b.stop()


async def test_bad_token_fails_without_leaking_either_token(sim, caplog):
    wrong = "WRONG-token-5f2a9c1e7b"
    b = OandaBroker(adapter_config(sim, token=wrong))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BrokerError) as err:
        await b.start()
    await b.stop()
    assert "401" in str(err.value) or "authorization" in str(err.value).lower()
    for text in (str(err.value), repr(err.value), caplog.text, repr(b)):
        assert wrong not in text and sim.token not in text
