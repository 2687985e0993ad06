"""The same engine over the OANDA adapter, against the v20 HTTP simulator:
the engine cannot tell the brokers apart, and a submit whose connection drops
after the venue took it is resolved by client id — filled once, never resent."""
from __future__ import annotations

import asyncio

from fastexec.brokers.oanda import OandaBroker, OandaConfig
from fastexec.config import Settings
from fastexec.engine import Engine, OrderSpec
from fastexec.sim.testing import SimServer, wait_for

from .harness import px


async def test_engine_over_the_oanda_adapter():
    async with SimServer(seed=5, accounts=2) as sim:
        cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url)
        engine = Engine(Settings(max_orders_per_second=1000), OandaBroker(cfg))
        await engine.start()
        try:
            a = engine.account_ids[0]
            assert engine.account_ids == sim.account_ids
            bid, ask, _ = sim.venue.price("EUR_USD")

            filled = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 1000))
            assert filled.status == "filled" and filled.average_fill_price == ask

            resting = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 700, type="limit", price=bid - px("0.00500")))
            assert resting.status == "working"
            moved = await engine.modify(resting.order_id, price=bid - px("0.00400"))
            assert moved.order_id == resting.order_id and moved.broker_order_id != resting.broker_order_id

            # the market comes down to the limit: the fill arrives on the transaction stream
            sim.venue.set_price("EUR_USD", bid - px("0.00410"), bid - px("0.00400"))
            await wait_for(lambda: engine.get_order(resting.order_id).status == "filled")
            assert engine.position(a, "EUR_USD").units == 1700

            # the connection drops after the venue applied the order: resolved, not resent
            sim.faults.fault_path = "/orders"
            sim.faults.fault_methods = ("POST",)
            sim.faults.drop_next = 1
            dropped = await engine.submit(OrderSpec(a, "EUR_USD", "sell", 300, client_order_id="once-only"))
            assert dropped.status == "filled" and dropped.filled_units == 300
            acct = sim.venue.accounts[a]
            assert sum(1 for o in acct.orders.values() if o.client_id == "once-only") == 1
            assert engine.position(a, "EUR_USD").units == 1400
            venue_units = sum(p.units for p in acct.positions.values() if p.inst.name == "EUR_USD")
            assert venue_units == 1400

            # a 429: the rate limiter refused it before the venue saw it, so it is sent again, placed once
            sim.faults.error_status = 429
            sim.faults.error_next = 1
            retried = await engine.submit(OrderSpec(a, "EUR_USD", "sell", 200, client_order_id="after-429"))
            assert retried.status == "filled"
            assert sum(1 for o in acct.orders.values() if o.client_id == "after-429") == 1
            assert engine.position(a, "EUR_USD").units == 1200
        finally:
            await engine.stop()


async def test_a_submit_answered_503_after_the_venue_filled_it_is_filled_once():
    """OANDA's order engine filled the order and the answer is a 503 (here the
    venue even takes it only after answering): the engine ends with the order
    filled, with its fill, and the venue holds it once."""
    async with SimServer(seed=5, accounts=1) as sim:
        cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                          resolve_window_s=3.0)
        engine = Engine(Settings(max_orders_per_second=1000), OandaBroker(cfg))
        await engine.start()
        try:
            a = engine.account_ids[0]
            acct = sim.venue.accounts[a]
            _, ask, _ = sim.venue.price("EUR_USD")
            f = sim.faults
            f.fault_path, f.fault_methods = "/orders", ("POST",)
            f.error_status, f.error_applies, f.error_apply_delay, f.error_next = 503, True, 0.3, 1
            view = await engine.submit(OrderSpec(a, "EUR_USD", "buy", 400, client_order_id="applied-503"))
            assert view.status == "filled" and view.filled_units == 400 and view.average_fill_price == ask
            (order,) = [o for o in acct.orders.values() if o.client_id == "applied-503"]
            assert view.broker_order_id == str(order.id)
            assert sum(1 for r in sim.stats.requests if r.method == "POST") == 1
            await asyncio.sleep(0.2)  # anything sent twice would have landed by now
            assert sum(1 for o in acct.orders.values() if o.client_id == "applied-503") == 1
            assert engine.position(a, "EUR_USD").units == 400
            assert sum(p.units for p in acct.positions.values() if p.inst.name == "EUR_USD") == 400
        finally:
            await engine.stop()


async def test_broker_outages_never_place_an_order_twice_and_end_in_a_known_state():
    from fastexec.errors import BrokerUnavailableError
    import pytest

    async with SimServer(seed=6, accounts=1) as sim:
        cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                          max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02, resolve_window_s=1.0)
        engine = Engine(Settings(max_orders_per_second=1000), OandaBroker(cfg))
        engine.unresolved_grace_s = 0.5
        await engine.start()
        try:
            a = engine.account_ids[0]
            acct = sim.venue.accounts[a]
            sim.faults.fault_path = "/orders"
            # every POST answers 503 and lookups through the window find nothing: not placed -> 503 to the caller
            sim.faults.fault_methods = ("POST",)
            sim.faults.error_next = 50
            with pytest.raises(BrokerUnavailableError) as err:
                await engine.submit(OrderSpec(a, "EUR_USD", "buy", 100, client_order_id="refused"))
            assert "NOT_PLACED" in err.value.detail
            assert engine.get_order("refused").status == "rejected"
            assert not any(o.client_id == "refused" for o in acct.orders.values())
            # 502s on the order and on every lookup: the outcome is unknown, the order stays pending
            sim.faults.error_next = 0
            sim.faults.fault_methods = ("POST", "GET")
            sim.faults.error_status = 502
            sim.faults.error_rate = 1.0
            with pytest.raises(BrokerUnavailableError) as err:
                await engine.submit(OrderSpec(a, "EUR_USD", "buy", 100, client_order_id="unknown"))
            assert "status=pending" in err.value.detail
            assert engine.get_order("unknown").status == "pending"
            # the broker comes back with no record of it: after the grace period it is known not placed
            sim.faults.error_rate = 0.0
            await wait_for(lambda: engine.get_order("unknown").status != "pending", timeout=10)
            assert engine.get_order("unknown").status == "rejected"
            assert engine.get_order("unknown").reject_reason == "NOT_PLACED"
            assert not any(o.client_id == "unknown" for o in acct.orders.values())
            assert engine.account(a).working_orders == 0
        finally:
            await engine.stop()


async def test_a_lost_submit_resolved_at_the_start_of_the_venues_history_still_finds_its_fill():
    """The venue keeps a bounded history: just after it forgot its oldest transactions, a
    submit whose connection dropped after the venue filled it is resolved by client id, and
    the fill must be read from what the venue still serves (asking from further back is a
    416, not an empty answer that leaves the order pending for ever)."""
    from fastexec.brokers.base import OrderRequest
    from fastexec.sim import venue as venue_mod
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue

    async with SimServer(venue=Venue(seed=6, history=20)) as sim:
        cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url)
        engine = Engine(Settings(max_orders_per_second=1000), OandaBroker(cfg))
        await engine.start()
        try:
            a = engine.account_ids[0]
            acct = sim.venue.accounts[a]
            other = SimulatedBroker(sim.venue)  # someone else's orders fill the log to the trim point
            i = 0
            while len(acct.txns) - acct.txns.base < 20 + venue_mod.TRIM_BATCH:
                await other.submit(OrderRequest(client_id=f"o-{i}", account_id=a, instrument="EUR_USD",
                                                units=100 if i % 2 == 0 else -100))
                i += 1
            sim.faults.fault_path = "/orders"
            sim.faults.fault_methods = ("POST",)
            sim.faults.drop_next = 1  # the venue applies it, the answer is lost
            dropped = await engine.submit(OrderSpec(a, "EUR_USD", "sell", 300, client_order_id="at-the-edge"))
            (order,) = [o for o in acct.orders.values() if o.client_id == "at-the-edge"]
            assert order.fill_txn - 64 < acct.txns.base < order.fill_txn  # the edge this test is about
            assert dropped.status == "filled" and dropped.filled_units == 300
        finally:
            await engine.stop()


async def test_an_order_resolved_later_at_the_start_of_the_venues_history_still_finds_its_fill():
    """The same edge on the engine's own resolution: the submit timed out after the venue
    filled it, and every lookup failed until the adapter gave up, so the order is left
    pending; when the broker answers again the housekeeping finds it by client id and must
    read its fill from what the venue still serves."""
    from fastexec.brokers.base import OrderRequest
    from fastexec.brokers.oanda import OandaTimeouts
    from fastexec.errors import BrokerUnavailableError
    from fastexec.sim import venue as venue_mod
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue
    import pytest

    async with SimServer(venue=Venue(seed=6, history=20)) as sim:
        cfg = OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                          timeouts=OandaTimeouts(connect=2.0, order=0.3, read=0.5, cancel=0.5),
                          resolve_window_s=0.3, backoff_base_s=0.01, backoff_max_s=0.02)
        engine = Engine(Settings(max_orders_per_second=1000), OandaBroker(cfg))
        await engine.start()
        try:
            a = engine.account_ids[0]
            acct = sim.venue.accounts[a]
            other = SimulatedBroker(sim.venue)
            i = 0
            while len(acct.txns) - acct.txns.base < 20 + venue_mod.TRIM_BATCH:
                await other.submit(OrderRequest(client_id=f"o-{i}", account_id=a, instrument="EUR_USD",
                                                units=100 if i % 2 == 0 else -100))
                i += 1
            await wait_for(lambda: engine.broker.delivered_txn_id(a) == acct.last_id, timeout=30)
            sim.faults.heartbeat = 3600.0
            sim.faults.stream_skip_next = 10**9  # nor does the stream tell
            sim.faults.hold = 2.0
            sim.faults.timeout_next = 1  # applied, the answer held past the adapter's timeout
            task = asyncio.ensure_future(engine.submit(OrderSpec(a, "EUR_USD", "sell", 300, client_order_id="late")))
            await wait_for(lambda: any(o.client_id == "late" for o in acct.orders.values()))
            sim.faults.fault_methods = ("GET",)
            sim.faults.error_rate = 1.0  # every lookup fails until the adapter and the engine give up for now
            with pytest.raises(BrokerUnavailableError):
                await task
            assert engine.get_order("late").status == "pending"
            sim.faults.error_rate = 0.0
            await wait_for(lambda: engine.get_order("late").status != "pending", timeout=10)
            (order,) = [o for o in acct.orders.values() if o.client_id == "late"]
            assert order.fill_txn - 64 < acct.txns.base < order.fill_txn  # the edge this test is about
            view = engine.get_order("late")
            assert view.status == "filled" and view.filled_units == 300
        finally:
            await engine.stop()
