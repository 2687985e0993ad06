"""What the journal's records say became of each order, finished ones included.

The journal's state keeps open orders only (a finished order leaves it, its
client id stays); tests that check how an order ended read it here: every
record on disk folded by the Python reference handlers (which the compiled
ones are tested equal to), keeping each order's dict as it was when it
finished.
"""
from __future__ import annotations

import os

from fastexec.journal import JournalState, read_records
from fastexec.journal.state import PY_HANDLERS


class _Recorder(JournalState):
    __slots__ = ("finished",)

    def __init__(self) -> None:
        super().__init__()
        self.finished: dict[str, dict] = {}

    def _finish(self, order: dict, indexed: bool = True) -> None:
        self.finished[order["order_id"]] = dict(order)
        super()._finish(order, indexed)


def journal_orders(directory) -> dict[str, dict]:
    """order id -> the order's last dict (open or finished), from every record on disk."""
    rec = _Recorder()
    for r in read_records(os.fspath(directory)):
        handler = PY_HANDLERS.get(r.payload.get("type"))
        if handler is not None:
            handler(rec, r.payload)
    return {**rec.finished, **rec.orders}
