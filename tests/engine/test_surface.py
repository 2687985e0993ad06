"""The rest of the public surface: reads, listing with cursors, wire forms,
events, the journal seam, performance, the default broker, the trading day."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

import fastexec
from fastexec.config import Settings
from fastexec.engine import Engine, ExitSpec, OrderSpec, OrderView
from fastexec.engine.clock import trading_day_bounds
from fastexec.errors import NotFoundError, ValidationError

from .harness import T0, px


def _ns(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def test_package_reexports_the_engine_api():
    assert fastexec.Engine is Engine
    assert fastexec.OrderSpec is OrderSpec
    assert {"Engine", "OrderSpec", "ExitSpec", "OrderType", "OrderView"} <= set(dir(fastexec))
    with pytest.raises(AttributeError):
        fastexec.NotAThing


@pytest.mark.parametrize(
    "now, start, end",
    [
        # winter (EST, UTC-5): 17:00 New York = 22:00 UTC
        (_ns(2026, 1, 14, 15, 0), _ns(2026, 1, 13, 22, 0), _ns(2026, 1, 14, 22, 0)),
        (_ns(2026, 1, 14, 22, 0), _ns(2026, 1, 14, 22, 0), _ns(2026, 1, 15, 22, 0)),
        (_ns(2026, 1, 14, 21, 59, 59), _ns(2026, 1, 13, 22, 0), _ns(2026, 1, 14, 22, 0)),
        # summer (EDT, UTC-4): 21:00 UTC
        (_ns(2026, 7, 1, 21, 0), _ns(2026, 7, 1, 21, 0), _ns(2026, 7, 2, 21, 0)),
        # the day that spans the March DST change is 23 hours long
        (_ns(2026, 3, 8, 12, 0), _ns(2026, 3, 7, 22, 0), _ns(2026, 3, 8, 21, 0)),
    ],
)
def test_trading_day_rolls_at_17_new_york(now, start, end):
    assert trading_day_bounds(now) == (start, end)


async def test_views_and_wire_forms(h):
    v = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 1500, type="limit", price=px("1.09000"), stop_loss=ExitSpec(price=px("1.08000")),
                  client_order_id="c-1"),
        request_id="req-42",
    )
    assert isinstance(v, OrderView) and v.is_open
    d = v.to_dict()
    assert d["price"] == "1.09000" and d["units"] == "1500" and d["filled_units"] == "0"
    assert d["stop_loss"] == {"price": "1.08000"}
    assert d["status"] == "working" and d["request_id"] == "req-42"
    assert d["created_at"] == "2026-01-14T15:00:00.000000000Z"
    assert set(d["timings"]) == {"risk_ns", "broker_ns", "total_ns"}
    await h.engine.submit(OrderSpec(h.a1, "USD_JPY", "buy", 1000))
    pos = h.engine.position(h.a1, "USD_JPY").to_dict()
    assert pos["average_price"] == "150.010" and pos["side"] == "long" and pos["units"] == "1000"
    acct = h.engine.account(h.a1).to_dict()
    assert acct["balance"] == "100000.0000" and acct["currency"] == "USD" and acct["working_orders"] == 1
    assert h.engine.position(h.a1, "GBP_USD").to_dict()["side"] == "flat"
    assert h.engine.risk_limits(h.a1).to_dict()["max_leverage"] == "30"
    assert h.engine.validate(OrderSpec(h.a1, "EUR_USD", "buy", 1)).to_dict() == {
        "allowed": True, "code": "OK", "detail": "", "account_id": h.a1, "trading_state": "active"}
    ks = h.engine.kill_switch(h.a1).to_dict()
    assert ks["active"] is False and ks["account_id"] == h.a1


async def test_average_fill_price_keeps_decimals_beyond_the_quote(h):
    h.venue.liquidity = 1
    # two IOC fills at different prices: 1 @ 1.10010 and 2 @ 1.10020 -> VWAP 1.100166666...
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1, type="ioc"))
    h.quote("EUR_USD", "1.10010", "1.10020")
    h.venue.liquidity = 10**7
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 2, type="ioc"))
    pos = h.engine.position(h.a1, "EUR_USD")
    assert pos.average_price == 1_100_166_667
    assert pos.to_dict()["average_price"] == "1.100166667"


async def test_reads_of_unknown_things(h):
    for call in (lambda: h.engine.account("x"), lambda: h.engine.positions("x"), lambda: h.engine.risk_metrics("x"),
                 lambda: h.engine.get_order("x"), lambda: h.engine.position("x", "EUR_USD")):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(ValidationError):
        h.engine.position(h.a1, "EUR_XXX")


async def test_list_orders_filters_and_pages(h):
    ids = []
    for i in range(5):
        v = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 10 + i, type="limit", price=px("1.09000")))
        ids.append(v.order_id)
    await h.engine.submit(OrderSpec(h.a2, "USD_JPY", "sell", 5))
    await h.engine.cancel(ids[1])
    assert [o.order_id for o in h.engine.list_orders(account_id=h.a1)] == ids
    assert [o.order_id for o in h.engine.list_orders(account_id=h.a1, status="cancelled")] == [ids[1]]
    assert [o.order_id for o in h.engine.list_orders(status="open")] == [ids[0], *ids[2:]]
    assert [o.instrument for o in h.engine.list_orders(instrument="USD_JPY")] == ["USD_JPY"]
    page1 = h.engine.list_orders(account_id=h.a1, limit=2)
    page2 = h.engine.list_orders(account_id=h.a1, limit=2, after=page1[-1].order_id)
    assert [o.order_id for o in page1 + page2] == ids[:4]
    for kwargs in ({"status": "bogus"}, {"limit": 0}, {"limit": "5"}, {"after": "nope"}):
        with pytest.raises(ValidationError):
            h.engine.list_orders(**kwargs)
    with pytest.raises(NotFoundError):
        h.engine.list_orders(account_id="nope")


async def test_a_walk_through_list_orders_goes_on_when_the_cursor_order_is_retired(h):
    h.engine.retain_terminal = 5
    h.engine.retire_batch = 3
    working = (await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1, type="limit", price=px("1.09000")))).order_id
    first = [(await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1))).order_id for _ in range(3)]
    page = h.engine.list_orders(account_id=h.a1, limit=4)
    assert [o.order_id for o in page] == [working, *first]
    cursor = page[-1].order_id
    later = [(await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "sell", 1))).order_id for _ in range(12)]
    with pytest.raises(NotFoundError):
        h.engine.get_order(cursor)  # retired meanwhile
    rest = [o.order_id for o in h.engine.list_orders(account_id=h.a1, limit=100, after=cursor)]
    assert rest and set(rest) <= set(later) and rest == [i for i in later if i in rest]  # newer ones only, in order
    assert rest == [o.order_id for o in h.engine.list_orders(account_id=h.a1, limit=100)][1:]  # all held after it
    # another account's order as a cursor pages exactly as an id that was never issued at its place
    other = (await h.engine.submit(OrderSpec(h.a2, "EUR_USD", "buy", 1))).order_id
    assert h.engine.list_orders(account_id=h.a1, after=other) == []
    prefix, _, n = other.rpartition("-")
    never = f"{prefix}-{int(n) + 1000}"
    assert h.engine.list_orders(account_id=h.a1, after=never) == []
    assert h.engine.list_orders(account_id=h.a1, after=f"{prefix}-0") == h.engine.list_orders(account_id=h.a1)
    with pytest.raises(ValidationError) as err:
        h.engine.list_orders(after="no-such-order")  # not an engine id: not a cursor
    assert err.value.code == "INVALID_CURSOR"


async def test_journal_gets_the_command_before_the_broker_events(h):
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 100, client_order_id="j-1"), request_id="r-1")
    kinds = [r["type"] for r in h.journal.records]
    assert kinds == ["order.submitted", "broker.filled"]
    sub, fill = h.journal.records
    assert sub["request_id"] == "r-1" and sub["client_order_id"] == "j-1" and sub["units"] == 100
    assert sub["ts"] == T0 and sub["emulated"] is False
    assert fill["client_id"] == "j-1" and fill["units"] == 100
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 100, type="trailing_stop", trailing_distance=px("0.00100")))
    assert h.journal.records[-1]["type"] == "order.submitted" and h.journal.records[-1]["emulated"] is True
    h.engine.set_risk_limits(h.a1, max_position_size=500)
    assert h.journal.records[-1]["type"] == "risk.limits" and h.journal.records[-1]["limits"]["max_position_size"] == 500
    h.engine.set_trading_state(h.a1, "reducing")
    assert h.journal.records[-1] == {"type": "trading_state", "ts": T0, "account_id": h.a1, "state": "reducing"}


async def test_subscribers_get_events_and_can_leave(h):
    seen = []
    unsubscribe = h.engine.subscribe(seen.append)

    def broken(event):
        raise RuntimeError("subscriber bug")

    h.engine.subscribe(broken)  # must not break the engine
    v = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 100), request_id="r-9")
    kinds = [e.kind for e in seen]
    assert kinds == ["order_submitted", "order_filled", "position_changed"]
    assert seen[0].order_id == seen[1].order_id == v.order_id and seen[1].request_id == "r-9"
    assert seen[0].data.status == "pending" and seen[1].to_dict()["data"]["status"] == "filled"
    unsubscribe()
    await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 100))
    assert len(seen) == 3
    with pytest.raises(ValidationError):
        h.engine.subscribe("not callable")


async def test_performance_and_health(h):
    for _ in range(3):
        await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 100))
    perf = h.engine.performance()
    sub = perf["latency"]["submit"]
    assert sub["count"] == 3 and 0 < sub["p50_ns"] <= sub["p99_ns"] <= sub["max_ns"]
    assert perf["counters"]["orders"] == 3
    health = h.engine.health()
    assert health["ok"] and health["broker"]["name"] == "sim" and health["accounts"] == 2


async def test_default_engine_runs_on_the_simulated_venue_from_settings():
    engine = Engine(Settings(sim_accounts=3, sim_balance=5_000 * 10**6, sim_currency="USD", sim_tick_interval_ms=10))
    await engine.start()
    try:
        assert len(engine.account_ids) == 3
        assert engine.account(engine.account_ids[2]).balance == 5_000 * 10**6
        view = await engine.submit(OrderSpec(engine.account_ids[0], "EUR_USD", "buy", 100))
        assert view.status == "filled"
        assert engine.broker.name == "sim"
    finally:
        await engine.stop()


async def test_request_id_follows_an_emulated_order_into_later_logs(h, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="fastexec.engine")
    v = await h.engine.submit(
        OrderSpec(h.a1, "EUR_USD", "buy", 100, type="stop_limit", stop_price=px("1.10100"), price=px("1.10200")),
        request_id="req-trace-1",
    )
    h.quote("EUR_USD", "1.10100", "1.10110")  # later, outside the request: the trigger is logged with its id
    await h.settle()
    records = [r for r in caplog.records if getattr(r, "order_id", None) == v.order_id]
    assert records and all(r.request_id == "req-trace-1" for r in records)
    assert any("triggered" in r.getMessage() for r in records)


async def test_refusals_are_counted_by_code(h):
    from fastexec.errors import FastexecError

    h.engine.set_risk_limits(h.a1, max_units_per_order=10)
    for spec in (OrderSpec(h.a1, "EUR_USD", "buy", 11), OrderSpec(h.a1, "EUR_USD", "buy", 11),
                 OrderSpec(h.a1, "EUR_USD", "hold", 1)):
        with pytest.raises(FastexecError):
            await h.engine.submit(spec)
    counters = h.engine.performance()["counters"]
    assert counters["refused.MAX_UNITS_PER_ORDER"] == 2 and counters["refused.INVALID_SIDE"] == 1


async def test_finished_orders_are_forgotten_oldest_first_and_memory_stays_bounded(h):
    h.engine.retain_terminal = 5
    h.engine.retire_batch = 3
    working = await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy", 1, type="limit", price=px("1.09000")))
    ids = [(await h.engine.submit(OrderSpec(h.a1, "EUR_USD", "buy" if i % 2 else "sell", 1))).order_id
           for i in range(20)]
    kept = [o.order_id for o in h.engine.list_orders(limit=100)]
    assert working.order_id in kept  # open orders are never forgotten
    assert 5 <= len(kept) - 1 <= 8 and kept[-1] == ids[-1]
    with pytest.raises(NotFoundError):
        h.engine.get_order(ids[0])
    assert h.engine.performance()["counters"]["core_orders"] <= 9  # the core store forgot the same ones
    assert (await h.engine.cancel(working.order_id)).status == "cancelled"
