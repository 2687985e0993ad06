"""The venue's account maths (REFERENCE.md §9) against hand-worked cases and
against Decimal computations of the documented rules.

Rules under test (venue.py docstring): money rounded half-even once to 4
decimals; P/L = units × (close − open) × quote→home factor (gain factor for a
profit, loss factor for a loss, each a 12-decimal rate); margin at mid.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

import reference_model as ref
from fastexec.sim.fixed import parse_money, parse_price, parse_rate
from fastexec.sim.instruments import SimInstrument, load_sim_instruments
from fastexec.sim.venue import Order, Venue

Q4 = Decimal("0.0001")
Q12 = Decimal("0.000000000001")


def dec_money(raw: int) -> Decimal:
    return Decimal(raw) / Decimal(10**6)


def dec_price(raw: int) -> Decimal:
    return Decimal(raw) / Decimal(10**9)


def q4(x: Decimal) -> Decimal:
    return x.quantize(Q4, rounding=ROUND_HALF_EVEN)


def venue_with(instruments, **kw) -> tuple[Venue, str]:
    v = Venue(instruments, **kw)
    return v, next(iter(v.accounts))


def test_reference_9_1_gbp_account_eur_gbp():
    """help.oanda.com example: buy 1,000,000 EUR_GBP at 0.8568, bid/mid/ask
    0.8566/0.8567/0.8568, margin rate 3.33333%, GBP account of 50,000."""
    insts = load_sim_instruments(names=["EUR_GBP", "GBP_USD"])
    {i.name: i for i in insts}["EUR_GBP"].margin_rate = parse_rate("0.0333333")
    v, aid = venue_with(insts, balance="50000", currency="GBP")
    v.set_price("EUR_GBP", parse_price("0.85660", 5), parse_price("0.85680", 5))
    r = v.place_order(aid, Order("MARKET", v.by_name["EUR_GBP"], 1_000_000))
    assert r.status == 201 and r.keys["orderFillTransaction"].p.price == parse_price("0.85680", 5)
    n = v.account_numbers(v.accounts[aid])
    assert n["marginUsed"] == parse_money("28556.6381")  # 0.0333333 × 1,000,000 × 0.8567 = 28,556.64 to cents
    assert n["marginCloseoutUnrealizedPL"] == parse_money("-100")  # UPL_mid
    assert n["marginCloseoutNAV"] == parse_money("49900")  # NAV_mid
    from fastexec.sim.render import pct

    assert pct(n["marginCloseoutPercent"]) == "0.28614"  # 28.61 %
    # §9.2 (a real body) computes NAV and margin available on the closing-side UPL:
    assert n["unrealizedPL"] == parse_money("-200")  # 1,000,000 × (bid 0.8566 − 0.8568)
    assert n["marginAvailable"] == n["NAV"] - n["marginUsed"] == parse_money("21243.3619")
    # §9.1's own Margin_Available uses NAV_mid: the same numbers give its 21,343.36
    assert n["marginCloseoutNAV"] - n["marginUsed"] == parse_money("21343.3619")


def test_reference_9_2_eur_account_short_de30():
    """oandapyV20's GET /accounts body: EUR account, short 20 DE30_EUR at
    9984.7, marginRate 0.05, now bid 9949.0 / ask 9950.6 (mid 9949.8)."""
    de30 = SimInstrument(0, {"name": "DE30_EUR", "type": "CFD", "displayPrecision": 1, "pipLocation": 0,
                             "tradeUnitsPrecision": 0, "minimumTradeSize": "1", "maximumOrderUnits": "2500",
                             "marginRate": "0.05", "minimumTrailingStopDistance": "5.0",
                             "maximumTrailingStopDistance": "10000.0"})
    v, aid = venue_with([de30], balance="48695.658", currency="EUR")
    P = lambda s: parse_price(s, 1)  # noqa: E731
    v.set_price("DE30_EUR", P("9984.7"), P("9986.3"))
    assert v.place_order(aid, Order("MARKET", de30, -20)).status == 201
    v.set_price("DE30_EUR", P("9949.0"), P("9950.6"))
    acct = v.accounts[aid]
    n = v.account_numbers(acct)
    expect = {
        "unrealizedPL": "682.0000", "NAV": "49377.6580", "marginCloseoutUnrealizedPL": "698.0000",
        "marginCloseoutNAV": "49393.6580", "marginCloseoutPositionValue": "198996.0000",
        "marginCloseoutMarginUsed": "9949.8000", "marginCallMarginUsed": "9949.8000",
    }
    for k, val in expect.items():
        assert n[k] == parse_money(val), k
    from fastexec.sim.render import pct

    assert pct(n["marginCloseoutPercent"]) == "0.10072" and pct(n["marginCallPercent"]) == "0.20144"
    # OANDA's positionValue/marginUsed in that body (198978 / 9948.9) priced at 9948.9, a price
    # not derivable from the quote; the venue values both at mid like the closeout figures.
    assert n["positionValue"] == n["marginCloseoutPositionValue"]
    assert n["marginUsed"] == parse_money("9949.8")
    assert n["marginAvailable"] == n["NAV"] - n["marginUsed"]
    # realized P/L on close at the ask: −20 × (9950.6 − 9984.7) = 682
    r = v.close_position(aid, "DE30_EUR", None, "ALL")
    assert r.status == 200
    fill = r.keys["shortOrderFillTransaction"].p
    assert fill.pl == parse_money("682") and acct.balance == parse_money("49377.658")


P5 = st.integers(min_value=50_000, max_value=200_000).map(lambda k: k * 10**4)  # 0.50000 .. 2.00000
UNITS = st.integers(min_value=1, max_value=5_000_000)


@settings(max_examples=150, deadline=None)
@given(units=UNITS, open_bid=P5, move=st.integers(-5000, 5000), spread=st.integers(1, 40), short=st.booleans())
def test_quote_is_home_pl_equals_reference_model(units, open_bid, move, spread, short):
    """EUR_USD in a USD account: factor 1, so the fill's P/L is the reference
    model's ``pnl`` (exact here: 5-decimal prices) rounded half-even to 4 places."""
    insts = load_sim_instruments(names=["EUR_USD"])
    v, aid = venue_with(insts, balance="100000000")
    step = 10**4
    v.set_price("EUR_USD", open_bid, open_bid + spread * step)
    u = -units if short else units
    r = v.place_order(aid, Order("MARKET", insts[0], u))
    assert r.status == 201, r.error_code
    open_px = r.keys["orderFillTransaction"].p.price
    bid = max(step, open_bid + move * step)
    v.set_price("EUR_USD", bid, bid + spread * step)
    acct = v.accounts[aid]
    close_px = bid if u > 0 else bid + spread * step
    exact_quote = ref.pnl(u, open_px, close_px)  # micro-money, exact for 5-decimal prices
    n = v.account_numbers(acct)
    assert n["unrealizedPL"] == ref.round_half_even(exact_quote, 100) * 100
    r = v.close_position(aid, "EUR_USD", "ALL" if u > 0 else None, "ALL" if u < 0 else None)
    side = "long" if u > 0 else "short"
    fill = r.keys[side + "OrderFillTransaction"].p
    assert fill.price == close_px
    assert fill.pl == ref.round_half_even(exact_quote, 100) * 100
    assert acct.balance == parse_money("100000000") + fill.pl


JPY = st.integers(min_value=80_000, max_value=200_000).map(lambda k: k * 10**6)  # 80.000 .. 200.000


@settings(max_examples=150, deadline=None)
@given(units=UNITS, open_bid=JPY, move=st.integers(-3000, 3000), spread=st.integers(1, 40), short=st.booleans())
def test_cross_currency_pl_and_margin_follow_the_decimal_rule(units, open_bid, move, spread, short):
    """USD_JPY in a USD account: P/L in JPY converted by 1/ask (gain) or 1/bid
    (loss), each factor rounded to 12 decimals, the product rounded once to 4."""
    insts = load_sim_instruments(names=["USD_JPY"])
    v, aid = venue_with(insts, balance="100000000")
    step = 10**6
    v.set_price("USD_JPY", open_bid, open_bid + spread * step)
    u = -units if short else units
    r = v.place_order(aid, Order("MARKET", insts[0], u))
    assert r.status == 201, r.error_code
    open_px = dec_price(r.keys["orderFillTransaction"].p.price)
    bid_raw = max(step, open_bid + move * step)
    ask_raw = bid_raw + spread * step
    v.set_price("USD_JPY", bid_raw, ask_raw)
    bid, ask = dec_price(bid_raw), dec_price(ask_raw)
    gain = (Decimal(1) / ask).quantize(Q12, ROUND_HALF_EVEN)
    loss = (Decimal(1) / bid).quantize(Q12, ROUND_HALF_EVEN)
    mid = (bid + ask) / 2
    midf = (Decimal(1) / mid).quantize(Q12, ROUND_HALF_EVEN)
    close = bid if u > 0 else ask
    quote_pl = Decimal(u) * (close - open_px)
    want_upl = q4(quote_pl * (gain if quote_pl >= 0 else loss))
    n = v.account_numbers(v.accounts[aid])
    assert dec_money(n["unrealizedPL"]) == want_upl
    rate = Decimal(insts[0].margin_rate) / Decimal(10**12)
    assert dec_money(n["marginUsed"]) == q4(rate * abs(u) * mid * midf)
    assert dec_money(n["positionValue"]) == q4(abs(u) * mid * midf)
    assert n["NAV"] == v.accounts[aid].balance + n["unrealizedPL"]
    assert n["marginAvailable"] == n["NAV"] - n["marginUsed"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-30_000, 30_000).filter(bool), st.integers(-200, 200)), min_size=1, max_size=25))
def test_balance_is_the_sum_of_booked_pl(steps):
    """FIFO reduce/open sequences: the balance always equals the deposit plus
    every fill's ``pl`` (so rendered balances add up), and the position's
    units equal the sum of open trades."""
    insts = load_sim_instruments(names=["EUR_USD"])
    v, aid = venue_with(insts, balance="1000000")
    acct = v.accounts[aid]
    bid = parse_price("1.10000", 5)
    total_pl = 0
    for units, move in steps:
        bid = max(parse_price("0.50000", 5), bid + move * 10**4)
        v.set_price("EUR_USD", bid, bid + 12 * 10**4)
        r = v.place_order(aid, Order("MARKET", insts[0], units))
        assert r.status == 201
        total_pl += r.keys["orderFillTransaction"].p.pl
        assert acct.balance == parse_money("1000000") + total_pl
        pos = acct.positions[0]
        assert pos.units == sum(t.units for t in pos.trades)
        assert all((t.units > 0) == (pos.units > 0) for t in pos.trades)  # non-hedging: one direction
        assert pos.cost == sum(t.units * t.price for t in pos.trades)


def test_insufficient_margin_cancels_the_fill():
    insts = load_sim_instruments(names=["EUR_USD"])
    v, aid = venue_with(insts, balance="1000")
    v.set_price("EUR_USD", parse_price("1.00000", 5), parse_price("1.00010", 5))
    # 0.02 × 60,000 × 1.00005 = 1200.06 > NAV 1000
    r = v.place_order(aid, Order("MARKET", insts[0], 60_000))
    assert r.status == 201 and r.keys["orderCancelTransaction"].p[1] == "INSUFFICIENT_MARGIN"
    assert "orderFillTransaction" not in r.keys
    r = v.place_order(aid, Order("MARKET", insts[0], 40_000))
    assert "orderFillTransaction" in r.keys


def test_margin_closeout_when_closeout_percent_reaches_one():
    insts = load_sim_instruments(names=["EUR_USD"])
    v, aid = venue_with(insts, balance="1000")
    v.set_price("EUR_USD", parse_price("1.00000", 5), parse_price("1.00010", 5))
    assert "orderFillTransaction" in v.place_order(aid, Order("MARKET", insts[0], 45_000)).keys
    acct = v.accounts[aid]
    # NAV falls to 0.5 × margin used: closeout. At bid 0.98: UPL ≈ −945, margin ≈ 882
    out = v.set_price("EUR_USD", parse_price("0.98000", 5), parse_price("0.98010", 5))
    kinds = [t.type for t in out]
    assert kinds[:2] == ["MARKET_ORDER", "ORDER_FILL"]
    assert out[0].p.reason == "MARGIN_CLOSEOUT" and out[1].p.reason == "MARKET_ORDER_MARGIN_CLOSEOUT"
    assert not acct.open_trades and acct.positions[0].units == 0
