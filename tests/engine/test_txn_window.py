"""``TxnWindow``: the engine's record of which broker transactions it has applied."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec.engine.hotpath import SEEN_WINDOW, TxnWindow


class ReferenceWindow:
    """The window's contract in plain Python: ids at or below ``floor`` count as
    applied; above it, exactly the ids recorded; an id beyond ``floor + SEEN_WINDOW``
    moves the floor up to ``id - SEEN_WINDOW``."""

    def __init__(self) -> None:
        self.floor = 0
        self.ids: set[int] = set()

    def record(self, txn: int) -> bool:
        if txn <= self.floor or txn in self.ids:
            return True
        if txn - self.floor > SEEN_WINDOW:
            self.floor = txn - SEEN_WINDOW
            self.ids = {t for t in self.ids if t > self.floor}
        self.ids.add(txn)
        return False


def test_a_redelivered_transaction_counts_as_applied():
    w = TxnWindow()
    assert w.record(7) is False
    assert w.record(7) is True
    assert 7 in w and 8 not in w and len(w) == 1


def test_ids_at_or_below_the_floor_count_as_applied_without_being_recorded():
    w = TxnWindow(floor=100)
    assert w.record(100) is True and w.record(-5) is True and 0 in w
    assert len(w) == 0 and w.floor == 100


def test_an_id_beyond_the_window_slides_it_and_forgets_only_what_it_left_behind():
    w = TxnWindow()
    for t in (1, 2, 3, SEEN_WINDOW):
        assert w.record(t) is False
    assert w.record(SEEN_WINDOW + 2) is False  # window is now (2, SEEN_WINDOW + 2]
    assert w.floor == 2
    assert 1 in w and 2 in w  # below the floor: applied
    assert w.record(3) is True and w.record(SEEN_WINDOW) is True  # still remembered
    assert w.record(4) is False  # inside the window, never seen: new
    assert len(w) == 4


def test_a_jump_past_a_whole_window_clears_it():
    w = TxnWindow()
    for t in range(1, 1001):
        w.record(t)
    assert w.record(10 * SEEN_WINDOW) is False
    assert w.floor == 9 * SEEN_WINDOW and len(w) == 1
    assert w.record(9 * SEEN_WINDOW + 1000) is False  # its bit was cleared by the jump


def test_a_negative_floor_is_refused():
    with pytest.raises(ValueError):
        TxnWindow(floor=-1)


def test_ids_beyond_int64_are_refused():
    w = TxnWindow()
    with pytest.raises(OverflowError):
        w.record(2**63)
    assert len(w) == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.integers(min_value=-3, max_value=40),  # small ids, duplicates, at or below the floor
    st.integers(min_value=SEEN_WINDOW - 40, max_value=SEEN_WINDOW + 40),  # at the window's edge
    st.integers(min_value=0, max_value=4 * SEEN_WINDOW),  # anywhere, jumps included
), max_size=120))
def test_the_window_answers_as_the_reference(txns):
    w, ref = TxnWindow(), ReferenceWindow()
    for t in txns:
        assert w.record(t) is ref.record(t), t
        assert w.floor == ref.floor
    assert len(w) == len(ref.ids)
    for t in set(txns) | {ref.floor + 1, ref.floor + SEEN_WINDOW}:
        assert (t in w) == (t <= ref.floor or t in ref.ids)
