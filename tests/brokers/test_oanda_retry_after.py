"""``Retry-After`` on a refused request, over loopback HTTP against the v20
simulator: the adapter waits what the venue asks for (seconds or an
HTTP-date), not its own short backoff, before trying again, and gives up at
once when asked to wait longer than ``retry_after_max_s``.

The waits are read from the simulator's request log (arrival times), never
from the adapter's word for them.
"""
from __future__ import annotations

import time
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

from fastexec.brokers.base import BrokerError, OrderFilled, OrderRejected
from fastexec.brokers.oanda import NOT_PLACED, OandaBroker
from fastexec.brokers.oanda.transport import retry_after_s

from .conftest import adapter_config, order, venue_creates


def arrivals(sim, method: str, path_end: str) -> list:
    return [r.time for r in sim.stats.requests if r.method == method and r.path.endswith(path_end)]


def http_date(seconds_ahead: float) -> str:
    return format_datetime(datetime.fromtimestamp(time.time() + seconds_ahead, timezone.utc), usegmt=True)


@pytest.fixture
async def quiet(sim):
    """The adapter without streams (only the requests a test makes reach the
    venue), its own backoff capped at 0.1 s so a wait of a second or more can
    only come from Retry-After, which it may honour up to 5 s."""
    b = OandaBroker(adapter_config(sim, retry_after_max_s=5.0))
    await b.start(streams=False)
    try:
        yield b
    finally:
        await b.stop()


def test_retry_after_reads_seconds_and_http_dates():
    now = 1_700_000_000.0
    date_30s_ahead = format_datetime(datetime.fromtimestamp(now + 30, timezone.utc), usegmt=True)
    assert retry_after_s("10", now) == 10.0
    assert retry_after_s(" 1.5 ", now) == 1.5
    assert retry_after_s(date_30s_ahead, now) == 30.0
    assert retry_after_s("Sun, 06 Nov 1994 08:49:37 GMT", now) == 0.0  # in the past: no wait asked
    assert retry_after_s("-3", now) == 0.0
    for unreadable in (None, "", "soon", "nan", "Mon, 99 Foo 2024 99:99:99 GMT"):
        assert retry_after_s(unreadable, now) is None, unreadable


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_read_answered_429_is_retried_after_the_wait_it_asks_for(sim, quiet, acct, form):
    value = "1" if form == "seconds" else http_date(2.0)  # a date has whole seconds: 1 < wait <= 2
    f = sim.faults
    f.fault_methods, f.fault_path = ("GET",), "/summary"
    f.error_next, f.error_status, f.error_retry_after = 1, 429, value
    snap = await quiet.account_summary(acct)
    assert snap.account_id == acct
    first, second = arrivals(sim, "GET", "/summary")[-2:]  # start() read it once before
    assert second - first >= 0.95  # arrival times, not send times: allow the loop's granularity


async def test_order_answered_429_is_sent_again_after_the_wait_it_asks_for(sim, quiet, acct):
    f = sim.faults
    f.fault_methods, f.fault_path = ("POST",), "/orders"
    f.error_next, f.error_status, f.error_retry_after = 1, 429, "1"
    (fill,) = await quiet.submit(order(acct, "ra-1"))
    assert isinstance(fill, OrderFilled) and fill.client_id == "ra-1"
    first, second = arrivals(sim, "POST", "/orders")
    assert second - first >= 0.95
    assert len(venue_creates(sim, acct, "ra-1")) == 1


async def test_retry_after_beyond_the_cap_ends_the_retries_at_once(sim, quiet, acct):
    f = sim.faults
    f.fault_methods, f.error_status, f.error_retry_after, f.error_rate = ("GET",), 429, "30", 1.0
    with pytest.raises(BrokerError) as err:
        await quiet.open_positions(acct)
    assert err.value.retryable and "Retry-After" in str(err.value)
    f.fault_methods = ("POST",)
    (rej,) = await quiet.submit(order(acct, "ra-cap"))
    assert isinstance(rej, OrderRejected) and rej.reason == NOT_PLACED
    # one attempt each: neither retried early against the limiter nor held for 30 s
    assert len(arrivals(sim, "GET", "/openPositions")) == 1 and len(arrivals(sim, "POST", "/orders")) == 1
    assert venue_creates(sim, acct, "ra-cap") == []
