"""The ledger against the simulated broker when exits close specific trades.

Stop losses, take profits and close-trade requests close the trade they are
attached to, not the oldest one. Fed every fill with the trade ids the broker
reports (``trade_opened_id``, ``trades_closed``), the ledger's lots and
balance equal the venue's trades and balance after every step; fed the same
fills without ids (FIFO), it does not.
"""
import random

import pytest

from fastexec._core.instruments import load_instruments
from fastexec._core.positions import Ledger
from fastexec.brokers.base import ExitDetails, OrderFilled, OrderRequest
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.fixed import parse_price
from fastexec.sim.venue import Venue

TABLE = load_instruments()
EU = "EUR_USD"
TICK = 10**4  # 0.00001 at PRICE_SCALE


def P(s):
    return parse_price(s, 5)


def _ids(ev):
    """The broker's trade ids of a fill, as ints (v20 ids are decimal strings)."""
    opened = int(ev.trade_opened_id) if ev.trade_opened_id else 0
    return opened, tuple(int(t) for t in ev.trades_closed) or None


class Books:
    """A ledger fed with trade ids and one fed FIFO only, side by side."""

    def __init__(self, balance):
        self.named = Ledger(TABLE, 1)
        self.fifo = Ledger(TABLE, 1)
        for L in (self.named, self.fifo):
            L.add_account("acc", "USD", balance)
        self.i = TABLE.index(EU)
        self.fills = 0

    def mark(self, bid, ask):
        for L in (self.named, self.fifo):
            L.mark(self.i, bid, ask)

    def on_event(self, ev):
        if not isinstance(ev, OrderFilled):
            return
        opened, closed = _ids(ev)
        self.named.apply_fill(0, self.i, ev.units, ev.price, 0, opened, closed)
        self.fifo.apply_fill(0, self.i, ev.units, ev.price)
        charge = ev.financing - ev.commission
        for L in (self.named, self.fifo):
            if charge:
                L.apply_charge(0, charge)
        self.fills += 1
        if ev.account_balance is not None:
            assert self.named.account_state(0).balance == ev.account_balance


def venue_lots(v, aid):
    pos = v.accounts[aid].positions.get(TABLE.index(EU))
    return [(t.units, t.price, t.id) for t in (pos.trades if pos is not None else [])]


async def _walk(seed, steps=250):
    rng = random.Random(seed)
    v = Venue(seed=seed, balance="100000")
    bid = P("1.10000")
    v.set_price(EU, bid, bid + 2 * TICK)
    b = SimulatedBroker(v)
    aid = b.account_ids()[0]
    books = Books(v.accounts[aid].balance)
    books.mark(bid, bid + 2 * TICK)
    b.set_event_handler(books.on_event)
    await b.start()
    diverged = False
    for step in range(steps):
        op = rng.random()
        if op < 0.35:                                   # market order, maybe with exits
            units = rng.choice([1, -1]) * rng.choice([100, 1_000, 2_500, 10_000])
            ask = bid + 2 * TICK
            sl = tp = None
            if rng.random() < 0.6:
                sl = ExitDetails(distance=rng.randint(5, 60) * TICK)
            if rng.random() < 0.6:
                d = rng.randint(5, 60) * TICK
                tp = ExitDetails(price=ask + d if units > 0 else bid - d)
            evs = await b.submit(OrderRequest(f"c{step}", aid, EU, units, stop_loss=sl, take_profit=tp))
        elif op < 0.55:                                 # close one trade by id, all or part
            trades = venue_lots(v, aid)
            if not trades:
                continue
            u, _, tid = rng.choice(trades)
            part = rng.choice(["ALL", max(1, abs(u) // rng.choice([2, 3, 4]))])
            evs = await b.close_trade(aid, str(tid), part)
        else:                                           # the price moves: exits may trigger
            bid = max(P("1.00000"), bid + rng.randint(-25, 25) * TICK)
            books.mark(bid, bid + 2 * TICK)
            v.set_price(EU, bid, bid + 2 * TICK)        # exit fills reach the handler
            evs = []
        for ev in evs:
            books.on_event(ev)
        assert books.named.lots(0, books.i) == venue_lots(v, aid), step
        assert books.named.account_state(0).balance == v.accounts[aid].balance, step
        assert books.named.position(0, books.i).units == sum(u for u, _, _ in venue_lots(v, aid))
        diverged |= books.fifo.account_state(0).balance != v.accounts[aid].balance
    await b.stop()
    assert books.named.unmatched_trade_ids == 0
    return books.fills, diverged


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_ledger_with_trade_ids_equals_the_venue_fifo_does_not(seed):
    fills, diverged = await _walk(seed)
    assert fills > 50
    # per-trade exits make FIFO realize against the wrong lots
    assert diverged


def test_bench_decimal_reference_closes_named_lots_like_the_core():
    """bench/reference/decimal_core.py (the benchmarks' yardstick) follows the
    same named-close rule as the core."""
    import importlib.util
    import os
    import sys
    from decimal import Decimal

    path = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "reference", "decimal_core.py")
    spec = importlib.util.spec_from_file_location("_fastexec_bench_decimal_core_named", path)
    dc = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = dc
    spec.loader.exec_module(dc)
    rng = random.Random(7)
    L = Ledger(TABLE, 1)
    R = dc.DecimalLedger(list(TABLE))
    L.add_account("acc", "USD", 10**12)
    R.add_account("USD", Decimal(10**6))
    i = TABLE.index(EU)
    L.mark(i, P("1.10000"), P("1.10002"))
    R.mark(i, Decimal("1.10000"), Decimal("1.10002"))
    tid = 0
    for _ in range(400):
        lots = L.lots(0, i)
        px = P("1.10000") + rng.randint(-300, 300) * TICK
        dpx = Decimal(px) / 10**9
        if lots and rng.random() < 0.5:
            named = [rng.choice(lots)[2] for _ in range(rng.randint(1, 3))] + ([10**9] if rng.random() < 0.2 else [])
            size = sum(abs(u) for u, _, t in lots if t in named) + rng.choice([-50, 0, 0, 70, 10**4])
            units = -max(1, size) if lots[0][0] > 0 else max(1, size)
            tid += 1
            got = L.apply_fill(0, i, units, px, 0, tid, tuple(named))
            want = R.apply_fill(0, i, units, dpx, None, tid, tuple(named))
        else:
            tid += 1
            units = rng.choice([1, -1]) * rng.choice([100, 1_000, 5_000])
            got = L.apply_fill(0, i, units, px, 0, tid)
            want = R.apply_fill(0, i, units, dpx, None, tid)
        assert got == int(want * 10**6)
        assert L.lots(0, i) == [(u, int(p * 10**9), t) for u, p, t in R.accounts[0].positions[i].lots]
        assert L.unmatched_trade_ids == R.unmatched_trade_ids
