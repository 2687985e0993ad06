"""The compiled append path (``_hot.WriterCore``, ``_hot.JournalCore``, ``_hot.journaled_submit``)
against the Python it replaces (``JournalWriter.append_py`` / ``durable_future_py``,
``Journal.append_py``, ``JournaledEngine.submit_py``).

Differential: the same records through both give byte-identical segment files, the
same sequence numbers and equal states; the same misuse gives the same errors; an
acknowledgement through either is durable before it returns, on real files.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from fastexec.config import Settings
from fastexec.engine.types import OrderSpec
from fastexec.errors import ConflictError
from fastexec.journal import Journal, JournalState, read_records
from fastexec.journal import state as state_mod
from fastexec.journal.integration import JournaledEngine
from fastexec.journal.store import Journal as StoreJournal
from fastexec.journal.writer import JournalClosedError, JournalFailedError, JournalWriter
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

from .streams import stream

_hot = pytest.importorskip("fastexec.journal._hot")


def test_the_compiled_append_path_is_the_one_in_use():
    assert issubclass(JournalWriter, _hot.WriterCore) and issubclass(StoreJournal, _hot.JournalCore)
    assert JournalWriter.append is _hot.WriterCore.append
    assert JournalWriter.durable_future is _hot.WriterCore.durable_future
    assert StoreJournal.append is _hot.JournalCore.append
    assert JournaledEngine.submit is _hot.journaled_submit


def _segments(d: str) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(d)):
        if name.startswith("seg-"):
            with open(os.path.join(d, name), "rb") as fh:
                out[name] = fh.read()
    return out


async def _feed(d: str, records: list[dict], py: bool, retain: int) -> tuple[list[int], Journal]:
    j = Journal(d, durability="none", segment_bytes=64 * 1024)  # small segments: rotation on the way
    j.open()
    j.state.retain_terminal = retain
    append = (lambda r: Journal.append_py(j, r)) if py else j.append
    seqs = []
    for i, r in enumerate(records):
        seqs.append(append(dict(r)))
        if i % 7 == 0:
            await j.barrier()
    await j.close()
    return seqs, j


@pytest.mark.parametrize("seed,retain", [(1, 3), (2, 200), (3, 100_000)])
async def test_compiled_append_writes_and_folds_what_the_python_one_does(tmp_path, seed, retain):
    records = stream(3000, seed=seed)
    assert all("ts" in r for r in records)
    c_seqs, cj = await _feed(str(tmp_path / "c"), records, False, retain)
    p_seqs, pj = await _feed(str(tmp_path / "p"), records, True, retain)
    assert c_seqs == p_seqs == list(range(1, len(records) + 1))
    sc, sp = cj.writer.stats, pj.writer.stats
    assert (sc.records, sc.batches, sc.bytes, sc.max_batch, sc.rotations) == \
        (sp.records, sp.batches, sp.bytes, sp.max_batch, sp.rotations)
    assert sc.rotations > 0 and sc.records == len(records)
    files_c, files_p = _segments(str(tmp_path / "c")), _segments(str(tmp_path / "p"))
    assert len(files_c) > 1 and files_c == files_p  # rotated, byte for byte the same
    assert cj.state == pj.state and cj.state.seq == len(records)
    assert cj.state.to_dict() == pj.state.to_dict()
    # and what is on disk replays into the same state
    replayed = JournalState(retain_terminal=retain)
    for rec in read_records(str(tmp_path / "c")):
        replayed.apply(rec.payload, rec.seq)
    assert replayed.to_dict() == cj.state.to_dict()


async def test_ts_is_added_when_missing_and_kept_when_given(tmp_path):
    j = Journal(str(tmp_path), durability="none")
    j.open()
    before = time.time_ns()
    r1 = {"type": "trading_state", "account_id": "A", "state": "reducing"}
    j.append(r1)
    after = time.time_ns()
    assert before <= r1["ts"] <= after and type(r1["ts"]) is int
    r2 = {"type": "trading_state", "account_id": "A", "state": "active", "ts": 5}
    j.append(r2)
    assert r2["ts"] == 5
    await j.close()
    assert [r.payload["ts"] for r in read_records(str(tmp_path))] == [r1["ts"], 5]


async def test_the_handler_table_is_looked_up_per_record(tmp_path):
    """A changed table (the fold tests swap it) is what the compiled append folds with."""
    seen = []
    saved = state_mod._HANDLERS["order.submitted"]
    state_mod._HANDLERS["order.submitted"] = lambda st, rec: seen.append(rec["order_id"])
    try:
        j = Journal(str(tmp_path), durability="none")
        j.open()
        j.append(stream(1)[0] | {"order_id": "X1", "type": "order.submitted"})
        await j.close()
    finally:
        state_mod._HANDLERS["order.submitted"] = saved
    assert seen == ["X1"] and "X1" not in j.state.orders


@pytest.mark.parametrize("py", [False, True])
async def test_writer_misuse_fails_the_same_way(tmp_path, py):
    w = JournalWriter(str(tmp_path / "w"), durability="none")
    append = (lambda r: JournalWriter.append_py(w, r)) if py else w.append
    future = (lambda s=None: JournalWriter.durable_future_py(w, s)) if py else w.durable_future
    with pytest.raises(JournalClosedError):
        append({"type": "x"})
    w.open()
    assert future() is None  # nothing appended: already durable
    seq = append({"type": "x"})
    assert seq == 1 and w.last_seq == 1
    with pytest.raises(ValueError):
        future(2)
    with pytest.raises(TypeError):
        append({"type": object()})
    assert w.last_seq == 1  # a record that cannot be encoded takes no sequence number
    fut = future()
    assert fut is not None and not fut.done()
    assert await fut == 1 and w.durable_seq == 1
    assert future(1) is None
    w._fail(OSError(5, "EIO"))
    with pytest.raises(JournalFailedError):
        append({"type": "x"})
    await w.close()


async def test_snapshot_counter_still_cuts_snapshots(tmp_path):
    j = Journal(str(tmp_path), durability="none", snapshot_every=50)
    j.open()
    for r in stream(120):
        j.append(dict(r))
    assert j._snapshot_task is not None  # the 50th append started one
    for _ in range(200):
        await asyncio.sleep(0.01)
        if j._snapshot_task is None:
            break
    await j.close()
    snaps = [n for n in os.listdir(tmp_path) if "snap" in n]
    assert snaps, os.listdir(tmp_path)


def _settings() -> Settings:
    return Settings.from_env({"MAX_ORDERS_PER_SECOND": "10000"}, dotenv=False)


@pytest.mark.parametrize("durability", ["fsync", "none"])
@pytest.mark.parametrize("py", [False, True])
async def test_submit_acks_only_durable_records_and_refuses_forgotten_ids(tmp_path, py, durability):
    venue = Venue(seed=2, accounts=1, balance="100000")
    je = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability=durability)
    await je.start()
    submit = (lambda s: JournaledEngine.submit_py(je, s)) if py else je.submit
    acct = je.account_ids[0]
    for i in range(5):
        view = await submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000,
                                      client_order_id=f"d-{i}"))
        assert view.status == "filled"
        w = je.journal.writer
        assert w.durable_seq == w.last_seq  # the ack is back: everything appended is durable
        on_disk = {(r.payload["type"], r.payload.get("client_order_id") or r.payload.get("client_id"))
                   for r in read_records(str(tmp_path))}
        assert ("order.submitted", f"d-{i}") in on_disk and ("broker.filled", f"d-{i}") in on_disk
    # a refused order appends nothing and does not wait
    last = je.journal.writer.last_seq
    with pytest.raises(ConflictError):
        await submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000,
                               client_order_id="d-0"))
    assert je.journal.writer.last_seq == last
    await je.stop()
    # after a restart the engine no longer knows d-0, the journal does: still refused
    je2 = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability="fsync")
    await je2.start()
    submit2 = (lambda s: JournaledEngine.submit_py(je2, s)) if py else je2.submit
    for d in je2.engine._by_client:
        d.pop("d-0", None)
    je2.engine._orders.clear()
    with pytest.raises(ConflictError) as ei:
        await submit2(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000,
                                client_order_id="d-0"))
    assert ei.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    await je2.stop()


async def test_an_error_after_appending_still_waits_for_the_disk(tmp_path):
    """The submit raises after its records were appended: the error reaches the caller
    only once they are durable (the ``finally`` of the compiled coroutine)."""
    venue = Venue(seed=2, accounts=1, balance="100000")
    je = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability="fsync")
    await je.start()
    acct = je.account_ids[0]
    real = je.engine.submit

    async def failing(order, *, request_id=None):
        je.journal.append({"type": "trading_state", "account_id": acct, "state": "active"})
        raise RuntimeError("boom")

    je.engine.submit = failing
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await je.submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000))
        w = je.journal.writer
        assert w.durable_seq == w.last_seq
    finally:
        je.engine.submit = real
    await je.stop()


async def test_concurrent_none_mode_submits_ack_after_their_turns_write(tmp_path):
    """``none`` mode: the compiled submit waits one loop turn for the end-of-turn write
    instead of a future; every ack still finds its records written, and waits for its own
    records only (not for those the clients that resumed before it appended meanwhile:
    that would take a future and another turn)."""
    venue = Venue(seed=2, accounts=1, balance="100000000")
    je = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability="none")
    await je.start()
    acct = je.account_ids[0]
    w = je.journal.writer
    futures = []

    class CountingLoop:
        def __init__(self, loop):
            self.loop = loop

        def create_future(self):
            futures.append(1)
            return self.loop.create_future()

        def call_soon(self, *args):
            return self.loop.call_soon(*args)

    w._loop = CountingLoop(asyncio.get_running_loop())

    async def one(k):
        for i in range(3):
            await je.submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000,
                                      client_order_id=f"n-{k}-{i}"))
            on_disk = {r.payload.get("client_id") for r in read_records(str(tmp_path))
                       if r.payload["type"] == "broker.filled"}
            assert f"n-{k}-{i}" in on_disk

    await asyncio.gather(*[one(k) for k in range(32)])
    assert w.durable_seq == w.last_seq and not w._waiters and not futures
    w._loop = w._loop.loop
    await je.stop()


async def _journaled(tmp_path, durability: str, py: bool, **kw):
    """A started JournaledEngine over a fresh venue, its submit (the compiled one, or with
    ``py`` the Python references all the way down: the submit, the writer's per-turn choice
    and its loop-side write), the writer, and two helpers: an order spec by client id, and
    the client ids whose fills are on disk."""
    venue = Venue(seed=2, accounts=1, balance="100000000")
    je = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability=durability, **kw)
    await je.start()
    submit = (lambda s: JournaledEngine.submit_py(je, s)) if py else je.submit
    acct = je.account_ids[0]
    w = je.journal.writer
    if py:
        w.ack_turn = lambda last: JournalWriter.ack_turn_py(w, last)
        w._write_now = lambda: JournalWriter._write_now_py(w)

    def spec(cid, side="buy"):
        return OrderSpec(account_id=acct, instrument="EUR_USD", side=side, units=1000, client_order_id=cid)

    def filled_on_disk():
        return {r.payload.get("client_id") for r in read_records(str(tmp_path)) if r.payload["type"] == "broker.filled"}

    return je, submit, w, spec, filled_on_disk


@pytest.mark.parametrize("py", [False, True])
async def test_a_lone_none_mode_submit_acks_without_a_turn_and_a_busy_turn_shares_one_write(tmp_path, py):
    """``none`` mode decides per loop turn: a submit alone in its turn (after a quiet turn)
    writes its records at once and is acknowledged without giving the loop a turn (its
    coroutine finishes on its first step); once a turn has acknowledged several, the next
    turn's submits all share its one end-of-turn write, and a lone submit after such a turn
    waits for it too, until a quiet turn again."""
    je, submit, w, spec, filled_on_disk = await _journaled(tmp_path, "none", py)
    await asyncio.sleep(0)  # start-up's own end-of-turn write
    coro = submit(spec("alone-1"))
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # no suspension at all
    assert done.value.value.status == "filled"
    assert w.durable_seq == w.last_seq and "alone-1" in filled_on_disk()

    # a busy turn: the first ack of the turn still writes at once, the other nine share one write
    batches = w.stats.batches
    await asyncio.gather(*[submit(spec(f"busy-a{k}")) for k in range(10)])
    assert w.stats.batches == batches + 2
    # after a busy turn, every ack of the next turn shares its one write
    batches = w.stats.batches
    await asyncio.gather(*[submit(spec(f"busy-b{k}")) for k in range(10)])
    assert w.stats.batches == batches + 1
    assert {f"busy-a{k}" for k in range(10)} | {f"busy-b{k}" for k in range(10)} <= filled_on_disk()

    # a lone submit right after a busy turn waits for the end of its turn ...
    coro = submit(spec("after-busy"))
    coro.send(None)  # suspended: its records are not written yet
    assert "after-busy" not in filled_on_disk()
    await asyncio.sleep(0)  # the end-of-turn write runs, then (FIFO) this
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert done.value.value.status == "filled" and "after-busy" in filled_on_disk()
    # ... and that quiet turn makes the next lone submit write at once again
    coro = submit(spec("alone-2"))
    with pytest.raises(StopIteration):
        coro.send(None)
    assert w.durable_seq == w.last_seq and "alone-2" in filled_on_disk()
    await je.stop()


async def _writer_idle(w, timeout: float = 5.0) -> None:
    """Until nothing is in flight: the writer thread (if started) idle with no upkeep left to
    do, no direct write submitted, no upkeep running. Bounded."""
    async def poll():
        while (w._upkeep_due or not (w._thread is None or w._thread_idle) or w._upkeep_running
               or (w._direct is not None and w._direct.inflight)):
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), timeout)


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("py", [False, True])
async def test_a_lone_fsync_submit_writes_on_the_loop_and_a_busy_turn_shares_a_batch(tmp_path, py, direct):
    """``fsync`` decides per loop turn as ``none`` does: a submit alone in its turn (after a
    quiet turn), with nothing in flight, writes its records on the loop through the O_SYNC
    descriptor, durable when the write returns, and is acknowledged without a hand-off
    (its coroutine finishes on its first step, no future). A busy turn's other acks share
    one batch: a direct write submitted at the end of the turn (or, without direct I/O, the
    writer thread's)."""
    je, submit, w, spec, filled_on_disk = await _journaled(tmp_path, "fsync", py, direct=direct)
    assert w.write_path == ("direct" if direct else "thread")
    await asyncio.sleep(0)  # start-up's own end-of-turn hand-off
    await _writer_idle(w)
    for i in range(3):
        batches = w.stats.batches
        coro = submit(spec(f"alone-{i}"))
        with pytest.raises(StopIteration) as done:
            coro.send(None)  # no suspension at all: written and durable on the loop
        assert done.value.value.status == "filled"
        assert w.durable_seq == w.last_seq and w.stats.batches == batches + 1 and not w._waiters
        assert f"alone-{i}" in filled_on_disk()
        await asyncio.sleep(0)  # a quiet turn: nothing was left for the thread

    batches = w.stats.batches
    await asyncio.gather(*[submit(spec(f"busy-{k}")) for k in range(10)])
    assert w.durable_seq == w.last_seq and {f"busy-{k}" for k in range(10)} <= filled_on_disk()
    # the first ack wrote on the loop; the other nine shared the batch(es) after it
    assert 2 <= w.stats.batches - batches <= 3
    assert (w._thread is None) == direct  # a writer thread exists only without direct I/O
    await je.stop()


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("py", [False, True])
async def test_segment_upkeep_after_loop_side_fsync_writes_is_off_the_loop(tmp_path, py, direct):
    """Lone acknowledgements write on the loop, but rotating a full segment and topping up
    its preallocation (both flush too) stay off the loop: the write leaves them to a thread
    (the upkeep thread with direct I/O, else the writer thread), which does them at the end
    of the turn. Small segments make it rotate often; every record still reads back, in
    order, from the rotated files."""
    je, submit, w, spec, filled_on_disk = await _journaled(tmp_path, "fsync", py, segment_bytes=8192, direct=direct)
    after_batch = []  # the threads that rotated a segment
    real_rotate = w._rotate
    main = threading.get_ident()

    def spy(next_seq):
        after_batch.append(threading.get_ident())
        return real_rotate(next_seq)

    w._rotate = spy
    for i in range(40):
        await submit(spec(f"rot-{i}", "buy" if i % 2 else "sell"))
        await asyncio.sleep(0)  # the turn ends: upkeep, if due, goes to the thread
        await _writer_idle(w)  # done before the next order (else segments just grow past the size a while)
    assert w.stats.rotations >= 3 and after_batch and main not in after_batch
    seqs = [r.seq for r in read_records(str(tmp_path))]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] == w.last_seq
    assert {f"rot-{i}" for i in range(40)} <= filled_on_disk()
    await je.stop()


@pytest.mark.parametrize("durability", ["fsync", "none"])
async def test_a_lone_cancel_is_acknowledged_from_its_own_write(tmp_path, durability):
    """Commands other than submit (here a cancel) make the same per-turn choice: alone in its
    turn, it writes its records on the loop and is acknowledged without waiting for a
    future (no end-of-turn write, no writer thread)."""
    from fastexec._core.fixedpoint import parse_price

    je, submit, w, spec, filled_on_disk = await _journaled(tmp_path, durability, False)
    acct = je.account_ids[0]
    resting = await je.submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000, type="limit",
                                        price=parse_price("1.00000", 5), client_order_id="rest-1"))
    assert resting.status == "working"
    await asyncio.sleep(0)
    await _writer_idle(w)
    futures = []
    real = w.durable_future

    def counting(seq=None):
        futures.append(real(seq))
        return futures[-1]

    w.durable_future = counting
    batches = w.stats.batches
    cancelled = await je.cancel(resting.order_id)
    assert cancelled.status == "cancelled"
    assert futures == [None] and w.durable_seq == w.last_seq and w.stats.batches == batches + 1
    assert any(r.payload["type"].endswith("cancelled") for r in read_records(str(tmp_path)))
    await je.stop()


async def test_a_failed_none_mode_write_fails_the_submit(tmp_path):
    venue = Venue(seed=2, accounts=1, balance="100000")
    je = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability="none")
    await je.start()
    acct = je.account_ids[0]
    w = je.journal.writer
    good_fd = w._fd
    w._fd = os.open(os.path.join(str(tmp_path), "ro"), os.O_RDONLY | os.O_CREAT)  # pwrite: EBADF
    try:
        with pytest.raises(JournalFailedError):
            await je.submit(OrderSpec(account_id=acct, instrument="EUR_USD", side="buy", units=1000))
        assert isinstance(w.failed, OSError) and w.durable_seq < w.last_seq
    finally:
        os.close(w._fd)
        w._fd = good_fd
    await je.journal.close()


@pytest.mark.parametrize("py", [False, True])
async def test_a_failed_page_cache_write_fails_the_waiters_and_the_journal(tmp_path, py):
    """The compiled end-of-turn write (pwrite from C) fails like ``_write_now_py``:
    every waiter gets JournalFailedError, later appends are refused."""
    w = JournalWriter(str(tmp_path), durability="none")
    w.open()
    append = (lambda r: JournalWriter.append_py(w, r)) if py else w.append
    append({"type": "x"})
    assert await w.durable_future() == 1
    good_fd = w._fd
    w._fd = os.open(os.path.join(str(tmp_path), "ro"), os.O_RDONLY | os.O_CREAT)  # pwrite: EBADF
    try:
        append({"type": "y"})
        fut = w.durable_future()
        with pytest.raises(JournalFailedError):
            await fut
        assert isinstance(w.failed, OSError)
        with pytest.raises(JournalFailedError):
            append({"type": "z"})
        assert w.durable_seq == 1
    finally:
        os.close(w._fd)
        w._fd = good_fd
    await w.close()
    assert [r.payload["type"] for r in read_records(str(tmp_path))] == ["x"]


@pytest.mark.parametrize("py", [False, True])
async def test_odd_record_types_fold_as_in_python(tmp_path, py):
    """Unknown and non-string ``type`` values: skipped by the fold when hashable, a
    TypeError (after the record took its sequence number, as in Python) when not."""
    j = Journal(str(tmp_path), durability="none")
    j.open()
    append = (lambda r: Journal.append_py(j, r)) if py else j.append
    assert append({"type": "no.such.kind", "x": 1}) == 1
    assert append({"type": 7}) == 2
    assert append({"x": "no type"}) == 3
    with pytest.raises(TypeError):
        append({"type": ["unhashable"]})
    assert j.state.seq == 4 and j.writer.last_seq == 4
    await j.close()


def test_an_unhashable_id_raises_in_the_compiled_fold_as_in_python():
    """``_hot._get`` reads with PyDict_GetItemWithError: an unhashable key is the TypeError
    ``dict.get`` raises in the Python handler, not a silent miss."""
    rec = {"type": "broker.filled", "account_id": "A", "client_id": ["not", "hashable"], "broker_order_id": "b",
           "txn_id": 5, "instrument": "EUR_USD", "units": 10, "price": 1, "ts": 1}
    for handler in (state_mod.PY_HANDLERS["broker.filled"], _hot.on_filled):
        st = JournalState()
        st.by_client["A"] = {"x": "o"}  # the account has client ids: the lookup by client id happens
        with pytest.raises(TypeError):
            handler(st, dict(rec))
        assert st.positions == {"A": {"EUR_USD": 10}}  # what happened before the lookup, in both


@pytest.mark.parametrize("py", [False, True])
async def test_forgotten_client_ids_are_refused_per_account_after_a_restart(tmp_path, py):
    """The journal remembers a finished order's client id under its account: after a restart
    (the engine has forgotten it) a retry in that account is refused, and the same id is free
    in another account, as it was before the restart."""
    venue = Venue(seed=2, accounts=2, balance="100000")
    je = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability="none")
    await je.start()
    a1, a2 = je.account_ids[:2]
    assert (await je.submit(OrderSpec(account_id=a1, instrument="EUR_USD", side="buy", units=1000,
                                      client_order_id="r-1"))).status == "filled"
    await je.stop()
    je2 = JournaledEngine(_settings(), SimulatedBroker(venue), journal_dir=str(tmp_path), durability="none")
    await je2.start()
    submit2 = (lambda s: JournaledEngine.submit_py(je2, s)) if py else je2.submit
    for d in je2.engine._by_client:
        d.pop("r-1", None)
    je2.engine._orders.clear()
    with pytest.raises(ConflictError) as ei:
        await submit2(OrderSpec(account_id=a1, instrument="EUR_USD", side="buy", units=1000, client_order_id="r-1"))
    assert ei.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    view = await submit2(OrderSpec(account_id=a2, instrument="EUR_USD", side="buy", units=1000, client_order_id="r-1"))
    assert (view.account_id, view.client_order_id, view.status) == (a2, "r-1", "filled")
    await je2.stop()
