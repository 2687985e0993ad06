"""Audit export: every record, in order, filtered by account and time, JSONL and CSV."""
from __future__ import annotations

import copy
import csv
import io
import subprocess
import sys

import orjson
import pytest

from fastexec.journal import Journal
from fastexec.journal.audit import CSV_COLUMNS, format_time, main, parse_time
from fastexec.journal.reader import list_segments

from .streams import ACCOUNTS, stream


@pytest.fixture
async def journal_dir(tmp_path):
    recs = stream(800, 11)
    j = Journal(str(tmp_path / "j"), segment_bytes=8192)
    j.open()
    for i, r in enumerate(recs):
        j.append(copy.deepcopy(r))
        if i % 50 == 49:
            await j.barrier()  # batches of 50, so the journal spans several segments
    await j.close()
    return str(tmp_path / "j"), recs


def expected(recs, account=None, since=None, until=None):
    out = []
    for seq, r in enumerate(recs, 1):
        a = r.get("account_id")
        if account is not None and a != account and not (a is None and r["type"] in ("kill_switch", "risk.limits")):
            continue
        if since is not None and r["ts"] < since:
            continue
        if until is not None and r["ts"] >= until:
            continue
        out.append((seq, r))
    return out


def test_jsonl_export_of_everything_round_trips(journal_dir, tmp_path, capsysbinary):
    d, recs = journal_dir
    assert len(list_segments(d)) > 3
    assert main([d, "--format", "jsonl"]) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    rows = [orjson.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == list(range(1, len(recs) + 1))
    for row, rec in zip(rows, recs):
        assert row.pop("seq") and row.pop("time") == format_time(rec["ts"])
        assert row == rec


def test_filters_by_account_and_time_window(journal_dir, tmp_path):
    d, recs = journal_dir
    acct = ACCOUNTS[1]
    since, until = recs[200]["ts"], recs[600]["ts"]
    out = tmp_path / "a.jsonl"
    args = [d, "--account", acct, "--since", str(since), "--until", str(until), "-o", str(out)]
    assert main(args) == 0
    got = [(r["seq"], r["type"]) for r in map(orjson.loads, out.read_bytes().splitlines())]
    want = [(seq, r["type"]) for seq, r in expected(recs, acct, since, until)]
    assert got == want and 50 < len(got) < 400
    # global kill switches are in an account's audit trail
    assert any(r["type"] == "kill_switch" and r.get("account_id") is None
               for _, r in expected(recs, acct, since, until))


def test_csv_has_fixed_columns_and_loses_nothing(journal_dir, tmp_path):
    d, recs = journal_dir
    out = tmp_path / "a.csv"
    assert main([d, "--format", "csv", "--account", ACCOUNTS[0], "-o", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    want = expected(recs, ACCOUNTS[0])
    assert len(rows) == len(want)
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    for row, (seq, rec) in zip(rows, want):
        assert int(row["seq"]) == seq and row["type"] == rec["type"] and int(row["ts"]) == rec["ts"]
        # every field is either in its own column or in the JSON detail
        detail = orjson.loads(row["detail"]) if row["detail"] else {}
        for k, v in rec.items():
            if k in CSV_COLUMNS:
                cell = row[k]
                if v is None:
                    assert cell == ""
                elif isinstance(v, bool):
                    assert cell == ("true" if v else "false")
                elif isinstance(v, (dict, list)):
                    assert orjson.loads(cell) == v
                else:
                    assert cell == str(v)
            elif k == "client_id":  # a broker event's client id goes in the client_order_id column
                assert row["client_order_id"] == ("" if v is None else v)
            else:
                assert detail[k] == v


def test_iso_times_and_the_command_line_entry(journal_dir, tmp_path):
    d, recs = journal_dir
    assert parse_time("2026-11-21T10:00:00Z") == parse_time("2026-11-21T10:00:00") == parse_time("2026-11-21T11:00:00+01:00")
    assert parse_time("2026-11-21T10:00:00.000001Z") - parse_time("2026-11-21T10:00:00Z") == 1000
    since_iso = format_time(recs[100]["ts"])[:-4] + "Z"  # microsecond precision, rounds down
    proc = subprocess.run([sys.executable, "-m", "fastexec.journal.audit", d, "--since", since_iso, "--format", "csv"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode())))
    assert int(rows[0]["seq"]) == 101
    assert b"records" in proc.stderr


def test_corruption_stops_the_export_with_the_offset(journal_dir, capsys):
    d, _ = journal_dir
    first = list_segments(d)[0][1]
    data = bytearray(open(first, "rb").read())
    data[100] ^= 0xFF
    open(first, "wb").write(bytes(data))
    assert main([d]) == 1
    assert "offset 0" in capsys.readouterr().err
    assert main([d, "--verify"]) == 1
    assert "ERROR" in capsys.readouterr().out


def test_bad_arguments(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    (tmp_path / "e").mkdir()
    assert main([str(tmp_path / "e"), "--since", "yesterday"]) == 2
    assert main([str(tmp_path / "e")]) == 0  # an empty journal exports nothing
