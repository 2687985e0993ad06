"""Order endpoints over real HTTP against the real engine (simulated venue)."""
from __future__ import annotations

from .conftest import assert_schema


async def test_submit_market_order_returns_201_with_engine_view(api):
    body = api.order(units=10000, stop_loss={"price": 1.0, "guaranteed": False}, take_profit={"price": "1.5"})
    st, out, resp = await api.call("POST", "/api/v1/orders", json_body=body)
    assert st == 201, out
    assert_schema("Order", out)
    assert out["order_id"] and out["status"] == "filled"
    assert out["units"] == "10000" and out["filled_units"] == "10000"
    assert out["average_fill_price"] is not None
    assert out["stop_loss"]["price"] == "1.00000" and out["take_profit"]["price"] == "1.50000"
    assert "total_ns" in out["timings"] or out["timings"]
    assert resp.headers["X-Request-ID"] == out["request_id"]
    # the engine has exactly this order
    assert api.engine.get_order(out["order_id"]).status == "filled"


async def test_price_as_number_and_as_string_are_the_same_exact_price(api):
    st1, a, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price=0.5))
    st2, b, _ = await api.call("POST", "/api/v1/orders", data=_raw(api.order(type="limit"), "price", "0.50000"))
    st3, c, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price="0.5"))
    assert (st1, st2, st3) == (201, 201, 201), (a, b, c)
    assert a["price"] == b["price"] == c["price"] == "0.50000"
    assert a["status"] == b["status"] == c["status"]


def _raw(body: dict, field: str, literal: str) -> str:
    import json

    body = dict(body, **{field: "__RAW__"})
    return json.dumps(body).replace('"__RAW__"', literal)


async def test_client_request_id_follows_the_order(api):
    st, out, resp = await api.call("POST", "/api/v1/orders", json_body=api.order(), headers={"X-Request-ID": "strategy-7.req-42"})
    assert st == 201
    assert resp.headers["X-Request-ID"] == "strategy-7.req-42"
    assert out["request_id"] == "strategy-7.req-42"
    assert api.engine.get_order(out["order_id"]).request_id == "strategy-7.req-42"


async def test_unsafe_request_id_is_replaced(api):
    st, out, resp = await api.call("POST", "/api/v1/orders", json_body=api.order(), headers={"X-Request-ID": "bad id\twith tab"})
    assert st == 201
    assert resp.headers["X-Request-ID"] != "bad id\twith tab"
    assert out["request_id"] == resp.headers["X-Request-ID"]


async def test_limit_order_get_modify_cancel(api):
    st, created, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price="0.50000", units=2000))
    assert st == 201, created
    oid = created["order_id"]
    assert created["status"] not in ("filled", "rejected", "cancelled")

    st, got, _ = await api.call("GET", f"/api/v1/orders/{oid}")
    assert st == 200 and got["order_id"] == oid
    assert_schema("Order", got)

    st, by_client, _ = await api.call("GET", f"/api/v1/orders/{created['client_order_id']}")
    assert st == 200 and by_client["order_id"] == oid

    st, mod, _ = await api.call("PUT", f"/api/v1/orders/{oid}/modify", json_body={"price": 0.501, "units": 3000})
    assert st == 200, mod
    assert mod["order_id"] == oid and mod["price"] == "0.50100" and mod["units"] == "3000"

    st, out, _ = await api.call("PUT", f"/api/v1/orders/{oid}/modify", json_body={"price": "0.5012345"})
    assert st == 400 and out["error"]["code"] == "PRECISION_EXCEEDED"
    assert api.engine.get_order(oid).price == 501_000_000  # unchanged by the refused modify

    st, cancelled, _ = await api.call("PUT", f"/api/v1/orders/{oid}/cancel")
    assert st == 200 and cancelled["status"] == "cancelled"

    st, out, _ = await api.call("PUT", f"/api/v1/orders/{oid}/cancel")
    assert st == 409, out


async def test_cancel_of_filled_order_is_409(api):
    st, created, _ = await api.call("POST", "/api/v1/orders", json_body=api.order())
    assert created["status"] == "filled"
    st, out, _ = await api.call("PUT", f"/api/v1/orders/{created['order_id']}/cancel")
    assert st == 409
    assert out["error"]["code"]


async def test_unknown_order_is_404_everywhere(api):
    for method, path, body in [
        ("GET", "/api/v1/orders/no-such-order", None),
        ("PUT", "/api/v1/orders/no-such-order/cancel", None),
        ("PUT", "/api/v1/orders/no-such-order/modify", {"units": 5}),
    ]:
        st, out, _ = await api.call(method, path, json_body=body)
        assert st == 404, (path, out)


async def test_list_orders_paginates_with_cursor(api):
    ids = []
    for i in range(7):
        side = "buy" if i % 2 == 0 else "sell"
        st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(side=side, units=100 + i))
        assert st == 201, out
        ids.append(out["order_id"])
    seen = []
    cursor = None
    pages = 0
    while True:
        q = f"/api/v1/orders?account_id={api.accounts[0]}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        st, page, _ = await api.call("GET", q)
        assert st == 200, page
        assert_schema("OrderList", page)
        assert len(page["orders"]) <= 3
        seen += [o["order_id"] for o in page["orders"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert pages == 3


async def test_list_orders_filters(api):
    await api.call("POST", "/api/v1/orders", json_body=api.order())
    await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price="0.5"))
    st, page, _ = await api.call("GET", f"/api/v1/orders?account_id={api.accounts[0]}&status=filled")
    assert st == 200 and page["orders"] and all(o["status"] == "filled" for o in page["orders"])
    st, page, _ = await api.call("GET", f"/api/v1/orders?account_id={api.accounts[0]}&instrument=GBP_USD")
    assert st == 200 and page["orders"] == []
    st, page, _ = await api.call("GET", "/api/v1/orders?account_id=no-such-account")
    assert st == 404


async def test_every_order_type_reaches_the_engine(api):
    # one instrument per working order: the gateway caps working orders per instrument
    cases = [
        dict(type="market", instrument="EUR_USD"),
        dict(type="limit", price="0.5", instrument="EUR_USD"),
        dict(type="stop", price="5.0", instrument="GBP_USD"),
        dict(type="market_if_touched", price="0.5", instrument="AUD_USD"),
        dict(type="stop_limit", price="5.1", stop_price="5.0", instrument="NZD_USD"),
        dict(type="trailing_stop", trailing_distance="0.01", instrument="EUR_GBP"),
        dict(type="fok", instrument="EUR_USD"),
        dict(type="ioc", instrument="EUR_USD"),
        dict(type="limit", price="0.5", time_in_force="GTD", gtd_time="2099-01-01T00:00:00Z", instrument="USD_CHF"),
    ]
    for extra in cases:
        st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(**extra))
        assert st == 201, (extra, out)
        assert out["type"] == extra["type"]
        assert_schema("Order", out)
