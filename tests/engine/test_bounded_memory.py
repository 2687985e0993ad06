"""Memory stays bounded per order: 50k market orders through the engine over
the in-process simulated venue leave every per-order container at its bound
(the engine's finished-order maps, the venue's history), not at 50k."""
from __future__ import annotations

import asyncio

from fastexec.config import Settings
from fastexec.engine import Engine, OrderSpec
from fastexec.engine.hotpath import SEEN_WINDOW
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.testing import run_inline
from fastexec.sim.venue import TRIM_BATCH, Venue

N = 50_000


_drive = run_inline  # fastexec.sim.testing: a submit that yields is an error


def test_fifty_thousand_orders_leave_every_container_bounded():
    settings = Settings(max_orders_per_second=10**9, max_position_size=10**9, max_units_per_order=10**9,
                        max_daily_loss=10**15, max_concurrent_orders=10**6)
    history = 2000
    venue = Venue(seed=1, accounts=1, balance="100000000", history=history)
    eng = Engine(settings, SimulatedBroker(venue), retain_terminal=1000)
    eng.retire_batch = 512
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(eng.start())
        aid = eng.account_ids[0]
        specs = (OrderSpec(aid, "EUR_USD", "buy", 1000), OrderSpec(aid, "EUR_USD", "sell", 1000))
        first = _drive(eng.submit(specs[0]))
        for i in range(1, N):
            v = _drive(eng.submit(specs[i & 1]))
            assert v.status == "filled"
        acct = venue.accounts[aid]
        # the venue: its last `history` transactions (+ one trim batch) and what they concern
        assert acct.last_id >= 2 * N and acct.txns.base >= 2 * N - history - TRIM_BATCH
        assert len(acct.txns) - acct.txns.base < history + TRIM_BATCH  # retained transactions
        # storage, with the cleared prefix the log drops once it is twice the rest
        assert len(acct.txns.types) <= 3 * (history + TRIM_BATCH)
        for name in ("orders", "by_client", "trades"):
            assert len(getattr(acct, name)) <= (history + TRIM_BATCH) // 2 + 1, name
        assert not acct.pending and not acct.open_trades and len(acct.positions) == 1
        # the engine: finished orders up to retain_terminal + retire_batch
        bound = eng.retain_terminal + eng.retire_batch
        for name in ("_orders", "_terminal"):
            assert len(getattr(eng, name)) <= bound, name
        assert sum(len(d) for d in eng._by_client) <= bound
        assert sum(len(d) for d in eng._by_broker.values()) <= bound
        assert len(eng._store) <= bound
        assert all(len(w) <= SEEN_WINDOW for w in eng._seen.values())  # a fixed window per account
        # the oldest order is forgotten by both; the newest answers from both
        assert eng._orders.get(first.order_id) is None
        assert venue.find_order(acct, "@" + first.client_order_id) is None
        assert eng.get_order(v.order_id).status == "filled"
        assert venue.find_order(acct, "@" + v.client_order_id) is not None
        assert eng.position(aid, "EUR_USD").units == 0
    finally:
        loop.run_until_complete(eng.stop())
        loop.close()


def test_redelivered_fill_older_than_the_trimmed_dedupe_window_is_not_booked_twice():
    from fastexec.brokers.base import OrderFilled, OrderRequest

    settings = Settings(max_orders_per_second=10**9, max_position_size=10**9, max_units_per_order=10**9,
                        max_daily_loss=10**15, max_concurrent_orders=10**6)
    eng = Engine(settings, SimulatedBroker(Venue(seed=1, accounts=1, balance="100000000")))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(eng.start())
        aid = eng.account_ids[0]
        # a fill the venue made on its own (not through the engine), delivered to the engine
        events = _drive(eng.broker.submit(OrderRequest("outside-1", aid, "EUR_USD", 1000)))
        fill = next(ev for ev in events if type(ev) is OrderFilled)
        eng._dispatch(fill)
        assert eng.position(aid, "EUR_USD").units == 1000
        eng._dispatch(fill)  # redelivered while its id is still in the set
        assert eng.position(aid, "EUR_USD").units == 1000
        # many newer transactions later the window has slid past the fill's id
        window = eng._seen[aid]
        assert window.record(fill.txn_id + SEEN_WINDOW + 10) is False
        assert window.floor == fill.txn_id + 10 and len(window) == 1
        eng._dispatch(fill)  # redelivered again: below the floor, still counts as applied
        assert eng.position(aid, "EUR_USD").units == 1000
    finally:
        loop.run_until_complete(eng.stop())
        loop.close()
