"""SimulatedBroker: the engine's default broker, driven in-process."""
from __future__ import annotations

from fastexec.brokers.base import (
    ExitDetails,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderRequest,
    PriceTick,
    V20OrderType,
)
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.fixed import parse_money, parse_price
from fastexec.sim.venue import Venue

P = lambda s: parse_price(s, 5)  # noqa: E731


def make():
    v = Venue(seed=3, balance="100000")
    v.set_price("EUR_USD", P("1.10000"), P("1.10010"))
    b = SimulatedBroker(v)
    events = []
    b.set_event_handler(events.append)
    return v, b, events, b.account_ids()[0]


async def test_market_order_returns_fill_with_venue_txn_id():
    v, b, events, aid = make()
    await b.start()
    evs = await b.submit(OrderRequest("c-1", aid, "EUR_USD", 1000))
    assert len(evs) == 1 and isinstance(evs[0], OrderFilled)
    f = evs[0]
    assert f.client_id == "c-1" and f.price == P("1.10010") and f.units == 1000 and f.reason == "MARKET_ORDER"
    assert f.txn_id == v.accounts[aid].last_id and f.trade_opened_id == str(f.txn_id)
    assert events == []  # the request returned its events; nothing duplicated to the handler
    found = await b.order_by_client_id(aid, "c-1")
    assert found.state == "FILLED" and found.filling_txn_id == f.txn_id
    assert await b.order_by_client_id(aid, "never-sent") is None
    await b.stop()


async def test_pending_limit_fills_on_tick_through_handler_with_exits():
    v, b, events, aid = make()
    await b.start()
    await b.subscribe_prices(["EUR_USD"])
    evs = await b.submit(OrderRequest("lim-1", aid, "EUR_USD", -500, type=V20OrderType.LIMIT, price=P("1.10100"),
                                      take_profit=ExitDetails(price=P("1.09000")),
                                      stop_loss=ExitDetails(distance=P("0.00500"))))
    assert [type(e) for e in evs] == [OrderAccepted]
    oid = evs[0].broker_order_id
    assert [o.broker_order_id for o in await b.pending_orders(aid)] == [oid]
    v.set_price("EUR_USD", P("1.10100"), P("1.10112"))
    ticks = [e for e in events if isinstance(e, PriceTick)]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert ticks and ticks[0].bid == P("1.10100")
    assert len(fills) == 1 and fills[0].client_id == "lim-1" and fills[0].price == P("1.10100")
    assert fills[0].reason == "LIMIT_ORDER" and fills[0].units == -500
    pend = await b.pending_orders(aid)
    assert sorted(o.type for o in pend) == ["STOP_LOSS", "TAKE_PROFIT"]
    sl = [o for o in pend if o.type == "STOP_LOSS"][0]
    assert sl.price == P("1.10600")  # distance from the fill price, above for a short
    events.clear()
    v.set_price("EUR_USD", P("1.10590"), P("1.10605"))
    exit_fill = [e for e in events if isinstance(e, OrderFilled)]
    assert len(exit_fill) == 1 and exit_fill[0].reason == "STOP_LOSS_ORDER" and exit_fill[0].client_id is None
    assert exit_fill[0].price == P("1.10605")
    assert exit_fill[0].pl == parse_money("-2.5250")  # 500 * (1.10100 - 1.10605)
    cancels = [e for e in events if isinstance(e, OrderCancelled)]
    assert [c.reason for c in cancels] == ["LINKED_TRADE_CLOSED"]
    assert await b.open_positions(aid) == []
    await b.stop()


async def test_replace_and_cancel_events():
    v, b, events, aid = make()
    evs = await b.submit(OrderRequest("r-1", aid, "EUR_USD", 100, type=V20OrderType.LIMIT, price=P("1.09000")))
    old = evs[0].broker_order_id
    evs = await b.replace(aid, old, OrderRequest("r-1", aid, "EUR_USD", 200, type=V20OrderType.LIMIT,
                                                 price=P("1.09500")))
    assert len(evs) == 1 and isinstance(evs[0], OrderReplaced)
    new = evs[0].new_broker_order_id
    assert new != old and evs[0].old_broker_order_id == old and evs[0].client_id == "r-1"
    assert (await b.order_by_client_id(aid, "r-1")).broker_order_id == new
    evs = await b.cancel(aid, new)
    assert isinstance(evs[0], OrderCancelled) and evs[0].reason == "CLIENT_REQUEST"
    evs = await b.cancel(aid, new)
    assert isinstance(evs[0], OrderRejected) and evs[0].reason == "ORDER_DOESNT_EXIST"


async def test_rejects_are_events_with_v20_reasons():
    v, b, events, aid = make()
    evs = await b.submit(OrderRequest("bad-1", aid, "EUR_USD", 0))
    assert isinstance(evs[0], OrderRejected) and evs[0].reason == "UNITS_INVALID"
    assert evs[0].message == "Order units specified are invalid" and evs[0].client_id == "bad-1"
    evs = await b.submit(OrderRequest("bad-2", aid, "EUR_USD", 10, type=V20OrderType.LIMIT, price=P("1.1") + 1))
    assert evs[0].reason == "PRICE_PRECISION_EXCEEDED"
    evs = await b.submit(OrderRequest("bad-3", aid, "NOPE_USD", 10))
    assert evs[0].reason == "INSTRUMENT_UNKNOWN"


async def test_transactions_since_replays_the_same_events():
    v, b, events, aid = make()
    start = v.accounts[aid].last_id
    e1 = await b.submit(OrderRequest("t-1", aid, "EUR_USD", 100))
    e2 = await b.submit(OrderRequest("t-2", aid, "EUR_USD", 100, type=V20OrderType.LIMIT, price=P("1.05000")))
    e3 = await b.close_position(aid, "EUR_USD", "ALL", None)
    replay = await b.transactions_since(aid, start)
    assert replay == e1 + e2 + e3
    assert [e.txn_id for e in replay] == sorted(e.txn_id for e in replay)


async def test_account_summary_and_positions():
    v, b, events, aid = make()
    await b.submit(OrderRequest("p-1", aid, "EUR_USD", 10000))
    v.set_price("EUR_USD", P("1.10110"), P("1.10120"))
    snap = await b.account_summary(aid)
    assert snap.balance == parse_money("100000")
    assert snap.unrealized_pl == parse_money("10.0000")  # 10000 * (1.10110 - 1.10010)
    assert snap.nav == snap.balance + snap.unrealized_pl
    assert snap.margin_used == parse_money("220.2300")  # 0.02 * 10000 * 1.101150
    assert snap.margin_available == snap.nav - snap.margin_used
    assert snap.open_trade_count == 1 and snap.open_position_count == 1
    (pos,) = await b.open_positions(aid)
    assert pos.long_units == 10000 and pos.long_average_price == P("1.10010") and pos.short_units == 0
    prices = await b.latest_prices(["EUR_USD"])
    assert prices[0].bid == P("1.10110") and prices[0].ask == P("1.10120")


async def test_background_ticks_drive_prices_and_pending_orders():
    import asyncio

    v = Venue(seed=8)
    b = SimulatedBroker(v, tick_interval=0.01)
    events = []
    b.set_event_handler(events.append)
    await b.subscribe_prices(["EUR_USD"])
    await b.start()
    try:
        for _ in range(100):  # bounded: at most ~1 s of ticks
            await asyncio.sleep(0.01)
            if sum(isinstance(e, PriceTick) for e in events) >= 3:
                break
    finally:
        await b.stop()
    ticks = [e for e in events if isinstance(e, PriceTick)]
    assert len(ticks) >= 3 and all(t.instrument == "EUR_USD" for t in ticks)
    assert len({(t.bid, t.ask) for t in ticks}) > 1


def test_slippage_is_adverse_seeded_and_on_grid():
    def fills(seed):
        v = Venue(seed=seed, slippage_steps=5)
        v.set_price("EUR_USD", P("1.10000"), P("1.10010"))
        aid = next(iter(v.accounts))
        from fastexec.sim.venue import Order

        out = []
        for u in (100, -100, 100, -100, 100, -100):
            out.append(v.place_order(aid, Order("MARKET", v.by_name["EUR_USD"], u)).keys["orderFillTransaction"].p.price)
        return out

    a = fills(1)
    assert a == fills(1)
    for k, px in enumerate(a):
        if k % 2 == 0:
            assert P("1.10010") <= px <= P("1.10015")  # buys at the ask or worse
        else:
            assert P("1.09995") <= px <= P("1.10000")  # sells at the bid or worse
        assert px % 10**4 == 0
    assert len(set(a)) > 2


async def test_open_positions_average_price_of_a_short_rounds_like_a_long():
    """Half-even rounding of |cost| / |units|: a short at the same prices has
    the same average as the long (the divisor must be positive)."""
    from fastexec.brokers.base import OrderRequest
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue

    averages = {}
    for side in (1, -1):
        venue = Venue(seed=1, accounts=1)
        broker = SimulatedBroker(venue)
        acct = broker.account_ids()[0]
        venue.set_price("EUR_USD", 1_100_000_000, 1_100_020_000)
        await broker.submit(OrderRequest("a1", acct, "EUR_USD", side * 1))
        venue.set_price("EUR_USD", 1_100_010_000, 1_100_030_000)
        await broker.submit(OrderRequest("a2", acct, "EUR_USD", side * 2))
        (pos,) = await broker.open_positions(acct)
        averages[side] = pos.long_average_price if side > 0 else pos.short_average_price
    # long: (1.10002 + 2 * 1.10003) / 3 ; short: (1.10000 + 2 * 1.10001) / 3 -> both end ...6667 (rounded up)
    assert averages[1] == 1_100_026_667
    assert averages[-1] == 1_100_006_667
