"""A seeded random order flow for comparing the venue's two execution paths.

``run(seed, fast)`` drives one venue through market orders of every size and
flavour the compiled fast path takes (buy/sell, opening, reducing, closing
several FIFO trades, cross-currency, client ids, FOK/IOC, REDUCE_FIRST) and
orders it must leave to the general path (limits, on-fill exits, price
bounds, REDUCE_ONLY, too large for margin or liquidity, duplicate client
ids), with price moves, trade closes and exits firing in between. It returns
everything a client could read, as v20 JSON, so two runs can be compared
exactly. Run as a script it prints that JSON (the pure-Python fallback is
compared through a subprocess with FASTEXEC_SIM_PURE=1).
"""
from __future__ import annotations

import random
import sys

import orjson

from fastexec.sim.instruments import load_sim_instruments
from fastexec.sim.render import render_account, render_order, render_position, render_trade, render_txn
from fastexec.sim.venue import OnFill, Order, Venue

T0 = 1_767_000_000 * 10**9


class Clock:
    """Advances 1 µs per reading, so every call is visible in the times."""

    def __init__(self):
        self.t = T0

    def __call__(self):
        self.t += 1000
        return self.t


def _step_price(v: Venue, rng: random.Random, name: str) -> None:
    inst = v.by_name[name]
    bid, ask, _ = v.price(name)
    mid = (bid + ask) // 2 // inst.unit + rng.randint(-40, 40)
    sp = rng.randint(1, 30)
    v.set_price(name, (mid - sp // 2) * inst.unit, (mid - sp // 2 + sp) * inst.unit)


def run(seed: int, fast: bool, steps: int = 600) -> dict:
    rng = random.Random(seed)
    v = Venue(load_sim_instruments(names=["EUR_USD", "USD_JPY", "EUR_GBP", "GBP_USD"]), seed=seed, accounts=2,
              balance="50000", clock=Clock(), liquidity=2_000_000)
    v.fast_path = fast
    eur = v.add_account(balance=40_000 * 10**6, currency="EUR")
    aids = list(v.accounts)
    assert eur.id in aids
    names = ["EUR_USD", "USD_JPY", "EUR_GBP"]
    cids = 0
    for _ in range(steps):
        aid = rng.choice(aids)
        name = rng.choice(names)
        inst = v.by_name[name]
        r = rng.random()
        if r < 0.10:
            _step_price(v, rng, rng.choice(names + ["GBP_USD"]))
            continue
        units = rng.choice([1, 7, 100, 1000, 2500, 10_000, 60_000, 1_000_000, 3_000_000]) * rng.choice([1, -1])
        kw: dict = {}
        if rng.random() < 0.5:
            cids += 1
            cid = f"c{cids}" if rng.random() < 0.9 else f"c{max(1, cids - 3)}"  # some reuse
            if rng.random() < 0.02:
                cid = ""
            kw["client_ext"] = {"id": cid, "tag": "t"}
        if r < 0.70:
            kw["tif"] = rng.choice(["FOK", "FOK", "IOC"])
            kw["position_fill"] = rng.choice(["DEFAULT", "DEFAULT", "REDUCE_FIRST", "REDUCE_ONLY", "OPEN_ONLY"])
            v.place_order(aid, Order("MARKET", inst, units, **kw))
        elif r < 0.78:
            bid, ask, _ = v.price(name)
            d = 50 * inst.unit
            if units > 0:
                kw["sl"] = OnFill(price=bid - d) if rng.random() < 0.5 else OnFill(distance=d)
                kw["tp"] = OnFill(price=ask + d)
            else:
                kw["sl"] = OnFill(price=ask + d)
            v.place_order(aid, Order("MARKET", inst, units, **kw))
        elif r < 0.84:
            bid, ask, _ = v.price(name)
            off = rng.randint(-30, 30) * inst.unit
            v.place_order(aid, Order("LIMIT", inst, units, price=(bid + ask) // 2 // inst.unit * inst.unit + off,
                                     **kw))
        elif r < 0.88:
            bid, ask, _ = v.price(name)
            v.place_order(aid, Order("MARKET", inst, units, price_bound=ask if units > 0 else bid, **kw))
        elif r < 0.94:
            trades = v.open_trades(aid)
            if trades:
                tr = rng.choice(trades)
                v.close_trade(aid, str(tr.id), rng.choice(["ALL", max(1, abs(tr.units) // 2)]))
        else:
            v.set_price(name, *v.price(name)[:2])  # re-tick: triggers, closeouts
    return snapshot(v)


def snapshot(v: Venue) -> dict:
    out = {}
    for aid, acct in v.accounts.items():
        out[aid] = {
            "account": render_account(v, acct, True),
            "txns": [render_txn(v, acct, t) for t in acct.txns],
            "orders": [render_order(v, acct, o) for o in acct.orders.values()],
            "trades": [render_trade(v, acct, t) for t in acct.trades.values()],
            "positions": [render_position(v, acct, p) for p in acct.positions.values()],
            "by_client": sorted((k, o.id) for k, o in acct.by_client.items()),
            "trades_by_client": sorted((k, t.id) for k, t in acct.trades_by_client.items()),
        }
    return out


if __name__ == "__main__":
    from fastexec.sim.venue import HAVE_KERNEL

    snap = run(int(sys.argv[1]), fast=False)
    sys.stdout.buffer.write(orjson.dumps({"kernel": HAVE_KERNEL, "snapshot": snap}, option=orjson.OPT_SORT_KEYS))


async def run_broker(seed: int, fast: bool, steps: int = 300) -> tuple:
    """The same kind of flow through ``SimulatedBroker`` (what the engine
    calls): every event it returns or hands to its handler, and the venue."""
    from fastexec.brokers.base import ExitDetails, OrderRequest, PositionFill, TimeInForce
    from fastexec.sim.broker import SimulatedBroker

    rng = random.Random(seed)
    v = Venue(load_sim_instruments(names=["EUR_USD", "USD_JPY"]), seed=seed, balance="100000", clock=Clock(),
              liquidity=2_000_000)
    v.fast_path = fast
    b = SimulatedBroker(v)
    aid = b.account_ids()[0]
    events: list = []
    b.set_event_handler(lambda e: events.append(("async", e)))
    await b.start()
    for step in range(steps):
        r = rng.random()
        name = rng.choice(["EUR_USD", "USD_JPY"])
        inst = v.by_name[name]
        if r < 0.6:
            units = rng.choice([1, 100, 1000, 2500, 10_000, 3_000_000]) * rng.choice([1, -1])
            kw: dict = {}
            if rng.random() < 0.3:
                bid, ask, _ = v.price(name)
                kw["stop_loss"] = ExitDetails(distance=rng.randint(5, 60) * inst.unit * 10)
                kw["take_profit"] = ExitDetails(price=(ask + 400 * inst.unit) if units > 0 else (bid - 400 * inst.unit))
            if rng.random() < 0.2:
                kw["time_in_force"] = TimeInForce.IOC
            if rng.random() < 0.1:
                kw["position_fill"] = PositionFill.REDUCE_ONLY
            cid = f"b{step}" if rng.random() < 0.95 else "dup"
            events.append(("submit", await b.submit(OrderRequest(cid, aid, name, units, tag="t", **kw))))
        elif r < 0.75:
            trades = v.open_trades(aid)
            if trades:
                tr = rng.choice(trades)
                events.append(("close", await b.close_trade(aid, str(tr.id), rng.choice(["ALL", max(1, abs(tr.units) // 3)]))))
        else:
            _step_price(v, rng, name)
    await b.stop()
    return events, snapshot(v)
