"""Streams under the simulator's stream faults: fills that only the
transaction stream can report (pending orders triggered by price moves) reach
the engine exactly once across disconnects and stalls, and prices resume."""
from __future__ import annotations

import asyncio
import logging
from collections import Counter

from fastexec.brokers.base import OrderAccepted, OrderFilled, OrderRequest, PriceTick, V20OrderType
from fastexec.brokers.oanda import OandaBroker
from fastexec.sim.faults import Stats

from .conftest import Recorder, adapter_config, eventually

PIP = 100_000


async def ladder(sim, broker, acct, n: int, tag: str, start: int = 10) -> list:
    """n resting buy limits, one pip apart, from ``start`` pips below the bid
    (the spread is 1.4 pips: the market must fall start + 1.4 pips to fill the first)."""
    bid, _, _ = sim.venue.price("EUR_USD")
    out = []
    for i in range(n):
        req = OrderRequest(f"{tag}-{i}", acct, "EUR_USD", 100, type=V20OrderType.LIMIT, price=bid - (start + i) * PIP)
        (acc,) = await broker.submit(req)
        out.append(acc)
    return out


async def walk_down(sim, steps: int, pause: float = 0.03) -> None:
    """Move the market down one pip per step: each step fills one limit."""
    for _ in range(steps):
        bid, ask, _ = sim.venue.price("EUR_USD")
        sim.venue.set_price("EUR_USD", bid - PIP, ask - PIP)
        await asyncio.sleep(pause)


def assert_every_fill_once(sim, acct, events: Recorder) -> None:
    v = sim.venue.accounts[acct]
    venue_fills = [t.id for t in v.txns if t.type == "ORDER_FILL"]
    got = [e.txn_id for e in events.of(OrderFilled)]
    assert Counter(got) == Counter(venue_fills), "fills lost or duplicated"


async def test_price_and_transaction_streams_cut_mid_run_lose_no_fill(sim, broker, events, acct):
    await broker.subscribe_prices(["EUR_USD"])
    await eventually(lambda: events.of(PriceTick), what="first tick")
    placed = await ladder(sim, broker, acct, 12, "cut")
    sim.faults.stream_disconnect_after = 3  # every stream connection is cut after 3 lines
    await walk_down(sim, 24)
    sim.faults.stream_disconnect_after = None
    v = sim.venue.accounts[acct]
    await eventually(lambda: broker.delivered_txn_id(acct) == v.last_id, what="transaction stream caught up")
    assert len([t for t in v.txns if t.type == "ORDER_FILL"]) == 12
    assert_every_fill_once(sim, acct, events)
    assert {e.broker_order_id for e in events.of(OrderFilled)} == {a.broker_order_id for a in placed}
    assert Counter(e.txn_id for e in events.of(OrderAccepted)) == Counter(a.txn_id for a in placed)
    # prices resumed: the last tick delivered is the venue's current quote
    bid, ask, _ = sim.venue.price("EUR_USD")
    await eventually(lambda: (events.of(PriceTick)[-1].bid, events.of(PriceTick)[-1].ask) == (bid, ask), what="final tick")
    # both streams were really cut and reconnected (within the 2/s new-connection budget)
    assert broker.stats["txn_stream_errors"] >= 1 and broker.stats["price_stream_errors"] >= 1
    assert broker.stats["txn_stream_connects"] >= 2 and broker.stats["price_stream_connects"] >= 2
    assert broker.stats["recovered_txns"] > 0
    assert Stats.max_in_window(sim.stats.connections) <= 2


async def test_stalled_transaction_stream_is_detected_and_replayed(sim, broker, events, acct):
    await ladder(sim, broker, acct, 6, "stall", start=1)
    await eventually(lambda: broker.delivered_txn_id(acct) == sim.venue.accounts[acct].last_id, what="caught up")
    errors = broker.stats["txn_stream_errors"]
    # the next line is held back for longer than the heartbeat timeout (0.8 s)
    sim.faults.stream_stall_after = 0
    sim.faults.stream_stall_for = 1.5
    await walk_down(sim, 3)  # fills the first limit while the stream is silent
    await eventually(lambda: broker.stats["txn_stream_errors"] > errors, timeout=3.0, what="stall detected")
    sim.faults.stream_stall_after = None
    await walk_down(sim, 5)
    v = sim.venue.accounts[acct]
    await eventually(lambda: broker.delivered_txn_id(acct) == v.last_id, what="caught up after the stall")
    assert len([t for t in v.txns if t.type == "ORDER_FILL"]) == 6
    assert_every_fill_once(sim, acct, events)


async def test_price_stream_stall_reconnects(sim, broker, events, acct):
    await broker.subscribe_prices(["EUR_USD", "USD_JPY"])
    await eventually(lambda: len({t.instrument for t in events.of(PriceTick)}) == 2, what="snapshot of both")
    sim.faults.stream_stall_after = 0
    sim.faults.stream_stall_for = 1.5
    await walk_down(sim, 1)
    await eventually(lambda: broker.stats["price_stream_errors"] >= 1, timeout=3.0, what="stall detected")
    sim.faults.stream_stall_after = None
    await walk_down(sim, 2)
    bid, ask, _ = sim.venue.price("EUR_USD")
    await eventually(lambda: events.of(PriceTick, instrument="EUR_USD", bid=bid, ask=ask), what="fresh tick")
    assert broker.stats["price_stream_connects"] >= 2


def _resumed_from(sim, acct, resume: int):
    """A second adapter (not started) told where the engine's journal ends, and
    the recorder of what it delivers."""
    events = Recorder()
    second = OandaBroker(adapter_config(sim))
    second.set_event_handler(events)
    second.set_resume_point(acct, resume)
    return second, events


async def test_start_replays_from_the_engines_resume_point(sim, acct):
    first = OandaBroker(adapter_config(sim))
    await first.start(streams=False)
    try:
        resume = (await first.account_summary(acct)).last_txn_id
        (fill,) = await first.submit(OrderRequest("rs-1", acct, "EUR_USD", 100))
    finally:
        await first.stop()
    # a restarted engine says where its journal ends: nothing after it is missed
    second, events = _resumed_from(sim, acct, resume)
    await second.start()
    try:
        await eventually(lambda: events.of(OrderFilled), what="replayed fill")
        assert events.of(OrderFilled) == [fill]
    finally:
        await second.stop()


async def test_several_accounts_each_have_their_stream():
    from fastexec.sim.faults import FaultConfig
    from fastexec.sim.testing import SimServer

    async with SimServer(seed=5, accounts=2, faults=FaultConfig(seed=5, heartbeat=0.25)) as sim:
        events = Recorder()
        b = OandaBroker(adapter_config(sim))
        b.set_event_handler(events)
        await b.start()
        try:
            a1, a2 = sim.account_ids
            (f1,) = await b.submit(OrderRequest("ma-1", a1, "EUR_USD", 100))
            (f2,) = await b.submit(OrderRequest("ma-2", a2, "EUR_USD", -100))
            await eventually(lambda: len(events.of(OrderFilled)) == 2, what="both fills")
            assert {(e.account_id, e.client_id) for e in events.of(OrderFilled)} == {(a1, "ma-1"), (a2, "ma-2")}
        finally:
            await b.stop()


# What another platform trading on the same account can put in its history: a
# fill of an index CFD in tenths of a unit, which the engine (whole units
# only) cannot represent and the simulator cannot make, so it is shown to the
# adapter in place of one of the venue's own fills.
FRACTIONAL_FILL = {"instrument": "SPX500_USD", "units": "0.5", "price": "5000.1"}


def skipped_logged(caplog, txn_id: int) -> list:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and f"transaction {txn_id} " in r.getMessage()]


async def _three_fills(sim, acct, prefix: str):
    """Three market fills made by an adapter that then stops: (the transaction id
    before them, their fills), for a second adapter to replay."""
    first = OandaBroker(adapter_config(sim))
    await first.start(streams=False)
    try:
        resume = (await first.account_summary(acct)).last_txn_id
        fills = []
        for i, units in enumerate((100, -100, 100)):
            (fill,) = await first.submit(OrderRequest(f"{prefix}-{i}", acct, "EUR_USD", units))
            fills.append(fill)
    finally:
        await first.stop()
    return resume, fills


async def test_replay_skips_a_transaction_it_cannot_read_and_delivers_the_rest(sim, acct, caplog):
    resume, fills = await _three_fills(sim, acct, "ur")
    bad = fills[1].txn_id
    sim.faults.txn_overrides[bad] = FRACTIONAL_FILL
    second, events = _resumed_from(sim, acct, resume)  # the start replays all three fills in one sinceid answer
    await second.start()
    try:
        v = sim.venue.accounts[acct]
        await eventually(lambda: second.delivered_txn_id(acct) == v.last_id, what="replay delivered")
        assert events.of(OrderFilled) == [fills[0], fills[2]]
        await asyncio.sleep(0.6)  # heartbeats go on: the skipped transaction is not replayed again
        assert second.stats["skipped_txns"] == 1 and second.stats["txn_stream_errors"] == 0
        assert sim.stats.count(path="/transactions/sinceid") == 1
        (rec,) = skipped_logged(caplog, bad)
        assert "SPX500_USD" in rec.getMessage() and "FixedPointError" in rec.getMessage()
    finally:
        await second.stop()


async def test_live_stream_skips_a_transaction_it_cannot_read_and_goes_on(sim, broker, events, acct, caplog):
    await eventually(lambda: sim.stats.count(path="/transactions/sinceid") == 1, what="stream open and replayed")
    last = sim.venue.accounts[acct].last_id
    bad = last + 4  # three market orders: create, fill each; the second one's fill
    sim.faults.txn_overrides[bad] = FRACTIONAL_FILL
    fills = []
    for i, units in enumerate((100, -100, 100)):
        (fill,) = await broker.submit(OrderRequest(f"ul-{i}", acct, "EUR_USD", units))
        fills.append(fill)
    assert fills[1].txn_id == bad
    v = sim.venue.accounts[acct]
    await eventually(lambda: broker.delivered_txn_id(acct) == v.last_id, what="stream delivered")
    assert events.of(OrderFilled) == [fills[0], fills[2]]
    # skipped where it stood: no reconnect, no replay
    assert broker.stats["txn_stream_errors"] == 0 and broker.stats["txn_stream_connects"] == 1
    assert sim.stats.count(path="/transactions/sinceid") == 1 and broker.stats["skipped_txns"] == 1
    assert len(skipped_logged(caplog, bad)) == 1


async def test_replay_skips_a_transaction_without_a_readable_id_instead_of_reconnecting_forever(sim, acct, caplog):
    resume, fills = await _three_fills(sim, acct, "ui")
    sim.faults.txn_overrides[fills[1].txn_id] = {"id": "not-a-number"}
    second, events = _resumed_from(sim, acct, resume)
    await second.start()
    try:
        v = sim.venue.accounts[acct]
        await eventually(lambda: second.delivered_txn_id(acct) == v.last_id, what="replay delivered")
        assert events.of(OrderFilled) == [fills[0], fills[2]]
        await asyncio.sleep(0.6)  # the stream stays up: no failed replay, no reconnect loop
        assert second.stats["txn_stream_errors"] == 0 and second.stats["skipped_txns"] == 1
        assert sim.stats.count(path="/transactions/sinceid") == 1
        assert [r for r in caplog.records if "unreadable transaction id 'not-a-number'" in r.getMessage()]
    finally:
        await second.stop()
