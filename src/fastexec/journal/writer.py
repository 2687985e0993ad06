"""The append side of the journal: group commit on an asyncio loop.

An order must be durable before its acknowledgement, but one fsync per order
would cap the engine at the disk's fsync rate (a few hundred to a few thousand
per second). Group commit amortises it: every record appended while the loop
runs one turn, or while the previous fsync is still in progress, goes to disk
in one ``write`` + one ``fsync``, and every appender of that batch is released
together once the batch is durable. Under light load a batch is one record
(latency = one fsync); under heavy load batches grow and throughput rises with
them, which is the behaviour an order flow needs.

The write and the fsync run on a dedicated thread so the loop keeps serving
prices and requests while the disk works; the loop thread only encodes the
record (so a record that cannot be encoded fails its own caller, at once).
There is only ever one batch in flight, so the file needs no lock.

A failed write or fsync poisons the writer: after a failed fsync the kernel may
already have dropped the dirty pages, so retrying could report durable data
that is not. Every later append raises ``JournalFailedError`` and the engine
must stop acknowledging.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from .codec import JournalError, encode
from .reader import list_segments, scan_segment, segment_name

log = logging.getLogger("fastexec.journal")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class Durability(str, Enum):
    """How far a batch goes before its appenders are released.

    ``fsync`` (default) survives power loss; ``fdatasync`` skips flushing
    metadata that replay does not need (timestamps) and is cheaper on some
    file systems; ``none`` stops at the kernel's page cache, which survives a
    killed process but not a power cut — for tests and benchmarks only.
    """

    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    NONE = "none"


class JournalFailedError(JournalError):
    """The journal could not make a batch durable; nothing more is accepted."""


class JournalClosedError(JournalError):
    pass


class JournalLockedError(JournalError):
    """Another live process has this journal open: two writers would
    interleave records and each would believe its own sequence numbers."""


LOCK_NAME = ".lock"


@dataclass(slots=True)
class WriterStats:
    records: int = 0
    batches: int = 0
    bytes: int = 0
    max_batch: int = 0
    rotations: int = 0
    sync_ns: int = 0  # time spent in write + fsync, summed over batches (the disk's share of ack latency)
    max_sync_ns: int = 0


@dataclass(slots=True, frozen=True)
class OpenInfo:
    """What opening found: the last durable record and any torn tail dropped."""

    last_seq: int
    segment: str
    truncated_bytes: int
    tail_reason: str


def fsync_dir(path: str) -> None:
    """Make a created, renamed or deleted directory entry itself durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalWriter:
    """Appends records to segment files in ``directory``.

    Use: ``info = writer.open()`` (synchronous, at start-up), then from the
    loop ``seq = writer.append(record)`` and later ``await writer.wait_durable(seq)``
    (or ``await writer.barrier()`` for everything so far), or both at once with
    ``seq = await writer.write(record)``. ``await writer.close()``.
    """

    def __init__(
        self,
        directory: str,
        *,
        durability: Durability | str = Durability.FSYNC,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        min_next_seq: int = 1,
    ):
        self.directory = directory
        self.durability = Durability(durability)
        if segment_bytes < 1024:
            raise ValueError("segment_bytes must be at least 1024")
        self.segment_bytes = segment_bytes
        self._min_next_seq = max(1, min_next_seq)
        self._fd: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self._segment_path = ""
        self._segment_size = 0
        self._next_seq = 1
        self.durable_seq = 0
        self._buf: list[bytes] = []
        self._waiters: deque = deque()  # (seq, future), seq non-decreasing
        self._busy = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._failed: Optional[BaseException] = None
        self._closed = False
        self._idle: Optional[asyncio.Event] = None
        self.stats = WriterStats()

    # ------------------------------------------------------------------ open

    def open(self) -> OpenInfo:
        """Find the end of the journal, drop a torn final record, get ready to append.

        The torn bytes are truncated away (and the truncation fsynced) before
        anything new is written: appending after them would bury a bad frame
        in the middle of the file, which the reader treats as corruption.
        """
        os.makedirs(self.directory, exist_ok=True)
        self._lock_directory()
        segments = list_segments(self.directory)
        truncated, reason = 0, ""
        if segments:
            first, path = segments[-1]
            result = scan_segment(path, decode=False, last=True, expect_seq=first)
            last_seq = result.last_seq if result.records else first - 1
            if result.torn_tail:
                truncated = result.size - result.good_end
                reason = result.tail_reason
                log.warning("journal: dropping torn final record in %s at offset %d (%d bytes: %s)",
                            path, result.good_end, truncated, reason)
                with open(path, "r+b") as fh:
                    fh.truncate(result.good_end)
                    fh.flush()
                    os.fsync(fh.fileno())
            self._next_seq = max(last_seq + 1, self._min_next_seq)
            if self._next_seq == last_seq + 1:
                self._open_segment(path)
            else:  # a snapshot is ahead of the journal's tail: start a fresh segment
                self._open_segment(os.path.join(self.directory, segment_name(self._next_seq)))
        else:
            last_seq = self._min_next_seq - 1
            self._next_seq = self._min_next_seq
            self._open_segment(os.path.join(self.directory, segment_name(self._next_seq)))
        self.durable_seq = self._next_seq - 1
        return OpenInfo(self.durable_seq, self._segment_path, truncated, reason)

    def _lock_directory(self) -> None:
        """An exclusive flock for as long as this writer lives; the kernel
        drops it when the process dies, even by kill -9, so no stale locks."""
        fd = os.open(os.path.join(self.directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLockedError(f"journal {self.directory} is in use by another process") from None
        self._lock_fd = fd

    def _unlock_directory(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _open_segment(self, path: str) -> None:
        created = not os.path.exists(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._segment_path = path
        self._segment_size = os.fstat(self._fd).st_size
        if created:
            fsync_dir(self.directory)

    # ------------------------------------------------------------------ state

    @property
    def last_seq(self) -> int:
        """Sequence number of the last record appended (durable or not yet)."""
        return self._next_seq - 1

    @property
    def segment_path(self) -> str:
        return self._segment_path

    @property
    def failed(self) -> Optional[BaseException]:
        return self._failed

    # ------------------------------------------------------------------ append

    def append(self, record: dict) -> int:
        """Queue one record for the next group commit; returns its sequence number.

        Costs an encode and a list append: the engine calls this on its hot
        path for every record and decides separately when to wait
        (``wait_durable`` / ``barrier``), typically once per acknowledgement.
        """
        if self._failed is not None:
            raise JournalFailedError(f"journal is failed: {self._failed!r}")
        if self._closed or self._fd is None:
            raise JournalClosedError("journal is not open")
        seq = self._next_seq
        self._buf.append(encode(seq, record))
        self._next_seq = seq + 1
        if not self._busy:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._busy = True
            self._loop.call_soon(self._flush)
        return seq

    async def wait_durable(self, seq: int) -> int:
        """Return once record ``seq`` (and every one before it) is durable.

        Each waiter has its own future, resolved by the batch that covers its
        sequence number: cancelling one waiter touches nobody else, and a
        waiter does not wait for records appended after its own.
        """
        if self.durable_seq >= seq:
            return self.durable_seq
        if self._failed is not None:
            raise JournalFailedError(f"journal is failed: {self._failed!r}")
        if seq >= self._next_seq:
            raise ValueError(f"record {seq} was never appended (last is {self._next_seq - 1})")
        fut = self._loop.create_future()
        self._waiters.append((seq, fut))
        return await fut

    async def barrier(self) -> int:
        """Wait until every record appended so far is durable (not records
        appended while waiting, so it ends under continuous load, unlike
        ``flush``); returns durable_seq. This is what an acknowledgement awaits."""
        return await self.wait_durable(self._next_seq - 1)

    async def write(self, record: dict) -> int:
        """Append and wait until durable; returns the record's sequence number."""
        seq = self.append(record)
        await self.wait_durable(seq)
        return seq

    def _flush(self) -> None:
        if not self._buf:  # nothing queued (a failure cleared it)
            self._set_idle()
            return
        data = b"".join(self._buf)
        count = len(self._buf)
        self._buf.clear()
        last = self._next_seq - 1
        if self.durability is Durability.NONE:
            try:
                self._write_batch(data, last)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                self._fail(exc)
                return
            self._batch_done(last, count, len(data))
            self._set_idle()
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastexec-journal")
        cf = self._loop.run_in_executor(self._executor, self._write_batch, data, last)
        cf.add_done_callback(lambda f: self._after_write(f, last, count, len(data)))

    def _after_write(self, cf: asyncio.Future, last: int, count: int, nbytes: int) -> None:
        exc = cf.exception()
        if exc is not None:
            self._fail(exc)
            return
        self._batch_done(last, count, nbytes)
        if self._buf:
            self._flush()  # appended while the disk was busy: the next group
        else:
            self._set_idle()

    def _batch_done(self, last: int, count: int, nbytes: int) -> None:
        self.durable_seq = last
        st = self.stats
        st.records += count
        st.batches += 1
        st.bytes += nbytes
        if count > st.max_batch:
            st.max_batch = count
        waiters = self._waiters
        while waiters and waiters[0][0] <= last:
            fut = waiters.popleft()[1]
            if not fut.done():
                fut.set_result(last)

    def _set_idle(self) -> None:
        self._busy = False
        if self._idle is not None:
            self._idle.set()

    def _fail(self, exc: BaseException) -> None:
        log.critical("journal: write failed, no further records accepted: %r", exc)
        self._failed = exc
        err = JournalFailedError(f"journal write failed: {exc!r}")
        while self._waiters:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_exception(err)
        self._buf.clear()
        self._set_idle()

    # ------------------------------------------------------------------ disk (writer thread)

    def _write_batch(self, data: bytes, last: int) -> None:
        fd = self._fd
        t0 = time.perf_counter_ns()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self._segment_size += len(data)
        if self.durability is Durability.FSYNC:
            os.fsync(fd)
        elif self.durability is Durability.FDATASYNC:
            os.fdatasync(fd)
        took = time.perf_counter_ns() - t0
        self.stats.sync_ns += took
        if took > self.stats.max_sync_ns:
            self.stats.max_sync_ns = took
        if self._segment_size >= self.segment_bytes:
            self._rotate(last + 1)

    def _rotate(self, next_seq: int) -> None:
        """Seal the current segment (durable) and start the next one at ``next_seq``."""
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        self._open_segment(os.path.join(self.directory, segment_name(next_seq)))
        self.stats.rotations += 1

    # ------------------------------------------------------------------ close

    async def flush(self) -> int:
        """Wait until everything appended so far is durable; returns durable_seq."""
        while self._busy:
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()
        if self._failed is not None:
            raise JournalFailedError(f"journal is failed: {self._failed!r}")
        return self.durable_seq

    async def close(self) -> None:
        if self._closed:
            return
        if self._fd is not None and self._loop is not None:
            try:
                await self.flush()
            except JournalFailedError:
                pass
        self._closed = True
        if self._fd is not None:
            try:
                if self._failed is None:
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._unlock_directory()

    def close_sync(self) -> None:
        """Close without a loop (nothing may be in flight): for tools and tests."""
        if self._busy:
            raise RuntimeError("close_sync with a batch in flight; use await close()")
        self._closed = True
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._unlock_directory()

    def abandon(self) -> None:
        """Let go of the files the way a killed process does: no flush, no
        fsync, queued records dropped, lock released. In-process crash tests
        use it to hand the directory to a new writer."""
        self._closed = True
        self._buf.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._unlock_directory()
