"""Throughput of the in-process simulated venue (pytest-benchmark).

    pytest bench/test_sim_venue.py --benchmark-enable -q

The figure that matters is market fills per second on one core: each round
books ``FILLS`` market orders on one EUR_USD account, alternating buy and
sell so every other fill opens a trade and the next closes it (create + fill
transactions, FIFO close, P/L, margin check). ``fills_per_s`` in the extra
info is ``FILLS / min(round time)``.

Three garbage-collector settings are measured because the venue keeps every
order, trade and transaction (the v20 API can ask for any of them): CPython's
defaults, the thresholds a long-running engine would set, and the collector
off (the pure cost of the fill path). Since the compiled kernel
(``fastexec.sim._fill``) the history is made of collector-free objects, so
the three should be close; a wide gap means the fill path started creating
tracked long-lived objects again (tests/sim/test_fill_kernel.py checks that
too).

``test_sim_broker_submit`` is the in-process broker's whole request
(``OrderRequest`` -> ``SimulatedBroker.submit`` -> ``OrderFilled``), the
venue's share of an engine submit, with p50/p99 in µs.
"""
from __future__ import annotations

import gc

import pytest

from fastexec.brokers.base import OrderRequest
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.fixed import parse_price
from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.testing import run_inline
from fastexec.sim.venue import Order, Venue

FILLS = 20_000
ROUNDS = 8


def _per_s(benchmark, n):
    """n / best round time, when timed (``--benchmark-enable``); None otherwise."""
    st = benchmark.stats
    return int(n / st.stats.min) if st is not None else None


def _fresh():
    v = Venue(load_sim_instruments(names=["EUR_USD", "USD_JPY"]), balance="1000000000")
    aid = next(iter(v.accounts))
    return (v, aid, v.by_name["EUR_USD"]), {}


def _fills(v, aid, inst):
    place = v.place_order
    for i in range(FILLS):
        place(aid, Order("MARKET", inst, 1000 if i & 1 else -1000))
    assert v.accounts[aid].last_id == 2 + 2 * FILLS


@pytest.fixture(params=["gc-default", "gc-tuned", "gc-off"])
def gc_mode(request):
    old = gc.get_threshold()
    if request.param == "gc-tuned":
        gc.set_threshold(50_000, 20, 100)
    elif request.param == "gc-off":
        gc.disable()
    yield request.param
    gc.enable()
    gc.set_threshold(*old)
    gc.collect()


def test_sim_market_fills_per_second(benchmark, gc_mode):
    benchmark.group = "sim-venue-fills"
    benchmark.pedantic(_fills, setup=_fresh, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["gc"] = gc_mode
    benchmark.extra_info["fills_per_round"] = FILLS
    benchmark.extra_info["fills_per_s"] = _per_s(benchmark, FILLS)


def _cross_fills(v, aid, inst):
    place = v.place_order
    for i in range(FILLS):
        place(aid, Order("MARKET", inst, 1000 if i & 1 else -1000))


def test_sim_cross_currency_fills_per_second(benchmark):
    """USD_JPY in a USD account: every fill converts P/L and margin through 1/price."""
    benchmark.group = "sim-venue-fills"

    def setup():
        (v, aid, _), kw = _fresh()
        return (v, aid, v.by_name["USD_JPY"]), kw

    benchmark.pedantic(_cross_fills, setup=setup, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["fills_per_s"] = _per_s(benchmark, FILLS)


PENDING = 2_000


def test_sim_tick_triggers_pending_limits(benchmark):
    """One tick that fills ``PENDING`` resting limit orders (trigger scan + fills)."""
    benchmark.group = "sim-venue-ticks"
    P = lambda s: parse_price(s, 5)  # noqa: E731

    def setup():
        v = Venue(load_sim_instruments(names=["EUR_USD"]), balance="1000000000")
        aid = next(iter(v.accounts))
        v.set_price("EUR_USD", P("1.10000"), P("1.10010"))
        eu = v.by_name["EUR_USD"]
        for i in range(PENDING):
            v.place_order(aid, Order("LIMIT", eu, 100, price=P("1.09000")))
        return (v,), {}

    def tick(v):
        out = v.set_price("EUR_USD", P("1.08990"), P("1.09000"))
        assert len(out) == PENDING

    benchmark.pedantic(tick, setup=setup, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["triggered_fills_per_s"] = _per_s(benchmark, PENDING)


SUBMITS = 20_000


_drive = run_inline  # fastexec.sim.testing: a submit that yields is an error


def test_sim_broker_submit(benchmark, gc_mode):
    """One market order through the started in-process broker (what the engine calls)."""
    benchmark.group = "sim-broker-submit"
    broker = SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000"))
    _drive(broker.start())
    account = broker.account_ids()[0]
    state = [0]

    def submit_once():
        i = state[0] = state[0] + 1
        events = _drive(broker.submit(OrderRequest(f"b-{i}", account, "EUR_USD", 1000 if i & 1 else -1000)))
        assert len(events) == 1

    benchmark.pedantic(submit_once, rounds=SUBMITS, iterations=1, warmup_rounds=2_000)
    benchmark.extra_info["gc"] = gc_mode
    if benchmark.stats is not None:
        data = sorted(benchmark.stats.stats.data)
        benchmark.extra_info["p50_us"] = round(data[len(data) // 2] * 1e6, 2)
        benchmark.extra_info["p99_us"] = round(data[(99 * len(data)) // 100] * 1e6, 2)
    _drive(broker.stop())
