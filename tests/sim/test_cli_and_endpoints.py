"""``fastexec sim`` as a process, and the read endpoints' filters and shapes."""
from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp
import pytest

from fastexec.sim.faults import FaultConfig
from fastexec.sim.fixed import parse_price
from fastexec.sim.testing import SimServer

P = lambda s: parse_price(s, 5)  # noqa: E731


async def test_fastexec_sim_command_serves_on_loopback_and_stops_on_sigterm():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastexec.cli", "sim", "--port", "0", "--seed", "3", "--accounts", "2",
        "--token", "tok-123", "--tick-interval", "0.05", "--rate-limit", "120",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/v3 token=tok-123 accounts=(\S+)", line)
        assert m, line
        base, accounts = m.group(1), m.group(2).split(",")
        assert accounts == ["101-001-0000001-001", "101-001-0000001-002"]
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer tok-123"}) as s:
            url = f"{base}/v3/accounts/{accounts[0]}/pricing?instruments=EUR_USD"
            async with s.get(url) as r:
                first = (await r.json())["prices"][0]
            seen = {first["bids"][0]["price"]}
            for _ in range(40):  # bounded: ticks every 0.05 s move the price
                await asyncio.sleep(0.05)
                async with s.get(url) as r:
                    seen.add((await r.json())["prices"][0]["bids"][0]["price"])
                if len(seen) > 1:
                    break
            assert len(seen) > 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
    assert rc == 0


@pytest.fixture
async def env():
    async with SimServer(seed=2) as sim:
        sim.venue.set_price("EUR_USD", P("1.10000"), P("1.10010"))
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            aid = sim.account_ids[0]

            async def call(method, path, body=None):
                async with s.request(method, f"{sim.base_url}/v3/accounts/{aid}{path}", json=body) as r:
                    return r.status, await r.json()

            yield sim, call


async def test_order_and_trade_lists_filter_and_page(env):
    sim, call = env
    ids = []
    for k in range(5):
        st, b = await call("POST", "/orders", {"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "10",
                                                         "price": f"1.0{k}000"}})
        ids.append(b["orderCreateTransaction"]["id"])
    await call("PUT", f"/orders/{ids[0]}/cancel")
    st, b = await call("GET", "/orders")
    assert [o["id"] for o in b["orders"]] == ids[:0:-1]  # pending, newest first
    st, b = await call("GET", "/orders?state=ALL&count=2")
    assert [o["id"] for o in b["orders"]] == [ids[4], ids[3]]
    st, b = await call("GET", f"/orders?state=ALL&beforeID={ids[2]}")
    assert [o["id"] for o in b["orders"]] == [ids[1], ids[0]]
    st, b = await call("GET", "/orders?state=CANCELLED")
    assert [o["id"] for o in b["orders"]] == [ids[0]]
    st, b = await call("GET", f"/orders?ids={ids[1]},{ids[3]}")
    assert sorted(o["id"] for o in b["orders"]) == sorted([ids[1], ids[3]])
    st, b = await call("GET", "/orders?count=501")
    assert st == 400
    await call("POST", "/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "100"}})
    await call("POST", "/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "-100"}})
    st, b = await call("GET", "/trades?state=CLOSED")
    assert len(b["trades"]) == 1 and b["trades"][0]["state"] == "CLOSED"
    assert b["trades"][0]["averageClosePrice"] == "1.10000" and b["trades"][0]["realizedPL"] == "-0.0100"
    st, b = await call("GET", "/trades")
    assert b["trades"] == []


async def test_changes_reports_what_happened_since_an_id(env):
    sim, call = env
    st, s0 = await call("GET", "/summary")
    since = s0["lastTransactionID"]
    st, b = await call("POST", "/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1000",
                                                     "trailingStopLossOnFill": {"distance": "0.00100"}}})
    trade_id = b["orderFillTransaction"]["tradeOpened"]["tradeID"]
    st, lim = await call("POST", "/orders", {"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "5",
                                                       "price": "1.00000"}})
    await call("PUT", f"/orders/{lim['orderCreateTransaction']['id']}/cancel")
    sim.venue.set_price("EUR_USD", P("1.10100"), P("1.10110"))
    st, ch = await call("GET", f"/changes?sinceTransactionID={since}")
    assert st == 200
    c = ch["changes"]
    assert [t["id"] for t in c["tradesOpened"]] == [trade_id]
    assert {o["type"] for o in c["ordersCreated"]} == {"MARKET", "TRAILING_STOP_LOSS", "LIMIT"}
    assert [o["state"] for o in c["ordersCancelled"]] == ["CANCELLED"]
    assert [t["type"] for t in c["transactions"]][:3] == ["MARKET_ORDER", "ORDER_FILL", "TRAILING_STOP_LOSS_ORDER"]
    state = ch["state"]
    assert state["unrealizedPL"] == "0.9000"  # 1000 × (1.10100 − 1.10010)
    assert state["orders"][0]["trailingStopValue"] == "1.10000"  # trailed up with the bid
    assert state["trades"] == [{"id": trade_id, "unrealizedPL": "0.9000", "marginUsed": "22.0210"}]
    st, bad = await call("GET", "/changes?sinceTransactionID=999999")
    assert st == 416


async def test_transactions_pages_and_ranges(env):
    sim, call = env
    for _ in range(3):
        await call("POST", "/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1"}})
    st, b = await call("GET", "/transactions?pageSize=3")
    assert b["count"] == 8 and len(b["pages"]) == 3 and b["pageSize"] == 3
    assert b["pages"][0].endswith("/transactions/idrange?from=1&to=3")
    st, b = await call("GET", "/transactions?type=ORDER_FILL")
    assert b["count"] == 3
    st, b = await call("GET", "/transactions/idrange?from=3&to=5")
    assert [t["id"] for t in b["transactions"]] == ["3", "4", "5"]
    st, b = await call("GET", "/transactions/sinceid?id=6&type=ORDER_FILL")
    assert [t["type"] for t in b["transactions"]] == ["ORDER_FILL"]
    st, b = await call("GET", "/transactions/99")
    assert st == 404 and b["errorMessage"] == "The transaction ID specified does not exist"


async def test_datetime_format_unix(env):
    sim, call = env
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}",
                                              "Accept-Datetime-Format": "UNIX"}) as s:
        async with s.get(f"{sim.base_url}/v3/accounts/{sim.account_ids[0]}/transactions/1") as r:
            t = (await r.json())["transaction"]["time"]
    assert re.fullmatch(r"\d{10}\.\d{9}", t)


async def test_pricing_stream_without_snapshot_then_throttled_updates():
    faults = FaultConfig(heartbeat=5.0, price_interval=0.05)
    async with SimServer(seed=4, faults=faults) as sim:
        aid = sim.account_ids[0]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/pricing/stream?instruments=EUR_USD&snapshot=false") as r:
                assert r.headers["Content-Type"].startswith("application/octet-stream")
                await asyncio.sleep(0.05)
                for k in range(5):  # five ticks inside one window: only the last is sent
                    sim.venue.set_price("EUR_USD", P("1.10000") + k * 10**4, P("1.10010") + k * 10**4)
                import orjson

                line = orjson.loads(await asyncio.wait_for(r.content.readline(), 2.0))
                assert line["type"] == "PRICE" and line["bids"][0]["price"] == "1.10004"


async def test_too_many_streams_are_refused():
    async with SimServer(faults=FaultConfig(max_streams=1, heartbeat=0.05)) as sim:
        aid = sim.account_ids[0]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/transactions/stream") as r1:
                await asyncio.wait_for(r1.content.readline(), 1.0)
                async with s.get(f"{sim.base_url}/v3/accounts/{aid}/transactions/stream") as r2:
                    assert r2.status == 429
        assert sim.stats.streams_rejected == 1


async def test_heartbeats_keep_their_schedule_while_prices_flow():
    import orjson

    faults = FaultConfig(heartbeat=0.1, price_interval=0.01)
    async with SimServer(seed=4, faults=faults, tick_interval=0.01) as sim:
        aid = sim.account_ids[0]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            async with s.get(f"{sim.base_url}/v3/accounts/{aid}/pricing/stream?instruments=EUR_USD") as r:
                kinds = []
                for _ in range(400):  # bounded by count and by the per-line timeout
                    kinds.append(orjson.loads(await asyncio.wait_for(r.content.readline(), 1.0))["type"])
                    if kinds.count("HEARTBEAT") >= 2:
                        break
        assert kinds.count("HEARTBEAT") >= 2 and kinds.count("PRICE") > kinds.count("HEARTBEAT")
