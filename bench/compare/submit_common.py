"""What ``fx_submit.py`` and ``nt_submit.py`` share: their command line and
the JSON summary of per-order latencies they print.

Standard library only: it is imported by both sides, and NautilusTrader's side
runs in its own venv, where fastexec is not installed (and fastexec's side must
never import NautilusTrader). Both scripts run as files from this folder, so
it is on their ``sys.path``.
"""
from __future__ import annotations

import argparse
import json
import sys


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--units", type=int, default=10_000)
    ap.add_argument("--flow", choices=("roundtrip", "held"), default="roundtrip")
    args = ap.parse_args(argv)
    if not (0 < args.orders <= 1_000_000 and 0 <= args.warmup <= 100_000):
        raise SystemExit("orders/warmup out of bounds")
    return args


def print_summary(impl: str, flow: str, version: str, samples: list[int], **extra) -> None:
    """One JSON line: p50/p99/mean of ``samples`` (ns, warm-up already cut),
    the p50 of opens (even orders) and closes (odd), and of the first and last
    500 orders (drift as a position accumulates fills). ``extra`` goes in after
    the order count."""
    s = sorted(samples)
    n = len(s)
    opens, closes = sorted(samples[0::2]), sorted(samples[1::2])
    first, last = sorted(samples[:500]), sorted(samples[-500:])
    print(json.dumps({
        "impl": impl,
        "flow": flow,
        "version": version,
        "python": sys.version.split()[0],
        "orders": n,
        **extra,
        "p50_ns": s[n // 2],
        "p99_ns": s[min(n - 1, (99 * n) // 100)],
        "mean_ns": sum(s) // n,
        "open_p50_ns": opens[len(opens) // 2],
        "close_p50_ns": closes[len(closes) // 2],
        "first500_p50_ns": first[len(first) // 2],
        "last500_p50_ns": last[len(last) // 2],
    }))
