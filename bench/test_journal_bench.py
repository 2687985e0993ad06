"""Micro-benchmarks of the journal (pytest-benchmark; timings live here, never in unit tests).

    pytest bench/test_journal_bench.py --benchmark-enable -q

The end-to-end figures (open loop at 1,000 and 10,000 orders/s with fsync on,
latency added to submit -> ack) come from ``python bench/journal_bench.py``.
"""
from __future__ import annotations

import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from journal_bench import order_record  # noqa: E402

from fastexec.journal import Journal, JournalState, read_records  # noqa: E402
from fastexec.journal.codec import encode, scan_bytes  # noqa: E402


def test_encode_one_record(benchmark):
    rec = order_record(1)
    benchmark(encode, 1, rec)


def test_scan_10k_records(benchmark):
    data = b"".join(encode(i, order_record(i)) for i in range(1, 10_001))
    res = benchmark(scan_bytes, data)
    assert len(res.records) == 10_000


def test_fold_one_order_record(benchmark):
    st = JournalState()
    recs = [order_record(i) for i in range(200_000)]
    it = iter(recs)
    benchmark.pedantic(lambda: st.apply(next(it)), rounds=100_000, iterations=1)


@pytest.mark.parametrize("mode", ["none", "fsync"])
def test_append_batch_of_1000_until_durable(benchmark, tmp_path, mode):
    """One loop turn of 1,000 appends + its group commit: the cost per record under load."""
    j = Journal(str(tmp_path / "j"), durability=mode)
    j.open()
    counter = iter(range(10**9))

    async def batch():
        for _ in range(1000):
            j.append(order_record(next(counter)))
        await j.barrier()

    loop = asyncio.new_event_loop()
    try:
        benchmark.pedantic(lambda: loop.run_until_complete(batch()), rounds=20, iterations=1)
        loop.run_until_complete(j.close())
    finally:
        loop.close()


def test_replay_100k_records(benchmark, tmp_path):
    d = str(tmp_path / "r")
    j = Journal(d, durability="none")
    j.open()

    async def fill():
        for i in range(100_000):
            j.append(order_record(i))
        await j.close()

    asyncio.run(fill())

    def replay():
        st = JournalState()
        for rec in read_records(d):
            st.apply(rec.payload, rec.seq)
        return st

    st = benchmark.pedantic(replay, rounds=3, iterations=1)
    assert len(st.orders) == 100_000
