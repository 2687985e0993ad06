#!/usr/bin/env python3
"""REST submit throughput and single-client latency, beside a bare echo server.

    python bench/rest/run_wrk.py [--reps 5] [--seconds 5] [--connections 32] [--json]

Starts ``fastexec serve`` (simulated venue, logs at warning) and
``bench/rest/echo_server.py`` on loopback, each pinned to CPU 0, and drives
both with wrk pinned to CPU 1, alternating between them in every repetition so
both see the same machine load. Reports medians over the repetitions:

* orders/s of ``POST /api/v1/orders`` (market orders, alternating buy/sell,
  filled by the simulated venue) and req/s of the echo server, and the ratio;
* single-client (1 connection) p50 latency of each, from wrk ``--latency``.

Targets (DESIGN.md): >= 10,000 orders/s, >= 0.6 x echo, single-client p50 <= 150 us.
Every run is bounded (``--seconds`` per wrk call, ``--reps`` calls) and loopback-only.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {last}")


def _taskset(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _duration(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process: contention on a shared box
    stretches wall time but not (much) the CPU one request costs, so CPU per
    request gives a steadier "orders/s on one core" than the wall-clock rate
    alone. The split shows what the kernel's side costs (sockets, the journal's
    writes) against the interpreter's."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def run_wrk(url: str, account: str, seconds: float, connections: int, latency: bool, token: str | None = None,
            pid: int | None = None) -> dict:
    cmd = _taskset(1) + [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
        "-s", str(HERE / "post.lua"),
    ]
    if latency:
        cmd.append("--latency")
    cmd += [url, "--", account] + ([token] if token else [])
    u0, s0 = cpu_split(pid) if pid else (0.0, 0.0)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    u1, s1 = cpu_split(pid) if pid else (0.0, 0.0)
    cpu = (u1 - u0) + (s1 - s0)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    result = {"rps": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(0) if errors else None}
    if pid and total:
        result["cpu_us_per_req"] = cpu / total * 1e6
        result["sys_us_per_req"] = (s1 - s0) / total * 1e6
    if latency:
        m = re.search(r"^\s+50%\s+(\S+)", out, re.M)
        result["p50_s"] = _duration(m.group(1))
        m99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
        result["p99_s"] = _duration(m99.group(1))
    return result


@contextlib.contextmanager
def serve_and_echo(durability: str = "fsync", busy_poll_us: int = 0):
    """``fastexec serve`` (simulated venue, logs at warning, risk limits raised so a
    long run measures orders, not denials) and the bare echo server, both pinned to
    CPU 0 on loopback; yields ``(serve, echo, orders_url, echo_url, account)`` and
    stops both (and removes the data directory) however the block ends."""
    api_port, metrics_port, echo_port = free_port(), free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="fastexec-wrk-")
    env = dict(os.environ)
    env.update(
        {
            "LOG_LEVEL": "warning",
            "FASTEXEC_DATA_DIR": data_dir,
            "MAX_ORDERS_PER_SECOND": "1000000",
            # every buy/sell round trip pays the spread; a long run would hit
            # the default daily loss limit and measure denials instead of orders
            "MAX_DAILY_LOSS": "1000000000",
            "MAX_CONCURRENT_ORDERS": "100000",
            "FASTEXEC_API_TOKENS": "",
            "FASTEXEC_JOURNAL_DURABILITY": durability,
        }
    )
    env.pop("OANDA_API_KEY", None)
    env.pop("OANDA_ACCOUNT_ID", None)
    procs = []
    try:
        serve = subprocess.Popen(
            _taskset(0) + [sys.executable, "-m", "fastexec.service", "--port", str(api_port), "--metrics-port", str(metrics_port),
                           "--busy-poll-us", str(busy_poll_us)],
            env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=open(os.path.join(data_dir, "serve.log"), "w"),
        )
        procs.append(serve)
        echo = subprocess.Popen(
            _taskset(0) + [sys.executable, str(HERE / "echo_server.py"), "--port", str(echo_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(echo)
        base = f"http://127.0.0.1:{api_port}"
        wait_http(base + "/health")
        wait_http(f"http://127.0.0.1:{echo_port}/echo", "POST", b"{}")
        with urllib.request.urlopen(base + "/api/v1/accounts") as resp:
            account = json.load(resp)["accounts"][0]["account_id"]
        yield serve, echo, base + "/api/v1/orders", f"http://127.0.0.1:{echo_port}/echo", account
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seconds", type=int, default=5, help="per wrk run (single-client runs take half, at least 1)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--json", action="store_true")
    p.add_argument("--busy-poll-us", type=int, default=0,
                   help="fastexec serve --busy-poll-us (0 = off, the default): keep its loop polling after a request")
    p.add_argument("--durability", choices=("fsync", "fdatasync", "none"), default="fsync",
                   help="the journal's durability (fsync = what fastexec serve does by default)")
    args = p.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    if not (0 < args.reps <= 20 and 0 < args.seconds <= 30):
        p.error("--reps must be 1..20 and --seconds 0..30")

    with serve_and_echo(args.durability, args.busy_poll_us) as (serve, echo, orders_url, echo_url, account):
        # warm-up: imports, caches, first allocations
        run_wrk(orders_url, account, 1, args.connections, False)
        run_wrk(echo_url, account, 1, args.connections, False)
        rows = []
        for rep in range(args.reps):
            row = {
                "echo": run_wrk(echo_url, account, args.seconds, args.connections, False, pid=echo.pid),
                "orders": run_wrk(orders_url, account, args.seconds, args.connections, False, pid=serve.pid),
                "echo_1": run_wrk(echo_url, account, args.seconds / 2, 1, True),
                "orders_1": run_wrk(orders_url, account, args.seconds / 2, 1, True),
            }
            rows.append(row)
            print(
                f"rep {rep + 1}: orders {row['orders']['rps']:.0f}/s echo {row['echo']['rps']:.0f}/s "
                f"ratio {row['orders']['rps'] / row['echo']['rps']:.2f}  single-client p50 orders "
                f"{row['orders_1']['p50_s'] * 1e6:.0f}us echo {row['echo_1']['p50_s'] * 1e6:.0f}us  "
                f"CPU/req orders {row['orders']['cpu_us_per_req']:.0f}us (sys {row['orders']['sys_us_per_req']:.0f}) "
                f"echo {row['echo']['cpu_us_per_req']:.0f}us (sys {row['echo']['sys_us_per_req']:.0f})  "
                f"non-2xx orders={row['orders']['non_2xx'] + row['orders_1']['non_2xx']}",
                file=sys.stderr,
            )
        med = statistics.median
        summary = {
            "reps": args.reps,
            "seconds": args.seconds,
            "connections": args.connections,
            "durability": args.durability,
            "busy_poll_us": args.busy_poll_us,
            "orders_per_s": round(med(r["orders"]["rps"] for r in rows)),
            "echo_per_s": round(med(r["echo"]["rps"] for r in rows)),
            "ratio": round(med(r["orders"]["rps"] / r["echo"]["rps"] for r in rows), 3),
            "orders_p50_us_1client": round(med(r["orders_1"]["p50_s"] for r in rows) * 1e6, 1),
            "echo_p50_us_1client": round(med(r["echo_1"]["p50_s"] for r in rows) * 1e6, 1),
            "orders_p99_us_1client": round(med(r["orders_1"]["p99_s"] for r in rows) * 1e6, 1),
            "orders_non_2xx": sum(r["orders"]["non_2xx"] + r["orders_1"]["non_2xx"] for r in rows),
            "orders_cpu_us_per_req": round(med(r["orders"]["cpu_us_per_req"] for r in rows), 1),
            "echo_cpu_us_per_req": round(med(r["echo"]["cpu_us_per_req"] for r in rows), 1),
            "orders_sys_us_per_req": round(med(r["orders"]["sys_us_per_req"] for r in rows), 1),
            "echo_sys_us_per_req": round(med(r["echo"]["sys_us_per_req"] for r in rows), 1),
        }
        summary["orders_per_s_per_core_by_cpu"] = round(1e6 / summary["orders_cpu_us_per_req"])
        summary["echo_per_s_per_core_by_cpu"] = round(1e6 / summary["echo_cpu_us_per_req"])
        summary["ratio_by_cpu"] = round(summary["echo_cpu_us_per_req"] / summary["orders_cpu_us_per_req"], 3)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(
                f"REST submit: {summary['orders_per_s']} orders/s (median of {args.reps} x {args.seconds}s, {args.connections} connections)\n"
                f"echo server: {summary['echo_per_s']} req/s\n"
                f"ratio:       {summary['ratio']}\n"
                f"single-client p50: orders {summary['orders_p50_us_1client']} us, echo {summary['echo_p50_us_1client']} us "
                f"(orders p99 {summary['orders_p99_us_1client']} us)\n"
                f"non-2xx order responses: {summary['orders_non_2xx']}\n"
                f"CPU per request (server process, under wrk): orders {summary['orders_cpu_us_per_req']} us, "
                f"echo {summary['echo_cpu_us_per_req']} us (of which kernel: orders {summary['orders_sys_us_per_req']} us, "
                f"echo {summary['echo_sys_us_per_req']} us) -> one-core capacity {summary['orders_per_s_per_core_by_cpu']} orders/s "
                f"vs echo {summary['echo_per_s_per_core_by_cpu']}/s, ratio {summary['ratio_by_cpu']}"
            )
        if summary["orders_non_2xx"]:
            print("some orders were not accepted: the figures above are not order throughput", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
