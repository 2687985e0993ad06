#!/usr/bin/env python3
"""Where a one-client ``fsync`` acknowledgement spends its time, on each of its two
paths: written on the loop (a lone acknowledgement, what one client gets) and handed
to the journal's writer thread (what an acknowledgement in a busy turn gets), with the
thread's hand-offs timed one by one.

    python bench/journal_handoff.py [--orders 2000] [--durability fsync|fdatasync]

A closed loop of market orders through ``JournaledEngine`` over the simulated
venue, one at a time, on the process's current CPUs (pin it with ``taskset -c 0``
to see the one-core case). The loop path is timed as a whole (submit to ack). For
the thread path each order's turn is marked busy (as after a turn with several
acknowledgements), and the writer's own methods are wrapped to stamp the time
(nothing of its logic is replaced): the end of the loop turn that hands the batch
over (``_kick``), the writer thread waking (``eventfd_read`` returns, GIL held),
the batch taken, the durable write done, the loop told (``call_soon_threadsafe``
returned), the loop running ``_done``, and the acknowledgement reaching the caller.
Prints p10/p50/p90 in microseconds. The write is this disk's; the difference
between the two totals is the price of the thread.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time

STEPS = ("submit -> end of turn (kick)", "kick -> writer thread awake", "awake -> batch taken",
         "durable write", "written -> loop told", "loop told -> loop runs _done", "_done -> ack returned", "total")


def instrument(W, stamps: dict) -> None:
    """Wrap (not replace) the writer's steps to record when each one happens."""
    ns = time.perf_counter_ns

    def wrap(name, key, before=True):
        orig = getattr(W.JournalWriter, name)

        def f(self, *a):
            if before:
                if key == "kick":
                    stamps.clear()
                stamps[key] = ns()
                return orig(self, *a)
            out = orig(self, *a)
            stamps[key] = ns()
            return out
        setattr(W.JournalWriter, name, f)

    wrap("_kick", "kick")
    wrap("_take", "taken", before=False)
    wrap("_write_batch", "written", before=False)
    wrap("_after_batch", "told")  # runs right after call_soon_threadsafe returns
    wrap("_done", "done")

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


async def run(orders: int, durability: str) -> list[tuple]:
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
    tmp = tempfile.TemporaryDirectory(prefix="fastexec-handoff-", dir=".")  # this disk, not a tmpfs
    eng = JournaledEngine(settings, SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000")),
                          journal_dir=tmp.name, durability=durability, snapshot_every=0)
    await eng.start()
    acct = eng.account_ids[0]
    specs = (OrderSpec(acct, "EUR_USD", "buy", 1000), OrderSpec(acct, "EUR_USD", "sell", 1000))
    rows, loop_path = [], []
    ns = time.perf_counter_ns
    w = eng.journal.writer
    try:
        for j in range(orders):  # lone acknowledgements: written on the loop
            await asyncio.sleep(0)
            t0 = ns()
            await eng.submit(specs[j & 1])
            loop_path.append(ns() - t0)
        for j in range(orders):  # the same, each turn marked busy: handed to the writer thread
            await asyncio.sleep(0)
            w._busy = True
            t0 = ns()
            await eng.submit(specs[j & 1])
            t1 = ns()
            s = dict(stamps)
            if {"kick", "awake", "taken", "written", "told", "done"} <= s.keys() and t0 < s["kick"] < s["awake"]:
                rows.append((s["kick"] - t0, s["awake"] - s["kick"], s["taken"] - s["awake"], s["written"] - s["taken"],
                             s["told"] - s["written"], s["done"] - s["told"], t1 - s["done"], t1 - t0))
    finally:
        await eng.stop()
        tmp.cleanup()
    return rows, loop_path


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
        rows, loop_path = uvloop.run(run(args.orders, args.durability))
    except ImportError:  # pragma: no cover
        rows, loop_path = asyncio.run(run(args.orders, args.durability))
    if not rows:
        print("no complete hand-off observed", file=sys.stderr)
        return 1

    def line(name, xs):
        xs = sorted(xs)
        return (f"  {name:32s} p10 {xs[len(xs) // 10] / 1e3:7.1f}   p50 {xs[len(xs) // 2] / 1e3:7.1f}   "
                f"p90 {xs[len(xs) * 9 // 10] / 1e3:7.1f}")

    print(f"journal {args.durability}; microseconds")
    print(f"{len(loop_path)} lone acknowledgements, written on the loop")
    print(line("total", loop_path))
    print(f"{len(rows)} acknowledgements handed to the writer thread")
    for i, name in enumerate(STEPS):
        print(line(name, (r[i] for r in rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
