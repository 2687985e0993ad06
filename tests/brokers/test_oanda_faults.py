"""Broker faults from the simulator, one at a time and mixed: after each, every
order's final state is known to the adapter and agrees with the venue, and no
order exists twice at the venue (checked in the simulator's own log)."""
from __future__ import annotations

import asyncio

import pytest

from fastexec.brokers.base import (
    BrokerError,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    V20OrderType,
)
from fastexec.brokers.oanda import NOT_PLACED, OandaBroker
from fastexec.sim.faults import FaultConfig, Stats
from fastexec.sim.testing import SimServer

from .conftest import adapter_config, eventually, order, venue_creates

PIP = 100_000


def posts(sim) -> list:
    return [r for r in sim.stats.requests if r.method == "POST" and r.path.endswith("/orders")]


# How long after its 5xx answer the venue applies a request in the "late"
# scenarios: longer than the adapter's first lookups, well inside its window.
LATE = 0.3


def requests_between_posts(sim) -> list:
    """What reached the venue between the first and the second order POST
    (the transaction stream's own requests included)."""
    reqs = sim.stats.requests
    at = [i for i, r in enumerate(reqs) if r.method == "POST" and r.path.endswith("/orders")]
    return reqs[at[0] + 1 : at[1]]


def only(sim, methods=("POST",), path=None, **kw) -> FaultConfig:
    """Point the simulator's faults at one kind of request."""
    f = sim.faults
    f.fault_methods = methods
    f.fault_path = path
    for k, v in kw.items():
        setattr(f, k, v)
    return f


# ------------------------------------------------------------------------------- order create


async def test_latency_below_the_timeout_is_only_slow(sim, broker, acct):
    only(sim, latency=0.1)
    (fill,) = await broker.submit(order(acct, "lat-1"))
    assert isinstance(fill, OrderFilled)
    assert len(posts(sim)) == 1 and len(venue_creates(sim, acct, "lat-1")) == 1


async def test_rate_limited_post_is_sent_again_after_the_wait_without_lookups(sim, broker, acct):
    # a 429 is the rate limiter refusing the POST before the order engine saw it:
    # the one answer that proves nothing was placed, so the POST may go again
    only(sim, error_next=1, error_status=429)
    (fill,) = await broker.submit(order(acct, "rl-1"))
    assert isinstance(fill, OrderFilled) and fill.client_id == "rl-1"
    assert [r.status for r in posts(sim)] == [429, 201]
    # no lookup: nothing to find, and reads would only add to the excess
    assert [r.path for r in requests_between_posts(sim) if "/orders" in r.path] == []
    assert len(venue_creates(sim, acct, "rl-1")) == 1
    assert broker.stats["resent_after_refusal"] == 1


async def test_post_rate_limited_every_time_ends_not_placed(sim, broker, acct):
    only(sim, error_rate=1.0, error_status=429)
    (rej,) = await broker.submit(order(acct, "rl-all"))
    assert rej.reason == NOT_PLACED and rej.client_id == "rl-all"
    assert len(posts(sim)) == broker.config.max_attempts
    assert venue_creates(sim, acct, "rl-all") == []


@pytest.mark.parametrize("late", [False, True], ids=["applied-before-answer", "applied-after-answer"])
@pytest.mark.parametrize("status", [500, 503])
async def test_submit_answered_5xx_after_apply_is_not_sent_again(sim, broker, events, acct, status, late):
    # OANDA's order engine took the market order, the answer is a 5xx: the only
    # way to learn it filled is to look, and a second POST would fill it twice
    # (a client id blocks a duplicate only while the first order is pending)
    cid = f"m5-{status}-{int(late)}"
    only(sim, error_next=1, error_status=status, error_applies=True, error_apply_delay=LATE if late else 0.0)
    (fill,) = await broker.submit(order(acct, cid))
    assert len(posts(sim)) == 1
    (create,) = venue_creates(sim, acct, cid)
    assert create.p.state == "FILLED"
    assert isinstance(fill, OrderFilled) and fill.client_id == cid and fill.units == 1000
    assert fill.broker_order_id == str(create.id) and fill.txn_id == create.p.fill_txn
    assert broker.stats["resolved_by_lookup"] >= 1 and broker.stats["resent_after_refusal"] == 0
    await eventually(lambda: events.of(OrderFilled, client_id=cid), what="streamed fill")
    assert events.of(OrderFilled, client_id=cid) == [fill]
    pos = sim.venue.accounts[acct].positions
    assert sum(p.units for p in pos.values() if p.inst.name == "EUR_USD") == 1000


@pytest.mark.parametrize("status", [500, 503])
async def test_limit_order_answered_5xx_after_apply_ends_working_not_rejected(sim, broker, acct, status):
    bid, _, _ = sim.venue.price("EUR_USD")
    cid = f"l5-{status}"
    only(sim, error_next=1, error_status=status, error_applies=True, error_apply_delay=LATE)
    (acc,) = await broker.submit(order(acct, cid, type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    assert isinstance(acc, OrderAccepted) and acc.client_id == cid
    (create,) = venue_creates(sim, acct, cid)
    assert create.p.state == "PENDING" and acc.broker_order_id == str(create.id)
    assert len(posts(sim)) == 1
    v = sim.venue.accounts[acct]
    assert not [t for t in v.txns if t.type.endswith("_REJECT")]  # no resend refused as a duplicate


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_submit_answered_5xx_before_apply_is_resolved_by_lookup_and_never_resent(sim, acct, status):
    b = OandaBroker(adapter_config(sim, resolve_window_s=0.6))
    await b.start(streams=False)
    cid = f"gw-{status}"
    try:
        only(sim, error_next=1, error_status=status)
        (rej,) = await b.submit(order(acct, cid))
    finally:
        await b.stop()
    assert isinstance(rej, OrderRejected) and rej.reason == NOT_PLACED and rej.client_id == cid
    assert len(posts(sim)) == 1 and venue_creates(sim, acct, cid) == []
    assert sim.stats.count(path=f"/orders/@{cid}") >= 2  # kept looking through the window


async def test_timeout_after_the_venue_applied_resolves_to_the_fill(sim, broker, events, acct):
    only(sim, timeout_next=1, hold=1.0, timeout_applies=True)
    (fill,) = await broker.submit(order(acct, "to-1"))
    assert isinstance(fill, OrderFilled) and fill.client_id == "to-1"
    (create,) = venue_creates(sim, acct, "to-1")
    assert create.p.state == "FILLED" and fill.broker_order_id == str(create.id)
    assert len(posts(sim)) == 1 and broker.stats["resolved_by_lookup"] >= 1
    await eventually(lambda: events.of(OrderFilled, client_id="to-1"), what="streamed fill")
    assert events.of(OrderFilled, client_id="to-1") == [fill]


async def test_timeout_where_the_venue_applies_late_is_found_by_repeated_lookup(sim, broker, acct):
    only(sim, timeout_next=1, hold=1.0, timeout_applies=True, timeout_apply_late=True)
    (fill,) = await broker.submit(order(acct, "late-1"))
    assert isinstance(fill, OrderFilled)
    assert len(posts(sim)) == 1 and len(venue_creates(sim, acct, "late-1")) == 1
    # looked up (how often depends on the 2/s new-connection budget: the timed
    # out POST took its connection with it), never resent
    assert sim.stats.count(path="/orders/@late-1") >= 1


async def test_timeout_never_applied_ends_not_placed_after_the_window(sim, broker, acct):
    only(sim, timeout_next=1, hold=0.8, timeout_applies=False)
    (rej,) = await broker.submit(order(acct, "lost-1"))
    assert isinstance(rej, OrderRejected) and rej.reason == NOT_PLACED
    assert len(posts(sim)) == 1 and venue_creates(sim, acct, "lost-1") == []


@pytest.mark.parametrize("kind", ["market", "limit", "reject"])
async def test_connection_dropped_after_the_order_was_applied(sim, broker, acct, kind):
    bid, _, _ = sim.venue.price("EUR_USD")
    req = {
        "market": order(acct, "drop-m"),
        "limit": order(acct, "drop-l", type=V20OrderType.LIMIT, price=bid - 20 * PIP),
        "reject": order(acct, "drop-r", units=0),
    }[kind]
    only(sim, drop_next=1)
    got = await broker.submit(req)
    assert len(posts(sim)) == 1
    if kind == "market":
        (fill,) = got
        assert isinstance(fill, OrderFilled) and len(venue_creates(sim, acct, "drop-m")) == 1
    elif kind == "limit":
        (acc,) = got
        assert isinstance(acc, OrderAccepted)
        (create,) = venue_creates(sim, acct, "drop-l")
        assert acc.broker_order_id == str(create.id) and create.p.state == "PENDING"
    else:
        (rej,) = got
        assert isinstance(rej, OrderRejected) and rej.reason == "UNITS_INVALID" and rej.txn_id is not None


async def test_unknown_state_is_reported_as_such_and_the_stream_settles_it(sim, broker, events, acct):
    # the POST is held past the timeout and every lookup fails: no evidence
    # either way, so the adapter must neither claim "not placed" nor resend
    only(sim, methods=("POST",), timeout_next=1, hold=0.8, timeout_applies=True)
    task = asyncio.create_task(broker.submit(order(acct, "unk-1")))
    await eventually(lambda: sim.stats.count(fault="timeout") == 1, what="the held POST")
    only(sim, methods=("GET",), error_rate=1.0, error_status=503)
    with pytest.raises(BrokerError) as err:
        await task
    assert "unknown" in str(err.value)
    sim.faults.error_rate = 0.0
    assert len(posts(sim)) == 1 and len(venue_creates(sim, acct, "unk-1")) == 1
    await eventually(lambda: events.of(OrderFilled, client_id="unk-1"), what="fill from the stream")
    assert (await broker.order_by_client_id(acct, "unk-1")).state == "FILLED"


# ------------------------------------------------------------------------------- replace / close / cancel


async def test_replace_dropped_after_apply_resolves_to_the_replacement(sim, broker, acct):
    bid, _, _ = sim.venue.price("EUR_USD")
    (acc,) = await broker.submit(order(acct, "rd-1", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    only(sim, methods=("PUT",), drop_next=1)
    got = await broker.replace(acct, acc.broker_order_id, order(acct, "rd-1", type=V20OrderType.LIMIT, price=bid - 30 * PIP))
    (rep,) = [e for e in got if isinstance(e, OrderReplaced)]
    v = sim.venue.accounts[acct]
    replacements = [o for o in v.orders.values() if o.replaces_id == int(acc.broker_order_id)]
    assert len(replacements) == 1 and rep.new_broker_order_id == str(replacements[0].id)
    assert sim.stats.count(path=f"/orders/{acc.broker_order_id}") >= 2  # one PUT, then the lookup GET
    assert len([r for r in sim.stats.requests if r.method == "PUT"]) == 1


async def test_replace_timing_out_unapplied_leaves_the_old_order(sim, broker, acct):
    bid, _, _ = sim.venue.price("EUR_USD")
    (acc,) = await broker.submit(order(acct, "rt-1", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    only(sim, methods=("PUT",), timeout_next=1, hold=0.8, timeout_applies=False)
    (rej,) = await broker.replace(acct, acc.broker_order_id, order(acct, "rt-1", type=V20OrderType.LIMIT, price=bid - 30 * PIP))
    assert rej.reason == NOT_PLACED
    assert sim.venue.accounts[acct].orders[int(acc.broker_order_id)].state == "PENDING"


@pytest.mark.parametrize("status", [500, 503])
async def test_replace_answered_5xx_after_apply_is_not_sent_again(sim, broker, acct, status):
    bid, _, _ = sim.venue.price("EUR_USD")
    (acc,) = await broker.submit(order(acct, f"r5-{status}", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    only(sim, methods=("PUT",), error_next=1, error_status=status, error_applies=True, error_apply_delay=LATE)
    got = await broker.replace(
        acct, acc.broker_order_id, order(acct, f"r5-{status}", type=V20OrderType.LIMIT, price=bid - 30 * PIP)
    )
    (rep,) = got
    assert isinstance(rep, OrderReplaced)
    v = sim.venue.accounts[acct]
    (new,) = [o for o in v.orders.values() if o.replaces_id == int(acc.broker_order_id)]
    assert rep.new_broker_order_id == str(new.id) and new.state == "PENDING"
    assert len([r for r in sim.stats.requests if r.method == "PUT"]) == 1
    assert not [t for t in v.txns if t.type.endswith("_REJECT")]


async def test_replace_answered_503_before_apply_leaves_the_old_order(sim, acct):
    b = OandaBroker(adapter_config(sim, resolve_window_s=0.6))
    await b.start(streams=False)
    bid, _, _ = sim.venue.price("EUR_USD")
    try:
        (acc,) = await b.submit(order(acct, "r5-none", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
        only(sim, methods=("PUT",), error_next=1, error_status=503)
        (rej,) = await b.replace(
            acct, acc.broker_order_id, order(acct, "r5-none", type=V20OrderType.LIMIT, price=bid - 30 * PIP)
        )
    finally:
        await b.stop()
    assert isinstance(rej, OrderRejected) and rej.reason == NOT_PLACED
    assert sim.venue.accounts[acct].orders[int(acc.broker_order_id)].state == "PENDING"
    assert len([r for r in sim.stats.requests if r.method == "PUT"]) == 1
    assert sim.stats.count(path=f"/orders/{acc.broker_order_id}") >= 3  # the PUT, then lookups through the window


_CLOSE_FAULTS = {
    "drop": dict(drop_next=1),
    "timeout": dict(timeout_next=1, hold=0.8, timeout_applies=True),
    "502": dict(error_next=1, error_status=502),
    "503": dict(error_next=1, error_status=503),
    "500-applied": dict(error_next=1, error_status=500, error_applies=True),
    "503-applied-late": dict(error_next=1, error_status=503, error_applies=True, error_apply_delay=LATE),
}


@pytest.mark.parametrize("fault", list(_CLOSE_FAULTS))
async def test_partial_trade_close_is_never_applied_twice(sim, broker, acct, fault):
    (fill,) = await broker.submit(order(acct, f"ptc-{fault}", units=1000))
    tid = fill.trade_opened_id
    only(sim, methods=("PUT",), path="/close", **_CLOSE_FAULTS[fault])
    got = await broker.close_trade(acct, tid, 400)
    await asyncio.sleep(LATE)  # a request applied late has landed by now
    trade = sim.venue.accounts[acct].trades[int(tid)]
    puts = [r for r in sim.stats.requests if r.method == "PUT"]
    assert len(puts) == 1
    if fault in ("502", "503"):  # answered before the venue: nothing happened, and we say so
        assert [e.reason for e in got] == [NOT_PLACED] and trade.units == 1000
    else:
        (part,) = got
        assert isinstance(part, OrderFilled) and part.units == -400 and trade.units == 600


@pytest.mark.parametrize("fault", ["drop", "503-applied-late"])
async def test_position_close_whose_answer_was_lost_is_not_sent_again(sim, broker, acct, fault):
    await broker.submit(order(acct, "pcd-1", units=1000))
    only(sim, methods=("PUT",), path="/close", **_CLOSE_FAULTS[fault])
    (fill,) = await broker.close_position(acct, "EUR_USD", 250, None)
    await asyncio.sleep(LATE)
    assert fill.units == -250
    (pos,) = await broker.open_positions(acct)
    assert pos.long_units == 750
    assert len([r for r in sim.stats.requests if r.method == "PUT"]) == 1


async def test_cancel_is_retried_through_errors(sim, broker, acct):
    bid, _, _ = sim.venue.price("EUR_USD")
    (acc,) = await broker.submit(order(acct, "cr-1", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    only(sim, methods=("PUT",), path="/cancel", error_next=2, error_status=503)
    (can,) = await broker.cancel(acct, acc.broker_order_id)
    assert isinstance(can, OrderCancelled) and can.reason == "CLIENT_REQUEST"
    assert sim.stats.count(path="/cancel") == 3


@pytest.mark.parametrize("fault", ["drop", "timeout"])
async def test_cancel_whose_answer_was_lost_is_confirmed_not_repeated(sim, broker, acct, fault):
    bid, _, _ = sim.venue.price("EUR_USD")
    (acc,) = await broker.submit(order(acct, f"cl-{fault}", type=V20OrderType.LIMIT, price=bid - 20 * PIP))
    if fault == "drop":
        only(sim, methods=("PUT",), path="/cancel", drop_next=1)
    else:
        only(sim, methods=("PUT",), path="/cancel", timeout_next=1, hold=0.8, timeout_applies=True)
    (can,) = await broker.cancel(acct, acc.broker_order_id)
    assert isinstance(can, OrderCancelled) and can.reason == "CLIENT_REQUEST"
    v = sim.venue.accounts[acct]
    cancels = [t for t in v.txns if t.type == "ORDER_CANCEL" and t.p[0].id == int(acc.broker_order_id)]
    assert len(cancels) == 1 and can.txn_id == cancels[0].id


# ------------------------------------------------------------------------------------------- reads


@pytest.mark.parametrize(
    "fault",
    [dict(error_next=3, error_status=503), dict(error_next=2, error_status=429), dict(drop_next=2),
     dict(timeout_next=1, hold=0.8), dict(latency=0.05, jitter=0.05)],
    ids=["503", "429", "drop", "timeout", "latency"],
)
async def test_reads_retry_with_backoff(sim, broker, acct, fault):
    only(sim, methods=("GET",), **fault)
    snap = await broker.account_summary(acct)
    assert snap.last_txn_id == sim.venue.accounts[acct].last_id
    assert broker.http.retries >= (0 if "latency" in fault else 1)


async def test_reads_give_up_after_the_attempt_limit(sim, broker, acct):
    only(sim, methods=("GET",), error_rate=1.0, error_status=500)
    with pytest.raises(BrokerError) as err:
        await broker.open_positions(acct)
    assert err.value.retryable and sim.stats.count(path="/openPositions") == broker.config.max_attempts


# ------------------------------------------------------------------------------------------- mixed


async def test_fault_storm_every_order_known_and_none_twice(sim, broker, events, acct):
    only(sim, methods=("POST", "GET"), error_rate=0.1, error_status=503, drop_rate=0.1, timeout_rate=0.05,
         hold=0.7, timeout_applies=True, latency=0.0, jitter=0.02)
    bid, _, _ = sim.venue.price("EUR_USD")
    reqs = []
    for i in range(40):
        if i % 3 == 0:
            reqs.append(order(acct, f"st-{i}", type=V20OrderType.LIMIT, price=bid - (20 + i) * PIP))
        else:
            reqs.append(order(acct, f"st-{i}", units=100 if i % 2 else -100))
    results = await asyncio.gather(*(broker.submit(r) for r in reqs), return_exceptions=True)
    f = sim.faults
    f.error_rate = f.drop_rate = f.timeout_rate = 0.0
    assert sim.stats.count(fault="drop") + sim.stats.count(fault="timeout") + sim.stats.count(fault="5xx") > 0
    for req, got in zip(reqs, results):
        creates = venue_creates(sim, acct, req.client_id)
        assert len(creates) <= 1, req.client_id
        assert not isinstance(got, BaseException), (req.client_id, got)
        kinds = {type(e) for e in got}
        if creates:
            state = creates[0].p.state
            want = OrderAccepted if state == "PENDING" else OrderFilled
            assert want in kinds, (req.client_id, state, got)
            assert all(getattr(e, "broker_order_id", str(creates[0].id)) == str(creates[0].id) for e in got)
        else:
            assert [e.reason for e in got] == [NOT_PLACED], (req.client_id, got)
    # after the storm the stream has delivered each venue fill exactly once
    v = sim.venue.accounts[acct]
    fill_ids = [t.id for t in v.txns if t.type == "ORDER_FILL"]
    await eventually(lambda: broker.delivered_txn_id(acct) == v.last_id, what="stream caught up")
    assert sorted(e.txn_id for e in events.of(OrderFilled)) == fill_ids


async def test_connection_limit_of_the_venue_is_never_hit():
    # slow answers make the adapter grow its pool, at most 2 new connections/s
    faults = FaultConfig(seed=3, connection_rate_limit=2, latency=0.3)
    async with SimServer(seed=3, faults=faults) as sim:
        b = OandaBroker(adapter_config(sim))
        await b.start(streams=False)
        try:
            acct = sim.account_ids[0]
            snaps = await asyncio.gather(*(b.account_summary(acct) for _ in range(60)))
        finally:
            await b.stop()
        assert all(s.account_id == acct for s in snaps)
        assert sim.stats.rejected_connections == []
        assert Stats.max_in_window(sim.stats.connections) <= 2
        assert 2 < len(sim.stats.connections) <= 10


async def test_client_ids_that_need_quoting_are_looked_up_exactly(sim, broker, acct):
    cid = "strat a/b#1?x=%2"
    only(sim, drop_next=1)
    (fill,) = await broker.submit(order(acct, cid))
    assert isinstance(fill, OrderFilled) and fill.client_id == cid
    assert len(venue_creates(sim, acct, cid)) == 1
    assert (await broker.order_by_client_id(acct, cid)).client_id == cid
