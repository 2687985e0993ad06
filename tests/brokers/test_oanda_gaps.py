"""Gaps the adapter cannot see directly, over loopback HTTP against the v20
simulator:

* transactions the stream silently left out (``stream_skip_next``) while the
  connection stayed up: noticed from a later transaction's id or from a
  heartbeat's ``lastTransactionID``, and fetched with ``/transactions/sinceid``
  so each reaches the event handler exactly once;
* an order POST whose connection was dropped before the venue saw it
  (``drop_before_apply_*``): the submit still ends in a known state, and the
  venue's own log never holds the client id twice.

What happened at the venue is read from the simulator (``sim.venue``,
``sim.stats``), never from the adapter's word for it.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from fastexec.brokers.base import OrderAccepted, OrderFilled, OrderRejected, OrderRequest, V20OrderType
from fastexec.brokers.oanda import NOT_PLACED, OandaBroker, OandaTimeouts

from .conftest import Recorder, adapter_config, eventually, order, venue_creates

PIP = 100_000


def fill_ids(sim, acct, since: int = 0) -> list:
    return [t.id for t in sim.venue.accounts[acct].txns if t.type == "ORDER_FILL" and t.id > since]


def sinceid_gets(sim) -> int:
    return sim.stats.count(path="/transactions/sinceid")


async def ladder(sim, broker, acct, n: int, tag: str) -> list:
    """n resting buy limits one pip apart, the first 1 pip below the bid (the
    spread is 1.4 pips: each pip the market falls from here fills one more)."""
    bid, _, _ = sim.venue.price("EUR_USD")
    out = []
    for i in range(n):
        req = OrderRequest(f"{tag}-{i}", acct, "EUR_USD", 100, type=V20OrderType.LIMIT, price=bid - (1 + i) * PIP)
        (acc,) = await broker.submit(req)
        assert isinstance(acc, OrderAccepted), acc
        out.append(acc)
    return out


def step_down(sim) -> None:
    """Move the market one pip down, at the venue, synchronously."""
    bid, ask, _ = sim.venue.price("EUR_USD")
    sim.venue.set_price("EUR_USD", bid - PIP, ask - PIP)


async def fill_next(sim, acct, n: int = 1) -> list:
    """Walk the market down until ``n`` more limits filled; their fill ids."""
    before = fill_ids(sim, acct)
    while len(fill_ids(sim, acct)) < len(before) + n:
        step_down(sim)
        await asyncio.sleep(0)
    new = fill_ids(sim, acct)[len(before):]
    assert len(new) == n, new
    return new


async def caught_up(sim, broker, acct, what: str = "stream caught up") -> None:
    v = sim.venue.accounts[acct]
    await eventually(lambda: broker.delivered_txn_id(acct) == v.last_id, what=what)


def assert_every_fill_once(sim, acct, events: Recorder) -> None:
    got = Counter(e.txn_id for e in events.of(OrderFilled))
    assert got == Counter(fill_ids(sim, acct)), "fills lost or duplicated"


# ------------------------------------------------------------------------ stream gaps


async def test_skipped_fills_are_replayed_when_a_later_transaction_shows_the_gap(sim, acct):
    # No heartbeat at all during the test (and a heartbeat timeout to match):
    # the only thing that can reveal the gap is the next transaction's id.
    sim.faults.heartbeat = 3600.0
    events = Recorder()
    cfg = adapter_config(sim, timeouts=OandaTimeouts(connect=2.0, order=0.5, read=0.5, cancel=0.5, stream_heartbeat=7200.0))
    broker = OandaBroker(cfg)
    broker.set_event_handler(events)
    await broker.start()
    try:
        await eventually(lambda: broker.stats["txn_stream_connects"] == 1, what="stream open")
        placed = await ladder(sim, broker, acct, 5, "gt")
        await caught_up(sim, broker, acct, "limit orders streamed")
        gaps, recovered, replays = broker.stats["heartbeat_gaps"], broker.stats["recovered_txns"], sinceid_gets(sim)

        sim.faults.stream_skip_next = 2
        skipped = await fill_next(sim, acct, 2)
        await eventually(lambda: len(sim.stats.stream_lines_skipped) == 2, what="both fills left out of the stream")
        assert sim.stats.stream_lines_skipped == skipped
        # nothing reveals the gap yet: no heartbeat, no newer line
        await asyncio.sleep(0.1)
        assert not [e for e in events.of(OrderFilled) if e.txn_id in skipped]

        (later,) = await fill_next(sim, acct, 1)  # streamed normally, with a higher id
        await caught_up(sim, broker, acct, "gap replayed")
        assert sim.stats.stream_lines_skipped == skipped  # the later one was not skipped
        assert later > max(skipped)

        # recovered on the same connection, through one replay
        assert broker.stats["txn_stream_connects"] == 1 and broker.stats["txn_stream_errors"] == 0
        assert broker.stats["heartbeat_gaps"] == gaps + 1
        assert broker.stats["recovered_txns"] - recovered >= len(skipped)
        assert sinceid_gets(sim) > replays
        assert_every_fill_once(sim, acct, events)
        delivered = [e.txn_id for e in events.of(OrderFilled)]
        assert delivered == sorted(delivered) == skipped + [later]  # in venue order, too
        filled = {e.broker_order_id for e in events.of(OrderFilled)}
        assert filled == {a.broker_order_id for a in placed[:3]}

        # the stream keeps going normally afterwards
        rest = await fill_next(sim, acct, 2)
        await caught_up(sim, broker, acct)
        assert_every_fill_once(sim, acct, events)
        assert [e.txn_id for e in events.of(OrderFilled)][-2:] == rest
        assert broker.stats["txn_stream_connects"] == 1 and broker.stats["heartbeat_gaps"] == gaps + 1
    finally:
        await broker.stop()


@pytest.mark.parametrize("n", [1, 3])
async def test_skipped_fills_are_replayed_when_only_a_heartbeat_shows_the_gap(sim, broker, events, acct, n):
    await eventually(lambda: broker.stats["txn_stream_connects"] == 1, what="stream open")
    await ladder(sim, broker, acct, 4, f"hb{n}")
    await caught_up(sim, broker, acct, "limit orders streamed")
    gaps, replays = broker.stats["heartbeat_gaps"], sinceid_gets(sim)

    sim.faults.stream_skip_next = n
    skipped = await fill_next(sim, acct, n)
    v = sim.venue.accounts[acct]
    # no transaction follows the skipped ones: only heartbeats
    # (lastTransactionID) can tell the adapter it is behind
    await caught_up(sim, broker, acct, "gap replayed after a heartbeat")
    assert sim.stats.stream_lines_skipped == skipped
    assert v.last_id == skipped[-1]
    assert broker.stats["txn_stream_connects"] == 1 and broker.stats["txn_stream_errors"] == 0
    assert broker.stats["heartbeat_gaps"] > gaps
    assert sinceid_gets(sim) > replays
    assert_every_fill_once(sim, acct, events)
    assert [e.txn_id for e in events.of(OrderFilled)] == skipped


@pytest.mark.parametrize("skip", [1, 2], ids=["create-only", "create-and-fill"])
async def test_skipped_market_order_batch_is_replayed_as_its_fill_alone(sim, broker, events, acct, skip):
    """A market order's create line (then the fill shows the gap) or both its
    lines (then a heartbeat does) left out: the replay reports the fill once,
    like the response did, and no ``OrderAccepted`` for an order that never
    worked."""
    await eventually(lambda: broker.stats["txn_stream_connects"] == 1, what="stream open")
    await caught_up(sim, broker, acct)
    cid = f"mk-{skip}"
    sim.faults.stream_skip_next = skip
    (fill,) = await broker.submit(order(acct, cid))
    assert isinstance(fill, OrderFilled)
    (create,) = venue_creates(sim, acct, cid)
    await caught_up(sim, broker, acct, "market order replayed")
    assert sim.stats.stream_lines_skipped == [create.id, fill.txn_id][:skip]
    assert events.of(OrderFilled, client_id=cid) == [fill]
    assert events.of(OrderAccepted, client_id=cid) == []
    assert broker.stats["txn_stream_connects"] == 1 and broker.stats["heartbeat_gaps"] >= 1


async def test_skips_spread_over_a_run_of_fills_lose_and_double_nothing(sim, broker, events, acct):
    await ladder(sim, broker, acct, 12, "mix")
    await caught_up(sim, broker, acct, "limit orders streamed")
    skipped = []
    for k in (1, 0, 2, 0, 1, 3, 0):  # skip some, stream others, in bursts
        sim.faults.stream_skip_next = k
        got = await fill_next(sim, acct, max(k, 1))
        skipped += got[:k]
        await asyncio.sleep(0.02)
    await caught_up(sim, broker, acct)
    assert sim.stats.stream_lines_skipped == skipped and len(skipped) == 7
    assert len(fill_ids(sim, acct)) == 10
    assert_every_fill_once(sim, acct, events)
    assert broker.stats["txn_stream_connects"] == 1 and broker.stats["txn_stream_errors"] == 0


# ------------------------------------------------------------------------ POST dropped before apply


def order_posts(sim) -> list:
    return [r for r in sim.stats.requests if r.method == "POST" and r.path.endswith("/orders")]


def only_order_posts(sim, **kw) -> None:
    f = sim.faults
    f.fault_methods = ("POST",)
    f.fault_path = "/orders"
    for k, v in kw.items():
        setattr(f, k, v)


def assert_known_and_single(sim, acct, cid: str, got) -> None:
    """The submit's answer agrees with the venue's log, which holds the client
    id at most once."""
    creates = venue_creates(sim, acct, cid)
    assert len(creates) <= 1, (cid, creates)
    assert isinstance(got, list) and got, (cid, got)
    if creates:
        c = creates[0]
        want = OrderAccepted if c.p.state == "PENDING" else OrderFilled
        assert want in {type(e) for e in got}, (cid, c.p.state, got)
        assert all(e.broker_order_id == str(c.id) for e in got if hasattr(e, "broker_order_id")), (cid, got)
        assert not [e for e in got if isinstance(e, OrderRejected)], (cid, got)
    else:
        assert [(type(e), e.reason) for e in got] == [(OrderRejected, NOT_PLACED)], (cid, got)
        assert got[0].client_id == cid


@pytest.mark.parametrize("kind", ["market", "limit"])
async def test_post_dropped_before_the_venue_saw_it(sim, acct, events, kind):
    b = OandaBroker(adapter_config(sim, resolve_window_s=0.6))
    b.set_event_handler(events)
    await b.start()
    try:
        bid, _, _ = sim.venue.price("EUR_USD")
        cid = f"dba-{kind}"
        req = order(acct, cid) if kind == "market" else order(acct, cid, type=V20OrderType.LIMIT, price=bid - 20 * PIP)
        last_before = sim.venue.accounts[acct].last_id
        only_order_posts(sim, drop_before_apply_next=1)
        got = await b.submit(req)
        assert sim.faults.drop_before_apply_next == 0
        assert_known_and_single(sim, acct, cid, got)
        posts = order_posts(sim)
        assert posts[0].fault == "drop_before_apply" and posts[0].applied is False
        first_lookup = next(
            i for i, r in enumerate(sim.stats.requests) if r.method == "GET" and r.path.endswith("/orders/@" + cid)
        )
        if venue_creates(sim, acct, cid):
            # placed: only by a second POST sent after a lookup proved the first absent
            assert len(posts) == 2 and posts[1].status == 201
            assert sim.stats.requests.index(posts[1]) > first_lookup
        else:
            # not placed: never resent, and nothing happened at the venue
            assert len(posts) == 1
            assert sim.venue.accounts[acct].last_id == last_before
        # the stream agrees: nothing for this client id unless the venue has it
        await caught_up(sim, b, acct)
        streamed = [e for e in events if getattr(e, "client_id", None) == cid]
        if venue_creates(sim, acct, cid):
            assert [type(e) for e in streamed] == [OrderFilled if kind == "market" else OrderAccepted]
        else:
            assert streamed == []
        # the client id is still free: a deliberate new submit places it once
        (again,) = await b.submit(req)
        assert isinstance(again, OrderFilled if kind == "market" else OrderAccepted)
        assert len(venue_creates(sim, acct, cid)) == 1
    finally:
        await b.stop()


@pytest.mark.parametrize(
    "faults",
    [dict(drop_before_apply_rate=0.3), dict(drop_before_apply_rate=0.25, drop_rate=0.15)],
    ids=["before-apply", "before-and-after-apply"],
)
async def test_drops_over_thirty_submits_every_state_known_none_twice(sim, broker, events, acct, faults):
    sim.faults.reseed(11)
    only_order_posts(sim, **faults)
    bid, _, _ = sim.venue.price("EUR_USD")
    reqs = []
    for i in range(30):
        if i % 3 == 0:
            reqs.append(order(acct, f"dr-{i}", type=V20OrderType.LIMIT, price=bid - (20 + i) * PIP))
        else:
            reqs.append(order(acct, f"dr-{i}", units=100 if i % 2 else -100))
    results = await asyncio.gather(*(broker.submit(r) for r in reqs), return_exceptions=True)
    f = sim.faults
    f.drop_before_apply_rate = f.drop_rate = 0.0

    dropped_before = sim.stats.count(fault="drop_before_apply")
    dropped_after = sim.stats.count(fault="drop")
    assert dropped_before > 0, "the seeded run should drop some POSTs before the venue"
    for req, got in zip(reqs, results):
        assert not isinstance(got, BaseException), (req.client_id, got)
        assert_known_and_single(sim, acct, req.client_id, got)
    # one POST per submit: a lost answer is resolved by lookups, never resent
    assert len(order_posts(sim)) == len(reqs)
    not_placed = [r.client_id for r, got in zip(reqs, results) if isinstance(got[0], OrderRejected)]
    assert len(not_placed) == dropped_before
    placed = [r.client_id for r in reqs if venue_creates(sim, acct, r.client_id)]
    assert len(placed) == len(reqs) - dropped_before
    if "drop_rate" in faults:
        assert dropped_after > 0 and broker.stats["resolved_by_lookup"] >= dropped_after
    # the stream reports each venue fill once, and nothing for orders not placed
    await caught_up(sim, broker, acct)
    assert_every_fill_once(sim, acct, events)
    assert not [e for e in events if getattr(e, "client_id", None) in set(not_placed)]


async def test_a_gap_older_than_the_venue_keeps_is_reported_once_and_the_stream_goes_on():
    """The stream left out more transactions than the venue keeps (bounded history):
    ``sinceid`` answers 416 and cannot replay them. The adapter must not retry that for
    ever (each reconnect would replay from the same id and fail the same way, and nothing
    would be delivered again): it counts and logs the gap once, carries on from the
    account's present, and later transactions are delivered as usual."""
    from fastexec.sim import venue as venue_mod
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.testing import SimServer
    from fastexec.sim.venue import Venue

    async with SimServer(venue=Venue(seed=7, history=20)) as sim:
        sim.faults.heartbeat = 3600.0  # only the next transaction's id reveals the gap
        acct = sim.account_ids[0]
        events = Recorder()
        broker = OandaBroker(adapter_config(sim, timeouts=OandaTimeouts(connect=2.0, order=0.5, read=0.5, cancel=0.5,
                                                                         stream_heartbeat=7200.0)))
        broker.set_event_handler(events)
        await broker.start()
        try:
            await eventually(lambda: broker.stats["txn_stream_connects"] == 1, what="stream open")
            gap_from = broker.delivered_txn_id(acct)
            # someone else trades, unseen by the stream, until the venue has forgotten the gap's start
            sim.faults.stream_skip_next = 10**9
            other = SimulatedBroker(sim.venue)
            for i in range((20 + venue_mod.TRIM_BATCH) // 2 + 2):
                await other.submit(order(acct, f"outside-{i}", 100 if i % 2 == 0 else -100))
            assert sim.venue.accounts[acct].txns.base > gap_from
            unseen = sim.venue.accounts[acct].last_id - gap_from
            await eventually(lambda: len(sim.stats.stream_lines_skipped) == unseen, what="the stream left them out")
            sim.faults.stream_skip_next = 0

            (first,) = [e for e in await broker.submit(order(acct, "after-gap", 1000)) if isinstance(e, OrderFilled)]
            await eventually(lambda: broker.stats["history_gaps"] == 1, what="the gap reported")
            await caught_up(sim, broker, acct, "delivery goes on from the present")
            later = [e for e in await broker.submit(order(acct, "later", 1000)) if isinstance(e, OrderFilled)]
            await caught_up(sim, broker, acct, "a later fill streamed")
            await eventually(lambda: later[0].txn_id in {e.txn_id for e in events.of(OrderFilled)},
                             what="the later fill delivered by the stream")
            assert broker.stats["history_gaps"] == 1
            assert broker.stats["txn_stream_connects"] == 1 and broker.stats["txn_stream_errors"] == 0
            assert first.txn_id <= broker.delivered_txn_id(acct)
        finally:
            await broker.stop()


@pytest.mark.parametrize("status,gap", [(416, True), (404, False), (500, False), (None, False)])
def test_only_416_reads_as_a_history_gap(status, gap):
    from fastexec.brokers.base import BrokerError

    assert BrokerError("x", status=status).history_gap is gap


async def test_a_history_gap_shows_in_engine_health_and_metrics():
    """The same unreplayable gap, with the engine over the adapter: operators must see it
    (its events never reached the engine), so /health/detailed's broker section carries the
    adapter's counters and Prometheus gets execution_broker_history_gaps_total, which the
    FastexecBrokerHistoryGap alert watches."""
    from fastexec.config import Settings
    from fastexec.engine import Engine, OrderSpec
    from fastexec.metrics import Metrics
    from fastexec.sim import venue as venue_mod
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.testing import SimServer
    from fastexec.sim.venue import Venue

    async with SimServer(venue=Venue(seed=7, history=20)) as sim:
        sim.faults.heartbeat = 3600.0
        acct = sim.account_ids[0]
        broker = OandaBroker(adapter_config(sim, timeouts=OandaTimeouts(connect=2.0, order=0.5, read=0.5, cancel=0.5,
                                                                         stream_heartbeat=7200.0)))
        engine = Engine(Settings(max_orders_per_second=1000), broker)
        await engine.start()
        metrics = Metrics()
        metrics.attach_engine(engine)
        try:
            await eventually(lambda: broker.stats["txn_stream_connects"] == 1, what="stream open")
            assert engine.health()["broker"]["stats"]["history_gaps"] == 0
            assert b'execution_broker_history_gaps_total{broker="oanda"} 0.0' in metrics.render()
            sim.faults.stream_skip_next = 10**9
            other = SimulatedBroker(sim.venue)
            for i in range((20 + venue_mod.TRIM_BATCH) // 2 + 2):
                await other.submit(order(acct, f"outside-{i}", 100 if i % 2 == 0 else -100))
            sim.faults.stream_skip_next = 0
            view = await engine.submit(OrderSpec(acct, "EUR_USD", "buy", 1000, client_order_id="after-gap"))
            assert view.status == "filled"
            await eventually(lambda: broker.stats["history_gaps"] == 1, what="the gap reported")
            health = engine.health()
            assert health["broker"]["stats"]["history_gaps"] == 1 and health["broker"]["ok"]
            assert b'execution_broker_history_gaps_total{broker="oanda"} 1.0' in metrics.render()
        finally:
            await engine.stop()
