"""Property-based conformance: schemathesis generates requests from the served
/openapi.json (valid and invalid ones) and checks every answer: no 5xx, only
documented status codes, bodies that match the published schemas, invalid
requests refused, protected endpoints refused without a token.

The server is the real app over the real engine (simulated venue), served on
loopback from a thread with its own event loop, because schemathesis calls it
synchronously. The example count is bounded (``EXAMPLES`` per operation) so
the run stays within a couple of minutes on CI.

``positive_data_acceptance`` is not run: a schema-valid price can still be
refused (more decimals than *that* instrument quotes, an instrument the venue
does not list, an account the token may not use); those rules span fields and
configuration that JSON Schema cannot express, and refusing them is correct.
"""
from __future__ import annotations

import asyncio
import os
import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from fastexec.api import create_app
from fastexec.engine import Engine
from fastexec.metrics import Metrics

from .conftest import make_settings

# per operation and phase; raise locally with FASTEXEC_SCHEMATHESIS_EXAMPLES for a deeper run
EXAMPLES = int(os.environ.get("FASTEXEC_SCHEMATHESIS_EXAMPLES", "120"))
TOKEN = "tok-schemathesis-0123456789"


class ServerThread:
    """Engine + app on a private loop in a daemon thread, bound to 127.0.0.1:0."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.url = ""
        self.accounts: list[str] = []
        self.metrics: Metrics | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="api-under-test", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        engine = Engine(make_settings(self.tmp_path, FASTEXEC_SIM_ACCOUNTS="1", LOG_LEVEL="warning"))
        await engine.start()
        metrics = self.metrics = Metrics()
        metrics.attach_engine(engine)
        app = create_app(engine, tokens={TOKEN: frozenset({"*"})}, metrics=metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.accounts = list(engine.account_ids)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            metrics.detach()
            await engine.stop()

    def start(self) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerThread(tmp_path_factory.mktemp("schemathesis")).start()
    yield srv
    srv.stop()
    served = {}
    for fam in srv.metrics.registry.collect():
        if fam.name == "execution_http_requests":
            for sample in fam.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels["status"]
                    served[key] = served.get(key, 0) + int(sample.value)
    print(f"\nschemathesis: {sum(served.values())} requests served, by status: {dict(sorted(served.items()))}")
    assert not any(k.startswith("5") and k != "503" for k in served), served


class _BearerToken:
    """Through schemathesis' auth hook (not a fixed header) so its negative
    cases that drop the Authorization header really go out without it."""

    def get(self, case, context):
        return TOKEN

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@pytest.fixture(scope="module")
def api_schema(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    schema.auth(refresh_interval=None)(_BearerToken)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(600)  # the whole generated run is one pytest item
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_spec(case, server):
    case.call_and_validate(
        base_url=server.url,
        excluded_checks=[positive_data_acceptance],
        timeout=30,
    )
