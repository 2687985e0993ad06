"""Journal throughput and the latency it adds to submit -> ack.

    python bench/journal_bench.py [--rates 1000,10000] [--duration 5] [--mode fsync] [--engine] [--reps 3] [--dir DIR]

Open loop: orders arrive on a fixed schedule (``rate`` per second, as a
strategy would send them, whether or not the journal keeps up); each one is
journaled with ``Journal.write`` and its latency is measured from its
*scheduled* arrival to the moment its batch is durable — so a stalled fsync
shows up in the figures instead of silently slowing the generator down
(no coordinated omission). That latency is exactly what journaling adds to an
acknowledgement: the engine acks right after the write returns.

Also reports the closed-loop ceiling: N concurrent appenders as fast as the
disk allows, and the bare fsync latency of the same disk measured in the same
run (the floor of any durable ack).
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Awaitable, Callable, Optional

from fastexec.journal import Journal


def order_record(i: int) -> dict:
    # the size of a real order.submitted record (about 330 bytes encoded)
    return {"type": "order.submitted", "order_id": f"E{i:012d}", "client_order_id": f"fx-{i:012d}",
            "account_id": "101-001-0000001-001", "instrument": "EUR_USD", "side": "buy", "units": 10000,
            "order_type": "limit", "price": 1_105_230_000, "stop_price": None, "trailing_distance": None,
            "time_in_force": "GTC", "gtd_time_ns": None, "stop_loss": {"price": 1_100_000_000, "distance": None,
                                                                       "guaranteed": False},
            "take_profit": None, "trailing_stop_distance": None, "request_id": f"req-{i}", "emulated": False}


def pct(values: list[int], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k] / 1000  # ns -> us


def bare_fsync_us(directory: str, n: int = 200) -> float:
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        samples = []
        for _ in range(n):
            t = time.perf_counter_ns()
            os.write(fd, b"x" * 330)
            os.fsync(fd)
            samples.append(time.perf_counter_ns() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(samples) / 1000


async def drive_open_loop(rate: int, total: int, one: Callable[[int, int], Awaitable[None]]) -> float:
    """Open-loop arrivals: start ``one(i, due_ns)`` for request ``i`` at its
    scheduled time (``rate`` per second, ``total`` of them) whether or not
    earlier ones have finished. Returns the seconds until the last one finished."""
    loop = asyncio.get_running_loop()
    pending: set = set()
    interval_ns = 1_000_000_000 // rate
    start = time.perf_counter_ns()
    sent = 0
    while sent < total:
        now = time.perf_counter_ns()
        due_count = min(total, (now - start) // interval_ns + 1)
        while sent < due_count:
            t = loop.create_task(one(sent, start + sent * interval_ns))
            pending.add(t)
            t.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.0005)
    await asyncio.gather(*pending)
    return (time.perf_counter_ns() - start) / 1e9


async def open_loop(directory: str, rate: int, duration: float, mode: str) -> dict:
    j = Journal(directory, durability=mode)
    j.open()
    lat: list[int] = []
    total = int(rate * duration)

    async def one(i: int, due: int) -> None:
        await j.write(order_record(i))
        lat.append(time.perf_counter_ns() - due)

    elapsed = await drive_open_loop(rate, total, one)
    st = j.writer.stats
    await j.close()
    return {"rate": rate, "mode": mode, "orders": total, "elapsed_s": elapsed, "achieved_per_s": total / elapsed,
            "p50_us": pct(lat, 50), "p90_us": pct(lat, 90), "p99_us": pct(lat, 99), "max_us": max(lat) / 1000,
            "batches": st.batches, "mean_batch": st.records / st.batches, "max_batch": st.max_batch,
            "mean_sync_us": st.sync_ns / st.batches / 1000, "max_sync_us": st.max_sync_ns / 1000}


async def engine_open_loop(directory: Optional[str], rate: int, duration: float, mode: str) -> dict:
    """Submit -> ack through the real engine on the in-process simulated venue,
    with the journal (``directory``) or without it (None): the difference is
    what journaling adds to an acknowledgement."""
    from fastexec.config import Settings
    from fastexec.engine import Engine
    from fastexec.engine.types import OrderSpec
    from fastexec.journal.integration import JournaledEngine
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue

    settings = Settings.from_env({"MAX_ORDERS_PER_SECOND": "1000000", "MAX_POSITION_SIZE": "100000000",
                                  "MAX_POSITIONS_PER_INSTRUMENT": "1000000", "MAX_DAILY_LOSS": "100000000",
                                  "MAX_CONCURRENT_ORDERS": "1000000"}, dotenv=False)
    broker = SimulatedBroker(Venue(seed=1, accounts=1, balance="10000000"))
    if directory is None:
        engine = Engine(settings, broker)
    else:
        engine = JournaledEngine(settings, broker, journal_dir=directory, durability=mode)
    await engine.start()
    acct = engine.account_ids[0]
    lat: list[int] = []
    total = int(rate * duration)
    errors: list[str] = []

    async def one(i: int, due: int) -> None:
        try:
            await engine.submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy" if i % 2 else "sell",
                                          units=1000))
        except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
            errors.append(type(exc).__name__)
            return
        lat.append(time.perf_counter_ns() - due)

    elapsed = await drive_open_loop(rate, total, one)
    await engine.stop()
    if errors:
        print(f"  ({len(errors)} submits failed: {sorted(set(errors))})")
    return {"rate": rate, "achieved_per_s": total / elapsed, "p50_us": pct(lat, 50), "p90_us": pct(lat, 90),
            "p99_us": pct(lat, 99), "max_us": max(lat) / 1000}


async def engine_closed_loop(directory: Optional[str], clients: int, orders: int, mode: str) -> dict:
    """``clients`` concurrent submitters as fast as they go: throughput, submit
    -> ack p50 and CPU per order of the engine with and without the journal
    (same process, same run). ``cpu_us`` counts every thread of the process
    (the journal's writer thread and the kernel time of its flushes too),
    ``loop_cpu_us`` only the event loop's thread: what an order costs the one
    core that serves requests. The garbage collector is off while measuring
    (``fastexec serve`` freezes the heap instead): a collection would land in
    whichever run crosses its threshold."""
    from fastexec.config import Settings
    from fastexec.engine import Engine
    from fastexec.engine.types import OrderSpec
    from fastexec.journal.integration import JournaledEngine
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue

    settings = Settings.from_env({"MAX_ORDERS_PER_SECOND": "1000000", "MAX_POSITION_SIZE": "100000000",
                                  "MAX_POSITIONS_PER_INSTRUMENT": "1000000", "MAX_DAILY_LOSS": "100000000",
                                  "MAX_CONCURRENT_ORDERS": "1000000"}, dotenv=False)
    broker = SimulatedBroker(Venue(seed=1, accounts=1, balance="10000000"))
    engine = Engine(settings, broker) if directory is None else JournaledEngine(
        settings, broker, journal_dir=directory, durability=mode)
    await engine.start()
    acct = engine.account_ids[0]

    lat: list[int] = []

    async def client(k: int) -> None:
        for i in range(orders // clients):
            t = time.perf_counter_ns()
            await engine.submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy" if i % 2 else "sell",
                                          units=1000))
            lat.append(time.perf_counter_ns() - t)

    import gc

    gc.collect()
    gc.disable()
    try:
        cpu, wall, loop_cpu = time.process_time(), time.perf_counter(), time.thread_time()
        await asyncio.gather(*(client(k) for k in range(clients)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        loop_cpu = time.thread_time() - loop_cpu
    finally:
        gc.enable()
    n = orders // clients * clients
    batch = None
    if directory is not None:
        st = engine.journal.writer.stats
        batch = st.records / st.batches
    await engine.stop()
    return {"per_s": n / wall, "cpu_us": cpu / n * 1e6, "loop_cpu_us": loop_cpu / n * 1e6, "p50_us": pct(lat, 50),
            "mean_batch": batch}


async def closed_loop(directory: str, clients: int, duration: float, mode: str) -> dict:
    j = Journal(directory, durability=mode)
    j.open()
    stop = time.perf_counter() + duration
    count = 0

    async def client(k: int) -> None:
        nonlocal count
        i = 0
        while time.perf_counter() < stop:
            await j.write(order_record(k * 10_000_000 + i))
            i += 1
            count += 1

    t = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t
    st = j.writer.stats
    await j.close()
    return {"clients": clients, "mode": mode, "records_per_s": count / elapsed, "mean_batch": st.records / st.batches,
            "fsyncs_per_s": st.batches / elapsed, "mb_per_s": st.bytes / elapsed / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,10000")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--mode", default="fsync", choices=("fsync", "fdatasync", "none"))
    ap.add_argument("--clients", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3, help="closed-loop engine runs per configuration (medians)")
    ap.add_argument("--engine", action="store_true",
                    help="also measure submit->ack through the engine (simulated venue) with and without the journal")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir under the working directory's disk)")
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("fastexec").setLevel(logging.ERROR)
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover
        loop_name = "asyncio"
    base = args.dir or tempfile.mkdtemp(prefix="journal-bench-", dir=os.getcwd())
    os.makedirs(base, exist_ok=True)
    try:
        print(f"# journal bench: mode={args.mode} loop={loop_name} dir={base} python={sys.version.split()[0]}")
        print(f"bare write+fsync of one record on this disk: median {bare_fsync_us(base):.0f} us")
        for rate in (int(r) for r in args.rates.split(",")):
            d = os.path.join(base, f"open-{rate}")
            r = asyncio.run(open_loop(d, rate, args.duration, args.mode))
            print(f"open loop {r['rate']:>6}/s x {args.duration:g}s: achieved {r['achieved_per_s']:.0f}/s  "
                  f"added latency p50 {r['p50_us']:.0f} us  p90 {r['p90_us']:.0f} us  p99 {r['p99_us']:.0f} us  "
                  f"max {r['max_us']:.0f} us  | {r['batches']} fsyncs, mean batch {r['mean_batch']:.1f}, "
                  f"max batch {r['max_batch']}, write+fsync mean {r['mean_sync_us']:.0f} us max {r['max_sync_us']:.0f} us")
            shutil.rmtree(d, ignore_errors=True)
        if args.engine:
            for rate in (int(r) for r in args.rates.split(",")):
                for label, d in (("engine, no journal", None), (f"engine + journal ({args.mode})",
                                                                  os.path.join(base, f"engine-{rate}"))):
                    r = asyncio.run(engine_open_loop(d, rate, args.duration, args.mode))
                    print(f"submit->ack {label:<26} {rate:>6}/s: achieved {r['achieved_per_s']:.0f}/s  "
                          f"p50 {r['p50_us']:.0f} us  p90 {r['p90_us']:.0f} us  p99 {r['p99_us']:.0f} us  "
                          f"max {r['max_us']:.0f} us")
                    if d:
                        shutil.rmtree(d, ignore_errors=True)
        if args.engine:
            configs = [("engine, no journal", None), ("engine + journal (none)", "none")]
            if args.mode != "none":
                configs.append((f"engine + journal ({args.mode})", args.mode))
            for clients, orders in ((1, 3_000), (32, 20_000)):
                for label, mode in configs:
                    rows = []
                    for rep in range(args.reps):
                        d = None if mode is None else os.path.join(base, f"engine-closed-{rep}")
                        rows.append(asyncio.run(engine_closed_loop(d, clients, orders, mode or "none")))
                        if d:
                            shutil.rmtree(d, ignore_errors=True)
                    med = {k: statistics.median(r[k] for r in rows) for k in ("per_s", "cpu_us", "loop_cpu_us", "p50_us")}
                    print(f"closed loop {label:<26} {clients:>3} submitters: {med['per_s']:.0f} orders/s, "
                          f"p50 {med['p50_us']:.0f} us, CPU {med['cpu_us']:.1f} us/order "
                          f"(loop thread {med['loop_cpu_us']:.1f})" +
                          (f", mean batch {rows[0]['mean_batch']:.1f} records" if rows[0]["mean_batch"] else "") +
                          f"  [median of {len(rows)}]")
        d = os.path.join(base, "closed")
        r = asyncio.run(closed_loop(d, args.clients, args.duration, args.mode))
        print(f"closed loop {r['clients']} appenders: {r['records_per_s']:.0f} records/s durable, "
              f"{r['fsyncs_per_s']:.0f} fsyncs/s, mean batch {r['mean_batch']:.1f}, {r['mb_per_s']:.1f} MB/s")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


# --- callgrind split (python bench/journal_bench.py --callgrind) -------------------------------------------
#
# Instruction counts per market order, (I(2N) - I(N)) / N under callgrind (bench/callgrind/gate.py's
# measure), GC off. ``submit_plain`` and ``submit_journal`` are the same closed loop of market orders
# through the same engine on one asyncio event loop (uvloop when installed), without and with the journal
# (JournaledEngine, durability ``none``: the loop's own work, the page-cache write is a system call and not
# counted): their difference is the whole journal overhead of one order on the loop thread (records built
# by the engine, encode, fold, queue, the ack's future and the extra loop turn). ``encode``/``fold`` are
# its parts, on the two records a market order really appends (order.submitted, broker.filled).
#
#     python bench/journal_bench.py --callgrind

def _cg_loop():
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def _cg_settings():
    from fastexec.config import Settings

    return Settings(max_orders_per_second=10**9, max_position_size=10**9, max_units_per_order=10**9,
                    max_daily_loss=10**15, max_concurrent_orders=10**6)


def _cg_submit(journaled: bool, clients: int = 1, patch=None):
    """``clients`` concurrent submitters (1: every order costs its own loop turn; 32: turns shared, as under
    load). ``patch(eng)`` (experiments) may change the journaled engine before warm-up."""
    def make():
        import logging

        from fastexec.engine import Engine
        from fastexec.journal.integration import JournaledEngine
        from fastexec.sim.broker import SimulatedBroker
        from fastexec.sim.venue import Venue

        logging.getLogger("fastexec").setLevel(logging.ERROR)
        loop = _cg_loop()
        asyncio.set_event_loop(loop)
        broker = SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000"))
        if journaled:
            d = tempfile.mkdtemp(prefix="journal-cg-")
            atexit.register(shutil.rmtree, d, True)
            eng = JournaledEngine(_cg_settings(), broker, journal_dir=d, durability="none", snapshot_every=0)
        else:
            eng = Engine(_cg_settings(), broker)
        loop.run_until_complete(eng.start())
        if journaled:
            eng.journal.state.retain_terminal = 4096  # steady state sooner (the engine retires 4,096 at a time too)
            if patch is not None:
                patch(eng)
        acct = eng.account_ids[0]
        from fastexec.engine import OrderSpec as _Spec

        specs = (_Spec(acct, "EUR_USD", "buy", 1000), _Spec(acct, "EUR_USD", "sell", 1000))
        submit = eng.submit

        async def one(n):
            for j in range(n):
                await submit(specs[j & 1])

        async def go(n):
            if clients == 1:
                await one(n)
            else:
                await asyncio.gather(*[one(n // clients) for _ in range(clients)])

        def run(n):
            loop.run_until_complete(go(n))

        run(20_000)  # past both retention windows: the order maps have stopped growing
        return run

    return make


def _cg_records():
    """The records one market order appends (engine over the simulated venue, captured)."""
    from fastexec.engine import Engine, ListJournal, OrderSpec
    from fastexec.sim.broker import SimulatedBroker
    from fastexec.sim.venue import Venue

    loop = _cg_loop()
    eng = Engine(_cg_settings(), SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000")),
                 journal=ListJournal())
    loop.run_until_complete(eng.start())
    acct = eng.account_ids[0]
    out = []
    for side in ("buy", "sell"):
        eng._journal.records.clear()
        loop.run_until_complete(eng.submit(OrderSpec(acct, "EUR_USD", side, 1000)))
        out.append(list(eng._journal.records))
    loop.run_until_complete(eng.stop())
    loop.close()
    return out


def _renumber(recs: list, i: int) -> list:
    """Fresh ids for order ``i`` (a fold keyed by the same ids would update, not add)."""
    out = []
    for r in recs:
        r = dict(r)
        for k in ("order_id", "client_order_id", "client_id"):
            if r.get(k) is not None:
                r[k] = f"{r[k]}-{i}"
        if r.get("broker_order_id") is not None:
            r["broker_order_id"] = f"{r['broker_order_id']}-{i}"
        if r.get("txn_id") is not None:
            r["txn_id"] = r["txn_id"] * 1_000_000 + i
        out.append(r)
    return out


def _cg_encode():
    from fastexec.journal.codec import encode

    orders = _cg_records()

    def run(n):
        enc = encode
        for j in range(n):
            for r in orders[j & 1]:
                enc(j, r)

    return run


def _cg_fold():
    from fastexec.journal import JournalState

    orders = _cg_records()
    pool = [_renumber(orders[i & 1], i) for i in range(60_000)]
    st = JournalState(retain_terminal=4096)
    state = [0]

    def run(n):
        i = state[0]
        apply = st.apply
        for j in range(i, i + n):
            for r in pool[j % 60_000]:
                apply(dict(r))  # the fold may keep (and change) the record it is given
        state[0] = i + n

    run(20_000)
    return run


def _cg_copy():
    """What ``_cg_fold`` spends on its own ``dict(r)`` copies (subtract it)."""
    orders = _cg_records()
    pool = [_renumber(orders[i & 1], i) for i in range(60_000)]
    state = [0]

    def run(n):
        i = state[0]
        for j in range(i, i + n):
            for r in pool[j % 60_000]:
                dict(r)
        state[0] = i + n

    return run


class _CgPath:
    def __init__(self, name, make, n=1000):
        self.name, self.make, self.n = name, make, n


CALLGRIND_PATHS = [
    _CgPath("submit_plain", _cg_submit(False), n=4096),
    _CgPath("submit_journal", _cg_submit(True), n=4096),
    _CgPath("submit_plain_32", _cg_submit(False, 32), n=4096),
    _CgPath("submit_journal_32", _cg_submit(True, 32), n=4096),
    _CgPath("encode", _cg_encode, n=2000),
    _CgPath("fold", _cg_fold, n=2000),
    _CgPath("fold_copy", _cg_copy, n=2000),
]


def callgrind_main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "callgrind"))
    from gate import measure  # valgrind, the cgmark helper, (I(2N) - I(N)) / N

    res = {k: v["ir_per_call"] for k, v in measure(f"{os.path.abspath(__file__)}:CALLGRIND_PATHS").items()
           if not k.startswith("_")}
    for name in ("submit_plain", "submit_journal", "submit_plain_32", "submit_journal_32", "encode", "fold",
                 "fold_copy"):
        print(f"{name:18s} {res[name]:10.0f} instructions per order")
    print(f"{'journal share':18s} {res['submit_journal'] - res['submit_plain']:10.0f} (submit_journal - submit_plain)")
    print(f"{'journal share, 32':18s} {res['submit_journal_32'] - res['submit_plain_32']:10.0f} "
          "(submit_journal_32 - submit_plain_32)")
    print(f"{'fold only':18s} {res['fold'] - res['fold_copy']:10.0f} (fold - fold_copy)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--callgrind"]:
        sys.exit(callgrind_main())
    sys.exit(main())
