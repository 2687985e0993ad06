"""Venue order semantics with deterministic ticks (``set_price``) and a fake clock."""
from __future__ import annotations

import pytest

from fastexec.sim.fixed import parse_price, round_half_even_int
from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.venue import OnFill, Order, Venue, gfd_expiry_ns

P = lambda s: parse_price(s, 5)  # noqa: E731
T0 = 1_767_000_000 * 10**9  # a fixed instant (2025-12-29)


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def env():
    clock = Clock()
    v = Venue(load_sim_instruments(names=["EUR_USD", "USD_JPY"]), clock=clock, balance="100000")
    v.set_price("EUR_USD", P("1.10000"), P("1.10010"))
    aid = next(iter(v.accounts))
    return v, aid, v.by_name["EUR_USD"], clock


def types(txns):
    return [t.type for t in txns]


def test_tif_defaults_and_allowed_combinations(env):
    v, aid, eu, _ = env
    assert Order("MARKET", eu, 1).tif == "FOK" and Order("LIMIT", eu, 1).tif == "GTC"
    bad = [("MARKET", "GTC"), ("MARKET", "GTD"), ("MARKET_IF_TOUCHED", "FOK"), ("MARKET_IF_TOUCHED", "IOC")]
    for typ, tif in bad:
        r = v.place_order(aid, Order(typ, eu, 10, price=P("1.05000"), tif=tif, gtd_ns=T0 + 10**9))
        assert r.status == 400 and r.error_code == "TIME_IN_FORCE_INVALID", (typ, tif)
    r = v.place_order(aid, Order("LIMIT", eu, 10, price=P("1.05000"), tif="GTD"))
    assert r.error_code == "TIME_IN_FORCE_GTD_TIMESTAMP_MISSING"
    r = v.place_order(aid, Order("LIMIT", eu, 10, price=P("1.05000"), tif="GTD", gtd_ns=T0 - 1))
    assert r.error_code == "TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST"
    r = v.place_order(aid, Order("MARKET", eu, 10, tp=OnFill(price=P("1.2"), tif="FOK")))
    assert r.error_code == "TAKE_PROFIT_ON_FILL_TIME_IN_FORCE_INVALID"
    for typ, tif in [("LIMIT", "FOK"), ("LIMIT", "IOC"), ("STOP", "GFD"), ("MARKET", "IOC")]:
        r = v.place_order(aid, Order(typ, eu, 10, price=P("1.05000"), tif=tif))
        assert r.status == 201, (typ, tif)


def test_unit_limits_and_client_id_rejects(env):
    v, aid, eu, _ = env
    assert v.place_order(aid, Order("MARKET", eu, 0)).error_code == "UNITS_INVALID"
    assert v.place_order(aid, Order("MARKET", eu, 100_000_001)).error_code == "UNITS_LIMIT_EXCEEDED"
    assert v.place_order(aid, Order("LIMIT", eu, 5)).error_code == "PRICE_MISSING"
    assert v.place_order(aid, Order("LIMIT", eu, 5, price=P("1.0"), position_fill="X")).error_code == \
        "ORDER_FILL_POSITION_ACTION_INVALID"
    r = v.place_order(aid, Order("MARKET", eu, 5, sl=OnFill(price=P("1.0"), distance=P("0.001"))))
    assert r.error_code == "STOP_LOSS_ON_FILL_PRICE_AND_DISTANCE_BOTH_SPECIFIED"
    r = v.place_order(aid, Order("MARKET", eu, 5, tsl=OnFill(distance=P("0.0001"))))
    assert r.error_code == "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MINIMUM_NOT_MET"
    r = v.place_order(aid, Order("MARKET", eu, 5, tp=OnFill(price=P("1.2"), client_ext={"id": "x"}),
                                 sl=OnFill(price=P("1.0"), client_ext={"id": "x"})))
    assert r.error_code == "ORDERS_ON_FILL_DUPLICATE_CLIENT_ORDER_IDS"
    # client ids are unique among pending orders only: a filled order's id may be reused
    assert v.place_order(aid, Order("MARKET", eu, 5, client_ext={"id": "dup"})).status == 201
    assert v.place_order(aid, Order("LIMIT", eu, 5, price=P("1.0"), client_ext={"id": "dup"})).status == 201
    r = v.place_order(aid, Order("LIMIT", eu, 5, price=P("1.0"), client_ext={"id": "dup"}))
    assert r.error_code == "CLIENT_ORDER_ID_ALREADY_EXISTS"
    acct = v.accounts[aid]
    ids = [t.id for t in acct.txns]
    assert ids == list(range(1, len(ids) + 1))  # one increasing sequence, rejects included


def test_limit_stop_mit_trigger_and_fill_prices(env):
    v, aid, eu, _ = env
    lim = v.place_order(aid, Order("LIMIT", eu, 100, price=P("1.09900"))).order
    stop = v.place_order(aid, Order("STOP", eu, -100, price=P("1.09800"))).order
    mit = v.place_order(aid, Order("MARKET_IF_TOUCHED", eu, -100, price=P("1.10200"))).order
    assert mit.initial_market_price == P("1.10000")
    assert v.set_price("EUR_USD", P("1.09900"), P("1.09910")) == []  # ask above the limit
    out = v.set_price("EUR_USD", P("1.09880"), P("1.09890"))  # gap through: limit fills at the better ask
    assert types(out) == ["ORDER_FILL"] and out[0].p.order is lim and out[0].p.price == P("1.09890")
    out = v.set_price("EUR_USD", P("1.09750"), P("1.09760"))  # stop sells at the (worse) bid
    assert out[0].p.order is stop and out[0].p.price == P("1.09750")
    out = v.set_price("EUR_USD", P("1.10200"), P("1.10210"))  # MIT touched from below
    assert out[0].p.order is mit and out[0].p.price == P("1.10200")


def test_stop_price_bound_violation_cancels(env):
    v, aid, eu, _ = env
    o = v.place_order(aid, Order("STOP", eu, 100, price=P("1.10100"), price_bound=P("1.10120"))).order
    out = v.set_price("EUR_USD", P("1.10200"), P("1.10210"))
    assert types(out) == ["ORDER_CANCEL"] and out[0].p == (o, "BOUNDS_VIOLATION") and o.state == "CANCELLED"


def test_trigger_conditions(env):
    v, aid, eu, _ = env
    # buy LIMIT at 1.09950: DEFAULT compares the ask, BID compares the bid
    d = v.place_order(aid, Order("LIMIT", eu, 10, price=P("1.09950"))).order
    b = v.place_order(aid, Order("LIMIT", eu, 10, price=P("1.09950"), trigger="BID")).order
    out = v.set_price("EUR_USD", P("1.09950"), P("1.09970"))
    assert [t.p.order for t in out] == [b] and out[0].p.price == P("1.09950")  # never worse than the limit
    out = v.set_price("EUR_USD", P("1.09930"), P("1.09950"))
    assert [t.p.order for t in out] == [d]


def test_gtd_and_gfd_expire(env):
    v, aid, eu, clock = env
    g = v.place_order(aid, Order("LIMIT", eu, 10, price=P("1.0"), tif="GTD", gtd_ns=T0 + 60 * 10**9)).order
    f = v.place_order(aid, Order("LIMIT", eu, 10, price=P("1.0"), tif="GFD")).order
    assert f.expire_ns == gfd_expiry_ns(T0) and f.expire_ns > T0
    clock.t = T0 + 61 * 10**9
    out = v.expire_orders()
    assert types(out) == ["ORDER_CANCEL"] and out[0].p == (g, "TIME_IN_FORCE_EXPIRED")
    clock.t = f.expire_ns
    out = v.set_price("EUR_USD", P("1.10000"), P("1.10010"))  # ticks run expiry too
    assert out[0].p == (f, "TIME_IN_FORCE_EXPIRED")


def test_gfd_expiry_is_5pm_new_york():
    from datetime import datetime, timezone

    # 2026-01-15 20:00 UTC = 15:00 EST -> 17:00 EST = 22:00 UTC same day
    t = int(datetime(2026, 1, 15, 20, 0, tzinfo=timezone.utc).timestamp()) * 10**9
    assert gfd_expiry_ns(t) == int(datetime(2026, 1, 15, 22, 0, tzinfo=timezone.utc).timestamp()) * 10**9
    # in July (EDT) 17:00 New York is 21:00 UTC; after it, the next day's
    t = int(datetime(2026, 7, 15, 21, 30, tzinfo=timezone.utc).timestamp()) * 10**9
    assert gfd_expiry_ns(t) == int(datetime(2026, 7, 16, 21, 0, tzinfo=timezone.utc).timestamp()) * 10**9


def test_fok_and_ioc_against_liquidity(env):
    v, aid, eu, _ = env
    v.liquidity = 1000
    r = v.place_order(aid, Order("MARKET", eu, 1500))
    assert r.keys["orderCancelTransaction"].p[1] == "INSUFFICIENT_LIQUIDITY" and "orderFillTransaction" not in r.keys
    r = v.place_order(aid, Order("MARKET", eu, 1500, tif="IOC"))
    assert r.keys["orderFillTransaction"].p.units == 1000
    assert r.keys["orderCancelTransaction"].p[1] == "INSUFFICIENT_LIQUIDITY"
    r = v.place_order(aid, Order("LIMIT", eu, 10, price=P("1.0"), tif="FOK"))  # not marketable
    assert types(r.txns) == ["LIMIT_ORDER", "ORDER_CANCEL"]


def test_fifo_reduce_then_open_and_position_fill_modes(env):
    v, aid, eu, _ = env
    t1 = v.place_order(aid, Order("MARKET", eu, 100)).keys["orderFillTransaction"].id
    t2 = v.place_order(aid, Order("MARKET", eu, 200)).keys["orderFillTransaction"].id
    f = v.place_order(aid, Order("MARKET", eu, -250)).keys["orderFillTransaction"].p
    assert [c[0] for c in f.closed] == [t1] and f.reduced[0] == t2 and f.opened is None
    f = v.place_order(aid, Order("MARKET", eu, -100)).keys["orderFillTransaction"].p
    assert [c[0] for c in f.closed] == [t2] and f.opened[1] == -50  # reduce first, then open
    r = v.place_order(aid, Order("MARKET", eu, 100, position_fill="OPEN_ONLY"))
    assert r.keys["orderCancelTransaction"].p[1] == "FIFO_VIOLATION"
    r = v.place_order(aid, Order("MARKET", eu, 500, position_fill="REDUCE_ONLY"))
    assert r.keys["orderFillTransaction"].p.units == 50  # only what reduces
    assert v.accounts[aid].positions[0].units == 0


def test_on_fill_exits_and_trailing_stop_follow_the_market(env):
    v, aid, eu, _ = env
    r = v.place_order(aid, Order("MARKET", eu, 1000, tsl=OnFill(distance=P("0.00100"))))
    trade = v.accounts[aid].trades[r.keys["orderFillTransaction"].id]
    tsl = trade.tsl
    assert tsl.trailing_value == P("1.10010") - P("0.00100")
    v.set_price("EUR_USD", P("1.10300"), P("1.10310"))
    assert tsl.trailing_value == P("1.10200")  # trailed up with the bid
    v.set_price("EUR_USD", P("1.10250"), P("1.10260"))
    assert tsl.trailing_value == P("1.10200")  # never back down
    out = v.set_price("EUR_USD", P("1.10190"), P("1.10200"))
    assert out[0].type == "ORDER_FILL" and out[0].p.reason == "TRAILING_STOP_LOSS_ORDER"
    assert trade.state == "CLOSED" and out[0].p.price == P("1.10190")


def test_on_fill_loss_checks_cancel_before_filling(env):
    v, aid, eu, _ = env
    r = v.place_order(aid, Order("MARKET", eu, 10, tp=OnFill(price=P("1.09000"))))
    assert r.keys["orderCancelTransaction"].p[1] == "TAKE_PROFIT_ON_FILL_LOSS"
    r = v.place_order(aid, Order("MARKET", eu, 10, sl=OnFill(price=P("1.10005"))))
    assert r.keys["orderCancelTransaction"].p[1] == "STOP_LOSS_ON_FILL_LOSS"
    assert not v.accounts[aid].open_trades


def test_guaranteed_stop_loss_fills_exactly_at_its_price(env):
    v, aid, eu, _ = env
    r = v.place_order(aid, Order("MARKET", eu, 1000, sl=OnFill(price=P("1.09500"), guaranteed=True)))
    sl = v.accounts[aid].trades[r.keys["orderFillTransaction"].id].sl
    assert sl.guaranteed is True
    out = v.set_price("EUR_USD", P("1.08000"), P("1.08010"))  # gap far through the stop
    fill = [t for t in out if t.type == "ORDER_FILL"][0].p
    assert fill.reason == "STOP_LOSS_ORDER" and fill.price == P("1.09500")


def test_dependent_orders_replace_and_cancel_on_trade_close(env):
    v, aid, eu, _ = env
    r = v.place_order(aid, Order("MARKET", eu, 1000, tp=OnFill(price=P("1.12000")), sl=OnFill(price=P("1.09000"))))
    tid = r.keys["orderFillTransaction"].id
    assert types(r.txns) == ["MARKET_ORDER", "ORDER_FILL", "TAKE_PROFIT_ORDER", "STOP_LOSS_ORDER"]
    assert all(t.batch == r.txns[0].id for t in r.txns)
    trade = v.accounts[aid].trades[tid]
    old_tp = trade.tp
    dup = v.place_order(aid, Order("TAKE_PROFIT", trade_id=tid, price=P("1.13000")))
    assert dup.error_code == "TAKE_PROFIT_ORDER_ALREADY_EXISTS"
    rep = v.replace_order(aid, str(old_tp.id), Order("TAKE_PROFIT", trade_id=tid, price=P("1.13000")))
    assert rep.status == 201 and trade.tp is not old_tp and trade.tp.price == P("1.13000")
    assert old_tp.state == "CANCELLED" and old_tp.replaced_by_id == trade.tp.id
    res = v.close_trade(aid, str(tid), 400)
    assert res.keys["orderFillTransaction"].p.reduced[0] == tid and trade.units == 600
    res = v.close_trade(aid, str(tid))
    cancels = [t.p for t in res.txns if t.type == "ORDER_CANCEL"]
    assert {c[1] for c in cancels} == {"LINKED_TRADE_CLOSED"} and len(cancels) == 2
    assert v.accounts[aid].pending == {}


def test_position_close_partial_and_missing_side(env):
    v, aid, eu, _ = env
    v.place_order(aid, Order("MARKET", eu, -300))
    r = v.close_position(aid, "EUR_USD", "ALL", "ALL")
    assert r.status == 400 and r.error_code == "CLOSEOUT_POSITION_DOESNT_EXIST"
    assert r.keys["longOrderRejectTransaction"].p[1] == "CLOSEOUT_POSITION_DOESNT_EXIST"
    assert r.keys["shortOrderRejectTransaction"].p[1] == "CLOSEOUT_POSITION_REJECT"
    r = v.close_position(aid, "EUR_USD", None, 100)
    assert r.status == 200 and r.keys["shortOrderFillTransaction"].p.units == 100
    r = v.close_position(aid, "EUR_USD", None, 500)
    assert r.error_code == "CLOSEOUT_POSITION_UNITS_EXCEED_POSITION_SIZE"


def test_cross_margin_uses_conversion(env):
    v, aid, _, _ = env
    jpy = v.by_name["USD_JPY"]
    v.set_price("USD_JPY", parse_price("150.000", 3), parse_price("150.010", 3))
    gain, loss, mid = v.factors("USD", jpy)
    # gain converts JPY to USD at 1/ask, loss at 1/bid (12 decimals, half-even)
    assert gain == round_half_even_int(10**12 * 10**9, parse_price("150.010", 3))
    assert loss == round_half_even_int(10**12 * 10**9, parse_price("150.000", 3)) and loss > gain
    r = v.place_order(aid, Order("MARKET", jpy, 1000))
    assert r.keys["orderFillTransaction"].p.gain == gain
