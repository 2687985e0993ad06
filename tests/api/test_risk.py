"""Risk endpoints: validate, kill switch, metrics; denials on submit."""
from __future__ import annotations

from .conftest import assert_schema


async def test_validate_allows_and_denies_without_sending(api):
    st, ok, _ = await api.call("POST", "/api/v1/risk/validate", json_body=api.order(units=1000))
    assert st == 200, ok
    assert_schema("RiskDecision", ok)
    assert ok["allowed"] is True

    st, no, _ = await api.call("POST", "/api/v1/risk/validate", json_body=api.order(units=5_000_000))
    assert st == 200, no
    assert no["allowed"] is False and no["code"] not in ("OK", "") and no["detail"]
    assert api.engine.list_orders(account_id=api.accounts[0]) == []


async def test_risk_denial_on_submit_is_422_with_gateway_code(api):
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(units=5_000_000))
    assert st == 422, out
    code = out["error"]["code"]
    assert code not in ("VALIDATION_ERROR", "BAD_REQUEST")
    # the same code the gateway gives for a dry run
    st, decision, _ = await api.call("POST", "/api/v1/risk/validate", json_body=api.order(units=5_000_000))
    assert decision["code"] == code
    text = api.metrics.render().decode()
    assert f'execution_risk_violations_total{{account_id="{api.accounts[0]}",violation_type="{code.lower()}"}} 1.0' in text


async def test_kill_switch_blocks_orders_until_released(api):
    acct = api.accounts[0]
    st, ks, _ = await api.call("POST", f"/api/v1/risk/{acct}/kill-switch?reason=emergency_stop")
    assert st == 200, ks
    assert_schema("KillSwitch", ks)
    assert ks["active"] is True and ks["reason"] == "emergency_stop"

    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order())
    assert st == 423 and out["error"]["code"] == "KILL_SWITCH_ACTIVE"

    st, rm, _ = await api.call("GET", f"/api/v1/risk/{acct}/metrics")
    assert st == 200 and rm["trading_state"] == "halted"

    # other accounts keep trading
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(account_id=api.accounts[1]))
    assert st == 201, out

    st, ks, _ = await api.call("DELETE", f"/api/v1/risk/{acct}/kill-switch")
    assert st == 200 and ks["active"] is False
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order())
    assert st == 201, out

    text = api.metrics.render().decode()
    assert f'execution_kill_switch_activations_total{{account_id="{acct}",reason="other"}} 1.0' in text


async def test_kill_switch_cancels_working_orders(api):
    acct = api.accounts[0]
    st, working, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price="0.5"))
    assert st == 201
    st, ks, _ = await api.call("POST", f"/api/v1/risk/{acct}/kill-switch?reason=desk&flatten=false")
    assert st == 200
    assert working["order_id"] in ks["cancelled_orders"]
    st, got, _ = await api.call("GET", f"/api/v1/orders/{working['order_id']}")
    assert got["status"] == "cancelled"


async def test_kill_switch_unknown_account(api):
    st, out, _ = await api.call("POST", "/api/v1/risk/no-such-account/kill-switch?reason=x")
    assert st == 404
    st, out, _ = await api.call("GET", "/api/v1/risk/no-such-account/metrics")
    assert st == 404


async def test_risk_metrics_and_performance(api):
    await api.call("POST", "/api/v1/orders", json_body=api.order())
    st, rm, _ = await api.call("GET", f"/api/v1/risk/{api.accounts[0]}/metrics")
    assert st == 200
    assert_schema("RiskMetrics", rm)
    st, perf, _ = await api.call("GET", "/api/v1/performance/metrics")
    assert st == 200
    assert_schema("Performance", perf)
    assert perf["api"]["latency"]["POST /api/v1/orders"]["count"] == 1


async def test_accounts_and_health(api):
    st, accts, _ = await api.call("GET", "/api/v1/accounts")
    assert st == 200
    assert_schema("AccountList", accts)
    assert [a["account_id"] for a in accts["accounts"]] == api.accounts
    st, h, _ = await api.call("GET", "/health")
    assert st == 200 and h["status"] == "ok"
    assert_schema("Health", h)
    st, hd, _ = await api.call("GET", "/health/detailed")
    assert st == 200
    assert_schema("HealthDetailed", hd)
    assert hd["components"]["accounts"]["count"] == 2


async def test_global_kill_switch_halts_every_account(api):
    st, ks, _ = await api.call("POST", "/api/v1/risk/kill-switch?reason=market_halt")
    assert st == 200, ks
    assert_schema("KillSwitch", ks)
    assert ks["account_id"] is None and ks["active"] is True
    for acct in api.accounts:
        st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(account_id=acct))
        assert st == 423, out
    st, ks, _ = await api.call("DELETE", "/api/v1/risk/kill-switch")
    assert st == 200 and ks["active"] is False
    st, out, _ = await api.call("DELETE", "/api/v1/risk/kill-switch")
    assert st == 409, out
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order())
    assert st == 201
    text = api.metrics.render().decode()
    assert 'execution_kill_switch_activations_total{account_id="all",reason="other"} 1.0' in text
