"""The compiled per-order path (``fastexec.engine.hotpath``) against the
Python reference it replaced: the plain-order shortcut gives what the full
checks give (or defers to them for anything they would refuse), the records
and views it builds carry every field, and its fast field access is in use."""
from __future__ import annotations

import dataclasses
import gc

import pytest

from fastexec._core.instruments import load_instruments
from fastexec.brokers.base import OrderFilled, OrderRequest
from fastexec.engine import ExitSpec, OrderSpec, OrderView
from fastexec.engine import hotpath as H
from fastexec.engine import validation as V
from fastexec.errors import ValidationError

EUR_USD = next(i for i in load_instruments() if i.name == "EUR_USD")


def _fields(n):
    return {k: getattr(n, k) for k in H.NORMALIZED_FIELDS}


def _full(spec, monkeypatch):
    """normalize with the shortcut switched off: every check runs."""
    with monkeypatch.context() as m:
        for info in V._INFO_LIST:
            m.setattr(info, "plain", False)
        try:
            return _fields(V.normalize(spec, EUR_USD, 0))
        except ValidationError as exc:
            return (exc.code, exc.field)


def _fast(spec):
    try:
        n = H.plain(spec, EUR_USD)
    except ValidationError as exc:
        return (exc.code, exc.field)
    return None if n is None else _fields(n)


SPECS = [
    dict(),
    dict(side="sell"),
    dict(type="market"),
    dict(type="fok"),
    dict(type="ioc", side="sell"),
    dict(client_order_id="c-1"),
    dict(client_order_id=""),
    dict(client_order_id="has space"),
    dict(client_order_id="x" * 129),
    dict(client_order_id=7),
    dict(units=1),
    dict(units=0),
    dict(units=-1000),
    dict(units=True),
    dict(units=1.0),
    dict(units=2**70),
    dict(units=-(2**70)),
    dict(units=10**12),
    dict(units=EUR_USD.maximum_order_units),
    dict(units=EUR_USD.maximum_order_units + 1),
    dict(side="BUY"),
    dict(side=None),
    dict(type="limit"),
    dict(type="stop_limit"),
    dict(type="iceberg"),
    dict(type=None),
    dict(price=1_100_000_000),
    dict(type="fok", price=1_100_000_000),
    dict(time_in_force="IOC"),
    dict(time_in_force="GTC"),
    dict(stop_loss=ExitSpec(price=1_000_000_000)),
    dict(take_profit=ExitSpec(price=1_200_000_000)),
    dict(trailing_stop_distance=50_000),
    dict(trailing_distance=50_000),
    dict(stop_price=1_100_000_000),
]


@pytest.mark.parametrize("kw", SPECS, ids=[repr(k)[:60] for k in SPECS])
def test_plain_shortcut_agrees_with_the_full_checks(kw, monkeypatch):
    """Whatever the shortcut returns is what the full checks return; when it
    returns None (not plain, or something the checks refuse) normalize falls
    through to them, so the caller sees their answer either way."""
    spec = OrderSpec(**{"account_id": "a", "instrument": "EUR_USD", "side": "buy", "units": 1000, **kw})
    full = _full(spec, monkeypatch)
    fast = _fast(spec)
    if fast is not None:
        assert fast == full
    try:
        via_normalize = _fields(V.normalize(spec, EUR_USD, 0))
    except ValidationError as exc:
        via_normalize = (exc.code, exc.field)
    assert via_normalize == full


def test_plain_shortcut_takes_the_common_orders():
    for side in ("buy", "sell"):
        for coid in (None, "c-9"):
            n = H.plain(OrderSpec("a", "EUR_USD", side, 1000, client_order_id=coid), EUR_USD)
            assert n is not None and n.units == (1000 if side == "buy" else -1000) and n.client_order_id == coid
            assert n.tif == "FOK" and n.price is None and not n.emulated


def test_plain_shortcut_defers_for_a_subclassed_spec_or_a_foreign_instrument():
    @dataclasses.dataclass(slots=True)
    class MySpec(OrderSpec):
        pass

    assert H.plain(MySpec("a", "EUR_USD", "buy", 1000), EUR_USD) is None
    assert H.plain(OrderSpec("a", "EUR_USD", "buy", 1000), object()) is None


def test_direct_slot_access_is_in_use():
    """The broker-interface dataclasses are the slotted shapes hotpath expects
    (else it silently takes the slower getattr / constructor path)."""
    assert H.DIRECT_SLOTS == {"OrderRequest": True, "OrderFilled": True, "OrderSpec": True}
    assert H.DIRECT_REQUEST_INIT  # broker_request fills a new OrderRequest's slots in place
    assert tuple(f.name for f in dataclasses.fields(OrderRequest)) == H._REQUEST_FIELDS
    assert tuple(f.name for f in dataclasses.fields(OrderFilled)) == H._FILLED_FIELDS
    assert tuple(f.name for f in dataclasses.fields(OrderSpec)) == H._SPEC_FIELDS


def test_records_are_filled_in_place_and_are_ordinary_dicts():
    """The compiled records are copies of a template with their values written
    in (``engine/_dictfill.pxd``): plain dicts, keys in order, tracked by the
    collector exactly when a value needs it, and independent of each other."""
    import gc

    assert H.DIRECT_DICTS
    ev = OrderFilled("acct", "c-1", "7", 9, "EUR_USD", 1000, 1_100_000_000, "MARKET_ORDER", 5, 0, 0, 0, 10**9,
                     "9", ("3", "4"))
    a, b = H.filled_record(ev), H.filled_record(ev)
    assert type(a) is dict and a is not b and a["trades_closed"] is not b["trades_closed"]
    assert list(a) == list(H._FILLED_FIELDS) + ["type", "ts"]
    assert a["trades_closed"] == ["3", "4"] and a["type"] == "broker.filled" and a["txn_id"] == 9
    assert gc.is_tracked(a)  # it holds a list
    a["extra"] = 1
    del a["account_id"]
    assert "account_id" in b and "extra" not in b and H.filled_record(ev)["account_id"] == "acct"


def test_broker_request_of_an_order_with_exits_and_gtd():
    n = V.normalize(OrderSpec("a", "EUR_USD", "sell", 10, type="limit", price=1_090_000_000, time_in_force="GTD",
                              gtd_time=__import__("datetime").datetime(2100, 1, 1, tzinfo=__import__("datetime").timezone.utc),
                              stop_loss=ExitSpec(distance=100_000), take_profit=ExitSpec(price=1_000_000_000)),
                    EUR_USD, 0)
    r = H.broker_request(n, "cid", "a", "EUR_USD")
    assert r == OrderRequest("cid", "a", "EUR_USD", -10, n.info.v20, 1_090_000_000, None, r.time_in_force, n.gtd_ns,
                             r.position_fill, r.trigger_condition, n.stop_loss, n.take_profit, None, None, None)
    assert r.time_in_force.value == "GTD" and r.gtd_time_ns == n.gtd_ns


def _order(units=1000, side="buy"):
    n = V.normalize(OrderSpec("a", "EUR_USD", side, units), EUR_USD, 0)
    return H.new_order("o-1", "c-1", "a", 0, EUR_USD, n, side, "r-1", 123)


def test_order_view_has_every_field_and_is_an_order_view():
    o = _order()
    v = H.view(o)
    assert type(v) is OrderView and len(v) == len(OrderView._fields)
    assert v._asdict() == dict(
        order_id="o-1", client_order_id="c-1", broker_order_id=None, status="pending", account_id="a",
        instrument="EUR_USD", side="buy", type="market", units=1000, filled_units=0, price=None, stop_price=None,
        trailing_distance=None, trigger_price=None, average_fill_price=None, time_in_force="FOK", gtd_time=None,
        stop_loss=None, take_profit=None, trailing_stop_distance=None, created_at=123, updated_at=123,
        reject_reason=None, request_id="r-1", timings={"risk_ns": 0, "broker_ns": 0, "total_ns": 0},
        precision=EUR_USD.display_precision,
    )
    assert v == OrderView(*v)


@pytest.mark.parametrize("fills,avg", [
    ([(300, 1_100_000_000), (700, 1_100_020_000)], 1_100_014_000),
    ([(1, 1), (1, 2)], 2),        # 1.5 -> 2 (half to even)
    ([(1, 2), (1, 3)], 2),        # 2.5 -> 2
    ([(3, 10**9), (0, 0)], 10**9),
])
def test_view_average_price_rounds_half_even(fills, avg):
    o = _order()
    for u, px in fills:
        o.fill_units += u
        o.fill_value += u * px
    assert H.view(o).average_fill_price == avg


def test_fill_value_is_exact_beyond_int64():
    o = _order()
    o.fill_units = 10**12
    o.fill_value = 10**12 * 999_999_999 * 40  # far beyond 2**63: stays a Python int
    assert H.view(o).average_fill_price == 999_999_999 * 40


def test_fill_value_moves_between_int64_and_python_ints():
    o = _order()
    assert o.fill_value == 0 and type(o.fill_value) is int
    o.fill_value = 2**63 - 1
    o.fill_value += 1  # past int64: kept as the Python int
    assert o.fill_value == 2**63
    o.fill_value = -(2**63)
    assert o.fill_value == -(2**63)
    o.fill_value = 5
    o.fill_units = 2
    assert o.fill_value == 5 and H.view(o).average_fill_price == 2  # 2.5 -> 2


@pytest.mark.parametrize("ts", [0, 2**63 - 1, -(2**63), 2**63, None, True, 1.5, "t"])
def test_timestamps_are_kept_exactly_whatever_the_clock_gives(ts):
    """created_at / updated_at are held in C when they are int64 ints, else as the object itself."""
    n = V.normalize(OrderSpec("a", "EUR_USD", "buy", 1000), EUR_USD, 0)
    o = H.new_order("o-1", "c-1", "a", 0, EUR_USD, n, "buy", "r-1", ts)
    v = H.view(o)
    assert (o.created_at, o.updated_at, v.created_at, v.updated_at) == (ts, ts, ts, ts)
    assert type(v.created_at) is type(ts) and type(H.submitted_record(o)["ts"]) is type(ts)
    o.updated_at = 7
    assert (o.created_at, o.updated_at, H.view(o).updated_at) == (ts, 7, 7)


def test_plain_orders_share_their_normalized_unless_they_carry_a_client_id():
    buy, sell = OrderSpec("a", "EUR_USD", "buy", 7_001), OrderSpec("a", "EUR_USD", "sell", 7_001)
    n1, n2 = H.plain(buy, EUR_USD), H.plain(dataclasses.replace(buy, account_id="b"), EUR_USD)
    assert n1 is n2 and n1.units == 7_001
    s1 = H.plain(sell, EUR_USD)
    assert s1 is H.plain(sell, EUR_USD) and s1.units == -7_001 and s1 is not n1
    c = H.plain(dataclasses.replace(buy, client_order_id="c-7001"), EUR_USD)
    assert c is not n1 and c.client_order_id == "c-7001" and H.plain(buy, EUR_USD).client_order_id is None
    assert _fields(c) == dict(_fields(n1), client_order_id="c-7001")


def test_records_are_not_tracked_by_the_cyclic_collector():
    o = _order()
    assert not gc.is_tracked(o) and not gc.is_tracked(o.norm)


def test_latency_ring_wraps_and_summarises():
    ring = H.LatencyRing(4)
    for ns in range(1, 7):
        ring.add(ns)
    assert ring.summary() == {"count": 6, "p50_ns": 4, "p95_ns": 6, "p99_ns": 6, "max_ns": 6}
    with pytest.raises(ValueError):
        H.LatencyRing(0)
    with pytest.raises(AttributeError):
        ring._pos = 99  # only add() moves it (it indexes without a bounds check)
    with pytest.raises(OverflowError):  # samples are int64 in a C array: refused, not wrapped
        ring.add(2**63)
    assert ring.summary()["count"] == 6 and H.LatencyRing(3).summary() == {"count": 0}


def _trade_ids_reference(opened_id, closed_ids):
    """What engine.py did before (int() on every id)."""
    try:
        opened = int(opened_id) if opened_id else 0
        closed = tuple(map(int, closed_ids)) if closed_ids else None
    except ValueError:
        return 0, None
    return (opened if opened > 0 else 0), closed


@pytest.mark.parametrize("opened,closed", [
    ("12", ()), (None, ("3", "004")), ("9" * 18, ("1" * 19,)), ("", None), (" 7", ("+8", "1_0")),
    ("-5", ()), ("x", ()), ("12", ("3", "4a")), ("\u0661\u0662", ("\u0663",)), (7, (8, 9)), ("0", ("0",)),
    ("99999999999999999999999", ()),
])
def test_trade_ids_parse_like_int(opened, closed):
    assert H.trade_ids(opened, closed) == _trade_ids_reference(opened, closed)
