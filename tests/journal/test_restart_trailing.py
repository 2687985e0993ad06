"""A trailing stop across a restart: it resumes from the best price it had
journaled, under its own engine id, and fires at once when the market went
through its stop while the engine was down."""
from __future__ import annotations

import asyncio

from fastexec.engine.types import OrderSpec
from fastexec.sim.venue import Venue

from .history import journal_orders
from .restart import crash, start

PIP = 10_000_000  # 0.0001 at PRICE_SCALE (1e11)
P = 100_000  # 1e-6: EUR_USD prices below are written in pips from 1.10000


def px(pips_from_1_1: int) -> int:
    return 110_000_000_000 + pips_from_1_1 * PIP


async def _trailed(venue, path):
    """A trailing sell 50 pips behind, trailed up to a bid of +200 pips: trigger at +150."""
    venue.set_price("EUR_USD", px(0), px(1))
    je = await start(venue, path)
    acct = je.account_ids[0]
    view = await je.submit(OrderSpec(acct, "EUR_USD", "sell", 1000, type="trailing_stop",
                                     trailing_distance=50 * PIP, client_order_id="trail-1"))
    for bid in (50, 120, 200, 170):
        venue.set_price("EUR_USD", px(bid), px(bid + 1))
    assert je.get_order(view.order_id).trigger_price == px(150)
    await asyncio.sleep(0)  # the end of the loop turn: trail moves are written there
    await je.journal_barrier()
    await crash(je)
    return acct, view


async def test_restart_resumes_a_trailing_stop_from_its_journaled_trail(tmp_path):
    venue = Venue(seed=8, accounts=1, balance="100000")
    acct, view = await _trailed(venue, tmp_path)
    venue.set_price("EUR_USD", px(170), px(171))  # down: a restarted trail would sit at +120
    je2 = await start(venue, tmp_path)
    try:
        back = je2.get_order(view.order_id)  # the same engine id
        assert back.status == "waiting" and back.client_order_id == "trail-1"
        assert back.trigger_price == px(150)
        venue.set_price("EUR_USD", px(150), px(151))  # reaches the journaled trigger: fires
        await je2.settle()
        done = je2.get_order(view.order_id)
        assert done.status == "filled" and je2.position(acct, "EUR_USD").units == -1000
    finally:
        await je2.stop()


async def test_restart_fires_a_trailing_stop_the_market_crossed_while_down(tmp_path):
    venue = Venue(seed=9, accounts=1, balance="100000")
    acct, view = await _trailed(venue, tmp_path)
    venue.set_price("EUR_USD", px(-1000), px(-999))  # far through the stop while nobody watched
    je2 = await start(venue, tmp_path)
    try:
        await je2.settle()
        done = je2.get_order(view.order_id)
        assert done.status == "filled" and done.filled_units == 1000
        assert je2.position(acct, "EUR_USD").units == -1000
        await je2.journal_barrier()
        assert journal_orders(je2.journal_dir)[view.order_id]["status"] == "filled"
    finally:
        await je2.stop()


async def test_trail_moves_are_journaled_once_per_loop_turn(tmp_path):
    venue = Venue(seed=10, accounts=1, balance="100000")
    venue.set_price("EUR_USD", px(0), px(1))
    je = await start(venue, tmp_path)
    try:
        acct = je.account_ids[0]
        view = await je.submit(OrderSpec(acct, "EUR_USD", "sell", 1000, type="trailing_stop",
                                         trailing_distance=50 * PIP))
        await asyncio.sleep(0)
        await je.journal_barrier()
        before = je.journal.state.orders[view.order_id]["emulation"]
        assert before == {"best": px(0), "trigger": px(-50)}
        written = je.journal.writer.last_seq
        for bid in range(1, 101):  # 100 ticks in one loop turn, each moving the trail
            venue.set_price("EUR_USD", px(bid), px(bid + 1))
        for bid in (90, 80):  # and back: the trail does not move
            venue.set_price("EUR_USD", px(bid), px(bid + 1))
        await asyncio.sleep(0)
        await je.journal_barrier()
        assert je.journal.writer.last_seq == written + 1
        assert je.journal.state.orders[view.order_id]["emulation"] == {"best": px(100), "trigger": px(50)}
    finally:
        await je.stop()
