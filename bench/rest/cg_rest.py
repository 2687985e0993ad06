#!/usr/bin/env python3
"""Instructions per REST request under callgrind (echo vs fastexec submit).

    python bench/rest/cg_rest.py [--reps 2] [--cache-sim] [rest_echo rest_orders rest_orders_stub order_view_to_dict]

Uses the core gate's machinery (``bench/callgrind/gate.py``: the cgmark
helper, ``(I(2N) - I(N)) / N``) on the paths in ``cg_paths.py``. Deterministic
to well under 1 %, unlike timings on the shared box; about a minute.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "callgrind"))

import gate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", help="keep the callgrind.out files in this directory")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the caches (L1d 48 KiB, L2 1 MiB): misses per request, the cost of "
                         "cold retained state that instruction counts miss; about 3x slower")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    res = gate.measure(os.path.join(HERE, "cg_paths.py") + ":PATHS", args.names or None, reps=args.reps, scale=args.scale, keep=args.keep,
                        cache_sim=args.cache_sim)
    meta = res.pop("_meta")
    out = {name: {"ir_per_request": r["ir_per_call"], "reps": r["reps"]} for name, r in sorted(res.items())}
    for name, r in res.items():
        if "per_call" in r:  # Dr/Dw: data reads/writes; I1mr, D1mr/D1mw: L1 misses; ILmr, DLmr/DLmw: L2 ("LL") misses
            out[name]["events_per_request"] = {k: v for k, v in r["per_call"].items() if k != "Ir"}
    echo = res.get("rest_echo", {}).get("ir_per_call")
    if echo:
        for name, r in out.items():
            r["x_echo"] = round(r["ir_per_request"] / echo, 2)
    out["_seconds"] = meta["seconds"]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
