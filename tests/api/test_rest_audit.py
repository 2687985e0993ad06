"""Defects from the REST audit, reproduced over loopback HTTP (a real aiohttp
server over a real engine and simulated venue): each test failed before its fix."""
from __future__ import annotations

from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fastexec.api import create_app
from fastexec.metrics import Metrics

from .conftest import TOKEN_A, TOKEN_ALL, Api, make_settings


def _limit(api, **over):
    return api.order(type="limit", price="0.50000", **over)


async def _working(api: Api, account: str) -> int:
    st, body, _ = await api.call("GET", f"/api/v1/risk/{account}/metrics")
    assert st == 200, body
    return body["working_orders"]


async def _listed(api: Api, account: str) -> list:
    st, body, _ = await api.call("GET", f"/api/v1/orders?account_id={account}")
    assert st == 200, body
    return body["orders"]


# ------------------------------------------------------------------ gtd_time bounds


@pytest.mark.parametrize("gtd", ["9999-12-31T23:59:59Z", "2554-07-21T23:34:34Z", "2200-01-01T00:00:00Z"])
@pytest.mark.parametrize("otype", ["limit", "stop_limit"])
async def test_submit_gtd_beyond_bound_is_400_and_leaves_no_order(api, gtd, otype):
    acct = api.accounts[0]
    extra = {"stop_price": "0.60000"} if otype == "stop_limit" else {}
    body = api.order(type=otype, price="0.50000", time_in_force="GTD", gtd_time=gtd, **extra)
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=body)
    assert st == 400, out
    assert out["error"]["code"] == "INVALID_GTD_TIME" and out["error"]["field"] == "gtd_time", out
    assert "2200-01-01T00:00:00Z" in out["error"]["message"]
    assert await _listed(api, acct) == [] and await _working(api, acct) == 0
    # /risk/validate agrees with submit
    st, verdict, _ = await api.call("POST", "/api/v1/risk/validate", json_body=body)
    assert st == 200 and (verdict["allowed"], verdict["code"]) == (False, "INVALID_GTD_TIME"), verdict
    # just inside the bound is an ordinary GTD order
    inside = dict(body, gtd_time="2199-12-31T23:59:59Z")
    st, view, _ = await api.call("POST", "/api/v1/orders", json_body=inside)
    assert st == 201 and view["gtd_time"].startswith("2199-12-31T23:59:59"), view


@pytest.mark.parametrize("gtd", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/risk/validate"])
async def test_gtd_offset_out_of_datetime_range_is_400(api, gtd, path):
    body = _limit(api, time_in_force="GTD", gtd_time=gtd)
    st, out, _ = await api.call("POST", path, json_body=body)
    assert st == 400, out
    assert (out["error"]["code"], out["error"]["field"]) == ("INVALID_VALUE", "gtd_time"), out
    assert await _listed(api, api.accounts[0]) == []


# ------------------------------------------------------------------ atomic submit


@pytest.fixture
async def journaled(tmp_path) -> AsyncIterator[Api]:
    from fastexec.journal.integration import JournaledEngine

    settings = make_settings(tmp_path, FASTEXEC_JOURNAL_DURABILITY="none")
    engine = JournaledEngine(settings, durability="none")
    await engine.start()
    metrics = Metrics()
    metrics.attach_engine(engine)
    client = TestClient(TestServer(create_app(engine, metrics=metrics), host="127.0.0.1"))
    await client.start_server()
    a = Api(engine, client, metrics)
    try:
        yield a
    finally:
        await client.close()
        metrics.detach()
        await engine.stop()


async def test_journal_append_failure_leaves_no_phantom_order(journaled):
    api = journaled
    acct = api.accounts[0]
    st, ok, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, client_order_id="before-fail"))
    assert st == 201, ok
    # the disk fills: the writer fails, and every later append raises at the journal boundary
    api.engine.journal.writer._fail(OSError(28, "No space left on device"))
    for body in (_limit(api, client_order_id="lost-limit"),
                 api.order(type="stop_limit", price="0.50000", stop_price="0.60000", client_order_id="lost-stop")):
        st, out, _ = await api.call("POST", "/api/v1/orders", json_body=body)
        assert st == 503 and out["error"]["code"] == "JOURNAL_FAILED", out
    # nothing of either order remains: not listed, not found by client id, not counted as working
    assert [o["order_id"] for o in await _listed(api, acct)] == [ok["order_id"]]
    for cid in ("lost-limit", "lost-stop"):
        st, out, _ = await api.call("GET", f"/api/v1/orders/{cid}")
        assert st == 404, out
    assert await _working(api, acct) == 1


# ------------------------------------------------------------------ messages in decimals


async def test_trailing_distance_error_shows_decimals(api):
    body = api.order(instrument="NZD_USD", type="trailing_stop", trailing_distance="0.00001")
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=body)
    assert st == 400 and out["error"]["code"] == "TRAILING_DISTANCE_OUT_OF_RANGE", out
    msg = out["error"]["message"]
    assert msg == "trailing_distance=0.00001 outside [0.00050, 1.00000] for NZD_USD", msg
    # the same for the trailing stop loss on fill
    body = api.order(trailing_stop_distance="5.00000")
    st, out, _ = await api.call("POST", "/api/v1/orders", json_body=body)
    assert st == 400, out
    assert out["error"]["message"] == "trailing_stop_distance=5.00000 outside [0.00050, 1.00000] for EUR_USD", out


# ------------------------------------------------------------------ order ids and client ids


async def test_client_id_equal_to_engine_id_is_refused(authed):
    api = authed
    api.token = TOKEN_ALL
    a1, a2 = api.accounts[:2]
    st, first, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, account_id=a2, client_order_id="strat-1"))
    assert st == 201, first
    oid = first["order_id"]
    prefix, seq = oid.rsplit("-", 1)
    # an existing engine id, of this account or another, and the id the next order would get
    for acct, cid in ((a2, oid), (a1, oid), (a1, f"{prefix}-{int(seq) + 1}")):
        st, out, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, account_id=acct, client_order_id=cid))
        assert st == 400, out
        assert (out["error"]["code"], out["error"]["field"]) == ("RESERVED_CLIENT_ORDER_ID", "client_order_id"), out
        st, verdict, _ = await api.call("POST", "/api/v1/risk/validate",
                                        json_body=_limit(api, account_id=acct, client_order_id=cid))
        assert (verdict["allowed"], verdict["code"]) == (False, "RESERVED_CLIENT_ORDER_ID"), verdict
    # nothing was created, and the engine id still names its own order
    assert [o["order_id"] for o in await _listed(api, a1)] == []
    st, got, _ = await api.call("PUT", f"/api/v1/orders/{oid}/cancel")
    assert st == 200 and (got["order_id"], got["client_order_id"]) == (oid, "strat-1"), got


async def test_client_ids_are_per_account(authed):
    api = authed
    a1, a2 = api.accounts[:2]
    api.token = TOKEN_ALL
    st, b_order, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, account_id=a2, client_order_id="b2-lim"))
    assert st == 201, b_order
    # token A (account 1 only) cannot probe or squat account 2's client id: it is simply free in account 1
    api.token = TOKEN_A
    st, out, _ = await api.call("GET", "/api/v1/orders/b2-lim")
    assert st == 404 and out["error"]["code"] == "ORDER_NOT_FOUND", out
    st, a_order, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, account_id=a1, client_order_id="b2-lim"))
    assert st == 201 and a_order["account_id"] == a1, a_order
    st, again, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, account_id=a1, client_order_id="b2-lim"))
    assert st == 409 and again["error"]["code"] == "DUPLICATE_CLIENT_ORDER_ID", again  # unique within the account
    # each token finds its own account's order by the shared client id, and cancels that one
    st, got, _ = await api.call("GET", "/api/v1/orders/b2-lim")
    assert st == 200 and got["order_id"] == a_order["order_id"], got
    st, out, _ = await api.call("GET", f"/api/v1/orders/{b_order['order_id']}")
    assert st == 404, out
    st, got, _ = await api.call("PUT", "/api/v1/orders/b2-lim/cancel")
    assert st == 200 and (got["order_id"], got["status"]) == (a_order["order_id"], "cancelled"), got
    # the all-accounts token: the engine id is exact; the shared client id is ambiguous (409), never a guess
    api.token = TOKEN_ALL
    st, got, _ = await api.call("GET", f"/api/v1/orders/{b_order['order_id']}")
    assert st == 200 and got["status"] == "working", got
    st, out, _ = await api.call("PUT", "/api/v1/orders/b2-lim/cancel")
    assert st == 409 and out["error"]["code"] == "AMBIGUOUS_ORDER_ID", out
    st, out, _ = await api.call("GET", "/api/v1/orders/b2-lim")
    assert st == 409 and out["error"]["code"] == "AMBIGUOUS_ORDER_ID", out
    # the broker (the simulated venue) holds both, each in its own account
    venue = api.engine.broker.venue
    assert venue.accounts[a2].by_client["b2-lim"].id == int(b_order["broker_order_id"])
    assert venue.accounts[a1].by_client["b2-lim"].id == int(a_order["broker_order_id"])


async def test_cursor_of_other_account_reads_as_a_position_like_any_id(authed):
    api = authed
    a1, a2 = api.accounts[:2]
    api.token = TOKEN_ALL
    st, b_order, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, account_id=a2))
    assert st == 201
    for _ in range(3):
        st, _, _ = await api.call("POST", "/api/v1/orders", json_body=_limit(api, account_id=a1))
        assert st == 201
    api.token = TOKEN_A
    prefix = b_order["order_id"].rpartition("-")[0]
    answers = []
    # account B's order, and an id never issued at the same place (before A's three orders)
    for cursor in (b_order["order_id"], f"{prefix}-0"):
        st, out, _ = await api.call("GET", f"/api/v1/orders?cursor={cursor}")
        answers.append((st, [o["order_id"] for o in out["orders"]]))
    assert answers[0] == answers[1] and answers[0][0] == 200 and len(answers[0][1]) == 3, answers
    st, out, _ = await api.call("GET", "/api/v1/orders?cursor=nonexistent1")  # not an engine id
    assert (st, out["error"]["code"], out["error"]["field"]) == (400, "INVALID_CURSOR", "cursor")
    # a cursor of one's own account pages on
    st, page, _ = await api.call("GET", "/api/v1/orders?limit=1")
    st, rest, _ = await api.call("GET", f"/api/v1/orders?cursor={page['next_cursor']}")
    assert st == 200 and len(rest["orders"]) == 2, rest