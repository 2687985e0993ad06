"""The fold and the broker-event records are pinned: faster code, same state.

``JournalState`` and ``event_record`` have hand-inlined fast paths (the fold
runs for every record on the engine's loop). These digests were taken with the
straightforward implementation they replaced (commit 122e33e), over seeded
streams that exercise every record kind (``streams.py``); any change in what
the fold produces, for any record, changes a digest.

Re-pinned once, on purpose, on 2026-11-22, when finished orders stopped being
kept in the state (only their client ids stay). Checked then against the fold
before the change, on these streams at retain 200 and 20,000: the open orders,
positions, balances, transaction ids, kill switches, limits and trading states
were equal, and the finished client ids were the old ones with older ones
before them (ids are now forgotten in batches).

Re-pinned a second time, on purpose, when client ids became unique per account:
the snapshot's ``finished_client_ids`` entries gained the account ([account,
client id, order id]). Checked then: with the account dropped from each entry,
the three states hash to the previous pins exactly (nothing else moved).
"""
from __future__ import annotations

import hashlib
from dataclasses import fields

import orjson
import pytest

from fastexec.brokers.base import OrderAccepted, OrderCancelled, OrderFilled, OrderRejected, OrderReplaced, PriceTick
from fastexec.journal import JournalState
from fastexec.journal.records import EVENT_TYPES, event_from_record, event_record

from .streams import stream

PINNED = {
    1: "a8d9e337de6ac9d49b24613e1b7cd89ae5cb4031776c84a4ad9bba054709ec40",
    2: "358b4fdd40d6d9a0559dd5ce20c13d04d337f42a3a198ab3e09ff6b1a10e1521",
    3: "4b98ec3943fb13e6338236de820f44f96b0ef83433360e2eccad294b2430ba18",
}


@pytest.mark.parametrize("seed", sorted(PINNED))
def test_fold_of_a_seeded_stream_matches_the_pinned_state(seed):
    st = JournalState(retain_terminal=200)  # small, so retiring finished orders is exercised too
    for seq, rec in enumerate(stream(3000, seed=seed), 1):
        st.apply(rec, seq)
    digest = hashlib.sha256(orjson.dumps(st.to_dict(), option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert digest == PINNED[seed]


EVENTS = [
    OrderAccepted("A", "c1", "11", 12, 1_000),
    OrderFilled("A", "c1", "11", 13, "EUR_USD", -2500, 1_100_010_000, "MARKET_ORDER", 1_001, pl=-5, financing=1,
                commission=2, account_balance=99, trade_opened_id=None, trades_closed=("7", "8")),
    OrderFilled("A", None, "14", 15, "USD_JPY", 100, 150_000_000_000, "STOP_LOSS_ORDER", 1_002),
    OrderCancelled("A", "c2", "16", 17, "CLIENT_REQUEST", 1_003),
    OrderRejected("A", "c3", 18, "INSUFFICIENT_MARGIN", "not enough margin", 1_004),
    OrderReplaced("A", "c4", "19", "20", 21, 1_005),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_record_holds_every_field_then_type_and_ts(event):
    rec = event_record(event, source="reconcile")
    names = [f.name for f in fields(type(event))]
    assert list(rec) == names + ["type", "ts", "source"]
    for name in names:
        value = getattr(event, name)
        assert rec[name] == (list(value) if name == "trades_closed" else value)
    assert rec["type"] == EVENT_TYPES[type(event)] and isinstance(rec["ts"], int)
    assert event_from_record(rec) == event
    assert "source" not in event_record(event)


def test_price_ticks_are_not_journaled():
    assert event_record(PriceTick("EUR_USD", 1, 2, 3)) is None
