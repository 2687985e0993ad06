"""After a restart, orders still working at the broker are adopted back from
the journal's record of them: same engine id, cancel and kill switch work,
and what happened while the engine was down is picked up from the broker."""
from __future__ import annotations

import pytest

from fastexec.engine import Engine, ListJournal, OrderSpec
from fastexec.errors import ConflictError, ValidationError
from fastexec.journal.state import JournalState
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

from .harness import FakeClock, make_settings, px


async def _engine(venue, clock, journal=None):
    engine = Engine(make_settings(), SimulatedBroker(venue), clock=clock, journal=journal or ListJournal())
    await engine.start()
    return engine


async def _crash(engine):
    """What a killed process leaves behind: the venue and the journal records."""
    await engine.broker.stop()


def _open_orders(journal: ListJournal) -> list[dict]:
    state = JournalState()
    for rec in journal.records:
        state.apply(rec)
    return [o for o in state.open_orders() if o["status"] != "emulated"]


@pytest.fixture
def world():
    clock = FakeClock()
    venue = Venue(seed=4, accounts=1, balance="100000", clock=clock)
    venue.set_price("EUR_USD", px("1.10000"), px("1.10010"))
    return venue, clock


async def test_adopted_order_keeps_its_id_and_can_be_cancelled_or_killed(world):
    venue, clock = world
    journal = ListJournal()
    first = await _engine(venue, clock, journal)
    a = first.account_ids[0]
    resting = await first.submit(OrderSpec(a, "EUR_USD", "buy", 1000, type="limit", price=px("1.09000"),
                                           client_order_id="keep-1"))
    other = await first.submit(OrderSpec(a, "EUR_USD", "sell", 500, type="limit", price=px("1.12000")))
    await _crash(first)

    second = await _engine(venue, clock)
    records = _open_orders(journal)
    assert {r["order_id"] for r in records} == {resting.order_id, other.order_id}
    for rec in records:
        view = await second.adopt_order(rec)
        assert view.status == "working"
    back = second.get_order("keep-1")
    assert back.order_id == resting.order_id and back.broker_order_id == resting.broker_order_id
    assert back.price == px("1.09000") and back.units == 1000
    assert second.account(a).working_orders == 2
    cancelled = await second.cancel(resting.order_id)
    assert cancelled.status == "cancelled"
    ks = await second.activate_kill_switch(a, reason="after restart", actor="ops")
    assert ks.cancelled_orders == (other.order_id,)
    assert venue.accounts[a].pending == {}
    with pytest.raises(ConflictError):
        await second.adopt_order(records[0])
    await second.stop()


async def test_fill_while_down_is_picked_up_without_moving_positions_twice(world):
    venue, clock = world
    journal = ListJournal()
    first = await _engine(venue, clock, journal)
    a = first.account_ids[0]
    resting = await first.submit(OrderSpec(a, "EUR_USD", "buy", 1000, type="limit", price=px("1.09000")))
    await _crash(first)
    venue.set_price("EUR_USD", px("1.08990"), px("1.09000"))  # fills while nobody listens

    second = await _engine(venue, clock)
    assert second.position(a, "EUR_USD").units == 1000  # loaded from the broker at start
    [rec] = _open_orders(journal)
    view = await second.adopt_order(rec)
    assert view.status == "filled" and view.filled_units == 1000
    assert view.order_id == resting.order_id
    assert second.position(a, "EUR_USD").units == 1000  # not applied a second time
    assert second.account(a).working_orders == 0
    await second.stop()


async def test_only_open_broker_orders_are_adopted(world):
    venue, clock = world
    engine = await _engine(venue, clock)
    a = engine.account_ids[0]
    base = {"order_id": "x-1", "client_order_id": "x-1", "account_id": a, "instrument": "EUR_USD", "side": "buy",
            "units": 100, "order_type": "limit", "price": px("1.09000"), "broker_order_id": "999",
            "filled_units": 0}
    for bad, code in (({"status": "filled"}, "NOT_ADOPTABLE"), ({"status": "emulated"}, "NOT_ADOPTABLE"),
                      ({"status": "working", "filled_units": 100}, "NOT_ADOPTABLE"),
                      ({"status": "working", "order_type": "stop_limit", "stop_price": px("1.1")}, "NOT_ADOPTABLE"),
                      ({"status": "working", "instrument": "EUR_XXX"}, "UNKNOWN_INSTRUMENT")):
        with pytest.raises(ValidationError) as err:
            await engine.adopt_order({**base, **bad})
        assert err.value.code == code
    assert engine.list_orders() == []
    await engine.stop()
