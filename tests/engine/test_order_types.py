"""Every order type on both sides, on the simulated venue: immediate fills,
resting orders filled by a later tick, FOK/IOC not filled or partly filled,
expiry, and on-fill exits hit by price."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fastexec.engine import ExitSpec, OrderSpec

from .harness import SEC, px

SIDES = ["buy", "sell"]


def sign(side: str) -> int:
    return 1 if side == "buy" else -1


async def test_market_fills_at_the_touch_and_opens_a_position(h):
    for side, expected_px in (("buy", "1.10010"), ("sell", "1.10000")):
        view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000), request_id=f"req-{side}")
        assert view.status == "filled"
        assert view.filled_units == 1000
        assert view.average_fill_price == px(expected_px)
        assert view.time_in_force == "FOK"
        assert view.request_id == f"req-{side}"
        assert view.broker_order_id is not None
    # buy 1000 @ 1.10010 then sell 1000 @ 1.10000: flat, lost one pip on 1000 units
    pos = h.engine.position(h.a1, "EUR_USD")
    assert pos.units == 0
    assert pos.realized_pl == -100_000  # -0.10 USD
    assert h.engine.account(h.a1).balance == 100_000 * 10**6 - 100_000


@pytest.mark.parametrize("side", SIDES)
async def test_limit_rests_then_fills_at_its_price_or_better(h, side):
    # buy below the market / sell above it: not marketable, rests at the venue
    limit = px("1.09900") if side == "buy" else px("1.10100")
    view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 2000, type="limit", price=limit))
    assert view.status == "working"
    assert view.filled_units == 0
    assert h.engine.account(h.a1).working_orders == 1
    # market moves through the limit
    if side == "buy":
        h.quote("EUR_USD", "1.09880", "1.09890")
    else:
        h.quote("EUR_USD", "1.10110", "1.10120")
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled"
    fill = done.average_fill_price
    assert (fill <= limit) if side == "buy" else (fill >= limit)
    assert h.engine.position(h.a1, "EUR_USD").units == sign(side) * 2000
    assert h.engine.account(h.a1).working_orders == 0


@pytest.mark.parametrize("side", SIDES)
async def test_marketable_limit_fills_at_once(h, side):
    limit = px("1.10100") if side == "buy" else px("1.09900")
    view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="limit", price=limit))
    assert view.status == "filled"
    assert view.average_fill_price == (px("1.10010") if side == "buy" else px("1.10000"))


@pytest.mark.parametrize("side", SIDES)
async def test_stop_triggers_when_the_market_trades_through(h, side):
    stop = px("1.10200") if side == "buy" else px("1.09800")
    view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="stop", price=stop))
    assert view.status == "working"
    # not yet: moves toward the stop without reaching it
    if side == "buy":
        h.quote("EUR_USD", "1.10180", "1.10190")
    else:
        h.quote("EUR_USD", "1.09810", "1.09820")
    assert h.engine.get_order(view.order_id).status == "working"
    if side == "buy":
        h.quote("EUR_USD", "1.10200", "1.10210")
    else:
        h.quote("EUR_USD", "1.09790", "1.09800")
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled"
    assert h.engine.position(h.a1, "EUR_USD").units == sign(side) * 1000


@pytest.mark.parametrize("side", SIDES)
async def test_market_if_touched_fills_when_touched(h, side):
    # MIT buy below the market (acts like a limit), sell above it
    trigger = px("1.09950") if side == "buy" else px("1.10050")
    view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="market_if_touched", price=trigger))
    assert view.status == "working"
    if side == "buy":
        h.quote("EUR_USD", "1.09940", "1.09950")
    else:
        h.quote("EUR_USD", "1.10050", "1.10060")
    done = h.engine.get_order(view.order_id)
    assert done.status == "filled"
    assert done.filled_units == 1000


@pytest.mark.parametrize("side", SIDES)
async def test_fok_fills_completely_or_not_at_all(h, side):
    ok = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="fok"))
    assert ok.status == "filled" and ok.filled_units == 1000
    # a FOK limit that cannot fill now is cancelled, nothing filled
    away = px("1.09000") if side == "buy" else px("1.11000")
    miss = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="fok", price=away))
    assert miss.status == "cancelled"
    assert miss.filled_units == 0
    assert miss.reject_reason is not None
    # more than the venue's liquidity: FOK does not fill partially
    h.venue.liquidity = 500
    big = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="fok"))
    assert big.status == "cancelled" and big.filled_units == 0
    assert h.engine.position(h.a1, "EUR_USD").units == sign(side) * 1000


@pytest.mark.parametrize("side", SIDES)
async def test_ioc_fills_what_it_can_and_cancels_the_rest(h, side):
    h.venue.liquidity = 600
    part = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, type="ioc"))
    assert part.status == "cancelled"
    assert part.filled_units == 600
    assert part.average_fill_price == (px("1.10010") if side == "buy" else px("1.10000"))
    assert h.engine.position(h.a1, "EUR_USD").units == sign(side) * 600
    # an IOC limit away from the market fills nothing
    away = px("1.09000") if side == "buy" else px("1.11000")
    miss = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 100, type="ioc", price=away))
    assert miss.status == "cancelled" and miss.filled_units == 0
    assert h.engine.account(h.a1).working_orders == 0


async def test_gtd_limit_expires_at_its_time(h):
    gtd = datetime.fromtimestamp(h.clock.now // SEC + 60, tz=timezone.utc)
    view = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1000, type="limit", price=px("1.09000"), time_in_force="GTD", gtd_time=gtd)
    )
    assert view.status == "working"
    assert view.gtd_time == h.clock.now + 60 * SEC
    h.clock.advance(61 * SEC)
    h.quote("EUR_USD", "1.10000", "1.10010")  # the venue expires orders as time passes with prices
    done = h.engine.get_order(view.order_id)
    assert done.status == "expired"
    assert h.engine.account(h.a1).working_orders == 0


@pytest.mark.parametrize("side", SIDES)
async def test_stop_loss_on_fill_closes_the_position_when_hit(h, side):
    sl = px("1.09500") if side == "buy" else px("1.10500")
    view = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, stop_loss=ExitSpec(price=sl)))
    assert view.status == "filled"
    assert view.stop_loss == ExitSpec(price=sl)
    events = []
    h.engine.subscribe(events.append)
    if side == "buy":
        h.quote("EUR_USD", "1.09490", "1.09500")
    else:
        h.quote("EUR_USD", "1.10500", "1.10510")
    pos = h.engine.position(h.a1, "EUR_USD")
    assert pos.units == 0
    # lost 50 pips (plus the spread paid on entry) on 1000 units
    entry = px("1.10010") if side == "buy" else px("1.10000")
    exit_px = px("1.09490") if side == "buy" else px("1.10510")
    assert pos.realized_pl == sign(side) * 1000 * (exit_px - entry) // 1000
    kinds = [e.kind for e in events]
    assert "exit_filled" in kinds and "position_changed" in kinds
    exit_ev = next(e for e in events if e.kind == "exit_filled")
    assert exit_ev.data.reason == "STOP_LOSS_ORDER"
    # the entry order is unchanged by its exit
    assert h.engine.get_order(view.order_id).status == "filled"


@pytest.mark.parametrize("side", SIDES)
async def test_take_profit_on_fill_closes_the_position_in_profit(h, side):
    tp = px("1.10300") if side == "buy" else px("1.09700")
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", side, 1000, take_profit=ExitSpec(price=tp)))
    if side == "buy":
        h.quote("EUR_USD", "1.10300", "1.10310")
    else:
        h.quote("EUR_USD", "1.09690", "1.09700")
    pos = h.engine.position(h.a1, "EUR_USD")
    assert pos.units == 0
    assert pos.realized_pl > 0


async def test_stop_loss_distance_and_trailing_stop_on_fill(h):
    # SL by distance from the fill: buy at 1.10010, 30 pips below = 1.09710
    await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1000, stop_loss=ExitSpec(distance=px("0.00300")),
                  trailing_stop_distance=px("0.00100"))
    )
    # market rallies 50 pips: the trailing stop follows to bid - 10 pips
    h.quote("EUR_USD", "1.10500", "1.10510")
    assert h.engine.position(h.a1, "EUR_USD").units == 1000
    # falls 10 pips from the high: the trailing stop (not the fixed SL) closes it
    h.quote("EUR_USD", "1.10400", "1.10410")
    pos = h.engine.position(h.a1, "EUR_USD")
    assert pos.units == 0
    assert pos.realized_pl > 0  # exited above the entry thanks to the trail


async def test_guaranteed_stop_loss_fills_exactly_at_its_price_through_a_gap(h):
    sl = px("1.09500")
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1000, stop_loss=ExitSpec(price=sl, guaranteed=True)))
    fills = []
    h.engine.subscribe(lambda e: fills.append(e.data) if e.kind == "exit_filled" else None)
    h.quote("EUR_USD", "1.09000", "1.09010")  # gaps 50 pips through the stop
    assert h.engine.position(h.a1, "EUR_USD").units == 0
    assert fills[0].price == sl


async def test_sell_on_usd_jpy_books_pnl_in_usd(h):
    await h.engine.submit(OrderSpec(h.a1, "USD_JPY", "sell", 10_000))  # at bid 150.000
    h.quote("USD_JPY", "149.000", "149.010", 3)
    pos = h.engine.position(h.a1, "USD_JPY")
    assert pos.units == -10_000
    # closing side for a short is the ask: 10000 * (150.000 - 149.010) JPY = 9900 JPY at 1/149.005
    assert 66 * 10**6 < pos.unrealized_pl < 67 * 10**6
    closed = await h.engine.close_position(h.a1, "USD_JPY")
    assert closed.units == 0
    assert closed.realized_pl == h.engine.account(h.a1).realized_pl
