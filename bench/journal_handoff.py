#!/usr/bin/env python3
"""Where a one-client ``fsync`` acknowledgement spends its time, on each of its paths:
written on the loop (a lone acknowledgement, what one client gets), submitted as a direct
write through Linux AIO at the end of a busy turn (what an acknowledgement under load
gets), and handed to the journal's writer thread (the same without direct I/O), with each
hand-off timed.

    python bench/journal_handoff.py [--orders 2000] [--durability fsync|fdatasync]

A closed loop of market orders through ``JournaledEngine`` over the simulated
venue, one at a time, on the process's current CPUs (pin it with ``taskset -c 0``
to see the one-core case). The loop path is timed as a whole (submit to ack). For
the other two each order's turn is marked busy (as after a turn with several
acknowledgements), and the writer's own methods are wrapped to stamp the time
(nothing of its logic is replaced). Direct: the end of the loop turn (``_kick``), the
write submitted (``_submit_direct`` returns), its completion reaped on the loop
(``_reap_direct`` called), ``_done``, the acknowledgement reaching the caller. Thread:
``_kick``, the writer thread waking (``eventfd_read`` returns, GIL held), the batch
taken, the durable write done, the loop told (``call_soon_threadsafe`` returned), the
loop running ``_done``, the acknowledgement reaching the caller. Prints p10/p50/p90 in
microseconds. The write is this disk's; the differences between the totals are the
prices of the hand-offs.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time

STEPS = ("submit -> end of turn (kick)", "kick -> writer thread awake", "awake -> batch taken",
         "durable write", "written -> loop told", "loop told -> loop runs _done", "_done -> ack returned", "total")
DIRECT_STEPS = ("submit -> end of turn (kick)", "kick -> write submitted", "submitted -> completion reaped",
                "reaped -> loop runs _done", "_done -> ack returned", "total")


def instrument(W, stamps: dict) -> None:
    """Wrap (not replace) the writer's steps to record when each one happens."""
    ns = time.perf_counter_ns

    def wrap(name, key, before=True, first=False):
        orig = getattr(W.JournalWriter, name)

        def f(self, *a):
            if before:
                if key == "kick":
                    stamps.clear()
                stamps[key] = ns()
                return orig(self, *a)
            out = orig(self, *a)
            if not (first and key in stamps):
                stamps[key] = ns()
            return out
        setattr(W.JournalWriter, name, f)

    wrap("_kick", "kick")
    wrap("_take", "taken", before=False)
    wrap("_write_batch", "written", before=False)
    wrap("_after_batch", "told")  # runs right after call_soon_threadsafe returns
    wrap("_done", "done")
    wrap("_submit_direct", "submitted", before=False, first=True)  # not the reap's call for a next batch
    wrap("_reap_direct", "reaped")

    class _Os:  # the writer module's ``os``, with eventfd_read stamped on return
        def __getattr__(self, name):
            return getattr(W._os_real, name)

        @staticmethod
        def eventfd_read(fd):
            v = W._os_real.eventfd_read(fd)
            stamps["awake"] = ns()
            return v

    W._os_real = W.os
    W.os = _Os()


async def run(orders: int, durability: str) -> tuple[list, list, list]:
    from fastexec.config import Settings
    from fastexec.engine import OrderSpec
    from fastexec.journal import writer as W
    from fastexec.journal.integration import JournaledEngine
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue

    stamps: dict = {}
    instrument(W, stamps)
    settings = Settings(max_orders_per_second=10**9, max_position_size=10**9, max_units_per_order=10**9,
                        max_daily_loss=10**15, max_concurrent_orders=10**6)
    ns = time.perf_counter_ns
    loop_path, direct_rows, rows = [], [], []
    for direct in (True, False):
        tmp = tempfile.TemporaryDirectory(prefix="fastexec-handoff-", dir=".")  # this disk, not a tmpfs
        eng = JournaledEngine(settings, SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000")),
                              journal_dir=tmp.name, durability=durability, snapshot_every=0, direct=direct)
        await eng.start()
        acct = eng.account_ids[0]
        specs = (OrderSpec(acct, "EUR_USD", "buy", 1000), OrderSpec(acct, "EUR_USD", "sell", 1000))
        w = eng.journal.writer
        try:
            for j in range(orders if direct else 0):  # lone acknowledgements: written on the loop
                await asyncio.sleep(0)
                t0 = ns()
                await eng.submit(specs[j & 1])
                loop_path.append(ns() - t0)
            for j in range(orders):  # the same, each turn marked busy: a direct write, or the thread
                await asyncio.sleep(0)
                w._busy = True
                t0 = ns()
                await eng.submit(specs[j & 1])
                t1 = ns()
                s = dict(stamps)
                if direct:
                    if {"kick", "submitted", "reaped", "done"} <= s.keys() and t0 < s["kick"] < s["reaped"]:
                        direct_rows.append((s["kick"] - t0, s["submitted"] - s["kick"], s["reaped"] - s["submitted"],
                                            s["done"] - s["reaped"], t1 - s["done"], t1 - t0))
                elif {"kick", "awake", "taken", "written", "told", "done"} <= s.keys() and t0 < s["kick"] < s["awake"]:
                    rows.append((s["kick"] - t0, s["awake"] - s["kick"], s["taken"] - s["awake"],
                                 s["written"] - s["taken"], s["told"] - s["written"], s["done"] - s["told"],
                                 t1 - s["done"], t1 - t0))
        finally:
            await eng.stop()
            tmp.cleanup()
    return loop_path, direct_rows, rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--durability", choices=("fsync", "fdatasync"), default="fsync")
    args = p.parse_args(argv)
    if not 0 < args.orders <= 100_000:
        p.error("--orders 1..100000")
    import logging

    logging.getLogger("fastexec").setLevel(logging.ERROR)
    try:
        import uvloop
        loop_path, direct_rows, rows = uvloop.run(run(args.orders, args.durability))
    except ImportError:  # pragma: no cover
        loop_path, direct_rows, rows = asyncio.run(run(args.orders, args.durability))
    if not rows or not direct_rows:
        print("no complete hand-off observed", file=sys.stderr)
        return 1

    def line(name, xs):
        xs = sorted(xs)
        return (f"  {name:32s} p10 {xs[len(xs) // 10] / 1e3:7.1f}   p50 {xs[len(xs) // 2] / 1e3:7.1f}   "
                f"p90 {xs[len(xs) * 9 // 10] / 1e3:7.1f}")

    print(f"journal {args.durability}; microseconds")
    print(f"{len(loop_path)} lone acknowledgements, written on the loop")
    print(line("total", loop_path))
    print(f"{len(direct_rows)} acknowledgements in a direct write submitted at the end of a busy turn")
    for i, name in enumerate(DIRECT_STEPS):
        print(line(name, (r[i] for r in direct_rows)))
    print(f"{len(rows)} acknowledgements handed to the writer thread (direct I/O off)")
    for i, name in enumerate(STEPS):
        print(line(name, (r[i] for r in rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
