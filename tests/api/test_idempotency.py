"""Idempotency-Key on submit: a retried request returns the first result."""
from __future__ import annotations

import json

from .conftest import TOKEN_A, TOKEN_ALL


async def test_same_key_same_body_returns_first_order(api):
    body = json.dumps(api.order(units=1234))
    h = {"Idempotency-Key": "retry-me-1"}
    st1, a, r1 = await api.call("POST", "/api/v1/orders", data=body, headers=h)
    st2, b, r2 = await api.call("POST", "/api/v1/orders", data=body, headers=h)
    assert st1 == st2 == 201
    assert a == b
    assert len(api.engine.list_orders(account_id=api.accounts[0])) == 1
    # a new key places a new order
    st3, c, _ = await api.call("POST", "/api/v1/orders", data=body, headers={"Idempotency-Key": "retry-me-2"})
    assert st3 == 201 and c["order_id"] != a["order_id"]
    assert len(api.engine.list_orders(account_id=api.accounts[0])) == 2


async def test_same_key_different_body_is_422(api):
    h = {"Idempotency-Key": "k-1"}
    st, a, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(units=100), headers=h)
    assert st == 201
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(units=200), headers=h)
    assert st == 422 and out["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(api.engine.list_orders(account_id=api.accounts[0])) == 1


async def test_refusal_is_replayed_but_bad_input_is_not_stored(api):
    h = {"Idempotency-Key": "k-denied"}
    big = json.dumps(api.order(units=5_000_000))
    st1, a, _ = await api.call("POST", "/api/v1/orders", data=big, headers=h)
    st2, b, _ = await api.call("POST", "/api/v1/orders", data=big, headers=h)
    assert st1 == st2 == 422 and a == b

    h = {"Idempotency-Key": "k-fixed"}
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(side="up"), headers=h)
    assert st == 400
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(), headers=h)
    assert st == 201, out


async def test_invalid_key_is_400(api):
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(), headers={"Idempotency-Key": "x" * 300})
    assert st == 400 and out["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"
    assert api.engine.list_orders(account_id=api.accounts[0]) == []


async def test_keys_are_per_token(authed):
    body = json.dumps(authed.order())
    h = {"Idempotency-Key": "shared"}
    authed.token = TOKEN_A
    st1, a, _ = await authed.call("POST", "/api/v1/orders", data=body, headers=h)
    authed.token = TOKEN_ALL
    st2, b, _ = await authed.call("POST", "/api/v1/orders", data=body, headers=h)
    assert st1 == st2 == 201
    assert a["order_id"] != b["order_id"]


async def test_store_is_bounded(tmp_path):
    from .conftest import start_api, stop_api
    from fastexec.api.app import API_KEY

    api = await start_api(tmp_path)
    try:
        store = api.client.server.app[API_KEY].idempotency
        store.max_entries = 3
        for i in range(6):
            side = "buy" if i % 2 == 0 else "sell"
            st, _, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(side=side), headers={"Idempotency-Key": f"b-{i}"})
            assert st == 201
        assert len(store) == 3
    finally:
        await stop_api(api)
