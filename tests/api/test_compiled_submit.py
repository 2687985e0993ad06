"""The compiled submit endpoint (``_fast.submit_endpoint``) against its
reference, the Python endpoint of ``app._bind`` (``app._COMPILED_SUBMIT =
False``).

Both apps run over the same stub engine, which answers by
``client_order_id`` (a fill, a rejection, each error the engine raises, a
crash), so every response can be compared whole: status, header names in
order, request id, body bytes; and afterwards the request counters, the
order metrics, the latency ring and what the engine was given.
"""
from __future__ import annotations

import asyncio
import json
import re

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fastexec.api import app as A
from fastexec.api import create_app
from fastexec.engine.types import OrderSpec
from fastexec.errors import BrokerUnavailableError, KillSwitchActiveError, RiskDeniedError, ValidationError
from fastexec.metrics import Metrics

from .conftest import TOKEN_A, TOKEN_ALL, make_settings

_fast = pytest.importorskip("fastexec.api._fast")


class _Stub:
    """Answers a submit by its ``client_order_id``; records what it was given."""

    def __init__(self, real, view) -> None:
        self.instruments = real.instruments
        self.account_ids = real.account_ids
        self.view = view
        self.calls: list = []

    async def submit(self, spec, *, request_id=None):
        self.calls.append((spec, request_id))
        cid = spec.client_order_id
        if cid is not None and cid.startswith("slow"):  # suspends, as an engine waiting for its journal does
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            cid = cid[5:] or None
        if cid == "hang":
            self.hung = asyncio.get_running_loop().create_future()
            try:
                await self.hung
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if cid == "deny":
            raise RiskDeniedError("too big", code="MAX_POSITION")
        if cid == "halted":
            raise KillSwitchActiveError("halted", code="KILL_SWITCH_ACTIVE")
        if cid == "down":
            raise BrokerUnavailableError("venue down", code="BROKER_UNAVAILABLE")
        if cid == "invalid":
            raise ValidationError("bad", code="INVALID_VALUE", field="units")
        if cid == "boom":
            raise RuntimeError("engine bug")
        if cid == "rejected":
            return self.view._replace(status="rejected", filled_units=0, average_fill_price=None)
        return self.view._replace(client_order_id=cid, instrument=spec.instrument, side=spec.side, units=spec.units)


@pytest.fixture
async def view_source(tmp_path):
    from fastexec.engine import Engine

    engine = Engine(make_settings(tmp_path))
    await engine.start()
    view = await engine.submit(OrderSpec(engine.account_ids[0], "EUR_USD", "buy", 100, "market"))
    await engine.stop()
    return engine, view


async def _serve(real, view, compiled: bool, tokens, monkeypatch):
    monkeypatch.setattr(A, "_COMPILED_SUBMIT", compiled)
    stub = _Stub(real, view)
    metrics = Metrics()
    app = create_app(stub, tokens=tokens, metrics=metrics)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, stub, metrics, app


def _requests(account: str, other: str):
    def order(**over):
        body = {"account_id": account, "instrument": "EUR_USD", "units": 100, "side": "buy", "type": "market"}
        body.update(over)
        return orjson.dumps({k: v for k, v in body.items() if v is not None})

    auth_all = {"Authorization": f"Bearer {TOKEN_ALL}"}
    auth_a = {"Authorization": f"Bearer {TOKEN_A}"}
    rid = {"X-Request-ID": "trace-7"}
    return [
        ("/api/v1/orders", order(), auth_all),
        ("/api/v1/orders", order(client_order_id="c-1"), {**auth_all, **rid}),
        ("/api/v1/orders", order(side="sell", units=5), {**auth_a, "X-Request-ID": "bad id"}),
        ("/api/v1/orders", order(), {**auth_a, "X-Request-ID": "x" * 129}),
        ("/api/v1/orders", order(client_order_id="rejected"), auth_all),
        ("/api/v1/orders", order(client_order_id="slow"), auth_all),
        ("/api/v1/orders", order(client_order_id="slow-deny"), auth_all),
        ("/api/v1/orders", order(client_order_id="slow-boom"), auth_all),
        ("/api/v1/orders", _chunks(order(client_order_id="late-body")), auth_all),
        ("/api/v1/orders", order(client_order_id="deny"), auth_all),
        ("/api/v1/orders", order(client_order_id="halted"), auth_all),
        ("/api/v1/orders", order(client_order_id="down"), auth_all),
        ("/api/v1/orders", order(client_order_id="invalid"), auth_all),
        ("/api/v1/orders", order(client_order_id="boom"), auth_all),
        ("/api/v1/orders", order(type="limit", price="1.10000", time_in_force="GTC"), auth_all),  # general reader
        ("/api/v1/orders", order(units=0), auth_all),
        ("/api/v1/orders", order(instrument="XXX_YYY"), auth_all),
        ("/api/v1/orders", order(account_id=other), auth_a),
        ("/api/v1/orders", order(account_id=other, instrument="XXX_YYY"), auth_a),
        ("/api/v1/orders", order(), {}),
        ("/api/v1/orders", order(), {"Authorization": "Bearer nope"}),
        ("/api/v1/orders", b"", auth_all),
        ("/api/v1/orders", b"{", auth_all),
        ("/api/v1/orders", json.dumps({"x": "y" * 70_000}).encode(), auth_all),
        ("/api/v1/orders?", order(), auth_all),
        ("/api/v1/orders?dry_run=1", order(), auth_all),
        ("/api/v1/orders", order(client_order_id="idem-1"), {**auth_all, "Idempotency-Key": "k-1"}),
        ("/api/v1/orders", order(client_order_id="idem-1"), {**auth_all, "Idempotency-Key": "k-1"}),  # replay
        ("/api/v1/orders", order(client_order_id="idem-2"), {**auth_all, "Idempotency-Key": "k-1"}),  # 422
        ("/api/v1/orders", order(), auth_all),
    ]


class _chunks:
    """A body sent in pieces (chunked), so reading it has to wait for the network."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __eq__(self, other):
        return isinstance(other, _chunks) and other.raw == self.raw

    async def gen(self):
        for i in range(0, len(self.raw), 16):
            yield self.raw[i:i + 16]
            await asyncio.sleep(0.001)


_GENERATED = re.compile(r"^[0-9a-f]{8}-[0-9]+$")


async def _run(client, requests):
    out = []
    for path, body, headers in requests:
        resp = await client.post(path, data=body.gen() if isinstance(body, _chunks) else body, headers=headers)
        raw = await resp.read()
        names = [k.decode() for k, _ in resp.raw_headers if k.decode() != "Date"]
        rid = resp.headers["X-Request-ID"]
        if _GENERATED.match(rid):  # a fresh id: the two apps draw different numbers from one counter
            raw = raw.replace(rid.encode(), b"<generated>")
            rid = "<generated>"
        out.append((resp.status, names, rid, resp.headers["Content-Type"], raw))
    return out


def _metrics_state(metrics):
    out = {}
    for key, child in metrics._children.items():
        if type(child) is tuple:
            out[key] = (child[0].value, sum(child[1].counts))
        elif hasattr(child, "counts"):
            out[key] = sum(child.counts)
        else:
            out[key] = child.value
    return out


async def test_compiled_endpoint_answers_as_the_python_one(view_source, monkeypatch, caplog):
    import logging

    real, view = view_source
    account, other = real.account_ids[0], real.account_ids[1]
    tokens = {TOKEN_ALL: frozenset({"*"}), TOKEN_A: frozenset({account})}
    results = {}
    for compiled in (True, False):
        client, stub, metrics, app = await _serve(real, view, compiled, tokens, monkeypatch)
        try:
            for level in (logging.INFO, logging.DEBUG):  # the debug request log and the metrics' reference path too
                caplog.set_level(level, logger="fastexec.api")
                caplog.clear()
                answers = await _run(client, _requests(account, other))
                logged = [(r.getMessage(), getattr(r, "status", None), getattr(r, "code", None)) for r in caplog.records
                          if r.name == "fastexec.api"]
                results[compiled, level] = (answers, logged)
        finally:
            await client.close()
        api = app[A.API_KEY]
        given = [(dataclass_tuple(spec), rid if not _GENERATED.match(rid) else "<generated>") for spec, rid in stub.calls]
        results[compiled] = (_metrics_state(metrics), given, api.perf.rings["POST /api/v1/orders"]._count)
    for level in (logging.INFO, logging.DEBUG):
        fast, ref = results[True, level], results[False, level]
        for i, (a, b) in enumerate(zip(fast[0], ref[0])):
            assert a == b, (level, i, a, b)
        assert len(fast[0]) == len(ref[0])
        assert fast[1] == ref[1], level
    assert results[True] == results[False]
    statuses = {a[0] for a in results[True, logging.INFO][0]}
    assert {201, 400, 401, 403, 413, 422, 423, 500, 503} <= statuses, statuses


def dataclass_tuple(spec):
    import dataclasses

    return tuple((f.name, getattr(spec, f.name), type(getattr(spec, f.name)).__name__) for f in dataclasses.fields(spec))


def test_the_compiled_endpoint_is_the_route_handler(tmp_path):
    """With ``_fast`` built, the submit route runs the compiled coroutine."""
    import asyncio
    import inspect

    from fastexec.engine import Engine

    engine = Engine(make_settings(tmp_path))
    app = create_app(engine)
    handlers = [r.handler for r in app.router.routes() if r.method == "POST" and r.resource.canonical == "/api/v1/orders"]
    assert len(handlers) == 1
    assert type(handlers[0]).__name__ != "function"  # not the Python closure
    assert asyncio.iscoroutinefunction(handlers[0]) or inspect.iscoroutinefunction(handlers[0])


def test_request_ids_are_the_formatted_counter():
    ids = _fast.RequestIds("abcd0123")
    assert [ids() for _ in range(12)] == [f"abcd0123-{n}" for n in range(1, 13)]
    many = _fast.RequestIds("p")
    for _ in range(99_998):
        many()
    assert many() == "p-99999" and many() == "p-100000"
    with pytest.raises(ValueError):
        _fast.RequestIds("x" * 65)


@pytest.mark.parametrize("rid", ["", "a", "x" * 128, "x" * 129, "has space", "a/b", "é", "A-z_0.9:", "\x00", "~", None, 5])
def test_request_id_check_is_the_python_one(rid):
    ref = bool(isinstance(rid, str) and rid and len(rid) <= 128 and A._RID_OK.issuperset(rid))
    assert _fast.rid_ok(rid) is ref


async def test_a_cancelled_submit_is_cancelled_in_the_engine(view_source, monkeypatch):
    """Cancelling the request's task while the engine's coroutine is suspended
    throws into that coroutine (the compiled endpoint passes it through)."""
    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request
    from unittest import mock

    real, view = view_source
    for compiled in (True, False):
        monkeypatch.setattr(A, "_COMPILED_SUBMIT", compiled)
        stub = _Stub(real, view)
        app = create_app(stub, metrics=Metrics())
        handler = next(r.handler for r in app.router.routes() if r.method == "POST" and r.resource.canonical == "/api/v1/orders")
        payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
        payload.feed_data(orjson.dumps({"account_id": real.account_ids[0], "instrument": "EUR_USD", "units": 1,
                                        "side": "buy", "client_order_id": "hang"}))
        payload.feed_eof()
        request = make_mocked_request("POST", "/api/v1/orders", headers={"X-Request-ID": "cancel-1"}, payload=payload, app=app)
        task = asyncio.ensure_future(handler(request))
        for _ in range(100):
            await asyncio.sleep(0)
            if getattr(stub, "hung", None) is not None:
                break
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stub.cancelled, compiled


async def test_the_compiled_response_is_a_web_response(view_source):
    """The compiled endpoint's lean 201 has exactly the attributes of a real
    ``web.Response`` with the same body and headers."""
    from aiohttp import web
    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request
    from unittest import mock

    real, view = view_source
    app = create_app(_Stub(real, view), metrics=Metrics())
    handler = next(r.handler for r in app.router.routes() if r.method == "POST" and r.resource.canonical == "/api/v1/orders")
    answers = []
    for rid in ("lean-1", "lean-2"):
        payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
        payload.feed_data(orjson.dumps({"account_id": real.account_ids[0], "instrument": "EUR_USD", "units": 1, "side": "buy"}))
        payload.feed_eof()
        request = make_mocked_request("POST", "/api/v1/orders", headers={"X-Request-ID": rid}, payload=payload, app=app)
        answers.append(await handler(request))
    for lean, rid in zip(answers, ("lean-1", "lean-2")):
        ref = web.Response(body=lean.body, status=201, headers={"Content-Type": "application/json", "X-Request-ID": rid})
        assert type(lean) is type(ref) and vars(lean).keys() == vars(ref).keys()
        for key, value in vars(ref).items():
            if key == "_headers":
                assert list(lean.headers.items()) == list(value.items())
            else:
                assert vars(lean)[key] == value, key
    assert answers[0]._state is not answers[1]._state and answers[0]._headers is not answers[1]._headers


async def test_a_body_read_whole_or_as_it_arrives_answers_alike(view_source, monkeypatch):
    """A body already complete is taken from the stream at once (no
    ``request.read()``); one still arriving is read; both endpoints give the
    same answers either way, 413 included."""
    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request
    from unittest import mock

    real, view = view_source
    order = orjson.dumps({"account_id": real.account_ids[0], "instrument": "EUR_USD", "units": 1, "side": "buy"})
    big = json.dumps({"x": "y" * 70_000}).encode()
    answers = {}
    for compiled in (True, False):
        monkeypatch.setattr(A, "_COMPILED_SUBMIT", compiled)
        stub = _Stub(real, view)
        app = create_app(stub, metrics=Metrics())
        handler = next(r.handler for r in app.router.routes() if r.method == "POST" and r.resource.canonical == "/api/v1/orders")
        for name, raw in (("order", order), ("big", big), ("bad", b"{")):
            for mode in ("whole", "late"):
                payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
                half = len(raw) // 2
                payload.feed_data(raw if mode == "whole" else raw[:half])
                if mode == "whole":
                    payload.feed_eof()
                request = make_mocked_request("POST", "/api/v1/orders", headers={"X-Request-ID": f"{name}-{mode}"},
                                              payload=payload, app=app, client_max_size=app._client_max_size)
                task = asyncio.ensure_future(handler(request))
                if mode == "late":
                    for _ in range(3):
                        await asyncio.sleep(0)
                    assert not task.done()
                    payload.feed_data(raw[half:])
                    payload.feed_eof()
                resp = await task
                answers[compiled, name, mode] = (resp.status, resp.body)
        assert len(stub.calls) == 2  # the order, whole and late
    for key in [k for k in answers if k[0]]:
        assert answers[key] == answers[(False,) + key[1:]], key
    assert {answers[True, "big", m][0] for m in ("whole", "late")} == {413}
    assert {answers[True, "order", m][0] for m in ("whole", "late")} == {201}


async def test_a_request_class_of_its_own_is_read_through_its_properties(view_source):
    """The compiled endpoint reads aiohttp's private request attributes only for
    a request class whose public properties return them; another class (here
    one whose ``headers`` add an ``X-Request-ID``) is read through its properties."""
    from aiohttp import web
    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict, CIMultiDictProxy
    from unittest import mock

    class Odd(web.Request):
        @property
        def headers(self):
            return CIMultiDictProxy(CIMultiDict(self._headers, **{"X-Request-ID": "odd-1"}))

    real, view = view_source
    stub = _Stub(real, view)
    app = create_app(stub, metrics=Metrics())
    handler = next(r.handler for r in app.router.routes() if r.method == "POST" and r.resource.canonical == "/api/v1/orders")
    rids = []
    for cls in (None, Odd, None):
        payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
        payload.feed_data(orjson.dumps({"account_id": real.account_ids[0], "instrument": "EUR_USD", "units": 1, "side": "buy"}))
        payload.feed_eof()
        request = make_mocked_request("POST", "/api/v1/orders", payload=payload, app=app)
        if cls is not None:
            request.__class__ = cls
        resp = await handler(request)
        assert resp.status == 201
        rids.append(resp.headers["X-Request-ID"])
    assert rids[1] == "odd-1" and _GENERATED.match(rids[0]) and _GENERATED.match(rids[2])
