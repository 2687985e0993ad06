"""Position endpoints: list (paginated), get, close."""
from __future__ import annotations

from .conftest import assert_schema


async def test_positions_follow_fills_and_close(api):
    acct = api.accounts[0]
    st, _, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(units=3000))
    assert st == 201
    st, _, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(instrument="GBP_USD", units=2000, side="sell"))
    assert st == 201

    st, page, _ = await api.call("GET", f"/api/v1/positions?account_id={acct}")
    assert st == 200, page
    assert_schema("PositionList", page)
    by = {p["instrument"]: p for p in page["positions"]}
    assert by["EUR_USD"]["units"] == "3000" and by["EUR_USD"]["side"] == "long"
    assert by["GBP_USD"]["units"] == "-2000" and by["GBP_USD"]["side"] == "short"

    st, one, _ = await api.call("GET", f"/api/v1/positions/{acct}/EUR_USD")
    assert st == 200 and one["units"] == "3000"
    assert_schema("Position", one)

    st, closed, _ = await api.call(
        "POST", "/api/v1/positions/close", json_body={"instrument": "EUR_USD", "units": 1000, "reason": "take_profit", "account_id": acct}
    )
    assert st == 200, closed
    assert_schema("Position", closed)
    assert closed["units"] == "2000"

    st, closed, _ = await api.call("POST", "/api/v1/positions/close", json_body={"instrument": "EUR_USD", "account_id": acct})
    assert st == 200 and closed["units"] == "0"
    assert api.engine.position(acct, "EUR_USD").units == 0


async def test_positions_paginate(api):
    acct = api.accounts[0]
    for inst in ("EUR_USD", "GBP_USD", "USD_JPY"):
        st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(instrument=inst, units=100))
        assert st == 201, out
    st, p1, _ = await api.call("GET", f"/api/v1/positions?account_id={acct}&limit=2")
    assert st == 200 and len(p1["positions"]) == 2 and p1["next_cursor"]
    st, p2, _ = await api.call("GET", f"/api/v1/positions?account_id={acct}&limit=2&cursor={p1['next_cursor']}")
    assert st == 200 and p2["next_cursor"] is None
    names = [p["instrument"] for p in p1["positions"] + p2["positions"]]
    assert len(names) == len(set(names))
    assert {"EUR_USD", "GBP_USD", "USD_JPY"} <= set(names)


async def test_positions_need_an_account_when_ambiguous(api):
    st, out, _ = await api.call("GET", "/api/v1/positions")
    assert st == 400 and out["error"]["field"] == "account_id"


async def test_position_errors(api):
    acct = api.accounts[0]
    st, out, _ = await api.call("GET", "/api/v1/positions/no-such-account/EUR_USD")
    assert st == 404
    st, out, _ = await api.call("GET", f"/api/v1/positions/{acct}/ABC_XYZ")
    assert st == 400 and out["error"]["code"] == "UNKNOWN_INSTRUMENT"
    st, out, _ = await api.call("POST", "/api/v1/positions/close", json_body={"instrument": "ABC_XYZ", "account_id": acct})
    assert st == 400 and out["error"]["code"] == "UNKNOWN_INSTRUMENT"
    st, out, _ = await api.call("POST", "/api/v1/positions/close", json_body={"instrument": "EUR_USD", "units": 0, "account_id": acct})
    assert st == 400 and out["error"]["field"] == "units"
    st, out, _ = await api.call("POST", "/api/v1/positions/close", json_body={"units": 10, "account_id": acct})
    assert st == 400 and out["error"]["code"] == "MISSING_FIELD"
