"""What the OANDA adapter costs per order (pytest-benchmark).

    pytest bench/test_oanda_adapter.py --benchmark-enable -q -s

Three figures, all measured in this run against the v20 simulator running in
its own process on loopback (so the client's CPU time is the client's alone):

* ``wire``: CPU of the adapter's own per-order work with no I/O — build and
  serialise the order body, parse a real 201 answer and map it to events.
* ``cpu``: client-process CPU per submit over HTTP (adapter + aiohttp), beside
  a bare aiohttp POST of the same pre-encoded body; the difference is what
  the adapter adds on top of the HTTP client it uses.
* ``rtt``: sequential round trips, warm pool, rate limit raised out of the
  way: adapter ``submit`` vs the bare POST. The bare POST *is* the simulator's
  own latency as a client sees it; the adapter's overhead is the difference
  of the medians.

Timings live here only (never in tests). The shared 2-core machine is noisy:
compare figures from the same run.
"""
from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest

from fastexec.brokers.base import OrderRequest
from fastexec.brokers.oanda import OandaBroker, OandaConfig, wire

N_RTT = 400  # sequential orders per round
ROUNDS = 8


@pytest.fixture(scope="module")
def sim_process():
    """The simulator in a separate process on an ephemeral loopback port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastexec.sim.server", "--port", "0", "--tick-interval", "0", "--balance", "100000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+)/v3 token=(\S+) accounts=(\S+)", line)
        assert m, f"simulator did not start: {line!r}"
        yield m.group(1), m.group(2), m.group(3).split(",")[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _config(url, token, acct) -> OandaConfig:
    # the benchmark measures the adapter, not OANDA's rate limit
    return OandaConfig(token=token, account_ids=(acct,), rest_url=url, max_requests_per_s=1_000_000, request_burst=1000)


class Runner:
    """One uvloop loop kept across rounds, with the adapter and a bare
    session both warm (connections open before the first timed round)."""

    def __init__(self, url, token, acct):
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.url, self.token, self.acct = url, token, acct
        self.broker = OandaBroker(_config(url, token, acct))
        self.loop.run_until_complete(self._open())
        self.seq = 0

    async def _open(self):
        await self.broker.start(streams=False)
        self.session = aiohttp.ClientSession(
            headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"},
            connector=aiohttp.TCPConnector(limit=10, keepalive_timeout=30),
        )
        self.orders_url = f"{self.url}/v3/accounts/{self.acct}/orders"

    def requests(self, n):
        out = []
        for _ in range(n):
            self.seq += 1
            out.append(OrderRequest(f"bench-{self.seq}", self.acct, "EUR_USD", 1 if self.seq & 1 else -1))
        return out

    def bodies(self, reqs):
        return [orjson.dumps(wire.order_body(r, 5)) for r in reqs]

    async def adapter_round(self, reqs, lat):
        submit = self.broker.submit
        clock = time.perf_counter_ns
        for r in reqs:
            t = clock()
            await submit(r)
            lat.append(clock() - t)

    async def bare_round(self, bodies, lat):
        post = self.session.post
        url = self.orders_url
        clock = time.perf_counter_ns
        for b in bodies:
            t = clock()
            async with post(url, data=b) as resp:
                orjson.loads(await resp.read())
            lat.append(clock() - t)

    def close(self):
        self.loop.run_until_complete(self.broker.stop())
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


@pytest.fixture(scope="module")
def runner(sim_process):
    r = Runner(*sim_process)
    # warm both paths (connections, caches, instrument precisions)
    r.loop.run_until_complete(r.adapter_round(r.requests(50), []))
    r.loop.run_until_complete(r.bare_round(r.bodies(r.requests(50)), []))
    yield r
    r.close()


def _us(ns_list, q):
    s = sorted(ns_list)
    return round(s[min(len(s) - 1, int(q * len(s)))] / 1000, 1)


def test_wire_cpu_per_order(benchmark, sim_process, note_median):
    """Encode + decode of one market order, no I/O."""
    url, token, acct = sim_process

    async def capture():
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + token}) as s:
            async with s.post(f"{url}/v3/accounts/{acct}/orders", data=orjson.dumps(
                {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1", "clientExtensions": {"id": "cap-1"}}}
            )) as r:
                assert r.status == 201
                return await r.read()

    raw = asyncio.run(capture())
    req = OrderRequest("w-1", acct, "EUR_USD", 1000)
    cids: dict = {}

    def one_order():
        body = orjson.dumps(wire.order_body(req, 5))
        events = wire.response_events(acct, orjson.loads(raw), wire.CREATE_KEYS, cids)
        return body, events

    benchmark(one_order)
    note_median("us_per_order", scale=1e6, digits=2)


def test_client_cpu_and_round_trip(benchmark, runner):
    """Sequential submits through the adapter (timed by pytest-benchmark),
    each round preceded by a round of bare aiohttp POSTs of the same bodies
    (interleaved so machine noise hits both alike): client CPU per order and
    round-trip latency of each, and the adapter's overhead as differences."""
    lat = {"adapter": [], "bare_aiohttp": []}
    cpu = {"adapter": [], "bare_aiohttp": []}

    def timed(path, coro):
        c0 = time.process_time_ns()
        runner.loop.run_until_complete(coro)
        cpu[path].append((time.process_time_ns() - c0) / N_RTT)

    def bare_round():
        timed("bare_aiohttp", runner.bare_round(runner.bodies(runner.requests(N_RTT)), lat["bare_aiohttp"]))
        return (runner.requests(N_RTT),), {}

    def adapter_round(reqs):
        timed("adapter", runner.adapter_round(reqs, lat["adapter"]))

    benchmark.pedantic(adapter_round, setup=bare_round, rounds=ROUNDS, iterations=1)
    figs = {
        path: {
            "orders": len(lat[path]),
            "rtt_p50_us": _us(lat[path], 0.50),
            "rtt_p99_us": _us(lat[path], 0.99),
            "client_cpu_us_per_order_median": round(statistics.median(cpu[path]) / 1000, 1),
        }
        for path in lat
    }
    a, b = figs["adapter"], figs["bare_aiohttp"]
    summary = {
        "adapter_rtt_overhead_p50_us": round(a["rtt_p50_us"] - b["rtt_p50_us"], 1),
        "adapter_cpu_overhead_us_per_order": round(
            a["client_cpu_us_per_order_median"] - b["client_cpu_us_per_order_median"], 1
        ),
    }
    benchmark.extra_info.update({"adapter": a, "bare_aiohttp": b, **summary})
    print("\nOANDA adapter:", {"adapter": a, "bare_aiohttp": b, **summary})
