"""Kill switch: per account and global; cancels routed and emulated orders
inside one event-loop turn, optionally flattens, leaves other accounts alone,
stays active until released."""
from __future__ import annotations

import asyncio

import pytest

from fastexec.engine import OrderSpec
from fastexec.errors import ConflictError, KillSwitchActiveError, NotFoundError, ValidationError

from .harness import T0, px


async def _book(h, account):
    """An open position, a resting limit, a stop and two emulated orders."""
    e = h.engine
    await e.submit(OrderSpec(account, "EUR_USD", "buy", 2000))
    await e.submit(OrderSpec(account, "USD_JPY", "sell", 1000))
    ids = [
        (await e.submit(OrderSpec(account, "EUR_USD", "buy", 1000, type="limit", price=px("1.09000")))).order_id,
        (await e.submit(OrderSpec(account, "EUR_USD", "sell", 1000, type="stop", price=px("1.09500")))).order_id,
        (await e.submit(OrderSpec(account, "EUR_USD", "buy", 1000, type="stop_limit", stop_price=px("1.11000"),
                                  price=px("1.11100")))).order_id,
        (await e.submit(OrderSpec(account, "EUR_USD", "sell", 1000, type="trailing_stop",
                                  trailing_distance=px("0.00200")))).order_id,
    ]
    return ids


async def test_activation_stops_one_account_within_one_loop_turn_and_leaves_the_other(h):
    ids1 = await _book(h, h.a1)
    ids2 = await _book(h, h.a2)
    before2 = (h.engine.positions(h.a2), [h.engine.get_order(i) for i in ids2], h.engine.account(h.a2))
    loop_turned = []
    asyncio.get_running_loop().call_soon(loop_turned.append, True)
    view = await h.engine.activate_kill_switch(h.a1, reason="runaway strategy", actor="alice")
    assert loop_turned == []  # everything below happened before the loop ran anything else
    assert view.active and view.account_id == h.a1
    assert (view.reason, view.actor, view.activated_at) == ("runaway strategy", "alice", T0)
    assert sorted(view.cancelled_orders) == sorted(ids1)
    for oid in ids1:
        o = h.engine.get_order(oid)
        assert o.status == "cancelled", o
        assert o.reject_reason == "KILL_SWITCH"
    assert h.engine.account(h.a1).working_orders == 0
    assert h.venue.accounts[h.a1].pending == {}
    assert h.engine.account(h.a1).kill_switch_active
    assert h.engine.account(h.a1).trading_state == "halted"
    # positions stay (no flatten asked)
    assert {p.instrument for p in h.engine.positions(h.a1)} == {"EUR_USD", "USD_JPY"}
    # the other account is untouched
    assert (h.engine.positions(h.a2), [h.engine.get_order(i) for i in ids2], h.engine.account(h.a2)) == before2
    assert len(h.venue.accounts[h.a2].pending) == 2
    assert (await h.engine.submit(OrderSpec(h.a2, "EUR_USD", "buy", 1))).status == "filled"
    # prices through the emulated triggers do nothing for the halted account
    h.quote("EUR_USD", "1.11000", "1.11010")
    await h.settle()
    assert all(h.engine.get_order(i).status == "cancelled" for i in ids1)
    assert h.engine.get_order(ids2[2]).status in ("working", "filled")  # a2's stop-limit did trigger


async def test_blocks_new_orders_until_released(h):
    await h.engine.activate_kill_switch(h.a1, reason="manual", actor="ops")
    with pytest.raises(KillSwitchActiveError) as err:
        await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1))
    assert "actor=ops" in err.value.detail
    h.clock.advance(24 * 3600 * 10**9)  # a new trading day does not release it
    with pytest.raises(KillSwitchActiveError):
        await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1))
    released = await h.engine.release_kill_switch(h.a1, actor="bob")
    assert not released.active
    assert (released.released_by, released.reason, released.actor) == ("bob", "manual", "ops")
    assert h.engine.account(h.a1).trading_state == "active"
    assert (await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1))).status == "filled"
    with pytest.raises(ConflictError):
        await h.engine.release_kill_switch(h.a1, actor="bob")


async def test_flatten_closes_every_position_of_the_account(h):
    await _book(h, h.a1)
    await _book(h, h.a2)
    view = await h.engine.activate_kill_switch(h.a1, reason="flatten", actor="ops", flatten=True)
    assert sorted(view.flattened) == ["EUR_USD", "USD_JPY"]
    assert h.engine.positions(h.a1) == []
    assert all(p.units == 0 for p in h.venue.accounts[h.a1].positions.values())  # flat at the venue too
    assert len(h.engine.positions(h.a2)) == 2


async def test_global_switch_halts_every_account_and_account_switches_survive_its_release(h):
    await _book(h, h.a1)
    await _book(h, h.a2)
    await h.engine.activate_kill_switch(h.a2, reason="own", actor="ops")
    view = await h.engine.activate_kill_switch(None, reason="exchange outage", actor="risk-desk")
    assert view.account_id is None and view.active
    for a in (h.a1, h.a2):
        assert h.engine.account(a).working_orders == 0
        with pytest.raises(KillSwitchActiveError):
            await h.engine.submit(OrderSpec(a, "EUR_USD", "buy", 1))
    await h.engine.release_kill_switch(None, actor="risk-desk")
    assert (await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1))).status == "filled"
    with pytest.raises(KillSwitchActiveError):  # its own switch is still on
        await h.engine.submit(OrderSpec(h.a2, "EUR_USD", "buy", 1))
    assert h.engine.kill_switch(h.a2).active and not h.engine.kill_switch(None).active


async def test_activation_is_journaled_and_published(h):
    events = []
    h.engine.subscribe(events.append)
    await h.engine.activate_kill_switch(h.a1, reason="r", actor="ops", flatten=False)
    rec = [r for r in h.journal.records if r["type"] == "kill_switch"]
    assert rec == [{"type": "kill_switch", "ts": T0, "account_id": h.a1, "active": True, "reason": "r",
                    "actor": "ops", "flatten": False}]
    assert [e.kind for e in events] == ["kill_switch_activated"]
    assert events[0].data.actor == "ops"


async def test_pulling_an_active_switch_again_keeps_the_first_activation(h):
    first = await h.engine.activate_kill_switch(h.a1, reason="runaway strategy", actor="alice")
    h.clock.advance(5 * 10**9)
    oid = (await h.engine.submit(OrderSpec(h.a2, "EUR_USD", "buy", 1000, type="limit", price=px("1.09000")))).order_id
    again = await h.engine.activate_kill_switch(None, reason="global", actor="risk-desk")  # a different switch
    assert again.activated_at == T0 + 5 * 10**9 and h.engine.get_order(oid).status == "cancelled"
    await h.engine.release_kill_switch(None, actor="risk-desk")
    repeat = await h.engine.activate_kill_switch(h.a1, reason="second thoughts", actor="bob", flatten=True)
    assert (repeat.reason, repeat.actor, repeat.activated_at) == (first.reason, first.actor, first.activated_at)
    assert h.engine.positions(h.a1) == []  # the repeat still sweeps (flatten)
    assert [r["reason"] for r in h.journal.records if r["type"] == "kill_switch" and r["account_id"] == h.a1] == [
        "runaway strategy"]  # the repeat changes nothing the journal keeps
    with pytest.raises(KillSwitchActiveError) as err:
        await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1))
    assert "actor=alice" in err.value.detail and "runaway strategy" in err.value.detail
    released = await h.engine.release_kill_switch(h.a1, actor="carol")
    assert (released.reason, released.actor, released.activated_at, released.released_by) == (
        "runaway strategy", "alice", T0, "carol")


async def test_bad_kill_switch_input(h):
    with pytest.raises(NotFoundError):
        await h.engine.activate_kill_switch("nope", reason="x", actor="ops")
    with pytest.raises(ValidationError):
        await h.engine.activate_kill_switch(h.a1, reason="x", actor="")
    with pytest.raises(ValidationError):
        await h.engine.activate_kill_switch(h.a1, reason="x", actor="ops", flatten="yes")
    assert not h.engine.kill_switch(h.a1).active
