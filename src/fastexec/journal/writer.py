"""The append side of the journal: group commit on an asyncio loop.

An order must be durable before its acknowledgement, but one fsync per order
would cap the engine at the disk's fsync rate (a few hundred to a few thousand
per second). Group commit amortises it: every record appended while the loop
runs one turn, or while the previous batch is still on its way to the disk,
goes to disk in one synchronous write, and every appender of that batch is
released together once the batch is durable. Under light load a batch is one
loop turn's records (latency = one disk flush); under heavy load batches grow
and throughput rises with them, which is the behaviour an order flow needs.

In the synchronous modes (``fsync``, ``fdatasync``) the disk side is asynchronous
I/O driven by the loop itself (``_direct.DirectAppender``): at the end of a loop turn
that appended, everything queued goes out as one ``O_DIRECT`` write through Linux AIO
(``io_submit``) on a descriptor also opened ``O_SYNC`` / ``O_DSYNC``, so that its
completion means durable. The completion arrives on an eventfd the loop polls with its
sockets (``_reap_direct``): the batch's waiters are released in one pass and whatever
was appended meanwhile goes out as the next write. One write is in flight at a time, so
batches reach the file whole and in sequence order. The loop thread only encodes each
record (so a record that cannot be encoded fails its own caller, at once), queues the
frame and, once per batch, submits and reaps. Under concurrent load a completed write
that released several waiters holds the next one back briefly (the commit delay, see
``_reap_direct``), so that the released clients' next records share it.

Why not a writer thread blocking in a durable ``pwrite`` (what this module did before,
and still does where direct I/O is off or unsupported: ``direct=False``,
``FASTEXEC_JOURNAL_DIRECT=false``, or a file system answering EINVAL): the thread's
wake-ups, the GIL passed back and forth and the preemptions of the loop cost ~90 us of
CPU on the loop's core per batch here, against ~25 us for a submit and a reap; over REST
under load that was ~60 against ~52 us of CPU per order (``bench/journal_handoff.py``
times each step of both). Direct I/O moves whole blocks, so the last, partly filled block
is written again by the next batch (see ``_direct`` for why that cannot lose an
acknowledged record). The thread path: frames go on a deque; at the end of a loop turn
one ``eventfd`` write wakes the thread if it sleeps (a busy thread takes the next batch
by itself); the write is one ``pwrite`` through the O_SYNC / O_DSYNC descriptor; one
``call_soon_threadsafe`` per batch tells the loop.

Segment upkeep (growing the preallocation, rotating a full segment: both flush, a few
ms) never runs on the loop: with direct I/O it runs on a one-thread executor while no
write is in flight, and nothing is submitted until it is done; on the thread path the
writer thread does it between batches.

Preallocation: in the synchronous modes each segment is extended ahead of the
write position with zeros that are really written (not ``fallocate``d holes
or unwritten extents) and fsynced, in steps of ``preallocate`` bytes, off the
acknowledgement path. Overwriting blocks that already exist, inside the file's
size, changes no metadata that reading the data back needs, so the data flush
is all a batch waits for: on this machine's ext4 that is ~100 us instead of
~130 us for an append that grows the file. Readers stop at the zeros (see
``codec.scan_bytes``: an all-zero remainder is the clean end of the live
segment; a torn or corrupt frame is judged exactly as before). A segment is
trimmed to its data (and fsynced) when it is sealed by rotation and on a clean
close, so sealed segments never end in zeros. (``none`` mode does not flush a
segment it seals by rotation: see ``_rotate``.)

Spare segment (direct path): once the live segment is half full, a thread of its own
makes the next one ahead: a whole segment of zeros, written around the page cache and
fsynced, as ``spare.fxj.tmp`` (no reader lists it). Rotation renames it into place, so
the live segment never grows while the loop writes to it: growing it changed the inode
the loop's ``O_DSYNC`` writes go to, and a write issued before the growth's commit waited
on that journal commit (see ``_make_spare`` for the figure). Without a spare (made too
slowly, or the file system refused) rotation creates and grows the segment as before.

Mode ``none`` has no thread: the loop writes each turn's records to the page
cache itself at the end of the turn, one ``write`` per turn. (Writing at once
for every waiter instead saves a single client one loop turn but costs a
system call per acknowledgement under load: measured over REST with 32
connections, 118 us of CPU per request against 95 us in ``fsync`` mode.) So
the choice is made per turn (``_hot.journaled_submit``): an acknowledgement
that is alone - the first of its turn, after a turn with at most one - writes
at once and answers without waiting a turn; once a turn has had several, they
all wait for the end-of-turn write, until a quiet turn again.

The synchronous modes make the same per-turn choice: a lone acknowledgement, with
nothing in flight (no direct write submitted, no upkeep running; on the thread path:
the writer thread idle), writes its turn's records itself, on the loop, with one
synchronous write through the same descriptor, and answers when that system call
returns. One client waits for its flush either way; on the loop it skips the submit
and the reap (or the thread's two hand-offs and wake-ups), which is also most of the
CPU an order costs at low rates (``bench/journal_handoff.py``,
``bench/rest/seed_targets.py``). The loop is blocked for that one flush, and only when
nothing else asked for an acknowledgement in its turn; a busy turn goes to a batch as
before. On the thread path whoever writes holds ``_disk`` from taking the queue until
the write returns, and the segment's upkeep after a loop-side write is left to the
thread (``_upkeep_due``); with direct I/O a loop-side write that leaves upkeep due
starts it on the upkeep executor.

A failed write or flush poisons the writer: after a failed fsync the kernel may
already have dropped the dirty pages, so retrying could report durable data
that is not. Every later append raises ``JournalFailedError`` and the engine
must stop acknowledging.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from fastexec.errors import ServiceUnavailableError

from .codec import JournalError, encode
from .reader import list_segments, scan_segment, segment_name

try:  # the loop side of an append and the ack's future, compiled (``_hot.WriterCore``)
    from ._hot import WriterCore as _WriterBase
except ImportError:  # pragma: no cover - a build without the extension appends in Python
    _WriterBase = object
try:  # the synchronous modes' batches as whole-block direct writes through Linux AIO
    from ._direct import BLOCK as DIRECT_BLOCK, DirectAppender, zero_fill
except ImportError:  # pragma: no cover - a build without it writes batches on the writer thread
    DirectAppender, DIRECT_BLOCK, zero_fill = None, 4096, None

log = logging.getLogger("fastexec.journal")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
#: Direct writes under concurrent load: after a batch completes, the next one waits up to
#: this long for more records (see ``_reap_direct``); 0 submits at once.
DEFAULT_COMMIT_DELAY_US = 100
#: ... unless this many records are already queued
COMMIT_BATCH_RECORDS = 16
#: ... and only when the completed batch carried at least this many records (others waiting
#: at once: a sign that more are about to come)
COMMIT_SIBLINGS = 4
MAX_COMMIT_DELAY_US = 10_000
#: Zero-filled space kept ahead of the write position in the synchronous
#: modes; extended by this much (one write + fsync, a few ms, between batches)
#: whenever less than half of it is left.
DEFAULT_PREALLOCATE = 1024 * 1024
_ZEROS = bytes(DEFAULT_PREALLOCATE)


class Durability(str, Enum):
    """How far a batch goes before its appenders are released.

    ``fsync`` (default) survives power loss: each batch is written through an
    ``O_SYNC`` descriptor (write + fsync in one call; also ``O_DIRECT`` on the
    direct path). ``fdatasync`` writes through ``O_DSYNC`` (write + fdatasync):
    it skips flushing metadata that reading the data back does not need
    (timestamps); because segments are preallocated (file size and block map do
    not change when a batch is written) it survives power loss exactly as
    ``fsync`` does, and is a little cheaper. ``none`` stops at the kernel's page
    cache, which survives a killed process but not a power cut — for tests and
    benchmarks only.
    """

    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    NONE = "none"


class JournalFailedError(JournalError, ServiceUnavailableError):
    """The journal could not make a batch durable; nothing more is accepted.

    Over REST: 503 ``JOURNAL_FAILED``. An order whose acknowledgement failed this way
    may already be at the broker (its records were written ahead of the answer, not
    ahead of the send): a client should look it up by its client order id before
    sending it again, and the engine refuses the same client order id anyway."""

    default_code = "JOURNAL_FAILED"


class JournalClosedError(JournalError, ServiceUnavailableError):
    """The journal is not open (not yet, or the service is stopping): 503 ``JOURNAL_CLOSED``."""

    default_code = "JOURNAL_CLOSED"


class JournalLockedError(JournalError):
    """Another live process has this journal open: two writers would
    interleave records and each would believe its own sequence numbers."""


LOCK_NAME = ".lock"
#: The direct path's next segment, zero-filled ahead of need (``_make_spare``); not a
#: segment name, so readers never see it.
SPARE_NAME = "spare.fxj.tmp"
SPARE_NONE, SPARE_MAKING, SPARE_READY, SPARE_FAILED = 0, 1, 2, 3
_SPARE_STATES = ("none", "making", "ready", "failed")
#: ``ack_turn``'s answers: nothing to do (not ``none`` mode, or already written), written
#: now, left to the end-of-turn write
ACK_NOTHING, ACK_WRITTEN, ACK_AT_TURN_END = 0, 1, 2


def _alloc_steps(nbytes: int) -> int:
    """``nbytes`` rounded up to whole 64 KiB steps: how far segments are allocated."""
    return -(-nbytes // 65536) * 65536


@dataclass(slots=True)
class WriterStats:  # the fallback of ``_hot.WriterStats`` (same fields, as C integers)
    records: int = 0
    batches: int = 0
    bytes: int = 0
    max_batch: int = 0
    rotations: int = 0
    sync_ns: int = 0  # time spent in write + flush, summed over batches (the disk's share of ack latency)
    max_sync_ns: int = 0
    preallocated: int = 0  # zero bytes written ahead of the data


if _WriterBase is not object:
    from ._hot import WriterStats  # noqa: F811


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


class JournalWriter(_WriterBase):
    """Appends records to segment files in ``directory``.

    Use: ``info = writer.open()`` (synchronous, at start-up), then from the
    loop ``seq = writer.append(record)`` and later ``await writer.wait_durable(seq)``
    (or ``await writer.barrier()`` for everything so far), or both at once with
    ``seq = await writer.write(record)``. ``await writer.close()``.

    Ownership: the loop owns sequence numbers, the queue's tail, waiters and
    ``durable_seq``; the writer thread owns the file (descriptor, write
    position, preallocation, rotation) once it runs. ``none`` mode has no
    thread and the loop owns everything.
    """

    def __init__(
        self,
        directory: str,
        *,
        durability: Durability | str = Durability.FSYNC,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        min_next_seq: int = 1,
        preallocate: int = DEFAULT_PREALLOCATE,
        direct: bool = True,
        commit_delay_us: int = DEFAULT_COMMIT_DELAY_US,
    ):
        self.directory = directory
        self.durability = Durability(durability)
        if segment_bytes < 1024:
            raise ValueError("segment_bytes must be at least 1024")
        if preallocate < 0:
            raise ValueError("preallocate must be >= 0")
        if type(commit_delay_us) is not int or not 0 <= commit_delay_us <= MAX_COMMIT_DELAY_US:
            raise ValueError(f"commit_delay_us must be 0..{MAX_COMMIT_DELAY_US}, got {commit_delay_us!r}")
        self.segment_bytes = segment_bytes
        #: zero-filled bytes kept ahead of the data (sync modes only; 0 = grow by appending)
        self.preallocate = 0 if self.durability is Durability.NONE else min(preallocate, len(_ZEROS), segment_bytes)
        self._sync = self.durability is not Durability.NONE
        self._min_next_seq = max(1, min_next_seq)
        self._fd: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self._segment_path = ""
        self._pos = 0  # end of the data in the current segment (the next write goes here)
        self._alloc_end = 0  # end of the file: data + zero-filled preallocation
        self._next_seq = 1
        self.durable_seq = 0
        self._q: deque = deque()  # encoded frames not yet taken by the disk side, in sequence order
        self._disk_seq = 0  # last sequence number taken off the queue by the disk side
        self._waiters: deque = deque()  # (seq, future), seq non-decreasing
        self._kick_pending = False
        self._turn_acks = 0  # ``none`` mode: acknowledgements waiting in this loop turn
        self._busy = False  # ... and whether the last turn had more than one
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._efd: Optional[int] = None
        self._thread_idle = False
        # fsync: a lone acknowledgement wrote on the loop and left the segment's upkeep
        # (rotation, preallocation) to the writer thread
        self._upkeep_due = False
        # fsync: held by whoever takes the queue and writes it (the writer thread, or the loop
        # for a lone acknowledgement), so batches reach the file whole and in sequence order
        self._disk = threading.Lock()
        # sync modes, direct: batches go out as O_DIRECT writes through Linux AIO from the loop
        # (``_direct``; None: on the writer thread). Only segment upkeep runs on a thread
        # (``_upkeep_pool``, ``_upkeep_running``): growing the preallocation runs beside the
        # writes (they stay below the old end); nothing is submitted while it rotates (``_rotating``).
        self._want_direct = direct and self._sync and self.preallocate > 0 and DirectAppender is not None
        # direct: the next segment, made ahead on its own thread (``_make_spare``)
        self._spare_path = os.path.join(self.directory, SPARE_NAME)
        self._spare_pool: Optional[ThreadPoolExecutor] = None
        self._spare_state = SPARE_NONE
        self._direct = None
        self._dfd: Optional[int] = None
        self._inflight = (0, 0, 0)  # the write in flight: last seq, count, submitted at (ns)
        self._reaping = False
        self._upkeep_running = False
        self._rotating = False
        self._upkeep_pool: Optional[ThreadPoolExecutor] = None
        self._room_needed = 0
        self._commit_delay = commit_delay_us / 1e6
        self._hold: Optional[asyncio.TimerHandle] = None  # a commit delay running
        self._stopping = False
        self._abandoned = False
        self._failed: Optional[BaseException] = None
        self._open = False
        self._closed = False
        self.stats = WriterStats()

    # ------------------------------------------------------------------ open

    def open(self) -> OpenInfo:
        """Find the end of the journal, drop a torn final record, get ready to append.

        The torn bytes are truncated away (and the truncation fsynced) before
        anything new is written: appending after them would bury a bad frame
        in the middle of the file, which the reader treats as corruption. A
        zero-filled tail (preallocated space a killed writer never used) is
        kept and written over.
        """
        os.makedirs(self.directory, exist_ok=True)
        self._lock_directory()
        self._remove_spare()  # one a killed writer left: made again when needed
        segments = list_segments(self.directory)
        truncated, reason = 0, ""
        if segments:
            first, path = segments[-1]
            result = scan_segment(path, decode=False, last=True, expect_seq=first)
            last_seq = result.last_seq if result.records else first - 1
            self._next_seq = max(last_seq + 1, self._min_next_seq)
            fresh = self._next_seq != last_seq + 1  # a snapshot is ahead of the journal's tail
            if result.torn_tail or (fresh and result.zero_tail):
                if result.torn_tail:
                    truncated = result.size - result.good_end
                    reason = result.tail_reason
                    log.warning("journal: dropping torn final record in %s at offset %d (%d bytes: %s)",
                                path, result.good_end, truncated, reason)
                with open(path, "r+b") as fh:  # a segment left behind is sealed: no zeros at its end either
                    fh.truncate(result.good_end)
                    fh.flush()
                    os.fsync(fh.fileno())
            if not fresh:
                self._open_segment(path, result.good_end)
            else:
                self._open_segment(os.path.join(self.directory, segment_name(self._next_seq)), 0)
        else:
            last_seq = self._min_next_seq - 1
            self._next_seq = self._min_next_seq
            self._open_segment(os.path.join(self.directory, segment_name(self._next_seq)), 0)
        self.durable_seq = self._disk_seq = self._next_seq - 1
        self._open = True
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

    def _open_segment(self, path: str, data_end: int) -> None:
        """Open ``path`` for writing at ``data_end`` (everything after it is zeros or nothing)."""
        created = not os.path.exists(path)
        flags = os.O_WRONLY | os.O_CREAT
        if self.durability is Durability.FSYNC:
            flags |= os.O_SYNC
        elif self.durability is Durability.FDATASYNC:
            flags |= os.O_DSYNC
        self._fd = os.open(path, flags, 0o644)
        self._segment_path = path
        self._pos = data_end
        self._alloc_end = os.fstat(self._fd).st_size
        if created:
            fsync_dir(self.directory)
        if self.preallocate:
            self._reserve(self.preallocate)
        if self._want_direct:
            self._attach_direct(path, data_end, flags)

    def _attach_direct(self, path: str, data_end: int, flags: int) -> None:
        """Open the segment again with O_DIRECT for the batches, and point the appender at
        it, with the bytes of the partial block before ``data_end`` (rewritten by the next
        write). The first time, prove that it works here by writing that block back as it
        is: a file system without direct I/O, a device whose blocks are larger than ours
        (both EINVAL) or a kernel without Linux AIO (ENOSYS, or EPERM/EAGAIN: sandboxed, or
        out of AIO contexts) keeps the writer thread, decided at open rather than by a
        failed acknowledgement. Later segments (rotation) must take direct I/O as well."""
        first = self._direct is None
        try:
            dfd = os.open(path, (flags & ~os.O_CREAT) | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL or not first:
                raise
            self._no_direct(exc)
            return
        try:
            keep = data_end % DIRECT_BLOCK
            head = b""
            if keep:
                with open(path, "rb") as fh:
                    fh.seek(data_end - keep)
                    head = fh.read(keep)
            if first:
                try:
                    appender = DirectAppender()
                    appender.attach(dfd, data_end, head)
                    appender.rewrite_head()
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EAGAIN):
                        raise
                    os.close(dfd)
                    self._no_direct(exc)
                    return
                self._direct = appender
            else:
                self._direct.attach(dfd, data_end, head)
        except BaseException:
            os.close(dfd)
            raise
        self._dfd = dfd

    def _no_direct(self, exc: OSError) -> None:
        log.info("journal: no direct I/O for %s (%s); batches go through the writer thread",
                 self.directory, exc.strerror or exc)
        self._want_direct = False

    def _reserve(self, nbytes: int) -> None:
        """Make sure ``nbytes`` after the write position are allocated: written
        zeros, then fsync (the file grew: its size is metadata)."""
        target = self._pos + nbytes
        if target <= self._alloc_end:
            return
        target = _alloc_steps(target)
        fd, off = self._fd, self._alloc_end
        zeros = memoryview(_ZEROS)
        while off < target:
            off += os.pwrite(fd, zeros[: min(len(zeros), target - off)], off)
        os.fsync(fd)
        self.stats.preallocated += off - self._alloc_end
        self._alloc_end = off

    # ------------------------------------------------------------------ state

    @property
    def spare(self) -> str:
        """The next segment made ahead (direct path): none, making, ready or failed."""
        return _SPARE_STATES[self._spare_state]

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

    @property
    def write_path(self) -> str:
        """Who writes the batches: ``direct`` (Linux AIO from the loop), ``thread`` (the writer
        thread: direct I/O turned off or not supported here) or ``loop`` (``none`` mode)."""
        if not self._sync:
            return "loop"
        return "direct" if self._want_direct else "thread"

    # ------------------------------------------------------------------ append (loop)

    def append_py(self, record: dict) -> int:
        """Queue one record for the next group commit; returns its sequence number.
        (The reference: ``_hot.WriterCore.append`` is its compiled port and what runs.)

        Costs an encode and a deque append (plus one ``call_soon`` per loop
        turn): the engine calls this on its hot path for every record and
        decides separately when to wait (``wait_durable`` / ``barrier``),
        typically once per acknowledgement.
        """
        if self._failed is not None:
            raise JournalFailedError(f"journal is failed: {self._failed!r}")
        if not self._open:
            raise JournalClosedError("journal is not open")
        seq = self._next_seq
        self._q.append(encode(seq, record))
        self._next_seq = seq + 1
        if not self._kick_pending:
            self._kick_pending = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._kick)
        return seq

    def _kick_py(self) -> None:
        """End of a loop turn that appended: hand the batch to the disk.
        (The reference of ``_hot.WriterCore._kick``.)"""
        self._kick_pending = False
        self._busy = self._turn_acks > 1
        self._turn_acks = 0
        if self._failed is not None or not self._open:
            return
        if not self._sync:
            self._write_now_py()
        elif self._direct is not None:
            self._submit_direct()
        elif not self._q and not self._upkeep_due:
            return  # a lone acknowledgement wrote the turn's records itself: nothing for the thread
        elif self._thread is None:
            self._start_thread()
        elif self._thread_idle:
            os.eventfd_write(self._efd, 1)
        # a busy thread takes the queue by itself when its batch is durable

    def ack_turn_py(self, last: int) -> int:
        """An acknowledgement of the records up to ``last`` is about to wait for them:
        write them now, on the loop, when it is alone in its loop turn (after a quiet turn;
        in the synchronous modes also only with nothing in flight), else leave them to the
        end-of-turn write (``none``) or the next batch (see the module docstring).
        (The reference of ``_hot.WriterCore.ack_turn``.)"""
        if not self._kick_pending or self.durable_seq >= last:
            return ACK_NOTHING
        self._turn_acks += 1
        if self._turn_acks != 1 or self._busy:
            return ACK_NOTHING if self._sync else ACK_AT_TURN_END
        if not self._sync:
            self._write_now()
            return ACK_WRITTEN
        direct = self._direct
        if direct is not None:  # only with no write in flight and no upkeep running
            if direct.inflight or self._rotating:
                return ACK_NOTHING
            return ACK_WRITTEN if self._write_direct_now() else ACK_NOTHING
        # fsync: only while the writer thread is idle (not mid-batch or mid-upkeep), and
        # holding the disk so that it cannot start one meanwhile
        if not (self._thread is None or self._thread_idle) or not self._disk.acquire(False):
            return ACK_NOTHING
        try:
            self._write_now()
        finally:
            self._disk.release()
        return ACK_WRITTEN

    def durable_future_py(self, seq: Optional[int] = None) -> Optional[asyncio.Future]:
        """A future resolved once record ``seq`` (default: the last appended)
        and all before it are durable, or None when they already are. The
        cheapest way to wait (no coroutine): what an acknowledgement awaits.
        (The reference of ``_hot.WriterCore.durable_future``.)"""
        if seq is None:
            seq = self._next_seq - 1
        if self.durable_seq >= seq:
            return None
        if self._failed is not None:
            raise JournalFailedError(f"journal is failed: {self._failed!r}")
        if seq >= self._next_seq:
            raise ValueError(f"record {seq} was never appended (last is {self._next_seq - 1})")
        fut = self._loop.create_future()
        self._waiters.append((seq, fut))
        return fut

    if _WriterBase is object:  # pragma: no cover - no compiled base: the Python originals run
        append = append_py
        durable_future = durable_future_py
        ack_turn = ack_turn_py

    async def wait_durable(self, seq: int) -> int:
        """Return once record ``seq`` (and every one before it) is durable.

        Each waiter has its own future, resolved by the batch that covers its
        sequence number: cancelling one waiter touches nobody else, and a
        waiter does not wait for records appended after its own.
        """
        fut = self.durable_future(seq)
        if fut is None:
            return self.durable_seq
        return await fut

    async def barrier(self) -> int:
        """Wait until every record appended so far is durable (not records
        appended while waiting, so it ends under continuous load, unlike
        ``flush``); returns durable_seq. This is what an acknowledgement awaits."""
        fut = self.durable_future(self._next_seq - 1)
        if fut is None:
            return self.durable_seq
        return await fut

    async def write(self, record: dict) -> int:
        """Append and wait until durable; returns the record's sequence number."""
        seq = self.append(record)
        await self.wait_durable(seq)
        return seq

    def _done_py(self, last: int, count: int, nbytes: int) -> None:
        """A batch is durable (called on the loop): release its waiters in one pass.
        (The reference of ``_hot.WriterCore._done``.)"""
        if last <= self.durable_seq:
            return
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

    def _fail(self, exc: BaseException) -> None:
        if self._failed is not None:
            return
        log.critical("journal: write failed, no further records accepted: %r", exc)
        self._failed = exc
        err = JournalFailedError(f"journal write failed: {exc!r}")
        while self._waiters:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_exception(err)
        self._q.clear()

    # ------------------------------------------------------------------ disk side

    def _take(self) -> tuple[bytes, int, int]:
        """Everything queued, as one buffer: (data, last seq, count)."""
        q = self._q
        n = len(q)  # only the disk side pops, so these n are there to take
        if n == 1:
            data = q.popleft()
        else:
            data = b"".join([q.popleft() for _ in range(n)])
        last = self._disk_seq + n
        self._disk_seq = last
        return data, last, n

    def _write_batch(self, data: bytes) -> None:
        """One synchronous write at the data end (the descriptor's O_SYNC /
        O_DSYNC makes it durable before the call returns)."""
        t0 = time.perf_counter_ns()
        if self.preallocate and self._pos + len(data) > self._alloc_end:
            self._reserve(len(data) + self.preallocate // 2)  # a batch bigger than the room left: grow first
        fd, off = self._fd, self._pos
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, off)
            off += n
            view = view[n:]
        self._account_write(len(data), time.perf_counter_ns() - t0)

    def _account_write(self, nbytes: int, took: int) -> None:
        """A write of ``nbytes`` at the data end returned (durable, in the sync modes)."""
        self._pos += nbytes
        st = self.stats
        st.sync_ns += took
        if took > st.max_sync_ns:
            st.max_sync_ns = took

    def _full(self) -> bool:
        """The segment is due for rotation."""
        return self._pos >= self.segment_bytes

    def _short_of_room(self) -> bool:
        """Less than half the preallocation is left ahead of the data."""
        return bool(self.preallocate) and self._alloc_end - self._pos < self.preallocate // 2

    def _after_batch(self, last: int) -> None:
        """Between batches, off the acknowledgement path: rotate, or top up the preallocation."""
        if self._full():
            self._rotate(last + 1)
        elif self._short_of_room():
            self._reserve(self.preallocate)

    def _write_now_py(self) -> None:
        """``none`` mode, on the loop: write whatever is queued to the page cache.
        (The reference of ``_hot.WriterCore._write_now``, which writes with pwrite from C.)"""
        if not self._q or self._failed is not None:
            return
        data, last, n = self._take()
        try:
            self._write_batch(data)
            if not self._sync:
                self._after_batch(last)
            elif self._full() or self._short_of_room():
                self._upkeep_due = True  # rotation and preallocation flush too: the writer thread's
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            self._fail(exc)
            return
        self._done_py(last, n, len(data))

    if _WriterBase is object:  # pragma: no cover - no compiled base: the Python originals run
        _kick = _kick_py
        _write_now = _write_now_py
        _done = _done_py

    def _start_thread(self) -> None:
        self._efd = os.eventfd(0, os.EFD_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="fastexec-journal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The writer thread: take the queue, write it durably, tell the loop, repeat."""
        q, efd, loop = self._q, self._efd, self._loop
        call = loop.call_soon_threadsafe
        done = self._done
        try:
            while True:
                if self._abandoned:
                    return
                if self._upkeep_due:
                    with self._disk:
                        self._upkeep_due = False
                        self._after_batch(self._disk_seq)
                    continue
                if not q:
                    if self._stopping:
                        return
                    self._thread_idle = True
                    if not q and not self._upkeep_due and not self._stopping:  # re-check: no lost wake-up
                        os.eventfd_read(efd)
                    self._thread_idle = False
                    continue
                with self._disk:
                    if not q:  # a lone acknowledgement on the loop took it first
                        continue
                    data, last, n = self._take()
                    self._write_batch(data)
                    call(done, last, n, len(data))
                    self._after_batch(last)
        except BaseException as exc:  # noqa: BLE001 - the loop fails every waiter
            try:
                call(self._fail, exc)
            except RuntimeError:  # the loop is gone: nobody is waiting
                self._failed = exc

    def _stop_thread(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        os.eventfd_write(self._efd, 1)
        self._thread.join()
        self._thread = None
        os.close(self._efd)
        self._efd = None

    # ------------------------------------------------------------------ disk side: direct

    def _submit_direct(self) -> None:
        """On the loop: if nothing is in flight and the segment is not being rotated, submit
        everything queued as one direct write (its completion arrives through ``_reap_direct``)."""
        direct = self._direct
        if direct.inflight or self._rotating or not self._q or self._failed is not None:
            return
        if self._hold is not None:  # a commit delay runs: go early only with a full batch
            if len(self._q) < COMMIT_BATCH_RECORDS:
                return
            self._hold.cancel()
            self._hold = None
        try:
            taken = direct.submit(self._q, self._alloc_end)
            if taken is None:  # past the preallocated end: the growth's end submits it
                if not self._upkeep_running:
                    self._room_needed = sum(map(len, self._q))
                    self._start_upkeep(rotate=False)
                return
            if not self._reaping:
                self._loop.add_reader(direct.eventfd, self._reap_direct)
                self._reaping = True
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            self._fail(exc)
            return
        self._disk_seq += taken[0]
        self._inflight = (self._disk_seq, taken[0], time.perf_counter_ns())

    def _reap_direct(self) -> None:
        """On the loop, when the appender's eventfd is readable: the write in flight is
        durable (or failed): release its waiters, then upkeep or the next batch."""
        done = self._direct.reap()
        if done is None:
            return
        nbytes, err = done
        last, n, t0 = self._inflight
        if self._failed is not None:
            return
        if err:
            self._fail(OSError(err, f"journal direct write: {os.strerror(err)}"))
            return
        self._account_write(nbytes, time.perf_counter_ns() - t0)
        self._done(last, n, nbytes)
        if self._upkeep_if_due():
            return
        if self._commit_delay and n >= COMMIT_SIBLINGS and len(self._q) < COMMIT_BATCH_RECORDS:
            # Commit delay (PostgreSQL's commit_delay / commit_siblings): this batch released
            # several waiters at once, so their clients' next records are about to arrive;
            # submitting now would send the few that came in during the flight and leave the
            # rest for a write after it. Wait a little for them, or for a full batch. Under
            # wrk's 32 connections this cut CPU per order ~9 %: batches per order are most of
            # what fsync costs over none. One client never gets here (it writes on the loop).
            self._hold = self._loop.call_later(self._commit_delay, self._end_hold)
            return
        self._submit_direct()

    def _end_hold(self) -> None:
        self._hold = None
        if self._direct is not None:
            self._submit_direct()

    def _write_direct_now(self) -> bool:
        """A lone acknowledgement's records, written synchronously on the loop through the
        same appender (see ``ack_turn_py``); False when they need more room first."""
        t0 = time.perf_counter_ns()
        try:
            taken = self._direct.write_now(self._q, self._alloc_end)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            self._fail(exc)
            return True
        if taken is None:
            return False
        n, nbytes = taken
        self._disk_seq += n
        self._account_write(nbytes, time.perf_counter_ns() - t0)
        self._done(self._disk_seq, n, nbytes)
        self._upkeep_if_due()
        return True

    def _upkeep_if_due(self) -> bool:
        """Start rotating or growing the segment when due; True while the loop must not
        submit (a rotation: the descriptor changes under it)."""
        if self._spare_state == SPARE_NONE and self._pos >= self.segment_bytes // 2:
            self._start_spare()
        if self._upkeep_running:
            return self._rotating
        if self._full():
            if not self._direct.inflight:  # else the reap of the write in flight starts it
                self._start_upkeep(rotate=True)
            return True
        if self._short_of_room():
            self._start_upkeep(rotate=False)
        return False

    def _start_upkeep(self, rotate: bool) -> None:
        """Rotate, or grow the preallocation, on the upkeep thread (both flush: a few ms).
        Growing writes zeros past the preallocated end through the buffered descriptor
        while direct writes go on below it (``_alloc_end`` moves once the zeros are
        durable); a rotation waits for nothing in flight (the caller's) and stops submits."""
        self._upkeep_running = True
        self._rotating = rotate
        if self._upkeep_pool is None:
            self._upkeep_pool = ThreadPoolExecutor(1, thread_name_prefix="fastexec-journal")
        fut = self._loop.run_in_executor(self._upkeep_pool, self._upkeep)
        fut.add_done_callback(self._upkeep_done)

    def _upkeep(self) -> None:
        """On the upkeep thread. Rotating: nothing is in flight and the loop leaves the
        appender alone. Growing: only ``_fd`` and the file past ``_alloc_end`` are touched.
        (No ``_disk`` lock: that is the thread path's; here the loop never writes meanwhile.)"""
        if self._rotating:
            self._rotate(self._disk_seq + 1)
        else:
            self._reserve(max(self.preallocate, self._room_needed + self.preallocate // 2))
        self._room_needed = 0

    def _start_spare(self) -> None:
        """Make the next segment ahead, on a thread of its own (``_make_spare``), once
        the current one is half full (a journal that never gets that far never has one)."""
        self._spare_state = SPARE_MAKING
        if self._spare_pool is None:
            self._spare_pool = ThreadPoolExecutor(1, thread_name_prefix="fastexec-journal-spare")
        self._spare_pool.submit(self._make_spare)

    def _make_spare(self) -> None:
        """On the spare thread: a file of a whole segment's size, zeros written direct
        (``_direct.zero_fill``) and fsynced (why: the module docstring, "Spare segment").
        Growing the live segment instead, and the rotation's own growth, cost 2-3.5 % of
        CPU per order under load (``ab_wrk.py --durability fsync``, without and with the
        spare: paired 0.965 and 0.980 in two runs, orders/s +4.0 % and +3.0 %). A failure
        leaves no spare: rotation then creates the segment as before."""
        size = _alloc_steps(self.segment_bytes + self.preallocate)
        try:
            fd = os.open(self._spare_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT | os.O_CLOEXEC, 0o644)
            try:
                zero_fill(fd, 0, size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except Exception as exc:  # noqa: BLE001 - on a pool thread: nobody else would see it
            log.log(logging.INFO if isinstance(exc, OSError) else logging.WARNING,
                    "journal: no spare segment in %s (%s); rotation creates the next one", self.directory,
                    getattr(exc, "strerror", None) or exc)
            self._remove_spare()
            self._spare_state = SPARE_FAILED  # not tried again
            return
        self._spare_state = SPARE_READY

    def _remove_spare(self) -> None:
        try:
            os.unlink(self._spare_path)
        except FileNotFoundError:
            pass

    def _upkeep_done(self, fut: asyncio.Future) -> None:
        self._upkeep_running = False
        self._rotating = False
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:
            self._fail(exc)
        elif not self._closed and not self._upkeep_if_due():
            self._submit_direct()

    def _stop_direct(self) -> None:
        """Wait for upkeep and for a write in flight; let go of the appender."""
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        if self._upkeep_pool is not None:
            self._upkeep_pool.shutdown(wait=True)
            self._upkeep_pool = None
        if self._spare_pool is not None:
            self._spare_pool.shutdown(wait=True)
            self._spare_pool = None
        if self._direct is not None:
            if self._reaping:
                try:
                    self._loop.remove_reader(self._direct.eventfd)
                except RuntimeError:  # the loop is closed: nothing left to unregister
                    pass
                self._reaping = False
            self._direct.close()
            self._direct = None

    def _rotate(self, next_seq: int) -> None:
        """Seal the current segment (trimmed to its data) and start the next one at ``next_seq``.

        In the synchronous modes the seal is durable before the next segment takes a
        record. In ``none`` mode it is not flushed: that mode promises the page cache
        only, and rotation runs on the loop there, where flushing a whole segment's
        dirty pages stalled every request for ~45 ms once per 64 MiB (measured with
        strace under wrk). The kernel writes it back in its own time."""
        self._seal(flush=self._sync)
        path = os.path.join(self.directory, segment_name(next_seq))
        spare = self._spare_state == SPARE_READY
        if spare:  # zeros already durable: rename it into place
            os.rename(self._spare_path, path)
            fsync_dir(self.directory)
        self._open_segment(path, 0)
        if spare:
            self._spare_state = SPARE_NONE
        self.stats.rotations += 1

    def _seal(self, flush: bool = True) -> None:
        if self._dfd is not None:
            os.close(self._dfd)
            self._dfd = None
        fd = self._fd
        if self._alloc_end > self._pos:
            os.ftruncate(fd, self._pos)
            self._alloc_end = self._pos
        if flush:
            os.fsync(fd)
        os.close(fd)
        self._fd = None

    # ------------------------------------------------------------------ close

    async def flush(self) -> int:
        """Wait until everything appended so far, and while waiting, is durable; returns durable_seq."""
        while True:
            if self._failed is not None:
                raise JournalFailedError(f"journal is failed: {self._failed!r}")
            last = self._next_seq - 1
            if self.durable_seq >= last:
                return self.durable_seq
            await self.wait_durable(last)

    async def close(self) -> None:
        if self._closed:
            return
        if self._open and self._loop is not None:
            try:
                await self.flush()
            except JournalFailedError:
                pass
        self._finish()

    def close_sync(self) -> None:
        """Close without a loop (nothing may be in flight): for tools and tests."""
        if self._q or (self._failed is None and self.durable_seq < self._next_seq - 1):
            raise RuntimeError("close_sync with a batch in flight; use await close()")
        self._finish()

    def _finish(self) -> None:
        self._closed = True
        self._open = False
        self._stop_thread()
        self._stop_direct()
        if self._spare_state != SPARE_NONE:
            self._remove_spare()
        if self._fd is not None:
            try:
                if self._failed is None:
                    self._seal()  # trim the preallocated zeros: a cleanly closed segment ends at its data
            finally:
                if self._dfd is not None:
                    os.close(self._dfd)
                    self._dfd = None
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
        self._unlock_directory()

    def abandon(self) -> None:
        """Let go of the files the way a killed process does: no flush, no
        fsync, queued records dropped, lock released. In-process crash tests
        use it to hand the directory to a new writer. (A batch already on the
        writer thread finishes first, as it would in the kernel.)"""
        self._closed = True
        self._open = False
        self._abandoned = True
        self._stop_thread()
        self._stop_direct()
        self._q.clear()
        if self._dfd is not None:
            os.close(self._dfd)
            self._dfd = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._unlock_directory()
