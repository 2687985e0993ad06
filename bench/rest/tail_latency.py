#!/usr/bin/env python3
"""One client's latency tail over a long run: what a strategy sending one order at a time sees.

    python bench/rest/tail_latency.py [--requests 100000] [--preload-seconds 10] [--durability none]

Starts ``fastexec serve`` and the bare echo server on CPU 0 (``run_wrk.serve_and_echo``),
optionally fills the engine first with wrk at 32 connections (so the run crosses the
retention windows, the dedupe window and the periodic snapshot a long-lived engine
goes through), then sends ``--requests`` market orders on one keep-alive connection
from this process on CPU 1, one at a time, and the same count of bodies to the echo
server. Reports p50 .. p99.99 and max of each, and the slowest orders with their index,
so a periodic stall shows up as a pattern instead of a percentile.

Why not wrk's ``--latency`` for the tail: on this machine its histogram for a
one-connection order run has held 1-2 % of samples above 1 ms that its own
system calls (traced with ``perf record -e syscalls:*``) do not show: its write
of each request and its read of the answer were < 250 us apart at p99. The median
agrees; the tail does not, so it is measured here, by timing each request
around blocking ``send``/``recv``.

Bounded: ``--requests`` (at most 1,000,000) per server, plus the preload's seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from urllib.parse import urlsplit

from run_wrk import run_wrk, serve_and_echo

PERCENTILES = (50, 90, 99, 99.9, 99.99)


def _requests(url: str, account: str) -> list[bytes]:
    path = urlsplit(url).path
    out = []
    for side in ("buy", "sell"):  # alternating, so the position stays flat
        body = json.dumps({"account_id": account, "instrument": "EUR_USD", "units": 100, "side": side,
                           "type": "market"}, separators=(",", ":")).encode()
        out.append(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
    return out


def _read_response(sock: socket.socket) -> bytes:
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
        head = buf.find(b"\r\n\r\n")
        if head >= 0:
            length = 0
            for line in buf[:head].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(buf) >= head + 4 + length:
                return buf


def one_client(url: str, account: str, n: int) -> dict:
    """``n`` requests on one connection, one at a time: latencies in ns, and any non-2xx."""
    u = urlsplit(url)
    reqs = _requests(url, account)
    lat = [0] * n
    bad = 0
    clock = time.perf_counter_ns
    with socket.create_connection((u.hostname, u.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n):
            t0 = clock()
            s.sendall(reqs[i & 1])
            resp = _read_response(s)
            lat[i] = clock() - t0
            if not resp.startswith(b"HTTP/1.1 2"):
                bad += 1
    return {"lat": lat, "non_2xx": bad}


def summarize(lat: list[int], top: int) -> dict:
    order = sorted(range(len(lat)), key=lat.__getitem__)
    n = len(lat)
    out = {f"p{p:g}_us": round(lat[order[min(n - 1, int(n * p / 100))]] / 1e3, 1) for p in PERCENTILES}
    out["max_us"] = round(lat[order[-1]] / 1e3, 1)
    out["over_1ms"] = sum(1 for x in lat if x > 1_000_000)
    out["slowest"] = [[i, round(lat[i] / 1e3)] for i in sorted(order[-top:])]  # [index, us], in run order
    return out


@contextlib.contextmanager
def _pinned(cpu: int):
    """This process on ``cpu`` (the servers are on CPU 0) for the block, then as it was."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--preload-seconds", type=int, default=10,
                   help="wrk at 32 connections before the one-client run (0 = none; needs wrk)")
    p.add_argument("--durability", choices=("fsync", "fdatasync", "none"), default="fsync")
    p.add_argument("--top", type=int, default=12, help="list this many slowest requests")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not (0 < args.requests <= 1_000_000 and 0 <= args.preload_seconds <= 60):
        p.error("--requests must be 1..1000000 and --preload-seconds 0..60")
    if args.preload_seconds and not shutil.which("wrk"):
        p.error("--preload-seconds needs wrk (apt-get install wrk), or pass 0")
    with serve_and_echo(args.durability) as (serve, echo, orders_url, echo_url, account):
        if args.preload_seconds:
            run_wrk(orders_url, account, args.preload_seconds, 32, False)
        with _pinned(1):
            one_client(orders_url, account, 2000)  # warm the connection path
            one_client(echo_url, account, 2000)
            orders = one_client(orders_url, account, args.requests)
            echo = one_client(echo_url, account, args.requests)
    result = {"requests": args.requests, "preload_seconds": args.preload_seconds, "durability": args.durability,
              "orders": summarize(orders["lat"], args.top), "echo": summarize(echo["lat"], args.top),
              "orders_non_2xx": orders["non_2xx"]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name in ("orders", "echo"):
            r = result[name]
            pct = "  ".join(f"p{p:g} {r[f'p{p:g}_us']:.0f}" for p in PERCENTILES)
            print(f"{name:6s} {pct}  max {r['max_us']:.0f} us  >1ms: {r['over_1ms']}")
            print(f"       slowest [index, us]: {r['slowest']}")
    if orders["non_2xx"]:
        print(f"{orders['non_2xx']} orders were not accepted: the figures are not order latency", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
