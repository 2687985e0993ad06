#!/usr/bin/env python3
"""Two builds of fastexec under wrk in the same run: is a change faster over REST?

    git worktree add /tmp/base <commit> && (cd /tmp/base && python setup.py build_ext --inplace -j 2)
    python bench/rest/ab_wrk.py /tmp/base/src src [--reps 6] [--seconds 3] [--durability none] [--single]

Starts ``fastexec serve`` from each source tree (``PYTHONPATH``), both pinned
to CPU 0, drives both to steady state (``--warm`` rounds of 2 s each, so every
retention window is full: a fresh engine is cheaper per order than one that
has to forget old orders), then alternates ``--seconds`` wrk runs between them
(wrk on CPU 1) and reports medians of orders/s, CPU per request and, with
``--single``, one-connection p50. Alternating within seconds means both see
the same load on this shared machine; the CPU per request is the steadier of
the two figures. Bounded: ``(warm * 2 + reps * seconds) * 2`` seconds of
loopback load, then both servers are stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request

from run_wrk import _taskset, free_port, run_wrk, wait_http


def _start(src: str, durability: str, extra_env: dict) -> tuple[subprocess.Popen, str, str, str]:
    port, mport = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="fastexec-ab-")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src), LOG_LEVEL="warning", FASTEXEC_DATA_DIR=data,
               MAX_ORDERS_PER_SECOND="1000000", MAX_DAILY_LOSS="1000000000", MAX_CONCURRENT_ORDERS="100000",
               FASTEXEC_API_TOKENS="", FASTEXEC_JOURNAL_DURABILITY=durability, **extra_env)
    env.pop("OANDA_API_KEY", None)
    env.pop("OANDA_ACCOUNT_ID", None)
    proc = subprocess.Popen(
        _taskset(0) + [sys.executable, "-m", "fastexec.service", "--port", str(port), "--metrics-port", str(mport)],
        env=env, cwd=data, stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "serve.log"), "w"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health")
    with urllib.request.urlopen(base + "/api/v1/accounts") as resp:
        account = json.load(resp)["accounts"][0]["account_id"]
    return proc, base + "/api/v1/orders", account, data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="source tree A (the directory holding the fastexec package)")
    ap.add_argument("b", help="source tree B")
    ap.add_argument("--warm", type=int, default=6, help="2-second warm-up rounds per server (default 6)")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--durability", choices=("fsync", "fdatasync", "none"), default="none")
    ap.add_argument("--single", action="store_true", help="one connection, with p50 latency")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment for both servers")
    args = ap.parse_args(argv)
    if not (0 <= args.warm <= 30 and 0 < args.reps <= 20 and 0 < args.seconds <= 30):
        ap.error("--warm 0..30, --reps 1..20, --seconds 1..30")
    extra = dict(kv.split("=", 1) for kv in args.env)
    servers: dict[str, tuple] = {}
    try:
        for name, src in (("A", args.a), ("B", args.b)):
            servers[name] = _start(src, args.durability, extra)
        for _ in range(args.warm):
            for proc, url, account, _data in servers.values():
                run_wrk(url, account, 2, 32, False)
        rows: dict[str, list] = {name: [] for name in servers}
        for rep in range(args.reps):
            for name, (proc, url, account, _data) in servers.items():
                rows[name].append(run_wrk(url, account, args.seconds, 1 if args.single else 32, args.single, pid=proc.pid))
            print(f"rep {rep + 1}: " + "  ".join(
                f"{n} {r[-1]['rps']:.0f}/s {r[-1]['cpu_us_per_req']:.1f} us CPU"
                + (f" p50 {r[-1]['p50_s'] * 1e6:.0f} us" if args.single else "") for n, r in rows.items()), file=sys.stderr)
        med = statistics.median
        for name, r in rows.items():
            line = (f"{name} ({getattr(args, name.lower())}): {med(x['rps'] for x in r):.0f} orders/s, "
                    f"{med(x['cpu_us_per_req'] for x in r):.1f} us CPU per request")
            if args.single:
                line += f", p50 {med(x['p50_s'] for x in r) * 1e6:.0f} us"
            print(line)
        a_cpu, b_cpu = (med(x["cpu_us_per_req"] for x in rows[n]) for n in ("A", "B"))
        print(f"B/A CPU per request: {b_cpu / a_cpu:.3f}")
        return 0
    finally:
        for proc, *_ in servers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, *_ in servers.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for *_, data in servers.values():
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
