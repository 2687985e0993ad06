"""Bad input gets a 4xx with a stable code, never a 500, and changes nothing."""
from __future__ import annotations

import json

import pytest

BAD_ORDERS = [
    # (description, body override or raw body, status, code, field)
    ("missing units", {"units": None}, 400, "MISSING_FIELD", "units"),
    ("missing account", {"account_id": None}, 400, "MISSING_FIELD", "account_id"),
    ("units as float with fraction", {"units": 10.5}, 400, "PRECISION_EXCEEDED", "units"),
    ("units zero", {"units": 0}, 400, "INVALID_VALUE", "units"),
    ("units negative", {"units": -5}, 400, "INVALID_VALUE", "units"),
    ("units huge", {"units": 10**13}, 400, "OUT_OF_RANGE", "units"),
    ("units beyond 64 bits", {"units": 10**30}, 400, "OUT_OF_RANGE", "units"),
    ("units bool", {"units": True}, 400, "INVALID_TYPE", "units"),
    ("units text", {"units": "ten"}, 400, "INVALID_NUMBER", "units"),
    ("units null", {"units": "_null"}, 400, "INVALID_TYPE", "units"),
    ("side unknown", {"side": "hold"}, 400, "INVALID_VALUE", "side"),
    ("type unknown", {"type": "iceberg"}, 400, "INVALID_VALUE", "type"),
    ("unknown instrument", {"instrument": "ABC_XYZ"}, 400, "UNKNOWN_INSTRUMENT", "instrument"),
    ("malformed instrument", {"instrument": "eurusd"}, 400, "INVALID_VALUE", "instrument"),
    ("unknown field", {"stop_los": {"price": "1.0"}}, 400, "UNKNOWN_FIELD", "stop_los"),
    ("price excess precision (string)", {"type": "limit", "price": "1.123456"}, 400, "PRECISION_EXCEEDED", "price"),
    ("price excess precision (number)", {"type": "limit", "price": 1.123456}, 400, "PRECISION_EXCEEDED", "price"),
    ("price excess precision beyond float", {"type": "limit", "price": "_1.100000000000000001"}, 400, "PRECISION_EXCEEDED", "price"),
    ("price negative", {"type": "limit", "price": "-1.1"}, 400, "INVALID_NUMBER", "price"),
    ("price zero", {"type": "limit", "price": 0}, 400, "INVALID_VALUE", "price"),
    ("price with exponent text", {"type": "limit", "price": "1e3"}, 400, "INVALID_NUMBER", "price"),
    ("price huge", {"type": "limit", "price": 1e300}, 400, "OUT_OF_RANGE", "price"),
    ("price wrong type", {"type": "limit", "price": [1]}, 400, "INVALID_TYPE", "price"),
    ("stop loss both price and distance", {"stop_loss": {"price": "1.0", "distance": "0.01"}}, 400, "INVALID_VALUE", "stop_loss"),
    ("stop loss empty", {"stop_loss": {}}, 400, "MISSING_FIELD", "stop_loss"),
    ("stop loss excess precision", {"stop_loss": {"price": "1.000001"}}, 400, "PRECISION_EXCEEDED", "stop_loss.price"),
    ("take profit guaranteed", {"take_profit": {"price": "1.2", "guaranteed": True}}, 400, "UNKNOWN_FIELD", "take_profit.guaranteed"),
    ("gtd_time not a date", {"type": "limit", "price": "1.1", "time_in_force": "GTD", "gtd_time": "tomorrow"}, 400, "INVALID_VALUE", "gtd_time"),
    ("time in force unknown", {"time_in_force": "NOW"}, 400, "INVALID_VALUE", "time_in_force"),
    ("client order id with spaces", {"client_order_id": "my order"}, 400, "INVALID_VALUE", "client_order_id"),
    ("account id wrong type", {"account_id": 123}, 400, "INVALID_TYPE", "account_id"),
]


@pytest.mark.parametrize("desc,over,status,code,field", BAD_ORDERS, ids=[b[0] for b in BAD_ORDERS])
async def test_bad_order_is_refused_with_code_and_field(api, desc, over, status, code, field):
    # None removes a field; a string starting with "_" is spliced in as raw JSON
    # (a number literal that must not pass through a Python float on our side)
    body = api.order()
    raws = {}
    for k, v in over.items():
        if v is None:
            body.pop(k, None)
        elif isinstance(v, str) and v.startswith("_"):
            raws[k] = v[1:]
            body[k] = f"__RAW_{k}__"
        else:
            body[k] = v
    data = json.dumps(body)
    for k, text in raws.items():
        data = data.replace(f'"__RAW_{k}__"', text)
    st, out, _ = await api.call("POST", "/api/v1/orders", data=data)
    assert st == status, out
    assert out["error"]["code"] == code, out
    assert out["error"].get("field") == field, out
    assert out["error"]["message"]
    # nothing was created
    assert api.engine.list_orders(account_id=api.accounts[0]) == []


@pytest.mark.parametrize(
    "raw,code",
    [
        (b"", "INVALID_JSON"),
        (b"{", "INVALID_JSON"),
        (b"not json", "INVALID_JSON"),
        (b'{"units": NaN}', "INVALID_JSON"),
        (b'"a string"', "INVALID_TYPE"),
        (b"[1, 2]", "INVALID_TYPE"),
        (b"null", "INVALID_TYPE"),
        (b'{"account_id": "\\ud800"}', "INVALID_JSON"),
        (b"\xff\xfe", "INVALID_JSON"),
    ],
)
async def test_malformed_body(api, raw, code):
    st, out, _ = await api.call("POST", "/api/v1/orders", data=raw, headers={"Content-Type": "application/json"})
    assert st == 400
    assert out["error"]["code"] == code


async def test_oversized_body_is_413(api):
    st, out, _ = await api.call("POST", "/api/v1/orders", data=b"{" + b" " * 70_000 + b"}")
    assert st == 413
    assert out["error"]["code"] == "BODY_TOO_LARGE"


async def test_unknown_path_is_json_404(api):
    st, out, _ = await api.call("GET", "/api/v1/nothing-here")
    assert st == 404 and out["error"]["code"] == "NOT_FOUND"


async def test_wrong_method_is_json_405_with_allow(api):
    st, out, resp = await api.call("DELETE", "/api/v1/orders")
    assert st == 405 and out["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in resp.headers["Allow"] and "GET" in resp.headers["Allow"]


@pytest.mark.parametrize(
    "query,code,field",
    [
        ("limit=0", "INVALID_VALUE", "limit"),
        ("limit=abc", "INVALID_VALUE", "limit"),
        ("limit=100000", "INVALID_VALUE", "limit"),
        ("limit=1&limit=2", "INVALID_VALUE", "limit"),
        ("bogus=1", "UNKNOWN_PARAMETER", "bogus"),
        ("instrument=eur", "INVALID_VALUE", "instrument"),
        ("cursor=%20", "INVALID_VALUE", "cursor"),
        ("cursor=no-such-order", "INVALID_CURSOR", "cursor"),
        ("status=sleeping", "INVALID_VALUE", "status"),
    ],
)
async def test_bad_query_parameters(api, query, code, field):
    st, out, _ = await api.call("GET", f"/api/v1/orders?account_id={api.accounts[0]}&{query}")
    assert st == 400, out
    assert out["error"]["code"] == code
    assert out["error"]["field"] == field


async def test_modify_needs_a_field(api):
    st, created, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price="0.50000"))
    assert st == 201, created
    st, out, _ = await api.call("PUT", f"/api/v1/orders/{created['order_id']}/modify", json_body={})
    assert st == 400 and out["error"]["code"] == "MISSING_FIELD"


async def test_bodiless_endpoint_refuses_a_body(api):
    st, out, _ = await api.call("PUT", "/api/v1/orders/some-id/cancel", data=b'{"force": true}')
    assert st == 400 and out["error"]["code"] == "UNEXPECTED_BODY"


async def test_bad_path_parameter(api):
    st, out, _ = await api.call("GET", "/api/v1/positions/acct%20x/EUR_USD")
    assert st == 400 and out["error"]["field"] == "account_id"


async def test_bad_kill_switch_reason(api):
    st, out, _ = await api.call("POST", f"/api/v1/risk/{api.accounts[0]}/kill-switch?reason=%00bad")
    assert st == 400 and out["error"]["field"] == "reason"
    st, out, _ = await api.call("POST", f"/api/v1/risk/{api.accounts[0]}/kill-switch?flatten=maybe")
    assert st == 400 and out["error"]["field"] == "flatten"
    # the switch was not activated by the refused requests
    assert api.engine.account(api.accounts[0]).kill_switch_active is False


async def test_trailing_newline_does_not_slip_past_patterns(api):
    for over in ({"instrument": "EUR_USD\n"}, {"account_id": api.accounts[0] + "\n"}, {"type": "limit", "price": "1.5\n"},
                 {"units": "100\n"}, {"client_order_id": "abc\n"}):
        st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(**over))
        assert st == 400, (over, out)
    st, out, _ = await api.call("POST", f"/api/v1/risk/{api.accounts[0]}/kill-switch?reason=abc%0A")
    assert st == 400 and out["error"]["field"] == "reason"
    assert api.engine.list_orders(account_id=api.accounts[0]) == []
