"""The real engine with its journal: acks after durability, recovery after an abandoned process.

A "crash" here is an engine object abandoned without ``stop()`` (its journal
never closed, no final snapshot) while the venue lives on; the next
``JournaledEngine`` on the same directory must recover from the files alone.
The kill -9 version with real processes is ``test_crash_serve.py``.
"""
from __future__ import annotations

import pytest

from fastexec.engine.types import OrderSpec
from fastexec.journal import read_records
from fastexec.journal.integration import JournaledEngine
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

from .history import journal_orders
from .restart import crash, settings, start


@pytest.fixture
def venue():
    return Venue(seed=2, accounts=1, balance="100000")


def spec(acct, cid, units=1000, side="buy", **kw) -> OrderSpec:
    return OrderSpec(account_id=acct, instrument="EUR_USD", side=side, units=units, client_order_id=cid, **kw)


async def test_an_acknowledged_order_is_on_disk_before_the_ack(venue, tmp_path):
    je = await start(venue, tmp_path)
    acct = je.account_ids[0]
    view = await je.submit(spec(acct, "ack-1"))
    # the ack is back: its records are durable (the writer says so, and they read back from the files)
    assert je.journal.writer.durable_seq == je.journal.writer.last_seq
    kinds = [(r.payload["type"], r.payload.get("client_order_id") or r.payload.get("client_id"))
             for r in read_records(str(tmp_path))]
    assert ("order.submitted", "ack-1") in kinds and ("broker.filled", "ack-1") in kinds
    assert view.status == "filled"
    await je.stop()


async def test_state_survives_an_abandoned_engine(venue, tmp_path):
    je = await start(venue, tmp_path)
    acct = je.account_ids[0]
    for i in range(20):
        await je.submit(spec(acct, f"o-{i}", 1000 + i, "buy" if i % 3 else "sell"))
    je.set_risk_limits(acct, max_position_size=60_000)
    await je.activate_kill_switch(acct, reason="drawdown", actor="ops")
    await je.journal_barrier()
    positions_before = {p.instrument: p.units for p in je.positions(acct)}
    journal_before = je.journal.state.to_dict()
    await crash(je)  # nothing stopped, nothing flushed beyond what acks required

    je2 = await start(venue, tmp_path)
    assert je2.open_report.replayed == journal_before["seq"]
    assert not [c for c in je2.reconcile_report.corrections if c.kind != "baseline"]
    assert je2.kill_switch(acct).active and je2.kill_switch(acct).reason == "drawdown"
    assert je2.risk_limits(acct).max_position_size == 60_000
    assert {p.instrument: p.units for p in je2.positions(acct)} == positions_before
    assert je2.account(acct).balance == venue.account(acct).balance
    orders, st = journal_orders(je2.journal_dir), je2.journal.state
    for i in range(20):  # finished: gone from the state, their client ids kept
        assert orders[st.by_client[acct][f"o-{i}"]]["status"] == "filled" and st.by_client[acct][f"o-{i}"] not in st.orders
    await je2.stop()


async def test_a_client_retry_after_a_restart_is_not_sent_twice(venue, tmp_path):
    from fastexec.errors import ConflictError

    je = await start(venue, tmp_path)
    acct = je.account_ids[0]
    await je.submit(spec(acct, "once"))
    await crash(je)
    je2 = await start(venue, tmp_path)
    with pytest.raises(ConflictError) as exc:
        await je2.submit(spec(acct, "once"))
    assert exc.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    sent = [t for t in venue.account(acct).txns if t.type == "MARKET_ORDER"]
    assert len(sent) == 1
    await je2.stop()


async def test_clean_stop_snapshots_and_the_next_start_replays_nothing(venue, tmp_path):
    je = await start(venue, tmp_path)
    acct = je.account_ids[0]
    for i in range(5):
        await je.submit(spec(acct, f"s-{i}"))
    await je.stop()
    je2 = await start(venue, tmp_path)
    assert je2.open_report.snapshot_seq is not None and je2.open_report.replayed == 0
    st = je2.journal.state  # from the snapshot: no open order, the five client ids
    assert st.orders == {} and list(st._terminal) == [(acct, f"s-{i}") for i in range(5)]
    await je2.stop()


async def test_emulated_orders_survive_a_restart_and_still_trigger(venue, tmp_path):
    je = await start(venue, tmp_path)
    acct = je.account_ids[0]
    bid, ask, _ = venue.price("EUR_USD")
    stop = ask + 50_000_000  # 5 big figures away: will not trigger by itself
    view = await je.submit(spec(acct, "stoplimit-1", type="stop_limit", stop_price=stop, price=stop + 10_000_000))
    assert view.status == "waiting"  # the engine's name for an emulated order not yet triggered
    await crash(je)
    for_broker_before = len(venue.account(acct).txns)

    je2 = await start(venue, tmp_path)
    assert je2.restored["emulated_rearmed"] == 1
    rearmed = je2.get_order("stoplimit-1")
    assert rearmed.status == "waiting" and rearmed.order_id == view.order_id  # its own id, still readable
    assert je2.get_order(view.order_id) == rearmed
    assert journal_orders(je2.journal_dir)[view.order_id]["status"] == "emulated"
    assert len(venue.account(acct).txns) == for_broker_before  # nothing was sent to re-arm it
    # the market reaches the stop: the re-armed order fires once, as a limit order at the broker
    venue.set_price("EUR_USD", stop - 10_000, stop)
    await je2.journal_barrier()
    fired = je2.get_order("stoplimit-1")
    assert fired.status != "waiting"
    sent = [t for t in venue.account(acct).txns if t.type == "LIMIT_ORDER"]
    assert len(sent) == 1
    await je2.stop()


async def test_a_working_order_is_taken_back_under_its_own_id_and_can_be_cancelled(venue, tmp_path):
    je = await start(venue, tmp_path)
    acct = je.account_ids[0]
    bid, ask, _ = venue.price("EUR_USD")
    view = await je.submit(spec(acct, "limit-1", type="limit", price=bid - 50_000_000))
    assert view.status == "working"
    await crash(je)

    je2 = await start(venue, tmp_path)
    assert je2.restored["orders_adopted"] == 1 and je2.restored["orders_not_restored"] == 0
    back = je2.get_order(view.order_id)
    assert back.client_order_id == "limit-1" and back.status == "working"
    cancelled = await je2.cancel(view.order_id)
    assert cancelled.status == "cancelled"
    assert not venue.account(acct).pending  # really cancelled at the venue
    assert journal_orders(je2.journal_dir)[view.order_id]["status"] == "cancelled"
    assert je2.journal.state.orders == {}
    await je2.stop()


async def test_a_restart_after_the_venue_forgot_the_gap_reconciles_from_its_present(tmp_path):
    """While fastexec was down the account traded more than the venue keeps: the
    transactions after the journal's last one are gone (``sinceid`` answers 416). The
    restart must not fail on that; it takes positions and balance from the venue's present
    state, says so in its report, and trades on."""
    from fastexec.brokers.base import OrderRequest
    from fastexec.sim import venue as venue_mod

    venue = Venue(seed=2, accounts=1, balance="100000000", history=20)
    je = await start(venue, tmp_path)
    acct = je.account_ids[0]
    await je.submit(spec(acct, "before-1"))
    last_txn = je.journal.state.last_txn[acct]
    await je.stop()
    # someone else trades meanwhile: enough for the venue to forget what followed last_txn
    other = SimulatedBroker(venue)
    await other.start()
    n = (20 + venue_mod.TRIM_BATCH) // 2 + 2
    for i in range(n + 1):  # alternating, one more buy: net +1000 from outside
        await other.submit(OrderRequest(client_id=f"outside-{i}", account_id=acct, instrument="EUR_USD",
                                        units=1000 if i % 2 == 0 else -1000))
    await other.stop()
    assert venue.accounts[acct].txns.base > last_txn  # the gap is really gone

    je2 = await start(venue, tmp_path)
    rep = je2.reconcile_report
    assert rep.history_gaps == {acct: last_txn}
    positions = {p.instrument: p.long_units + p.short_units for p in await je2.engine.broker.open_positions(acct)}
    assert positions == {"EUR_USD": 2000}
    assert je2.journal.state.positions[acct] == positions
    assert je2.journal.state.balances[acct] == (await je2.engine.broker.account_summary(acct)).balance
    st = je2.journal.state
    assert journal_orders(je2.journal_dir)[st.by_client[acct]["before-1"]]["status"] == "filled"  # journaled before the gap
    view = await je2.submit(spec(acct, "after-1"))
    assert view.status == "filled"
    await je2.stop()


async def test_full_disk_fails_the_journal_and_health_detailed_says_so(venue, tmp_path):
    """The disk fills: the journal's descriptor is pointed at /dev/full, so the kernel
    answers ENOSPC to the next write. The order that needed it is not acknowledged, and
    /health/detailed turns 503 "degraded" with the journal's error, so a readiness
    probe stops sending orders here; /health (liveness) stays 200."""
    import os

    from aiohttp.test_utils import TestClient, TestServer

    from fastexec.api import create_app

    from fastexec.metrics import Metrics

    je = JournaledEngine(settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability="fsync")
    await je.start()
    metrics = Metrics()
    metrics.attach_engine(je)
    client = TestClient(TestServer(create_app(je, metrics=metrics), host="127.0.0.1"))
    await client.start_server()
    acct = je.account_ids[0]
    body = {"account_id": acct, "instrument": "EUR_USD", "units": 1000, "side": "buy", "type": "market"}
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        r = await client.get("/health/detailed")
        journal = (await r.json())["components"]["engine"]["journal"]
        assert r.status == 200 and journal["ok"] and journal["durability"] == "fsync" and journal["failed"] is None
        r = await client.post("/api/v1/orders", json=body)
        assert r.status == 201
        r = await client.get("/health/detailed")
        journal = (await r.json())["components"]["engine"]["journal"]
        assert journal["durable_seq"] == journal["last_seq"] > 0 and journal["batches"] >= 1
        assert b'execution_journal_ok{durability="fsync"} 1.0' in metrics.render()

        w = je.journal.writer  # the descriptor batches go through, its number now a full device
        os.dup2(full, w._dfd if w.write_path == "direct" else w._fd)
        r = await client.post("/api/v1/orders", json=body)
        err = await r.json()
        assert r.status == 503 and err["error"]["code"] == "JOURNAL_FAILED", err

        r = await client.get("/health/detailed")
        detail = await r.json()
        assert r.status == 503 and detail["status"] == "degraded"
        engine = detail["components"]["engine"]
        assert engine["ok"] is False and engine["journal"]["ok"] is False
        assert "No space left on device" in engine["journal"]["failed"]
        r = await client.get("/health")
        assert r.status == 200
        assert b'execution_journal_ok{durability="fsync"} 0.0' in metrics.render()
    finally:
        os.close(full)
        await client.close()
        await je.stop()
