"""Prometheus exposition on its own aiohttp site, with the seed's names and labels."""
from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from fastexec.metrics import KILL_SWITCH_REASONS, Metrics, kill_switch_reason, label_token, metrics_app


async def _scrape(api) -> dict:
    client = TestClient(TestServer(metrics_app(api.metrics), host="127.0.0.1"))
    await client.start_server()
    try:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    finally:
        await client.close()
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


async def test_seed_metric_names_and_labels(api):
    acct = api.accounts[0]
    assert (await api.call("POST", "/api/v1/orders", json_body=api.order(units=2000)))[0] == 201
    assert (await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price="0.5")))[0] == 201
    assert (await api.call("POST", "/api/v1/orders", json_body=api.order(units=5_000_000)))[0] == 422
    assert (await api.call("POST", f"/api/v1/risk/{api.accounts[1]}/kill-switch?reason=Emergency Stop"))[0] == 200

    m = await _scrape(api)
    count = [s for s in m["execution_order_duration_seconds_count"]]
    assert {tuple(sorted(s.labels)) for s in count} == {("instrument", "order_type", "result")}
    totals = {(s.labels["order_type"], s.labels["status"], s.labels["result"]): s.value for s in m["execution_orders_total"]}
    assert totals[("market", "filled", "success")] == 1
    assert any(k[0] == "limit" and k[2] == "success" for k in totals)
    assert any(k[2] == "denied" for k in totals)
    assert set(m["execution_orders_total"][0].labels) == {"order_type", "instrument", "status", "result"}

    active = {s.labels["account_id"]: s.value for s in m["execution_active_orders"]}
    assert active[acct] == 1
    positions = {(s.labels["account_id"], s.labels["instrument"]): s.value for s in m["execution_open_positions"]}
    assert positions[(acct, "EUR_USD")] == 2000
    mem = {s.labels["component"]: s.value for s in m["execution_memory_usage_bytes"]}
    assert mem["process"] > 10_000_000
    assert "process" in {s.labels["component"] for s in m["execution_cpu_usage_percent"]}
    viol = m["execution_risk_violations_total"]
    assert viol and set(viol[0].labels) == {"account_id", "violation_type"}
    ks = {(s.labels["account_id"], s.labels["reason"]): s.value for s in m["execution_kill_switch_activations_total"]}
    assert ks[(api.accounts[1], "other")] == 1
    assert {s.labels["account_id"]: s.value for s in m["execution_kill_switch_active"]}[api.accounts[1]] == 1
    assert "execution_slippage_basis_points_count" in m or "execution_slippage_basis_points_bucket" not in m


def test_label_tokens_are_bounded():
    assert label_token("Emergency Stop!") == "emergency_stop"
    assert label_token("") == "unspecified"
    assert label_token("x" * 100) == "x" * 32
    assert label_token('a"}\n{b') == "a_b"


async def test_kill_switch_made_by_the_engine_itself_is_counted_once(api):
    """Not every activation comes over HTTP (daily-loss breach, an embedding
    service): the scrape counts switches it finds on, once per activation."""
    acct = api.accounts[0]
    await api.engine.activate_kill_switch(acct, reason="daily_loss", actor="risk-monitor")
    for _ in range(2):
        m = await _scrape(api)
        ks = {(s.labels["account_id"], s.labels["reason"]): s.value for s in m["execution_kill_switch_activations_total"] if s.value}
        assert ks == {(acct, "daily_loss"): 1}
    await api.engine.release_kill_switch(acct, actor="desk")
    await api.engine.activate_kill_switch(acct, reason="daily_loss", actor="risk-monitor")
    m = await _scrape(api)
    ks = {(s.labels["account_id"], s.labels["reason"]): s.value for s in m["execution_kill_switch_activations_total"] if s.value}
    assert ks == {(acct, "daily_loss"): 2}


def _ks_series(m) -> dict:
    return {(s.labels["account_id"], s.labels["reason"]): s.value for s in m["execution_kill_switch_activations_total"]}


async def test_alerted_counters_exist_at_zero_before_the_first_event(api):
    """Scenario: a fresh engine is scraped before anything happened. The
    activation and broker-error series an alert watches with increase() must
    already be there at 0, or their first event (born at 1) is never seen."""
    m = await _scrape(api)
    ks = _ks_series(m)
    assert ks == {(a, r): 0.0 for a in ["all", *api.accounts] for r in KILL_SWITCH_REASONS}
    errors = {s.labels["operation"]: s.value for s in m["execution_broker_errors_total"]}
    assert errors == {"submit": 0.0, "stream": 0.0}
    acct = api.accounts[0]
    assert (await api.call("POST", f"/api/v1/risk/{acct}/kill-switch?reason=manual"))[0] == 200
    assert _ks_series(await _scrape(api))[(acct, "manual")] == 1


async def test_kill_switch_reason_label_is_a_fixed_vocabulary(api):
    """Scenario: clients pull the switch with free-text reasons (names, order
    ids, random run numbers); the reason label stays within five values."""
    acct = api.accounts[0]
    reasons = ["strategy alpha run 28521", "emergency stop by bob order-1234", "Risk limit breached",
               "daily loss limit", "", "manual", "x" * 128]
    for reason in reasons:
        q = f"?reason={reason}" if reason else ""
        st, out, _ = await api.call("POST", f"/api/v1/risk/{acct}/kill-switch{q}")
        assert st == 200, out
        assert (await api.call("DELETE", f"/api/v1/risk/{acct}/kill-switch"))[0] == 200
    m = await _scrape(api)
    ks = _ks_series(m)
    assert {r for (_, r) in ks} == set(KILL_SWITCH_REASONS)
    assert len(ks) == len(KILL_SWITCH_REASONS) * (1 + len(api.accounts))
    mine = {r: v for (a, r), v in ks.items() if a == acct}
    assert mine == {"manual": 2, "risk": 1, "daily_loss": 1, "restored": 0, "other": 3}


def test_kill_switch_reason_mapping():
    assert kill_switch_reason(None) == "manual"
    assert kill_switch_reason("Manual") == "manual"
    assert kill_switch_reason("risk") == "risk"
    assert kill_switch_reason("risk-limit exceeded") == "risk"
    assert kill_switch_reason("Daily loss limit hit") == "daily_loss"
    assert kill_switch_reason("restored from journal") == "restored"
    assert kill_switch_reason("order 12345 by bob") == "other"
    assert all(kill_switch_reason(t) in KILL_SWITCH_REASONS for t in ("a\"}{b", "\n", "é" * 40))


async def test_switch_already_on_at_attach_counts_once_as_restored(api):
    """Scenario: a restart restores an active switch from the journal before
    metrics attach; the first scrape counts it once, as reason="restored"."""
    acct = api.accounts[1]
    await api.engine.activate_kill_switch(acct, reason="order 77 by carol", actor="journal")
    metrics = Metrics()
    metrics.attach_engine(api.engine)
    for _ in range(2):
        ks = {(s.labels["account_id"], s.labels["reason"]): s.value
              for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples
              if s.name == "execution_kill_switch_activations_total" and s.value}
        assert ks == {(acct, "restored"): 1}


async def test_malformed_orders_are_not_execution_failures(api):
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit"))  # no price
    assert st == 400, out
    m = await _scrape(api)
    results = {s.labels["result"] for s in m["execution_orders_total"]}
    assert results == {"invalid"}


async def test_promtool_lints_the_exposition(api):
    import asyncio
    import shutil

    assert (await api.call("POST", "/api/v1/orders", json_body=api.order(type="limit", price="1.5")))[0] == 201
    text = api.metrics.render()
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus"
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(text), timeout=60)
    assert proc.returncode == 0, out.decode()


def test_light_histogram_matches_prometheus_client():
    """Our lock-free histogram exports exactly what prometheus_client's would."""
    from prometheus_client import CollectorRegistry, Histogram

    from fastexec.metrics import DURATION_BUCKETS, LightHistogram, _LightCollector

    values = [0.0, 0.0001, 0.00010001, 0.00025, 0.003, 0.1, 0.2, 0.20000001, 4.9, 5.0, 7.5, 1e9]
    ref_reg, ours_reg = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("h_seconds", "doc", ["a"], buckets=DURATION_BUCKETS, registry=ref_reg)
    ours = LightHistogram("h_seconds", "doc", ["a"], DURATION_BUCKETS)
    ours_reg.register(_LightCollector([ours]))
    for v in values:
        ref.labels("x").observe(v)
        ours.labels("x").observe(v)

    def samples(reg):
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for fam in reg.collect()
            for s in fam.samples
            if not s.name.endswith("_created")
        )

    assert samples(ours_reg) == samples(ref_reg)
