"""Stop-limit and trailing-stop entries, which the engine emulates from the
price stream: states waiting -> triggered -> working/filled, exactly one
trigger, expiry, cancel and modify while waiting."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fastexec.engine import OrderSpec

from .harness import SEC, px


def _broker_orders(h, account):
    return [o for o in h.venue.accounts[account].orders.values() if o.client_id is not None]


async def test_stop_limit_buy_waits_triggers_once_then_works_as_a_limit(h):
    events = []
    h.engine.subscribe(events.append)
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1000, type="stop_limit", stop_price=px("1.10200"), price=px("1.10250"))
    )
    assert view.status == "waiting"
    assert view.broker_order_id is None
    assert view.trigger_price == px("1.10200")
    assert _broker_orders(h, h.a1) == []  # nothing at the venue while waiting
    h.quote("EUR_USD", "1.10150", "1.10190")
    assert h.engine.get_order(view.order_id).status == "waiting"
    # the ask reaches the stop: triggered now, the LIMIT child goes out on the next loop turn
    h.venue.liquidity = 10**7
    h.quote("EUR_USD", "1.10300", "1.10310")  # gapped above the limit: the child limit rests
    assert h.engine.get_order(view.order_id).status == "triggered"
    await h.settle()
    working = h.engine.get_order(view.order_id)
    assert working.status == "working"
    assert working.broker_order_id is not None
    # a second tick through the stop does not trigger again
    h.quote("EUR_USD", "1.10400", "1.10410")
    await h.settle()
    assert len(_broker_orders(h, h.a1)) == 1
    # back to the limit: fills there
    h.quote("EUR_USD", "1.10240", "1.10250")
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled"
    assert done.average_fill_price <= px("1.10250")
    assert [e.kind for e in events if e.order_id == view.order_id].count("order_triggered") == 1


async def test_stop_limit_sell_triggers_on_the_bid_and_fills_at_once_when_marketable(h):
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "sell", 1000, type="stop_limit", stop_price=px("1.09800"), price=px("1.09750"))
    )
    assert view.status == "waiting"
    h.quote("EUR_USD", "1.09790", "1.09800")
    await h.settle()
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled"
    assert done.average_fill_price == px("1.09790")
    assert h.engine.position(h.a1, "EUR_USD").units == -1000


async def test_stop_limit_already_through_at_submit_triggers_immediately(h):
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1000, type="stop_limit", stop_price=px("1.09900"), price=px("1.10100"))
    )
    assert view.status == "triggered"
    await h.settle()
    assert h.engine.get_order(view.order_id).status == "filled"


@pytest.mark.parametrize("side", ["buy", "sell"])
async def test_trailing_stop_entry_follows_the_market_across_a_price_path(h, side):
    dist = px("0.00100")  # 10 pips
    view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="trailing_stop", trailing_distance=dist))
    assert view.status == "waiting"
    if side == "buy":
        assert view.trigger_price == px("1.10010") + dist  # lowest ask + distance
        path = [("1.09900", "1.09910"), ("1.09800", "1.09810"), ("1.09850", "1.09860"), ("1.09900", "1.09910")]
        expected_triggers = [px("1.10010"), px("1.09910"), px("1.09910"), None]
    else:
        assert view.trigger_price == px("1.10000") - dist  # highest bid - distance
        path = [("1.10100", "1.10110"), ("1.10200", "1.10210"), ("1.10150", "1.10160"), ("1.10100", "1.10110")]
        expected_triggers = [px("1.10000"), px("1.10100"), px("1.10100"), None]
    for (bid, ask), trig in zip(path, expected_triggers):
        h.quote("EUR_USD", bid, ask)
        cur = h.engine.get_order(view.order_id)
        if trig is not None:
            assert cur.status == "waiting", (bid, ask)
            assert cur.trigger_price == trig
    # the last step came back 10 pips from the extreme: fired, sent as a market order
    assert h.engine.get_order(view.order_id).status == "triggered"
    await h.settle()
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled"
    assert done.average_fill_price == (px("1.09910") if side == "buy" else px("1.10100"))
    assert h.engine.position(h.a1, "EUR_USD").units == (1000 if side == "buy" else -1000)


async def test_cancel_and_modify_a_waiting_order_locally(h):
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1000, type="stop_limit", stop_price=px("1.10500"), price=px("1.10600"))
    )
    moved = await h.engine.modify(view.order_id, price=px("1.10700"), units=3000)
    assert moved.status == "waiting"
    assert moved.price == px("1.10700") and moved.units == 3000
    assert moved.order_id == view.order_id
    cancelled = await h.engine.cancel(view.order_id)
    assert cancelled.status == "cancelled"
    h.quote("EUR_USD", "1.10600", "1.10610")  # through the stop: nothing happens any more
    await h.settle()
    assert h.engine.get_order(view.order_id).status == "cancelled"
    assert _broker_orders(h, h.a1) == []


async def test_emulated_gtd_order_expires(h):
    gtd = datetime.fromtimestamp(h.clock.now // SEC + 30, tz=timezone.utc)
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "sell", 1000, type="trailing_stop", trailing_distance=px("0.00200"),
                  time_in_force="GTD", gtd_time=gtd)
    )
    h.clock.advance(31 * SEC)
    h.quote("EUR_USD", "1.10010", "1.10020")
    assert h.engine.get_order(view.order_id).status == "expired"
    assert h.engine.account(h.a1).working_orders == 0


async def test_emulated_gfd_order_expires_at_the_new_york_close(h):
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1000, type="stop_limit", stop_price=px("1.11000"), price=px("1.11100"),
                  time_in_force="GFD")
    )
    # T0 is 10:00 New York; 17:00 is 7 hours later
    h.clock.advance(7 * 3600 * SEC - SEC)
    h.engine.tick()
    assert h.engine.get_order(view.order_id).status == "waiting"
    h.clock.advance(SEC)
    h.engine.tick()
    assert h.engine.get_order(view.order_id).status == "expired"


async def test_trigger_denied_by_risk_rejects_the_order(h):
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1000, type="stop_limit", stop_price=px("1.10500"), price=px("1.10600"))
    )
    h.engine.set_trading_state(h.a1, "reducing")  # a new long no longer reduces anything
    h.quote("EUR_USD", "1.10500", "1.10510")
    await h.settle()
    done = h.engine.get_order(view.order_id)
    assert done.status == "rejected"
    assert done.reject_reason == "REDUCE_ONLY_VIOLATION"
    assert _broker_orders(h, h.a1) == []


@pytest.mark.parametrize("side", ["buy", "sell"])
async def test_units_only_modify_keeps_the_trail(h, side):
    dist = px("0.00100")
    view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="trailing_stop", trailing_distance=dist))
    if side == "sell":
        h.quote("EUR_USD", "1.10500", "1.10510")  # highest bid: trigger 1.10400
        h.quote("EUR_USD", "1.10420", "1.10430")  # back 8 pips: not through
        kept = px("1.10400")
    else:
        h.quote("EUR_USD", "1.09500", "1.09510")  # lowest ask: trigger 1.09610
        h.quote("EUR_USD", "1.09580", "1.09590")
        kept = px("1.09610")
    assert h.engine.get_order(view.order_id).trigger_price == kept
    moved = await h.engine.modify(view.order_id, units=2000)
    assert moved.units == 2000 and moved.status == "waiting"
    assert moved.trigger_price == kept  # not re-armed from the current price, 8 pips looser
    # and it fires where the trail says, not where a restarted trail would
    if side == "sell":
        h.quote("EUR_USD", "1.10400", "1.10410")
    else:
        h.quote("EUR_USD", "1.09600", "1.09610")
    assert h.engine.get_order(view.order_id).status == "triggered"
    await h.settle()
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled" and done.filled_units == 2000
