"""Modify and cancel: broker replaces give new broker ids while the engine id
stays; risk runs again on modify; races between a cancel and a fill; the
same broker transaction delivered twice is applied once."""
from __future__ import annotations

import pytest

from fastexec.engine import Engine, ExitSpec, OrderSpec
from fastexec.errors import ConflictError, NotFoundError, RiskDeniedError, ValidationError
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

from .harness import FakeClock, Harness, make_settings, px


async def _resting_buy(h, units=1000, price="1.09500", **kw):
    return await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", units, type="limit", price=px(price), **kw))


async def test_modify_replaces_at_the_broker_and_keeps_the_engine_id(h):
    view = await _resting_buy(h, client_order_id="strat-7")
    first_broker_id = view.broker_order_id
    m1 = await h.engine.modify(view.order_id, price=px("1.09600"))
    assert m1.order_id == view.order_id
    assert m1.client_order_id == "strat-7"
    assert m1.broker_order_id != first_broker_id
    assert m1.price == px("1.09600")
    assert m1.status == "working"
    # a second modify addresses the replacement, found through the engine id
    m2 = await h.engine.modify("strat-7", units=2500, stop_loss=ExitSpec(price=px("1.09000")))
    assert m2.broker_order_id not in (first_broker_id, m1.broker_order_id)
    assert m2.units == 2500
    assert m2.stop_loss == ExitSpec(price=px("1.09000"))
    pending = h.venue.accounts[h.a1].pending
    assert [o.units for o in pending.values()] == [2500]
    # the replacement fills: the same engine order becomes filled
    h.quote("EUR_USD", "1.09590", "1.09600")
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled" and done.filled_units == 2500
    assert h.engine.position(h.a1, "EUR_USD").units == 2500


async def test_cancel_after_replace_cancels_the_replacement(h):
    view = await _resting_buy(h)
    await h.engine.modify(view.order_id, price=px("1.09400"))
    cancelled = await h.engine.cancel(view.order_id)
    assert cancelled.status == "cancelled"
    assert h.venue.accounts[h.a1].pending == {}
    assert h.engine.account(h.a1).working_orders == 0


async def test_modify_runs_the_risk_gateway_again_and_changes_nothing_on_denial(h):
    h.engine.set_risk_limits(h.a1, max_position_size=5000)
    view = await _resting_buy(h, units=4000)
    with pytest.raises(RiskDeniedError) as err:
        await h.engine.modify(view.order_id, units=6000, price=px("1.09700"))
    assert err.value.code == "MAX_POSITION_SIZE"
    assert "limit=5000" in err.value.detail
    same = h.engine.get_order(view.order_id)
    assert (same.units, same.price, same.broker_order_id, same.status) == (4000, px("1.09500"), view.broker_order_id, "working")
    assert [o.units for o in h.venue.accounts[h.a1].pending.values()] == [4000]
    # at the limit it passes
    ok = await h.engine.modify(view.order_id, units=5000)
    assert ok.units == 5000


async def test_modify_refuses_bad_input_and_finished_orders(h):
    view = await _resting_buy(h)
    with pytest.raises(ValidationError) as err:
        await h.engine.modify(view.order_id, price=1_095_001)  # beyond 5 decimals
    assert err.value.code == "PRICE_PRECISION_EXCEEDED"
    with pytest.raises(ValidationError):
        await h.engine.modify(view.order_id)
    with pytest.raises(ValidationError) as err:
        await h.engine.modify(view.order_id, units=0)
    assert err.value.code == "INVALID_UNITS"
    market = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 100))
    with pytest.raises(ConflictError) as err:
        await h.engine.modify(market.order_id, units=200)
    assert err.value.code == "ORDER_NOT_MODIFIABLE"
    with pytest.raises(NotFoundError):
        await h.engine.modify("no-such-order", units=5)


async def test_cancel_of_a_filled_order_is_a_conflict(h):
    market = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "sell", 100))
    with pytest.raises(ConflictError) as err:
        await h.engine.cancel(market.order_id)
    assert err.value.code == "ORDER_NOT_CANCELLABLE"
    with pytest.raises(NotFoundError):
        await h.engine.cancel("nope")


class MatchingWhileCancellingBroker(SimulatedBroker):
    """The real simulated venue, with the market moving through a resting
    order while our cancel request is on its way: the fill is produced by the
    venue and delivered on the event stream before the cancel is processed."""

    move = None

    async def cancel(self, account_id, broker_order_id):
        if self.move is not None:
            instrument, bid, ask = self.move
            self.venue.set_price(instrument, bid, ask)
        return await super().cancel(account_id, broker_order_id)


async def _race_harness():
    clock = FakeClock()
    venue = Venue(seed=3, accounts=2, clock=clock)
    broker = MatchingWhileCancellingBroker(venue)
    from fastexec.engine import ListJournal

    journal = ListJournal()
    engine = Engine(make_settings(), broker, clock=clock, journal=journal)
    await engine.start()
    h = Harness(engine, venue, clock, journal)
    h.quote("EUR_USD", "1.10000", "1.10010")
    return h, broker


async def test_fill_that_arrives_after_the_cancel_request_wins_the_race():
    h, broker = await _race_harness()
    try:
        view = await _resting_buy(h)
        states = []
        h.engine.subscribe(lambda e: states.append((e.kind, e.data.status)) if e.order_id == view.order_id else None)
        broker.move = ("EUR_USD", px("1.09490"), px("1.09500"))
        with pytest.raises(ConflictError) as err:
            await h.engine.cancel(view.order_id)
        assert "status=filled" in err.value.detail
        done = h.engine.get_order(view.order_id)
        assert done.status == "filled"
        assert done.filled_units == 1000
        assert ("order_filled", "filled") in states
        assert h.engine.position(h.a1, "EUR_USD").units == 1000
        assert h.engine.account(h.a1).working_orders == 0
    finally:
        await h.engine.stop()


async def test_cancel_wins_when_the_market_does_not_reach_the_order():
    h, broker = await _race_harness()
    try:
        view = await _resting_buy(h)
        broker.move = ("EUR_USD", px("1.09600"), px("1.09610"))
        done = await h.engine.cancel(view.order_id)
        assert done.status == "cancelled"
        assert h.engine.position(h.a1, "EUR_USD").units == 0
    finally:
        await h.engine.stop()


async def test_the_same_broker_transaction_twice_is_applied_once(h):
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1000))
    before = h.engine.position(h.a1, "EUR_USD")
    replay = await h.engine.broker.transactions_since(h.a1, 0)
    assert any(type(ev).__name__ == "OrderFilled" for ev in replay)
    for ev in replay:  # as if the transaction stream delivered them again
        h.engine.broker._handler(ev)
    assert h.engine.position(h.a1, "EUR_USD") == before


async def test_client_order_id_is_unique_and_finds_the_order(h):
    view = await _resting_buy(h, client_order_id="abc-1")
    assert h.engine.get_order("abc-1").order_id == view.order_id
    with pytest.raises(ConflictError) as err:
        await _resting_buy(h, client_order_id="abc-1")
    assert err.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    assert h.engine.account(h.a1).working_orders == 1


async def test_client_ids_and_engine_ids_never_collide(h):
    """Engine ids have a form client ids may not take (8 characters 0-9a-z, '-', digits), so
    ``{order_id}`` never names two orders. An order without a client id is its own client id
    (found through its order id, not kept in ``_by_client``)."""
    from fastexec.engine.hotpath import is_engine_id

    plain = await _resting_buy(h)
    assert plain.client_order_id == plain.order_id and is_engine_id(plain.order_id)
    assert all(plain.order_id not in d for d in h.engine._by_client)
    seq, prefix = h.engine._seq, h.engine._id_prefix
    # an engine id, now or later, and anything of that form (a client id like "strategy-1" too)
    for taken in (plain.order_id, f"{prefix}{seq + 1}", "00000000-1", "zzzzzzzz-0", "strategy-1"):
        with pytest.raises(ValidationError) as err:
            await _resting_buy(h, client_order_id=taken)
        assert (err.value.code, err.value.field) == ("RESERVED_CLIENT_ORDER_ID", "client_order_id")
    assert h.engine._seq == seq  # refused before an id was drawn
    # near misses are ordinary client ids
    near = ["strat-1", "strategy-x1", "Mws6cffq-1", "mws6cffq-1a", "mws6cffq_1", "mws6cffqx-1", "mws6cff-1"]
    views = [await _resting_buy(h, client_order_id=c) for c in near]
    named = views[0]
    assert h.engine._by_client[h.engine._accounts[h.a1]]["strat-1"].order_id == named.order_id
    assert h.engine.get_order("strat-1").order_id == named.order_id
    assert h.engine.get_order(named.order_id).client_order_id == "strat-1"
    assert h.engine.account(h.a1).working_orders == 1 + len(near)
    for v in (plain, named):  # each found by its client id when the broker answers
        assert (await h.engine.cancel(v.client_order_id)).status == "cancelled"


async def test_client_ids_are_unique_per_account(h):
    """The same client id in two accounts: two orders, each found in its own account;
    by client id alone (every account) the id is ambiguous and the engine id is needed."""
    v1 = await _resting_buy(h, client_order_id="dup-1")
    v2 = await h.engine.submit(OrderSpec(h.a2, "EUR_USD", "buy", 1000, type="limit", price=px("1.09500"),
                                         client_order_id="dup-1"))
    assert v1.order_id != v2.order_id and (v1.account_id, v2.account_id) == (h.a1, h.a2)
    with pytest.raises(ConflictError) as err:  # still unique within an account
        await _resting_buy(h, client_order_id="dup-1")
    assert err.value.code == "DUPLICATE_CLIENT_ORDER_ID"
    assert h.engine.find_order_id("dup-1", frozenset({h.a1})) == v1.order_id
    assert h.engine.find_order_id("dup-1", frozenset({h.a2})) == v2.order_id
    with pytest.raises(NotFoundError):  # an engine id of another account is not found either
        h.engine.find_order_id(v2.order_id, frozenset({h.a1}))
    with pytest.raises(ConflictError) as err:
        h.engine.get_order("dup-1")
    assert err.value.code == "AMBIGUOUS_ORDER_ID"
    # the venue keeps them apart too: each cancel reaches its own order
    assert (await h.engine.cancel(v2.order_id)).status == "cancelled"
    assert h.engine.get_order(v1.order_id).status == "working"
    assert h.engine.find_order_id("dup-1", frozenset({h.a2})) == v2.order_id  # finished orders stay readable


async def test_modify_refused_by_the_broker_leaves_the_working_order_as_it_was(h):
    view = await _resting_buy(h, client_order_id="gslo-1")
    h.venue.accounts[h.a1].gslo_mode = "DISABLED"  # this account may not use guaranteed stops
    from fastexec.errors import BrokerRejectedError

    with pytest.raises(BrokerRejectedError) as err:
        await h.engine.modify(view.order_id, price=px("1.09600"),
                              stop_loss=ExitSpec(price=px("1.09000"), guaranteed=True))
    assert err.value.code == "STOP_LOSS_ON_FILL_GUARANTEED_NOT_ALLOWED"
    same = h.engine.get_order(view.order_id)
    assert same.status == "working"
    assert (same.price, same.stop_loss, same.broker_order_id) == (px("1.09500"), None, view.broker_order_id)
    assert [o.id for o in h.venue.accounts[h.a1].pending.values()] == [int(view.broker_order_id)]
    # and it still works normally afterwards
    assert (await h.engine.modify(view.order_id, price=px("1.09600"))).price == px("1.09600")
    assert (await h.engine.cancel("gslo-1")).status == "cancelled"
