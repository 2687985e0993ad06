"""The shortcuts of the REST hot path give exactly the answers of the general path.

``Object.parse_json`` may skip ``decode_body`` + ``Object.parse`` for a body
``Object.accepts`` takes (remembering accepted field values); the submit
endpoint inlines the general flow for a plain market order; routing has no
aiohttp middleware, so unmatched requests go to a catch-all resource. Each
test here pins one of those to the general behaviour.
"""
from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec.api import models as m
from fastexec.api.schemas import decode_body
from fastexec.errors import ValidationError

ACCOUNT = "101-001-0000001-001"


def _general(schema, raw: bytes):
    try:
        return ("ok", schema.parse(decode_body(raw)))
    except ValidationError as exc:
        return ("error", exc.to_dict())


def _fast(schema, raw: bytes):
    try:
        return ("ok", schema.parse_json(raw))
    except ValidationError as exc:
        return ("error", exc.to_dict())


def _same(schema, raw: bytes) -> None:
    fast, general = _fast(schema, raw), _general(schema, raw)
    assert fast == general, raw
    if fast[0] == "ok":
        # and the same types: an int that equals a float or a bool is not the same input
        assert [type(v) for v in fast[1].values()] == [type(v) for v in general[1].values()], raw


def _order(**over) -> bytes:
    body = {"account_id": ACCOUNT, "instrument": "EUR_USD", "units": 100, "side": "buy", "type": "market"}
    body.update(over)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize("schema", [m.ORDER_REQUEST, m.VALIDATE_REQUEST, m.MODIFY_REQUEST, m.CLOSE_REQUEST])
def test_remembered_values_do_not_admit_lookalikes(schema):
    """Once ``units: 1`` and a price string passed, ``true``, ``1.0`` and
    ``"1"`` (equal or hash-equal in Python) still go the general way."""
    good = [_order(units=1), _order(units=1, type="limit", price="1.1"), b'{"units": 1, "price": "1.1"}']
    lookalikes = [
        _order(units=True),
        b'{"account_id": "%s", "instrument": "EUR_USD", "units": 1.0, "side": "buy"}' % ACCOUNT.encode(),
        _order(units="1"),
        _order(units=1, type="limit", price=1.1),
        b'{"units": true}',
        b'{"units": 1.0, "price": 1.1}',
        b'{"units": 1, "price": true}',
        _order(side=1),
        _order(account_id=None, instrument=None),
        _order(extra="x"),
        _order(stop_loss={"price": 1.1}),
        b"[]",
        b"null",
        b"",
        b"{",
        b'{"units": 100000000000000000000000}',
    ]
    for raw in good + lookalikes + good + lookalikes:
        _same(schema, raw)


_KEYS = st.sampled_from(
    ["account_id", "instrument", "units", "side", "type", "price", "stop_price", "time_in_force", "client_order_id",
     "reason", "distance", "gtd_time", "stop_loss", "bogus"]
)
_VALUES = st.one_of(
    st.sampled_from([ACCOUNT, "EUR_USD", "eur_usd", "buy", "sell", "market", "limit", "GTC", "1.10", "1.100001", "0", "0.0",
                     "-1", "", " ", "abc", "x" * 70, "1e3", "2030-01-01T00:00:00Z"]),
    st.integers(min_value=-3, max_value=10**13),
    st.sampled_from([0, 1, 2, 10**12, 10**12 + 1]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.just({"price": "1.1"}),
    st.just([1]),
)


@settings(max_examples=400, deadline=None)
@given(bodies=st.lists(st.dictionaries(_KEYS, _VALUES, max_size=8), min_size=1, max_size=6))
@pytest.mark.parametrize("schema", [m.ORDER_REQUEST, m.MODIFY_REQUEST, m.CLOSE_REQUEST])
def test_parse_json_equals_the_general_path(schema, bodies):
    # several bodies in a row, so values remembered from one meet the next
    for body in bodies:
        _same(schema, orjson.dumps(body))


async def test_request_id_on_every_kind_of_answer(api):
    rid = {"X-Request-ID": "trace-fast-1"}
    for method, path, body in [
        ("POST", "/api/v1/orders", api.order()),  # the inlined submit
        ("POST", "/api/v1/orders", api.order(units=0)),  # its validation error
        ("GET", "/api/v1/orders/nope", None),  # an operation's error
        ("GET", "/health", None),
        ("GET", "/api/v1/no-such-thing", None),  # the catch-all: 404
        ("DELETE", "/api/v1/orders", None),  # the catch-all: 405
        ("POST", "/api/v1/orders", {"x": "y" * 70_000}),  # 413
    ]:
        st_, out, resp = await api.call(method, path, json_body=body, headers=rid)
        assert resp.headers["X-Request-ID"] == "trace-fast-1", (method, path, st_, out)
    st_, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(), headers=rid)
    assert st_ == 201 and out["request_id"] == "trace-fast-1"
    # a generated id when the client's is unusable
    for bad in ("", "has space", "x" * 129):
        st_, out, resp = await api.call("POST", "/api/v1/orders", json_body=api.order(), headers={"X-Request-ID": bad})
        assert st_ == 201 and resp.headers["X-Request-ID"] == out["request_id"] != bad


async def test_inlined_submit_and_general_path_answer_alike(api):
    """Idempotency-Key sends a submit through the general path: same answer shape."""
    st1, plain, r1 = await api.call("POST", "/api/v1/orders", json_body=api.order(client_order_id="alike-1"))
    st2, keyed, r2 = await api.call("POST", "/api/v1/orders", json_body=api.order(client_order_id="alike-2"),
                                    headers={"Idempotency-Key": "alike-key"})
    assert st1 == st2 == 201
    assert set(plain) == set(keyed)
    assert r1.headers["Content-Type"] == r2.headers["Content-Type"] == "application/json"
    for field in ("status", "account_id", "instrument", "side", "type", "units", "filled_units"):
        assert plain[field] == keyed[field], field
    # errors too: the same bad body both ways
    bad = api.order(units=-1)
    e1 = await api.call("POST", "/api/v1/orders", json_body=bad)
    e2 = await api.call("POST", "/api/v1/orders", json_body=bad, headers={"Idempotency-Key": "alike-key-2"})
    assert e1[:2] == e2[:2] and e1[0] == 400


async def test_a_query_string_on_submit_is_refused_and_places_nothing(api):
    listing = f"/api/v1/orders?account_id={api.accounts[0]}"
    _, before, _ = await api.call("GET", listing)
    st_, out, _ = await api.call("POST", "/api/v1/orders?dry_run=true", json_body=api.order())
    assert st_ == 400 and out["error"]["code"] == "UNKNOWN_PARAMETER"
    _, after, _ = await api.call("GET", listing)
    assert after["orders"] == before["orders"]


async def test_unmatched_requests_are_json_and_counted(api):
    resp = await api.client.request("HEAD", "/api/v1/orders")
    assert resp.status == 405 and resp.headers["Allow"] == "GET,POST"
    st_, out, resp = await api.call("PATCH", "/api/v1/orders/abc")
    assert st_ == 405 and resp.headers["Allow"] == "GET"
    assert out["error"] == {"code": "METHOD_NOT_ALLOWED", "message": "method PATCH not allowed on /api/v1/orders/abc; allowed: GET"}
    st_, out, _ = await api.call("GET", "/")
    assert st_ == 404 and out["error"] == {"code": "NOT_FOUND", "message": "no such endpoint: GET /"}
    st_, out, _ = await api.call("GET", "/health/")
    assert st_ == 404
    counts = {k: c.value for k, c in api.metrics.http_requests.children.items()}
    assert counts[("unmatched", "HEAD", "405")] == 1
    assert counts[("unmatched", "PATCH", "405")] == 1
    assert counts[("unmatched", "GET", "404")] == 2


async def test_spec_and_docs_are_counted_with_request_ids(api):
    for path in ("/openapi.json", "/docs"):
        resp = await api.client.get(path, headers={"X-Request-ID": "docs-1"})
        assert resp.status == 200 and resp.headers["X-Request-ID"] == "docs-1"
        await resp.read()
    spec = json.loads(await (await api.client.get("/openapi.json")).read())
    assert "/api/v1/orders" in spec["paths"]
    counts = {k: c.value for k, c in api.metrics.http_requests.children.items()}
    assert counts[("/openapi.json", "GET", "200")] == 2
    assert counts[("/docs", "GET", "200")] == 1
    counts_before = dict(counts)
    st_, _, _ = await api.call("POST", "/api/v1/orders", json_body=api.order())
    counts = {k: c.value for k, c in api.metrics.http_requests.children.items()}
    assert counts[("/api/v1/orders", "POST", "201")] == counts_before.get(("/api/v1/orders", "POST", "201"), 0) + 1


def test_lean_json_response_is_a_web_response():
    """``_respond`` skips ``web.Response.__init__`` only while the result has
    exactly the attributes a real one has; each response owns its state."""
    from aiohttp import web

    from fastexec.api import app as A

    for status in (200, 201):
        lean = A._respond(status, b'{"a":1}', "rid-9")
        real = web.Response(body=b'{"a":1}', status=status, headers={"Content-Type": "application/json", "X-Request-ID": "rid-9"})
        assert A._RESPONSE_TEMPLATES[status] is not None  # the shortcut is in use with this aiohttp
        assert type(lean) is type(real) and vars(lean).keys() == vars(real).keys()
        for key, value in vars(real).items():
            if key == "_headers":
                assert list(lean.headers.items()) == list(value.items())
            else:
                assert vars(lean)[key] == value, key
        other = A._respond(status, b"{}", "rid-10")
        assert other._state is not lean._state and other._headers is not lean._headers
        assert lean.headers["X-Request-ID"] == "rid-9" and other.headers["X-Request-ID"] == "rid-10"


def test_lean_json_response_falls_back_when_aiohttp_differs(monkeypatch):
    from fastexec.api import app as A

    monkeypatch.setitem(A._RESPONSE_TEMPLATES, 299, None)  # as if the check had failed
    resp = A._respond(299, b"{}", "rid-11")
    assert resp.status == 299 and resp.headers["X-Request-ID"] == "rid-11" and "_state" in vars(resp)


async def test_submit_response_head_is_unchanged(api):
    resp = await api.client.post("/api/v1/orders", data=json.dumps(api.order()), headers={"X-Request-ID": "head-1"})
    assert resp.status == 201
    names = [k.decode() for k, _ in resp.raw_headers]
    assert names == ["Content-Type", "X-Request-ID", "Content-Length", "Date", "Server"], names
    assert resp.headers["Content-Type"] == "application/json" and resp.headers["X-Request-ID"] == "head-1"
    body = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(body) and json.loads(body)["status"] == "filled"
