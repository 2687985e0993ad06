"""Audit export of the journal for compliance: JSONL or CSV, by account and time.

Compliance wants every command and broker event in order, with who/when, in a
format their tools read; it must never alter or skip a record silently. The
export reads the journal files directly (no engine needed, safe on a copy or
while the engine runs: it reads only complete, checksummed records), and
stops with an error on corruption instead of exporting a history with a hole.

``fastexec audit --format jsonl|csv --account X --since T --until T DIR``
``T`` is ISO 8601 (``2026-11-21T10:00:00Z``; no zone means UTC) or integer
nanoseconds since the epoch; ``--since`` is inclusive, ``--until`` exclusive.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from datetime import datetime, timezone
from typing import IO, Iterable, Iterator, Optional, Sequence

import orjson

from .codec import JournalError, Record
from .reader import list_segments, read_records, verify

#: Leading CSV columns; every other field follows in a JSON ``detail`` column
#: so no record kind loses data in the flat format.
CSV_COLUMNS = ("seq", "time", "ts", "type", "account_id", "order_id", "client_order_id", "broker_order_id",
               "instrument", "side", "order_type", "units", "price", "status", "reason", "txn_id", "actor", "detail")


GLOBAL_TYPES = frozenset({"kill_switch", "risk.limits"})


def parse_time(text: str) -> int:
    """ISO 8601 or integer ns -> ns since the epoch (UTC when no zone is given)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # whole seconds exactly, then the microseconds: no float on the way
    return (int(dt.replace(microsecond=0).timestamp()) * 1_000_000 + dt.microsecond) * 1000


def format_time(ns: Optional[int]) -> str:
    if ns is None:
        return ""
    secs, rem = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem:09d}Z"


def _all_records(directory: str) -> Iterator[Record]:
    """Every record still on disk, from the oldest segment kept (retention may
    have removed older ones; the export starts where the journal does)."""
    segments = list_segments(directory)
    if not segments:
        return iter(())
    return read_records(directory, after_seq=segments[0][0] - 1)


def select(directory: str, *, account: Optional[str] = None, since: Optional[int] = None,
           until: Optional[int] = None) -> Iterator[Record]:
    for rec in _all_records(directory):
        p = rec.payload
        if account is not None:
            acct = p.get("account_id")
            # global controls (account None) apply to every account, so they belong in its audit
            if acct != account and not (acct is None and p.get("type") in GLOBAL_TYPES):
                continue
        ts = p.get("ts")
        if since is not None and (ts is None or ts < since):
            continue
        if until is not None and (ts is None or ts >= until):
            continue
        yield rec


def write_jsonl(records: Iterable[Record], out: IO[bytes]) -> int:
    n = 0
    for rec in records:
        out.write(orjson.dumps({"seq": rec.seq, "time": format_time(rec.payload.get("ts")), **rec.payload},
                               option=orjson.OPT_APPEND_NEWLINE))
        n += 1
    return n


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def write_csv(records: Iterable[Record], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    n = 0
    named = set(CSV_COLUMNS)
    for rec in records:
        p = rec.payload
        row = {"seq": rec.seq, "time": format_time(p.get("ts")), **p}
        if "client_id" in p and "client_order_id" not in p:  # broker events name it as the broker does
            row["client_order_id"] = p["client_id"]
        detail = {k: v for k, v in p.items() if k not in named and k != "client_id"}
        row["detail"] = detail or None
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
        n += 1
    return n


def export(directory: str, fmt: str, out, *, account: Optional[str] = None, since: Optional[int] = None,
           until: Optional[int] = None) -> int:
    """Write the selected records to ``out`` (binary for jsonl, text for csv); returns the count."""
    records = select(directory, account=account, since=since, until=until)
    if fmt == "jsonl":
        return write_jsonl(records, out)
    if fmt == "csv":
        return write_csv(records, out)
    raise ValueError(f"unknown format {fmt!r}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fastexec audit",
        description="Export the journal (every accepted command and broker event) as JSONL or CSV.",
    )
    parser.add_argument("directory", metavar="DIR", help="journal directory (FASTEXEC_DATA_DIR/journal)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--account", help="only records of this account (global controls are included)")
    parser.add_argument("--since", help="from this time, inclusive (ISO 8601 or ns since epoch)")
    parser.add_argument("--until", help="before this time, exclusive (ISO 8601 or ns since epoch)")
    parser.add_argument("--output", "-o", help="write here instead of standard output")
    parser.add_argument("--verify", action="store_true", help="check every record and report, instead of exporting")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not os.path.isdir(args.directory):
        print(f"fastexec audit: {args.directory}: not a directory", file=sys.stderr)
        return 2
    if args.verify:
        rep = verify(args.directory)
        print(f"segments={rep.segments} records={rep.records} first_seq={rep.first_seq} last_seq={rep.last_seq}")
        if rep.torn_tail:
            print(f"torn tail (dropped on next open): {rep.torn_tail[0]} offset {rep.torn_tail[1]}: {rep.torn_tail[2]}")
        for err in rep.errors:
            print(f"ERROR {err}")
        return 0 if rep.ok else 1
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        print(f"fastexec audit: bad time: {exc}", file=sys.stderr)
        return 2
    try:
        if args.output:
            mode = "wb" if args.format == "jsonl" else "w"
            with open(args.output, mode, **({} if mode == "wb" else {"newline": "", "encoding": "utf-8"})) as fh:
                n = export(args.directory, args.format, fh, account=args.account, since=since, until=until)
        else:
            if args.format == "jsonl":
                n = export(args.directory, "jsonl", sys.stdout.buffer, account=args.account, since=since, until=until)
            else:
                text = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=True)
                n = export(args.directory, "csv", text, account=args.account, since=since, until=until)
                text.detach()
            sys.stdout.flush()
    except JournalError as exc:
        print(f"fastexec audit: {exc}", file=sys.stderr)
        return 1
    print(f"fastexec audit: {n} records", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
