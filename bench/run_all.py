#!/usr/bin/env python3
"""Every fastexec benchmark, one command, one table.

    python bench/run_all.py [--quick] [--only core,callgrind,engine,compare,rest,journal,pytest] [--json FILE]

Why one command: a figure without its reference measured in the same run is
not comparable on a shared 2-core machine (the same code moves by tens of
percent between runs), so this runs every benchmark back to back, each beside
its own reference, and prints every figure with that reference and the ratio:

  core       compiled risk check / fill / mark vs the pure-Python Decimal
             implementation of the same rules (bench/reference/), wall clock
  callgrind  the same paths in instructions per call (noise-free), with the
             Decimal reference's count: what the CI gate guards
  engine     in-process submit -> filled (bench/test_engine_submit.py),
             beside the simulated venue's own cost for the same order
  compare    the same order through NautilusTrader's risk + execution engines
             to its simulated exchange (bench/compare/, own venv, installed
             on first use)
  rest       POST /api/v1/orders with wrk (bench/rest/run_wrk.py) beside a
             bare aiohttp echo server
  journal    journal cost (bench/journal_bench.py) beside a bare write+fsync
  pytest     every other bench/test_*.py (pytest-benchmark) medians

Sections run one after another (never two at once on 2 cores), each bounded
by a timeout; a failing section is reported as FAILED, the others still run,
and the exit code is 1. ``--quick`` trims repetitions (for a smoke run; the
figures to quote come from the default). The default finishes in well under
10 minutes here once NautilusTrader's venv exists (first use installs it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable

# DESIGN.md targets, for the "target" column (None: no target, context only)
TARGETS = {
    "risk check (Python call)": ("<=", 100.0, "ns"),
    "risk check (batch, per order)": ("<=", 10.0, "ns"),
    "submit p50": ("<=", 10.0, "us"),
    "submit p99": ("<=", 50.0, "us"),
    "orders/s": (">=", 10000.0, "/s"),
    "orders/s vs echo": (">=", 0.6, "x"),
    "single-client p50": ("<=", 150.0, "us"),
}


class Row:
    __slots__ = ("section", "figure", "value", "unit", "ref_name", "ref_value", "ratio", "note")

    def __init__(self, section, figure, value, unit, ref_name="", ref_value=None, note=""):
        self.section, self.figure, self.value, self.unit = section, figure, value, unit
        self.ref_name, self.ref_value, self.note = ref_name, ref_value, note
        # one rule for every row: > 1 means fastexec does better than its
        # reference (takes less time / fewer instructions, or moves more per second)
        self.ratio = None
        if value and ref_value:
            r = value / ref_value if unit == "/s" else ref_value / value
            self.ratio = round(r, 2) if r < 10 else round(r, 1)

    def target(self) -> str:
        t = TARGETS.get(self.figure)
        if t is None or self.value is None:
            return ""
        op, limit, unit = t
        ok = self.value <= limit if op == "<=" else self.value >= limit
        return f"{op} {limit:g}{unit} {'met' if ok else 'NOT MET'}"

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__} | {"target": self.target()}


def run(cmd: list[str], timeout: float, cwd: str = ROOT) -> subprocess.CompletedProcess:
    print(f"$ {' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)}",
          file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}")
    return proc


# --- sections ----------------------------------------------------------------------

def sec_core(tmp: str, quick: bool) -> list[Row]:
    out = os.path.join(tmp, "core.json")
    run([PY, os.path.join(HERE, "reference", "bench_core_vs_decimal.py"), "--reps", "9" if quick else "31",
         "--json", out], 300)
    rows = []
    for r in json.load(open(out)):
        rows.append(Row("core", r["op"], r["core_ns"], "ns", "Decimal reference", r.get("decimal_ns"),
                        "wall clock, median"))
    return rows


def sec_callgrind(tmp: str, quick: bool) -> list[Row]:
    out = os.path.join(tmp, "callgrind.json")
    run([PY, os.path.join(HERE, "callgrind", "gate.py"), "--json", out] + (["--scale", "0.25"] if quick else []), 300)
    res = json.load(open(out))["results"]
    refs = {"risk_check": "ref_risk_check_decimal", "risk_check_batch": "ref_risk_check_decimal",
            "fill": "ref_fill_decimal", "mark_to_market": "ref_mark_decimal"}
    rows = []
    for name in ("risk_check", "risk_check_batch", "fill", "mark_to_market", "parse_price", "pnl", "call_overhead"):
        if name not in res:
            continue
        v = res[name]["ir_per_call"]
        ref = refs.get(name)
        rv = res[ref]["ir_per_call"] if ref and ref in res else None
        rows.append(Row("callgrind", name, v, "Ir/call", "Decimal reference" if rv else "",
                        rv, "instructions per call (gate.py)"))
    return rows


def _pytest_bench(path: str, tmp: str, timeout: float) -> list[dict]:
    out = os.path.join(tmp, os.path.basename(path) + ".json")
    run([PY, "-m", "pytest", path, "--benchmark-enable", f"--benchmark-json={out}", "-q",
         "-p", "no:cacheprovider", "-o", "addopts="], timeout)
    return json.load(open(out))["benchmarks"]


def sec_engine(tmp: str, quick: bool) -> list[Row]:
    path = os.path.join(HERE, "test_engine_submit.py")
    if not os.path.exists(path):
        raise RuntimeError("bench/test_engine_submit.py is missing")
    benches = {b["name"]: b for b in _pytest_bench(path, tmp, 300)}
    venue = benches.get("test_sim_submit_only")
    rows = []
    for name, b in benches.items():
        if not name.startswith("test_engine_submit_market"):
            continue
        ei = b["extra_info"]
        label = name.replace("test_engine_submit_market", "").strip("[]") or "default"
        vp50 = venue["extra_info"]["p50_us"] if venue else None
        rows.append(Row("engine", "submit p50", ei["p50_us"], "us", "venue alone p50" if vp50 else "", vp50,
                        f"{label}, {ei['rounds']} orders; ratio = venue's share"))
        vp99 = venue["extra_info"]["p99_us"] if venue else None
        rows.append(Row("engine", "submit p99", ei["p99_us"], "us", "venue alone p99" if vp99 else "", vp99,
                        label))
    if "test_engine_validate" in benches:
        ei = benches["test_engine_validate"]["extra_info"]
        rows.append(Row("engine", "validate p50", ei["p50_us"], "us", note="shape + kill switch + risk, no send"))
    return rows


def sec_compare(tmp: str, quick: bool) -> list[Row]:
    out = os.path.join(tmp, "nautilus.json")
    run([PY, os.path.join(HERE, "compare", "nautilus.py"), "--reps", "3" if quick else "5", "--json", out], 1500)
    rows = []
    for res in json.load(open(out))["flows"]:
        fx, nt = res["sides"]["fastexec"], res["sides"]["nautilus_trader"]
        ref = f"nautilus_trader {nt['version']}"
        flow = res["flow"]
        note = f"in-process submit->filled, {res['orders']} orders x {res['reps']} runs"
        if flow == "roundtrip":
            note += f"; NT open {nt['open_p50_ns'] / 1000:.0f} / close {nt['close_p50_ns'] / 1000:.0f} us"
        else:
            note += f"; NT first/last 500 p50 {nt['first500_p50_ns'] / 1000:.0f} / {nt['last500_p50_ns'] / 1000:.0f} us"
        rows += [
            Row("compare", f"submit->filled p50 [{flow}]", fx["p50_ns"] / 1000, "us", ref, nt["p50_ns"] / 1000, note),
            Row("compare", f"submit->filled mean [{flow}]", fx["mean_ns"] / 1000, "us", ref, nt["mean_ns"] / 1000),
            Row("compare", f"submit->filled p99 [{flow}]", fx["p99_ns"] / 1000, "us", ref, nt["p99_ns"] / 1000),
        ]
    return rows


def sec_rest(tmp: str, quick: bool) -> list[Row]:
    path = os.path.join(HERE, "rest", "run_wrk.py")
    if not os.path.exists(path):
        raise RuntimeError("bench/rest/run_wrk.py is missing")
    reps, secs = ("2", "2") if quick else ("5", "4")
    try:
        proc = run([PY, path, "--json", "--reps", reps, "--seconds", secs], 600)
        retried = ""
    except RuntimeError as exc:
        # run_wrk.py stops at the first wrk error; one retry, and the table says so
        print(f"rest: retrying once after: {str(exc).strip().splitlines()[-1][:200]}", file=sys.stderr)
        proc = run([PY, path, "--json", "--reps", reps, "--seconds", secs], 600)
        retried = " (second attempt: the first failed)"
    text = proc.stdout
    res = json.loads(text[text.index("{"):])
    note = (f"median of {res['reps']} x {res['seconds']}s, {res['connections']} conns, "
            f"non-2xx {res['orders_non_2xx']}{retried}")
    return [
        Row("rest", "orders/s", res["orders_per_s"], "/s", "aiohttp echo req/s", res["echo_per_s"], note),
        Row("rest", "orders/s vs echo", res["ratio"], "x", note="median of per-rep ratios, same run"),
        Row("rest", "single-client p50", res["orders_p50_us_1client"], "us", "echo p50",
            res["echo_p50_us_1client"], f"orders p99 {res['orders_p99_us_1client']} us"),
    ]


def sec_journal(tmp: str, quick: bool) -> list[Row]:
    path = os.path.join(HERE, "journal_bench.py")
    if not os.path.exists(path):
        raise RuntimeError("bench/journal_bench.py is missing")
    proc = run([PY, path, "--duration", "2" if quick else "4", "--dir", tmp], 600)
    # journal_bench.py prints its own report (it has no JSON output): the
    # table carries one row per line, verbatim, and its same-run reference
    # (bare write+fsync on the same disk) as the row it prints for it.
    rows = []
    for line in proc.stdout.splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(Row("journal", line.strip(), None, "", note=""))
    if not rows:
        raise RuntimeError("journal_bench.py printed no figures")
    return rows


def sec_pytest(tmp: str, quick: bool) -> list[Row]:
    rows = []
    owned = {"test_engine_submit.py"}  # reported by its own section
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        if os.path.basename(path) in owned:
            continue
        try:
            benches = _pytest_bench(path, tmp, 300)
        except Exception as exc:  # one file failing does not hide the others
            rows.append(Row("pytest", os.path.basename(path), None, "", note=f"FAILED: {exc}"[:200]))
            continue
        for b in benches:
            ei = b.get("extra_info") or {}
            extra = ", ".join(f"{k}={v}" for k, v in ei.items() if k not in ("gc",))
            med_us = b["stats"]["median"] * 1e6
            rows.append(Row("pytest", f"{os.path.basename(path)[5:-3]}::{b['name'][5:]}", round(med_us, 2), "us",
                            note=("median; " + extra) if extra else "median"))
    return rows


SECTIONS = {
    "core": sec_core, "callgrind": sec_callgrind, "engine": sec_engine, "compare": sec_compare,
    "rest": sec_rest, "journal": sec_journal, "pytest": sec_pytest,
}


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "kernel": platform.release(), "load_at_start": os.getloadavg()[0],
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip(),
    }


def clip(text: str, width: int) -> str:
    """Keep both ends of a long name: parametrised test ids differ at the end."""
    return text if len(text) <= width else text[: width - 16] + "~" + text[-15:]


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v < 100:
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    return f"{v:,.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    ap.add_argument("--json", help="write every row, the machine and timings here")
    args = ap.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")

    info = machine()
    t_all = time.monotonic()
    rows: list[Row] = []
    failed, timings = [], {}
    with tempfile.TemporaryDirectory(prefix="fastexec-bench-") as tmp:
        for name in chosen:
            t0 = time.monotonic()
            try:
                rows += SECTIONS[name](tmp, args.quick)
            except Exception as exc:
                failed.append(name)
                rows.append(Row(name, "FAILED", None, "", note=str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else repr(exc)))
                print(f"section {name} FAILED: {exc}", file=sys.stderr)
            timings[name] = round(time.monotonic() - t0, 1)
            print(f"-- {name}: {timings[name]} s", file=sys.stderr, flush=True)
    total = round(time.monotonic() - t_all, 1)

    print(f"\nfastexec benchmarks  {info['date']}  git {info['git']}  {info['cpu']} x{info['cores']}  "
          f"python {info['python']}  load {info['load_at_start']:.2f} at start")
    print("ratio: > 1 means fastexec does better than the reference measured in the same run "
          "(reference time / fastexec time; for /s rows fastexec rate / reference rate)")
    hdr = f"{'section':<10} {'figure':<48} {'fastexec':>12} {'unit':<8} {'reference':<26} {'ref value':>12} {'ratio':>8}  {'target':<20} note"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ratio = f"x{r.ratio}" if r.ratio is not None else ""
        if r.value is None and not r.ref_name:  # a verbatim line (journal) or a failure
            print(f"{r.section:<10} {r.figure}{('  ' + r.note) if r.note else ''}")
            continue
        print(f"{r.section:<10} {clip(r.figure, 48):<48} {fmt(r.value):>12} {r.unit:<8} {r.ref_name[:26]:<26} "
              f"{fmt(r.ref_value):>12} {ratio:>8}  {r.target():<20} {r.note}")
    print(f"\n{total} s in all ({', '.join(f'{k} {v}s' for k, v in timings.items())})"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "seconds": total, "timings": timings, "failed": failed,
                       "rows": [r.as_dict() for r in rows]}, fh, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
