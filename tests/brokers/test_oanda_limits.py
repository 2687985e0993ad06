"""OANDA's limits under a burst: the adapter, not the venue, is what keeps
requests ≤ 100 in any second and new connections ≤ 2 in any second. The
simulator enforces the same limits (429 / refused connection), so a breach
would show twice: in its window counts and in its refusals."""
from __future__ import annotations

import asyncio

import pytest

from fastexec.brokers.base import OrderFilled, OrderRequest
from fastexec.brokers.oanda import OandaBroker, OandaTimeouts
from fastexec.sim.faults import FaultConfig, Stats
from fastexec.sim.testing import SimServer

from .conftest import adapter_config, venue_creates

N = 1000


@pytest.mark.slow
async def test_burst_of_1000_submits_stays_within_oanda_limits():
    faults = FaultConfig(seed=11, rate_limit=100, connection_rate_limit=2)
    async with SimServer(seed=11, faults=faults) as sim:
        acct = sim.account_ids[0]
        # production-like timeouts: a queued burst must not time out on our own limiter
        b = OandaBroker(adapter_config(sim, timeouts=OandaTimeouts(order=5.0, read=5.0)))
        await b.start(streams=False)
        try:
            reqs = [OrderRequest(f"b-{i}", acct, "EUR_USD", 1 if i % 2 else -1) for i in range(N)]
            results = await asyncio.wait_for(asyncio.gather(*(b.submit(r) for r in reqs)), timeout=60)
        finally:
            await b.stop()
        st = sim.stats
        assert st.count(fault="429") == 0 and st.rejected_connections == []
        assert Stats.max_in_window(st.request_times(), 1.0) <= 100
        assert Stats.max_in_window(st.connections, 1.0) <= 2
        assert len(st.connections) <= b.config.pool_size
        bad = [r for r in results if not isinstance(r[0], OrderFilled)]
        assert bad == [], bad[:3]
        assert st.count(path="/orders") == N  # no request sent twice
        assert all(len(venue_creates(sim, acct, r.client_id)) == 1 for r in reqs)


async def test_new_connection_budget_counts_from_when_a_connect_finished():
    """A connect that completes late (slow handshake, busy venue) pushes the next
    attempt out: the venue stamps connections when it accepts them, never
    before our connect completes, so spacing from completion keeps its
    accepts spaced."""
    import asyncio

    from fastexec.brokers.oanda import ConnectionRateLimiter

    loop = asyncio.get_running_loop()
    limiter = ConnectionRateLimiter(limit=2, window=0.05)
    first = await limiter.acquire()
    await limiter.acquire()
    await asyncio.sleep(0.03)  # the first connect takes a while ...
    limiter.settled(first)     # ... and finishes now
    finished = loop.time()
    await limiter.acquire()    # a third attempt must wait a full window after that
    assert loop.time() >= finished + 0.05 - 0.001  # loop clock resolution
    assert limiter.opened == 3
