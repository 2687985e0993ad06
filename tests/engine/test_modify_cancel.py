"""Modify and cancel: broker replaces give new broker ids while the engine id
stays; risk runs again on modify; races between a cancel and a fill; the
same broker transaction delivered twice is applied once."""
from __future__ import annotations

import pytest

from fastexec.engine import Engine, ExitSpec, OrderSpec
from fastexec.errors import ConflictError, NotFoundError, RiskDeniedError, ValidationError
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

from .harness import FakeClock, Harness, make_settings, px


async def _resting_buy(h, units=1000, price="1.09500", **kw):
    return await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", units, type="limit", price=px(price), **kw))


async def test_modify_replaces_at_the_broker_and_keeps_the_engine_id(h):
    view = await _resting_buy(h, client_order_id="strat-7")
    first_broker_id = view.broker_order_id
    m1 = await h.engine.modify(view.order_id, price=px("1.09600"))
    assert m1.order_id == view.order_id
    assert m1.client_order_id == "strat-7"
    assert m1.broker_order_id != first_broker_id
    assert m1.price == px("1.09600")
    assert m1.status == "working"
    # a second modify addresses the replacement, found through the engine id
    m2 = await h.engine.modify("strat-7", units=2500, stop_loss=ExitSpec(price=px("1.09000")))
    assert m2.broker_order_id not in (first_broker_id, m1.broker_order_id)
    assert m2.units == 2500
    assert m2.stop_loss == ExitSpec(price=px("1.09000"))
    pending = h.venue.accounts[h.a1].pending
    assert [o.units for o in pending.values()] == [2500]
    # the replacement fills: the same engine order becomes filled
    h.quote("EUR_USD", "1.09590", "1.09600")
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled" and done.filled_units == 2500
    assert h.engine.position(h.a1, "EUR_USD").units == 2500


async def test_cancel_after_replace_cancels_the_replacement(h):
    view = await _resting_buy(h)
    await h.engine.modify(view.order_id, price=px("1.09400"))
    cancelled = await h.engine.cancel(view.order_id)
    assert cancelled.status == "cancelled"
    assert h.venue.accounts[h.a1].pending == {}
    assert h.engine.account(h.a1).working_orders == 0


async def test_modify_runs_the_risk_gateway_again_and_changes_nothing_on_denial(h):
    h.engine.set_risk_limits(h.a1, max_position_size=5000)
    view = await _resting_buy(h, units=4000)
    with pytest.raises(RiskDeniedError) as err:
        await h.engine.modify(view.order_id, units=6000, price=px("1.09700"))
    assert err.value.code == "MAX_POSITION_SIZE"
    assert "limit=5000" in err.value.detail
    same = h.engine.get_order(view.order_id)
    assert (same.units, same.price, same.broker_order_id, same.status) == (4000, px("1.09500"), view.broker_order_id, "working")
    assert [o.units for o in h.venue.accounts[h.a1].pending.values()] == [4000]
    # at the limit it passes
    ok = await h.engine.modify(view.order_id, units=5000)
    assert ok.units == 5000


async def test_modify_refuses_bad_input_and_finished_orders(h):
    view = await _resting_buy(h)
    with pytest.raises(ValidationError) as err:
        await h.engine.modify(view.order_id, price=1_095_001)  # beyond 5 decimals
    assert err.value.code == "PRICE_PRECISION_EXCEEDED"
    with pytest.raises(ValidationError):
        await h.engine.modify(view.order_id)
    with pytest.raises(ValidationError) as err:
        await h.engine.modify(view.order_id, units=0)
    assert err.value.code == "INVALID_UNITS"
    market = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 100))
    with pytest.raises(ConflictError) as err:
        await h.engine.modify(market.order_id, units=200)
    assert err.value.code == "ORDER_NOT_MODIFIABLE"
    with pytest.raises(NotFoundError):
        await h.engine.modify("no-such-order", units=5)


async def test_cancel_of_a_filled_order_is_a_conflict(h):
    market = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "sell", 100))
    with pytest.raises(ConflictError) as err:
        await h.engine.cancel(market.order_id)
    assert err.value.code == "ORDER_NOT_CANCELLABLE"
    with pytest.raises(NotFoundError):
        await h.engine.cancel("nope")


class MatchingWhileCancellingBroker(SimulatedBroker):
    """The real simulated venue, with the market moving through a resting
    order while our cancel request is on its way: the fill is produced by the
    venue and delivered on the event stream before the cancel is processed."""

    move = None

    async def cancel(self, account_id, broker_order_id):
        if self.move is not None:
            instrument, bid, ask = self.move
            self.venue.set_price(instrument, bid, ask)
        return await super().cancel(account_id, broker_order_id)


async def _race_harness():
    clock = FakeClock()
    venue = Venue(seed=3, accounts=2, clock=clock)
    broker = MatchingWhileCancellingBroker(venue)
    from fastexec.engine import ListJournal

    journal = ListJournal()
    engine = Engine(make_settings(), broker, clock=clock, journal=journal)
    await engine.start()
    h = Harness(engine, venue, clock, journal)
    h.quote("EUR_USD", "1.10000", "1.10010")
    return h, broker


async def test_fill_that_arrives_after_the_cancel_request_wins_the_race():
    h, broker = await _race_harness()
    try:
        view = await _resting_buy(h)
        states = []
        h.engine.subscribe(lambda e: states.append((e.kind, e.data.status)) if e.order_id == view.order_id else None)
        broker.move = ("EUR_USD", px("1.09490"), px("1.09500"))
        with pytest.raises(ConflictError) as err:
            await h.engine.cancel(view.order_id)
        assert "status=filled" in err.value.detail
        done = h.engine.get_order(view.order_id)
        assert done.status == "filled"
        assert done.filled_units == 1000
        assert ("order_filled", "filled") in states
        assert h.engine.position(h.a1, "EUR_USD").units == 1000
        assert h.engine.account(h.a1).working_orders == 0
    finally:
        await h.engine.stop()


async def test_cancel_wins_when_the_market_does_not_reach_the_order():
    h, broker = await _race_harness()
    try:
        view = await _resting_buy(h)
        broker.move = ("EUR_USD", px("1.09600"), px("1.09610"))
        done = await h.engine.cancel(view.order_id)
        assert done.status == "cancelled"
        assert h.engine.position(h.a1, "EUR_USD").units == 0
    finally:
        await h.engine.stop()


async def test_the_same_broker_transaction_twice_is_applied_once(h):
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1000))
    before = h.engine.position(h.a1, "EUR_USD")
    replay = await h.engine.broker.transactions_since(h.a1, 0)
    assert any(type(ev).__name__ == "OrderFilled" for ev in replay)
    for ev in replay:  # as if the transaction stream delivered them again
        h.engine.broker._handler(ev)
    assert h.engine.position(h.a1, "EUR_USD") == before


async def test_client_order_id_is_unique_and_finds_the_order(h):
    view = await _resting_buy(h, client_order_id="abc-1")
    assert h.engine.get_order("abc-1").order_id == view.order_id
    with pytest.raises(ConflictError) as err:
        await _resting_buy(h, client_order_id="abc-1")
    assert err.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    assert h.engine.account(h.a1).working_orders == 1


async def test_client_ids_and_engine_ids_never_collide(h):
    """Engine ids have a form client ids may not take (8 characters 0-9a-z, '-', digits), so
    ``{order_id}`` never names two orders. An order without a client id is its own client id
    (found through its order id, not kept in ``_by_client``)."""
    from fastexec.engine.hotpath import is_engine_id

    plain = await _resting_buy(h)
    assert plain.client_order_id == plain.order_id and is_engine_id(plain.order_id)
    assert all(plain.order_id not in d for d in h.engine._by_client)
    seq, prefix = h.engine._seq, h.engine._id_prefix
    # an engine id, now or later, and anything of that form (a client id like "strategy-1" too)
    for taken in (plain.order_id, f"{prefix}{seq + 1}", "00000000-1", "zzzzzzzz-0", "strategy-1"):
        with pytest.raises(ValidationError) as err:
            await _resting_buy(h, client_order_id=taken)
        assert (err.value.code, err.value.field) == ("RESERVED_CLIENT_ORDER_ID", "client_order_id")
    assert h.engine._seq == seq  # refused before an id was drawn
    # near misses are ordinary client ids
    near = ["strat-1", "strategy-x1", "Mws6cffq-1", "mws6cffq-1a", "mws6cffq_1", "mws6cffqx-1", "mws6cff-1"]
    views = [await _resting_buy(h, client_order_id=c) for c in near]
    named = views[0]
    assert h.engine._by_client[h.engine._accounts[h.a1]]["strat-1"].order_id == named.order_id
    assert h.engine.get_order("strat-1").order_id == named.order_id
    assert h.engine.get_order(named.order_id).client_order_id == "strat-1"
    assert h.engine.account(h.a1).working_orders == 1 + len(near)
    for v in (plain, named):  # each found by its client id when the broker answers
        assert (await h.engine.cancel(v.client_order_id)).status == "cancelled"


async def test_client_ids_are_unique_per_account(h):
    """The same client id in two accounts: two orders, each found in its own account;
    by client id alone (every account) the id is ambiguous and the engine id is needed."""
    v1 = await _resting_buy(h, client_order_id="dup-1")
    v2 = await h.engine.submit(OrderSpec(h.a2, "EUR_USD", "buy", 1000, type="limit", price=px("1.09500"),
                                         client_order_id="dup-1"))
    assert v1.order_id != v2.order_id and (v1.account_id, v2.account_id) == (h.a1, h.a2)
    with pytest.raises(ConflictError) as err:  # still unique within an account
        await _resting_buy(h, client_order_id="dup-1")
    assert err.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    assert h.engine.find_order_id("dup-1", frozenset({h.a1})) == v1.order_id
    assert h.engine.find_order_id("dup-1", frozenset({h.a2})) == v2.order_id
    with pytest.raises(NotFoundError):  # an engine id of another account is not found either
        h.engine.find_order_id(v2.order_id, frozenset({h.a1}))
    with pytest.raises(ConflictError) as err:
        h.engine.get_order("dup-1")
    assert err.value.code == "AMBIGUOUS_ORDER_ID"
    # the venue keeps them apart too: each cancel reaches its own order
    assert (await h.engine.cancel(v2.order_id)).status == "cancelled"
    assert h.engine.get_order(v1.order_id).status == "working"
    assert h.engine.find_order_id("dup-1", frozenset({h.a2})) == v2.order_id  # finished orders stay readable


async def test_modify_refused_by_the_broker_leaves_the_working_order_as_it_was(h):
    view = await _resting_buy(h, client_order_id="gslo-1")
    h.venue.accounts[h.a1].gslo_mode = "DISABLED"  # this account may not use guaranteed stops
    from fastexec.errors import BrokerRejectedError

    with pytest.raises(BrokerRejectedError) as err:
        await h.engine.modify(view.order_id, price=px("1.09600"),
                              stop_loss=ExitSpec(price=px("1.09000"), guaranteed=True))
    assert err.value.code == "STOP_LOSS_ON_FILL_GUARANTEED_NOT_ALLOWED"
    same = h.engine.get_order(view.order_id)
    assert same.status == "working"
    assert (same.price, same.stop_loss, same.broker_order_id) == (px("1.09500"), None, view.broker_order_id)
    assert [o.id for o in h.venue.accounts[h.a1].pending.values()] == [int(view.broker_order_id)]
    # and it still works normally afterwards
    assert (await h.engine.modify(view.order_id, price=px("1.09600"))).price == px("1.09600")
    assert (await h.engine.cancel("gslo-1")).status == "cancelled"


# ---------------------------------------------------------------------------------------------
# Races of modify (a v20 replace: the old order is cancelled and a replacement created under a
# new broker id) with fills and cancels, and of close with fills, over the OANDA adapter and the
# v20 simulator on loopback.
# After each: the engine's working orders are the venue's pending ones, its positions the
# venue's, the core store's pending units those of the venue's pending orders, each client id
# was created once, and no fill was refused by the order bookkeeping.

import asyncio
import logging
from contextlib import asynccontextmanager

from fastexec.brokers.oanda import OandaBroker, OandaConfig, OandaTimeouts
from fastexec.config import Settings
from fastexec.sim.faults import FaultConfig
from fastexec.sim.testing import SimServer, wait_for
from fastexec.sim.venue import Order as VenueOrder

PIP = px("0.00010")


@asynccontextmanager
async def _oanda(seed):
    async with SimServer(seed=seed, accounts=1, faults=FaultConfig(seed=seed, heartbeat=0.25)) as sim:
        cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                          stream_url=sim.stream_url, resolve_window_s=2.0, backoff_base_s=0.01, backoff_max_s=0.1,
                          stream_backoff_base_s=0.02, stream_backoff_max_s=0.2,
                          timeouts=OandaTimeouts(connect=2.0, order=1.0, read=1.0, cancel=1.0, stream_heartbeat=0.8))
        engine = Engine(Settings(max_orders_per_second=1000), OandaBroker(cfg))
        await engine.start()
        try:
            yield sim, engine, engine.account_ids[0]
        finally:
            await engine.stop()


def _hold_next(sim, path, hold, *, apply_late=False):
    """The venue's answer to the next PUT on ``path`` comes ``hold`` s late; the request is
    applied before the hold (the stream shows its outcome first), or after it."""
    f = sim.faults
    f.fault_methods, f.fault_path = ("PUT",), path
    f.timeout_next, f.hold, f.timeout_applies, f.timeout_apply_late = 1, hold, True, apply_late


async def _caught_up(sim, engine, a):
    """The transaction stream has delivered everything the venue did."""
    last = sim.venue.accounts[a].last_id
    await wait_for(lambda: engine.broker.delivered_txn_id(a) >= last)
    await engine.settle()


def _agrees_with_the_venue(sim, engine, a, order_ids, caplog, instrument="EUR_USD"):
    acct = sim.venue.accounts[a]
    pending = [o for o in acct.pending.values() if o.reason in ("CLIENT_ORDER", "REPLACEMENT")]
    assert engine.account(a).working_orders == len(pending)
    venue_units = sum(p.units for p in acct.positions.values() if p.inst.name == instrument)
    assert engine.position(a, instrument).units == venue_units
    ai, ii = engine._accounts[a], engine._inst[instrument].index
    assert engine._store.pending_units(ai, ii) == (sum(o.units for o in pending if o.units > 0),
                                                   -sum(o.units for o in pending if o.units < 0))
    for oid in order_ids:
        v = engine.get_order(oid)
        mine = [o for o in acct.orders.values() if o.client_id == v.client_order_id]
        assert v.filled_units == sum(abs(o.fill_units) for o in mine if o.state == "FILLED")
        assert v.is_open == any(o.state == "PENDING" for o in mine)
        if v.is_open:  # the view's terms are the store's
            assert abs(v.units) - v.filled_units == sum(abs(o.units) for o in mine if o.state == "PENDING")
        creates = [t for t in acct.txns if isinstance(t.p, VenueOrder) and t.p.reason == "CLIENT_ORDER"
                   and t.p.client_id == v.client_order_id]
        assert len(creates) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def _working_limit(sim, engine, a, cid, units=1000):
    bid, ask, _ = sim.venue.price("EUR_USD")
    view = await engine.submit(OrderSpec(a, "EUR_USD", "buy", units, type="limit", price=bid - 20 * PIP,
                                         client_order_id=cid))
    assert view.status == "working"
    await _caught_up(sim, engine, a)
    return view, bid, ask


def _puts(sim):
    return sum(1 for r in sim.stats.requests if r.method == "PUT" and "/orders/" in r.path)


@pytest.mark.parametrize("stream_first", [False, True], ids=["fill-in-the-answer", "fill-on-the-stream-first"])
async def test_modify_raising_units_whose_replacement_fills_at_once_ends_filled(stream_first, caplog):
    """The replace answer (or the stream, ahead of a held answer) carries the replacement's
    fill of 1500: the store has the new units before that fill, so the order ends filled."""
    async with _oanda(seed=21) as (sim, engine, a):
        view, bid, ask = await _working_limit(sim, engine, a, "up-1")
        puts = _puts(sim)
        if stream_first:
            _hold_next(sim, "/orders/", 0.3)
        done = await engine.modify(view.order_id, price=ask + 5 * PIP, units=1500)
        assert (done.status, done.units, done.filled_units) == ("filled", 1500, 1500)
        assert done.broker_order_id != view.broker_order_id
        await _caught_up(sim, engine, a)
        assert _puts(sim) - puts == 1
        assert engine.get_order(view.order_id).status == "filled"
        assert engine.position(a, "EUR_USD").units == 1500
        _agrees_with_the_venue(sim, engine, a, [view.order_id], caplog)


@pytest.mark.parametrize("stream_first", [False, True], ids=["fill-in-the-answer", "fill-on-the-stream-first"])
async def test_modify_lowering_units_whose_replacement_fills_at_once_ends_filled(stream_first, caplog):
    """Lowered to 600 and filled at once: no raw store error escapes modify and the order
    does not stay pending_replace."""
    async with _oanda(seed=22) as (sim, engine, a):
        view, bid, ask = await _working_limit(sim, engine, a, "down-1")
        if stream_first:
            _hold_next(sim, "/orders/", 0.3)
        done = await engine.modify(view.order_id, price=ask + 5 * PIP, units=600)
        assert (done.status, done.units, done.filled_units) == ("filled", 600, 600)
        await _caught_up(sim, engine, a)
        assert engine.position(a, "EUR_USD").units == 600
        _agrees_with_the_venue(sim, engine, a, [view.order_id], caplog)


async def test_cancel_during_modify_keeps_store_and_view_in_agreement(caplog):
    """A cancel sent while a modify (1000 -> 1500) is in flight, the venue having applied it
    with its answer held and the stream not showing the replacement yet: the cancel waits for
    the replace and cancels the replacement. Store and view agree (1500 while working), and
    the replacement's price being reached afterwards fills nothing."""
    async with _oanda(seed=33) as (sim, engine, a):
        view, bid, ask = await _working_limit(sim, engine, a, "mc-1")
        _hold_next(sim, "/orders/", 0.6)
        sim.faults.stream_skip_next = 2  # the replaced order's cancel and the replacement's create
        seen = []
        engine.subscribe(lambda e: seen.append((e.kind, e.data.status, e.data.units))
                         if e.order_id == view.order_id else None)
        modify = asyncio.create_task(engine.modify(view.order_id, price=bid - 30 * PIP, units=1500))
        await asyncio.sleep(0.05)
        cancelled = await engine.cancel(view.order_id)
        modified = await modify
        assert (modified.units, modified.broker_order_id) == (1500, cancelled.broker_order_id)
        assert ("order_modified", "working", 1500) in seen
        assert (cancelled.status, cancelled.units) == ("cancelled", 1500)
        assert cancelled.broker_order_id != view.broker_order_id  # the replacement was cancelled
        await _caught_up(sim, engine, a)
        _agrees_with_the_venue(sim, engine, a, [view.order_id], caplog)
        sim.venue.set_price("EUR_USD", bid - 35 * PIP, ask - 35 * PIP)
        await asyncio.sleep(0.3)
        await _caught_up(sim, engine, a)
        assert engine.get_order(view.order_id).status == "cancelled"
        assert engine.position(a, "EUR_USD").units == 0
        _agrees_with_the_venue(sim, engine, a, [view.order_id], caplog)


async def test_modify_that_lost_to_a_fill_is_409(caplog):
    """The old order fills before the replace reaches the venue, which refuses it: modify is a
    409 ORDER_NOT_MODIFIABLE, emits no order_modified, and the order ends filled with its own
    units and terms."""
    async with _oanda(seed=24) as (sim, engine, a):
        view, bid, ask = await _working_limit(sim, engine, a, "lost-1")
        _hold_next(sim, "/orders/", 0.3, apply_late=True)
        kinds = []
        engine.subscribe(lambda e: kinds.append(e.kind) if e.order_id == view.order_id else None)
        modify = asyncio.create_task(engine.modify(view.order_id, price=bid - 30 * PIP))
        await asyncio.sleep(0.1)
        sim.venue.set_price("EUR_USD", bid - 25 * PIP, ask - 25 * PIP)  # the old order fills
        with pytest.raises(ConflictError) as err:
            await modify
        assert err.value.code == "ORDER_NOT_MODIFIABLE" and err.value.http_status == 409
        assert "status=filled" in err.value.detail
        assert "order_modified" not in kinds and "order_filled" in kinds
        await _caught_up(sim, engine, a)
        done = engine.get_order(view.order_id)
        assert (done.status, done.filled_units, done.price, done.broker_order_id) == (
            "filled", 1000, view.price, view.broker_order_id)
        _agrees_with_the_venue(sim, engine, a, [view.order_id], caplog)


async def test_a_second_modify_while_the_replacement_is_already_on_the_stream_is_409(caplog):
    """The stream shows the first modify's replacement (so the order is working again) while
    that modify's answer is still held: a second modify is refused, one replace is sent."""
    async with _oanda(seed=31) as (sim, engine, a):
        view, bid, ask = await _working_limit(sim, engine, a, "twice-1")
        puts = _puts(sim)
        _hold_next(sim, "/orders/", 0.4)
        first = asyncio.create_task(engine.modify(view.order_id, price=bid - 30 * PIP))
        replaced = lambda: engine.get_order(view.order_id).broker_order_id != view.broker_order_id  # noqa: E731
        await wait_for(replaced)
        with pytest.raises(ConflictError) as err:
            await engine.modify(view.order_id, price=bid - 40 * PIP)
        assert err.value.code == "ORDER_NOT_MODIFIABLE"
        assert (await first).price == bid - 30 * PIP
        assert _puts(sim) - puts == 1
        await _caught_up(sim, engine, a)
        _agrees_with_the_venue(sim, engine, a, [view.order_id], caplog)


async def test_close_of_n_units_sends_n_not_all_when_a_fill_lands_meanwhile(caplog):
    """Long 1000 with a buy LIMIT 500 working; close_position(units=1000) is held at the venue
    while the LIMIT fills: the venue closes 1000 (longUnits "1000", not "ALL"), 500 stay."""
    async with _oanda(seed=62) as (sim, engine, a):
        await engine.submit(OrderSpec(a, "EUR_USD", "buy", 1000, client_order_id="pos-1"))
        limit, bid, ask = await _working_limit(sim, engine, a, "w-1", units=500)
        f = sim.faults
        f.fault_methods, f.fault_path = ("PUT",), "/close"
        f.timeout_next, f.hold, f.timeout_applies, f.timeout_apply_late = 1, 0.3, True, True
        close = asyncio.create_task(engine.close_position(a, "EUR_USD", units=1000))
        await asyncio.sleep(0.1)
        sim.venue.set_price("EUR_USD", bid - 25 * PIP, ask - 25 * PIP)  # the LIMIT fills
        await close
        await _caught_up(sim, engine, a)
        acct = sim.venue.accounts[a]
        last_fill = [t for t in acct.txns if t.type == "ORDER_FILL"][-1]
        assert last_fill.p.units == -1000
        assert engine.get_order(limit.order_id).status == "filled"
        assert engine.position(a, "EUR_USD").units == 500
        assert sum(1 for r in sim.stats.requests if r.path.endswith("/close")) == 1
        _agrees_with_the_venue(sim, engine, a, [limit.order_id], caplog)


async def test_in_process_modify_whose_replacement_fills_at_once_ends_filled(h):
    """The same over the in-process venue, whose events come while the replace runs."""
    view = await _resting_buy(h)
    done = await h.engine.modify(view.order_id, price=px("1.10100"), units=1500)
    assert (done.status, done.units, done.filled_units) == ("filled", 1500, 1500)
    assert h.engine.position(h.a1, "EUR_USD").units == 1500
    assert h.engine.account(h.a1).working_orders == 0
    assert h.engine._store.pending_units(h.engine._accounts[h.a1], h.engine._inst["EUR_USD"].index) == (0, 0)


class ReplacementFillFirstBroker(SimulatedBroker):
    """The in-process venue, with a replace's OrderReplaced delivered after the replacement's
    fill (a lagging stream replayed out of order): the fill names a broker id the engine has
    not seen yet."""

    async def replace(self, account_id, broker_order_id, request):
        from fastexec.brokers.base import OrderReplaced

        events = await super().replace(account_id, broker_order_id, request)
        return [e for e in events if type(e) is not OrderReplaced] + [e for e in events if type(e) is OrderReplaced]


@pytest.mark.parametrize("units", [1500, 600])
async def test_a_replacement_fill_that_overtakes_its_order_replaced_ends_filled(units, caplog):
    clock = FakeClock()
    venue = Venue(seed=3, accounts=1, clock=clock)
    engine = Engine(make_settings(), ReplacementFillFirstBroker(venue), clock=clock)
    await engine.start()
    try:
        a = engine.account_ids[0]
        venue.set_price("EUR_USD", px("1.10000"), px("1.10010"), clock.now)
        view = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 1000, type="limit", price=px("1.09500")))
        done = await engine.modify(view.order_id, price=px("1.10100"), units=units)
        assert (done.status, done.units, done.filled_units) == ("filled", units, units)
        assert done.broker_order_id != view.broker_order_id
        assert engine.position(a, "EUR_USD").units == units
        assert engine.account(a).working_orders == 0
        assert engine._store.pending_units(engine._accounts[a], engine._inst["EUR_USD"].index) == (0, 0)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    finally:
        await engine.stop()
