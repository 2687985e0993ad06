"""The on-disk frame of one journal record, and the scan that validates a file.

Frame layout (little-endian, 20-byte header, then the payload)::

    offset  size  field
    0       3     magic   b"FXJ"
    3       1     version (1)
    4       4     length  of the payload in bytes (uint32, <= MAX_PAYLOAD)
    8       8     seq     journal sequence number (uint64, +1 per record, never reused)
    16      4     crc     zlib.crc32 over header bytes 0..15 + payload
    20      n     payload orjson-encoded dict

Why this shape: the length prefix lets a reader step from record to record
without parsing JSON; the CRC covers the header too, so a flipped bit in the
length or the sequence number is caught instead of sending the reader off to a
wrong offset; the magic lets a scan look *past* a bad frame to tell a torn
tail (nothing valid after it: the last write of a crashed process) from
corruption in the middle (valid frames after it: the disk lied), which must
never be silently skipped. The sequence number lives in the header so replay
can check continuity and skip records covered by a snapshot without decoding
their payloads.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import orjson

MAGIC = b"FXJ"
VERSION = 1
HEADER = struct.Struct("<3sBIQI")
HEADER_SIZE = HEADER.size  # 20
_PREFIX = struct.Struct("<3sBIQ")  # the CRC-covered part of the header
#: A record bigger than this is refused on write and treated as corruption on
#: read: a corrupted length field must not make the reader swallow the file.
MAX_PAYLOAD = 16 * 1024 * 1024
#: Snapshots hold a whole state in one frame; their own, larger bound.
MAX_SNAPSHOT = 1024 * 1024 * 1024


class JournalError(Exception):
    """Base of the journal's errors."""


class CorruptJournalError(JournalError):
    """A bad record with valid records after it: data the journal had made
    durable is damaged. Start-up stops here rather than run on a state that
    silently lacks acknowledged records. ``path`` and ``offset`` locate it."""

    def __init__(self, path: str, offset: int, reason: str):
        super().__init__(f"corrupt journal record in {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class UnsupportedVersionError(JournalError):
    """A well-formed frame of a newer format: refuse instead of misreading it."""


@dataclass(slots=True, frozen=True)
class Record:
    seq: int
    payload: dict
    offset: int = 0
    segment: str = ""


_dumps = orjson.dumps
_crc32 = zlib.crc32
_pack_prefix = _PREFIX.pack
_pack_header = HEADER.pack


def encode(seq: int, payload: dict) -> bytes:
    """One complete frame; raises TypeError for payloads orjson cannot encode
    (floats are allowed by JSON but the journal's producers use ints only).

    The hot path of every append: one ``dumps``, the CRC over the 16-byte
    prefix and the body, one ``pack`` of the whole header, one concatenation.
    """
    body = _dumps(payload)
    n = len(body)
    if n > MAX_PAYLOAD:
        raise ValueError(f"journal record of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return _pack_header(MAGIC, VERSION, n, seq, _crc32(body, _crc32(_pack_prefix(MAGIC, VERSION, n, seq)))) + body


encode_py = encode  # the reference implementation (tests compare the compiled one against it)

try:  # the compiled frame (``_hot.pyx``): same bytes, one allocation, CRC in place
    from . import _hot
except ImportError:  # pragma: no cover - a build without the extension runs the Python path
    _hot = None
if _hot is not None:
    if _hot.MAX_PAYLOAD != MAX_PAYLOAD:  # pragma: no cover
        raise ImportError("fastexec.journal._hot is stale (MAX_PAYLOAD differs): rebuild the extensions")
    encode = _hot.encode  # noqa: F811


def encode_raw(seq: int, body: bytes, max_payload: int = MAX_PAYLOAD) -> bytes:
    """A frame around an already-encoded JSON object (snapshots encode once, on the loop)."""
    if len(body) > max_payload:
        raise ValueError(f"journal record of {len(body)} bytes exceeds the {max_payload}-byte limit")
    n = len(body)
    return _pack_header(MAGIC, VERSION, n, seq, _crc32(body, _crc32(_pack_prefix(MAGIC, VERSION, n, seq)))) + body


@dataclass(slots=True)
class _Frame:
    seq: int
    start: int
    end: int
    body: bytes


def _frame_at(buf: memoryview, pos: int, max_payload: int = MAX_PAYLOAD) -> tuple[Optional[_Frame], str]:
    """The valid frame starting at ``pos``, or None and why not."""
    n = len(buf)
    if n - pos < HEADER_SIZE:
        return None, "truncated header"
    magic, version, length, seq, crc = HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        return None, "bad magic"
    if length > max_payload:
        return None, f"length {length} exceeds limit"
    end = pos + HEADER_SIZE + length
    if end > n:
        return None, "truncated payload"
    body = bytes(buf[pos + HEADER_SIZE : end])
    if zlib.crc32(body, zlib.crc32(buf[pos : pos + 16])) != crc:
        return None, "checksum mismatch"
    if version != VERSION:
        raise UnsupportedVersionError(f"journal frame version {version} at offset {pos} (this build reads {VERSION})")
    return _Frame(seq, pos, end, body), ""


def _valid_frame_after(data: bytes, buf: memoryview, start: int) -> Optional[int]:
    """Offset of the first valid frame after ``start``, by looking for the magic."""
    pos = start
    while True:
        pos = data.find(MAGIC, pos + 1)
        if pos < 0:
            return None
        frame, _ = _frame_at(buf, pos)
        if frame is not None:
            return pos


@dataclass(slots=True)
class ScanResult:
    """What a scan of one segment found.

    ``good_end`` is the offset just past the last good record: a writer
    truncates the file there before appending again. ``torn_tail`` says bytes
    after ``good_end`` were dropped (a record cut short by a crash).
    ``zero_tail`` counts the zero bytes after ``good_end`` when nothing but
    zeros follows: space the writer preallocated and had not written yet (the
    clean end of a live segment, not damage).
    """

    path: str
    records: list[Record] = field(default_factory=list)
    good_end: int = 0
    size: int = 0
    torn_tail: bool = False
    tail_reason: str = ""
    zero_tail: int = 0

    @property
    def first_seq(self) -> Optional[int]:
        return self.records[0].seq if self.records else None

    @property
    def last_seq(self) -> Optional[int]:
        return self.records[-1].seq if self.records else None


def scan_bytes(data: bytes, path: str = "<memory>", *, decode: bool = True, expect_seq: Optional[int] = None,
               allow_torn_tail: bool = True, max_payload: int = MAX_PAYLOAD) -> ScanResult:
    """Validate every frame of a segment.

    With ``decode`` False, each record's payload is left as its raw bytes
    (replay skips records a snapshot covers without parsing them).

    A bad frame with a valid frame anywhere after it raises
    ``CorruptJournalError`` (with the offset of the bad frame); a bad frame
    with nothing valid after it is a torn tail, dropped and reported in the
    result, or raised too when ``allow_torn_tail`` is False (sealed segments
    were fsynced and trimmed before the next one was opened, so they have no
    excuse). Where a frame would start and every byte to the end of the file
    is zero, the segment simply ends there (``zero_tail``): the writer
    preallocates zero-filled space ahead of its appends. Only the live (last)
    segment may end that way; anything that is not all zeros is judged
    exactly as before.
    Sequence numbers must rise by exactly one; ``expect_seq`` checks the first.
    """
    buf = memoryview(data)
    result = ScanResult(path=path, size=len(data))
    pos = 0
    prev = None if expect_seq is None else expect_seq - 1
    while pos < len(data):
        frame, reason = _frame_at(buf, pos, max_payload)
        if frame is None:
            rest = len(data) - pos
            if allow_torn_tail and data.count(0, pos) == rest:
                result.zero_tail = rest  # preallocated, never written: the clean end
                break
            nxt = _valid_frame_after(data, buf, pos)
            if nxt is not None:
                raise CorruptJournalError(path, pos, f"{reason}; valid records follow at offset {nxt}")
            if not allow_torn_tail:
                raise CorruptJournalError(path, pos, f"{reason} at the end of a sealed segment")
            result.torn_tail = True
            result.tail_reason = reason
            break
        if prev is not None and frame.seq != prev + 1:
            raise CorruptJournalError(path, pos, f"sequence {frame.seq} does not follow {prev}")
        payload: Any = frame.body
        if decode:
            try:
                payload = orjson.loads(frame.body)
            except orjson.JSONDecodeError as exc:  # CRC matched but the producer wrote garbage
                raise CorruptJournalError(path, pos, f"payload is not JSON: {exc}") from None
        result.records.append(Record(frame.seq, payload, pos, path))
        prev = frame.seq
        pos = frame.end
        result.good_end = pos
    return result


def iter_frames(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(seq, offset, payload bytes) of each valid leading frame; stops at the first bad one."""
    buf = memoryview(data)
    pos = 0
    while pos < len(data):
        frame, _ = _frame_at(buf, pos)
        if frame is None:
            return
        yield frame.seq, pos, frame.body
        pos = frame.end
