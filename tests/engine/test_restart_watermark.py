"""An engine that starts on an account with history loads its positions and
balance from the broker, at one transaction id (the account's watermark).
Fills up to that id are in what it loaded: no path that turns broker
transactions into events may book them again. Those paths are the stream,
the lookup of an order whose cancel was refused or whose submit answer was
lost, and the housekeeping that resolves orders of unknown fate.

Each test makes the history before the engine starts, then resolves one
order after the start, on a path that reads the transactions just before
that order's fill. Positions and balance must equal the venue's afterwards."""
from __future__ import annotations

import asyncio

import pytest

from fastexec.brokers.base import BrokerError, OrderRequest
from fastexec.brokers.oanda import OandaBroker, OandaConfig, OandaTimeouts
from fastexec.config import Settings
from fastexec.engine import Engine, OrderSpec
from fastexec.errors import BrokerUnavailableError, ConflictError
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.testing import LosingBroker, SimServer, wait_for
from fastexec.sim.venue import Venue

from .harness import px


def _settings() -> Settings:
    return Settings(max_orders_per_second=1000)


async def _history(venue: Venue, a: str, n: int = 40) -> None:
    """A previous run's trading on ``a``: market orders that leave a position
    and realized P&L, all within 64 transactions of what comes next."""
    other = SimulatedBroker(venue)
    for i in range(n):
        units = 100 if i % 4 != 3 else -100  # some sells: they close lots and realize P&L
        await other.submit(OrderRequest(client_id=f"before-{i}", account_id=a, instrument="EUR_USD", units=units))


def _venue_units(venue: Venue, a: str, inst: str = "EUR_USD") -> int:
    return sum(p.units for p in venue.accounts[a].positions.values() if p.inst.name == inst)


def _assert_books_equal_the_venues(engine, venue: Venue, a: str) -> None:
    acct = venue.accounts[a]
    assert engine.position(a, "EUR_USD").units == _venue_units(venue, a)
    assert engine.account(a).balance == acct.balance


def _oanda(sim: SimServer, **kw) -> OandaBroker:
    return OandaBroker(OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                                   backoff_base_s=0.01, backoff_max_s=0.02, **kw))


async def test_restart_then_refused_cancel_does_not_book_old_fills_again():
    async with SimServer(seed=13, accounts=1) as sim:
        venue = sim.venue
        a = sim.account_ids[0]
        acct = venue.accounts[a]
        await _history(venue, a)
        engine = Engine(_settings(), _oanda(sim))
        await engine.start()
        try:
            assert engine._seen[a].floor == acct.last_id  # the watermark: what the loaded state includes
            assert engine.position(a, "EUR_USD").units == _venue_units(venue, a) == 2000
            _assert_books_equal_the_venues(engine, venue, a)
            bid, _, _ = venue.price("EUR_USD")
            limit = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 1000, type="limit", price=bid - px("0.00200"),
                                                  client_order_id="after-start"))
            assert limit.status == "working"
            await wait_for(lambda: engine.broker.delivered_txn_id(a) == acct.last_id)
            sim.faults.stream_skip_next = 1  # the fill's stream line is lost: the engine learns of it by asking
            venue.set_price("EUR_USD", bid - px("0.00250"), bid - px("0.00240"))
            (order,) = [o for o in acct.orders.values() if o.client_id == "after-start"]
            assert order.state == "FILLED" and order.fill_txn - 64 < 2 * 40  # the lookback reaches the history
            with pytest.raises(ConflictError):  # the venue refuses the cancel; the order is looked up
                await engine.cancel(limit.order_id)
            assert engine.get_order(limit.order_id).status == "filled"
            _assert_books_equal_the_venues(engine, venue, a)
            assert engine.position(a, "EUR_USD").units == 3000
            # the stream's replay of the gap changes nothing
            await wait_for(lambda: engine.broker.delivered_txn_id(a) == acct.last_id)
            await engine.settle()
            _assert_books_equal_the_venues(engine, venue, a)
        finally:
            await engine.stop()


async def test_a_submit_resolved_by_the_housekeeping_after_a_start_does_not_book_old_fills_again():
    """The submit's answer is lost and every lookup fails until the adapter and
    the engine give up for now: the order stays pending and the housekeeping
    resolves it once the broker answers."""
    async with SimServer(seed=14, accounts=1) as sim:
        venue = sim.venue
        a = sim.account_ids[0]
        acct = venue.accounts[a]
        await _history(venue, a)
        engine = Engine(_settings(), _oanda(sim, timeouts=OandaTimeouts(connect=2.0, order=0.3, read=0.5,
                                                                        cancel=0.5), resolve_window_s=0.3))
        await engine.start()
        try:
            _assert_books_equal_the_venues(engine, venue, a)
            await wait_for(lambda: engine.broker.delivered_txn_id(a) == acct.last_id)
            sim.faults.heartbeat = 3600.0
            sim.faults.stream_skip_next = 10**9  # nor does the stream tell
            sim.faults.hold = 2.0
            sim.faults.fault_methods, sim.faults.fault_path = ("POST",), "/orders"
            sim.faults.timeout_next = 1  # applied, the answer held past the adapter's timeout
            task = asyncio.ensure_future(engine.submit(OrderSpec(a, "EUR_USD", "sell", 300, client_order_id="late")))
            await wait_for(lambda: any(o.client_id == "late" for o in acct.orders.values()))
            sim.faults.fault_methods, sim.faults.fault_path = ("GET",), None
            sim.faults.error_rate = 1.0  # every lookup fails
            with pytest.raises(BrokerUnavailableError):
                await task
            assert engine.get_order("late").status == "pending"
            sim.faults.error_rate = 0.0
            await wait_for(lambda: engine.get_order("late").status != "pending", timeout=10)
            assert engine.get_order("late").status == "filled"
            _assert_books_equal_the_venues(engine, venue, a)
            assert engine.position(a, "EUR_USD").units == 1700
        finally:
            await engine.stop()


async def test_a_lost_submit_after_a_start_on_the_in_process_venue_does_not_book_old_fills_again():
    venue = Venue(seed=15, accounts=1)
    a = next(iter(venue.accounts))
    await _history(venue, a)
    broker = LosingBroker(venue)
    engine = Engine(_settings(), broker)
    await engine.start()
    try:
        assert engine._seen[a].floor == venue.accounts[a].last_id
        _assert_books_equal_the_venues(engine, venue, a)
        broker.lose = 1
        view = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 500, client_order_id="lost"))
        assert view.status == "filled" and view.filled_units == 500  # found by client id, its fill booked once
        _assert_books_equal_the_venues(engine, venue, a)
        assert engine.position(a, "EUR_USD").units == 2500
    finally:
        await engine.stop()


class MovingBroker(SimulatedBroker):
    """Someone else's order fills on the account while the engine reads its
    positions at start (the first read only): its events reach the engine
    during the load, and the positions read include the fill."""

    moved = False

    async def open_positions(self, account_id):
        if not self.moved:
            self.moved = True
            await SimulatedBroker(self.venue).submit(OrderRequest("mid-load", account_id, "EUR_USD", 700))
        return await super().open_positions(account_id)


async def test_a_fill_landing_while_the_engine_loads_an_account_is_counted_once():
    venue = Venue(seed=16, accounts=1)
    a = next(iter(venue.accounts))
    await _history(venue, a, n=8)
    broker = MovingBroker(venue)
    engine = Engine(_settings(), broker)
    await engine.start()
    try:
        assert broker.moved
        assert engine._seen[a].floor == venue.accounts[a].last_id
        _assert_books_equal_the_venues(engine, venue, a)
        assert engine.position(a, "EUR_USD").units == 400 + 700
    finally:
        await engine.stop()


class FlakyLookups(SimulatedBroker):
    """The in-process venue, with lookups by client id that fail (``fail``)."""

    fail = 0

    async def order_by_client_id(self, account_id, client_id):
        if self.fail:
            self.fail -= 1
            raise BrokerError("venue unreachable")
        return await super().order_by_client_id(account_id, client_id)


async def test_an_order_taken_back_after_a_restart_that_filled_before_it_ends_filled_without_booking_again():
    """A journaled order whose submit was never answered (the crash came first)
    is taken back while the venue cannot be asked; it had filled before the
    start, so the positions loaded at start hold its fill. The housekeeping
    finds it filled: the order ends filled, and the fill is not booked again."""
    venue = Venue(seed=17, accounts=1)
    a = next(iter(venue.accounts))
    await _history(venue, a, n=8)
    await SimulatedBroker(venue).submit(OrderRequest("crashed", a, "EUR_USD", 500))
    broker = FlakyLookups(venue)
    engine = Engine(_settings(), broker)
    await engine.start()
    try:
        _assert_books_equal_the_venues(engine, venue, a)
        broker.fail = 1
        view = await engine.adopt_order({"order_id": "crashed-1", "client_order_id": "crashed", "account_id": a,
                                         "instrument": "EUR_USD", "side": "buy", "units": 500,
                                         "order_type": "market", "status": "accepted"})
        assert view.status == "pending"
        await wait_for(lambda: engine.get_order("crashed-1").status != "pending")
        view = engine.get_order("crashed-1")
        assert view.status == "filled" and view.filled_units == 500
        _assert_books_equal_the_venues(engine, venue, a)
        assert engine.position(a, "EUR_USD").units == 900
        assert engine.account(a).working_orders == 0
    finally:
        await engine.stop()
