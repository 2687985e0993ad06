"""Micro-benchmarks of the REST layer's own work (pytest-benchmark; timings live
here, never in unit tests).

    pytest bench/test_api_bench.py --benchmark-enable -q

What the shell adds per order on top of the engine: decoding the body,
validating it against the OrderRequest schema, parsing prices at the
instrument's precision, serialising the engine's view, and the metrics
update. The end-to-end HTTP figures (orders/s beside a bare aiohttp echo
server, single-client p50) come from ``python bench/rest/run_wrk.py``.
"""
from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from fastexec.api import models as m
from fastexec.api.app import Api
from fastexec.api.schemas import decode_body
from fastexec.config import Settings
from fastexec.engine import Engine
from fastexec.metrics import Metrics

MARKET = orjson.dumps({"account_id": "101-001-0000001-001", "instrument": "EUR_USD", "units": 10000, "side": "buy", "type": "market"})
LIMIT_NUMBERS = json.dumps(
    {
        "account_id": "101-001-0000001-001",
        "instrument": "EUR_USD",
        "units": 10000,
        "side": "buy",
        "type": "limit",
        "price": 1.0950,
        "stop_loss": {"price": 1.0900, "guaranteed": False},
        "take_profit": {"price": 1.1050},
    }
).encode()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    settings = Settings.from_env({"FASTEXEC_DATA_DIR": str(tmp_path_factory.mktemp("b")), "MAX_ORDERS_PER_SECOND": "100000000"}, dotenv=False)
    eng = Engine(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(eng.start())
    yield eng, loop
    loop.run_until_complete(eng.stop())
    loop.close()


def test_decode_and_validate_market_order(benchmark):
    benchmark(lambda: m.ORDER_REQUEST.parse(decode_body(MARKET)))


def test_decode_and_validate_limit_order_with_number_prices(benchmark):
    """The slow path: float literals are re-read with their exact text."""
    benchmark(lambda: m.ORDER_REQUEST.parse(decode_body(LIMIT_NUMBERS)))


def test_order_spec_from_validated_body(benchmark, engine):
    api = Api(engine[0])
    body = m.ORDER_REQUEST.parse(decode_body(LIMIT_NUMBERS))
    benchmark(api.order_spec, body)


def test_submit_through_api_layer_without_http(benchmark, engine):
    """decode + validate + spec + engine.submit + metrics + to_dict + orjson."""
    eng, loop = engine
    api = Api(eng, metrics=Metrics())
    bodies = [
        orjson.dumps({"account_id": eng.account_ids[0], "instrument": "EUR_USD", "units": 100, "side": side, "type": "market"})
        for side in ("buy", "sell")
    ]
    state = {"i": 0}

    async def one():
        state["i"] ^= 1
        spec = api.order_spec(m.ORDER_REQUEST.parse(decode_body(bodies[state["i"]])))
        view = await api._submit(spec, "bench")
        return orjson.dumps(view.to_dict())

    benchmark(lambda: loop.run_until_complete(one()))


def test_metrics_order_observation(benchmark):
    metrics = Metrics()
    benchmark(metrics.order, "market", "EUR_USD", "filled", "success", 0.0001)
