"""Bearer tokens scoped to accounts (FASTEXEC_API_TOKENS)."""
from __future__ import annotations

import logging

from .conftest import TOKEN_A, TOKEN_ALL


async def test_no_tokens_configured_means_open_on_loopback(api):
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order())
    assert st == 201


async def test_missing_and_wrong_tokens_are_401(authed):
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer"}):
        for method, path, body in [
            ("POST", "/api/v1/orders", authed.order()),
            ("GET", "/api/v1/orders", None),
            ("GET", f"/api/v1/positions?account_id={authed.accounts[0]}", None),
            ("GET", f"/api/v1/risk/{authed.accounts[0]}/metrics", None),
            ("POST", f"/api/v1/risk/{authed.accounts[0]}/kill-switch?reason=x", None),
            ("GET", "/api/v1/performance/metrics", None),
        ]:
            st, out, resp = await authed.call(method, path, json_body=body, headers=headers)
            assert st == 401, (headers, path, out)
            assert out["error"]["code"] == "UNAUTHORIZED"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert authed.engine.list_orders(account_id=authed.accounts[0]) == []
    assert authed.engine.account(authed.accounts[0]).kill_switch_active is False


async def test_health_docs_and_spec_need_no_token(authed):
    for path in ("/health", "/health/detailed", "/openapi.json"):
        resp = await authed.client.get(path)
        assert resp.status == 200, path
    resp = await authed.client.get("/docs")
    assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]


async def test_token_scoped_to_one_account(authed):
    a, b = authed.accounts
    authed.token = TOKEN_A
    st, out, _ = await authed.call("POST", "/api/v1/orders", json_body=authed.order(account_id=a))
    assert st == 201, out
    st, denied, _ = await authed.call("POST", "/api/v1/orders", json_body=authed.order(account_id=b))
    assert st == 403 and denied["error"]["code"] == "FORBIDDEN"
    st, _, _ = await authed.call("GET", f"/api/v1/positions?account_id={b}")
    assert st == 403
    st, _, _ = await authed.call("POST", f"/api/v1/risk/{b}/kill-switch?reason=x")
    assert st == 403
    assert authed.engine.account(b).kill_switch_active is False
    # without account_id the token's single account is used
    st, page, _ = await authed.call("GET", "/api/v1/positions")
    assert st == 200 and page["account_id"] == a
    st, accts, _ = await authed.call("GET", "/api/v1/accounts")
    assert [x["account_id"] for x in accts["accounts"]] == [a]

    # an order of account b, placed with the all-accounts token, is invisible to TOKEN_A
    authed.token = TOKEN_ALL
    st, other, _ = await authed.call("POST", "/api/v1/orders", json_body=authed.order(account_id=b, type="limit", price="0.5"))
    assert st == 201
    authed.token = TOKEN_A
    for method, path in [
        ("GET", f"/api/v1/orders/{other['order_id']}"),
        ("PUT", f"/api/v1/orders/{other['order_id']}/cancel"),
    ]:
        st, out, _ = await authed.call(method, path)
        assert st == 404, (path, out)
    assert authed.engine.get_order(other["order_id"]).status == other["status"]
    st, page, _ = await authed.call("GET", "/api/v1/orders")
    assert st == 200 and all(o["account_id"] == a for o in page["orders"])


async def test_wildcard_token_reaches_every_account(authed):
    authed.token = TOKEN_ALL
    for acct in authed.accounts:
        st, out, _ = await authed.call("POST", "/api/v1/orders", json_body=authed.order(account_id=acct))
        assert st == 201, out
        st, out, _ = await authed.call("GET", f"/api/v1/risk/{acct}/metrics")
        assert st == 200
    st, out, _ = await authed.call("POST", f"/api/v1/risk/{authed.accounts[1]}/kill-switch?reason=test")
    assert st == 200 and out["actor"].startswith("token:") and TOKEN_ALL not in out["actor"]


async def test_tokens_never_reach_the_logs(authed, caplog):
    caplog.set_level(logging.DEBUG)
    authed.token = TOKEN_A
    await authed.call("POST", "/api/v1/orders", json_body=authed.order())
    await authed.call("POST", "/api/v1/orders", json_body=authed.order(account_id=authed.accounts[1]))
    await authed.call("GET", "/api/v1/orders", headers={"Authorization": "Bearer not-a-real-token-xyz"})
    await authed.call("POST", f"/api/v1/risk/{authed.accounts[0]}/kill-switch?reason=t")
    text = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    assert caplog.records, "expected some log records"
    for secret in (TOKEN_A, TOKEN_ALL, "not-a-real-token-xyz"):
        assert secret not in text


async def test_global_kill_switch_needs_an_all_accounts_token(authed):
    authed.token = TOKEN_A
    st, out, _ = await authed.call("POST", "/api/v1/risk/kill-switch?reason=x")
    assert st == 403, out
    assert all(not authed.engine.account(a).kill_switch_active for a in authed.accounts)
    authed.token = TOKEN_ALL
    st, out, _ = await authed.call("POST", "/api/v1/risk/kill-switch?reason=x")
    assert st == 200 and out["active"] is True
    authed.token = TOKEN_A
    st, out, _ = await authed.call("DELETE", "/api/v1/risk/kill-switch")
    assert st == 403
