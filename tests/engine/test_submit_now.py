"""The synchronous send (``EngineCore._send_now`` and a broker's
``submit_now``): an order a broker answers at once goes the same way as one
it answers through ``submit``: same views, same journal, same outcome when
the broker fails, and never sent twice."""
from __future__ import annotations

import pytest

from fastexec.brokers.base import BrokerError
from fastexec.engine import Engine, ListJournal, OrderSpec
from fastexec.errors import BrokerUnavailableError
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

from .harness import FakeClock, make_settings


class CoroutineOnly(SimulatedBroker):
    """The simulated venue answering through ``submit`` only (an overridden
    ``submit`` turns ``submit_now`` off)."""

    calls = 0

    async def submit(self, request):
        self.calls += 1
        return await super().submit(request)


class CountingNow(SimulatedBroker):
    calls = 0

    def submit_now(self, request):
        self.calls += 1
        return super().submit_now(request)


class FailingNow(SimulatedBroker):
    """``submit_now`` fails without an answer (the order may or may not exist)."""

    def submit_now(self, request):
        raise BrokerError("connection reset", status=None)


class FailingSubmit(SimulatedBroker):
    async def submit(self, request):
        raise BrokerError("connection reset", status=None)


def _strip(view):
    return view._replace(timings=None)


async def _run(broker_cls, specs):
    clock = FakeClock()
    venue = Venue(seed=5, accounts=1, clock=clock)
    broker = broker_cls(venue)
    journal = ListJournal()
    engine = Engine(make_settings(), broker, clock=clock, journal=journal)
    await engine.start()
    a = engine.account_ids[0]
    out = []
    try:
        for side, units, kw in specs:
            try:
                out.append(_strip(await engine.submit(OrderSpec(a, "EUR_USD", side, units, **kw))))
            except BrokerUnavailableError as exc:
                out.append((exc.code, exc.detail))
            clock.advance(1000)
        out.append(engine.position(a, "EUR_USD"))
        out.append([o for o in engine.list_orders()])
    finally:
        await engine.stop()
    return out, [{k: v for k, v in r.items() if k != "ts"} for r in journal.records], broker


SPECS = [("buy", 1000, {}), ("sell", 400, {"client_order_id": "c-1"}), ("sell", 600, {}),
         ("buy", 50, {"type": "limit", "price": 1_000_000_000})]


async def test_submit_now_answers_as_submit_does():
    now, now_journal, b1 = await _run(CountingNow, SPECS)
    ref, ref_journal, b2 = await _run(CoroutineOnly, SPECS)
    assert b1.calls == len(SPECS) and b2.calls == len(SPECS)  # each order offered once to the path under test
    assert SimulatedBroker.submit_now is not None and CoroutineOnly.submit_now is None
    assert [_timeless(x) for x in now] == [_timeless(x) for x in ref]
    assert now_journal == ref_journal


def _timeless(x):
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


async def test_a_failing_submit_now_is_resolved_like_a_failing_submit():
    specs = [("buy", 1000, {"client_order_id": "lost"})]
    now, now_journal, _ = await _run(FailingNow, specs)
    ref, ref_journal, _ = await _run(FailingSubmit, specs)
    assert now[0][0] == "BROKER_UNAVAILABLE" and "status=pending" in now[0][1]
    assert [_timeless(x) for x in now] == [_timeless(x) for x in ref]
    assert now_journal == ref_journal


@pytest.mark.parametrize("fast", [True, False])
async def test_a_venue_without_the_fast_path_gets_the_order_through_submit(fast):
    clock = FakeClock()
    venue = Venue(seed=5, accounts=1, clock=clock)
    venue.fast_path = fast
    engine = Engine(make_settings(), SimulatedBroker(venue), clock=clock)
    await engine.start()
    try:
        a = engine.account_ids[0]
        view = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 1000))
        assert view.status == "filled"
        assert sum(1 for o in venue.accounts[a].orders.values() if o.client_id == view.client_order_id) == 1
    finally:
        await engine.stop()


async def test_the_debug_line_follows_the_logger_level(caplog):
    """submit logs each order at DEBUG: answered from the logger's cache, it
    must follow level changes made while the engine runs."""
    import logging

    clock = FakeClock()
    engine = Engine(make_settings(), SimulatedBroker(Venue(seed=5, accounts=1, clock=clock)), clock=clock)
    await engine.start()
    try:
        a = engine.account_ids[0]
        lines = lambda: [r for r in caplog.records if r.name == "fastexec.engine" and r.levelno == logging.DEBUG]
        caplog.set_level(logging.INFO, logger="fastexec.engine")
        await engine.submit(OrderSpec(a, "EUR_USD", "buy", 10))
        assert lines() == []
        caplog.set_level(logging.DEBUG, logger="fastexec.engine")
        view = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 10))
        assert [r.getMessage() for r in lines()] == [f"order {view.order_id} filled"]
        logging.getLogger("fastexec.engine").disabled = True
        try:
            await engine.submit(OrderSpec(a, "EUR_USD", "buy", 10))
        finally:
            logging.getLogger("fastexec.engine").disabled = False
        assert len(lines()) == 1
        caplog.set_level(logging.INFO, logger="fastexec.engine")
        await engine.submit(OrderSpec(a, "EUR_USD", "buy", 10))
        assert len(lines()) == 1
    finally:
        await engine.stop()
