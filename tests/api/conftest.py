"""Fixtures: a real engine (simulated venue) behind the real app, served over
loopback HTTP by aiohttp's test server. Nothing of ours is mocked."""
from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator, Optional

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fastexec.api import create_app
from fastexec.api.openapi import build_openapi
from fastexec.config import Settings
from fastexec.engine import Engine
from fastexec.metrics import Metrics

TOKEN_ALL = "tok-all-0123456789abcdef"
TOKEN_A = "tok-a-0123456789abcdef"


def make_settings(tmp_path, **env: str) -> Settings:
    base = {
        "FASTEXEC_DATA_DIR": str(tmp_path / "data"),
        "FASTEXEC_SIM_ACCOUNTS": "2",
        "MAX_ORDERS_PER_SECOND": "100000",
        "LOG_LEVEL": "debug",
    }
    base.update(env)
    return Settings.from_env(base, dotenv=False)


async def engine_over_oanda(sim, tmp_path, **config) -> tuple[Engine, TestClient, Metrics]:
    """A started engine on the OANDA adapter against the v20 simulator ``sim``,
    served by the real app with metrics: short timeouts and backoffs (``config``
    overrides any ``OandaConfig`` field) so fault tests end in seconds."""
    from fastexec.brokers.oanda import OandaBroker, OandaConfig

    cfg = dict(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
               stream_url=sim.stream_url, max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.05)
    cfg.update(config)
    engine = Engine(make_settings(tmp_path), OandaBroker(OandaConfig(**cfg)))
    await engine.start()
    metrics = Metrics()
    metrics.attach_engine(engine)
    client = TestClient(TestServer(create_app(engine, metrics=metrics), host="127.0.0.1"))
    await client.start_server()
    return engine, client, metrics


class Api:
    """A started engine, its metrics and an HTTP client bound to the app."""

    def __init__(self, engine: Engine, client: TestClient, metrics: Metrics) -> None:
        self.engine = engine
        self.client = client
        self.metrics = metrics
        self.accounts = list(engine.account_ids)
        self.token: Optional[str] = None

    def _headers(self, headers: Optional[dict]) -> dict:
        h = dict(headers or {})
        if self.token and "Authorization" not in h:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    async def call(self, method: str, path: str, *, json_body: Any = None, data: Any = None, headers=None):
        """(status, parsed body, response). Every body must be JSON: a text/HTML
        error page from anywhere in the stack fails the test here."""
        if json_body is not None:
            data = json.dumps(json_body)
        resp = await self.client.request(method, path, data=data, headers=self._headers(headers))
        raw = await resp.read()
        assert resp.headers.get("Content-Type", "").startswith("application/json"), (resp.status, raw[:200])
        body = json.loads(raw) if raw else None
        assert resp.status < 500 or resp.status == 503, (resp.status, body)
        if resp.status >= 400:
            assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
        return resp.status, body, resp

    def order(self, **over: Any) -> dict:
        body = {"account_id": self.accounts[0], "instrument": "EUR_USD", "units": 1000, "side": "buy", "type": "market"}
        body.update(over)
        return {k: v for k, v in body.items() if v is not None}


async def start_api(tmp_path, tokens: Optional[dict] = None, **env: str):
    settings = make_settings(tmp_path, **env)
    engine = Engine(settings)
    await engine.start()
    metrics = Metrics()
    metrics.attach_engine(engine)
    app = create_app(engine, tokens=tokens, metrics=metrics)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Api(engine, client, metrics)


async def stop_api(api: Api) -> None:
    await api.client.close()
    api.metrics.detach()
    await api.engine.stop()


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[Api]:
    a = await start_api(tmp_path)
    try:
        yield a
    finally:
        await stop_api(a)


@pytest.fixture
async def authed(tmp_path) -> AsyncIterator[Api]:
    a = await start_api(tmp_path, tokens=None)
    await stop_api(a)  # learn the simulated account ids, then start with tokens scoped to them
    tokens = {TOKEN_ALL: frozenset({"*"}), TOKEN_A: frozenset({a.accounts[0]})}
    b = await start_api(tmp_path / "b", tokens=tokens)
    try:
        yield b
    finally:
        await stop_api(b)


# --------------------------------------------------------------- response schemas

_SPEC = build_openapi()


def _nullable_to_jsonschema(schema: Any) -> Any:
    """OpenAPI 3.0 -> JSON Schema: `nullable` and boolean exclusiveMinimum."""
    if isinstance(schema, list):
        return [_nullable_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _nullable_to_jsonschema(v) for k, v in schema.items() if k not in ("nullable", "example")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


_DEFS = {name: _nullable_to_jsonschema(s) for name, s in _SPEC["components"]["schemas"].items()}


def assert_schema(name: str, instance: Any) -> None:
    """Validate a response body against the schema the spec publishes."""
    schema = {"$ref": f"#/definitions/{name}", "definitions": _DEFS}
    jsonschema.Draft4Validator(schema).validate(instance)


@pytest.fixture
def log_records(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog
