#!/usr/bin/env python3
"""Wall-clock cost of the core hot paths beside their pure-Python Decimal
reference, measured in the same run.

    python bench/reference/bench_core_vs_decimal.py [--reps 31] [--json FILE]

Both sides run the same operations on the same state
(``scenario.py``): the full 14-check risk decision on an order that passes,
a fill (alternating open/close), and a mark-to-market tick. Each repetition
times every operation on both sides back to back (so both see the same
machine load) with the garbage collector off; the figures are medians over
the repetitions of ns per operation, and the ratio reference / core. The
instruction-count view of the same paths (noise-free) is
``python bench/callgrind/gate.py``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import scenario  # noqa: E402

# (label, core loop, core calls per timing, reference loop or None, reference calls)
OPS = [
    ("risk check (Python call)", "core_check_loop", 20_000, "ref_check_loop", 400),
    ("risk check (batch, per order)", "core_check_batch_loop", 100_000, "ref_check_loop", 400),
    ("fill / P&L update", "core_fill_loop", 20_000, "ref_fill_loop", 400),
    ("mark-to-market tick", "core_mark_loop", 20_000, "ref_mark_loop", 200),
]


def _time(run, n: int) -> float:
    t0 = time.perf_counter_ns()
    run(n)
    return (time.perf_counter_ns() - t0) / n


def measure(reps: int) -> list[dict]:
    core = scenario.Core()
    ref = scenario.Reference(core.table)
    loops = []
    for label, cl, cn, rl, rn in OPS:
        c_run = getattr(scenario, cl)(core)
        r_run = getattr(scenario, rl)(ref) if rl else None
        c_run(cn // 10)  # warm-up
        if r_run:
            r_run(max(rn // 10, 2))
        loops.append((label, c_run, cn, r_run, rn))
    samples = {label: ([], []) for label, *_ in OPS}
    gc.collect()
    gc.disable()
    try:
        for _ in range(reps):
            for label, c_run, cn, r_run, rn in loops:
                samples[label][0].append(_time(c_run, cn))
                if r_run:
                    samples[label][1].append(_time(r_run, rn))
    finally:
        gc.enable()
    scenario.still_passes(core, ref)
    out = []
    for label, *_ in OPS:
        c, r = samples[label]
        row = {"op": label, "core_ns": round(statistics.median(c), 1)}
        if r:
            row["decimal_ns"] = round(statistics.median(r), 1)
            row["ratio"] = round(row["decimal_ns"] / row["core_ns"], 1)
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args(argv)
    if not 1 <= args.reps <= 200:
        raise SystemExit("--reps must be 1..200")
    rows = measure(args.reps)
    print(f"core hot paths vs pure-Python Decimal reference, median of {args.reps} reps, ns per operation")
    print(f"{'operation':<32} {'core':>10} {'Decimal':>10} {'ratio':>8}")
    for r in rows:
        print(f"{r['op']:<32} {r['core_ns']:>10.1f} {r.get('decimal_ns', float('nan')):>10.1f} "
              f"{('x' + str(r['ratio'])) if 'ratio' in r else '-':>8}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
