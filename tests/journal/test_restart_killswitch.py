"""A restart under an active kill switch: nothing the journal adopts may stay
working at the broker. The first process's cancel never got through (the v20
simulator fails every cancel); the second one adopts the order under its own
id and cancels it, retrying a cancel that fails again."""
from __future__ import annotations

import asyncio

from fastexec.brokers.oanda import OandaBroker, OandaConfig
from fastexec.config import Settings
from fastexec.engine.types import OrderSpec
from fastexec.journal.integration import JournaledEngine
from fastexec.sim.testing import SimServer, wait_for

PIP = 10_000_000  # 0.0001 at PRICE_SCALE (1e11)


async def _start(sim, path) -> JournaledEngine:
    cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                      max_attempts=1, backoff_base_s=0.01, backoff_max_s=0.02)
    je = JournaledEngine(Settings.from_env({"MAX_ORDERS_PER_SECOND": "10000"}, dotenv=False), OandaBroker(cfg),
                         journal_dir=str(path))
    je.engine.kill_retry_base_s = 0.05
    je.engine.kill_retry_max_s = 0.2
    await je.start()
    return je


async def _crash(je: JournaledEngine) -> None:
    """kill -9: the journal's files as they are, no task of the old process runs on."""
    je.journal.abandon()
    for t in asyncio.all_tasks():
        if "_retry_kill_cancel" in repr(t.get_coro()):
            t.cancel()
    await je.engine.broker.stop()


async def test_restart_with_active_kill_switch_cancels_adopted_orders(tmp_path):
    async with SimServer(seed=21, accounts=1) as sim:
        acct = sim.account_ids[0]
        je = await _start(sim, tmp_path)
        bid, _, _ = sim.venue.price("EUR_USD")
        order = await je.submit(OrderSpec(acct, "EUR_USD", "buy", 1000, type="limit", price=bid - 50 * PIP,
                                          client_order_id="w1"))
        assert order.status == "working"
        sim.faults.fault_path = "/cancel"
        sim.faults.fault_methods = ("PUT",)
        sim.faults.error_rate = 1.0  # no cancel gets through to the venue
        ks = await je.activate_kill_switch(acct, reason="outage", actor="ops")
        assert ks.cancel_failed == (order.order_id,)
        await _crash(je)
        assert len(sim.venue.accounts[acct].pending) == 1  # still working at the venue

        sim.faults.error_rate = 0.0
        sim.faults.error_next = 1  # the restart's first cancel fails too: retried
        je2 = await _start(sim, tmp_path)
        try:
            assert je2.restored["kill_switches"] == 1 and je2.restored["orders_adopted"] == 1
            assert je2.kill_switch(acct).active
            assert (je2.kill_switch(acct).reason, je2.kill_switch(acct).actor) == ("outage", "ops")
            assert je2.kill_switch(acct).activated_at == ks.activated_at  # when it was pulled, not the restart
            await wait_for(lambda: je2.get_order(order.order_id).status == "cancelled")
            back = je2.get_order("w1")
            assert back.order_id == order.order_id and back.reject_reason == "KILL_SWITCH"
            assert sim.venue.accounts[acct].pending == {}
            await je2.journal_barrier()
            assert je2.journal.state.orders == {}  # the journal knows it ended
            assert je2.health()["kill_switch"]["cancels_retrying"] == 0
            assert je2.health()["kill_switch"]["cancel_failures"] == 1
        finally:
            await je2.stop()
