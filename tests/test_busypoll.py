"""BusyPoller: spin after activity, park after a quiet window, wake when activity returns.

The poller's clock is injected, so the windows are decided by the test, not by
how fast this machine runs; the loop is real (the callbacks run on it), and the
last test runs the whole service over HTTP on loopback.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import aiohttp
import pytest

from fastexec.busypoll import MAX_WINDOW_US, BusyPoller
from fastexec.config import Settings
from fastexec.service import Service


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


class Activity:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


async def turns(k: int = 5) -> None:
    for _ in range(k):
        await asyncio.sleep(0)


async def until(cond, timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition that a loop callback makes true."""
    async def poll():
        while not cond():
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), timeout)


def poller(window_us: int = 100, parked_check_s: float = 0.001):
    clock, activity = Clock(), Activity()
    return BusyPoller(window_us, activity, parked_check_s=parked_check_s, clock=clock), clock, activity


@contextlib.asynccontextmanager
async def woken(window_us: int = 100):
    """A started poller that a completed request has set spinning; stopped on exit."""
    p, clock, activity = poller(window_us)
    p.start()
    try:
        activity.n += 1
        await until(lambda: p.spinning)
        yield p, clock, activity
    finally:
        p.stop()


@pytest.mark.parametrize("window", [0, -1, MAX_WINDOW_US + 1, 1.5, "100", None])
def test_window_outside_range_is_refused(window):
    with pytest.raises(ValueError, match="busy-poll window"):
        BusyPoller(window, lambda: 0)


def test_parked_check_must_be_positive():
    with pytest.raises(ValueError, match="parked_check_s"):
        BusyPoller(10, lambda: 0, parked_check_s=0)


async def test_starts_parked_and_stays_parked_without_activity():
    p, clock, activity = poller()
    p.start()
    try:
        await asyncio.sleep(0.02)  # many parked checks
        assert not p.spinning and p.wakeups == 0 and p.parks == 0
    finally:
        p.stop()


async def test_completed_request_wakes_it_and_it_spins_through_the_window():
    async with woken(window_us=100) as (p, clock, activity):
        assert p.wakeups == 1
        await turns(20)  # the clock has not moved: still inside the window, still spinning
        assert p.spinning and p.parks == 0


async def test_activity_during_the_window_buys_another_window():
    async with woken(window_us=100) as (p, clock, activity):
        activity.n += 1
        clock.ns += 100_000  # the window is over, but a request completed in it
        await turns(5)
        assert p.spinning and p.parks == 0
        clock.ns += 100_000  # over again, and quiet this time
        await turns(5)
        assert not p.spinning and p.parks == 1


async def test_parks_after_a_quiet_window_and_wakes_when_traffic_returns():
    async with woken(window_us=50) as (p, clock, activity):
        clock.ns += 50_000
        await until(lambda: not p.spinning)
        assert p.parks == 1
        activity.n += 3
        await until(lambda: p.spinning)
        assert p.wakeups == 2
        assert p.stats() == {"window_us": 50, "spinning": True, "wakeups": 2, "parks": 1}


async def test_stop_leaves_nothing_scheduled():
    async with woken() as (p, clock, activity):
        pass
    assert not p.spinning
    before = (p.wakeups, p.parks)
    activity.n += 1
    clock.ns += 10**9
    await asyncio.sleep(0.01)
    assert (p.wakeups, p.parks) == before
    with pytest.raises(RuntimeError, match="already started"):
        p.start()
        p.start()
    p.stop()


async def test_service_spins_after_an_order_over_http(tmp_path):
    settings = Settings.from_env({"FASTEXEC_DATA_DIR": str(tmp_path), "FASTEXEC_BUSY_POLL_US": "1000000"}, dotenv=False)
    service = Service(dataclasses.replace(settings, port=0, prometheus_port=0))
    await service.start()
    try:
        p = service.busy_poller
        assert p is not None and not p.spinning
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{service.port}"
            async with http.get(base + "/api/v1/accounts") as r:
                account = (await r.json())["accounts"][0]["account_id"]
            body = {"account_id": account, "instrument": "EUR_USD", "units": 100, "side": "buy", "type": "market"}
            async with http.post(base + "/api/v1/orders", json=body) as r:
                assert r.status == 201
        await until(lambda: p.spinning)
        assert p.wakeups >= 1
    finally:
        await service.stop()
    assert service.busy_poller is None
