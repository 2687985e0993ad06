# cython: language_level=3
"""Durable journal writes without a writer thread: whole blocks, O_DIRECT, Linux AIO.

Why: in the synchronous modes a batch used to go to a writer thread that sat in a
durable ``pwrite`` until the disk had flushed it. On this machine each such batch cost
the loop's core 70-90 us of CPU (the thread's wake-ups and switches, the GIL going back
and forth, the loop preempted), about 7 us per order at 12 orders per batch under load.
``io_submit`` from the loop costs ~15 us per batch (most of it the virtio doorbell every
path pays) and the completion arrives on an eventfd that the loop polls with everything
else: no thread, no switch on the loop's core (``bench/journal_handoff.py`` times both
paths step by step; writer.py's docstring has the figures over REST).

The price: without FUA on the device (virtio here) the kernel completes an ``O_DSYNC``
direct write in a kworker on the CPU that took the disk's interrupt, which issues the
cache flush. If that CPU is saturated by other runnable work, completions wait for the
scheduler to run the kworker: ~0.4 ms per write with that CPU 80 % busy, ~4 ms with it
100 % busy, on this machine. A synchronous ``pwrite`` (the writer thread, or a lone
acknowledgement here) issues the flush itself and does not depend on that CPU.

Why O_DIRECT: Linux AIO is asynchronous only for direct I/O; a buffered write would be
done inside ``io_submit``. The descriptor is also opened ``O_DSYNC`` (or ``O_SYNC``), so
a completed write is durable: the kernel flushes the device's cache before it reports
the write done.

Direct I/O moves whole aligned blocks, so the last, partly filled block of the segment
stays in the buffer (``head``) and is written again, with the next batch's records after
it. Its earlier bytes are identical in both writes, so even a rewrite torn by a power cut
can only lose records that were never acknowledged; the zeros written after the data are
what the segment's preallocation holds there anyway. One write is in flight at a time:
the next batch is staged only once the previous one completed, which is what keeps
batches in sequence order and the buffer free to reuse.

Invariants: ``base`` is a multiple of ``BLOCK`` and ``base + head`` is the data end;
``buf[0:head]`` holds the bytes of the file at ``base``; nothing is staged or rewritten
while a write is in flight.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno, EINTR
from libc.stdint cimport uint64_t, int64_t, uint32_t, uint16_t, int16_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memmove, memset
from posix.unistd cimport pwrite, read, close
from cpython.exc cimport PyErr_SetFromErrno

cdef extern from "<linux/aio_abi.h>":
    ctypedef unsigned long aio_context_t
    cdef struct iocb:
        uint64_t aio_data
        uint16_t aio_lio_opcode
        int16_t aio_reqprio
        uint32_t aio_fildes
        uint64_t aio_buf
        uint64_t aio_nbytes
        int64_t aio_offset
        uint32_t aio_flags
        uint32_t aio_resfd
    cdef struct io_event:
        uint64_t data
        uint64_t obj
        int64_t res
        int64_t res2
    enum:
        IOCB_CMD_PWRITE
        IOCB_FLAG_RESFD

cdef extern from "<sys/syscall.h>":
    enum:
        SYS_io_setup
        SYS_io_destroy
        SYS_io_submit
        SYS_io_getevents

cdef extern from "<unistd.h>":
    long syscall(long number, ...) nogil

cdef extern from "<sys/eventfd.h>":
    int eventfd(unsigned int initval, int flags)
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC

cdef extern from "<stdlib.h>":
    int posix_memalign(void** memptr, size_t alignment, size_t size)

cdef extern from "<time.h>":
    cdef struct timespec:
        long tv_sec
        long tv_nsec

#: Alignment of offsets, lengths and the buffer: a page, which covers devices with 512 and
#: 4096-byte logical blocks alike.
BLOCK = 4096
DEF _BLOCK = 4096
DEF _MIN_CAP = 64 * 1024


cdef class DirectAppender:
    """Appends batches of frames to one descriptor opened ``O_DIRECT`` plus ``O_DSYNC`` or
    ``O_SYNC``, in whole blocks, either asynchronously (``submit``, then ``reap`` when
    ``eventfd`` is readable) or synchronously (``write_now``). The caller owns the
    descriptor and its file's size (the preallocation must cover every write) and calls
    nothing else while a write is in flight except ``reap``."""

    cdef aio_context_t _ctx
    cdef int _efd
    cdef int _fd
    cdef char* _buf
    cdef Py_ssize_t _cap
    cdef long long _base  # file offset of _buf[0]: block-aligned
    cdef Py_ssize_t _head  # bytes of the partial last block, at _buf[0:_head]
    cdef Py_ssize_t _staged  # data bytes staged after the head (0: nothing staged)
    cdef Py_ssize_t _nbytes  # bytes the staged write covers: head + staged, rounded up to a block
    cdef bint _inflight
    cdef iocb _cb

    def __cinit__(self):
        self._ctx = 0
        self._efd = -1
        self._fd = -1
        self._buf = NULL

    def __init__(self):
        if syscall(SYS_io_setup, 4, &self._ctx) < 0:
            PyErr_SetFromErrno(OSError)
        self._efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self._efd < 0:
            PyErr_SetFromErrno(OSError)
        self._grow(_MIN_CAP)

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        if self._ctx:
            syscall(SYS_io_destroy, self._ctx)  # waits for a write still in flight: the buffer is its
            self._ctx = 0
        if self._efd >= 0:
            close(self._efd)
            self._efd = -1
        free(self._buf)
        self._buf = NULL
        self._inflight = False

    def close(self):
        """Wait for a write still in flight, then free the context, eventfd and buffer."""
        self._release()

    cdef int _grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = self._cap * 2 if self._cap else _MIN_CAP
        cdef void* p = NULL
        while cap < need:
            cap *= 2
        if posix_memalign(&p, _BLOCK, cap) != 0:
            raise MemoryError()
        if self._buf != NULL:
            memcpy(p, self._buf, self._head)
            free(self._buf)
        self._buf = <char*>p
        self._cap = cap
        return 0

    @property
    def eventfd(self):
        """Readable once a submitted write completed: register it with the loop."""
        return self._efd

    @property
    def inflight(self):
        return self._inflight

    @property
    def position(self):
        """The data end: where the next frame goes."""
        return self._base + self._head

    def attach(self, int fd, long long position, bytes head not None):
        """Write to ``fd`` from ``position`` on; ``head`` is the file's bytes from the block
        boundary at or before ``position`` up to it (what the next write must carry again)."""
        if self._inflight:
            raise RuntimeError("attach with a write in flight")
        cdef Py_ssize_t n = PyBytes_GET_SIZE(head)
        if n != position % _BLOCK:
            raise ValueError(f"head must be the {position % _BLOCK} bytes before position {position}")
        if self._ctx == 0:
            raise ValueError("appender is closed")
        memcpy(self._buf, PyBytes_AS_STRING(head), n)
        self._fd = fd
        self._base = position - n
        self._head = n
        self._staged = 0
        return None

    def rewrite_head(self):
        """Write the block holding the data end back as it is (the head, then zeros: what
        the file holds there), synchronously: proof at open that direct writes of this
        size and alignment work on this file, before any acknowledgement depends on one."""
        if self._fd < 0:
            raise ValueError("no descriptor attached")
        if self._inflight or self._staged:
            raise RuntimeError("a write is staged")
        memset(self._buf + self._head, 0, _BLOCK - self._head)
        cdef ssize_t k
        while True:
            k = pwrite(self._fd, self._buf, _BLOCK, self._base)
            if k >= 0 or errno != EINTR:
                break
        if k < 0:
            PyErr_SetFromErrno(OSError)
        if k != _BLOCK:
            raise OSError(5, "direct write came back short")
        return None

    cdef Py_ssize_t _stage(self, q, long long limit) except -2:
        """Move every frame of the deque ``q`` into the buffer after the head; returns how
        many, or -1 (nothing moved) when the write would reach past ``limit`` (if >= 0)."""
        cdef Py_ssize_t n = len(q), i, size, total = 0, at
        cdef bytes frame
        if self._inflight or self._staged:
            raise RuntimeError("a write is already staged")
        for frame in q:
            total += PyBytes_GET_SIZE(frame)
        if limit >= 0 and (self._base + self._head + total + _BLOCK - 1) // _BLOCK * _BLOCK > limit:
            return -1
        if self._head + total + _BLOCK > self._cap:
            self._grow(self._head + total + _BLOCK)
        at = self._head
        for i in range(n):
            frame = <bytes>q.popleft()
            size = PyBytes_GET_SIZE(frame)
            memcpy(self._buf + at, PyBytes_AS_STRING(frame), size)
            at += size
        self._nbytes = (at + _BLOCK - 1) // _BLOCK * _BLOCK
        memset(self._buf + at, 0, self._nbytes - at)
        self._staged = total
        return n

    cdef void _advance(self) noexcept:
        """The staged write is durable: its last partial block becomes the new head."""
        cdef long long end = self._base + self._head + self._staged
        cdef Py_ssize_t keep = end % _BLOCK
        cdef Py_ssize_t start = <Py_ssize_t>(end - keep - self._base)
        if start:
            memmove(self._buf, self._buf + start, keep)
        self._base = end - keep
        self._head = keep
        self._staged = 0

    def submit(self, q, long long limit=-1):
        """Stage every frame of the deque ``q`` and submit one write of them; returns
        ``(count, data bytes)``, or None, having taken nothing, when the write's last block
        would end past ``limit`` (the file's preallocated end: direct writes must not grow
        the file, which would make them synchronous and change metadata)."""
        if self._fd < 0:
            raise ValueError("no descriptor attached")
        cdef Py_ssize_t n = self._stage(q, limit)
        if n < 0:
            return None
        cdef iocb* cbp = &self._cb
        memset(cbp, 0, sizeof(iocb))
        cbp.aio_lio_opcode = IOCB_CMD_PWRITE
        cbp.aio_fildes = <uint32_t>self._fd
        cbp.aio_buf = <uint64_t><size_t>self._buf
        cbp.aio_nbytes = <uint64_t>self._nbytes
        cbp.aio_offset = self._base
        cbp.aio_flags = IOCB_FLAG_RESFD
        cbp.aio_resfd = <uint32_t>self._efd
        cdef long r
        while True:
            r = syscall(SYS_io_submit, self._ctx, 1, &cbp)
            if r == 1:
                break
            if r < 0 and errno == EINTR:
                continue
            self._staged = 0  # nothing went out: the frames are lost to the caller, who fails
            if r < 0:
                PyErr_SetFromErrno(OSError)
            raise OSError("io_submit accepted no write")
        self._inflight = True
        return n, self._staged

    def reap(self):
        """If the write in flight completed: ``(data bytes, error)`` with error 0 on
        success or the errno (a short write reports EIO); else None. Resets the eventfd."""
        cdef uint64_t count
        cdef io_event ev
        cdef timespec zero
        cdef long got
        cdef Py_ssize_t staged
        if not self._inflight:
            return None
        read(self._efd, &count, 8)  # nonblocking: the counter is only a wake-up
        zero.tv_sec = 0
        zero.tv_nsec = 0
        while True:
            got = syscall(SYS_io_getevents, self._ctx, 0, 1, &ev, &zero)
            if got >= 0 or errno != EINTR:
                break
        if got < 0:
            PyErr_SetFromErrno(OSError)
        if got == 0:
            return None
        self._inflight = False
        staged = self._staged
        if ev.res < 0:
            self._staged = 0
            return staged, <int>(-ev.res)
        if ev.res != self._nbytes:
            self._staged = 0
            return staged, 5  # EIO: a direct write inside the file's size came back short
        self._advance()
        return staged, 0

    def write_now(self, q, long long limit=-1):
        """Stage every frame of ``q`` and write them synchronously (durable when it returns);
        returns ``(count, data bytes)``, or None as ``submit`` does. Raises OSError, having
        written an unknown part."""
        if self._fd < 0:
            raise ValueError("no descriptor attached")
        cdef Py_ssize_t n = self._stage(q, limit)
        if n < 0:
            return None
        cdef Py_ssize_t done = 0
        cdef ssize_t k
        cdef Py_ssize_t staged = self._staged
        while done < self._nbytes:
            k = pwrite(self._fd, self._buf + done, self._nbytes - done, self._base + done)
            if k < 0:
                if errno == EINTR:
                    continue
                self._staged = 0
                PyErr_SetFromErrno(OSError)
            if k == 0 or k % _BLOCK:
                self._staged = 0
                raise OSError(5, "direct write came back short")
            done += k
        self._advance()
        return n, staged


# ---------------------------------------------------------------------------- zero fill

cdef extern from "<fcntl.h>":
    int fallocate(int fd, int mode, long long offset, long long length) nogil

DEF _ZERO_CHUNK = 1024 * 1024
cdef void* _zeros = NULL  # _ZERO_CHUNK aligned zero bytes, allocated on first use, never freed


def zero_fill(int fd, long long off, long long end):
    """Make ``[off, end)`` of the file behind ``fd`` (opened ``O_DIRECT``) allocated and
    written with zeros, around the page cache; returns ``end``. Both offsets are
    multiples of ``BLOCK``. Not durable until the caller's fsync. Raises OSError
    (EOPNOTSUPP: no fallocate; EINVAL: no direct I/O) with an unknown part done.

    For the writer's spare segment: its blocks must be written ones (a direct ``O_DSYNC``
    write into unwritten extents converts them, a metadata change each flush would then
    have to commit). ``fallocate`` first allocates the whole range in one go, so the zero
    writes that follow stay inside the file's size (no extending direct writes, which
    ext4 serialises); written direct, a segment's worth of zeros is not copied into the
    page cache, written back by a kworker and dropped again."""
    global _zeros
    if off < 0 or end < off or off % _BLOCK or end % _BLOCK:
        raise ValueError(f"zero_fill needs block-aligned 0 <= off <= end, got {off}, {end}")
    if end == off:
        return end
    cdef void* p = NULL
    if _zeros is NULL:
        if posix_memalign(&p, _BLOCK, _ZERO_CHUNK) != 0:
            raise MemoryError()
        memset(p, 0, _ZERO_CHUNK)
        _zeros = p
    cdef int rc
    with nogil:
        rc = fallocate(fd, 0, off, end - off)
    if rc != 0:
        PyErr_SetFromErrno(OSError)
    cdef ssize_t k
    cdef long long n
    while off < end:
        n = end - off if end - off < _ZERO_CHUNK else _ZERO_CHUNK
        with nogil:
            k = pwrite(fd, _zeros, n, off)
        if k < 0:
            if errno == EINTR:
                continue
            PyErr_SetFromErrno(OSError)
        if k == 0 or k % _BLOCK:
            raise OSError(5, "direct zero write came back short")
        off += k
    return end
