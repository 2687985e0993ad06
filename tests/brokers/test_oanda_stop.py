"""``OandaBroker.stop()`` ends promptly whatever the streams are doing, and
a cancellation of the task calling it reaches that task.

The bug these pin down: stop() cancels every stream at once; ending one
stream releases its connection, which wakes another stream parked in the
connector waiting for OANDA's new-connection budget (2 per window). On
Python 3.11 that waiter used ``asyncio.wait_for``, which returns the result
instead of raising when the awaited future completes in the same loop step as
the cancel, so the cancellation was lost: the stream connected and went on
reading. Only a read timeout ended it, and with heartbeats coming faster than
the read timeout it ran forever. ``stop()`` also swallowed every
``CancelledError``, its own included, so ``asyncio.wait_for(stop(), t)``
could not even time out.

The bound on stop() below is a hang detector, not a latency assertion: the bound is far above a prompt stop and far below
the read timeout that used to end a lost stream. Every test also checks that
no stream lost its cancellation (stop() would log that it had to cancel again).
"""
from __future__ import annotations

import asyncio
import logging

import pytest

from fastexec.brokers.base import PriceTick
from fastexec.brokers.oanda import OandaBroker, OandaTimeouts
from fastexec.sim.faults import FaultConfig
from fastexec.sim.testing import SimServer

from .conftest import TEST_TIMEOUTS, Recorder, adapter_config, eventually

HANG = 3.0  # seconds; the old bug took >= the stream read timeout (11 s) or forever

# (simulator heartbeat, our stream read timeout): the test suite's fast
# heartbeat, and OANDA's real 5 s heartbeat with the production read timeout
# (two missed heartbeats) under which a lost stream never timed out at all.
HEARTBEATS = [
    pytest.param(0.25, TEST_TIMEOUTS.stream_heartbeat, id="heartbeat-0.25s"),
    pytest.param(5.0, 11.0, id="heartbeat-5s"),
]


def oanda_tasks() -> list:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("oanda-") and not t.done()]


def lost_cancellations(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name.startswith("fastexec.brokers.oanda") and (
        "lost their cancellation" in r.getMessage() or "ignore cancellation" in r.getMessage())]


async def started(sim, events=None, **cfg) -> OandaBroker:
    b = OandaBroker(adapter_config(sim, **cfg))
    if events is not None:
        b.set_event_handler(events)
    await b.start()
    return b


def timeouts(read: float) -> OandaTimeouts:
    return OandaTimeouts(connect=2.0, order=0.5, read=0.5, cancel=0.5, stream_heartbeat=read)


async def assert_stops(b: OandaBroker, caplog) -> None:
    # asyncio.wait rather than wait_for: a stop() that swallowed wait_for's
    # cancellation would look as if it had finished in time.
    stopping = asyncio.get_running_loop().create_task(b.stop())
    done, _ = await asyncio.wait({stopping}, timeout=HANG)
    if not done:
        left = [t.get_name() for t in oanda_tasks()]
        stopping.cancel()
        pytest.fail(f"stop() hangs: still running after {HANG} s, streams left: {left}")
    stopping.result()
    assert oanda_tasks() == []
    assert b.http.session is None and b.http.stream_session is None
    assert lost_cancellations(caplog) == []


@pytest.mark.parametrize("heartbeat, read_timeout", HEARTBEATS)
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.6, 2.0])
async def test_stop_after_subscribing_prices(heartbeat, read_timeout, delay, caplog):
    """The reported repro: start, subscribe to one instrument, wait, stop. In
    the first ~1.2 s the price stream is waiting for the connection budget
    (the REST connection and the transaction stream spent it)."""
    caplog.set_level(logging.WARNING, logger="fastexec.brokers.oanda")
    async with SimServer(seed=7, accounts=1, faults=FaultConfig(seed=7, heartbeat=heartbeat)) as sim:
        b = await started(sim, timeouts=timeouts(read_timeout))
        await b.subscribe_prices(["EUR_USD"])
        await asyncio.sleep(delay)
        await assert_stops(b, caplog)


@pytest.mark.parametrize("heartbeat, read_timeout", HEARTBEATS)
@pytest.mark.parametrize("accounts", [1, 2])
async def test_stop_while_a_stream_waits_for_the_connection_budget(heartbeat, read_timeout, accounts, caplog):
    """Deterministic form of the race: with a 30 s connection window the price
    stream is certainly parked in the connector when stop() cancels the
    transaction stream(s), whose released connections wake it."""
    caplog.set_level(logging.WARNING, logger="fastexec.brokers.oanda")
    faults = FaultConfig(seed=7, heartbeat=heartbeat)
    async with SimServer(seed=7, accounts=accounts, faults=faults) as sim:
        b = await started(sim, timeouts=timeouts(read_timeout), connection_window_s=30.0,
                          max_new_connections_per_s=accounts + 1)
        await eventually(lambda: sim.stats.streams_opened == accounts, what="transaction streams open")
        await b.subscribe_prices(["EUR_USD"])
        await asyncio.sleep(0.1)
        assert sim.stats.streams_opened == accounts  # the price stream is still waiting
        await assert_stops(b, caplog)


@pytest.mark.parametrize("heartbeat, read_timeout", HEARTBEATS)
async def test_stop_while_streaming(heartbeat, read_timeout, caplog):
    caplog.set_level(logging.WARNING, logger="fastexec.brokers.oanda")
    async with SimServer(seed=7, accounts=1, faults=FaultConfig(seed=7, heartbeat=heartbeat)) as sim:
        events = Recorder()
        b = await started(sim, events, timeouts=timeouts(read_timeout))
        await b.subscribe_prices(["EUR_USD", "USD_JPY"])
        await eventually(lambda: len({t.instrument for t in events.of(PriceTick)}) == 2, what="both snapshots")
        await assert_stops(b, caplog)


@pytest.mark.parametrize("heartbeat, read_timeout", HEARTBEATS)
async def test_stop_during_reconnect_backoff(heartbeat, read_timeout, caplog):
    """Both streams were cut and sleep before reconnecting (a 10 s backoff)."""
    caplog.set_level(logging.WARNING, logger="fastexec.brokers.oanda")
    async with SimServer(seed=7, accounts=1, faults=FaultConfig(seed=7, heartbeat=heartbeat)) as sim:
        events = Recorder()
        b = await started(sim, events, timeouts=timeouts(read_timeout), stream_backoff_base_s=10.0,
                          stream_backoff_max_s=20.0)
        await b.subscribe_prices(["EUR_USD"])
        await eventually(lambda: events.of(PriceTick), what="first tick")
        sim.faults.stream_disconnect_after = 0  # the next line on every stream is never sent: cut
        await eventually(lambda: b.stats["price_stream_errors"] >= 1 and b.stats["txn_stream_errors"] >= 1,
                         timeout=read_timeout + 3.0, what="both streams cut")
        caplog.clear()  # the cut streams' reconnect warnings are expected
        await assert_stops(b, caplog)


async def test_resubscribing_then_stopping_ends_the_replaced_stream(caplog):
    caplog.set_level(logging.WARNING, logger="fastexec.brokers.oanda")
    async with SimServer(seed=7, accounts=1, faults=FaultConfig(seed=7, heartbeat=0.25)) as sim:
        events = Recorder()
        b = await started(sim, events)
        await b.subscribe_prices(["EUR_USD"])
        await eventually(lambda: events.of(PriceTick), what="first tick")
        await b.subscribe_prices(["USD_JPY"])  # replaces the price stream task
        await eventually(lambda: events.of(PriceTick, instrument="USD_JPY"), what="second stream's tick")
        await assert_stops(b, caplog)


@pytest.mark.parametrize("delay", [0.0, 0.2, 2.0])
async def test_cancelling_the_caller_of_stop_propagates(delay):
    """stop() must not swallow a cancellation aimed at the task running it;
    it still closes the sessions on the way out."""
    async with SimServer(seed=7, accounts=1, faults=FaultConfig(seed=7, heartbeat=0.25)) as sim:
        b = await started(sim)
        await b.subscribe_prices(["EUR_USD"])
        await asyncio.sleep(delay)
        stopping = asyncio.get_running_loop().create_task(b.stop())
        await asyncio.sleep(0)  # stop() has cancelled the streams and waits for them
        assert not stopping.done()
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        assert stopping.cancelled()
        assert b.http.session is None and b.http.stream_session is None
        await eventually(lambda: oanda_tasks() == [], timeout=HANG, what="streams ended")


async def test_a_task_that_loses_its_cancellation_does_not_hang_stop(caplog):
    """Defence in depth for whatever else might lose a CancelledError below
    us: stop() cancels again until the task ends, and says so."""
    caplog.set_level(logging.WARNING, logger="fastexec.brokers.oanda")

    async def loses_first_cancel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # what 3.11's wait_for did when its future completed in the same step
        await asyncio.Event().wait()

    async with SimServer(seed=7, accounts=1, faults=FaultConfig(seed=7, heartbeat=0.25)) as sim:
        b = await started(sim)
        b._spawn("lossy", loses_first_cancel())
        await asyncio.sleep(0)
        await asyncio.wait_for(b.stop(), timeout=HANG)
        assert oanda_tasks() == []
        assert any("oanda-lossy" in m for m in lost_cancellations(caplog))
