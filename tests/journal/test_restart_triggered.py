"""A restart after an emulated stop-limit triggered: its LIMIT child is a
broker order under the order's client id. It must come back as that broker
order under the same engine id (listed, cancellable, cancelled by the kill
switch), and a child whose send was never confirmed is looked up by client
id, never sent a second time."""
from __future__ import annotations

import asyncio

from fastexec.brokers.oanda import OandaBroker, OandaConfig, OandaTimeouts
from fastexec.config import Settings
from fastexec.engine.types import OrderSpec
from fastexec.journal.integration import JournaledEngine
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.testing import SimServer, wait_for
from fastexec.sim.venue import Venue

from .history import journal_orders

PIP = 10_000_000  # 0.0001 at PRICE_SCALE (1e11)


def settings() -> Settings:
    return Settings.from_env({"MAX_ORDERS_PER_SECOND": "10000"}, dotenv=False)


def _stop_limit(acct, cid, stop):
    """A buy that triggers at ``stop`` and then rests as a LIMIT 100 pips below it."""
    return OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000, type="stop_limit",
                     stop_price=stop, price=stop - 100 * PIP, client_order_id=cid)


def _created(venue, acct, cid) -> list:
    return [o for o in venue.accounts[acct].orders.values() if o.client_id == cid]


async def test_restart_adopts_triggered_stop_limit_resting_at_broker(tmp_path):
    venue = Venue(seed=3, accounts=1, balance="100000")
    je = JournaledEngine(settings(), SimulatedBroker(venue), journal_dir=str(tmp_path))
    await je.start()
    acct = je.account_ids[0]
    _, ask, _ = venue.price("EUR_USD")
    stop = ask + 20 * PIP
    view = await je.submit(_stop_limit(acct, "sl-1", stop))
    assert view.status == "waiting"
    venue.set_price("EUR_USD", stop - PIP, stop)  # triggers; the LIMIT below the market rests
    await je.settle()
    await je.journal_barrier()
    child = je.get_order(view.order_id)
    assert child.status == "working" and child.broker_order_id is not None
    je.journal.abandon()  # crash
    await je.engine.broker.stop()

    je2 = JournaledEngine(settings(), SimulatedBroker(venue), journal_dir=str(tmp_path))
    await je2.start()
    try:
        assert je2.restored["orders_adopted"] == 1 and je2.restored["orders_not_restored"] == 0
        assert je2.restored["emulated_rearmed"] == 0
        back = je2.get_order(view.order_id)  # the same engine id, as the working broker order it is
        assert (back.order_id, back.client_order_id, back.status) == (view.order_id, "sl-1", "working")
        assert back.broker_order_id == child.broker_order_id and back.type == "stop_limit"
        assert [o.order_id for o in je2.list_orders(acct, status="open")] == [view.order_id]
        ks = await je2.activate_kill_switch(acct, reason="after restart", actor="ops")
        assert ks.cancelled_orders == (view.order_id,)
        assert venue.accounts[acct].pending == {}
        assert journal_orders(je2.journal_dir)[view.order_id]["status"] == "cancelled"
        assert len(_created(venue, acct, "sl-1")) == 1
    finally:
        await je2.stop()


async def test_restart_resolves_a_triggered_order_whose_send_was_not_confirmed_by_client_id(tmp_path):
    async with SimServer(seed=4, accounts=1) as sim:
        cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                          timeouts=OandaTimeouts(connect=2.0, order=0.3, read=0.5, cancel=0.5),
                          max_attempts=1, backoff_base_s=0.01, backoff_max_s=0.02, resolve_window_s=0.2)
        je = JournaledEngine(settings(), OandaBroker(cfg), journal_dir=str(tmp_path))
        await je.start()
        acct = je.account_ids[0]
        _, ask, _ = sim.venue.price("EUR_USD")
        stop = ask + 20 * PIP
        view = await je.submit(_stop_limit(acct, "sl-2", stop))
        # the child reaches the venue but its answer is lost, every lookup fails, and the
        # stream says nothing: the journal holds the trigger and nothing after it
        sim.faults.heartbeat = 3600.0
        sim.faults.stream_skip_next = 10**9
        sim.faults.fault_path = "/orders"
        sim.faults.fault_methods = ("POST", "GET")
        sim.faults.hold = 3.0
        sim.faults.timeout_next = 1  # applied at once, the answer held past the adapter's timeout
        sim.venue.set_price("EUR_USD", stop - PIP, stop)
        await wait_for(lambda: _created(sim.venue, acct, "sl-2"))
        sim.faults.error_rate = 1.0
        await wait_for(lambda: je.get_order(view.order_id).status == "pending")
        await je.journal_barrier()
        assert je.journal.state.orders[view.order_id]["status"] == "emulated"  # triggered, send unconfirmed
        je.journal.abandon()  # crash
        je.engine._timer.cancel()  # the dead process's housekeeping does not run on either
        await je.engine.broker.stop()

        sim.faults.error_rate = 0.0
        sim.faults.stream_skip_next = 0
        je2 = JournaledEngine(settings(), OandaBroker(cfg), journal_dir=str(tmp_path))
        await je2.start()
        try:
            assert je2.restored["orders_adopted"] == 1 and je2.restored["emulated_rearmed"] == 0
            back = je2.get_order("sl-2")
            assert back.order_id == view.order_id and back.status == "working"
            await asyncio.sleep(0.3)  # the market is still through the stop: nothing fires again
            assert len(_created(sim.venue, acct, "sl-2")) == 1  # sent once
            assert (await je2.cancel(view.order_id)).status == "cancelled"
            assert sim.venue.accounts[acct].pending == {}
        finally:
            await je2.stop()
