"""The records the engine builds in C (``hotpath._submitted_record`` / ``_filled_record``)
against their Python originals (``Engine._journal_submitted``, ``records.event_record``):
the same keys, in the same order (so the same bytes on disk), the same values."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec.brokers.base import OrderFilled
from fastexec.config import Settings
from fastexec.engine import Engine, ExitSpec, ListJournal, OrderSpec
from fastexec.engine import hotpath as H
from fastexec.engine.engine import Engine as EngineCls
from fastexec.journal.records import event_record
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

SPECS = [
    dict(),
    dict(side="sell", client_order_id="c-1"),
    dict(type="limit", price=1_000_000_000, stop_loss=ExitSpec(price=900_000_000),
         take_profit=ExitSpec(price=1_200_000_000)),
    dict(type="limit", price=1_000_000_000, time_in_force="GTC", stop_loss=ExitSpec(distance=600_000),
         trailing_stop_distance=600_000),
    dict(type="stop", price=2_000_000_000, stop_loss=ExitSpec(distance=600_000, guaranteed=True)),
    dict(type="stop_limit", stop_price=2_000_000_000, price=2_010_000_000),
    dict(type="trailing_stop", trailing_distance=500_000),
    dict(type="market_if_touched", price=900_000_000),
    dict(type="ioc", price=1_200_000_000),
    dict(type="market", take_profit=ExitSpec(price=2_000_000_000)),
]


def _settings():
    return Settings(max_orders_per_second=10**9, max_position_size=10**9, max_units_per_order=10**9,
                    max_daily_loss=10**15, max_concurrent_orders=10**6,
                    max_positions_per_instrument=10**6)


def test_submitted_records_match_the_python_original():
    loop = asyncio.new_event_loop()
    try:
        eng = Engine(_settings(), SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000")),
                     journal=ListJournal())
        loop.run_until_complete(eng.start())
        acct = eng.account_ids[0]
        checked = 0
        for i, kw in enumerate(SPECS):
            spec = OrderSpec(**{"account_id": acct, "instrument": "EUR_USD", "side": "buy", "units": 1000 + i, **kw})
            recs = eng._journal.records
            recs.clear()
            loop.run_until_complete(eng.submit(spec, request_id=f"r-{i}" if i % 2 else None))
            compiled = recs[0]
            assert compiled["type"] == "order.submitted"
            o = eng._orders[compiled["order_id"]]
            recs.clear()
            EngineCls._journal_submitted(eng, o)  # the Python original, same order
            reference = recs[0]
            assert list(compiled) == list(reference)
            assert compiled == reference
            assert orjson.dumps(compiled) == orjson.dumps(reference)
            assert H.submitted_record(o) == reference
            checked += 1
        assert checked == len(SPECS)
        loop.run_until_complete(eng.stop())
    finally:
        loop.close()


_opt_str = st.one_of(st.none(), st.text(max_size=8))


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.text(max_size=8), _opt_str, st.text(max_size=8), st.integers(0, 2**62), st.text(max_size=8),
       st.integers(-10**9, 10**9), st.integers(0, 10**12), st.text(max_size=8), st.integers(0, 2**62),
       st.integers(-10**12, 10**12), st.integers(-10**9, 10**9), st.integers(0, 10**9),
       st.one_of(st.none(), st.integers(0, 10**15)), _opt_str, st.lists(st.text(max_size=5), max_size=3)))
def test_filled_records_match_event_record(values):
    values = list(values)
    values[-1] = tuple(values[-1])
    ev = OrderFilled(*values)
    compiled = H.filled_record(ev)
    reference = event_record(ev)
    assert compiled is not None
    assert list(compiled) == list(reference)
    ts = compiled.pop("ts")
    assert abs(ts - reference.pop("ts")) < 10**10 and type(ts) is int
    assert compiled == reference and orjson.dumps(compiled) == orjson.dumps(reference)


def test_filled_record_refuses_what_event_record_refuses():
    ev = OrderFilled("a", None, "b", 1, "EUR_USD", 1, 1, "r", 1, trades_closed=None)
    with pytest.raises(TypeError):
        event_record(ev)
    with pytest.raises(TypeError):
        H.filled_record(ev)
