#!/usr/bin/env python3
"""fastexec vs NautilusTrader: the same order, submitted in-process to a
simulated venue, measured in the same run.

    python bench/compare/nautilus.py [--reps 5] [--orders 3000] [--warmup 300] [--flows roundtrip,held] [--json FILE]

NautilusTrader is never a project dependency: it is installed on demand
(pinned, ``--nautilus-version``) into its own virtualenv, by default
``$TMPDIR/fastexec-nautilus-venv`` (``FASTEXEC_NAUTILUS_VENV`` to choose), with
the same Python version as this interpreter so both sides run on the same
CPython. Each repetition runs ``fx_submit.py`` (here) and ``nt_submit.py``
(there) one after the other, alternating which goes first, so both see the
same machine; figures are medians over the repetitions of each run's p50 /
p99 / mean per order, and the ratio NautilusTrader / fastexec (> 1: fastexec
is faster). See the two drivers for exactly what is in each timed region
and for the two order flows (``roundtrip``: the position closes and reopens
every two orders; ``held``: it stays open).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VERSION = "1.221.0"


def _taskset() -> list[str]:
    # one CPU for both sides: the comparison is single-threaded work
    return ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def ensure_venv(path: str, version: str) -> str:
    """The venv's python, creating the venv and installing NautilusTrader if needed."""
    py = os.path.join(path, "bin", "python")
    probe = [py, "-c", "import nautilus_trader; print(nautilus_trader.__version__)"]
    if os.path.exists(py):
        got = subprocess.run(probe, capture_output=True, text=True)
        if got.returncode == 0 and got.stdout.strip() == version:
            return py
    print(f"installing nautilus_trader=={version} into {path} (once; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", f"nautilus_trader=={version}"], check=True, timeout=1200)
    got = subprocess.run(probe, capture_output=True, text=True, check=True)
    if got.stdout.strip() != version:
        raise SystemExit(f"installed nautilus_trader reports {got.stdout.strip()!r}, wanted {version}")
    return py


def run_side(python: str, script: str, orders: int, warmup: int, flow: str) -> dict:
    cmd = _taskset() + [python, os.path.join(HERE, script), "--orders", str(orders), "--warmup", str(warmup),
                        "--flow", flow]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(reps: int, orders: int, warmup: int, nt_python: str, flow: str) -> dict:
    runs = {"fastexec": [], "nautilus_trader": []}
    for rep in range(reps):
        order = [("fastexec", sys.executable, "fx_submit.py"), ("nautilus_trader", nt_python, "nt_submit.py")]
        if rep % 2:
            order.reverse()
        for name, py, script in order:
            runs[name].append(run_side(py, script, orders, warmup, flow))
    out = {"flow": flow, "reps": reps, "orders": orders, "warmup": warmup, "sides": {}}
    for name, rs in runs.items():
        side = {"version": rs[0]["version"], "python": rs[0]["python"]}
        for key in ("p50_ns", "p99_ns", "mean_ns", "open_p50_ns", "close_p50_ns", "first500_p50_ns", "last500_p50_ns"):
            side[key] = int(statistics.median(r[key] for r in rs))
        side["p50_ns_runs"] = [r["p50_ns"] for r in rs]
        out["sides"][name] = side
    fx, nt = out["sides"]["fastexec"], out["sides"]["nautilus_trader"]
    out["ratio_p50"] = round(nt["p50_ns"] / fx["p50_ns"], 2)
    out["ratio_mean"] = round(nt["mean_ns"] / fx["mean_ns"], 2)
    out["ratio_p99"] = round(nt["p99_ns"] / fx["p99_ns"], 2)
    return out


def print_report(res: dict) -> None:
    fx, nt = res["sides"]["fastexec"], res["sides"]["nautilus_trader"]
    us = lambda ns: f"{ns / 1000:9.1f}"  # noqa: E731
    what = ("alternating buy (opens) / sell (closes)" if res["flow"] == "roundtrip"
            else "alternating sell / buy of 10k on a held 1M long")
    a, b = ("open p50", "close p50") if res["flow"] == "roundtrip" else ("sell p50", "buy p50")
    print(f"[{res['flow']}] in-process submit -> filled, EUR/USD market 10k, {what}, "
          f"{res['orders']} orders x {res['reps']} runs (medians of per-run figures, µs per order)")
    print(f"{'':28} {'p50':>9} {'p99':>9} {'mean':>9} {a:>9} {b:>9} {'first500':>9} {'last500':>9}")
    for label, s in ((f"fastexec {fx['version']}", fx), (f"nautilus_trader {nt['version']}", nt)):
        print(f"{label:28} {us(s['p50_ns'])} {us(s['p99_ns'])} {us(s['mean_ns'])} {us(s['open_p50_ns'])} "
              f"{us(s['close_p50_ns'])} {us(s['first500_p50_ns'])} {us(s['last500_p50_ns'])}")
    print(f"ratio nautilus_trader / fastexec: p50 x{res['ratio_p50']}, mean x{res['ratio_mean']}, "
          f"p99 x{res['ratio_p99']}  (> 1: fastexec faster; python {fx['python']} both)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--orders", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--flows", default="roundtrip,held")
    ap.add_argument("--nautilus-version", default=DEFAULT_VERSION)
    ap.add_argument("--venv", default=os.environ.get("FASTEXEC_NAUTILUS_VENV",
                                                     os.path.join(tempfile.gettempdir(), "fastexec-nautilus-venv")))
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    if not (1 <= args.reps <= 50 and 1 <= args.orders <= 100_000):
        raise SystemExit("reps/orders out of bounds")
    t0 = time.monotonic()
    flows = [f for f in args.flows.split(",") if f]
    if not flows or any(f not in ("roundtrip", "held") for f in flows):
        raise SystemExit("--flows: roundtrip and/or held")
    nt_python = ensure_venv(args.venv, args.nautilus_version)
    results = []
    for flow in flows:
        res = compare(args.reps, args.orders, args.warmup, nt_python, flow)
        print_report(res)
        results.append(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seconds": round(time.monotonic() - t0, 1), "flows": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
