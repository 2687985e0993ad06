"""In-process submit -> ack through the engine (pytest-benchmark).

    pytest bench/test_engine_submit.py --benchmark-enable -q

One round = one market order through ``Engine.submit``: shape validation,
kill-switch and risk gateway (compiled kernel + rate bucket), order state
(C store), the simulated venue's fill, the fill applied to positions/P&L/
margin in the compiled ledger, and the ``OrderView`` returned. Orders
alternate buy and sell so the netting position stays flat and no limit is
approached. The coroutine is driven with ``send(None)``: with the in-process
venue a submit never yields to the event loop, and the driver asserts that
(a yield would mean an await on the hot path).

Reported per test in ``extra_info``: p50/p99 in µs over every round (the
budget is p50 <= 10 µs, p99 <= 50 µs). ``test_sim_submit_only`` is the same
order straight into ``SimulatedBroker.submit``, measured in the same run, so
the engine's own share is the difference of the two medians. The machine is
shared: compare medians and ratios from one run, not absolute numbers across
runs.

Load-independent split (callgrind instruction counts per order, GC off,
(I(2N) - I(N)) / N; engine_submit with N = 4096, whole retire batches
included; same engine, venue and orders as here):

    python bench/test_engine_submit.py --callgrind

Measured 2026-11-22 (CPython 3.11.7, valgrind 3.19) at 98392bc: the whole
submit 37.4k instructions per order (55.1k at b21443a), the venue's own
request 23.2k (25.1k), ``Engine.validate`` 16.0k (17.0k). What changed: a
market order is sent and answered without a coroutine (the simulated
broker's compiled ``submit_now``, ``EngineCore._send_now``), the retire batch
is compiled, the core's per-order calls are C calls, records and timings are
template copies written in place (``engine/_dictfill.pxd``), timings read
CLOCK_MONOTONIC in C, the venue's per-order attributes are C fields
(``_fill.VenueCore``). What remains: the venue's Python-int arithmetic and
dict bookkeeping (~12k), retiring finished orders in both (~6k: cold objects
freed), dict and allocation calls for the order's records.

Before (2026-11-21, after the engine's per-order path was compiled,
d2442d8, N = 1000 without the retire batch): the whole submit 47.3k, of
which 25.0k the venue's and 22.3k the engine's (52.8k before hotpath, 56.6k
before the engine trim); ``Engine.validate`` 17.4k (24.1k). Wall clock then,
medians of three runs on the shared 2-core machine (load average ~3.4):
submit p50 6.4 us, p99 20 us with the default GC thresholds and 13 us tuned;
the venue alone p50 2.7 us; validate p50 1.4 us. Budget p50 <= 10 us,
p99 <= 50 us.
"""
from __future__ import annotations

import asyncio
import gc

import pytest

from fastexec.brokers.base import OrderRequest
from fastexec.config import Settings
from fastexec.engine import Engine, OrderSpec
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.testing import run_inline
from fastexec.sim.venue import Venue

ROUNDS = 20_000
WARMUP = 2_000


_drive = run_inline  # fastexec.sim.testing: a submit that yields is an error


@pytest.fixture(params=["gc-default", "gc-tuned"])
def gc_mode(request):
    old = gc.get_threshold()
    if request.param == "gc-tuned":
        gc.set_threshold(50_000, 20, 100)  # what a long-running service would set
    yield request.param
    gc.set_threshold(*old)
    gc.collect()


@pytest.fixture
def engine():
    loop = asyncio.new_event_loop()
    settings = Settings(
        max_orders_per_second=10**9, max_position_size=10**9, max_units_per_order=10**9, max_daily_loss=10**15,
        max_concurrent_orders=10**6,
    )
    eng = Engine(settings, SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000")))
    loop.run_until_complete(eng.start())
    yield eng
    loop.run_until_complete(eng.stop())
    loop.close()


def _percentiles(benchmark) -> None:
    if benchmark.stats is None:  # run without --benchmark-enable: a smoke test, no timings
        return
    data = sorted(benchmark.stats.stats.data)
    n = len(data)
    benchmark.extra_info["p50_us"] = round(data[n // 2] * 1e6, 2)
    benchmark.extra_info["p99_us"] = round(data[min(n - 1, (99 * n) // 100)] * 1e6, 2)
    benchmark.extra_info["rounds"] = n


def test_engine_submit_market(benchmark, engine, gc_mode):
    benchmark.group = "engine-submit"
    account = engine.account_ids[0]
    specs = (OrderSpec(account, "EUR_USD", "buy", 1000), OrderSpec(account, "EUR_USD", "sell", 1000))
    state = [0]

    def submit_once():
        i = state[0] = state[0] + 1
        view = _drive(engine.submit(specs[i & 1]))
        assert view.status == "filled"

    benchmark.pedantic(submit_once, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    benchmark.extra_info["gc"] = gc_mode
    _percentiles(benchmark)
    # sells on odd rounds, buys on even ones: flat after an even number
    assert engine.position(account, "EUR_USD").units == (-1000 if state[0] & 1 else 0)


def test_sim_submit_only(benchmark, engine):
    """The venue's own cost for the same order, for the engine's share."""
    benchmark.group = "engine-submit"
    account = engine.account_ids[0]
    broker = engine.broker
    state = [0]

    def submit_once():
        i = state[0] = state[0] + 1
        req = OrderRequest(f"bench-{i}", account, "EUR_USD", 1000 if i & 1 else -1000)
        events = _drive(broker.submit(req))
        assert events

    benchmark.pedantic(submit_once, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    _percentiles(benchmark)


def test_engine_validate(benchmark, engine):
    """The whole pre-trade path without sending: shape + kill switch + risk."""
    benchmark.group = "engine-validate"
    spec = OrderSpec(engine.account_ids[0], "EUR_USD", "buy", 1000)

    def validate_once():
        assert engine.validate(spec).allowed

    benchmark.pedantic(validate_once, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    _percentiles(benchmark)


# --- callgrind split (python bench/test_engine_submit.py --callgrind) --------------------

def _cg_engine():
    """(engine, account, specs) set up like the ``engine`` fixture, outside pytest."""
    loop = asyncio.new_event_loop()
    settings = Settings(
        max_orders_per_second=10**9, max_position_size=10**9, max_units_per_order=10**9, max_daily_loss=10**15,
        max_concurrent_orders=10**6,
    )
    eng = Engine(settings, SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000")))
    loop.run_until_complete(eng.start())
    account = eng.account_ids[0]
    return eng, account, (OrderSpec(account, "EUR_USD", "buy", 1000), OrderSpec(account, "EUR_USD", "sell", 1000))


def _cg_submit():
    eng, _, specs = _cg_engine()
    state = [0]

    def run(n):
        i = state[0]
        for j in range(i, i + n):
            _drive(eng.submit(specs[j & 1]))
        state[0] = i + n

    run(20_000)  # past RETAIN_TERMINAL + RETIRE_BATCH: the order maps have stopped growing
    return run


def _cg_venue():
    eng, account, _ = _cg_engine()
    broker = eng.broker
    state = [0]

    def run(n):
        i = state[0]
        for j in range(i, i + n):
            _drive(broker.submit(OrderRequest(f"bench-{j}", account, "EUR_USD", 1000 if j & 1 else -1000)))
        state[0] = i + n

    run(3000)
    return run


def _cg_validate():
    eng, _, specs = _cg_engine()

    def run(n):
        spec = specs[0]
        for _ in range(n):
            eng.validate(spec)

    return run


class _CgPath:
    def __init__(self, name, make, n=1000):
        self.name, self.make, self.n = name, make, n


CALLGRIND_PATHS = [
    _CgPath("engine_submit", _cg_submit, n=4096),  # whole retire batches per phase, as in the gate (paths.py)
    _CgPath("venue_submit", _cg_venue),
    _CgPath("engine_validate", _cg_validate),
]


if __name__ == "__main__":
    import os
    import sys

    if sys.argv[1:] != ["--callgrind"]:
        raise SystemExit("usage: python bench/test_engine_submit.py --callgrind   (timings: run it with pytest)")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "callgrind"))
    from gate import measure  # bench/callgrind/gate.py: valgrind, the cgmark helper, (I(2N) - I(N)) / N

    res = {k: v["ir_per_call"] for k, v in measure(f"{os.path.abspath(__file__)}:CALLGRIND_PATHS").items()
           if not k.startswith("_")}
    for name in ("engine_submit", "venue_submit", "engine_validate"):
        print(f"{name:16s} {res[name]:10.0f} instructions per order")
    print(f"{'engine share':16s} {res['engine_submit'] - res['venue_submit']:10.0f} (engine_submit - venue_submit)")
