"""fastexec side of the submit comparison (runs in the project's environment).

The same flow as ``nt_submit.py``: EUR/USD market orders of 10,000 units,
alternating buy and sell, each ``await engine.submit(OrderSpec(...))`` from
inside a running asyncio loop (the way an embedding service calls it), the
order object built inside the timed region as NautilusTrader's order factory
call is. Each order goes through shape validation, the kill switch, the
compiled risk gateway, the order state store, the in-process simulated venue's
fill, and the fill applied to positions/P&L/margin; it must come back
``filled``. The engine's default journal (``NullJournal``, no I/O) is used:
NautilusTrader's backtest kernel has no journal either, and the journal's
own cost is measured by ``bench/test_journal_bench.py``.

``--flow`` as in ``nt_submit.py``: ``roundtrip`` (flat, open, flat, ...) or
``held`` (an untimed 1,000,000 buy, then sells and buys of 10,000).

Prints one JSON line like ``nt_submit.py``.
"""
from __future__ import annotations

import asyncio
import gc
import sys
import time

from submit_common import parse_args, print_summary


async def _bench(args) -> dict:
    from fastexec.config import Settings
    from fastexec.engine import Engine, OrderSpec
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue

    settings = Settings(
        max_orders_per_second=10 ** 9, max_position_size=10 ** 9, max_units_per_order=10 ** 9,
        max_daily_loss=10 ** 15, max_concurrent_orders=10 ** 6,
    )
    engine = Engine(settings, SimulatedBroker(Venue(seed=1, accounts=1, balance="1000000000")))
    await engine.start()
    try:
        account = engine.account_ids[0]
        submit = engine.submit
        units = args.units
        sides = ("buy", "sell")
        if args.flow == "held":
            base = await submit(OrderSpec(account, "EUR_USD", "buy", 1_000_000))
            if base.status != "filled":
                raise RuntimeError(f"base order not filled: {base.status} {base.reject_reason}")
            sides = ("sell", "buy")
        clock = time.perf_counter_ns
        total = args.warmup + args.orders
        samples = [0] * total
        gc.collect()
        gc.disable()
        try:
            for i in range(total):
                t0 = clock()
                view = await submit(OrderSpec(account, "EUR_USD", sides[i & 1], units))
                t1 = clock()
                if view.status != "filled":
                    raise RuntimeError(f"order {i} not filled: {view.status} {view.reject_reason}")
                samples[i] = t1 - t0
        finally:
            gc.enable()
        expect = 1_000_000 if args.flow == "held" else 0
        if engine.position(account, "EUR_USD").units != expect:
            raise RuntimeError(f"alternating orders did not leave the position at {expect}")
    finally:
        await engine.stop()
    return {"samples": samples[args.warmup:]}


def main(argv=None) -> int:
    args = parse_args(argv)
    import fastexec

    result = asyncio.run(_bench(args))
    print_summary("fastexec", args.flow, fastexec.__version__, result["samples"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
