"""The compiled market-order fast path (``fastexec.sim._fill``) against the
general Python path it short-cuts: same transactions, same state, same v20
JSON, same broker events — and the fast path really is the one that runs."""
from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastexec.sim.broker as broker_mod
import fastexec.sim.venue as venue_mod
from fastexec.brokers.base import ExitDetails, OrderFilled, OrderRequest, TimeInForce
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.fixed import round_half_even_int
from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.testing import run_inline
from fastexec.sim.venue import Order, Venue

from .fill_scenario import run

HERE = os.path.dirname(__file__)


def test_kernel_is_built_and_in_use():
    assert venue_mod.HAVE_KERNEL
    assert Order.__module__ == "fastexec.sim._fill"
    assert Venue().fast_path
    from fastexec.sim import _fill

    assert _fill.DIRECT_EVENTS  # OrderFilled built through its slots (equality with the constructor: below)


def _record_fast_path(monkeypatch, module, name):
    """Wrap ``module.name`` (a fast-path entry that returns None when it
    declines) so a test can see which side of the split each call took;
    returns the list of outcomes (True = fast path) and the original."""
    taken = []
    real = getattr(module, name)

    def recording(*a):
        out = real(*a)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(module, name, recording)
    return taken, real


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fast_path_matches_the_general_path_exactly(seed, monkeypatch):
    taken, real = _record_fast_path(monkeypatch, venue_mod, "_place_market")
    fast = run(seed, fast=True)
    assert taken.count(True) > 100 and taken.count(False) > 20  # both sides of the split were exercised
    monkeypatch.setattr(venue_mod, "_place_market", real)
    ref = run(seed, fast=False)
    assert fast.keys() == ref.keys()
    for aid in ref:
        for part in ref[aid]:
            assert fast[aid][part] == ref[aid][part], (aid, part)


def test_pure_python_fallback_gives_the_same_history():
    """Without the extension (FASTEXEC_SIM_PURE=1) the venue's own classes run
    everything; the result must be byte-identical to the compiled run."""
    env = dict(os.environ, FASTEXEC_SIM_PURE="1")
    out = subprocess.run([sys.executable, os.path.join(HERE, "fill_scenario.py"), "2"], env=env, capture_output=True,
                         check=True, timeout=120)
    got = orjson.loads(out.stdout)
    assert got["kernel"] is False  # the subprocess really ran the pure-Python classes
    pure = got["snapshot"]
    compiled = orjson.loads(orjson.dumps(run(2, fast=True), option=orjson.OPT_SORT_KEYS))
    assert pure == compiled


def test_broker_events_are_the_same_on_both_paths():
    def events(fast):
        v = Venue(load_sim_instruments(names=["EUR_USD", "USD_JPY"]), balance="1000000", clock=lambda: 10**18)
        v.fast_path = fast
        b = SimulatedBroker(v)
        aid = b.account_ids()[0]
        out = []
        for i, u in enumerate([1000, 500, -2000, 700, -200, 3000, -3000, 10**9]):
            kw = {"comment": "c", "time_in_force": TimeInForce.IOC} if i % 2 else {"tag": "x"}
            coro = b.submit(OrderRequest(f"e{i}", aid, "USD_JPY" if i in (5, 6) else "EUR_USD", u, **kw))
            try:
                coro.send(None)
            except StopIteration as done:
                out.append(done.value)
        return out

    fast, ref = events(True), events(False)
    assert fast == ref
    fills = [e for evs in fast for e in evs if isinstance(e, OrderFilled)]
    assert len(fills) == 7 and len(fills[2].trades_closed) == 2 and fills[2].trade_opened_id is not None


def test_booking_fills_leaves_no_collector_tracked_history():
    """The venue's per-order history is invisible to the cyclic collector:
    thousands of fills add (almost) no tracked objects, so full collections
    do not grow with the history."""
    v = Venue(load_sim_instruments(names=["EUR_USD"]), balance="1000000000")
    aid = next(iter(v.accounts))
    inst = v.by_name["EUR_USD"]
    for i in range(200):
        v.place_order(aid, Order("MARKET", inst, 1000 if i & 1 else -1000, client_ext={"id": f"w{i}"}))
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        v.place_order(aid, Order("MARKET", inst, 1000 if i & 1 else -1000, client_ext={"id": f"x{i}"}))
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert v.accounts[aid].last_id > 10_000
    assert grown < 50, grown  # was about 3 tracked objects per order (order, trade, lists)


_PL_DEN = 10**17
_MARGIN_DEN2 = 2 * 10**29
_factor = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=400, deadline=None)
@given(a=_factor, b=_factor, c=st.one_of(st.just(1), st.integers(0, 10**18)), d=st.one_of(st.just(1), st.integers(0, 10**15)),
       den=st.sampled_from([_PL_DEN, 2 * _PL_DEN, _MARGIN_DEN2]))
def test_kernel_rounding_is_the_exact_half_even_rounding(a, b, c, d, den):
    """The kernel's int128 product-and-round equals the big-int reference,
    including products that overflow int128 (it falls back to Python ints)."""
    from fastexec.sim import _fill

    assert _fill._mul_rhe(a, b, c, d, den) == round_half_even_int(a * b * c * d, den) * 100


@pytest.mark.parametrize("num", [5, 15, 25, -5, -15, -25, 149, -149, 151, -151, 0])
def test_kernel_rounding_ties_go_to_even(num):
    from fastexec.sim import _fill

    assert _fill._mul_rhe(num * 10**15, 1, 1, 1, _PL_DEN) == round_half_even_int(num * 10**15, _PL_DEN) * 100


def test_broker_market_order_closing_a_trade_with_exits_is_placed_once():
    """A plain market order that closes a trade carrying a stop loss and take
    profit books more than its fill (the exits' cancels): the broker must map
    that batch, never run the order a second time (regression)."""
    def run_(fast):
        v = Venue(load_sim_instruments(names=["EUR_USD"]), balance="100000", clock=lambda: 10**18)
        v.fast_path = fast
        v.set_price("EUR_USD", 1_100_000_000, 1_100_020_000)
        b = SimulatedBroker(v)
        aid = b.account_ids()[0]
        evs = []
        for req in (OrderRequest("a", aid, "EUR_USD", 2500, stop_loss=ExitDetails(distance=530_000),
                                 take_profit=ExitDetails(price=1_100_480_000)),
                    OrderRequest("b", aid, "EUR_USD", -10_000)):
            coro = b.submit(req)
            try:
                coro.send(None)
            except StopIteration as done:
                evs.append(done.value)
        acct = v.accounts[aid]
        return evs, [(o.id, o.client_id, o.state) for o in acct.orders.values()], acct.last_id

    fast, ref = run_(True), run_(False)
    assert fast == ref
    evs, orders, _ = fast
    assert [cid for _, cid, _ in orders].count("b") == 1
    assert [type(e).__name__ for e in evs[1]] == ["OrderFilled", "OrderCancelled", "OrderCancelled"]
    assert evs[1][0].trades_closed == ("4",) and evs[1][0].trade_opened_id is not None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_broker_fast_path_matches_the_general_path(seed, monkeypatch):
    """Random flows through SimulatedBroker.submit: same events (returned and
    asynchronous), same venue, and each order placed once."""
    from .fill_scenario import run_broker

    taken, real = _record_fast_path(monkeypatch, broker_mod, "_submit_now")
    fast_events, fast_state = asyncio.run(run_broker(seed, True))
    assert taken.count(True) > 50
    monkeypatch.setattr(broker_mod, "_submit_now", real)
    ref_events, ref_state = asyncio.run(run_broker(seed, False))
    assert fast_events == ref_events
    assert fast_state == ref_state


def test_kernel_account_and_log_have_the_python_fields_and_reads():
    """The kernel's typed Account/TxnLog stand in for venue.py's: same fields
    (same initial values), same transaction reads."""
    from fastexec.sim import _fill

    assert venue_mod.Account is _fill.Account and venue_mod.TxnLog is _fill.TxnLog
    src = venue_mod.__dict__  # the pure-Python classes are shadowed; rebuild them from the source
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(venue_mod))
    py_slots = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ("Account", "TxnLog"):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and stmt.targets[0].id == "__slots__":
                    py_slots[node.name] = set(ast.literal_eval(stmt.value))
    assert src["Account"] is _fill.Account
    acct = _fill.Account("101-001-0000001-001", 1, "USD", 5)
    for name in py_slots["Account"]:
        getattr(acct, name)  # every field exists
    assert {n for n in dir(acct) if not n.startswith("_") and not callable(getattr(acct, n))} == py_slots["Account"]
    assert {n for n in dir(acct.txns) if not n.startswith("_") and not callable(getattr(acct.txns, n))} == \
        py_slots["TxnLog"]
    assert (acct.balance, acct.last_id, acct.alias, acct.gslo_mode, acct.hedging, acct.routes) == (0, 0, "Primary",
                                                                                                    "ALLOWED", False, [])

    v = Venue(load_sim_instruments(names=["EUR_USD"]), balance="1000000", clock=lambda: 10**18)
    aid = next(iter(v.accounts))
    v.place_order(aid, Order("MARKET", v.by_name["EUR_USD"], 1000, client_ext={"id": "x"}))
    a = v.accounts[aid]
    assert len(a.txns) == a.last_id == 4
    assert [t.type for t in a.txns] == ["CREATE", "TRANSFER_FUNDS", "MARKET_ORDER", "ORDER_FILL"]
    assert [t.id for t in a.since(2)] == [3, 4] and a.txn(4).p.units == 1000 and a.txn(5) is None
    assert a.txns[-1].id == 4 and [t.id for t in a.txns[1:3]] == [2, 3]
    with pytest.raises(IndexError):
        a.txns[4]


def _listener_run(fast, react):
    """A broker and a second venue listener (a stream, the HTTP face) over one
    venue; the listener optionally places an order of its own in reaction."""
    v = Venue(load_sim_instruments(names=["EUR_USD"]), balance="1000000", clock=lambda: 10**18)
    v.fast_path = fast
    b = SimulatedBroker(v)
    aid = b.account_ids()[0]
    handled, seen = [], []
    b.set_event_handler(handled.append)
    asyncio.run(b.start())

    def other(acct, batch):
        seen.append([(t.id, t.type) for t in batch])
        if react and batch[0].type == "MARKET_ORDER" and batch[0].p.client_id == "r1":
            v.place_order(aid, Order("MARKET", v.by_name["EUR_USD"], -300, client_ext={"id": "side"}))

    v.on_transactions(other)
    evs = [run_inline(b.submit(OrderRequest(cid, aid, "EUR_USD", u))) for cid, u in (("r1", 1000), ("r2", -400))]
    v.remove_transactions_listener(other)
    evs.append(run_inline(b.submit(OrderRequest("r3", aid, "EUR_USD", 100))))
    asyncio.run(b.stop())
    return evs, handled, seen, b._in_request


@pytest.mark.parametrize("react", [False, True])
def test_other_listeners_see_the_fast_path_batches_as_on_the_general_path(react, monkeypatch):
    taken, real = _record_fast_path(monkeypatch, broker_mod, "_submit_now")
    fast = _listener_run(True, react)
    assert taken == [True, True, True]
    assert fast == _listener_run(False, react)
    evs, handled, seen, in_request = fast
    assert [e.client_id for r in evs for e in r] == ["r1", "r2", "r3"]  # each request answered with its own fill
    assert in_request == 0
    assert seen[0] == [(3, "MARKET_ORDER"), (4, "ORDER_FILL")]
    if react:  # the listener's own order reached the broker's handler? not inside the broker's request
        assert seen[1] == [(5, "MARKET_ORDER"), (6, "ORDER_FILL")] and handled == []
    else:
        assert handled == [] and len(seen) == 2


def test_general_path_answers_with_its_own_fill_when_a_listener_reenters():
    """The venue closes a batch (listeners run) after taking its bounds: a listener that
    books an order of its own in reaction does not swap the request's answer."""
    evs, _, seen, _ = _listener_run(False, True)
    assert [e.client_id for r in evs for e in r] == ["r1", "r2", "r3"]
    assert seen[1] == [(5, "MARKET_ORDER"), (6, "ORDER_FILL")]  # the listener's order: booked, its own batch


def test_broker_fast_path_declines_what_it_does_not_handle():
    """Unknown accounts and request objects that are not exactly an
    OrderRequest go the general way (same answer as before)."""
    from fastexec.brokers.base import BrokerError
    from fastexec.sim import _fill

    v = Venue(load_sim_instruments(names=["EUR_USD"]), balance="1000000", clock=lambda: 10**18)
    b = SimulatedBroker(v)
    aid = b.account_ids()[0]
    assert _fill.broker_market(v, OrderRequest("u", "nope", "EUR_USD", 10), b) is None
    with pytest.raises(BrokerError) as e:
        run_inline(b.submit(OrderRequest("u", "nope", "EUR_USD", 10)))
    assert e.value.status == 404

    class Req(OrderRequest):
        __slots__ = ()

    assert _fill.broker_market(v, Req("s", aid, "EUR_USD", 10), b) is None
    evs = run_inline(b.submit(Req("s", aid, "EUR_USD", 10)))
    assert [type(e).__name__ for e in evs] == ["OrderFilled"] and evs[0].client_id == "s"
    assert v.accounts[aid].last_id == 4  # placed once


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["EUR_USD", "USD_JPY", "EUR_GBP"]),
                          st.integers(-5000, 5000).filter(bool),
                          st.sampled_from([None, TimeInForce.FOK, TimeInForce.IOC, TimeInForce.GTC]),
                          st.sampled_from([None, "t"]), st.sampled_from([None, "c"]),
                          st.sampled_from(["a", "b", "c", "d"])), min_size=1, max_size=25))
def test_broker_fast_path_random_orders_match_the_general_path(orders):
    """Random plain (and not so plain) market requests through both paths:
    the same events and the same venue afterwards."""
    from .fill_scenario import snapshot

    def go(fast):
        v = Venue(load_sim_instruments(names=["EUR_USD", "USD_JPY", "EUR_GBP", "GBP_USD"]), balance="50000",
                  clock=lambda: 10**18, liquidity=4000)
        v.fast_path = fast
        b = SimulatedBroker(v)
        aid = b.account_ids()[0]
        out = []
        for k, (name, units, tif, tag, comment, cid) in enumerate(orders):
            out.append(run_inline(b.submit(OrderRequest(f"{cid}{k % 3}", aid, name, units, time_in_force=tif, tag=tag,
                                                   comment=comment))))
        return out, snapshot(v)

    assert go(True) == go(False)
