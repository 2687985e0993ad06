"""Reading a journal directory: segments in order, validated end to end.

A journal directory holds segment files ``seg-<first seq>.fxj`` (20-digit,
zero-padded, so names sort in sequence order) and snapshot files
``snap-<seq>.fxs``. Only the newest segment may end in a torn record: older
ones were fsynced before the writer moved on (in the synchronous modes; ``none``
mode promises nothing past a power cut). Continuity is checked across
segment boundaries too, because a missing segment means missing records.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterator, Optional

import orjson

from .codec import CorruptJournalError, JournalError, Record, ScanResult, scan_bytes

SEGMENT_RE = re.compile(r"^seg-(\d{20})\.fxj$")


def segment_name(first_seq: int) -> str:
    return f"seg-{first_seq:020d}.fxj"


def list_segments(directory: str) -> list[tuple[int, str]]:
    """(first seq, path) of every segment, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = SEGMENT_RE.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(directory, name)))
    out.sort()
    return out


def scan_segment(path: str, *, decode: bool = True, last: bool = True, expect_seq: Optional[int] = None) -> ScanResult:
    with open(path, "rb") as fh:
        data = fh.read()
    return scan_bytes(data, path, decode=decode, expect_seq=expect_seq, allow_torn_tail=last)


class JournalGapError(JournalError):
    """Records between two points are missing (a deleted or lost segment)."""


def read_records(directory: str, after_seq: int = 0) -> Iterator[Record]:
    """Every record with ``seq > after_seq``, in order, with payloads decoded.

    Raises ``CorruptJournalError`` for damage anywhere but a torn tail of the
    newest segment, and ``JournalGapError`` when the records right after
    ``after_seq`` are no longer on disk (or when sequence numbers skip).
    """
    segments = list_segments(directory)
    # Segments wholly before after_seq are skipped unread: segment i ends
    # where segment i+1 begins.
    start = 0
    for i in range(len(segments)):
        if i + 1 < len(segments) and segments[i + 1][0] <= after_seq + 1:
            start = i + 1
    expect: Optional[int] = None
    for i in range(start, len(segments)):
        first, path = segments[i]
        is_last = i == len(segments) - 1
        if expect is None:
            if first > after_seq + 1:
                raise JournalGapError(f"journal starts at seq {first} but records after {after_seq} are needed ({path})")
        elif first != expect:
            raise JournalGapError(f"segment {path} starts at seq {first}, expected {expect}")
        result = scan_segment(path, decode=False, last=is_last, expect_seq=first)
        for rec in result.records:
            if rec.seq > after_seq:
                try:
                    payload = orjson.loads(rec.payload)
                except orjson.JSONDecodeError as exc:
                    raise CorruptJournalError(path, rec.offset, f"payload is not JSON: {exc}") from None
                yield Record(rec.seq, payload, rec.offset, path)
        expect = first + len(result.records)


@dataclass
class VerifyReport:
    """Outcome of a full check; ``ok`` is False only for corruption or gaps
    (a torn tail is the expected result of a crash and is reported, not failed)."""

    segments: int = 0
    records: int = 0
    first_seq: Optional[int] = None
    last_seq: Optional[int] = None
    torn_tail: Optional[tuple[str, int, str]] = None  # path, offset, reason
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def verify(directory: str) -> VerifyReport:
    """Check every segment without stopping at the first problem, for operators."""
    report = VerifyReport()
    segments = list_segments(directory)
    report.segments = len(segments)
    expect: Optional[int] = None
    for i, (first, path) in enumerate(segments):
        is_last = i == len(segments) - 1
        if expect is not None and first != expect:
            report.errors.append(f"{path}: starts at seq {first}, expected {expect} (missing records)")
        try:
            result = scan_segment(path, decode=True, last=is_last, expect_seq=first)
        except CorruptJournalError as exc:
            report.errors.append(str(exc))
            expect = None
            continue
        if result.records:
            report.records += len(result.records)
            report.first_seq = result.first_seq if report.first_seq is None else report.first_seq
            report.last_seq = result.last_seq
        if result.torn_tail:
            report.torn_tail = (path, result.good_end, result.tail_reason)
        expect = first + len(result.records)
    return report
