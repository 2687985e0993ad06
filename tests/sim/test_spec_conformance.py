"""Simulator bodies validate against the official v20 OpenAPI definitions.

One scenario touches every endpoint family with successes and the usual
failures (400 reject, 404 cancel, 400 position close); every body it gets is
validated against the response schema the spec declares for that path and
status, with transactions and orders checked against their concrete
definitions and unknown fields refused (see v20spec.py).
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from fastexec.sim.fixed import parse_price
from fastexec.sim.testing import SimServer
from fastexec.sim.faults import FaultConfig

from .v20spec import SpecValidator


@pytest.fixture(scope="module")
def spec():
    return SpecValidator()


class Recorder:
    def __init__(self, sim, session):
        self.sim, self.s = sim, session
        self.aid = sim.account_ids[0]
        self.seen = []

    async def call(self, method, path, body=None, expect=None):
        url = self.sim.base_url + (path if path.startswith("/v3/accounts") and path.count("/") <= 2 or
                                   path.startswith("/v3/") else f"/v3/accounts/{self.aid}{path}")
        async with self.s.request(method, url, json=body) as r:
            data = await r.json(content_type=None)
            self.seen.append((method, r.url.path, r.status, data))
            if expect is not None:
                assert r.status == expect, data
            return data


async def run_scenario(sim, rec: Recorder):
    v = sim.venue
    P = lambda s, p=5: parse_price(s, p)  # noqa: E731
    v.set_price("EUR_USD", P("1.10000"), P("1.10012"))
    v.set_price("USD_JPY", P("150.000", 3), P("150.015", 3))
    c = rec.call
    await c("GET", "/v3/accounts", expect=200)
    await c("GET", "", expect=200)
    await c("GET", "/summary", expect=200)
    await c("GET", "/instruments?instruments=EUR_USD,USD_JPY", expect=200)
    await c("PATCH", "/configuration", {"alias": "sim test"}, expect=200)
    m = await c("POST", "/orders", {"order": {
        "type": "MARKET", "instrument": "EUR_USD", "units": "10000",
        "takeProfitOnFill": {"price": "1.12000"}, "stopLossOnFill": {"price": "1.09000"},
        "trailingStopLossOnFill": {"distance": "0.00500"}, "clientExtensions": {"id": "m1", "tag": "s"},
        "tradeClientExtensions": {"id": "t1"}}}, expect=201)
    trade_id = m["orderFillTransaction"]["tradeOpened"]["tradeID"]
    await c("POST", "/orders", {"order": {"type": "MARKET", "instrument": "USD_JPY", "units": "-3000"}}, expect=201)
    lim = await c("POST", "/orders", {"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "-500",
                                                "price": "1.11000", "timeInForce": "GTD",
                                                "gtdTime": "2099-01-01T00:00:00.000000000Z",
                                                "clientExtensions": {"id": "l1"}}}, expect=201)
    await c("POST", "/orders", {"order": {"type": "STOP", "instrument": "EUR_USD", "units": "100", "price": "1.12500",
                                          "priceBound": "1.12600"}}, expect=201)
    await c("POST", "/orders", {"order": {"type": "MARKET_IF_TOUCHED", "instrument": "EUR_USD", "units": "100",
                                          "price": "1.09500", "timeInForce": "GFD"}}, expect=201)
    await c("POST", "/orders", {"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "100",
                                          "price": "1.05000", "timeInForce": "FOK"}}, expect=201)
    await c("POST", "/orders", {"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "0",
                                          "price": "1212"}}, expect=400)
    await c("POST", "/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "100",
                                          "timeInForce": "GTC"}}, expect=400)
    lid = lim["orderCreateTransaction"]["id"]
    rep = await c("PUT", f"/orders/{lid}", {"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "-600",
                                                      "price": "1.11500", "clientExtensions": {"id": "l1"}}}, expect=201)
    new_id = rep["orderCreateTransaction"]["id"]
    await c("PUT", f"/orders/{new_id}/clientExtensions", {"clientExtensions": {"comment": "moved"}}, expect=200)
    await c("GET", "/orders", expect=200)
    await c("GET", "/orders?state=ALL&count=100", expect=200)
    await c("GET", "/pendingOrders", expect=200)
    await c("GET", f"/orders/{new_id}", expect=200)
    await c("GET", "/orders/@m1", expect=200)
    await c("PUT", f"/orders/{new_id}/cancel", expect=200)
    await c("PUT", f"/orders/{new_id}/cancel", expect=404)
    v.set_price("EUR_USD", P("1.10100"), P("1.10112"))
    await c("GET", "/trades", expect=200)
    await c("GET", "/trades?state=ALL", expect=200)
    await c("GET", "/openTrades", expect=200)
    await c("GET", f"/trades/{trade_id}", expect=200)
    await c("GET", "/trades/@t1", expect=200)
    await c("PUT", f"/trades/{trade_id}/orders", {"takeProfit": {"price": "1.13000"}, "stopLoss": None}, expect=200)
    await c("PUT", f"/trades/{trade_id}/clientExtensions", {"clientExtensions": {"tag": "kept"}}, expect=200)
    await c("PUT", f"/trades/{trade_id}/close", {"units": "4000"}, expect=200)
    await c("GET", "/positions", expect=200)
    await c("GET", "/openPositions", expect=200)
    await c("GET", "/positions/EUR_USD", expect=200)
    await c("PUT", "/positions/EUR_USD/close", {"longUnits": "ALL", "shortUnits": "ALL"}, expect=400)
    await c("PUT", "/positions/EUR_USD/close", {"longUnits": "ALL"}, expect=200)
    await c("PUT", "/positions/USD_JPY/close", {"shortUnits": "1000"}, expect=200)
    await c("GET", "/pricing?instruments=EUR_USD,USD_JPY", expect=200)
    await c("GET", "/transactions", expect=200)
    await c("GET", "/transactions?pageSize=5&type=ORDER_FILL", expect=200)
    await c("GET", "/transactions/idrange?from=1&to=1000", expect=200)
    await c("GET", "/transactions/sinceid?id=2", expect=200)
    await c("GET", "/transactions/3", expect=200)
    await c("GET", "/changes?sinceTransactionID=2", expect=200)


async def test_every_body_validates_against_the_spec(spec):
    async with SimServer(seed=5) as sim:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            rec = Recorder(sim, s)
            await run_scenario(sim, rec)
    paths = set()
    for method, path, status, body in rec.seen:
        paths.add((method, spec.response(method, path, status, body)))
    assert len(paths) >= 28  # a broad sample of endpoints
    types = set()
    for method, path, status, body in rec.seen:
        if path.endswith("/idrange"):
            types = {t["type"] for t in body["transactions"]}
    # the idrange body covered every transaction kind the scenario produced
    assert {"CREATE", "TRANSFER_FUNDS", "CLIENT_CONFIGURE", "MARKET_ORDER", "ORDER_FILL", "TAKE_PROFIT_ORDER",
            "STOP_LOSS_ORDER", "TRAILING_STOP_LOSS_ORDER", "LIMIT_ORDER", "STOP_ORDER", "MARKET_IF_TOUCHED_ORDER",
            "ORDER_CANCEL", "LIMIT_ORDER_REJECT", "MARKET_ORDER_REJECT", "ORDER_CANCEL_REJECT",
            "ORDER_CLIENT_EXTENSIONS_MODIFY", "TRADE_CLIENT_EXTENSIONS_MODIFY"} <= types


async def test_stream_lines_validate(spec):
    faults = FaultConfig(heartbeat=0.05, price_interval=0)
    async with SimServer(seed=5, faults=faults) as sim:
        aid = sim.account_ids[0]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/pricing/stream?instruments=EUR_USD,USD_JPY") as r:
                lines = [await asyncio.wait_for(r.content.readline(), 1.0) for _ in range(3)]
                sim.venue.tick("EUR_USD")
                lines += [await asyncio.wait_for(r.content.readline(), 1.0) for _ in range(2)]
            import orjson

            objs = [orjson.loads(x) for x in lines]
            kinds = {o["type"] for o in objs}
            assert kinds == {"PRICE", "HEARTBEAT"}
            for o in objs:
                spec.definition("ClientPrice" if o["type"] == "PRICE" else "PricingHeartbeat", o)
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/transactions/stream") as r:
                first = orjson.loads(await asyncio.wait_for(r.content.readline(), 1.0))
                assert first["type"] == "HEARTBEAT"
                spec.definition("TransactionHeartbeat", first)
                async with s.post(f"{sim.base_url}/v3/accounts/{aid}/orders", json={"order": {
                        "type": "MARKET", "instrument": "EUR_USD", "units": "5"}}) as pr:
                    assert pr.status == 201
                got = []
                while len(got) < 2:
                    o = orjson.loads(await asyncio.wait_for(r.content.readline(), 1.0))
                    if o["type"] != "HEARTBEAT":
                        got.append(o)
                assert [o["type"] for o in got] == ["MARKET_ORDER", "ORDER_FILL"]
                for o in got:
                    spec.definition("Transaction", o)


def test_validator_bites_on_wrong_types_and_unknown_fields(spec):
    """The strict validator is not vacuous: bad bodies are refused."""
    import jsonschema

    good = {"id": "4", "type": "ORDER_FILL", "orderID": "3", "units": "10", "price": "1.10000",
            "accountID": "101-001-0000001-001", "userID": 1, "batchID": "3", "time": "2026-01-01T00:00:00.000000000Z"}
    spec.definition("Transaction", good)
    for bad in (dict(good, units=10), dict(good, userID="1"), dict(good, bogusField="x"),
                dict(good, type="NOT_A_TYPE"), dict(good, tradeOpened={"tradeID": 4})):
        with pytest.raises(jsonschema.ValidationError):
            spec.definition("Transaction", bad)
    with pytest.raises(jsonschema.ValidationError):
        spec.definition("Order", {"id": "1", "type": "LIMIT", "state": "NOPE"})
