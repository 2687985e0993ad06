"""Throughput of the in-process simulated venue (pytest-benchmark).

    pytest bench/test_sim_venue.py --benchmark-enable -q

The figure that matters is market fills per second on one core: each round
books ``FILLS`` market orders on one EUR_USD account, alternating buy and
sell so every other fill opens a trade and the next closes it (create + fill
transactions, FIFO close, P/L, margin check). ``fills_per_s`` in the extra
info is ``FILLS / min(round time)``.

Three garbage-collector settings are measured because the venue keeps every
order, trade and transaction (the v20 API can ask for any of them), so the
collector's full passes grow with the history: CPython's defaults, the
thresholds a long-running engine would set, and the collector off (the pure
cost of the fill path).
"""
from __future__ import annotations

import gc

import pytest

from fastexec.sim.fixed import parse_price
from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.venue import Order, Venue

FILLS = 20_000
ROUNDS = 8


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
    benchmark.extra_info["fills_per_s"] = int(FILLS / benchmark.stats.stats.min)


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
    benchmark.extra_info["fills_per_s"] = int(FILLS / benchmark.stats.stats.min)


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
    benchmark.extra_info["triggered_fills_per_s"] = int(PENDING / benchmark.stats.stats.min)
