"""Idempotency keys in the journal (``fastexec.journal.keys``): ordering, replay, crash windows.

The REST scenarios with real ``fastexec serve`` processes (SIGTERM, SIGKILL) are in
``tests/api/test_idempotency.py``; here the journaled engine runs in-process behind the
real app, so a "crash" (the journal abandoned, the venue living on) can fall between
any two records.
"""
from __future__ import annotations

import hashlib
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fastexec.api import create_app
from fastexec.config import Settings
from fastexec.engine.types import OrderSpec
from fastexec.journal import read_records
from fastexec.journal.integration import JournaledEngine
from fastexec.journal.keys import IdempotencyKeys
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

PRINCIPAL = "anonymous"


def settings(**env: str) -> Settings:
    return Settings.from_env({"MAX_ORDERS_PER_SECOND": "10000", **env}, dotenv=False)


@pytest.fixture
def venue():
    return Venue(seed=3, accounts=1, balance="100000")


class Served:
    def __init__(self, je: JournaledEngine, client: TestClient) -> None:
        self.je, self.client = je, client
        self.account = je.account_ids[0]

    async def post(self, body: bytes, key=None, rid=None) -> tuple[int, bytes]:
        h = {"Content-Type": "application/json"}
        if key is not None:
            h["Idempotency-Key"] = key
        if rid is not None:
            h["X-Request-ID"] = rid
        r = await self.client.post("/api/v1/orders", data=body, headers=h)
        return r.status, await r.read()

    def body(self, **over) -> bytes:
        b = {"account_id": self.account, "instrument": "EUR_USD", "units": 1000, "side": "buy", "type": "market"}
        b.update(over)
        return json.dumps(b).encode()

    async def close(self) -> None:
        await self.client.close()


async def serve(venue, path, **env: str) -> Served:
    je = JournaledEngine(settings(**env), SimulatedBroker(venue), journal_dir=str(path))
    await je.start()
    client = TestClient(TestServer(create_app(je), host="127.0.0.1"))
    await client.start_server()
    return Served(je, client)


async def crash(s: Served) -> None:
    await s.client.close()
    s.je.journal.abandon()
    await s.je.engine.broker.stop()


def types(path) -> list[tuple[int, dict]]:
    return [(r.seq, r.payload) for r in read_records(str(path))]


async def test_the_key_record_comes_right_before_its_order_and_the_result_before_the_ack(venue, tmp_path):
    s = await serve(venue, tmp_path)
    st, out = await s.post(s.body(), key="k1", rid="rid-k1")
    assert st == 201
    w = s.je.journal.writer
    assert w.durable_seq == w.last_seq  # key, order, fill and result: all durable before the 201
    recs = types(tmp_path)
    i = next(n for n, (_, p) in enumerate(recs) if p["type"] == "idempotency.key")
    seq_k, key = recs[i]
    seq_o, order = recs[i + 1]
    assert seq_o == seq_k + 1 and order["type"] == "order.submitted"
    assert key["principal"] == PRINCIPAL and key["key"] == "k1" and key["request_id"] == "rid-k1" == order["request_id"]
    assert key["digest"] == hashlib.sha256(s.body()).hexdigest()
    result = [p for _, p in recs if p["type"] == "idempotency.result"]
    assert len(result) == 1 and result[0]["status"] == 201 and result[0]["body"].encode() == out
    assert result[0]["order_id"] == order["order_id"] == json.loads(out)["order_id"]
    # a request without the header journals nothing of this kind
    n = len(recs)
    st, _ = await s.post(s.body())
    assert st == 201
    assert not [p for _, p in types(tmp_path)[n:] if p["type"].startswith("idempotency.")]
    assert s.je.journal._handlers is __import__("fastexec.journal.state", fromlist=["x"])._HANDLERS
    await s.close()
    await s.je.stop()


async def test_the_fold_replayed_and_from_a_snapshot_equals_the_live_one(venue, tmp_path):
    s = await serve(venue, tmp_path)
    assert (await s.post(s.body(), key="a"))[0] == 201
    assert (await s.post(s.body(units=5_000_000), key="denied"))[0] == 422  # refusal: remembered
    assert (await s.post(s.body(type="limit"), key="bad"))[0] == 400  # engine's 400: released
    assert (await s.post(s.body(side="sell"), key="b"))[0] == 201
    assert (await s.post(s.body(side="sell"), key="b"))[0] == 201  # a replay journals nothing
    live = s.je.idempotency_keys.to_dict()
    assert [row[1] for row in live["entries"]] == ["a", "denied", "b"]
    replayed = IdempotencyKeys()
    for _, p in types(tmp_path):
        replayed.replay(p)
    assert replayed.to_dict() == live
    await crash(s)
    s2 = await serve(venue, tmp_path)  # replay from the segments
    assert s2.je.idempotency_keys.to_dict() == live
    await s2.close()
    await s2.je.stop()  # snapshot
    s3 = await serve(venue, tmp_path)
    assert s3.je.open_report.snapshot_seq is not None and s3.je.open_report.replayed == 0
    assert s3.je.idempotency_keys.to_dict() == live
    st, out = await s3.post(s3.body(units=5_000_000), key="denied")
    assert st == 422 and json.loads(out)["error"]["code"] == "MAX_UNITS_PER_ORDER"
    await s3.close()
    await s3.je.stop()


async def _order_without_result(s: Served, key: str, body: bytes, rid: str, spec: OrderSpec):
    """What a crash after the order's records and before the result record leaves behind."""
    keys = s.je.idempotency_keys
    keys.begin(PRINCIPAL, key, hashlib.sha256(body).hexdigest(), account_id=s.account, request_id=rid,
               client_order_id=None)
    view = await s.je.submit(spec, request_id=rid)
    keys.disarm(PRINCIPAL, key)
    await s.je.journal_barrier()
    return view


async def test_a_key_whose_result_was_lost_answers_with_its_order_never_a_new_one(venue, tmp_path):
    s = await serve(venue, tmp_path)
    acct = s.account
    limit_body = s.body(type="limit", price="0.5")
    working = await _order_without_result(s, "lost-working", limit_body, "rid-w", OrderSpec(
        account_id=acct, instrument="EUR_USD", side="buy", units=1000, type="limit", price=50_000_000))
    market_body = s.body()
    filled = await _order_without_result(s, "lost-filled", market_body, "rid-f", OrderSpec(
        account_id=acct, instrument="EUR_USD", side="buy", units=1000))
    assert working.status == "working" and filled.status == "filled"
    await crash(s)

    s2 = await serve(venue, tmp_path)
    entries = {row[1]: row for row in s2.je.idempotency_keys.to_dict()["entries"]}
    assert entries["lost-working"][7] == working.order_id and entries["lost-filled"][7] == filled.order_id
    # still working (adopted after the restart): the order as it is now
    st, out = await s2.post(limit_body, key="lost-working")
    assert st == 201 and json.loads(out)["order_id"] == working.order_id
    # finished before the restart: not placed again, and the answer says which order it was
    st, out = await s2.post(market_body, key="lost-filled")
    err = json.loads(out)["error"]
    assert st == 409 and err["code"] == "IDEMPOTENCY_KEY_RESULT_LOST" and filled.order_id in err["detail"]
    st, out = await s2.post(s2.body(units=7), key="lost-filled")
    assert st == 422 and json.loads(out)["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert [o.order_id for o in s2.je.list_orders(account_id=acct)] == [working.order_id]
    await s2.close()
    await s2.je.stop()


async def test_a_key_that_placed_nothing_before_a_crash_is_a_new_request(venue, tmp_path):
    s = await serve(venue, tmp_path)
    body = s.body()
    s.je.idempotency_keys.begin(PRINCIPAL, "nothing", hashlib.sha256(body).hexdigest(), account_id=s.account,
                                request_id="rid-n", client_order_id=None)
    s.je.idempotency_keys.disarm(PRINCIPAL, "nothing")
    await s.je.journal_barrier()
    await crash(s)
    s2 = await serve(venue, tmp_path)
    st, out = await s2.post(body, key="nothing")
    assert st == 201
    st, again = await s2.post(body, key="nothing")
    assert st == 201 and again == out
    await s2.close()
    await s2.je.stop()


async def test_concurrent_requests_with_one_key_place_one_order(venue, tmp_path):
    import asyncio

    s = await serve(venue, tmp_path)
    body = s.body()
    results = await asyncio.gather(*(s.post(body, key="same") for _ in range(8)))
    created = {out for st, out in results if st == 201}
    assert len(created) == 1
    assert all(st in (201, 409) for st, _ in results)
    assert len(s.je.list_orders(account_id=s.account)) == 1
    await s.close()
    await s.je.stop()
