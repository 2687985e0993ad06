"""``Journal``: the writer, snapshots, replay and retention behind one object.

This is what the engine holds. Opening it is start-up step one: load the
newest snapshot, replay (and validate) every later record into a
``JournalState``, drop a torn final record, and get ready to append. Appends
go to disk by group commit and are folded into the state at the same time, so
a snapshot can be cut at any moment without asking the engine anything.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .codec import Record
from .reader import read_records
from .snapshot import (Snapshot, apply_retention, load_latest_snapshot, publish_snapshot, remove_tmp,
                       run_snapshot_child, snapshot_body, snapshot_tmp_path, write_snapshot)
from .state import _HANDLERS, JournalState
from .writer import DEFAULT_COMMIT_DELAY_US, DEFAULT_SEGMENT_BYTES, Durability, JournalError, JournalWriter, OpenInfo

try:  # append (ts, writer, seq, fold, snapshot counter) compiled: ``_hot.JournalCore``
    from ._hot import JournalCore as _JournalBase
except ImportError:  # pragma: no cover - a build without the extension appends in Python
    _JournalBase = object

log = logging.getLogger("fastexec.journal")

#: Snapshots are encoded and written by a forked child unless this is "0" (or fork is unavailable).
SNAPSHOT_IN_CHILD_ENV = "FASTEXEC_JOURNAL_SNAPSHOT_IN_CHILD"


def _default_snapshot_in_child() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux") and os.environ.get(SNAPSHOT_IN_CHILD_ENV, "1") != "0"


class SnapshotError(JournalError):
    """A snapshot could not be written (the journal itself is intact: replay just covers more)."""


class _ForkUnavailable(Exception):
    pass


@dataclass
class OpenReport:
    """What start-up found on disk."""

    snapshot_seq: Optional[int]
    replayed: int
    last_seq: int
    truncated_bytes: int
    tail_reason: str
    elapsed_ns: int
    tail: list[Record] = field(default_factory=list, repr=False)


class Journal(_JournalBase):
    """Durable, replayable record of every accepted command and broker event.

    ``state_provider`` (optional) returns the engine's own state as a JSON-ready
    dict; it is stored in every snapshot next to the journal's ``JournalState``
    and handed back as ``engine_state`` on the next start.

    ``snapshot_in_child`` (default: on Linux, unless ``FASTEXEC_JOURNAL_SNAPSHOT_IN_CHILD=0``):
    a snapshot is encoded and written by a forked child, the loop paying only the fork;
    otherwise (or when fork fails) it is encoded on the loop.
    """

    def __init__(
        self,
        directory: str,
        *,
        durability: Durability | str = Durability.FSYNC,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        keep_snapshots: int = 3,
        snapshot_every: int = 0,
        state_provider: Optional[Callable[[], dict]] = None,
        keep_tail: bool = False,
        snapshot_in_child: Optional[bool] = None,
        direct: bool = True,
        commit_delay_us: int = DEFAULT_COMMIT_DELAY_US,
    ):
        self.directory = directory
        self.direct = direct
        self.commit_delay_us = commit_delay_us
        self.durability = Durability(durability)
        self.segment_bytes = segment_bytes
        self.keep_snapshots = keep_snapshots
        self.snapshot_every = snapshot_every
        self.state_provider = state_provider
        self.keep_tail = keep_tail
        self.state = JournalState()
        self._handlers = _HANDLERS
        self.engine_state: Optional[dict] = None
        self.writer: Optional[JournalWriter] = None
        self._since_snapshot = 0
        self._snapshot_task: Optional[asyncio.Task] = None
        self._snapshot_lock: Optional[asyncio.Lock] = None
        self.last_snapshot: Optional[Snapshot] = None
        #: encode and write snapshots in a forked child (the loop only forks); default: on Linux
        self.snapshot_in_child = _default_snapshot_in_child() if snapshot_in_child is None else bool(snapshot_in_child)
        self._snapshot_child: Optional[int] = None  # pid of the child writing a snapshot, while it runs
        #: further folds over the records, each with its own part of every snapshot (``add_fold``)
        self.folds: dict[str, Any] = {}

    def add_fold(self, name: str, fold: Any) -> None:
        """Keep another fold next to ``JournalState``, before ``open``: ``fold.load(part)`` gets
        its part of the newest snapshot (None without one), ``fold.replay(record)`` every record
        after it, and ``fold.to_dict()`` is stored as ``name`` in every snapshot. Live records
        are the fold's own business (``fastexec.journal.keys`` appends and folds its records
        itself). ``name`` must not be ``journal`` or ``engine``."""
        if name in ("journal", "engine"):
            raise ValueError(f"fold name {name!r} is taken")
        self.folds[name] = fold
        attach = getattr(fold, "attach", None)
        if attach is not None:
            attach(self)

    def _snapshot_state(self, engine_state: Optional[dict]) -> dict:
        """What a snapshot stores: the journal's state, the engine's, each fold's."""
        out = {"journal": self.state.to_dict(copy=False), "engine": engine_state}
        for name, fold in self.folds.items():
            out[name] = fold.to_dict()
        return out

    # ------------------------------------------------------------------ start-up

    def open(self) -> OpenReport:
        """Load the newest snapshot, replay the rest, open for appending.

        Raises ``CorruptJournalError`` / ``JournalGapError`` rather than start
        on a state that may lack acknowledged records.
        """
        t0 = time.perf_counter_ns()
        snap = load_latest_snapshot(self.directory)
        self.last_snapshot = snap
        if snap is not None:
            self.state = JournalState.from_dict(snap.state["journal"])
            self.engine_state = snap.state.get("engine")
        replays = []
        for name, fold in self.folds.items():
            fold.load(snap.state.get(name) if snap is not None else None)
            replays.append(fold.replay)
        after = snap.seq if snap is not None else 0
        tail: list[Record] = []
        count = 0
        for rec in read_records(self.directory, after_seq=after):
            self.state.apply(rec.payload, rec.seq)
            for replay in replays:
                replay(rec.payload)
            count += 1
            if self.keep_tail:
                tail.append(rec)
        self.writer = JournalWriter(self.directory, durability=self.durability, direct=self.direct,
                                    commit_delay_us=self.commit_delay_us,
                                    segment_bytes=self.segment_bytes, min_next_seq=after + 1)
        info: OpenInfo = self.writer.open()
        self.state.seq = info.last_seq
        report = OpenReport(snap.seq if snap else None, count, info.last_seq, info.truncated_bytes,
                            info.tail_reason, time.perf_counter_ns() - t0, tail)
        log.info("journal opened: snapshot=%s replayed=%d last_seq=%d truncated=%d",
                 report.snapshot_seq, count, info.last_seq, info.truncated_bytes)
        return report

    # ------------------------------------------------------------------ appending

    def append_py(self, record: dict) -> int:
        """Journal one record (the engine's seam); returns its sequence number.
        Await ``barrier()`` (or ``wait_durable(seq)``) before acknowledging
        anything that depends on it. Adds ``ts`` (wall-clock ns) when missing.
        (The reference: ``_hot.JournalCore.append`` is its compiled port and what runs.)"""
        if "ts" not in record:
            record["ts"] = time.time_ns()
        seq = self.writer.append(record)
        state = self.state
        state.seq = seq
        handler = _HANDLERS.get(record.get("type"))  # JournalState.apply, inlined (unknown types change nothing)
        if handler is not None:
            handler(state, record)
        if self.snapshot_every:
            self._since_snapshot += 1
            if self._since_snapshot >= self.snapshot_every and self._snapshot_task is None:
                self._since_snapshot = 0
                self._start_auto_snapshot()
        return seq

    if _JournalBase is object:  # pragma: no cover - no compiled base: the Python original runs
        append = append_py

    def _start_auto_snapshot(self) -> None:
        self._snapshot_task = asyncio.get_running_loop().create_task(self._auto_snapshot())

    async def write(self, record: dict) -> int:
        seq = self.append(record)
        await self.writer.wait_durable(seq)
        return seq

    async def wait_durable(self, seq: int) -> int:
        return await self.writer.wait_durable(seq)

    @property
    def last_seq(self) -> int:
        return self.writer.last_seq if self.writer else self.state.seq

    async def flush(self) -> int:
        return await self.writer.flush()

    async def barrier(self) -> int:
        """Wait until everything appended so far is durable: await this before
        acknowledging a command whose records were appended synchronously."""
        return await self.writer.barrier()

    # ------------------------------------------------------------------ health

    def health(self) -> dict:
        """The journal as ``/health/detailed`` shows it. Not ok when the writer is not
        open or has failed: every acknowledgement waits for the journal, so a failed
        one (a full disk, an I/O error) means no order can be acknowledged until the
        process is restarted, and the health answer has to say so."""
        w = self.writer
        out: dict = {"ok": False, "durability": self.durability.value}
        if w is None:
            out["open"] = False
            return out
        st = w.stats
        failed = w.failed
        is_open = bool(w._open)
        out.update(
            ok=failed is None and is_open,
            open=is_open,
            last_seq=w.last_seq,
            durable_seq=w.durable_seq,
            records=st.records,
            batches=st.batches,
            bytes=st.bytes,
            max_batch=st.max_batch,
            rotations=st.rotations,
            writes=w.write_path,
            commit_delay_us=self.commit_delay_us if w.write_path == "direct" else 0,
            spare_segment=w.spare,  # the next segment made ahead (direct path): none, making, ready, failed
            # the disk side's write (+ flush in fsync/fdatasync) per batch
            mean_write_us=round(st.sync_ns / st.batches / 1000, 1) if st.batches else None,
            max_write_us=round(st.max_sync_ns / 1000, 1),
            snapshot_seq=self.last_snapshot.seq if self.last_snapshot is not None else None,
            failed=None if failed is None else f"{type(failed).__name__}: {failed}",
        )
        return out

    # ------------------------------------------------------------------ snapshots

    async def snapshot(self, engine_state: Optional[dict] = None) -> str:
        """Cut a snapshot of the state as of now; returns its path.

        State and sequence number are captured together, synchronously (one
        loop owns both, so they agree); the file is written only once every
        record up to that sequence number is durable, so a snapshot is never
        ahead of the journal. With ``snapshot_in_child`` the capture is a fork
        and the encoding and writing happen in the child. Raises
        ``SnapshotError`` when the child fails (nothing is left on disk).
        """
        if self._snapshot_lock is None:
            self._snapshot_lock = asyncio.Lock()
        async with self._snapshot_lock:  # one at a time: retention must not race a snapshot being written
            return await self._snapshot(engine_state)

    async def _snapshot(self, engine_state: Optional[dict]) -> str:
        if engine_state is None and self.state_provider is not None:
            engine_state = self.state_provider()
        seq = self.writer.last_seq
        if self.snapshot_in_child:
            try:
                return await self._snapshot_forked(seq, engine_state)
            except _ForkUnavailable as exc:
                log.warning("journal: cannot fork a snapshot child (%s); encoding the snapshot on the loop", exc)
        # encoded straight from the live state (one orjson pass, on the loop, so
        # state and seq agree), not deep-copied first and encoded again
        body = snapshot_body(seq, self._snapshot_state(engine_state))
        await self.writer.barrier()
        loop = asyncio.get_running_loop()
        durable = self.durability is not Durability.NONE
        path = await loop.run_in_executor(None, lambda: write_snapshot(self.directory, seq, body=body, durable=durable))
        await loop.run_in_executor(None, lambda: apply_retention(self.directory, keep_snapshots=self.keep_snapshots))
        log.info("journal snapshot at seq %d: %s", seq, path)
        return path

    async def _snapshot_forked(self, seq: int, engine_state: Optional[dict]) -> str:
        """The state as of now, encoded and written by a forked child (Redis BGSAVE style).

        The fork is the capture instant: the child holds a copy-on-write image of the
        state at ``seq`` and the loop goes on at once. The child encodes, frames, writes
        and fsyncs a temporary file and exits; the parent reaps it without blocking the
        loop, waits until every record up to ``seq`` is durable, then renames the file
        into place and applies retention. A failed child leaves no file behind.
        """
        loop = asyncio.get_running_loop()
        durable = self.durability is not Durability.NONE
        directory = self.directory
        tmp = snapshot_tmp_path(directory, seq)

        def state_fn() -> dict:  # runs in the child only
            return self._snapshot_state(engine_state)

        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(r)
            os.close(w)
            raise _ForkUnavailable(exc) from exc
        if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
            os.close(r)
            run_snapshot_child(w, tmp, seq, state_fn, durable)
        # ---- parent: from here on the loop is free
        os.close(w)
        self._snapshot_child = pid
        published = False
        try:
            try:
                status = await _wait_child(loop, pid)
            except BaseException:
                self._end_child()
                raise
            finally:
                self._snapshot_child = None
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                detail = _read_error(r)
                raise SnapshotError(f"snapshot child for seq {seq} (pid {pid}) failed "
                                    f"({'exit ' + str(code) if code > 0 else 'signal ' + str(-code)}): {detail}")
            if seq:
                await self.writer.wait_durable(seq)  # never publish a snapshot ahead of the journal
            path = await loop.run_in_executor(None, lambda: publish_snapshot(tmp, directory, seq, durable=durable))
            published = True
        finally:
            os.close(r)
            if not published:
                remove_tmp(tmp)
        await loop.run_in_executor(None, lambda: apply_retention(directory, keep_snapshots=self.keep_snapshots))
        log.info("journal snapshot at seq %d: %s (written by child %d)", seq, path, pid)
        return path

    def _end_child(self) -> None:
        """Kill and reap an in-flight snapshot child (cancellation, ``abandon``)."""
        pid, self._snapshot_child = self._snapshot_child, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # a killed child is gone within moments
        except ChildProcessError:  # already reaped
            pass
        except ProcessLookupError:
            pass

    async def _auto_snapshot(self) -> None:
        try:
            await self.snapshot()
        except Exception:  # noqa: BLE001 - a failed snapshot costs replay time, not data
            log.exception("journal: automatic snapshot failed")
        finally:
            self._snapshot_task = None

    async def close(self) -> None:
        """Wait for an in-flight snapshot (automatic or explicit), then close the writer."""
        if self._snapshot_task is not None:
            await self._snapshot_task
        if self._snapshot_lock is not None:
            async with self._snapshot_lock:
                pass
        if self.writer is not None:
            await self.writer.close()

    def abandon(self) -> None:
        """Drop the journal like a crashed process would (see ``JournalWriter.abandon``)."""
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
        self._end_child()
        if self.writer is not None:
            self.writer.abandon()


async def _wait_child(loop: asyncio.AbstractEventLoop, pid: int) -> int:
    """Reap ``pid`` without blocking the loop; returns its wait status. A pidfd
    (Linux >= 5.3) becomes readable when the child exits; otherwise a worker
    thread blocks in ``waitpid``."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None:
        return (await loop.run_in_executor(None, os.waitpid, pid, 0))[1]
    try:
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]  # it has exited: at once


def _read_error(fd: int) -> str:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096).decode("utf-8", "replace") or "no detail"
    except OSError:
        return "no detail"
