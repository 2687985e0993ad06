"""The compiled wire form (fastexec.engine.wire) against the Python reference
in fastexec.engine.views: the same dict, the same bytes after orjson, and the
same error (type and message) for every view, including values the compiled
path hands back to the reference (out of range, finer than the precision,
odd precisions, ints beyond int64, non-ints)."""
from __future__ import annotations

import calendar
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastexec._core import fixedpoint as fp
from fastexec.engine import ExitSpec, OrderSpec
from fastexec.engine import views, wire
from fastexec.engine.views import AccountView, OrderView, PositionView

from .harness import SEC, px

MAX_PRICE = fp.MAX_PRICE
MAX_MONEY = fp.MAX_MONEY
I64 = 2**63
NS = 10**9


def outcome(fn, *args):
    """("ok", value, orjson bytes) or ("err", type, message)."""
    try:
        value = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the point is to compare any error
        return ("err", type(exc), str(exc))
    return ("ok", value, orjson.dumps(value))


def same(compiled, reference, *args):
    got, want = outcome(compiled, *args), outcome(reference, *args)
    assert got == want, (args, got, want)
    if got[0] == "ok":
        # the same text, not just equal: str values of the same type
        assert type(got[1]) is type(want[1])
    return got


# --- strategies ---------------------------------------------------------------

precision = st.one_of(
    st.integers(0, 9),
    st.integers(0, 9),
    st.sampled_from([-1, 10, 2**70, True, False, None, 5.0, "5"]),
)


def on_grid(p: int):
    """Prices the instrument can carry: multiples of its tick, 1 tick .. MAX_PRICE."""
    unit = 10 ** (9 - p)
    return st.integers(1, MAX_PRICE // unit).map(lambda k: k * unit)


price_any = st.one_of(
    st.integers(1, MAX_PRICE),
    st.integers(-MAX_PRICE - 2, MAX_PRICE + 2),
    st.sampled_from([0, 1, -1, MAX_PRICE, MAX_PRICE + 1, -MAX_PRICE, -MAX_PRICE - 1, I64 - 1, I64, -I64, 10**30]),
    st.sampled_from([True, 1.5, "1.1"]),
)

YEAR_STARTS = [calendar.timegm((y, 1, 1, 0, 0, 0)) for y in range(1970, 2201)]
LEAP_DAYS = [calendar.timegm((y, 2, 29, 0, 0, 0)) for y in (1972, 2000, 2024, 2096, 2104, 2196)]
MARCH_FIRSTS = [calendar.timegm((y, 3, 1, 0, 0, 0)) for y in (1900, 2000, 2100, 2200)]

timestamp = st.one_of(
    st.integers(0, YEAR_STARTS[-1] * NS),  # 1970 .. 2200
    st.tuples(st.sampled_from(YEAR_STARTS + LEAP_DAYS + MARCH_FIRSTS), st.integers(-3 * NS, 3 * NS)).map(
        lambda t: t[0] * NS + t[1]
    ),
    st.integers(-I64, I64 - 1),  # the whole int64 range, 1677 .. 2262, negatives too
    st.integers(-5 * NS, 5 * NS),
    st.sampled_from([0, -1, 1, NS - 1, NS, -NS, -NS - 1, I64 - 1, -I64, I64, -I64 - 1, 2**80]),
)
opt_ts = st.one_of(st.none(), timestamp)

exit_spec = st.one_of(
    st.none(),
    st.builds(
        ExitSpec,
        price=st.one_of(st.none(), price_any),
        distance=st.one_of(st.none(), price_any),
        guaranteed=st.booleans(),
    ),
)

units = st.one_of(st.integers(0, 10**12), st.integers(-(10**12), 10**12), st.sampled_from([I64, -I64 - 1, 10**40]))
text = st.one_of(st.none(), st.text(max_size=12))


@st.composite
def order_views(draw):
    p = draw(precision)
    if type(p) is int and 0 <= p <= 9 and draw(st.booleans()):
        px_ = st.one_of(on_grid(p), st.sampled_from([10 ** (9 - p), MAX_PRICE]))
    else:
        px_ = price_any
    opt_px = st.one_of(st.none(), px_)
    return OrderView(
        order_id=draw(st.text(min_size=1, max_size=20)),
        client_order_id=draw(st.text(max_size=20)),
        broker_order_id=draw(text),
        status=draw(st.sampled_from(["pending", "working", "filled", "cancelled", "rejected", "waiting", "triggered"])),
        account_id=draw(st.text(max_size=10)),
        instrument=draw(st.sampled_from(["EUR_USD", "USD_JPY", "XAU_USD"])),
        side=draw(st.sampled_from(["buy", "sell"])),
        type=draw(st.sampled_from([t.value for t in __import__("fastexec.engine.types", fromlist=["OrderType"]).OrderType])),
        units=draw(units),
        filled_units=draw(units),
        price=draw(opt_px),
        stop_price=draw(opt_px),
        trailing_distance=draw(opt_px),
        trigger_price=draw(opt_px),
        # VWAPs: any nano, usually finer than the instrument
        average_fill_price=draw(st.one_of(st.none(), price_any, px_)),
        time_in_force=draw(st.sampled_from([None, "GTC", "GTD", "GFD", "FOK", "IOC"])),
        gtd_time=draw(opt_ts),
        stop_loss=draw(exit_spec),
        take_profit=draw(exit_spec),
        trailing_stop_distance=draw(opt_px),
        created_at=draw(timestamp),
        updated_at=draw(opt_ts),
        reject_reason=draw(text),
        request_id=draw(text),
        timings=draw(st.dictionaries(st.sampled_from(["risk_ns", "broker_ns", "total_ns"]), st.integers(0, 10**12))),
        precision=p,
    )


FAST = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- whole views ----------------------------------------------------------------

@FAST
@given(order_views())
def test_order_to_dict_matches_the_reference(view):
    same(OrderView.to_dict, views._order_dict_reference, view)


def test_order_to_dict_is_the_compiled_one():
    assert OrderView.to_dict is wire.order_dict


@FAST
@given(
    units=units,
    avg=st.one_of(st.none(), price_any),
    p=precision,
    money=st.lists(st.one_of(st.integers(-MAX_MONEY - 2, MAX_MONEY + 2), st.integers(-10**6, 10**6)), min_size=4, max_size=4),
)
def test_position_to_dict_matches_the_reference(units, avg, p, money):
    view = PositionView("001-001", "EUR_USD", units, avg, *money, precision=p)
    same(PositionView.to_dict, PositionView._position_dict_reference, view)


@FAST
@given(
    money=st.lists(
        st.one_of(
            st.integers(-MAX_MONEY - 2, MAX_MONEY + 2),
            st.integers(-10**4, 10**4).map(lambda k: k * 50),  # exact halves at 4 places
            st.sampled_from([MAX_MONEY, -MAX_MONEY, MAX_MONEY + 1, I64, True]),
        ),
        min_size=7,
        max_size=7,
    ),
    counts=st.tuples(st.integers(0, 100), st.integers(0, 100)),
    halted=st.booleans(),
)
def test_account_to_dict_matches_the_reference(money, counts, halted):
    b, nav, upl, rpl, mu, ma, dpl = money
    view = AccountView("001-001", "USD", b, nav, upl, rpl, mu, ma, counts[0], counts[1], dpl, "active", halted)
    same(AccountView.to_dict, AccountView._account_dict_reference, view)


# --- the single formatters, also against the core ------------------------------

@FAST
@given(value=price_any, p=precision)
@example(value=1, p=9)
@example(value=MAX_PRICE, p=0)
@example(value=MAX_PRICE, p=9)
@example(value=10**9, p=0)
@example(value=0, p=5)
@example(value=-1_500_000_000, p=1)
def test_price_text_matches_views_and_core(value, p):
    got = same(wire.py_price, views.format_price, value, p)
    assert got == outcome(fp.format_price, value, p)


@FAST
@given(p=st.integers(0, 9), data=st.data())
def test_price_on_the_grid_is_never_refused(p, data):
    value = data.draw(on_grid(p))
    text = wire.py_price(value, p)
    assert text == fp.format_price(value, p)
    assert fp.parse_price(text, p) == value


@FAST
@given(value=st.one_of(st.none(), price_any), p=precision)
@example(value=1, p=0)
@example(value=MAX_PRICE - 1, p=5)
@example(value=1_123_450_000, p=5)
@example(value=1_123_450_001, p=5)
@example(value=-1_000_000_001, p=3)
def test_average_price_text_matches_views(value, p):
    same(wire.py_avg_price, views._avg_px, value, p)


@FAST
@given(ns=st.one_of(st.none(), timestamp))
@example(ns=calendar.timegm((2199, 12, 31, 23, 59, 59)) * NS + NS - 1)
@example(ns=calendar.timegm((2200, 1, 1, 0, 0, 0)) * NS)
@example(ns=calendar.timegm((2100, 2, 28, 23, 59, 59)) * NS + 1)
@example(ns=-1)
@example(ns=-I64)
@example(ns=I64 - 1)
def test_timestamp_text_matches_views(ns):
    got = same(wire.py_ts, views._ts, ns)
    if ns is not None and got[0] == "ok" and 0 <= ns < I64:
        secs, frac = divmod(ns, NS)
        iso = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        assert got[1] == f"{iso}.{frac:09d}Z"


@FAST
@given(value=st.one_of(st.none(), st.integers(-MAX_MONEY - 2, MAX_MONEY + 2), st.integers(-10**5, 10**5), st.sampled_from([I64, True, 1.0])))
@example(value=50)
@example(value=150)
@example(value=-50)
@example(value=-150)
@example(value=MAX_MONEY)
@example(value=-MAX_MONEY - 1)
def test_money_text_matches_views(value):
    same(wire.py_money, views._money, value)


# --- real views from the engine: every order type ------------------------------

async def test_engine_views_of_every_order_type_match_the_reference(h):
    e = h.engine
    specs = [
        OrderSpec(h.a1, "EUR_USD", "buy", 1000),
        OrderSpec(h.a1, "EUR_USD", "sell", 700, stop_loss=ExitSpec(distance=px("0.00500")),
                  take_profit=ExitSpec(price=px("1.05000"))),
        OrderSpec(h.a1, "EUR_USD", "buy", 2000, type="limit", price=px("1.09000"),
                  time_in_force="GTD", gtd_time=datetime(2100, 3, 1, tzinfo=timezone.utc)),
        OrderSpec(h.a1, "EUR_USD", "buy", 2000, type="stop", price=px("1.11000")),
        OrderSpec(h.a1, "EUR_USD", "sell", 2000, type="stop_limit", price=px("1.08900"), stop_price=px("1.09000")),
        OrderSpec(h.a1, "EUR_USD", "sell", 2000, type="trailing_stop", trailing_distance=px("0.00200")),
        OrderSpec(h.a1, "EUR_USD", "buy", 2000, type="market_if_touched", price=px("1.09500")),
        OrderSpec(h.a1, "EUR_USD", "buy", 500, type="fok", price=px("1.10100")),
        OrderSpec(h.a1, "EUR_USD", "buy", 500, type="ioc", price=px("1.10100"), trailing_stop_distance=px("0.00300")),
        OrderSpec(h.a2, "USD_JPY", "buy", 300),
        OrderSpec(h.a2, "USD_JPY", "sell", 100, type="limit", price=px("151.000", 3)),
    ]
    seen = []
    for i, spec in enumerate(specs):
        seen.append(await e.submit(spec, request_id=f"r{i}"))
        h.clock.advance(SEC // 3)  # sub-second and whole-second stamps
    h.quote("EUR_USD", "1.08800", "1.08810")  # limit/stop-limit/trailing fire, stops do not
    h.clock.advance(SEC)
    h.quote("EUR_USD", "1.11200", "1.11210")
    await h.settle()
    seen += [e.get_order(v.order_id) for v in seen]
    for v in seen:
        assert v.to_dict() == views._order_dict_reference(v)
        assert orjson.dumps(v.to_dict()) == orjson.dumps(views._order_dict_reference(v))
    for account in (h.a1, h.a2):
        for pos in e.positions(account):
            assert orjson.dumps(pos.to_dict()) == orjson.dumps(pos._position_dict_reference())
        acct = e.account(account)
        assert orjson.dumps(acct.to_dict()) == orjson.dumps(acct._account_dict_reference())
    assert {v.type for v in seen} >= {"market", "limit", "stop", "stop_limit", "trailing_stop", "market_if_touched", "fok", "ioc"}
    assert any(v.average_fill_price is not None for v in seen)
    assert any(v.stop_loss is not None for v in seen) and any(v.take_profit is not None for v in seen)
    assert any(v.gtd_time is not None for v in seen) and any(v.trailing_stop_distance is not None for v in seen)
    assert {v.instrument for v in seen} == {"EUR_USD", "USD_JPY"}  # precisions 5 and 3


def test_a_view_that_is_not_26_fields_goes_to_the_reference():
    with pytest.raises(ValueError):
        wire.order_dict(("a", "b"))
    with pytest.raises(ValueError):
        views._order_dict_reference(("a", "b"))


# --- the 201 body written directly (wire.order_json) ---------------------------

ascii_text = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=12)
any_text = st.one_of(ascii_text, st.text(max_size=12))
timing_value = st.one_of(
    st.integers(0, 10**12), st.integers(-I64, I64 - 1), st.sampled_from([I64, 2**64 - 1, 2**64, -I64 - 1]),
    st.none(), st.booleans(), st.floats(allow_nan=False), st.just("x"),
)


@st.composite
def json_views(draw):
    """``order_views`` with client-settable text often plain ASCII (the
    writer's own path) and often not, and timings of any JSON-able kind."""
    v = draw(order_views())
    return v._replace(
        order_id=draw(any_text),
        client_order_id=draw(any_text),
        broker_order_id=draw(st.one_of(st.none(), any_text)),
        account_id=draw(any_text),
        reject_reason=draw(st.one_of(st.none(), any_text)),
        request_id=draw(st.one_of(st.none(), any_text)),
        timings=draw(st.one_of(
            st.dictionaries(st.sampled_from(["risk_ns", "broker_ns", "total_ns"]), st.integers(0, 10**12)),
            st.dictionaries(any_text, timing_value, max_size=4),
        )),
    )


def dumped(fn, view):
    """("ok", bytes) or ("err", type, message)."""
    try:
        return ("ok", fn(view))
    except Exception as exc:  # noqa: BLE001 - the point is to compare any error
        return ("err", type(exc), str(exc))


@FAST
@given(json_views())
def test_order_json_is_orjson_of_to_dict(view):
    got = dumped(wire.order_json, view)
    assert got == dumped(lambda v: orjson.dumps(v.to_dict()), view)
    assert got == dumped(lambda v: orjson.dumps(views._order_dict_reference(v)), view)


def _plain_view(**kw):
    return OrderView(
        order_id="ord-1", client_order_id="c-1", broker_order_id=None, status="filled", account_id="acc",
        instrument="EUR_USD", side="buy", type="market", units=1000, filled_units=1000, price=None,
        stop_price=None, trailing_distance=None, trigger_price=None, average_fill_price=1_123_450_000,
        time_in_force="FOK", gtd_time=None, stop_loss=ExitSpec(price=1_100_000_000),
        take_profit=ExitSpec(distance=5_000_000, guaranteed=True), trailing_stop_distance=None,
        created_at=1_700_000_000_123_456_789, updated_at=1_700_000_000_123_456_790, reject_reason=None,
        request_id="r-1", timings={"risk_ns": 1, "broker_ns": 2, "total_ns": 3}, precision=5,
    )._replace(**kw)


ESCAPES = [
    'a"b', "a\\b", "\\", '"', "\x00", "\x01", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\x1f", "\x7f", " ",
    "é", "ü\x00", "€", "日本", "\U0001f600", "\u2028\u2029", "\ufeff", "\ud800", "a\udfff", "\ud83d\ude00",
    "/", "</script>", "a" * 3000,
]


@pytest.mark.parametrize("s", ESCAPES)
@pytest.mark.parametrize(
    "field", ["order_id", "client_order_id", "broker_order_id", "account_id", "reject_reason", "request_id", "timings"]
)
def test_order_json_escapes_like_orjson(field, s):
    """Quotes, backslashes, control characters, non-ASCII, lone surrogates
    (orjson refuses them: the same error) and a body beyond the writer's
    buffer: the bytes, or the error, of orjson.dumps(to_dict())."""
    view = _plain_view(**{field: {s: 1} if field == "timings" else s})
    want = dumped(lambda v: orjson.dumps(v.to_dict()), view)
    assert dumped(wire.order_json, view) == want
    if "\ud800" not in s and "\udfff" not in s and not ("\ud83d" in s):
        assert want[0] == "ok"


def test_order_json_plain_view():
    view = _plain_view()
    assert wire.order_json(view) == orjson.dumps(view.to_dict())
    assert wire.order_json(view).startswith(b'{"order_id":"ord-1","client_order_id":"c-1","broker_order_id":null,')


def test_order_json_of_another_view_class_is_its_to_dict():
    class Mine(OrderView):
        def to_dict(self):
            return {"mine": True}

    assert wire.order_json(Mine(*_plain_view())) == b'{"mine":true}'
