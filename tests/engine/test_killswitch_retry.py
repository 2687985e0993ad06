"""Kill switch against a broker that does not take the cancel: the activation
says which cancels failed, and the engine keeps cancelling in the background
(backoff, one task per order) while the switch is active, until the order
ends, the switch is released or the engine stops. Over the OANDA adapter on
the v20 HTTP simulator, with the simulator's fault injection."""
from __future__ import annotations

import asyncio

from fastexec.brokers.oanda import OandaBroker, OandaConfig
from fastexec.config import Settings
from fastexec.engine import Engine, OrderSpec
from fastexec.sim.testing import SimServer, wait_for

from .harness import px


def _cancels(sim) -> list:
    return [r for r in sim.stats.requests if r.method == "PUT" and r.path.endswith("/cancel")]


async def _engine(sim) -> Engine:
    cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                      max_attempts=1, backoff_base_s=0.01, backoff_max_s=0.02)
    engine = Engine(Settings(max_orders_per_second=1000), OandaBroker(cfg))
    engine.kill_retry_base_s = 0.05
    engine.kill_retry_max_s = 0.2
    await engine.start()
    return engine


async def _resting(engine, sim, a):
    bid, _, _ = sim.venue.price("EUR_USD")
    view = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 1000, type="limit", price=bid - px("0.00500"),
                                         client_order_id="rest-1"))
    assert view.status == "working"
    return view


def _fail_cancels(sim, *, times: int = 0, always: bool = False) -> None:
    sim.faults.fault_path = "/cancel"
    sim.faults.fault_methods = ("PUT",)
    sim.faults.error_next = times
    sim.faults.error_rate = 1.0 if always else 0.0


async def test_kill_switch_retries_a_failed_cancel_until_the_order_is_cancelled():
    async with SimServer(seed=11, accounts=1) as sim:
        engine = await _engine(sim)
        try:
            a = engine.account_ids[0]
            order = await _resting(engine, sim, a)
            _fail_cancels(sim, times=2)  # the activation's cancel and the first retry fail
            view = await engine.activate_kill_switch(a, reason="outage drill", actor="ops")
            assert view.active
            assert view.cancelled_orders == () and view.cancel_failed == (order.order_id,)
            assert view.to_dict()["cancel_failed"] == [order.order_id]
            # still working right after activation: the caller is told, not misled
            assert engine.get_order(order.order_id).status == "working"
            assert len(sim.venue.accounts[a].pending) == 1
            assert engine.kill_switch(a).cancel_failed == (order.order_id,)
            ks = engine.health()["kill_switch"]
            assert ks["cancels_retrying"] == 1 and ks["retrying_orders"] == [order.order_id]

            await wait_for(lambda: engine.get_order(order.order_id).status == "cancelled")
            done = engine.get_order(order.order_id)
            assert done.reject_reason == "KILL_SWITCH"
            assert sim.venue.accounts[a].pending == {}
            assert [r.fault for r in _cancels(sim)] == ["5xx", "5xx", None]
            assert engine.health()["kill_switch"] == {"cancels_retrying": 0, "retrying_orders": [],
                                                      "cancel_failures": 2}
            assert engine.kill_switch(a).cancel_failed == ()
            assert engine.account(a).working_orders == 0
        finally:
            await engine.stop()


async def test_kill_switch_stops_retrying_once_released():
    async with SimServer(seed=12, accounts=1) as sim:
        engine = await _engine(sim)
        try:
            a = engine.account_ids[0]
            order = await _resting(engine, sim, a)
            _fail_cancels(sim, always=True)
            view = await engine.activate_kill_switch(a, reason="outage", actor="ops")
            assert view.cancel_failed == (order.order_id,)
            await wait_for(lambda: len(_cancels(sim)) >= 3)  # activation plus retries
            await engine.release_kill_switch(a, actor="ops")
            await wait_for(lambda: engine.health()["kill_switch"]["cancels_retrying"] == 0, timeout=2)
            sent = len(_cancels(sim))
            await asyncio.sleep(0.5)  # several backoff periods
            assert len(_cancels(sim)) == sent
            assert engine.get_order(order.order_id).status == "working"  # released: the order is the caller's again
        finally:
            await engine.stop()


async def test_kill_switch_retry_ends_an_order_filled_before_its_cancel_got_through():
    async with SimServer(seed=13, accounts=1) as sim:
        engine = await _engine(sim)
        try:
            a = engine.account_ids[0]
            order = await _resting(engine, sim, a)
            _fail_cancels(sim, times=1)
            # the stream does not tell the engine of the fill: only the refused cancel can
            sim.faults.heartbeat = 3600.0
            sim.faults.stream_skip_next = 10**9
            engine.kill_retry_base_s = 0.3
            view = await engine.activate_kill_switch(a, reason="outage", actor="ops")
            assert view.cancel_failed == (order.order_id,)
            limit = order.price
            sim.venue.set_price("EUR_USD", limit - px("0.00010"), limit)  # the venue fills the limit
            assert sim.venue.accounts[a].pending == {}
            await wait_for(lambda: engine.get_order(order.order_id).status != "working")
            done = engine.get_order(order.order_id)
            assert done.status == "filled" and done.filled_units == 1000
            assert engine.position(a, "EUR_USD").units == 1000
            await wait_for(lambda: engine.health()["kill_switch"]["cancels_retrying"] == 0, timeout=2)
            sent = len(_cancels(sim))
            await asyncio.sleep(0.4)
            assert len(_cancels(sim)) == sent  # nothing left to cancel
        finally:
            await engine.stop()


async def test_engine_stop_cancels_the_retries():
    async with SimServer(seed=14, accounts=1) as sim:
        engine = await _engine(sim)
        a = engine.account_ids[0]
        await _resting(engine, sim, a)
        _fail_cancels(sim, always=True)
        await engine.activate_kill_switch(a, reason="outage", actor="ops")
        assert engine.health()["kill_switch"]["cancels_retrying"] == 1
        await asyncio.wait_for(engine.stop(), timeout=5)
        left = [t for t in asyncio.all_tasks() if "_retry_kill_cancel" in repr(t.get_coro())]
        assert left == []
