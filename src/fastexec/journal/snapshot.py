"""Snapshots: engine state plus the journal sequence number it covers.

Start-up loads the newest readable snapshot and replays only the records after
its sequence number, so restart time does not grow with the journal's age.

A snapshot is written to a temporary file, fsynced, renamed into place and the
directory fsynced: a crash leaves either the old set of snapshots or the new
one, never a half-written file under a real name. The file is a single journal
frame (same magic, length and CRC), so a damaged snapshot is detected and the
next older one is used instead; replay then simply covers more records.

The encoding and the temporary file can be done by a forked child
(``run_snapshot_child``; ``store.Journal`` forks at the capture instant); the
parent publishes the file (``publish_snapshot``) once the journal is durable up
to the snapshot's sequence number.

Retention deletes only what the *oldest kept* snapshot covers, so falling back
to an older snapshot still finds every record it needs.
"""
from __future__ import annotations

import gc
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Callable, NoReturn, Optional

import orjson

from .codec import MAX_SNAPSHOT, CorruptJournalError, UnsupportedVersionError, encode_raw, scan_bytes
from .reader import list_segments
from .writer import fsync_dir

log = logging.getLogger("fastexec.journal")

SNAPSHOT_RE = re.compile(r"^snap-(\d{20})\.fxs$")
SNAPSHOT_FORMAT = 1


def snapshot_name(seq: int) -> str:
    return f"snap-{seq:020d}.fxs"


@dataclass(slots=True, frozen=True)
class Snapshot:
    seq: int
    state: dict
    created_ns: int
    path: str


def list_snapshots(directory: str) -> list[tuple[int, str]]:
    """(seq, path) of every snapshot file, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = [(int(m.group(1)), os.path.join(directory, n)) for n in names if (m := SNAPSHOT_RE.match(n))]
    out.sort()
    return out


def snapshot_body(seq: int, state: dict) -> bytes:
    """The encoded snapshot payload; taking it is the moment the state is captured."""
    return orjson.dumps({"format": SNAPSHOT_FORMAT, "seq": seq, "created_ns": time.time_ns(), "state": state})


def snapshot_tmp_path(directory: str, seq: int) -> str:
    """Where a snapshot of ``seq`` is written before it is renamed into place
    (``apply_retention`` removes leftovers of interrupted writes)."""
    return os.path.join(directory, f".{snapshot_name(seq)}.{os.getpid()}.tmp")


def write_snapshot_tmp(tmp: str, seq: int, body: bytes, *, durable: bool = True) -> None:
    """Frame ``body`` and write it to ``tmp`` (fsynced when ``durable``); not published yet."""
    data = encode_raw(seq, body, MAX_SNAPSHOT)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def publish_snapshot(tmp: str, directory: str, seq: int, *, durable: bool = True) -> str:
    """Rename a written ``tmp`` into place (and fsync the directory when ``durable``).
    Only once every record up to ``seq`` is durable: a snapshot is never ahead of the journal."""
    final = os.path.join(directory, snapshot_name(seq))
    os.replace(tmp, final)
    if durable:
        fsync_dir(directory)
    return final


def remove_tmp(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - retention retries it later
        log.warning("journal: could not remove snapshot temporary %s: %s", tmp, exc)


def write_snapshot(directory: str, seq: int, state: Optional[dict] = None, *, body: Optional[bytes] = None,
                   durable: bool = True) -> str:
    """Atomically store ``state`` as covering records up to and including ``seq``.

    The caller must only pass a ``seq`` whose records are already durable:
    otherwise a crash could leave a snapshot ahead of the journal, holding
    effects that were never acknowledged.
    """
    os.makedirs(directory, exist_ok=True)
    tmp = snapshot_tmp_path(directory, seq)
    try:
        write_snapshot_tmp(tmp, seq, body if body is not None else snapshot_body(seq, state), durable=durable)
    except BaseException:
        remove_tmp(tmp)
        raise
    return publish_snapshot(tmp, directory, seq, durable=durable)


def run_snapshot_child(err_fd: int, tmp: str, seq: int, state_fn: Callable[[], dict], durable: bool) -> NoReturn:
    """The body of a forked snapshot child (``Journal(snapshot_in_child=True)``): encode
    ``state_fn()`` (the parent's state as of the fork, copy-on-write), frame it, write and
    fsync ``tmp``, and ``os._exit``: 0 on success, 1 on any error (its text on ``err_fd``).

    Only the forking thread exists here: nothing touches the event loop, logging, the
    writer thread or any lock another thread may have held; no Python clean-up runs.
    """
    status = 1
    try:
        try:
            gc.disable()  # a collection would walk (and copy) every page of the parent's heap
            # a signal must not reach the parent's loop through the inherited wakeup fd
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError):  # not the main thread: nothing was installed for it
            pass
        write_snapshot_tmp(tmp, seq, snapshot_body(seq, state_fn()), durable=durable)
        status = 0
    except BaseException as exc:  # noqa: BLE001 - reported through the exit status and err_fd
        try:
            os.write(err_fd, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:4000])
        except BaseException:  # noqa: BLE001
            pass
        try:
            os.unlink(tmp)
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(status)


def read_snapshot(path: str) -> Snapshot:
    """Decode one snapshot file; raises ``CorruptJournalError`` if damaged."""
    with open(path, "rb") as fh:
        data = fh.read()
    result = scan_bytes(data, path, allow_torn_tail=False, max_payload=MAX_SNAPSHOT)
    if len(result.records) != 1:
        raise CorruptJournalError(path, 0, f"snapshot holds {len(result.records)} frames, expected 1")
    rec = result.records[0]
    body = rec.payload
    if not isinstance(body, dict) or body.get("format") != SNAPSHOT_FORMAT or body.get("seq") != rec.seq:
        raise CorruptJournalError(path, 0, "snapshot payload is not a format-1 snapshot of its own sequence number")
    return Snapshot(seq=rec.seq, state=body["state"], created_ns=body["created_ns"], path=path)


def load_latest_snapshot(directory: str) -> Optional[Snapshot]:
    """The newest snapshot that reads back intact, or None.

    A damaged snapshot is logged and skipped (an older one, or a full replay,
    gives the same state); a snapshot of a newer format stops start-up.
    """
    for seq, path in reversed(list_snapshots(directory)):
        try:
            return read_snapshot(path)
        except UnsupportedVersionError:
            raise
        except (CorruptJournalError, OSError, KeyError) as exc:
            log.error("journal: snapshot %s is unreadable, falling back to an older one: %s", path, exc)
    return None


@dataclass(slots=True, frozen=True)
class RetentionResult:
    deleted_segments: tuple[str, ...]
    deleted_snapshots: tuple[str, ...]


def apply_retention(directory: str, *, keep_snapshots: int = 3) -> RetentionResult:
    """Keep the newest ``keep_snapshots`` snapshots; delete older snapshots and
    every segment whose records the oldest kept snapshot fully covers.

    The newest segment is never deleted (the writer appends to it). Stale
    temporary files of interrupted snapshot writes are removed too.
    """
    if keep_snapshots < 1:
        raise ValueError("keep_snapshots must be at least 1")
    snaps = list_snapshots(directory)
    deleted_snaps: list[str] = []
    if len(snaps) > keep_snapshots:
        for _, path in snaps[: len(snaps) - keep_snapshots]:
            os.unlink(path)
            deleted_snaps.append(path)
        snaps = snaps[len(snaps) - keep_snapshots :]
    for name in os.listdir(directory):
        if name.startswith(".snap-") and name.endswith(".tmp"):
            os.unlink(os.path.join(directory, name))
    deleted_segs: list[str] = []
    if snaps:
        covered = snaps[0][0]
        segments = list_segments(directory)
        for i in range(len(segments) - 1):
            next_first = segments[i + 1][0]
            if next_first - 1 <= covered:  # last seq of segment i is next_first - 1
                os.unlink(segments[i][1])
                deleted_segs.append(segments[i][1])
            else:
                break
    if deleted_snaps or deleted_segs:
        fsync_dir(directory)
        log.info("journal retention: deleted %d segments and %d snapshots", len(deleted_segs), len(deleted_snaps))
    return RetentionResult(tuple(deleted_segs), tuple(deleted_snaps))
