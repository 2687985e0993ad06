"""The REST layer over the OANDA adapter, against the v20 HTTP simulator.

Same app and engine as the other API tests, but orders cross a real HTTP hop
to a v20-shaped venue, so a request can be in flight while another arrives
(concurrent Idempotency-Key use) and the broker can fail (503 from the venue).
"""
from __future__ import annotations

import asyncio
import json

import pytest

from fastexec.brokers.oanda.config import OandaTimeouts
from fastexec.sim.faults import FaultConfig
from fastexec.sim.testing import SimServer

from .conftest import engine_over_oanda


@pytest.fixture
async def over_oanda(tmp_path):
    async with SimServer(seed=11, accounts=1, balance="100000", faults=FaultConfig(seed=11)) as sim:
        engine, client, metrics = await engine_over_oanda(
            sim, tmp_path, timeouts=OandaTimeouts(connect=2.0, order=2.0, read=1.0, cancel=1.0, stream_heartbeat=1.0),
            resolve_window_s=2.5)
        try:
            yield sim, engine, client, metrics
        finally:
            await client.close()
            await engine.stop()


def _order(account: str, **over) -> dict:
    body = {"account_id": account, "instrument": "EUR_USD", "units": 1000, "side": "buy", "type": "market"}
    body.update(over)
    return body


async def test_order_reaches_the_v20_venue(over_oanda):
    sim, engine, client, _ = over_oanda
    acct = sim.account_ids[0]
    resp = await client.post("/api/v1/orders", data=json.dumps(_order(acct)))
    out = await resp.json()
    assert resp.status == 201, out
    assert out["status"] == "filled" and out["broker_order_id"]
    st = await client.get(f"/api/v1/positions/{acct}/EUR_USD")
    assert (await st.json())["units"] == "1000"


async def test_concurrent_retry_with_same_key_never_places_twice(over_oanda):
    sim, engine, client, _ = over_oanda
    acct = sim.account_ids[0]
    sim.faults.latency = 0.3  # the first request is still at the venue when the retry arrives
    body = json.dumps(_order(acct, units=777))
    h = {"Idempotency-Key": "in-flight-1"}
    first = asyncio.ensure_future(client.post("/api/v1/orders", data=body, headers=h))
    await asyncio.sleep(0.1)
    second = await client.post("/api/v1/orders", data=body, headers=h)
    out2 = await second.json()
    assert second.status == 409 and out2["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    r1 = await first
    out1 = await r1.json()
    assert r1.status == 201, out1
    sim.faults.latency = 0.0
    third = await client.post("/api/v1/orders", data=body, headers=h)
    assert third.status == 201 and await third.json() == out1
    assert len(engine.list_orders(account_id=acct)) == 1


async def test_broker_failure_is_a_documented_error_not_a_500(over_oanda):
    sim, engine, client, metrics = over_oanda
    acct = sim.account_ids[0]
    sim.faults.error_rate = 1.0  # every request to the venue answers 503
    resp = await client.post("/api/v1/orders", data=json.dumps(_order(acct)))
    out = await resp.json()
    assert resp.status in (422, 503), out
    assert set(out) == {"error"} and out["error"]["code"]
    sim.faults.error_rate = 0.0
    resp = await client.get("/health/detailed")
    assert resp.status in (200, 503)
    assert "components" in await resp.json()
