"""The hot paths the callgrind gate counts, each as ``make() -> run(n)``.

``run(n)`` performs the path ``n`` times, the way the engine calls it (from
Python, one call per order/fill/tick), so the count includes the
Python-to-Cython call: that boundary is the cost the design budgets for
("~50-90 ns per call, the check itself ~2-5 ns"). Each ``run`` binds what it
needs to locals first: lookups outside the loop are constant and cancel in
the N / 2N difference, lookups inside would be counted per call.

Paths must be steady-state: repeating them must not grow state (a dict
resize landing in one phase but not the other would be counted as cost).

``gated=False`` paths are printed for context (the Decimal references, the
bare call overhead) but never fail the gate.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(os.path.dirname(HERE), "reference")
if REFERENCE not in sys.path:
    sys.path.insert(0, REFERENCE)


@dataclass(frozen=True)
class HotPath:
    name: str
    make: Callable[[], Callable[[int], None]]
    n: int = 2000
    gated: bool = True
    why: str = ""
    reference: str | None = None  # an ungated path doing the same work (ratio printed)


# --- calibration -----------------------------------------------------------

def _make_call_overhead():
    # A C builtin with two int args: what any Python -> C call costs here.
    f = divmod

    def run(n):
        for _ in range(n):
            f(7, 3)

    return run


# --- fixed-point ingress and arithmetic (fastexec._core.fixedpoint) --------

def _make_parse_price():
    from fastexec._core.fixedpoint import parse_price

    def run(n):
        p = parse_price
        for _ in range(n):
            p("1.10523", 5)

    return run


def _make_pnl():
    from fastexec._core.fixedpoint import pnl

    def run(n):
        f = pnl
        for _ in range(n):
            f(-250_000, 1_105_230_000, 1_104_870_000)

    return run


# --- the core hot paths, on the shared scenario (bench/reference/scenario.py) ---

def _scenario(loop_name, side):
    def make():
        import scenario

        state = scenario.Core() if side == "core" else scenario.Reference()
        return getattr(scenario, loop_name)(state)

    return make


# --- the whole in-process submit (bench/test_engine_submit.py's scenarios) ---

def _engine_bench(maker_name):
    """One of bench/test_engine_submit.py's callgrind makers: a market order
    through Engine.submit (or the venue alone, or Engine.validate), the same
    setup its pytest-benchmark timings use."""
    def make():
        bench_dir = os.path.dirname(HERE)
        if bench_dir not in sys.path:
            sys.path.insert(0, bench_dir)
        import test_engine_submit

        return getattr(test_engine_submit, maker_name)()

    return make


# Whole-order paths: their state grows in steps (finished orders are forgotten
# 4,096 at a time), so they are steady only at their full N, a multiple of that
# batch. The gate's own self-tests (tests/bench), which run every path at a
# reduced N, use the core paths only.
WHOLE_ORDER_PATHS = ("engine_submit", "venue_submit", "engine_validate")

PATHS: list[HotPath] = [
    HotPath("call_overhead", _make_call_overhead, n=4000, gated=False,
            why="a bare Python->C call (divmod): the floor under every path"),
    HotPath("parse_price", _make_parse_price, n=2000,
            why="every REST/v20 price crosses it"),
    HotPath("pnl", _make_pnl, n=2000,
            why="int128 half-even P&L of one position"),
    HotPath("risk_check", _scenario("core_check_loop", "core"), n=2000, reference="ref_risk_check_decimal",
            why="every order and modification: RiskEngine.check from Python, all 14 checks run"),
    HotPath("risk_check_batch", _scenario("core_check_batch_loop", "core"), n=20000,
            why="per order, RiskEngine.check_batch over 500-order arrays (the Cython batch target)"),
    HotPath("fill", _scenario("core_fill_loop", "core"), n=2000, reference="ref_fill_decimal",
            why="every fill: Ledger.apply_fill (average price, realized P&L, revalue), open/close alternating"),
    HotPath("mark_to_market", _scenario("core_mark_loop", "core"), n=2000, reference="ref_mark_decimal",
            why="every price tick: Ledger.mark revalues the positions and conversions it touches"),
    HotPath("engine_submit", _engine_bench("_cg_submit"), n=4096,  # = RETIRE_BATCH: each phase holds whole retire batches
            why="issue 5's figure: a market order through Engine.submit (risk + state + simulated fill + view)"),
    HotPath("venue_submit", _engine_bench("_cg_venue"), n=1000,
            why="the simulated venue's own share of that submit (SimulatedBroker.submit, fill kernel)"),
    HotPath("engine_validate", _engine_bench("_cg_validate"), n=1000,
            why="POST /risk/validate and the pre-trade half of every submit: shape + kill switch + risk"),
    HotPath("ref_risk_check_decimal", _scenario("ref_check_loop", "ref"), n=200, gated=False,
            why="the same check in pure-Python Decimal (bench/reference)"),
    HotPath("ref_fill_decimal", _scenario("ref_fill_loop", "ref"), n=200, gated=False,
            why="the same fill in pure-Python Decimal"),
    HotPath("ref_mark_decimal", _scenario("ref_mark_loop", "ref"), n=200, gated=False,
            why="the same mark in pure-Python Decimal"),
]
