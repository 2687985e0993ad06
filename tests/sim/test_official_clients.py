"""Clients nobody here wrote work against the simulator: OANDA's own ``v20``
binding and ``oandapyV20``. Both are synchronous (requests), so they run in a
worker thread while the simulator serves from the test's event loop."""
from __future__ import annotations

import asyncio

import pytest

from fastexec.sim.faults import FaultConfig
from fastexec.sim.fixed import parse_price
from fastexec.sim.testing import SimServer

P = lambda s: parse_price(s, 5)  # noqa: E731


@pytest.fixture
async def sim():
    faults = FaultConfig(heartbeat=0.05, price_interval=0)
    async with SimServer(seed=9, faults=faults) as s:
        s.venue.set_price("EUR_USD", P("1.10000"), P("1.10012"))
        yield s


async def test_official_v20_binding_full_order_cycle(sim):
    import v20

    aid = sim.account_ids[0]

    def run():
        # decimal_number_as_float=False keeps v20's decimal strings exactly as sent
        ctx = v20.Context(sim.host, sim.port, ssl=False, token=sim.token, decimal_number_as_float=False)
        out = {}
        r = ctx.account.summary(aid)
        assert r.status == 200, r.body
        out["balance"] = r.get("account", 200).balance
        r = ctx.order.market(aid, instrument="EUR_USD", units=1000,
                             takeProfitOnFill={"price": "1.12000"}, stopLossOnFill={"price": "1.09000"})
        assert r.status == 201, r.body
        fill = r.get("orderFillTransaction", 201)
        out["fill_price"] = fill.price
        out["trade_id"] = fill.tradeOpened.tradeID
        out["related"] = r.get("relatedTransactionIDs", 201)
        r = ctx.order.limit(aid, instrument="EUR_USD", units=-500, price="1.11000",
                            clientExtensions={"id": "v20-lim"})
        assert r.status == 201, r.body
        lim_id = r.get("orderCreateTransaction", 201).id
        r = ctx.order.replace(aid, lim_id, order={"type": "LIMIT", "instrument": "EUR_USD", "units": "-700",
                                                  "price": "1.11500"})
        assert r.status == 201, r.body
        new_id = r.get("orderCreateTransaction", 201).id
        out["replaced"] = (lim_id, new_id, r.get("orderCancelTransaction", 201).reason)
        r = ctx.order.get(aid, new_id)
        out["replacement_price"] = r.get("order", 200).price
        r = ctx.order.cancel(aid, new_id)
        assert r.status == 200, r.body
        out["cancel_reason"] = r.get("orderCancelTransaction", 200).reason
        r = ctx.trade.list_open(aid)
        out["open_trades"] = [(t.id, t.takeProfitOrder.price, t.stopLossOrder.price) for t in r.get("trades", 200)]
        r = ctx.position.close(aid, "EUR_USD", longUnits="ALL")
        assert r.status == 200, r.body
        out["close_units"] = r.get("longOrderFillTransaction", 200).units
        r = ctx.account.get(aid)
        acc = r.get("account", 200)
        out["after"] = (acc.openTradeCount, acc.pendingOrderCount, acc.balance)
        r = ctx.pricing.stream(aid, instruments="EUR_USD", snapshot=True)
        kinds = []
        for msg_type, msg in r.parts():
            kinds.append(msg_type)
            if len(kinds) >= 3:
                break
        out["stream"] = kinds
        return out

    out = await asyncio.to_thread(run)
    assert out["balance"] == "100000.0000"
    assert out["fill_price"] == "1.10012"
    assert out["related"][1] == out["trade_id"] and len(out["related"]) == 4  # create, fill, TP, SL
    old, new, reason = out["replaced"]
    assert new != old and reason == "CLIENT_REQUEST_REPLACED"
    assert out["replacement_price"] == "1.11500"
    assert out["cancel_reason"] == "CLIENT_REQUEST"
    assert out["open_trades"] == [(out["trade_id"], "1.12000", "1.09000")]
    assert out["close_units"] == "-1000"
    # closed at the bid 1.10000 after buying at 1.10012: 1000 * -0.00012 = -0.12
    assert out["after"] == (0, 0, "99999.8800")
    assert out["stream"][0] == "pricing.ClientPrice" and "pricing.PricingHeartbeat" in out["stream"]


async def test_oandapyv20_full_order_cycle(sim):
    from oandapyV20 import API
    from oandapyV20 import oandapyV20 as core
    import oandapyV20.endpoints.accounts as accounts
    import oandapyV20.endpoints.orders as orders
    import oandapyV20.endpoints.positions as positions
    import oandapyV20.endpoints.pricing as pricing
    import oandapyV20.endpoints.trades as trades
    from oandapyV20.exceptions import StreamTerminated, V20Error

    core.TRADING_ENVIRONMENTS["fastexec-sim"] = {"api": sim.base_url, "stream": sim.stream_url}
    aid = sim.account_ids[0]

    def run():
        api = API(access_token=sim.token, environment="fastexec-sim")
        out = {}
        out["accounts"] = api.request(accounts.AccountList())["accounts"]
        r = api.request(orders.OrderCreate(aid, data={"order": {
            "type": "MARKET", "instrument": "EUR_USD", "units": "-2000", "timeInForce": "FOK",
            "takeProfitOnFill": {"price": "1.09000"}, "stopLossOnFill": {"price": "1.11000"},
            "clientExtensions": {"id": "py-m"}}}))
        out["fill"] = r["orderFillTransaction"]
        out["related"] = r["relatedTransactionIDs"]
        r = api.request(orders.OrderCreate(aid, data={"order": {
            "type": "LIMIT", "instrument": "EUR_USD", "units": "300", "price": "1.08000"}}))
        lim = r["orderCreateTransaction"]["id"]
        r = api.request(orders.OrderReplace(aid, lim, data={"order": {
            "type": "LIMIT", "instrument": "EUR_USD", "units": "400", "price": "1.08500"}}))
        new = r["orderCreateTransaction"]["id"]
        out["replace"] = (lim, new, r["orderCreateTransaction"]["replacesOrderID"])
        out["cancel"] = api.request(orders.OrderCancel(aid, new))["orderCancelTransaction"]["reason"]
        try:
            api.request(orders.OrderCancel(aid, new))
        except V20Error as e:
            out["cancel_again"] = e.code
        t = api.request(trades.OpenTrades(aid))["trades"]
        out["trades"] = [(x["currentUnits"], x["takeProfitOrder"]["price"]) for x in t]
        r = api.request(positions.PositionClose(aid, "EUR_USD", data={"shortUnits": "ALL"}))
        out["close"] = r["shortOrderFillTransaction"]["units"]
        out["open_positions"] = api.request(positions.OpenPositions(aid))["positions"]
        req = pricing.PricingStream(aid, params={"instruments": "EUR_USD"})
        lines = []
        try:
            for msg in api.request(req):
                lines.append(msg["type"])
                if len(lines) >= 3:
                    req.terminate("enough")
        except StreamTerminated:
            pass
        out["stream"] = lines
        return out

    out = await asyncio.to_thread(run)
    assert out["accounts"] == [{"id": aid, "tags": []}]
    assert out["fill"]["price"] == "1.10000" and out["fill"]["units"] == "-2000"
    assert out["fill"]["clientOrderID"] == "py-m" and len(out["related"]) == 4
    lim, new, replaces = out["replace"]
    assert new != lim and replaces == lim
    assert out["cancel"] == "CLIENT_REQUEST" and out["cancel_again"] == 404
    assert out["trades"] == [("-2000", "1.09000")]
    assert out["close"] == "2000" and out["open_positions"] == []
    assert out["stream"][0] == "PRICE" and "HEARTBEAT" in out["stream"]
