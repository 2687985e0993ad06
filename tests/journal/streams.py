"""A seeded generator of realistic record streams (commands and broker events).

Shared by the snapshot/replay and audit tests: the records follow the order
life cycles the engine produces (submit, accept, partial and full fills,
cancels, replaces, exits with no client id, kill switches, limits, emulated
orders), with broker transaction ids rising per account.
"""
from __future__ import annotations

import random

from fastexec.brokers.base import OrderAccepted, OrderCancelled, OrderFilled, OrderRejected, OrderReplaced
from fastexec.journal.records import event_record

ACCOUNTS = ("101-001-0000001-001", "101-001-0000001-002")
INSTRUMENTS = ("EUR_USD", "USD_JPY", "GBP_USD")


def stream(n: int, seed: int = 1, t0: int = 1_795_000_000_000_000_000) -> list[dict]:
    rng = random.Random(seed)
    txn = {a: 100 for a in ACCOUNTS}
    balance = {a: 100_000 * 10**6 for a in ACCOUNTS}
    open_orders: list[dict] = []
    out: list[dict] = []
    ts = t0
    k = 0

    def next_txn(a):
        txn[a] += rng.randint(1, 3)
        return txn[a]

    def emit(rec):
        nonlocal ts
        ts += rng.randint(1_000, 5_000_000)
        rec["ts"] = ts
        out.append(rec)

    while len(out) < n:
        r = rng.random()
        acct = rng.choice(ACCOUNTS)
        if r < 0.35 or not open_orders:
            k += 1
            emulated = rng.random() < 0.1
            o = {"type": "order.submitted", "order_id": f"E{k}", "client_order_id": f"fx-{k}", "account_id": acct,
                 "instrument": rng.choice(INSTRUMENTS), "side": rng.choice(("buy", "sell")),
                 "units": rng.choice((1000, 2500, 10000)), "order_type": "stop_limit" if emulated else "limit",
                 "price": 1_100_000_000 + rng.randint(-5_000_000, 5_000_000), "stop_price": None,
                 "trailing_distance": None, "time_in_force": "GTC", "gtd_time_ns": None, "stop_loss": None,
                 "take_profit": {"price": 1_200_000_000, "distance": None, "guaranteed": False},
                 "trailing_stop_distance": None, "request_id": f"req-{k}", "emulated": emulated}
            emit(o)
            open_orders.append({**o, "broker": None, "filled": 0})
            continue
        o = rng.choice(open_orders)
        a = o["account_id"]
        sign = 1 if o["side"] == "buy" else -1
        if o["emulated"] and o["broker"] is None:
            emit({"type": "order.emulation", "order_id": o["order_id"], "account_id": a,
                  "emulation": {"best": 1_099_000_000 + rng.randint(0, 999), "trigger": 1_100_000_000}})
            if rng.random() < 0.3:
                o["emulated"] = False
            continue
        if o["broker"] is None:
            if rng.random() < 0.1:
                emit(event_record(OrderRejected(a, o["client_order_id"], next_txn(a), "INSUFFICIENT_MARGIN",
                                                "no margin", ts)))
                open_orders.remove(o)
                continue
            o["broker"] = str(next_txn(a))
            emit(event_record(OrderAccepted(a, o["client_order_id"], o["broker"], int(o["broker"]), ts)))
            continue
        if r < 0.6:
            part = o["units"] - o["filled"] if rng.random() < 0.7 else o["units"] // 2
            o["filled"] += part
            pl = rng.randint(-50_000_000, 50_000_000)
            balance[a] += pl
            fill = OrderFilled(a, o["client_order_id"], o["broker"], next_txn(a), o["instrument"], sign * part,
                               1_100_000_000 + rng.randint(-9999, 9999), "LIMIT_ORDER", ts, pl=pl,
                               account_balance=balance[a] if rng.random() < 0.8 else None,
                               trade_opened_id=str(txn[a]))
            emit(event_record(fill))
            if rng.random() < 0.05:  # the same transaction again, from the stream
                emit(event_record(fill))
            if o["filled"] >= o["units"]:
                open_orders.remove(o)
        elif r < 0.7:
            emit({"type": "order.cancel_requested", "order_id": o["order_id"], "account_id": a})
            emit(event_record(OrderCancelled(a, o["client_order_id"], o["broker"], next_txn(a), "CLIENT_REQUEST", ts)))
            open_orders.remove(o)
        elif r < 0.8:
            new = str(next_txn(a) + 1)
            emit({"type": "order.modify_requested", "order_id": o["order_id"], "account_id": a,
                  "price": 1_101_000_000, "units": None})
            emit(event_record(OrderCancelled(a, o["client_order_id"], o["broker"], int(new) - 1,
                                             "CLIENT_REQUEST_REPLACED", ts, replaced_by_order_id=new)))
            emit(event_record(OrderReplaced(a, o["client_order_id"], o["broker"], new, next_txn(a), ts)))
            o["broker"] = new
        elif r < 0.88:  # a stop loss closing part of a position, no engine order behind it
            pl = rng.randint(-9_000_000, 1_000_000)
            balance[a] += pl
            emit(event_record(OrderFilled(a, None, str(next_txn(a)), txn[a], rng.choice(INSTRUMENTS),
                                          rng.choice((-500, 500)), 1_100_000_000, "STOP_LOSS_ORDER", ts, pl=pl,
                                          account_balance=balance[a], trades_closed=("7", "9"))))
        elif r < 0.93:
            emit({"type": "kill_switch", "account_id": rng.choice((None, a)), "active": rng.random() < 0.6,
                  "reason": "drawdown", "actor": "risk-bot", "flatten": False})
        elif r < 0.97:
            emit({"type": "risk.limits", "account_id": rng.choice((None, a)),
                  "limits": {"max_position_size": rng.choice((50_000, 100_000)), "max_daily_loss": 1_000_000_000}})
        else:
            emit({"type": "trading_state", "account_id": a, "state": rng.choice(("active", "reducing", "halted"))})
    return out[:n]
