"""The v20 HTTP face: auth, accounts, orders by id and @clientID, cancel,
pricing snapshot, transactions sinceid — over real HTTP on loopback."""
from __future__ import annotations

import aiohttp

from fastexec.sim.fixed import parse_price
from fastexec.sim.testing import SimServer


async def test_bad_or_missing_token_gets_oandas_401_body(sim):
    async with aiohttp.ClientSession() as s:
        async with s.get(sim.base_url + "/v3/accounts") as r:
            assert r.status == 401
            assert await r.json() == {"errorMessage": "Insufficient authorization to perform request."}
        async with s.get(sim.base_url + "/v3/accounts", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401


async def test_accounts_list_and_summary(client, sim):
    st, body = await client.get("/v3/accounts", absolute=True)
    assert st == 200
    assert [a["id"] for a in body["accounts"]] == sim.account_ids == ["101-001-0000001-001", "101-001-0000001-002"]
    st, body = await client.get("/summary")
    assert st == 200
    acc = body["account"]
    assert acc["balance"] == "100000.0000" and acc["NAV"] == "100000.0000" and acc["currency"] == "USD"
    assert body["lastTransactionID"] == acc["lastTransactionID"] == "2"  # CREATE, TRANSFER_FUNDS


async def test_unknown_account_is_forbidden(client):
    st, body = await client.get("/v3/accounts/101-001-0000001-999/summary", absolute=True)
    assert st == 403 and body == {"errorMessage": "The provided request was forbidden."}


async def test_limit_order_lookup_by_id_and_client_id_then_cancel(client):
    st, body = await client.post("/orders", {"order": {
        "type": "LIMIT", "instrument": "EUR_USD", "units": "100", "price": "1.07",
        "clientExtensions": {"id": "eng-1", "tag": "t"}}})
    assert st == 201
    create = body["orderCreateTransaction"]
    assert create["type"] == "LIMIT_ORDER" and create["price"] == "1.07000" and create["timeInForce"] == "GTC"
    assert body["relatedTransactionIDs"] == [create["id"]] == [body["lastTransactionID"]]
    oid = create["id"]
    for spec in (oid, "@eng-1"):
        st, got = await client.get(f"/orders/{spec}")
        assert st == 200
        assert got["order"]["id"] == oid and got["order"]["state"] == "PENDING"
        assert got["order"]["clientExtensions"] == {"id": "eng-1", "tag": "t"}
    st, dup = await client.post("/orders", {"order": {
        "type": "LIMIT", "instrument": "EUR_USD", "units": "100", "price": "1.07", "clientExtensions": {"id": "eng-1"}}})
    assert st == 400 and dup["errorCode"] == "CLIENT_ORDER_ID_ALREADY_EXISTS"
    st, c = await client.put("/orders/@eng-1/cancel")
    assert st == 200
    assert c["orderCancelTransaction"]["reason"] == "CLIENT_REQUEST"
    assert c["orderCancelTransaction"]["orderID"] == oid
    st, got = await client.get(f"/orders/{oid}")
    assert got["order"]["state"] == "CANCELLED"
    assert got["order"]["cancellingTransactionID"] == c["orderCancelTransaction"]["id"]
    st, again = await client.put(f"/orders/{oid}/cancel")
    assert st == 404 and again["orderCancelRejectTransaction"]["rejectReason"] == "ORDER_DOESNT_EXIST"
    st, missing = await client.get("/orders/@nobody")
    assert st == 404


async def test_reject_consumes_an_id_and_echoes_the_request(client):
    st, body = await client.post("/orders", {"order": {
        "type": "LIMIT", "instrument": "EUR_USD", "units": "0", "price": "1212"}})
    assert st == 400
    rej = body["orderRejectTransaction"]
    assert rej["type"] == "LIMIT_ORDER_REJECT" and rej["rejectReason"] == "UNITS_INVALID"
    assert rej["price"] == "1212"  # echoed as sent
    assert body["errorCode"] == "UNITS_INVALID" and body["errorMessage"] == "Order units specified are invalid"
    assert body["relatedTransactionIDs"] == [rej["id"]] == [body["lastTransactionID"]]


async def test_precision_exceeded_is_rejected_not_rounded(client):
    st, body = await client.post("/orders", {"order": {
        "type": "MARKET", "instrument": "EUR_USD", "units": "10",
        "takeProfitOnFill": {"price": "1.12247999999999"}}})
    assert st == 400 and body["errorCode"] == "TAKE_PROFIT_ON_FILL_PRICE_PRECISION_EXCEEDED"
    assert body["errorMessage"].startswith("The Take Profit on fill specified contains a price with more precision")


async def test_market_order_fills_at_ask_and_shows_in_sinceid(client, sim):
    sim.venue.set_price("EUR_USD", parse_price("1.10000", 5), parse_price("1.10012", 5))
    st, s0 = await client.get("/summary")
    last = s0["lastTransactionID"]
    st, body = await client.post("/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1000",
                                                       "clientExtensions": {"id": "m-1"}}})
    assert st == 201
    fill = body["orderFillTransaction"]
    assert fill["price"] == "1.10012" and fill["units"] == "1000" and fill["reason"] == "MARKET_ORDER"
    assert fill["tradeOpened"]["tradeID"] == fill["id"]
    assert fill["batchID"] == body["orderCreateTransaction"]["id"]
    st, since = await client.get(f"/transactions/sinceid?id={last}")
    assert st == 200
    assert [t["type"] for t in since["transactions"]] == ["MARKET_ORDER", "ORDER_FILL"]
    st, got = await client.get("/orders/@m-1")
    assert got["order"]["state"] == "FILLED" and got["order"]["fillingTransactionID"] == fill["id"]


async def test_pricing_snapshot_at_instrument_precision(client, sim):
    sim.venue.set_price("USD_JPY", parse_price("150.123", 3), parse_price("150.140", 3))
    st, body = await client.get("/pricing?instruments=EUR_USD,USD_JPY")
    assert st == 200
    jpy = [p for p in body["prices"] if p["instrument"] == "USD_JPY"][0]
    assert jpy["bids"][0]["price"] == "150.123" and jpy["asks"][0]["price"] == "150.140"
    assert jpy["closeoutBid"] == "150.123" and jpy["tradeable"] is True and "time" in body
    st, bad = await client.get("/pricing?instruments=NOPE_XXX")
    assert st == 400


async def test_unknown_path_and_wrong_method_answer_json(client):
    st, body = await client.get("/nothing-here")
    assert st == 404 and "errorMessage" in body
    st, body = await client.req("DELETE", "/orders")
    assert st == 405 and "errorMessage" in body


async def test_malformed_bodies_are_400_without_a_transaction(client, sim):
    acct = sim.venue.accounts[client.aid]
    before = acct.last_id
    async with client.s.post(client.url("/orders"), data=b"{not json") as r:
        assert r.status == 400 and "errorMessage" in await r.json()
    st, body = await client.post("/orders", {"nope": 1})
    assert st == 400 and body == {"errorMessage": "The request was missing required data"}
    st, body = await client.post("/orders", {"order": {"type": "BOGUS"}})
    assert st == 400
    assert acct.last_id == before


async def test_server_stops_promptly_with_a_stream_open():
    import asyncio

    sim = SimServer()
    await sim.start()
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"})
    try:
        r = await session.get(f"{sim.base_url}/v3/accounts/{sim.account_ids[0]}/transactions/stream")
        assert r.status == 200
        await asyncio.wait_for(sim.stop(), 5)  # bounded: open streams do not hold shutdown
        r.close()
    finally:
        await session.close()


async def test_every_response_carries_a_request_id(client, sim):
    async with client.s.get(client.url("/summary")) as r:
        assert r.headers["RequestID"].isdigit()
    async with client.s.post(client.url("/orders"), json={"order": {"type": "MARKET", "instrument": "EUR_USD",
                                                                    "units": "1"}}) as r:
        body = await r.json()
        assert r.headers["RequestID"] == body["orderCreateTransaction"]["requestID"]
        assert r.headers["Location"].endswith("/orders/" + body["orderCreateTransaction"]["id"])
