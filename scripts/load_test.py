#!/usr/bin/env python3
"""Open-loop load test of a running ``fastexec serve`` (seed README "Load Testing").

    python scripts/load_test.py --rate 100 --duration 60
    python scripts/load_test.py --rate 1000 --duration 10 --burst

Open loop: requests are scheduled at fixed times (``rate`` per second) and
sent whether or not earlier ones have been answered, the way independent
strategies send orders. Latency is measured from each request's *scheduled*
time, so a server that stalls is charged for the queue it builds (no
coordinated omission). ``--burst`` sends the same rate as batches every
``--burst-interval-ms`` (default 100 ms: 100 orders at once at 1000/s) instead
of evenly spaced requests.

Orders are small market orders alternating buy and sell so the net position
stays flat and the risk gateway's position limits are not what is measured.
The run is bounded: at most ``--duration`` seconds of sending (<= 600) plus
``--timeout`` for the last answers, and by default only loopback URLs are
accepted.

Outcomes: ``acked`` = 201 (order accepted by the engine), ``rejected`` =
refused by the engine (422 risk/broker, 423 kill switch, 409), ``errors`` =
anything else (4xx input errors, 5xx, timeouts, connection failures). The
latency percentiles are of acked orders only (a fast refusal is not an
execution); refusals have their own (``refused_p50_ms``, ``refused_p95_ms``).
``achieved_rate`` is orders sent over the whole sending schedule (the last
burst's interval included). Exit status is 1 when there were errors,
unanswered requests, refusals (unless ``--allow-refusals``), no acked order at
all, or the acked p95 exceeded ``--max-p95-ms``; 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
from urllib.parse import urlsplit

try:
    import orjson

    _dumps = orjson.dumps
except ImportError:  # pragma: no cover
    def _dumps(obj):
        return json.dumps(obj).encode()

import aiohttp

MAX_DURATION = 600
MAX_RATE = 20_000


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = max(0, min(len(sorted_values) - 1, -(-int(p * len(sorted_values)) // 100) - 1))
    return sorted_values[idx]


class LoadTestError(Exception):
    """The run cannot start (server unreachable, no account): one line, exit 1."""


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.rejected = 0
        self.errors = 0
        self.latencies: list[float] = []  # acked orders only
        self.reject_latencies: list[float] = []
        self.error_kinds: dict[str, int] = {}
        self.reject_kinds: dict[str, int] = {}
        self.inflight = 0

    def summary(self, wall: float) -> dict:
        lat = sorted(self.latencies)
        rej = sorted(self.reject_latencies)
        done = self.acked + self.rejected + self.errors
        return {
            "sent": self.sent,
            "acked": self.acked,
            "rejected": self.rejected,
            "errors": self.errors,
            "unanswered": self.sent - done,
            "p50_ms": round(percentile(lat, 50) * 1000, 3),
            "p95_ms": round(percentile(lat, 95) * 1000, 3),
            "p99_ms": round(percentile(lat, 99) * 1000, 3),
            "max_ms": round(lat[-1] * 1000, 3) if lat else float("nan"),
            "refused_p50_ms": round(percentile(rej, 50) * 1000, 3),
            "refused_p95_ms": round(percentile(rej, 95) * 1000, 3),
            "achieved_rate": round(self.sent / wall, 1) if wall > 0 else 0.0,
            "answered_rate": round(done / wall, 1) if wall > 0 else 0.0,
            "wall_seconds": round(wall, 3),
            "error_kinds": self.error_kinds,
            "reject_kinds": self.reject_kinds,
        }


async def _discover_account(session: aiohttp.ClientSession, url: str, headers: dict) -> str:
    try:
        async with session.get(f"{url}/api/v1/accounts", headers=headers) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
        raise LoadTestError(f"cannot reach {url}/api/v1/accounts: {type(exc).__name__}: {exc}") from None
    if resp.status != 200 or not isinstance(body, dict) or not body.get("accounts"):
        raise LoadTestError(f"cannot discover an account at {url}/api/v1/accounts: HTTP {resp.status} {body}")
    return body["accounts"][0]["account_id"]


async def run(args: argparse.Namespace) -> dict:
    url = args.url.rstrip("/")
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections, force_close=False)
    stats = Stats()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, json_serialize=lambda o: _dumps(o).decode()) as session:
        account = args.account or await _discover_account(session, url, headers)
        bodies = [
            _dumps({"account_id": account, "instrument": args.instrument, "units": args.units, "side": side, "type": "market"})
            for side in ("buy", "sell")
        ]
        orders_url = f"{url}/api/v1/orders"
        loop = asyncio.get_running_loop()
        total = int(args.rate * args.duration)
        tasks: set[asyncio.Task] = set()

        clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution

        async def one(i: int, scheduled: float) -> None:
            stats.inflight += 1
            try:
                async with session.post(orders_url, data=bodies[i & 1], headers=headers) as resp:
                    payload = await resp.read()
                    elapsed = clock() - scheduled
                    if resp.status == 201:
                        stats.acked += 1
                        stats.latencies.append(elapsed)
                    elif resp.status in (409, 422, 423):
                        stats.rejected += 1
                        stats.reject_latencies.append(elapsed)
                        code = _code(payload)
                        stats.reject_kinds[code] = stats.reject_kinds.get(code, 0) + 1
                    else:
                        stats.errors += 1
                        kind = f"HTTP {resp.status} {_code(payload)}"
                        stats.error_kinds[kind] = stats.error_kinds.get(kind, 0) + 1
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                stats.errors += 1
                kind = type(exc).__name__
                stats.error_kinds[kind] = stats.error_kinds.get(kind, 0) + 1
            finally:
                stats.inflight -= 1

        if args.burst:
            batch = max(1, round(args.rate * args.burst_interval_ms / 1000))
            interval = batch / args.rate
        else:
            batch, interval = 1, 1.0 / args.rate
        tty = sys.stderr.isatty()
        start = clock() + 0.05
        next_report = start + 1.0
        i = 0
        while i < total:
            due = start + (i // batch) * interval
            now = clock()
            if due > now:
                await asyncio.sleep(due - now)
            now = clock()
            # send everything that is due (catches up if the client fell behind)
            while i < total and start + (i // batch) * interval <= now:
                t = loop.create_task(one(i, start + (i // batch) * interval))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                stats.sent += 1
                i += 1
            if now >= next_report:
                next_report += 1.0
                _progress(stats, now - start, tty)
        send_end = clock()
        if tasks:
            await asyncio.wait(set(tasks), timeout=args.timeout + 1)
        # the schedule spans every slot's interval, the last one included (a
        # burst run's last batch goes out at the start of its interval)
        slots = -(-total // batch)
        wall = max(send_end - start, slots * interval)
        if tty:
            sys.stderr.write("\n")
        summary = stats.summary(wall)
        summary.update({"rate": args.rate, "duration": args.duration, "burst": bool(args.burst), "account_id": account})
        return summary


def _code(payload: bytes) -> str:
    try:
        return json.loads(payload)["error"]["code"]
    except Exception:
        return "?"


def _progress(stats: Stats, t: float, tty: bool) -> None:
    lat = sorted(stats.latencies[-5000:])
    line = (
        f"t={t:5.1f}s sent={stats.sent} acked={stats.acked} rejected={stats.rejected} errors={stats.errors} "
        f"inflight={stats.inflight} p95(recent)={percentile(lat, 95) * 1000:.2f}ms"
    )
    if tty:
        sys.stderr.write("\r" + line.ljust(110))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, required=True, help="orders per second")
    p.add_argument("--duration", type=float, required=True, help=f"seconds of sending (max {MAX_DURATION})")
    p.add_argument("--burst", action="store_true", help="send in batches every --burst-interval-ms instead of evenly spaced")
    p.add_argument("--burst-interval-ms", type=float, default=100.0)
    p.add_argument("--url", default="http://127.0.0.1:8004")
    p.add_argument("--token", help="bearer token (or set FASTEXEC_LOAD_TOKEN)")
    p.add_argument("--account", help="account id (default: the first of GET /api/v1/accounts)")
    p.add_argument("--instrument", default="EUR_USD")
    p.add_argument("--units", type=int, default=100)
    p.add_argument("--connections", type=int, default=64, help="client connection pool size")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--max-p95-ms", type=float, default=100.0, help="exit 1 when the acked orders' p95 exceeds this")
    p.add_argument("--allow-refusals", action="store_true",
                   help="do not fail the run when the engine refuses orders (risk limits, rate limit, kill switch)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback URL (you own that server)")
    args = p.parse_args(argv)
    import os

    args.token = args.token or os.environ.get("FASTEXEC_LOAD_TOKEN")
    if not 0 < args.rate <= MAX_RATE:
        p.error(f"--rate must be in (0, {MAX_RATE}]")
    if not 0 < args.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION}]")
    if args.rate * args.duration < 1:
        p.error("--rate x --duration is less than one order")
    if args.connections < 1:
        p.error("--connections must be at least 1 (aiohttp takes 0 as an unlimited pool)")
    if not _loopback(args.url) and not args.allow_remote:
        p.error(f"{args.url} is not a loopback address; pass --allow-remote to load a server you own")
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        try:
            summary = runner.run(run(args))
        except LoadTestError as exc:
            print(f"load_test: {exc}", file=sys.stderr)
            return 1
    reasons = []
    if summary["errors"] or summary["unanswered"]:
        reasons.append(f"{summary['errors']} errors, {summary['unanswered']} unanswered")
    if summary["rejected"] and not args.allow_refusals:
        reasons.append(f"{summary['rejected']} of {summary['sent']} orders refused {summary['reject_kinds']} "
                       "(--allow-refusals to accept)")
    if not summary["acked"]:
        reasons.append("no order was acked")
    elif not summary["p95_ms"] <= args.max_p95_ms:
        reasons.append(f"acked p95 {summary['p95_ms']}ms above --max-p95-ms {args.max_p95_ms:g}")
    summary["failed"] = reasons
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"rate={summary['rate']:g}/s duration={summary['duration']:g}s burst={summary['burst']}\n"
            f"sent={summary['sent']} acked={summary['acked']} rejected={summary['rejected']} errors={summary['errors']} "
            f"unanswered={summary['unanswered']}\n"
            f"acked latency p50={summary['p50_ms']}ms p95={summary['p95_ms']}ms p99={summary['p99_ms']}ms max={summary['max_ms']}ms\n"
            f"achieved rate={summary['achieved_rate']}/s (answered {summary['answered_rate']}/s)"
        )
        if summary["error_kinds"]:
            print(f"errors: {summary['error_kinds']}")
        if summary["reject_kinds"]:
            print(f"rejections: {summary['reject_kinds']} (refused latency p50={summary['refused_p50_ms']}ms "
                  f"p95={summary['refused_p95_ms']}ms)")
    if reasons:
        print("FAILED: " + "; ".join(reasons), file=sys.stderr)
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
