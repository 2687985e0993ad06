"""A journaled engine restarts on the venue its previous process traded on.
The engine loads positions and balance from the broker at start, and the
account's last transaction id then is its watermark. Resolving one order
after the restart reads the transactions just before that order's fill
(a refused cancel, a lost submit). That must not book the previous
process's fills a second time: afterwards the engine's positions and
balance, and the journal's, equal the venue's."""
from __future__ import annotations

import pytest

from fastexec.brokers.oanda import OandaBroker, OandaConfig
from fastexec.engine.types import OrderSpec
from fastexec.errors import ConflictError
from fastexec.journal.integration import JournaledEngine
from fastexec.sim.testing import LosingBroker, SimServer, wait_for
from fastexec.sim.venue import Venue

from . import restart

PIP = 10_000_000  # 0.0001 at PRICE_SCALE (1e11)


async def _trade(je, acct: str, n: int = 40) -> None:
    """The previous process's trading: market orders leaving a position and realized P&L."""
    for i in range(n):
        side = "sell" if i % 4 == 3 else "buy"  # the sells close lots and realize P&L
        view = await je.submit(OrderSpec(acct, "EUR_USD", side, 100, client_order_id=f"before-{i}"))
        assert view.status == "filled"


def _venue_units(venue: Venue, acct: str) -> int:
    return sum(p.units for p in venue.accounts[acct].positions.values() if p.inst.name == "EUR_USD")


async def _assert_books_equal_the_venues(je, venue: Venue, acct: str) -> None:
    units, balance = _venue_units(venue, acct), venue.accounts[acct].balance
    assert je.position(acct, "EUR_USD").units == units
    assert je.account(acct).balance == balance
    await je.journal_barrier()
    assert je.journal.state.position(acct, "EUR_USD") == units
    assert je.journal.state.balances[acct] == balance


async def _start_over(sim: SimServer, path) -> JournaledEngine:
    cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                      backoff_base_s=0.01, backoff_max_s=0.02)
    je = JournaledEngine(restart.settings(), OandaBroker(cfg), journal_dir=str(path))
    await je.start()
    return je


async def test_journaled_restart_then_refused_cancel_does_not_book_old_fills_again(tmp_path):
    async with SimServer(seed=13, accounts=1) as sim:
        venue, acct = sim.venue, sim.account_ids[0]
        va = venue.accounts[acct]
        je = await _start_over(sim, tmp_path)
        await _trade(je, acct)
        await je.journal_barrier()
        await restart.crash(je)

        je2 = await _start_over(sim, tmp_path)
        try:
            assert je2.position(acct, "EUR_USD").units == _venue_units(venue, acct) == 2000
            await _assert_books_equal_the_venues(je2, venue, acct)
            bid, _, _ = venue.price("EUR_USD")
            limit = await je2.submit(OrderSpec(acct, "EUR_USD", "buy", 1000, type="limit", price=bid - 20 * PIP,
                                               client_order_id="after-restart"))
            assert limit.status == "working"
            await wait_for(lambda: je2.broker.delivered_txn_id(acct) == va.last_id)
            sim.faults.stream_skip_next = 1  # the fill's stream line is lost: the engine learns of it by asking
            venue.set_price("EUR_USD", bid - 25 * PIP, bid - 24 * PIP)
            (order,) = [o for o in va.orders.values() if o.client_id == "after-restart"]
            assert order.state == "FILLED" and order.fill_txn - 64 < 2 * 40  # the lookback reaches the history
            with pytest.raises(ConflictError):  # the venue refuses the cancel; the order is looked up
                await je2.cancel(limit.order_id)
            assert je2.get_order(limit.order_id).status == "filled"
            await _assert_books_equal_the_venues(je2, venue, acct)
            assert je2.position(acct, "EUR_USD").units == 3000
            await wait_for(lambda: je2.broker.delivered_txn_id(acct) == va.last_id)  # the gap replayed: no change
            await je2.settle()
            await _assert_books_equal_the_venues(je2, venue, acct)
        finally:
            await je2.stop()


async def test_journaled_restart_then_lost_submit_does_not_book_old_fills_again(tmp_path):
    venue = Venue(seed=15, accounts=1, balance="100000")
    je = await restart.start(venue, tmp_path)
    acct = je.account_ids[0]
    await _trade(je, acct)
    await je.journal_barrier()
    await restart.crash(je)

    broker = LosingBroker(venue)
    je2 = await restart.start(venue, tmp_path, broker)
    try:
        await _assert_books_equal_the_venues(je2, venue, acct)
        broker.lose = 1
        view = await je2.submit(OrderSpec(acct, "EUR_USD", "buy", 500, client_order_id="lost"))
        assert view.status == "filled" and view.filled_units == 500  # found by client id, its fill booked once
        await _assert_books_equal_the_venues(je2, venue, acct)
        assert je2.position(acct, "EUR_USD").units == 2500
    finally:
        await je2.stop()
