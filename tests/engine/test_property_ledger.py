"""Property: whatever sequence of orders, fills and prices happens, the
engine's positions, P&L, margin and account numbers (held in the compiled
core) equal the Decimal reference model fed with the same prices and fills.

The reference (tests/reference_model.py) is driven from the venue's own
record: every price the test publishes is marked in it, and every fill is
read back from the venue's transaction log (``transactions_since``), not from
the engine, so a fill the engine missed, doubled or misapplied shows up.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastexec._core.fixedpoint import RATE_SCALE
from fastexec.brokers.base import OrderFilled
from fastexec.config import Settings
from fastexec.engine import Engine, ExitSpec, OrderSpec
from fastexec.errors import FastexecError
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue
from reference_model import RefInstrument, RefLedger, from_raw, to_raw

from .harness import FakeClock

INSTRUMENTS = ["EUR_USD", "USD_JPY", "EUR_GBP", "GBP_USD"]
TRADED = ["EUR_USD", "USD_JPY", "EUR_GBP"]

account_ix = st.integers(0, 1)
side = st.sampled_from(["buy", "sell"])
units = st.integers(1, 40_000)
op = st.one_of(
    st.tuples(st.just("market"), account_ix, st.sampled_from(TRADED), side, units,
              st.one_of(st.none(), st.integers(20, 400))),
    st.tuples(st.just("limit"), account_ix, st.sampled_from(TRADED), side, units, st.integers(1, 60)),
    st.tuples(st.just("price"), st.sampled_from(INSTRUMENTS), st.integers(-80, 80), st.integers(1, 30)),
    st.tuples(st.just("close"), account_ix, st.sampled_from(TRADED), st.one_of(st.none(), st.integers(1, 40_000))),
)


def _ref_for(engine: Engine) -> RefLedger:
    return RefLedger(
        [RefInstrument(inst.name, Decimal(inst.margin_rate) / RATE_SCALE) for inst in engine.instruments]
    )


def _compare(engine: Engine, ref: RefLedger, accounts: list[str]) -> None:
    for ix, account_id in enumerate(accounts):
        want = ref.account_state(ix)
        got = engine.account(account_id)
        assert got.balance == to_raw(want["balance"], "money"), account_id
        assert got.unrealized_pl == to_raw(want["unrealized_pl"], "money")
        assert got.nav == to_raw(want["nav"], "money")
        assert got.margin_used == to_raw(want["margin_used"], "money")
        assert got.margin_available == to_raw(want["margin_available"], "money")
        assert got.realized_pl == to_raw(want["realized_pl"], "money")
        assert got.daily_pl == to_raw(want["daily_pl"], "money")
        assert got.open_positions == want["open_positions"]
        for name in TRADED:
            w = ref.position(ix, name)
            g = engine.position(account_id, name)
            assert g.units == w["units"], (account_id, name)
            assert (g.average_price or 0) == to_raw(w["average_price"], "price")
            assert g.unrealized_pl == to_raw(w["unrealized_pl"], "money")
            assert g.margin_used == to_raw(w["margin_used"], "money")
            assert g.notional == to_raw(w["position_value"], "money")
            assert g.realized_pl == to_raw(w["realized_pl"], "money")
        metrics = engine.risk_metrics(account_id)
        assert metrics.exposure == to_raw(want["position_value"], "money")


async def _scenario(ops) -> None:
    clock = FakeClock()
    venue = Venue(seed=11, accounts=2, balance="100000", clock=clock)
    broker = SimulatedBroker(venue)
    settings = Settings(max_orders_per_second=10**6, max_position_size=10**9, max_units_per_order=10**9,
                        max_daily_loss=10**15, max_leverage=10**6 * RATE_SCALE, required_margin_ratio=0,
                        max_positions_per_instrument=10**6, max_concurrent_orders=10**6)
    engine = Engine(settings, broker, clock=clock)
    await engine.start()
    try:
        accounts = engine.account_ids
        ref = _ref_for(engine)
        for account_id in accounts:
            ref.add_account("USD", from_raw(venue.accounts[account_id].balance, "money"))
        for name in [i.name for i in engine.instruments]:
            bid, ask, _ = venue.price(name)
            ref.mark(name, from_raw(bid, "price"), from_raw(ask, "price"))
        last_txn = {a: venue.accounts[a].last_id for a in accounts}

        async def sync_fills() -> None:
            for ix, account_id in enumerate(accounts):
                for ev in await broker.transactions_since(account_id, last_txn[account_id]):
                    if isinstance(ev, OrderFilled):
                        ref.apply_fill(ix, ev.instrument, ev.units, from_raw(ev.price, "price"))
                last_txn[account_id] = venue.accounts[account_id].last_id

        for step in ops:
            kind = step[0]
            try:
                if kind == "market":
                    _, ix, inst, sd, u, sl = step
                    unit = next(i for i in engine.instruments if i.name == inst)
                    tick = 10 ** (9 - unit.display_precision)
                    exit_ = ExitSpec(distance=sl * 10 * tick) if sl is not None else None
                    await engine.submit(OrderSpec(accounts[ix], inst, sd, u, stop_loss=exit_))
                elif kind == "limit":
                    _, ix, inst, sd, u, off = step
                    unit = next(i for i in engine.instruments if i.name == inst)
                    tick = 10 ** (9 - unit.display_precision)
                    bid, ask, _ = venue.price(inst)
                    price = bid - off * tick if sd == "buy" else ask + off * tick
                    await engine.submit(OrderSpec(accounts[ix], inst, sd, u, type="limit", price=price))
                elif kind == "price":
                    _, inst, move, spread = step
                    unit = next(i for i in engine.instruments if i.name == inst)
                    tick = 10 ** (9 - unit.display_precision)
                    bid, _ask, _ = venue.price(inst)
                    new_bid = max(tick * 1000, bid + move * tick)
                    new_ask = new_bid + spread * tick
                    clock.advance(1_000_000)
                    venue.set_price(inst, new_bid, new_ask)
                    ref.mark(inst, from_raw(new_bid, "price"), from_raw(new_ask, "price"))
                else:
                    _, ix, inst, u = step
                    await engine.close_position(accounts[ix], inst, units=u)
            except FastexecError:
                pass  # refused (nothing to close, too many units...): state must be unchanged
            await engine.settle()
            await sync_fills()
            _compare(engine, ref, accounts)
    finally:
        await engine.stop()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=50))
def test_positions_pnl_and_margin_match_the_decimal_reference(ops):
    asyncio.run(_scenario(ops))
