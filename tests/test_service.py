"""`fastexec serve` as a user runs it: a real process on loopback ports,
engine + REST API + Prometheus, clean shutdown on SIGTERM/SIGINT."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-service-test-0123456789"


def _env(tmp_path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OANDA_", "FASTEXEC_"))}
    env.update({"FASTEXEC_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "info", "MAX_ORDERS_PER_SECOND": "10000"})
    env.update(extra)
    return env


class Serve:
    def __init__(self, proc: asyncio.subprocess.Process, info: dict, lines: list[dict]) -> None:
        self.proc = proc
        self.api = info["api"]
        self.metrics = info["metrics"]
        self.info = info
        self.lines = lines

    async def drain(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(json.loads(raw))  # every log line is one JSON object


async def start_serve(tmp_path, *args: str, **env: str) -> Serve:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastexec", "serve", "--port", "0", "--metrics-port", "0", *args,
        env=_env(tmp_path, **env), cwd=str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    lines: list[dict] = []
    assert proc.stderr is not None

    async def wait_listening() -> dict:
        async for raw in proc.stderr:
            rec = json.loads(raw)  # every log line is one JSON object
            lines.append(rec)
            if rec.get("msg") == "listening":
                return rec
        raise AssertionError(f"serve exited before listening: {lines}")

    info = await asyncio.wait_for(wait_listening(), timeout=60)
    return Serve(proc, info, lines)


async def stop_serve(s: Serve, sig: int = signal.SIGTERM) -> int:
    s.proc.send_signal(sig)
    await asyncio.wait_for(s.drain(), timeout=30)
    return await asyncio.wait_for(s.proc.wait(), timeout=30)


async def test_serve_end_to_end_and_clean_shutdown(tmp_path):
    s = await start_serve(tmp_path)
    try:
        assert s.api.startswith("http://127.0.0.1:") and s.info["auth"] == "none"
        assert s.info["journal"] == "fsync, direct"  # the default: durable, batches as direct writes
        async with aiohttp.ClientSession() as http:
            async with http.get(s.api + "/health") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.get(s.api + "/api/v1/accounts") as r:
                account = (await r.json())["accounts"][0]["account_id"]
            body = {"account_id": account, "instrument": "EUR_USD", "units": 10000, "side": "buy", "type": "market"}
            async with http.post(s.api + "/api/v1/orders", json=body, headers={"X-Request-ID": "svc-test-1"}) as r:
                assert r.status == 201
                order = await r.json()
            assert order["status"] == "filled" and order["request_id"] == "svc-test-1"
            async with http.get(s.metrics) as r:
                text = await r.text()
            assert r.status == 200
            assert 'execution_orders_total{instrument="EUR_USD",order_type="market",result="success",status="filled"} 1.0' in text
            assert f'execution_open_positions{{account_id="{account}",instrument="EUR_USD"}} 10000.0' in text
            async with http.get(s.api + "/docs") as r:
                assert r.status == 200
            async with http.get(s.api + "/openapi.json") as r:
                assert (await r.json())["openapi"].startswith("3.")
    finally:
        code = await stop_serve(s)
    assert code == 0
    msgs = [l["msg"] for l in s.lines]
    assert "stopped" in msgs
    assert all("ts" in l and "level" in l for l in s.lines)


async def test_sigint_also_stops_cleanly(tmp_path):
    s = await start_serve(tmp_path)
    assert await stop_serve(s, signal.SIGINT) == 0


async def test_tokens_from_environment_and_never_logged(tmp_path):
    s = await start_serve(tmp_path, FASTEXEC_API_TOKENS=f"{TOKEN}:*", LOG_LEVEL="debug")
    try:
        assert s.info["auth"] == "bearer"
        async with aiohttp.ClientSession() as http:
            async with http.get(s.api + "/api/v1/accounts") as r:
                assert r.status == 401
            async with http.get(s.api + "/api/v1/accounts", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200
    finally:
        assert await stop_serve(s) == 0
    assert TOKEN not in json.dumps(s.lines)


async def test_refuses_open_non_loopback_bind(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastexec", "serve", "--host", "0.0.0.0", "--port", "0",
        env=_env(tmp_path), cwd=str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert b"refusing to bind 0.0.0.0 without API tokens" in err


async def test_gc_policy_freezes_and_runs_full_collections(tmp_path):
    s = await start_serve(tmp_path, "--gc-freeze-interval", "0.1", "--gc-full-interval", "0.3")
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.get(s.api + "/health") as r:
                    assert r.status == 200
                await asyncio.sleep(0.05)
    finally:
        assert await stop_serve(s) == 0
    full = [l for l in s.lines if l["msg"] == "full garbage collection"]
    assert full and all(l["pause_ms"] >= 0 for l in full)


async def test_busy_poll_flag_reaches_the_running_service(tmp_path):
    """--busy-poll-us overrides the environment and is reported at start; orders are served as
    usual (here with the journal's writer thread instead of direct writes, also reported)."""
    s = await start_serve(tmp_path, "--busy-poll-us", "500", FASTEXEC_BUSY_POLL_US="100",
                          FASTEXEC_JOURNAL_DIRECT="false")
    try:
        assert s.info["busy_poll_us"] == 500 and s.info["journal"] == "fsync, thread"
        async with aiohttp.ClientSession() as http:
            async with http.get(s.api + "/api/v1/accounts") as r:
                account = (await r.json())["accounts"][0]["account_id"]
            body = {"account_id": account, "instrument": "EUR_USD", "units": 100, "side": "buy", "type": "market"}
            for _ in range(5):
                async with http.post(s.api + "/api/v1/orders", json=body) as r:
                    assert r.status == 201 and (await r.json())["status"] == "filled"
    finally:
        assert await stop_serve(s) == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--port", "70000"], b"is not a TCP port"),
        (["--log-level", "loud"], b"invalid choice"),
        (["--gc-freeze-interval", "-1"], b"must be >= 0"),
        (["--busy-poll-us", "-1"], b"must be >= 0"),
        (["--busy-poll-us", "2000000"], b"above the maximum"),
        (["--busy-poll-us", "soon"], b"invalid int value"),
    ],
)
async def test_bad_flags(tmp_path, args, message):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastexec", "serve", *args,
        env=_env(tmp_path), cwd=str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2 and message in err


async def test_load_test_script_against_serve(tmp_path):
    """The seed's load script runs against `fastexec serve` and reports no errors
    (a short, low-rate run: the seed-sized runs are in the report, not in CI)."""
    s = await start_serve(tmp_path)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "scripts" / "load_test.py"), "--rate", "50", "--duration", "2", "--burst",
            "--url", s.api, "--json", "--max-p95-ms", "10000",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        await stop_serve(s)
    summary = json.loads(out)
    assert proc.returncode == 0, (summary, err[-2000:])
    assert summary["sent"] == 100 and summary["acked"] == 100
    assert summary["errors"] == 0 and summary["unanswered"] == 0
    assert b"sent=" in err  # the progress line


async def _failed_start(tmp_path, timeout: float = 90, **env: str) -> tuple[int, list[dict], str]:
    """Run a serve expected to fail at start-up: (rc, JSON log records, raw stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastexec", "serve", "--port", "0", "--metrics-port", "0",
        env=_env(tmp_path, **env), cwd=str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    text = err.decode()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    return proc.returncode, records, text


def _assert_one_clean_cannot_start(rc: int, records: list[dict], text: str, *needles: str) -> str:
    assert rc == 1, text[-3000:]
    failed = [r for r in records if str(r.get("msg", "")).startswith("cannot start:")]
    assert len(failed) == 1, text[-3000:]
    msg = failed[0]["msg"]
    for needle in needles:
        assert needle in msg, msg
    assert "Traceback" not in text and "Unclosed" not in text, text[-3000:]
    assert not any("snapshot at stop failed" in str(r.get("msg", "")) for r in records), text[-3000:]
    return msg


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_broker_is_one_cannot_start_line_and_a_clean_exit(tmp_path):
    """Scenario: OANDA_REST_URL points at a loopback port nobody listens on."""
    url = f"http://127.0.0.1:{_closed_port()}"
    rc, records, text = await _failed_start(
        tmp_path, OANDA_API_KEY="SECRETTOKEN-abcdef123456", OANDA_ACCOUNT_ID="101-001-0000001-001",
        OANDA_REST_URL=url, OANDA_STREAM_URL=url,
    )
    _assert_one_clean_cannot_start(rc, records, text, "broker unreachable", "OANDA_REST_URL")
    assert "SECRETTOKEN-abcdef123456" not in text


async def test_wrong_oanda_key_is_one_cannot_start_line_naming_the_key(tmp_path):
    """Scenario: the v20 simulator (loopback) refuses the token with 401."""
    from fastexec.sim.testing import SimServer

    async with SimServer(seed=3, accounts=1) as sim:
        rc, records, text = await _failed_start(
            tmp_path, OANDA_API_KEY="WRONGTOKEN-0000000000000", OANDA_ACCOUNT_ID=sim.account_ids[0],
            OANDA_REST_URL=sim.base_url, OANDA_STREAM_URL=sim.stream_url,
        )
    _assert_one_clean_cannot_start(rc, records, text, "OANDA_API_KEY", "401")


async def test_second_serve_on_a_locked_data_dir_cannot_start_and_leaves_the_first_running(tmp_path):
    """Scenario: two serves on one FASTEXEC_DATA_DIR; the second says the
    journal is in use and exits 1, without touching the first one's lock."""
    first = await start_serve(tmp_path)
    try:
        rc, records, text = await _failed_start(tmp_path)
        _assert_one_clean_cannot_start(rc, records, text, "in use by another process", "FASTEXEC_DATA_DIR")
        async with aiohttp.ClientSession() as http:
            async with http.get(first.api + "/health") as resp:
                assert resp.status == 200
        rc2, records2, text2 = await _failed_start(tmp_path)  # still locked by the first
        _assert_one_clean_cannot_start(rc2, records2, text2, "in use by another process")
    finally:
        assert await stop_serve(first) == 0


async def _load_test(*args: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "load_test.py"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    return proc.returncode, out, err


async def test_load_test_fails_when_every_order_is_refused_unless_allowed(tmp_path):
    """Scenario: the server refuses every order (MAX_UNITS_PER_ORDER=10 < the
    script's 100 units). The run must not pass on fast refusals: rc 1, refusals
    counted apart, acked-only percentiles empty; --allow-refusals passes."""
    s = await start_serve(tmp_path, MAX_UNITS_PER_ORDER="10")
    try:
        rc, out, err = await _load_test("--rate", "40", "--duration", "1", "--url", s.api, "--json")
        rc_allowed, out_allowed, _ = await _load_test("--rate", "40", "--duration", "1", "--url", s.api, "--json",
                                                      "--allow-refusals")
    finally:
        await stop_serve(s)
    summary = json.loads(out)
    assert rc == 1, (summary, err[-2000:])
    assert summary["sent"] == 40 and summary["acked"] == 0 and summary["rejected"] == 40
    assert summary["reject_kinds"] == {"MAX_UNITS_PER_ORDER": 40}
    assert summary["p95_ms"] != summary["p95_ms"]  # NaN: no acked order, no execution latency
    assert summary["refused_p95_ms"] > 0
    assert b"refused" in err and b"FAILED" in err
    allowed = json.loads(out_allowed)
    assert allowed["rejected"] == 40
    assert rc_allowed == 1 and "no order was acked" in allowed["failed"]  # allowed refusals, but nothing executed


async def test_load_test_burst_rate_is_honest(tmp_path):
    """Scenario: a burst run whose orders are all acked reports the rate it
    scheduled (not inflated by stopping the clock at the last batch)."""
    s = await start_serve(tmp_path)
    try:
        rc, out, err = await _load_test("--rate", "50", "--duration", "2", "--burst", "--url", s.api, "--json",
                                         "--max-p95-ms", "10000")
    finally:
        await stop_serve(s)
    summary = json.loads(out)
    assert rc == 0, (summary, err[-2000:])
    assert summary["acked"] == 100 and summary["failed"] == []
    assert summary["wall_seconds"] >= 2.0
    assert summary["achieved_rate"] <= 50.0


async def test_load_test_bad_targets_and_arguments_are_one_line_errors(tmp_path):
    """Scenario: an unreachable URL, --connections 0, too few orders."""
    url = f"http://127.0.0.1:{_closed_port()}"
    rc, out, err = await _load_test("--rate", "10", "--duration", "1", "--url", url)
    assert rc == 1 and b"Traceback" not in err, err
    assert err.decode().strip().count("\n") == 0 and "cannot reach" in err.decode(), err
    rc, _, err = await _load_test("--rate", "10", "--duration", "1", "--url", url, "--connections", "0")
    assert rc == 2 and b"--connections" in err, err
    rc, _, err = await _load_test("--rate", "0.2", "--duration", "2", "--url", url)
    assert rc == 2 and b"less than one order" in err, err
