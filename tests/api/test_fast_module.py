"""The compiled submit reader (api/_fast.pyx) against its pure-Python reference.

``OrderReader(schema, precision)(raw)`` may return an ``OrderSpec`` only when
``Api.order_spec(schema.parse_json(raw))`` returns an equal one (same field
values and types); otherwise it must return None, and the general path
answers. Bodies are generated as dicts and then written out in several
spellings (orjson, the stdlib with spaces, escapes, duplicate keys, floats),
so the byte-level reader meets what clients send.
"""
from __future__ import annotations

import dataclasses
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec._core.instruments import load_instruments
from fastexec.api import models as m
from fastexec.api.app import Api
from fastexec.engine.types import OrderSpec
from fastexec.errors import ValidationError

from .conftest import TOKEN_A

_fast = pytest.importorskip("fastexec.api._fast")

ACCOUNT = "101-001-0000001-001"


@pytest.fixture(scope="module")
def ref_api():
    return Api(None, instruments=load_instruments())


def _reference(ref_api, raw: bytes):
    try:
        return ref_api.order_spec(m.ORDER_REQUEST.parse_json(raw))
    except ValidationError:
        return None


def _check(ref_api, reader, raw: bytes):
    fast = reader(raw)
    if fast is None:
        return None
    ref = _reference(ref_api, raw)
    assert ref is not None, raw
    assert type(fast) is OrderSpec
    assert fast == ref, raw
    for f in dataclasses.fields(OrderSpec):
        assert type(getattr(fast, f.name)) is type(getattr(ref, f.name)), (f.name, raw)
    return fast


def test_slots_are_set_directly():
    assert _fast.READER_SLOTS


def test_a_plain_market_order_is_read(ref_api):
    reader = _fast.OrderReader(m.ORDER_REQUEST, ref_api._precision)
    raw = orjson.dumps({"account_id": ACCOUNT, "instrument": "EUR_USD", "units": 100, "side": "buy", "type": "market"})
    spec = _check(ref_api, reader, raw)
    assert spec is not None and spec.type == "market" and spec.units == 100
    # type defaults to "market" (a str, as Api.order_spec gives it)
    spec = _check(ref_api, reader, orjson.dumps({"account_id": ACCOUNT, "instrument": "EUR_USD", "units": 7, "side": "sell"}))
    assert spec is not None and type(spec.type) is str and spec.type == "market"
    spec = _check(ref_api, reader, b' {\n"side":"buy",\t"units" : 1000000000000 , "instrument":"EUR_USD","account_id":"a",'
                               b'"time_in_force":"IOC","client_order_id":"c-1"}\r\n')
    assert spec is not None and spec.time_in_force == "IOC" and spec.client_order_id == "c-1"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy","units":100}',  # duplicate key
        b'{"account_id":"a","instrument":"EUR_USD","units":100.0,"side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":1e2,"side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":0100,"side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":-100,"side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":0,"side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":1000000000001,"side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":10000000000000,"side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":"100","side":"buy"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":true,"side":"buy"}',
        b'{"account_id":"a","instrument":"XXX_YYY","units":100,"side":"buy"}',  # unknown instrument
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"BUY"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"b\\u0075y"}',  # escape
        b'{"account_id":"\xc3\xa9","instrument":"EUR_USD","units":100,"side":"buy"}',  # non-ASCII
        b'{"account_id":"a b","instrument":"EUR_USD","units":100,"side":"buy"}',  # fails the pattern
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy","price":"1.1"}',  # priced
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy","stop_loss":{"price":"1.1"}}',
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy","gtd_time":"2030-01-01T00:00:00Z"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy","bogus":"x"}',
        b'{"account_id":"a","instrument":"EUR_USD","units":100}',  # side missing
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy"',  # truncated
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy"}x',
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy",}',
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy"}{}',
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":null}',
        b'{"account_id":"a","instrument":"EUR_USD","units":100,"side":"buy","type":"market","client_order_id":""}',
        b"",
        b"{}",
        b"[]",
        b"\xef\xbb\xbf{}",
    ],
)
def test_anything_unusual_goes_the_general_way(ref_api, raw):
    reader = _fast.OrderReader(m.ORDER_REQUEST, ref_api._precision)
    assert reader(raw) is None


_KEYS = st.sampled_from(
    ["account_id", "instrument", "units", "side", "type", "time_in_force", "client_order_id", "price", "gtd_time", "bogus"]
)
_VALUES = st.one_of(
    st.sampled_from([ACCOUNT, "a", "EUR_USD", "USD_JPY", "eur_usd", "XXX_YYY", "buy", "sell", "market", "limit", "GTC", "FOK",
                     "1.10", "", " ", "x" * 70, "x" * 129, "c-1", "2030-01-01T00:00:00Z", "é", "a\"b", "a\\b", "\u2028"]),
    st.integers(min_value=-3, max_value=10**13 + 5),
    st.sampled_from([1, 10**12, 10**12 + 1, 10**13]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_BASE = {"account_id": ACCOUNT, "instrument": "EUR_USD", "units": 100, "side": "buy"}


def _spellings(body: dict) -> list[bytes]:
    return [
        orjson.dumps(body),
        json.dumps(body).encode(),  # ", " and ": " separators
        json.dumps(body, indent=1, ensure_ascii=False).encode(),
    ]


@settings(max_examples=500, deadline=None)
@given(over=st.dictionaries(_KEYS, _VALUES, max_size=4), drop=st.sets(st.sampled_from(sorted(_BASE)), max_size=2))
def test_reader_equals_the_general_path(ref_api, over, drop):
    reader = _fast.OrderReader(m.ORDER_REQUEST, ref_api._precision)
    body = {k: v for k, v in _BASE.items() if k not in drop}
    body.update(over)
    for raw in _spellings(body):
        _check(ref_api, reader, raw)


@pytest.fixture(scope="module")
def shared_reader(ref_api):
    return _fast.OrderReader(m.ORDER_REQUEST, ref_api._precision)


_NEAR = st.sampled_from([ACCOUNT, ACCOUNT[:-1], ACCOUNT + "1", "a", "ab", "b", "EUR_USD", "EUR_USE", "EUR_US", "USD_JPY",
                         "c-1", "c-2", "c-10", "a b", "", "buy", "sel", "sell", "selll", "market", "marke", "GTC", "GT"])


@settings(max_examples=400, deadline=None)
@given(over=st.dictionaries(st.sampled_from(["account_id", "instrument", "side", "type", "time_in_force", "client_order_id"]),
                            _NEAR, max_size=4))
def test_one_reader_over_many_bodies_equals_the_general_path(ref_api, shared_reader, over):
    """One reader for every example, as the app keeps one: a value taken from
    the last body (or an enum member) must not stand in for a different one."""
    body = dict(_BASE)
    body.update(over)
    for raw in _spellings(body):
        fast = _check(ref_api, shared_reader, raw)
        if fast is not None:
            for name in ("account_id", "instrument", "side", "type", "time_in_force", "client_order_id"):
                assert getattr(fast, name) == body.get(name, "market" if name == "type" else None), (name, raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=120) | st.builds(lambda b, i, x: b[:i] + x + b[i:], st.just(orjson.dumps(_BASE)),
                                               st.integers(0, 80), st.binary(min_size=1, max_size=3)))
def test_reader_on_arbitrary_bytes(ref_api, raw):
    _check(ref_api, _fast.OrderReader(m.ORDER_REQUEST, ref_api._precision), raw)


async def test_account_scope_and_instrument_checks_keep_their_order(authed):
    """The reader takes only known instruments; the token's scope is still checked first."""
    authed.token = TOKEN_A
    own, other = authed.accounts[0], authed.accounts[1]
    cases = [
        (own, "EUR_USD", 201, None),
        (own, "XXX_YYY", 400, "UNKNOWN_INSTRUMENT"),
        (other, "EUR_USD", 403, "FORBIDDEN"),
        (other, "XXX_YYY", 403, "FORBIDDEN"),
    ]
    for account, instrument, status, code in cases:
        st_, out, _ = await authed.call("POST", "/api/v1/orders", json_body=authed.order(account_id=account, instrument=instrument))
        assert st_ == status, (account, instrument, out)
        if code is not None:
            assert out["error"]["code"] == code


class _View:
    def __init__(self, status="filled", price=None, average_fill_price=None, filled_units=100, side="buy"):
        self.status, self.price, self.average_fill_price, self.filled_units, self.side = status, price, average_fill_price, filled_units, side
        self.order_id = self.client_order_id = self.broker_order_id = self.account_id = self.instrument = "x"
        self.units, self.timings = 100, {}


def _metric_state(metrics):
    out = {}
    for key, child in metrics._children.items():
        if type(child) is tuple:
            out[key] = (child[0].value, list(child[1].counts), round(child[1].sum, 3))
        elif hasattr(child, "counts"):
            out[key] = (list(child.counts), round(child.sum, 3))
        else:
            out[key] = child.value
    return out


def test_compiled_submitted_counts_like_the_method(monkeypatch):
    import logging
    import time

    from fastexec.api.app import log
    from fastexec.metrics import Metrics

    # One still clock for both sides: the durations they observe must be the
    # same number, not two readings a few microseconds apart (their sums over
    # 32 calls differed in the last digits and failed the comparison).
    def still_clock():
        return 2e7

    monkeypatch.setattr(time, "perf_counter", still_clock)
    monkeypatch.setattr(_fast, "perf_counter", still_clock)

    a, b = Metrics(), Metrics()
    ref_a, ref_b = Api(None, instruments=load_instruments(), metrics=a), Api(None, instruments=load_instruments(), metrics=b)
    fast = _fast.Submitted(ref_b._submitted, log, b)
    calls = [
        (_View(), OrderSpec("a", "EUR_USD", "buy", 100, "market")),
        (_View(), OrderSpec("a", "EUR_USD", "buy", 100, "market")),
        (_View(status="rejected", filled_units=0), OrderSpec("a", "EUR_USD", "sell", 100, "market")),
        (_View(status="rejected", filled_units=0), OrderSpec("a", "EUR_USD", "sell", 100, "market")),
        (_View(price=1_100_000_000, average_fill_price=1_100_010_000), OrderSpec("a", "EUR_USD", "buy", 100, "limit")),
        (_View(price=1_100_000_000, average_fill_price=1_100_010_000), OrderSpec("a", "EUR_USD", "buy", 100, "limit")),
        (_View(), OrderSpec("a", "USD_JPY", "buy", 100, m.ORDER_TYPES[0])),
    ]
    from fastexec.engine.types import OrderType

    calls.append((_View(), OrderSpec("a", "EUR_USD", "buy", 100, OrderType.MARKET)))
    calls.append((_View(), OrderSpec("a", "EUR_USD", "buy", 100, OrderType.MARKET)))
    old = log.level
    for level in (logging.INFO, logging.DEBUG):
        log.setLevel(level)
        try:
            for view, spec in calls * 2:
                t0 = time.perf_counter() - 1e7  # every duration in the +Inf bucket, both ways
                ref_a._submitted(view, spec, t0)
                fast(view, spec, t0)
        finally:
            log.setLevel(old)
    assert _metric_state(a) == _metric_state(b)
    assert any(type(c) is tuple and c[0].value == 8 for c in b._children.values())
