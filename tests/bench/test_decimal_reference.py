"""The benchmark's Decimal reference does the same work as the compiled core.

A speed ratio between two implementations only means something if they
compute the same thing: random walks of marks, fills, limit changes,
trading-state changes and working orders drive both, and every decision (and
its detail), position and account number must agree exactly (core ints at
their scales vs reference Decimals).
"""
import importlib.util
import os
import random
import sys
from decimal import Decimal

import pytest

from fastexec._core.instruments import load_instruments
from fastexec._core.orders import OrderEvent, OrderStore
from fastexec._core.positions import Ledger
from fastexec._core.risk import RiskCode, RiskEngine, TradingState

_REF = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "reference", "decimal_core.py")
_spec = importlib.util.spec_from_file_location("_fastexec_bench_decimal_core", _REF)
ref = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ref
_spec.loader.exec_module(ref)

START_MID = {"USD": Decimal(1), "EUR": Decimal("1.1"), "GBP": Decimal("1.27"), "JPY": Decimal("0.0067"),
             "CHF": Decimal("1.13"), "AUD": Decimal("0.66"), "CAD": Decimal("0.73"), "NZD": Decimal("0.6"),
             "XAU": Decimal("2000")}


def raw(v: Decimal, places: int) -> int:
    out = v.scaleb(places)
    assert out == out.to_integral_value(), (v, places)
    return int(out)


def build(home: str, balance: str):
    table = load_instruments()
    ledger = Ledger(table, max_accounts=4)
    orders = OrderStore(4, table.n)
    risk = RiskEngine(ledger, orders)
    rledger = ref.DecimalLedger(list(table))
    rrisk = ref.DecimalRiskEngine(rledger)
    a = ledger.add_account("acct", home, raw(Decimal(balance), 6))
    assert rledger.add_account(home, Decimal(balance)) == a
    return table, ledger, risk, rledger, rrisk, a


def random_quote(rng, inst):
    tick = Decimal(1).scaleb(-inst.display_precision)
    mid = START_MID[inst.base] / START_MID[inst.quote] * Decimal(1 + rng.uniform(-0.02, 0.02))
    bid = (mid / tick).to_integral_value() * tick
    ask = bid + tick * rng.randint(0, 5)
    return bid, ask


@pytest.mark.parametrize("seed,home", [(1, "USD"), (2, "USD"), (3, "EUR"), (4, "JPY"), (5, "GBP")])
def test_reference_agrees_with_core(seed, home):
    rng = random.Random(seed)
    table, ledger, risk, rledger, rrisk, a = build(home, "100000")
    insts = list(table)
    decided = set()
    resting = []  # (order id, instrument index, units): working orders, in the core's store and the reference
    for step in range(600):
        op = rng.random()
        inst = rng.choice(insts[:8] if rng.random() < 0.8 else insts)
        i = inst.index
        if op < 0.35:
            bid, ask = random_quote(rng, inst)
            ledger.mark(i, raw(bid, 9), raw(ask, 9))
            rledger.mark(i, bid, ask)
        elif op < 0.85:
            units = rng.choice([-1, 1]) * rng.choice([1, 100, 1000, 10_000, 250_000, 3_000_000])
            now = step * 20_000_000 if rng.random() < 0.5 else step * 20_000_000 + 1
            code = RiskCode(risk.check(a, i, units, now)).name
            rcode = rrisk.check(a, i, units, now)
            assert code == rcode, (step, inst.name, units, risk.last_denial, rrisk.last_denial)
            if code in ("REDUCE_ONLY_VIOLATION", "MAX_POSITION_SIZE"):
                assert risk.last_denial == rrisk.last_denial
            decided.add(code)
            if code == "OK" and rng.random() < 0.15:
                # it rests instead of filling: a working order from now on (and maybe cancelled later)
                oid = f"w{step}"
                risk.orders.add(oid, a, i, units)
                racct = rledger.accounts[a]
                racct.working[i] = racct.working.get(i, 0) + 1
                pend = racct.pending.setdefault(i, [0, 0])
                pend[0 if units > 0 else 1] += abs(units)
                resting.append((oid, i, units))
                continue
            if resting and rng.random() < 0.1:
                oid, j, w = resting.pop(rng.randrange(len(resting)))
                risk.orders.apply(oid, OrderEvent.CANCEL)
                racct = rledger.accounts[a]
                racct.working[j] -= 1
                racct.pending[j][0 if w > 0 else 1] -= abs(w)
            px = rledger.prices.get(i)
            if code == "OK" and px is not None:
                price = px[1] if units > 0 else px[0]
                try:
                    realized = ledger.apply_fill(a, i, units, raw(price, 9))
                except Exception as exc:  # the reference must refuse the same fills
                    with pytest.raises(ValueError) as rexc:
                        rledger.apply_fill(a, i, units, price)
                    assert exc.code in str(rexc.value)
                    continue
                assert realized == raw(rledger.apply_fill(a, i, units, price), 6)
        elif op < 0.93:
            limits = dict(
                max_units_per_order=rng.choice([None, 500_000, 5_000_000]),
                max_position_size=rng.choice([None, 1_000_000, 4_000_000]),
                max_positions_per_instrument=rng.choice([None, 1, 5]),
                max_leverage=rng.choice([None, Decimal(20), Decimal(50)]),
                required_margin_ratio=rng.choice([None, Decimal("0.1"), Decimal("0.5")]),
                max_daily_loss=rng.choice([None, Decimal("500"), Decimal("5000")]),
                orders_per_second=rng.choice([None, 2, 1000]),
            )
            core_limits = {k: (raw(v, 12) if k in ("max_leverage", "required_margin_ratio") and v is not None
                               else raw(v, 6) if k == "max_daily_loss" and v is not None else v)
                           for k, v in limits.items()}
            risk.set_limits(a, **core_limits, burst=None if limits["orders_per_second"] is None else 1)
            rrisk.set_limits(a, **limits, burst=None if limits["orders_per_second"] is None else 1)
        else:
            state = rng.choice(["ACTIVE", "ACTIVE", "REDUCING", "HALTED"])
            risk.set_trading_state(a, TradingState[state])
            rledger.accounts[a].state = state
        # after every step: every position and the account agree
        acct = rledger.accounts[a]
        for j, pos in acct.positions.items():
            core = ledger.position(a, j)
            assert (core.units, core.average_price, core.unrealized_pl, core.position_value,
                    core.margin_used, core.realized_pl) == (
                pos.units, raw(pos.avg, 9), raw(pos.upl, 6), raw(pos.value, 6),
                raw(pos.margin, 6), raw(pos.realized, 6)), (step, table.by_index(j).name)
        st = ledger.account_state(a)
        assert (st.balance, st.unrealized_pl, st.margin_used, st.position_value) == (
            raw(acct.balance, 6), raw(acct.upl, 6), raw(acct.margin, 6), raw(acct.value, 6))
    # the walk must have exercised more than the happy path
    assert "OK" in decided and len(decided) >= 4, decided
