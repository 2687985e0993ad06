"""Durable journal, snapshots, crash recovery and broker reconciliation.

Nothing fastexec acknowledges may be lost: every accepted command and every
broker event is appended here (group commit, fsync by default) before the
caller's acknowledgement, and start-up rebuilds state from the newest snapshot
plus the records after it, then reconciles with the broker before serving.

Layout of a journal directory::

    seg-00000000000000000001.fxj   segment files, named by their first sequence number
    snap-00000000000000004096.fxs  snapshots, named by the sequence number they cover

Modules: ``codec`` (frame format), ``reader`` (scan, replay, verify),
``writer`` (group-commit appender), ``snapshot`` (atomic snapshots,
retention), ``state`` (the fold over records), ``records`` (record
vocabulary), ``store`` (``Journal``: all of the above), ``recovery``
(start-up reconciliation with a ``Broker``), ``audit`` (JSONL/CSV export, the
``fastexec audit`` command).
"""
from .codec import CorruptJournalError, JournalError, Record, UnsupportedVersionError
from .reader import JournalGapError, read_records, verify
from .records import event_record
from .snapshot import Snapshot, apply_retention, load_latest_snapshot, write_snapshot
from .state import JournalState
from .store import Journal, OpenReport
from .writer import Durability, JournalFailedError, JournalLockedError, JournalWriter

__all__ = [
    "CorruptJournalError",
    "Durability",
    "Journal",
    "JournalError",
    "JournalFailedError",
    "JournalGapError",
    "JournalLockedError",
    "JournalState",
    "JournalWriter",
    "OpenReport",
    "Record",
    "Snapshot",
    "UnsupportedVersionError",
    "apply_retention",
    "event_record",
    "load_latest_snapshot",
    "read_records",
    "verify",
    "write_snapshot",
]
