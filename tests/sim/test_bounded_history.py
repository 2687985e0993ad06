"""Bounded history: the venue keeps its last ``history`` transactions per
account, and the finished orders and closed trades those are the last word
on; older ones are forgotten in TRIM_BATCH batches. Open orders, open trades
and positions are never forgotten. A forgotten id is answered like an unknown
one (404 by id, 416 for sinceid / idrange / changes reaching before the
retained window)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aiohttp
import pytest

from fastexec.brokers.base import BrokerError, OrderRequest
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.fixed import parse_price
from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.testing import SimServer
from fastexec.sim.venue import DEFAULT_HISTORY, TRIM_BATCH, Order, Venue

P = lambda s: parse_price(s, 5)  # noqa: E731
T0 = 1_767_000_000 * 10**9


def _venue(history, fast=True):
    v = Venue(load_sim_instruments(names=["EUR_USD", "USD_JPY"]), clock=lambda: T0, balance="100000000",
              history=history)
    v.fast_path = fast
    v.set_price("EUR_USD", P("1.10000"), P("1.10010"))
    v.set_price("USD_JPY", parse_price("150.000", 3), parse_price("150.010", 3))
    return v, next(iter(v.accounts))


def _churn(v, aid, n, start=0):
    """n market orders, alternating buy/sell on EUR_USD, each with a client id."""
    eu = v.by_name["EUR_USD"]
    for j in range(start, start + n):
        r = v.place_order(aid, Order("MARKET", eu, 1000 if j % 2 == 0 else -1000, client_ext={"id": f"c{j}"}))
        assert r.status == 201 and "orderFillTransaction" in r.key_ids


def _keepers(v, aid):
    """What must never be forgotten: a resting limit, an open trade (USD_JPY), a
    trade with a take profit attached (pending dependent order)."""
    eu, uj = v.by_name["EUR_USD"], v.by_name["USD_JPY"]
    lim = v.place_order(aid, Order("LIMIT", eu, 500, price=P("1.00000"), client_ext={"id": "rest"})).order
    opened = v.place_order(aid, Order("MARKET", uj, 7000, client_ext={"id": "jpy"}))
    trade_id = opened.order.trade_opened_id
    return lim, trade_id


@pytest.mark.parametrize("fast", [True, False], ids=["kernel", "general"])
def test_containers_stay_bounded_and_open_state_is_kept(fast):
    h = 300
    v, aid = _venue(h, fast)
    lim, trade_id = _keepers(v, aid)
    acct = v.accounts[aid]
    for _ in range(6):
        _churn(v, aid, 5000, start=acct.last_id)
        assert len(acct.txns) - acct.txns.base < h + TRIM_BATCH
        assert len(acct.txns.types) < 3 * (h + TRIM_BATCH)  # with the kernel's dead prefix
        assert len(acct.orders) < (h + TRIM_BATCH) // 2 + 2
        assert len(acct.by_client) < (h + TRIM_BATCH) // 2 + 2
        assert len(acct.trades) < (h + TRIM_BATCH) // 2 + 2
    assert len(acct.txns) == acct.last_id and acct.txns.base > 50_000
    # open state survives
    assert v.find_order(acct, str(lim.id)) is lim and v.find_order(acct, "@rest") is lim and lim.id in acct.pending
    tr = v.find_trade(acct, str(trade_id))
    assert tr is not None and tr.state == "OPEN" and tr.units == 7000
    assert acct.positions[v.by_name["USD_JPY"].index].units == 7000
    assert v.cancel_order(aid, str(lim.id)).status == 200
    assert v.close_trade(aid, str(trade_id)).status == 200
    assert acct.positions[v.by_name["USD_JPY"].index].units == 0


@pytest.mark.parametrize("fast", [True, False], ids=["kernel", "general"])
def test_forgotten_ids_are_unknown_recent_ones_answer(fast):
    h = 100
    v, aid = _venue(h, fast)
    acct = v.accounts[aid]
    first = v.place_order(aid, Order("MARKET", v.by_name["EUR_USD"], 1000, client_ext={"id": "first"}))
    first_id, first_trade = first.order.id, first.order.trade_opened_id
    _churn(v, aid, 3000)
    base = acct.txns.base
    assert base > first_id + 1
    assert v.find_order(acct, str(first_id)) is None and v.find_order(acct, "@first") is None
    assert v.find_trade(acct, str(first_trade)) is None  # closed by the next sell, long forgotten
    assert acct.txn(first_id) is None and acct.txn(base) is None
    assert acct.txn(base + 1).id == base + 1 and acct.txn(acct.last_id).id == acct.last_id
    with pytest.raises(IndexError):
        acct.txns[base - 1]
    assert [t.id for t in acct.txns[base - 5:base + 2]] == [base + 1, base + 2]
    assert [t.id for t in acct.since(0)] == list(range(base + 1, acct.last_id + 1))
    # a cancel of a forgotten order: v20's ORDER_DOESNT_EXIST
    r = v.cancel_order(aid, str(first_id))
    assert r.status == 404 and r.error_code == "ORDER_DOESNT_EXIST"
    # the newest orders and trades answer
    last = acct.txn(acct.last_id - 1)  # the fill before the cancel's reject
    assert last.type == "ORDER_FILL" and v.find_order(acct, str(last.p.order.id)) is last.p.order
    assert v.find_order(acct, "@c2999") is last.p.order


_MIXED = r"""
import json, sys
from fastexec.sim.fixed import parse_price
from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.venue import Order, OnFill, Venue, HAVE_KERNEL
P = lambda s: parse_price(s, 5)
fast = sys.argv[1] == "1"
v = Venue(load_sim_instruments(names=["EUR_USD"]), clock=lambda: 10**18, balance="100000000",
          history=int(sys.argv[2]))
v.fast_path = fast and HAVE_KERNEL
eu = v.by_name["EUR_USD"]
aid = next(iter(v.accounts))
acct = v.accounts[aid]
px = [P("1.10000"), P("1.10050"), P("1.09950")]
out = []
for j in range(6000):
    v.set_price("EUR_USD", px[j % 3], px[j % 3] + P("0.00010"))
    k = j % 7
    if k == 0:
        v.place_order(aid, Order("MARKET", eu, 3000, client_ext={"id": f"m{j}"}, tp=OnFill(price=P("1.20000"))))
    elif k == 1:
        v.place_order(aid, Order("LIMIT", eu, -1000, price=P("1.10040"), client_ext={"id": f"l{j}"}))
    elif k == 2:
        v.place_order(aid, Order("MARKET", eu, -1000, client_ext={"id": f"s{j}"}))
    elif k == 3:
        for o in list(acct.pending.values())[:1]:
            if o.type == "LIMIT":
                v.cancel_order(aid, str(o.id))
    elif k == 4:
        v.place_order(aid, Order("MARKET", eu, 1000, client_ext={"id": f"b{j}"}, tif="IOC"))
    elif k == 5 and acct.open_trades:
        v.close_trade(aid, str(next(iter(acct.open_trades))), 500 if j % 2 else "ALL")
    else:
        v.place_order(aid, Order("MARKET", eu, -2000, client_ext={"id": f"x{j}"}))
    if j % 250 == 249:
        out.append([acct.txns.base, acct.last_id, sorted(acct.orders), sorted(acct.by_client), sorted(acct.trades),
                    sorted(acct.pending), sorted(acct.open_trades), str(acct.balance), len(acct.txns),
                    [t.id for t in acct.txns][:2], acct.txns[acct.txns.base].id,
                    [(t.id, t.type) for t in acct.since(acct.last_id - 3)]])
print(json.dumps([HAVE_KERNEL, out]))
"""


def _run_mixed(fast: bool, pure: bool, history: int = 50):
    env = dict(os.environ)
    if pure:
        env["FASTEXEC_SIM_PURE"] = "1"
    else:
        env.pop("FASTEXEC_SIM_PURE", None)
    p = subprocess.run([sys.executable, "-c", _MIXED, "1" if fast else "0", str(history)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("history", [50, 5000], ids=["short", "longer-than-a-trim"])
def test_kernel_general_and_pure_python_forget_the_same(history):
    """Trimming in the kernel (``_fill.trim``) and in venue.py (``_trim``)
    forgets exactly the same orders, trades and transactions, with pending
    orders, on-fill exits and open trades in play, and the log reads the
    same (with a history longer than TRIM_BATCH the kernel's lists keep a
    dead prefix between compactions)."""
    kernel = _run_mixed(fast=True, pure=False, history=history)
    general = _run_mixed(fast=False, pure=False, history=history)
    pure = _run_mixed(fast=True, pure=True, history=history)
    assert kernel[0] is True and pure[0] is False
    assert kernel[1] == general[1] == pure[1]
    trace = kernel[1]
    assert trace[-1][0] > 0  # it did forget
    for base, last, orders, by_client, trades, pending, open_trades, _bal, n, first, oldest, _tail in trace:
        assert set(pending) <= set(orders) and set(open_trades) <= set(trades)
        assert last - base < history + TRIM_BATCH
        assert len(orders) < history + TRIM_BATCH + len(pending)
        assert n == last and first[0] == oldest == base + 1


def test_closed_trade_is_kept_while_a_retained_fill_reduced_or_closed_it():
    """A trade opened long ago and reduced recently stays, and so does its
    closing fill's order: GET /changes can render every fill in the window."""
    v, aid = _venue(20, fast=True)
    acct = v.accounts[aid]
    uj = v.by_name["USD_JPY"]
    opened = v.place_order(aid, Order("MARKET", uj, 9000)).order
    tid = opened.trade_opened_id
    _churn(v, aid, 2100)  # the opening fill is forgotten
    assert acct.txns.base > opened.fill_txn and acct.txn(opened.fill_txn) is None
    assert v.find_order(acct, str(opened.id)) is None
    assert v.find_trade(acct, str(tid)).state == "OPEN"
    v.close_trade(aid, str(tid), 4000)
    _churn(v, aid, 2100, start=5000)
    assert v.find_trade(acct, str(tid)).units == 5000  # still open: never forgotten
    closing = v.close_trade(aid, str(tid)).order
    assert v.find_trade(acct, str(tid)).state == "CLOSED"
    _churn(v, aid, 5, start=9000)
    assert v.find_trade(acct, str(tid)) is not None  # its closing fill is still retained
    _churn(v, aid, 2100, start=10000)
    assert acct.txns.base > closing.fill_txn
    assert v.find_trade(acct, str(tid)) is None and v.find_order(acct, str(closing.id)) is None


def test_history_none_keeps_everything_and_bad_values_are_refused():
    v, aid = _venue(None)
    _churn(v, aid, 2500)
    acct = v.accounts[aid]
    assert acct.txns.base == 0 and len(acct.orders) == 2500 and acct.history is None
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(ValueError):
            Venue(history=bad)
    dv = Venue()
    assert next(iter(dv.accounts.values())).history == DEFAULT_HISTORY


def test_in_process_broker_transactions_since_before_the_window_is_416():
    v, aid = _venue(50)
    b = SimulatedBroker(v)
    asyncio.run(b.start())

    def run(coro):
        return asyncio.new_event_loop().run_until_complete(coro)

    for j in range(2100):
        run(b.submit(OrderRequest(f"r{j}", aid, "EUR_USD", 1000 if j % 2 == 0 else -1000)))
    acct = v.accounts[aid]
    base = acct.txns.base
    assert base > 0
    with pytest.raises(BrokerError) as e:
        run(b.transactions_since(aid, base - 1))
    assert e.value.status == 416
    evs = run(b.transactions_since(aid, base))
    assert evs and evs[0].txn_id in (base + 1, base + 2)
    assert run(b.order_by_client_id(aid, "r0")) is None
    assert run(b.order_by_client_id(aid, "r2099")).broker_order_id == str(acct.last_id - 1)


async def test_v20_http_answers_for_forgotten_ids():
    v, aid = _venue(60)
    async with SimServer(venue=v) as sim:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            url = f"{sim.base_url}/v3/accounts/{aid}"

            async def call(method, path, body=None):
                async with s.request(method, url + path, json=body) as r:
                    return r.status, await r.json(content_type=None)

            st, body = await call("POST", "/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD",
                                                                "units": "100", "clientExtensions": {"id": "old"}}})
            assert st == 201
            old_order = body["orderCreateTransaction"]["id"]
            old_trade = body["orderFillTransaction"]["tradeOpened"]["tradeID"]
            st, _ = await call("POST", "/orders", {"order": {"type": "MARKET", "instrument": "EUR_USD",
                                                             "units": "-100"}})
            assert st == 201
            _churn(v, aid, 2100)
            base = v.accounts[aid].txns.base
            last = v.accounts[aid].last_id
            assert base > int(old_order)

            st, body = await call("GET", f"/orders/{old_order}")
            assert st == 404 and body["errorCode"] == "NO_SUCH_ORDER" and body["lastTransactionID"] == str(last)
            st, body = await call("GET", "/orders/@old")
            assert st == 404 and body["errorCode"] == "NO_SUCH_ORDER"
            st, body = await call("GET", f"/trades/{old_trade}")
            assert st == 404 and body["errorCode"] == "NO_SUCH_TRADE"
            st, body = await call("GET", f"/transactions/{old_order}")
            assert st == 404 and body["errorCode"] == "NO_SUCH_TRANSACTION"
            st, body = await call("PUT", f"/orders/{old_order}/cancel")
            assert st == 404 and body["orderCancelRejectTransaction"]["rejectReason"] == "ORDER_DOESNT_EXIST"
            last = v.accounts[aid].last_id  # the reject took an id

            # ranges reaching before the window: 416; from its edge on: 200
            st, _ = await call("GET", f"/transactions/sinceid?id={base - 1}")
            assert st == 416
            st, body = await call("GET", f"/transactions/sinceid?id={base}")
            assert st == 200 and [t["id"] for t in body["transactions"]] == [str(i) for i in range(base + 1, last + 1)]
            st, _ = await call("GET", f"/transactions/idrange?from=1&to={base + 3}")
            assert st == 416
            st, body = await call("GET", f"/transactions/idrange?from={base + 1}&to={base + 3}")
            assert st == 200 and len(body["transactions"]) == 3
            st, _ = await call("GET", f"/changes?sinceTransactionID={base - 1}")
            assert st == 416
            st, body = await call("GET", f"/changes?sinceTransactionID={base}")
            assert st == 200 and len(body["changes"]["transactions"]) == last - base
            st, body = await call("GET", "/transactions")
            assert st == 200 and body["count"] == last - base
            assert body["pages"][0].endswith(f"idrange?from={base + 1}&to={min(last, base + 100)}")

            # recent history answers
            st, body = await call("GET", f"/transactions/{last - 1}")
            assert st == 200 and body["transaction"]["type"] == "ORDER_FILL"
            st, body = await call("GET", f"/orders/{last - 2}")
            assert st == 200 and body["order"]["state"] == "FILLED"
            st, body = await call("GET", "/orders?state=ALL&count=500")
            assert st == 200 and body["orders"] and all(int(o["id"]) > base - 1 for o in body["orders"])
            st, body = await call("GET", "/trades?state=CLOSED&count=500")
            assert st == 200 and body["trades"]


async def test_client_extension_id_change_frees_the_old_id():
    v, aid = _venue(None)
    async with SimServer(venue=v) as sim:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as s:
            url = f"{sim.base_url}/v3/accounts/{aid}"
            async with s.post(url + "/orders", json={"order": {"type": "LIMIT", "instrument": "EUR_USD",
                                                               "units": "100", "price": "1.00000",
                                                               "clientExtensions": {"id": "a"}}}) as r:
                assert r.status == 201
            async with s.put(url + "/orders/@a/clientExtensions", json={"clientExtensions": {"id": "b"}}) as r:
                assert r.status == 200
            async with s.get(url + "/orders/@b") as r:
                assert r.status == 200
            async with s.get(url + "/orders/@a") as r:
                assert r.status == 404
    assert set(v.accounts[aid].by_client) == {"b"}
