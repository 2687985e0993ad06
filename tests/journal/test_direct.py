"""The direct appender: whole-block O_DIRECT writes, the partial last block carried from
one write to the next, one write in flight, nothing taken that does not fit."""
from __future__ import annotations

import os
import select
from collections import deque
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastexec.journal._direct import BLOCK, DirectAppender
from fastexec.sim.testing import wait_for

FILE = 256 * 1024


def _file(path, size=FILE) -> int:
    with open(path, "wb") as fh:
        fh.write(bytes(size))
    return os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)


def _reap(a: DirectAppender, timeout: float = 5.0):
    """Wait (bounded) for the write in flight and reap it."""
    ready, _, _ = select.select([a.eventfd], [], [], timeout)
    assert ready, "the direct write did not complete"
    return a.reap()


@contextmanager
def _segment(path, appender: DirectAppender, first: bytes):
    """A fresh zero-filled segment at ``path``, the appender attached at 0 with ``first``
    written; the descriptor is closed on the way out."""
    fd = _file(path)
    try:
        appender.attach(fd, 0, b"")
        appender.write_now(deque([first]))
        yield fd
    finally:
        os.close(fd)


@pytest.fixture
def appender():
    a = DirectAppender()
    yield a
    a.close()


def test_submitted_frames_land_after_the_head_and_the_block_is_padded_with_zeros(tmp_path, appender):
    path = tmp_path / "seg"
    fd = _file(path)
    try:
        appender.attach(fd, 0, b"")
        q = deque([b"a" * 100, b"b" * 5000])
        assert appender.submit(q, FILE) == (2, 5100) and not q and appender.inflight
        assert _reap(appender) == (5100, 0) and not appender.inflight
        assert appender.position == 5100
        q.append(b"c" * 10)
        assert appender.write_now(q, FILE) == (1, 10)  # rewrites the block holding 4096..5100
    finally:
        os.close(fd)
    raw = path.read_bytes()
    assert raw[:5110] == b"a" * 100 + b"b" * 5000 + b"c" * 10 and raw[5110:] == bytes(FILE - 5110)


def test_a_write_past_the_limit_takes_nothing(tmp_path, appender):
    fd = _file(tmp_path / "seg", 2 * BLOCK)
    try:
        appender.attach(fd, 0, b"")
        q = deque([b"x" * BLOCK, b"y"])
        assert appender.submit(q, 2 * BLOCK) == (2, BLOCK + 1)  # ends in the second block: fits
        assert _reap(appender) == (BLOCK + 1, 0)
        q.extend([b"z" * BLOCK])  # would end in a third block
        assert appender.submit(q, 2 * BLOCK) is None and appender.write_now(q, 2 * BLOCK) is None
        assert list(q) == [b"z" * BLOCK] and not appender.inflight and appender.position == BLOCK + 1
    finally:
        os.close(fd)


def test_attach_carries_the_partial_block_of_a_reopened_file(tmp_path, appender):
    path = tmp_path / "seg"
    with _segment(path, appender, b"k" * 6000):
        pass
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    try:
        again = DirectAppender()
        with pytest.raises(ValueError, match="head must be"):
            again.attach(fd, 6000, b"k")  # not the bytes from the block boundary
        again.attach(fd, 6000, path.read_bytes()[BLOCK:6000])
        again.write_now(deque([b"m" * 3]))
        again.close()
    finally:
        os.close(fd)
    assert path.read_bytes()[:6003] == b"k" * 6000 + b"mmm"


def test_one_write_in_flight_at_a_time(tmp_path, appender):
    fd = _file(tmp_path / "seg")
    try:
        appender.attach(fd, 0, b"")
        assert appender.reap() is None  # nothing in flight: nothing to reap
        appender.submit(deque([b"1"]))
        with pytest.raises(RuntimeError):
            appender.submit(deque([b"2"]))
        with pytest.raises(RuntimeError):
            appender.attach(fd, 0, b"")
        assert _reap(appender) == (1, 0)
    finally:
        os.close(fd)


def test_a_descriptor_that_cannot_write_fails_the_submit(tmp_path, appender):
    path = tmp_path / "seg"
    _file(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        appender.attach(fd, 0, b"")
        with pytest.raises(OSError):
            appender.submit(deque([b"data"]))
        assert not appender.inflight
    finally:
        os.close(fd)


def test_a_device_that_refuses_the_write_fails_it_loudly(tmp_path, appender):
    """/dev/full: refused at submit (EINVAL: no asynchronous writes there) or, where the
    kernel takes it, answered ENOSPC in the completion; never reported as written."""
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        appender.attach(fd, 0, b"")
        try:
            appender.submit(deque([b"data"]))
        except OSError as exc:
            assert exc.errno in (22, 28) and not appender.inflight
        else:
            assert _reap(appender) == (4, 28)
        with pytest.raises(OSError) as sync:
            appender.write_now(deque([b"data"]))
        assert sync.value.errno == 28
    finally:
        os.close(fd)


def test_no_descriptor_no_write(appender):
    with pytest.raises(ValueError):
        appender.submit(deque([b"x"]))
    with pytest.raises(ValueError):
        appender.write_now(deque([b"x"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.tuples(st.lists(st.integers(1, 9000), min_size=1, max_size=5), st.booleans()),
                        min_size=1, max_size=12))
def test_any_sequence_of_batches_reads_back_as_their_concatenation(tmp_path_factory, batches):
    """Batches of random frame sizes, each written asynchronously or synchronously: the
    file holds exactly the frames, in order, then zeros, whatever the block boundaries."""
    path = tmp_path_factory.mktemp("direct") / "seg"
    size = 1 << 20
    fd = _file(path, size)
    a = DirectAppender()
    expect = bytearray()
    try:
        a.attach(fd, 0, b"")
        for n, (sizes, sync) in enumerate(batches):
            frames = [bytes([(n * 7 + i) % 251 + 1]) * s for i, s in enumerate(sizes)]
            q = deque(frames)
            if sync:
                assert a.write_now(q, size) == (len(frames), sum(sizes))
            else:
                assert a.submit(q, size) == (len(frames), sum(sizes))
                assert _reap(a) == (sum(sizes), 0)
            expect += b"".join(frames)
            assert a.position == len(expect)
    finally:
        a.close()
        os.close(fd)
    raw = path.read_bytes()
    assert raw[:len(expect)] == expect and raw[len(expect):] == bytes(size - len(expect))


# ---------------------------------------------------------------- in the writer


async def test_writes_go_on_while_the_preallocation_grows(tmp_path):
    """Continuous appends with a small preallocation: the zeros ahead are topped up on the
    upkeep thread while direct writes go on below the old end, and every record reads
    back in order."""
    import asyncio

    from fastexec.journal import JournalWriter, read_records, verify

    w = JournalWriter(str(tmp_path), preallocate=4096, segment_bytes=64 << 20)
    w.open()
    assert w.write_path == "direct"
    during_growth = []
    real_submit = w._submit_direct

    def spy():
        was = w._direct.inflight
        real_submit()
        if w._upkeep_running and not w._rotating and w._direct.inflight and not was:
            during_growth.append(w._alloc_end)
    w._submit_direct = spy

    async def producer(k):
        for i in range(300):
            await w.write({"type": "x", "k": k, "i": i, "pad": "q" * 150})
    await asyncio.wait_for(asyncio.gather(*(producer(k) for k in range(8))), 60)
    assert w.stats.preallocated > 64 * 1024 and during_growth
    await w.close()
    recs = list(read_records(str(tmp_path)))
    assert [r.seq for r in recs] == list(range(1, 2401)) and verify(str(tmp_path)).ok
    for k in range(8):
        assert [r.payload["i"] for r in recs if r.payload["k"] == k] == list(range(300))


async def test_rotation_waits_for_the_write_in_flight_and_stops_submits(tmp_path):
    """Small segments under continuous appends: each rotation starts with nothing in
    flight, no write is submitted while it runs, and the records read back in order
    across the sealed segments."""
    import asyncio

    from fastexec.journal import JournalWriter, read_records, verify
    from fastexec.journal.reader import list_segments

    w = JournalWriter(str(tmp_path), segment_bytes=16 * 1024)
    w.open()
    bad = []
    real_rotate, real_submit = w._rotate, w._submit_direct

    def rotate(next_seq):
        if w._direct.inflight:
            bad.append(("rotated with a write in flight", next_seq))
        return real_rotate(next_seq)

    def submit():
        was = w._direct.inflight
        real_submit()
        if w._rotating and w._direct.inflight and not was:
            bad.append(("submitted during a rotation", w._disk_seq))
    w._rotate, w._submit_direct = rotate, submit

    async def producer(k):
        for i in range(150):
            await w.write({"type": "x", "k": k, "i": i, "pad": "r" * 200})
    await asyncio.wait_for(asyncio.gather(*(producer(k) for k in range(6))), 60)
    await w.close()
    assert not bad and w.stats.rotations >= 5 and len(list_segments(str(tmp_path))) >= 6
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, 901)) and verify(str(tmp_path)).ok


@pytest.mark.parametrize("err", [22, 38, 1, 11])  # EINVAL, ENOSYS, EPERM, EAGAIN
async def test_a_kernel_or_device_that_refuses_direct_writes_keeps_the_writer_thread(tmp_path, monkeypatch, err):
    """Decided at open, by writing the data end's block back as it is: a refusal there
    (simulated: this machine's kernel and disk take direct writes; the refusals are the
    errnos of a device with larger blocks, a kernel without AIO, a sandbox, no AIO
    contexts left) makes the writer fall back to the thread, and the journal works."""
    import asyncio

    from fastexec.journal import JournalWriter, read_records
    from fastexec.journal import writer as writer_module

    class Refusing(DirectAppender):
        def rewrite_head(self):
            raise OSError(err, os.strerror(err))

    monkeypatch.setattr(writer_module, "DirectAppender", Refusing)
    w = JournalWriter(str(tmp_path))
    w.open()
    assert w.write_path == "thread" and w._direct is None and w._dfd is None
    await asyncio.gather(*(w.write({"type": "x", "i": i}) for i in range(20)))
    await w.close()
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, 21))


async def test_another_error_from_the_proof_write_fails_the_open(tmp_path, monkeypatch):
    """EIO from the proof write is the disk failing, not a missing feature: open raises."""
    from fastexec.journal import JournalWriter
    from fastexec.journal import writer as writer_module

    class Failing(DirectAppender):
        def rewrite_head(self):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(writer_module, "DirectAppender", Failing)
    with pytest.raises(OSError, match="Input/output"):
        JournalWriter(str(tmp_path)).open()


def test_the_proof_write_leaves_the_file_as_it_was(tmp_path, appender):
    path = tmp_path / "seg"
    with _segment(path, appender, b"h" * 5000):
        before = path.read_bytes()
        appender.rewrite_head()
        assert path.read_bytes() == before and appender.position == 5000
        appender.write_now(deque([b"i"]))
    assert path.read_bytes()[:5001] == b"h" * 5000 + b"i"


async def _durable_after(w, seq: int) -> None:
    import asyncio

    await asyncio.wait_for(w.wait_durable(seq), 10)


def _rec(i: int) -> dict:
    return {"type": "x", "i": i}


async def test_after_a_shared_batch_the_next_waits_for_more_records_or_a_full_batch(tmp_path):
    """The commit delay: a completed batch that carried several records (waiters at once)
    holds the next submit; a full batch (COMMIT_BATCH_RECORDS queued) goes at the end of its
    turn without waiting the delay out, and a partial one goes when the delay ends."""
    import asyncio

    from fastexec.journal import JournalWriter
    from fastexec.journal.writer import COMMIT_BATCH_RECORDS, COMMIT_SIBLINGS, MAX_COMMIT_DELAY_US

    w = JournalWriter(str(tmp_path), commit_delay_us=MAX_COMMIT_DELAY_US)
    w.open()
    first = [w.append(_rec(i)) for i in range(COMMIT_SIBLINGS)]  # one turn: one batch
    await asyncio.sleep(0)
    assert w._direct.inflight
    late = [w.append(_rec(100 + i)) for i in range(2)]  # arrive during the flight
    await _durable_after(w, first[-1])
    assert w._hold is not None and not w._direct.inflight and w.durable_seq == first[-1]  # held
    more = [w.append(_rec(200 + i)) for i in range(COMMIT_BATCH_RECORDS - len(late))]
    await asyncio.sleep(0)  # the turn ends with a full batch queued: it goes now
    assert w._hold is None and w._direct.inflight
    await _durable_after(w, more[-1])
    # a held partial batch goes when the delay ends
    assert w._hold is not None  # the full batch released many waiters: hold again
    tail = w.append(_rec(300))
    await _durable_after(w, tail)
    assert w._hold is None and w.stats.batches == 3 and w.stats.records == COMMIT_SIBLINGS + COMMIT_BATCH_RECORDS + 1
    await w.close()


async def test_no_commit_delay_submits_at_once(tmp_path):
    import asyncio

    from fastexec.journal import JournalWriter
    from fastexec.journal.writer import COMMIT_SIBLINGS

    w = JournalWriter(str(tmp_path), commit_delay_us=0)
    w.open()
    first = [w.append(_rec(i)) for i in range(COMMIT_SIBLINGS)]
    await asyncio.sleep(0)
    late = w.append(_rec(99))
    await _durable_after(w, first[-1])
    assert w._hold is None and (w._direct.inflight or w.durable_seq == late)
    await _durable_after(w, late)
    await w.close()


def test_the_commit_delay_is_bounded(tmp_path):
    from fastexec.journal import JournalWriter

    for bad in (-1, 10_001, 1.5):
        with pytest.raises(ValueError, match="commit_delay_us"):
            JournalWriter(str(tmp_path), commit_delay_us=bad)


# ---------------------------------------------------------------- the spare segment


def test_zero_fill_writes_zeros_around_the_page_cache_up_to_the_end(tmp_path):
    from fastexec.journal._direct import zero_fill

    path = tmp_path / "spare"
    path.write_bytes(b"x" * BLOCK)
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        assert zero_fill(fd, BLOCK, BLOCK + 3 * 1024 * 1024) == BLOCK + 3 * 1024 * 1024  # more than one chunk
        assert zero_fill(fd, 0, 0) == 0
    finally:
        os.close(fd)
    raw = path.read_bytes()
    assert len(raw) == BLOCK + 3 * 1024 * 1024 and raw[:BLOCK] == b"x" * BLOCK and not any(raw[BLOCK:])


@pytest.mark.parametrize("off, end", [(1, BLOCK), (0, BLOCK + 1), (2 * BLOCK, BLOCK), (-BLOCK, 0)])
def test_zero_fill_refuses_what_is_not_whole_blocks(tmp_path, off, end):
    from fastexec.journal._direct import zero_fill

    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    try:
        with pytest.raises(ValueError, match="block-aligned"):
            zero_fill(fd, off, end)
    finally:
        os.close(fd)
    assert os.path.getsize(tmp_path / "f") == 0


def test_zero_fill_on_a_descriptor_that_cannot_write_raises(tmp_path):
    from fastexec.journal._direct import zero_fill

    (tmp_path / "f").write_bytes(b"")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            zero_fill(fd, 0, BLOCK)
    finally:
        os.close(fd)


async def _write_until(w, cond, k=0, limit=5000):
    """Append records one at a time until ``cond()`` holds (bounded)."""
    for i in range(limit):
        if cond():
            return i
        await w.write({"type": "x", "k": k, "i": i, "pad": "s" * 200})
    raise AssertionError("condition not reached")




async def test_rotation_renames_the_spare_made_ahead_into_place(tmp_path):
    """Half way through a segment the next one is made ahead (zeros, durable, under a
    name readers never list); the rotation renames that very file into place, so the
    segment the loop writes is never grown. Records read back in order across it."""
    from fastexec.journal import JournalWriter, read_records, verify
    from fastexec.journal import writer as wmod
    from fastexec.journal.reader import list_segments

    w = JournalWriter(str(tmp_path), segment_bytes=64 * 1024)
    w.open()
    assert w.write_path == "direct"
    spare = tmp_path / wmod.SPARE_NAME
    n = await _write_until(w, lambda: w.spare != "none")
    assert w._pos >= 32 * 1024  # not before half a segment
    await wait_for(lambda: w.spare == "ready", timeout=10.0, poll=0.005)
    inode, size = spare.stat().st_ino, spare.stat().st_size
    assert size >= 64 * 1024 and not any(spare.read_bytes()) and w.stats.rotations == 0
    n += await _write_until(w, lambda: w.stats.rotations == 1)
    await w.flush()
    newest = list_segments(str(tmp_path))[-1][1]
    assert os.stat(newest).st_ino == inode and not spare.exists()
    grown = w.stats.preallocated
    n += await _write_until(w, lambda: w._pos >= 16 * 1024)
    assert w.stats.preallocated == grown  # written into the spare's zeros: nothing grown
    await w.close()
    assert not spare.exists()
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, n + 1)) and verify(str(tmp_path)).ok


async def test_a_spare_a_killed_writer_left_is_removed_at_open(tmp_path):
    from fastexec.journal import JournalWriter
    from fastexec.journal import writer as wmod

    (tmp_path / wmod.SPARE_NAME).write_bytes(bytes(BLOCK))
    w = JournalWriter(str(tmp_path))
    w.open()
    assert not (tmp_path / wmod.SPARE_NAME).exists()
    await w.write({"type": "x"})
    await w.close()


async def test_without_a_spare_rotation_creates_the_segment_as_before(tmp_path, monkeypatch):
    """Making the spare fails (a file system without fallocate, say): no spare is left
    behind, it is not tried again, and rotation creates and grows the next segment."""
    import errno

    from fastexec.journal import JournalWriter, read_records, verify
    from fastexec.journal import writer as wmod

    calls = []

    def refuse(fd, off, end):
        calls.append(end)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    monkeypatch.setattr(wmod, "zero_fill", refuse)
    w = JournalWriter(str(tmp_path), segment_bytes=64 * 1024)
    w.open()
    n = await _write_until(w, lambda: w.stats.rotations == 3)
    await w.close()
    assert len(calls) == 1 and not (tmp_path / wmod.SPARE_NAME).exists() and w.spare == "failed"
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, n + 1)) and verify(str(tmp_path)).ok


async def test_a_journal_that_stays_small_never_makes_a_spare(tmp_path):
    from fastexec.journal import JournalWriter
    from fastexec.journal import writer as wmod

    w = JournalWriter(str(tmp_path))
    w.open()
    for i in range(200):
        await w.write({"type": "x", "i": i})
    assert w.spare == "none" and not (tmp_path / wmod.SPARE_NAME).exists()
    await w.close()


async def test_a_writer_killed_after_rotating_into_the_spare_reopens_where_it_was(tmp_path):
    """Abandoned (as by kill -9) with the spare renamed into place and written to: a new
    writer finds every acknowledged record, drops the zeros after them, and appends on."""
    from fastexec.journal import JournalWriter, read_records, verify
    from fastexec.journal import writer as wmod

    w = JournalWriter(str(tmp_path), segment_bytes=64 * 1024)
    w.open()
    n = await _write_until(w, lambda: w.spare != "none")
    await wait_for(lambda: w.spare == "ready", timeout=10.0, poll=0.005)
    n += await _write_until(w, lambda: w.stats.rotations == 1)
    n += await _write_until(w, lambda: w._pos >= 8 * 1024)
    await w.flush()
    w.abandon()
    w2 = JournalWriter(str(tmp_path), segment_bytes=64 * 1024)
    info = w2.open()
    assert info.last_seq == n and info.truncated_bytes == 0 and not (tmp_path / wmod.SPARE_NAME).exists()
    for i in range(5):
        await w2.write({"type": "after", "i": i})
    await w2.close()
    assert [r.seq for r in read_records(str(tmp_path))] == list(range(1, n + 6)) and verify(str(tmp_path)).ok
