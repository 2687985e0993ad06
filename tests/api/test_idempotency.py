"""Idempotency-Key on submit: a retried request returns the first result."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import aiohttp
import pytest

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


# --------------------------------------------------------------------------- across restarts
# ``fastexec serve`` as a user runs it (journaled, fsync), over loopback HTTP, stopped with
# SIGTERM or killed with SIGKILL and started again on the same FASTEXEC_DATA_DIR.


class _Serve:
    def __init__(self, proc, api: str) -> None:
        self.proc, self.api = proc, api


def _serve_env(data_dir, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OANDA_", "FASTEXEC_", "MAX_"))}
    env.update({"FASTEXEC_DATA_DIR": str(data_dir), "FASTEXEC_SIM_ACCOUNTS": "1", "LOG_LEVEL": "info",
                "MAX_ORDERS_PER_SECOND": "10000"})
    env.update(extra)
    return env


async def _start_serve(data_dir, **env: str) -> _Serve:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastexec", "serve", "--port", "0", "--metrics-port", "0",
        env=_serve_env(data_dir, **env), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )

    async def listening() -> str:
        async for raw in proc.stderr:
            rec = json.loads(raw)
            if rec.get("msg") == "listening":
                return rec["api"]
        raise AssertionError("serve exited before listening")

    try:
        api = await asyncio.wait_for(listening(), timeout=60)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise

    async def drain() -> None:  # keep reading the log so the pipe never fills
        async for _ in proc.stderr:
            pass

    proc._drain = asyncio.ensure_future(drain())  # type: ignore[attr-defined]
    return _Serve(proc, api)


async def _stop_serve(s: _Serve, sig: int) -> int:
    if s.proc.returncode is None:
        s.proc.send_signal(sig)
    code = await asyncio.wait_for(s.proc.wait(), timeout=30)
    await asyncio.wait_for(s.proc._drain, timeout=30)  # type: ignore[attr-defined]
    return code


async def _post(http, s: _Serve, body: bytes, key: str) -> tuple[int, bytes]:
    async with http.post(s.api + "/api/v1/orders", data=body,
                         headers={"Idempotency-Key": key, "Content-Type": "application/json"}) as r:
        return r.status, await r.read()


async def _orders(http, s: _Serve, account: str) -> list[dict]:
    async with http.get(s.api + "/api/v1/orders", params={"account_id": account, "limit": "1000"}) as r:
        assert r.status == 200
        return (await r.json())["orders"]


async def _account(http, s: _Serve) -> str:
    async with http.get(s.api + "/api/v1/accounts") as r:
        return (await r.json())["accounts"][0]["account_id"]


def _body(account: str, **over) -> bytes:
    body = {"account_id": account, "instrument": "EUR_USD", "units": 1000, "side": "buy", "type": "market"}
    body.update(over)
    return json.dumps(body).encode()


async def _replays_across(tmp_path, sig: int) -> None:
    data = tmp_path / "data"
    s = await _start_serve(data)
    try:
        async with aiohttp.ClientSession() as http:
            account = await _account(http, s)
            body = _body(account, units=1234)
            st1, first = await _post(http, s, body, "restart-1")
            assert st1 == 201, first
            order = json.loads(first)
            assert order["status"] == "filled"
            # a limit order too (the embedded venue does not outlive the process: reconciliation
            # finds it gone, so the retry must answer from the journal, not from the engine)
            limit = _body(account, type="limit", price="0.5", units=2000)
            st, first_limit = await _post(http, s, limit, "restart-2")
            assert st == 201, first_limit
    finally:
        code = await _stop_serve(s, sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)

    s = await _start_serve(data)
    try:
        async with aiohttp.ClientSession() as http:
            before = await _orders(http, s, account)
            st2, again = await _post(http, s, body, "restart-1")
            assert st2 == 201
            assert again == first  # the first answer, byte for byte: no second order
            st, again_limit = await _post(http, s, limit, "restart-2")
            assert st == 201 and again_limit == first_limit
            assert await _orders(http, s, account) == before  # nothing new was placed
            # a new key still places a new order
            st3, other = await _post(http, s, body, "restart-3")
            assert st3 == 201 and json.loads(other)["order_id"] != order["order_id"]
    finally:
        await _stop_serve(s, signal.SIGTERM)

    s = await _start_serve(data)  # and again after a second restart (the keys came from a snapshot)
    try:
        async with aiohttp.ClientSession() as http:
            st, again = await _post(http, s, body, "restart-1")
            assert st == 201 and again == first
            st, again3 = await _post(http, s, body, "restart-3")
            assert st == 201 and again3 == other
    finally:
        await _stop_serve(s, signal.SIGTERM)


@pytest.mark.timeout(180)
async def test_idempotency_key_replays_after_restart(tmp_path):
    await _replays_across(tmp_path, signal.SIGTERM)


@pytest.mark.timeout(180)
async def test_idempotency_key_replays_after_kill_9(tmp_path):
    await _replays_across(tmp_path, signal.SIGKILL)


@pytest.mark.timeout(180)
async def test_idempotency_key_with_other_body_after_restart_is_422(tmp_path):
    data = tmp_path / "data"
    s = await _start_serve(data)
    try:
        async with aiohttp.ClientSession() as http:
            account = await _account(http, s)
            st, first = await _post(http, s, _body(account, units=100), "other-body")
            assert st == 201, first
    finally:
        await _stop_serve(s, signal.SIGKILL)
    s = await _start_serve(data)
    try:
        async with aiohttp.ClientSession() as http:
            st, out = await _post(http, s, _body(account, units=200), "other-body")
            assert st == 422, out
            assert json.loads(out)["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
            assert await _orders(http, s, account) == []  # nothing placed
            st, again = await _post(http, s, _body(account, units=100), "other-body")
            assert st == 201 and again == first
    finally:
        await _stop_serve(s, signal.SIGTERM)


@pytest.mark.timeout(180)
async def test_idempotency_keys_are_forgotten_past_the_window(tmp_path):
    """The newest FASTEXEC_IDEMPOTENCY_KEYS keys, each for FASTEXEC_IDEMPOTENCY_TTL_S: an
    older key is a new request again (a new order), after a restart as before it."""
    data = tmp_path / "data"
    window = {"FASTEXEC_IDEMPOTENCY_KEYS": "3", "FASTEXEC_IDEMPOTENCY_TTL_S": "3"}
    s = await _start_serve(data, **window)
    first: dict[str, bytes] = {}
    try:
        async with aiohttp.ClientSession() as http:
            account = await _account(http, s)
            body = _body(account)
            for i in range(5):
                st, first[f"w-{i}"] = await _post(http, s, body, f"w-{i}")
                assert st == 201
    finally:
        await _stop_serve(s, signal.SIGKILL)
    s = await _start_serve(data, **window)
    try:
        async with aiohttp.ClientSession() as http:
            for i in (2, 3, 4):  # the newest three are remembered
                st, again = await _post(http, s, body, f"w-{i}")
                assert st == 201 and again == first[f"w-{i}"], i
            assert await _orders(http, s, account) == []
            st, again = await _post(http, s, body, "w-0")  # pushed out by newer keys: a new order
            assert st == 201 and json.loads(again)["order_id"] != json.loads(first["w-0"])["order_id"]
            assert len(await _orders(http, s, account)) == 1
            # past the age limit a remembered key is forgotten too
            await asyncio.sleep(3.2)
            st, again = await _post(http, s, body, "w-4")
            assert st == 201 and json.loads(again)["order_id"] != json.loads(first["w-4"])["order_id"]
            assert len(await _orders(http, s, account)) == 2
    finally:
        await _stop_serve(s, signal.SIGTERM)
