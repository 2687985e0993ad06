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
BENCH = os.path.dirname(HERE)
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)


@dataclass(frozen=True)
class HotPath:
    name: str
    make: Callable[[], Callable[[int], None]]
    n: int = 2000
    gated: bool = True
    why: str = ""


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


PATHS: list[HotPath] = [
    HotPath("call_overhead", _make_call_overhead, n=4000, gated=False,
            why="a bare Python->C call (divmod): the floor under every path"),
    HotPath("parse_price", _make_parse_price, n=2000,
            why="every REST/v20 price crosses it"),
    HotPath("pnl", _make_pnl, n=2000,
            why="int128 half-even P&L of one position"),
]
