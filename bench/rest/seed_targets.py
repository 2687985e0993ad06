#!/usr/bin/env python3
"""The seed README's performance targets that the load test does not cover, against
``fastexec serve`` (journal fsync, simulated venue) on loopback.

    python bench/rest/seed_targets.py [--orders 300] [--concurrency 50] [--rate 100] [--seconds 20] [--json]

``scripts/load_test.py`` measures market orders (sustained 100/s, 1,000/s bursts).
This measures the rest of the seed's table, each over real HTTP:

* order modification and cancellation (< 50 ms): resting limit orders (a buy far
  below the market) are modified (new price) and then cancelled, three at a time
  (the seed's ``MAX_POSITIONS_PER_INSTRUMENT`` counts working orders);
* position close (< 100 ms): a market order opens a position, ``POST
  /api/v1/positions/close`` closes it;
* CPU use with 50 concurrent clients (< 10 %): ``--concurrency`` clients send
  market orders open-loop at ``--rate`` orders/s in total for ``--seconds``; the
  server process's CPU time over the wall time (100 % = one core), from /proc.
  The server runs on CPU 0 and this client on CPU 1 (as ``run_wrk.py`` does).

Latencies are client-side (request sent to answer read), p50/p95/p99/max in ms.
Every run is bounded (``--orders`` requests per scenario, ``--seconds`` of load)
and loopback-only; the server is started and stopped here.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from run_wrk import _taskset, cpu_seconds, free_port, wait_http  # noqa: E402


def _load_test_module():
    spec = importlib.util.spec_from_file_location("_fastexec_load_test", ROOT / "scripts" / "load_test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


percentile = _load_test_module().percentile

#: the seed README's targets (p95, ms; CPU percent)
TARGETS = {"modify": 50.0, "cancel": 50.0, "close": 100.0, "cpu_percent": 10.0}


def summary(ms: list[float]) -> dict:
    xs = sorted(ms)
    return {"n": len(xs), "p50_ms": round(percentile(xs, 50), 2), "p95_ms": round(percentile(xs, 95), 2),
            "p99_ms": round(percentile(xs, 99), 2), "max_ms": round(xs[-1], 2)}


class Client:
    def __init__(self, http: aiohttp.ClientSession, base: str, account: str) -> None:
        self.http, self.base, self.account = http, base, account
        self.errors: list[str] = []

    async def call(self, method: str, path: str, body: dict | None = None, ok: tuple = (200, 201)) -> tuple[float, dict]:
        t0 = time.perf_counter()
        async with self.http.request(method, self.base + path, json=body) as r:
            data = await r.json()
            status = r.status
        ms = (time.perf_counter() - t0) * 1e3
        if status not in ok:
            self.errors.append(f"{method} {path} -> {status} {data}")
        return ms, data

    def market(self, side: str, units: int = 1000) -> dict:
        return {"account_id": self.account, "instrument": "EUR_USD", "units": units, "side": side, "type": "market"}


async def modify_and_cancel(c: Client, orders: int) -> tuple[list[float], list[float]]:
    modify, cancel = [], []
    batch = 3  # the seed's MAX_POSITIONS_PER_INSTRUMENT counts working orders too
    done = 0
    while done < orders:
        k = min(batch, orders - done)
        ids = []
        for i in range(k):
            _, o = await c.call("POST", "/api/v1/orders", {
                "account_id": c.account, "instrument": "EUR_USD", "units": 1000, "side": "buy", "type": "limit",
                "price": "1.00000", "time_in_force": "GTC"})
            if "order_id" not in o:
                raise RuntimeError(f"a resting limit order was refused: {o}")
            ids.append(o["order_id"])
        for i, oid in enumerate(ids):
            ms, _ = await c.call("PUT", f"/api/v1/orders/{oid}/modify", {"price": f"1.000{10 + i % 80:02d}"})
            modify.append(ms)
        for oid in ids:
            ms, _ = await c.call("PUT", f"/api/v1/orders/{oid}/cancel")
            cancel.append(ms)
        done += k
    return modify, cancel


async def close_positions(c: Client, orders: int) -> list[float]:
    out = []
    for i in range(orders):
        await c.call("POST", "/api/v1/orders", c.market("buy"))
        ms, _ = await c.call("POST", "/api/v1/positions/close", {"account_id": c.account, "instrument": "EUR_USD"})
        out.append(ms)
    return out


async def cpu_under_clients(c: Client, pid: int, clients: int, rate: float, seconds: float) -> dict:
    """``clients`` tasks share ``rate`` orders/s, open loop (each sends on its own schedule)."""
    per_client = rate / clients
    lat: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(k: int) -> None:
        n = int(per_client * seconds)
        for j in range(n):
            at = start + (j + k / clients) / per_client
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ms, _ = await c.call("POST", "/api/v1/orders", c.market("buy" if (j + k) % 2 == 0 else "sell"))
            lat.append(ms)

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(one(k) for k in range(clients)))
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return {"clients": clients, "rate": rate, "seconds": round(t1 - t0, 2),
            "cpu_percent": round((cpu1 - cpu0) / (t1 - t0) * 100, 2), "orders": summary(lat)}


async def measure(base: str, pid: int, args) -> dict:
    conn = aiohttp.TCPConnector(limit=max(args.concurrency, 1) + 4)
    async with aiohttp.ClientSession(connector=conn) as http:
        async with http.get(base + "/api/v1/accounts") as r:
            account = (await r.json())["accounts"][0]["account_id"]
        c = Client(http, base, account)
        for i in range(50):  # warm-up: imports, caches, connections
            await c.call("POST", "/api/v1/orders", c.market("buy" if i % 2 == 0 else "sell"))
        modify, cancel = await modify_and_cancel(c, args.orders)
        close = await close_positions(c, args.orders)
        cpu = await cpu_under_clients(c, pid, args.concurrency, args.rate, args.seconds)
        out = {"modify": summary(modify), "cancel": summary(cancel), "close": summary(close), "cpu": cpu,
               "errors": c.errors[:20], "error_count": len(c.errors)}
    out["targets"] = {
        "modify p95 < 50 ms": out["modify"]["p95_ms"] < TARGETS["modify"],
        "cancel p95 < 50 ms": out["cancel"]["p95_ms"] < TARGETS["cancel"],
        "close p95 < 100 ms": out["close"]["p95_ms"] < TARGETS["close"],
        f"CPU < 10 % at {args.concurrency} concurrent": cpu["cpu_percent"] < TARGETS["cpu_percent"],
    }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=300, help="requests per latency scenario")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--rate", type=float, default=100.0, help="orders/s in total for the CPU scenario")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the CPU scenario")
    p.add_argument("--durability", choices=("fsync", "fdatasync", "none"), default="fsync")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not (0 < args.orders <= 5000 and 0 < args.concurrency <= 500 and 0 < args.rate <= 2000
            and 0 < args.seconds <= 120):
        p.error("--orders 1..5000, --concurrency 1..500, --rate ..2000, --seconds ..120")
    api_port, metrics_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="fastexec-seed-targets-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OANDA_", "FASTEXEC_"))}
    env.update({"LOG_LEVEL": "warning", "FASTEXEC_DATA_DIR": data_dir, "FASTEXEC_JOURNAL_DURABILITY": args.durability,
                # the latency scenarios send back to back: the per-account rate limit (100/s by default)
                # would deny them, and a denial is not what is measured here
                "MAX_ORDERS_PER_SECOND": "100000"})
    # as run_wrk.py: the server on CPU 0, this client (Python and aiohttp, as costly per request as the
    # server) on CPU 1, so the server's CPU figure is its own and not the client's cache damage
    if _taskset(1):
        os.sched_setaffinity(0, {1})
    serve = subprocess.Popen(
        _taskset(0) + [sys.executable, "-m", "fastexec.service", "--port", str(api_port), "--metrics-port", str(metrics_port)],
        env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=open(os.path.join(data_dir, "serve.log"), "w"))
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_http(base + "/health")
        res = asyncio.run(asyncio.wait_for(measure(base, serve.pid, args), timeout=args.seconds + 300))
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            serve.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    res["durability"] = args.durability
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for name in ("modify", "cancel", "close"):
            s = res[name]
            print(f"{name:7s} n={s['n']:5d}  p50 {s['p50_ms']:7.2f} ms  p95 {s['p95_ms']:7.2f}  p99 {s['p99_ms']:7.2f}  "
                  f"max {s['max_ms']:7.2f}")
        cpu = res["cpu"]
        print(f"CPU     {cpu['cpu_percent']:.2f} % of one core with {cpu['clients']} clients at {cpu['rate']:.0f} orders/s "
              f"for {cpu['seconds']} s (orders p95 {cpu['orders']['p95_ms']} ms)")
        for k, ok in res["targets"].items():
            print(f"  {k}: {'met' if ok else 'NOT MET'}")
        if res["error_count"]:
            print(f"{res['error_count']} unexpected answers, e.g. {res['errors'][:3]}")
    return 0 if res["error_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
