"""The seam where the durable journal plugs in.

The engine appends one plain ``dict`` per accepted command and per broker
event it applies, *before* it acknowledges the caller. Plain dicts (ints,
strings, None) keep the journal free to choose its encoding and keep the
engine free of any I/O. Until the journal exists, ``NullJournal`` drops them;
``ListJournal`` keeps them in memory for tests and inspection.
"""
from __future__ import annotations

from typing import Protocol


class Journal(Protocol):
    def append(self, record: dict) -> None: ...


class NullJournal:
    __slots__ = ()

    def append(self, record: dict) -> None:
        return None


class ListJournal:
    """Keeps every record, in order. For tests and for small embedded use."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[dict] = []

    def append(self, record: dict) -> None:
        self.records.append(record)
