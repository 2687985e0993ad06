"""A broker outage shows on health and metrics while no orders flow.

The engine runs over the OANDA adapter against the v20 simulator on loopback;
the simulator is stopped (every stream fails, every reconnect is refused) and
started again on the same port. No order is sent throughout: what changes
``/health/detailed`` and ``execution_broker_connected`` is the adapter's
stream loop alone.
"""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastexec.brokers.oanda.config import OandaTimeouts
from fastexec.metrics import Metrics
from fastexec.sim.faults import FaultConfig
from fastexec.sim.testing import SimServer, wait_for

from .conftest import engine_over_oanda


def _samples(metrics: Metrics) -> dict:
    out: dict = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def _connected(metrics: Metrics) -> float:
    return {s.labels["broker"]: s.value for s in _samples(metrics)["execution_broker_connected"]}["oanda"]


def _stream_errors(metrics: Metrics) -> float:
    return {s.labels["operation"]: s.value for s in _samples(metrics)["execution_broker_errors_total"]}["stream"]


@pytest.fixture
async def idle_over_oanda(tmp_path):
    sim = await SimServer(seed=5, accounts=1, balance="100000", faults=FaultConfig(seed=5)).start()
    engine, client, metrics = await engine_over_oanda(
        sim, tmp_path, timeouts=OandaTimeouts(connect=1.0, order=1.0, read=0.5, cancel=0.5, stream_heartbeat=0.8),
        stream_backoff_base_s=0.02, stream_backoff_max_s=0.2)
    state = {"sim": sim}
    try:
        yield state, engine, client, metrics
    finally:
        await client.close()
        await engine.stop()
        await state["sim"].stop()


async def _detailed(client) -> tuple[int, dict]:
    resp = await client.get("/health/detailed")
    return resp.status, await resp.json()


async def test_idle_engine_reports_broker_down_while_streams_fail_and_up_after_reconnect(idle_over_oanda):
    """Scenario: broker outage with no order flow. Stop the venue: within a
    few seconds /health/detailed answers 503 degraded, the broker gauge is 0
    and stream failures count as broker errors. Start it again on the same
    port: the streams reconnect and health and gauge recover."""
    state, engine, client, metrics = idle_over_oanda
    sim = state["sim"]
    await wait_for(lambda: engine.broker.stats["txn_stream_connects"] >= 1 and engine.broker.connected, timeout=5)
    st, body = await _detailed(client)
    assert st == 200 and body["status"] == "ok", body
    assert _connected(metrics) == 1.0
    assert _stream_errors(metrics) == 0.0

    port, venue, token = sim.port, sim.venue, sim.token
    await sim.stop()
    await wait_for(lambda: not engine.broker.connected, timeout=10)
    st, body = await _detailed(client)
    assert st == 503 and body["status"] == "degraded", body
    broker = body["components"]["engine"]["broker"]
    assert broker["ok"] is False and broker["streams_connected"] is False
    assert "stream" in broker["last_error"]
    assert _connected(metrics) == 0.0
    assert _stream_errors(metrics) >= 1.0

    state["sim"] = await SimServer(port=port, venue=venue, token=token, faults=FaultConfig(seed=6)).start()
    await wait_for(lambda: engine.broker.connected, timeout=10)
    st, body = await _detailed(client)
    assert st == 200 and body["status"] == "ok", body
    assert _connected(metrics) == 1.0
    errors = _stream_errors(metrics)
    assert errors >= 1.0
    assert _stream_errors(metrics) == errors  # counted once, not again on every scrape
