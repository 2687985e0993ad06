"""Torn and corrupted records: detected and dropped or reported, never misread."""
from __future__ import annotations

import os
import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec.journal.codec import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    CorruptJournalError,
    UnsupportedVersionError,
    encode,
    iter_frames,
    scan_bytes,
)
from fastexec.journal.reader import read_records, segment_name, verify


def records(n, start=1):
    return [(start + i, {"type": "order.submitted", "order_id": f"o{start + i}", "units": 1000 * (i + 1),
                         "price": 1_105_230_000 + i, "account_id": "101-001-1-001"}) for i in range(n)]


def frames(n, start=1):
    return [encode(seq, p) for seq, p in records(n, start)]


def test_roundtrip_keeps_seq_payload_and_offsets():
    fs = frames(5)
    data = b"".join(fs)
    res = scan_bytes(data)
    assert [r.seq for r in res.records] == [1, 2, 3, 4, 5]
    assert [r.payload for r in res.records] == [p for _, p in records(5)]
    assert [r.offset for r in res.records] == [sum(len(f) for f in fs[:i]) for i in range(5)]
    assert res.good_end == len(data) and not res.torn_tail


def test_every_cut_of_the_last_record_is_a_torn_tail_dropped_cleanly():
    fs = frames(4)
    head = b"".join(fs[:3])
    for cut in range(1, len(fs[3])):
        res = scan_bytes(head + fs[3][:cut])
        assert [r.seq for r in res.records] == [1, 2, 3], cut
        assert res.torn_tail and res.good_end == len(head)


def test_garbage_after_the_last_record_is_a_torn_tail():
    data = b"".join(frames(3))
    for tail in (os.urandom(7), b"FXJ\x01" + b"\xff" * 30, b"\x00" * 4095 + b"\x01", b"\x01" + b"\x00" * 4095):
        res = scan_bytes(data + tail)
        assert [r.seq for r in res.records] == [1, 2, 3]
        assert res.torn_tail and res.good_end == len(data) and res.zero_tail == 0


@pytest.mark.parametrize("zeros", [1, 19, 20, 4096])
def test_zero_fill_after_the_last_record_is_the_clean_end_of_a_preallocated_segment(zeros):
    data = b"".join(frames(3))
    res = scan_bytes(data + b"\x00" * zeros)
    assert [r.seq for r in res.records] == [1, 2, 3]
    assert not res.torn_tail and res.good_end == len(data) and res.zero_tail == zeros
    assert scan_bytes(b"\x00" * zeros).records == []  # a fresh preallocated segment


def test_every_cut_of_the_last_record_followed_by_zero_fill_is_still_a_torn_tail():
    """A crash mid-write into preallocated space: the record's start is there,
    the rest of the file is zeros. Torn, exactly as without preallocation."""
    fs = frames(4)
    head = b"".join(fs[:3])
    for cut in range(1, len(fs[3])):
        torn = fs[3][:cut]
        res = scan_bytes(head + torn + b"\x00" * 512)
        if torn.count(0) == len(torn):  # pragma: no cover - a frame never starts with a zero byte
            continue
        assert [r.seq for r in res.records] == [1, 2, 3], cut
        assert res.torn_tail and res.good_end == len(head) and res.zero_tail == 0, cut


def test_zeros_in_the_middle_with_records_after_them_are_corruption_not_an_end():
    """A zeroed block inside the data (the disk lost it) must not pass for the
    preallocated end: valid records follow, so it is corruption, with its offset."""
    fs = frames(5)
    data = bytearray(b"".join(fs))
    off = len(fs[0]) + len(fs[1])
    data[off:off + len(fs[2])] = bytes(len(fs[2]))
    with pytest.raises(CorruptJournalError) as exc:
        scan_bytes(bytes(data) + b"\x00" * 1000, "seg")
    assert exc.value.offset == off


def test_a_sealed_segment_may_not_end_in_zeros():
    data = b"".join(frames(3))
    with pytest.raises(CorruptJournalError):
        scan_bytes(data + b"\x00" * 64, "seg", allow_torn_tail=False)


@pytest.mark.parametrize("where", ["magic", "length", "seq", "crc", "payload"])
def test_damage_in_a_middle_record_is_reported_with_its_offset(where):
    fs = frames(5)
    data = bytearray(b"".join(fs))
    off = len(fs[0]) + len(fs[1])  # record 3
    pos = {"magic": 0, "length": 5, "seq": 9, "crc": 17, "payload": HEADER_SIZE + 3}[where]
    data[off + pos] ^= 0x40
    with pytest.raises(CorruptJournalError) as exc:
        scan_bytes(bytes(data), "seg")
    assert exc.value.offset == off
    assert exc.value.path == "seg"


def test_damage_in_the_last_record_is_a_torn_tail_not_a_misread():
    fs = frames(3)
    data = bytearray(b"".join(fs))
    data[-2] ^= 0x01
    res = scan_bytes(bytes(data))
    assert [r.seq for r in res.records] == [1, 2]
    assert res.torn_tail and res.tail_reason == "checksum mismatch"


def test_sealed_segment_may_not_end_torn():
    data = b"".join(frames(3))[:-5]
    with pytest.raises(CorruptJournalError):
        scan_bytes(data, allow_torn_tail=False)


def test_sequence_gap_and_wrong_first_seq_are_corruption():
    data = encode(1, {"a": 1}) + encode(3, {"a": 3})
    with pytest.raises(CorruptJournalError, match="does not follow"):
        scan_bytes(data)
    with pytest.raises(CorruptJournalError):
        scan_bytes(encode(5, {}), expect_seq=4)


def test_newer_version_is_refused_not_misread():
    body = orjson.dumps({"x": 1})
    prefix = struct.pack("<3sBIQ", b"FXJ", 2, len(body), 1)
    import zlib

    frame = prefix + struct.pack("<I", zlib.crc32(body, zlib.crc32(prefix))) + body
    with pytest.raises(UnsupportedVersionError):
        scan_bytes(frame)


def test_oversized_length_field_is_not_followed():
    good = frames(2)
    bogus = bytearray(good[1])
    struct.pack_into("<I", bogus, 4, MAX_PAYLOAD + 1)
    res = scan_bytes(good[0] + bytes(bogus))
    assert [r.seq for r in res.records] == [1] and res.torn_tail


def test_floats_are_encodable_but_producers_use_ints_and_huge_records_are_refused():
    with pytest.raises(ValueError):
        encode(1, {"blob": "x" * (MAX_PAYLOAD + 1)})
    with pytest.raises(TypeError):
        encode(1, {"bad": object()})


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(
        st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=40),
                                                       st.none(), st.booleans()), max_size=6),
        min_size=1, max_size=8),
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_any_truncation_yields_an_exact_prefix(payloads, cut):
    fs = [encode(i + 1, p) for i, p in enumerate(payloads)]
    data = b"".join(fs)
    cut = min(cut, len(data))
    res = scan_bytes(data[:cut])
    # exactly the records that fit whole, each equal to what was written
    whole = 0
    total = 0
    for f in fs:
        if total + len(f) > cut:
            break
        whole += 1
        total += len(f)
    assert [r.payload for r in res.records] == payloads[:whole]
    assert res.good_end == total
    assert list(seq for seq, _, _ in iter_frames(data[:cut])) == list(range(1, whole + 1))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 6), victim=st.data(), bit=st.integers(0, 7))
def test_any_single_bit_flip_is_never_misread(n, victim, bit):
    fs = frames(n)
    data = bytearray(b"".join(fs))
    pos = victim.draw(st.integers(0, len(data) - 1))
    data[pos] ^= 1 << bit
    try:
        res = scan_bytes(bytes(data))
    except CorruptJournalError:
        return
    # if not reported, every record returned must be an original one, in order
    originals = [p for _, p in records(n)]
    assert [r.payload for r in res.records] == originals[: len(res.records)]
    assert len(res.records) < n  # the flipped record itself was dropped


def test_reader_spans_segments_and_checks_continuity(tmp_path):
    d = tmp_path
    (d / segment_name(1)).write_bytes(b"".join(frames(3, 1)))
    (d / segment_name(4)).write_bytes(b"".join(frames(3, 4)))
    assert [r.seq for r in read_records(str(d))] == [1, 2, 3, 4, 5, 6]
    assert [r.seq for r in read_records(str(d), after_seq=4)] == [5, 6]
    (d / segment_name(4)).unlink()
    (d / segment_name(5)).write_bytes(b"".join(frames(2, 5)))
    from fastexec.journal import JournalGapError

    with pytest.raises(JournalGapError):
        list(read_records(str(d)))
    rep = verify(str(d))
    assert not rep.ok and "expected 4" in rep.errors[0]


def test_verify_reports_torn_tail_separately_from_corruption(tmp_path):
    (tmp_path / segment_name(1)).write_bytes(b"".join(frames(3))[:-4])
    rep = verify(str(tmp_path))
    assert rep.ok and rep.records == 2 and rep.torn_tail is not None
    data = bytearray(b"".join(frames(3)))
    data[HEADER_SIZE + 2] ^= 0xFF
    (tmp_path / segment_name(1)).write_bytes(bytes(data))
    rep = verify(str(tmp_path))
    assert not rep.ok and "offset 0" in rep.errors[0]
