"""Group commit, durability modes, rotation, torn-tail repair and write failures."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from fastexec.journal import JournalWriter, read_records, verify
from fastexec.journal.reader import list_segments, segment_name
from fastexec.journal.codec import encode, scan_bytes
from fastexec.journal.reader import scan_segment
from fastexec.journal import writer as writer_module


@pytest.fixture(autouse=True, params=["direct", "thread"])
def batch_path(request, monkeypatch):
    """Every test here runs on both ways the synchronous modes write a batch: direct
    writes through Linux AIO from the loop (the default) and the writer thread (what a
    file system without direct I/O, or ``direct=False``, gets)."""
    if request.param == "thread":
        monkeypatch.setattr(writer_module, "DirectAppender", None)
    return request.param


def rec(i: int) -> dict:
    return {"type": "order.submitted", "order_id": f"o{i}", "account_id": "A", "units": i, "ts": 1_000 + i}


@pytest.mark.parametrize("mode", ["fsync", "fdatasync", "none"])
async def test_records_are_durable_in_order_in_every_mode(tmp_path, mode, batch_path):
    w = JournalWriter(str(tmp_path), durability=mode)
    assert w.write_path == ("loop" if mode == "none" else batch_path)
    assert w.open().last_seq == 0
    seqs = [await w.write(rec(i)) for i in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    assert w.durable_seq == 5
    await w.close()
    assert [(r.seq, r.payload) for r in read_records(str(tmp_path))] == [(i, rec(i)) for i in range(1, 6)]


async def test_appends_in_one_loop_turn_share_one_batch(tmp_path):
    w = JournalWriter(str(tmp_path))
    w.open()
    seqs = [w.append(rec(i)) for i in range(1, 201)]
    assert seqs == list(range(1, 201)) and w.durable_seq == 0
    results = await asyncio.gather(*(w.wait_durable(s) for s in seqs))
    assert w.stats.batches == 1 and w.stats.records == 200 and w.stats.max_batch == 200
    assert set(results) == {200}  # every appender learns the batch is durable up to 200
    await w.close()


async def test_appends_during_an_fsync_form_the_next_batch(tmp_path):
    w = JournalWriter(str(tmp_path))
    w.open()
    w.append(rec(1))
    await asyncio.sleep(0)  # the first batch is now on the writer thread
    later = [w.append(rec(i)) for i in range(2, 52)]
    first_done = await w.wait_durable(1)
    assert first_done >= 1
    await asyncio.gather(*(w.wait_durable(s) for s in later))
    # however the thread raced, 51 records never needed more than a handful of fsyncs
    assert w.stats.records == 51
    assert w.stats.batches <= 3
    assert w.stats.max_batch >= 25
    await w.close()


async def test_concurrent_appenders_each_resume_after_durability(tmp_path):
    w = JournalWriter(str(tmp_path))
    w.open()
    seen = []

    async def client(k):
        for j in range(20):
            seq = await w.write(rec(k * 100 + j))
            # what this client was told is durable must already be readable from disk
            assert w.durable_seq >= seq
            seen.append(seq)

    await asyncio.gather(*(client(k) for k in range(10)))
    await w.close()
    assert sorted(seen) == list(range(1, 201))
    assert len(list(read_records(str(tmp_path)))) == 200
    assert w.stats.batches < 200


async def test_cancelling_one_waiter_does_not_affect_the_others(tmp_path):
    w = JournalWriter(str(tmp_path))
    w.open()
    a = asyncio.ensure_future(w.write(rec(1)))
    b = asyncio.ensure_future(w.write(rec(2)))
    await asyncio.sleep(0)
    a.cancel()
    assert await b == 2
    await w.close()
    assert [r.seq for r in read_records(str(tmp_path))] == [1, 2]


async def test_rotation_by_size_and_reading_across_segments(tmp_path):
    w = JournalWriter(str(tmp_path), segment_bytes=2048)
    w.open()
    for i in range(1, 201):
        await w.write(rec(i))
    await w.close()
    segs = list_segments(str(tmp_path))
    assert len(segs) > 5 and w.stats.rotations == len(segs) - 1
    for first, path in segs[:-1]:
        assert os.path.getsize(path) >= 2048
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, 201))
    # reopening continues in the newest segment with the next sequence number
    w2 = JournalWriter(str(tmp_path), segment_bytes=2048)
    assert w2.open().last_seq == 200
    assert await w2.write(rec(201)) == 201
    await w2.close()
    assert verify(str(tmp_path)).last_seq == 201


@pytest.mark.parametrize("mode", ["none", "fsync"])
async def test_rotation_in_none_mode_leaves_the_sealed_segment_to_the_kernel(tmp_path, monkeypatch, mode):
    """``none`` rotates on the loop: flushing a sealed 64 MiB segment there stalled every
    request for ~45 ms. The synchronous modes still flush it before moving on."""
    flushed = []
    real_fsync = os.fsync

    def spy(fd):
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    w = JournalWriter(str(tmp_path), durability=mode, segment_bytes=2048)
    w.open()
    for i in range(1, 61):
        await w.write(rec(i))
    sealed = [path for _, path in list_segments(str(tmp_path))][:-1]
    assert len(sealed) >= 2 and w.stats.rotations == len(sealed)
    assert [path for path in sealed if path in flushed] == (sealed if mode == "fsync" else [])
    await w.close()
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, 61))


async def test_open_truncates_a_torn_tail_before_appending(tmp_path):
    path = tmp_path / segment_name(1)
    good = b"".join(encode(i, rec(i)) for i in range(1, 4))
    path.write_bytes(good + encode(4, rec(4))[:-7])
    w = JournalWriter(str(tmp_path))
    info = w.open()
    assert info.last_seq == 3 and info.truncated_bytes > 0 and info.tail_reason
    on_disk = path.read_bytes()  # the torn bytes are gone; only preallocated zeros follow the good records
    assert on_disk[: len(good)] == good and on_disk[len(good):].count(0) == len(on_disk) - len(good)
    assert await w.write(rec(99)) == 4  # the torn record's number is reused: it was never acknowledged
    await w.close()
    assert os.path.getsize(path) == len(good) + len(encode(4, rec(99)))  # a clean close trims the zeros
    assert [(r.seq, r.payload["units"]) for r in read_records(str(tmp_path))] == [(1, 1), (2, 2), (3, 3), (4, 99)]
    assert verify(str(tmp_path)).ok


async def test_open_refuses_corruption_in_the_middle(tmp_path):
    from fastexec.journal import CorruptJournalError

    data = bytearray(b"".join(encode(i, rec(i)) for i in range(1, 4)))
    data[30] ^= 0xFF
    (tmp_path / segment_name(1)).write_bytes(bytes(data))
    with pytest.raises(CorruptJournalError) as exc:
        JournalWriter(str(tmp_path)).open()
    assert exc.value.offset == 0


async def test_min_next_seq_starts_a_fresh_segment_after_a_snapshot(tmp_path):
    w = JournalWriter(str(tmp_path), min_next_seq=501)
    assert w.open().last_seq == 500
    assert await w.write(rec(1)) == 501
    await w.close()
    assert list_segments(str(tmp_path))[0][0] == 501


def test_a_failed_write_poisons_the_writer(tmp_path):
    """A real EFBIG from the kernel (file size limit) in a child process."""
    script = textwrap.dedent(
        f"""
        import asyncio, resource, signal
        from fastexec.journal import JournalWriter, JournalFailedError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        async def main():
            w = JournalWriter({str(tmp_path)!r})
            w.open()
            await w.write({{"type": "x", "pad": "a" * 100}})
            resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
            try:
                await w.write({{"type": "x", "pad": "b" * 400}})
            except JournalFailedError as e:
                print("FAILED", type(e).__name__)
            try:
                w.append({{"type": "x"}})
            except JournalFailedError:
                print("POISONED")
            await w.close()
        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "FAILED JournalFailedError" in out.stdout, out.stderr
    assert "POISONED" in out.stdout
    assert [r.seq for r in read_records(str(tmp_path))] == [1]


async def test_barrier_ends_under_continuous_load(tmp_path):
    """An ack waits for its own records, not for the stream of later appenders to pause."""
    w = JournalWriter(str(tmp_path))
    w.open()
    stop = False

    async def firehose():
        i = 0
        while not stop:
            w.append(rec(i))
            i += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(firehose())
    await asyncio.sleep(0.01)
    w.append(rec(-1))
    mine = w.last_seq
    durable = await asyncio.wait_for(w.barrier(), timeout=30)
    assert await w.wait_durable(1) >= 1  # long durable: answers at once
    assert durable >= mine and w.durable_seq >= mine
    assert w.last_seq > mine  # others kept appending meanwhile
    stop = True
    await task
    await w.close()
    assert any(r.seq == mine and r.payload["units"] == -1 for r in read_records(str(tmp_path)))


async def test_waiting_for_a_record_never_appended_is_an_error(tmp_path):
    w = JournalWriter(str(tmp_path))
    w.open()
    w.append(rec(1))
    with pytest.raises(ValueError):
        await w.wait_durable(5)
    await w.close()


def test_a_second_process_cannot_open_a_journal_in_use(tmp_path):
    """flock from another process (the real case: a restart while the old engine still runs)."""
    from fastexec.journal import JournalLockedError

    w = JournalWriter(str(tmp_path))
    w.open()
    script = textwrap.dedent(
        f"""
        from fastexec.journal import JournalWriter, JournalLockedError
        try:
            JournalWriter({str(tmp_path)!r}).open()
            print("OPENED")
        except JournalLockedError:
            print("LOCKED")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "LOCKED", out.stderr
    w.close_sync()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "OPENED", out.stderr
    assert JournalLockedError.__mro__[1].__name__ == "JournalError"


async def test_concurrent_snapshots_are_serialised(tmp_path):
    from fastexec.journal import Journal, load_latest_snapshot

    j = Journal(str(tmp_path), keep_snapshots=1)
    j.open()
    for i in range(50):
        j.append(rec(i))
    paths = await asyncio.gather(*(j.snapshot() for _ in range(4)))
    assert len(set(paths)) == 1
    await j.close()
    assert load_latest_snapshot(str(tmp_path)).seq == 50


# ---------------------------------------------------------------- preallocated segments


def data_and_tail(path):
    raw = open(path, "rb").read()
    res = scan_bytes(raw)
    return res, raw


@pytest.mark.parametrize("mode", ["fsync", "fdatasync"])
async def test_segments_are_preallocated_with_written_zeros_and_trimmed_on_close(tmp_path, mode):
    w = JournalWriter(str(tmp_path), durability=mode, preallocate=64 * 1024)
    w.open()
    path = w.segment_path
    assert os.path.getsize(path) >= 64 * 1024  # room ahead of the data before the first record
    frames = [encode(i, rec(i)) for i in range(1, 11)]
    for i in range(1, 11):
        await w.write(rec(i))
    res, raw = data_and_tail(path)
    data_len = sum(map(len, frames))
    assert res.good_end == data_len and raw[:data_len] == b"".join(frames)
    assert res.zero_tail == len(raw) - data_len > 0 and not res.torn_tail
    # the file is not fragmented into holes: every block of the tail is allocated
    st = os.stat(path)
    assert st.st_blocks * 512 >= st.st_size
    await w.close()
    assert os.path.getsize(path) == data_len  # a clean close trims the zeros


async def test_preallocation_grows_ahead_of_the_data(tmp_path):
    w = JournalWriter(str(tmp_path), preallocate=4096, segment_bytes=1 << 20)
    w.open()
    for i in range(1, 301):  # ~25 KB of records: several extensions
        await w.write(rec(i))
    res, raw = data_and_tail(w.segment_path)
    assert [r.seq for r in res.records] == list(range(1, 301)) and res.zero_tail > 0
    assert w.stats.preallocated >= len(raw) - 4096
    await w.close()
    assert verify(str(tmp_path)).ok


async def test_a_crashed_writer_leaves_a_zero_tail_that_the_next_open_writes_over(tmp_path):
    w = JournalWriter(str(tmp_path), preallocate=64 * 1024)
    w.open()
    for i in range(1, 4):
        await w.write(rec(i))
    path = w.segment_path
    w.abandon()  # like kill -9: nothing trimmed
    res, raw = data_and_tail(path)
    assert res.zero_tail > 0 and not res.torn_tail
    rep = verify(str(tmp_path))
    assert rep.ok and rep.last_seq == 3 and rep.torn_tail is None  # zeros are the clean end, not damage
    w2 = JournalWriter(str(tmp_path), preallocate=64 * 1024)
    info = w2.open()
    assert info.last_seq == 3 and info.truncated_bytes == 0 and info.tail_reason == ""
    assert await w2.write(rec(4)) == 4
    await w2.close()
    assert [(r.seq, r.payload) for r in read_records(str(tmp_path))] == [(i, rec(i)) for i in range(1, 5)]
    assert os.path.getsize(path) == sum(len(encode(i, rec(i))) for i in range(1, 5))


@pytest.mark.parametrize("cut", [1, 7, 19, 20, 21, 60])
async def test_a_crash_mid_write_into_preallocated_space_is_a_torn_tail(tmp_path, cut):
    """The crash landed part of a record in the zero-filled space: the next
    open drops exactly that record (never acknowledged), keeps the rest, and
    appending after it leaves no damage in the middle of the file."""
    w = JournalWriter(str(tmp_path), preallocate=64 * 1024)
    w.open()
    for i in range(1, 4):
        await w.write(rec(i))
    path, end = w.segment_path, w._pos
    w.abandon()
    torn = encode(4, rec(4))[:cut]
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, torn, end)  # the part of record 4 that reached the disk
    finally:
        os.close(fd)
    rep = verify(str(tmp_path))
    assert rep.ok and rep.last_seq == 3 and rep.torn_tail is not None and rep.torn_tail[1] == end
    w2 = JournalWriter(str(tmp_path), preallocate=64 * 1024)
    info = w2.open()
    assert info.last_seq == 3 and info.truncated_bytes > 0 and info.tail_reason
    assert await w2.write(rec(40)) == 4  # the torn record's number is reused: it was never acknowledged
    await w2.write(rec(5))
    w2.abandon()  # crash again: zero tail after good records
    assert [(r.seq, r.payload["units"]) for r in read_records(str(tmp_path))] == [(1, 1), (2, 2), (3, 3), (4, 40), (5, 5)]
    assert verify(str(tmp_path)).ok


async def test_sealed_segments_end_at_their_data(tmp_path):
    w = JournalWriter(str(tmp_path), segment_bytes=2048, preallocate=2048)
    w.open()
    for i in range(1, 101):
        await w.write(rec(i))
    live = w.segment_path
    segs = list_segments(str(tmp_path))
    assert len(segs) > 3
    for first, path in segs:
        if path != live:
            res = scan_segment(path, last=False, expect_seq=first)  # strict: no torn tail, no zeros
            assert res.zero_tail == 0 and res.good_end == os.path.getsize(path)
    w.abandon()
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, 101))


async def test_a_batch_bigger_than_the_room_left_grows_the_preallocation_first(tmp_path):
    """One loop turn appends more than the preallocated space holds (here ~230 KB against
    64 KiB): the batch waits for the space to grow, then goes out whole, in order."""
    w = JournalWriter(str(tmp_path), preallocate=4096, segment_bytes=16 << 20)
    w.open()
    room = w._alloc_end
    seqs = [w.append({**rec(i), "pad": "p" * 200}) for i in range(1, 1001)]
    await w.wait_durable(seqs[-1])
    assert w._alloc_end > room and w.durable_seq == 1000 and w.stats.records == 1000
    await w.close()
    assert [r.seq for r in read_records(str(tmp_path))] == seqs and verify(str(tmp_path)).ok


async def test_reopening_mid_block_again_and_again_keeps_every_record(tmp_path):
    """Each clean close trims the segment to its data, which ends mid-block; the next open
    carries that partial block (direct writes rewrite it whole) and appends after it."""
    expect = []
    for round_ in range(4):
        w = JournalWriter(str(tmp_path))
        assert w.open().last_seq == len(expect)
        for i in range(3 + round_):
            expect.append(await w.write(rec(100 * round_ + i)))
        await w.close()
    assert [r.seq for r in read_records(str(tmp_path))] == expect == list(range(1, len(expect) + 1))
    assert verify(str(tmp_path)).ok


async def test_a_batch_the_disk_refuses_fails_every_waiter_and_poisons_the_writer(tmp_path, batch_path):
    """The batch's descriptor now points at /dev/full: the waiters of the batch (a busy turn,
    so not a lone loop-side write) get JournalFailedError, and nothing more is accepted."""
    from fastexec.journal import JournalFailedError

    w = JournalWriter(str(tmp_path))
    w.open()
    await w.write(rec(1))
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, w._dfd if batch_path == "direct" else w._fd)
        seqs = [w.append(rec(i)) for i in range(2, 6)]
        results = await asyncio.gather(*(w.wait_durable(s) for s in seqs), return_exceptions=True)
        assert all(isinstance(r, JournalFailedError) for r in results), results
        assert w.failed is not None and w.durable_seq == 1
        with pytest.raises(JournalFailedError):
            w.append(rec(6))
    finally:
        os.close(full)
        w.abandon()
    assert [r.seq for r in read_records(str(tmp_path))] == [1]
