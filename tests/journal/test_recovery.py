"""Start-up reconciliation against the v20 simulator, over real HTTP.

Each test builds the situation a crash leaves behind — the broker did things
the journal never heard of, or the journal holds orders the broker never got —
by driving the real OANDA adapter against the simulator and journaling only
part of what happened. Reconciliation must then make the journal's state agree
with the broker, never resend an order, and journal every correction durably.
"""
from __future__ import annotations

import pytest

from fastexec.brokers.base import OrderRequest, V20OrderType
from fastexec.brokers.oanda import OandaBroker, OandaConfig
from fastexec.journal import Journal, event_record
from fastexec.journal.recovery import NOT_RECEIVED, recover
from fastexec.sim.testing import SimServer

from .history import journal_orders


def submitted(acct: str, cid: str, units: int, order_type: str = "market", price=None) -> dict:
    return {"type": "order.submitted", "order_id": cid, "client_order_id": cid, "account_id": acct,
            "instrument": "EUR_USD", "side": "buy" if units > 0 else "sell", "units": abs(units),
            "order_type": order_type, "price": price, "emulated": False}


def request(acct: str, cid: str, units: int, price=None) -> OrderRequest:
    if price is None:
        return OrderRequest(client_id=cid, account_id=acct, instrument="EUR_USD", units=units)
    return OrderRequest(client_id=cid, account_id=acct, instrument="EUR_USD", units=units,
                        type=V20OrderType.LIMIT, price=price)


@pytest.fixture
async def venue():
    async with SimServer(seed=3) as sim:
        broker = OandaBroker(OandaConfig(token=sim.token, account_ids=tuple(sim.account_ids), rest_url=sim.base_url,
                                         resolve_window_s=1.0))
        await broker.start(streams=False)
        try:
            yield sim, broker, sim.account_ids[0]
        finally:
            await broker.stop()


async def broker_view(broker, acct):
    summary = await broker.account_summary(acct)
    positions = {p.instrument: p.long_units + p.short_units for p in await broker.open_positions(acct)}
    return summary.balance, {k: v for k, v in positions.items() if v}


async def open_journal(path) -> Journal:
    j = Journal(str(path))
    j.open()
    return j


async def open_recovered(path, broker) -> Journal:
    """The journal opened and reconciled with the broker (on a first start: the broker's present as baseline)."""
    j = await open_journal(path)
    await recover(j, broker)
    return j


async def send(j: Journal, broker, acct: str, cid: str, units: int, price=None, *, journal_events: bool) -> None:
    """Journal the command and send it (a limit order when ``price`` is given);
    ``journal_events`` says whether the broker's answer reached the journal too."""
    await j.write(submitted(acct, cid, units, "market" if price is None else "limit", price))
    events = await broker.submit(request(acct, cid, units, price))
    if journal_events:
        for ev in events:
            await j.write(event_record(ev))


async def assert_agrees_with_broker(j: Journal, broker, acct: str) -> None:
    balance, positions = await broker_view(broker, acct)
    assert j.state.positions[acct] == positions and j.state.balances[acct] == balance


async def test_first_start_takes_the_brokers_present_as_baseline(tmp_path, venue):
    sim, broker, acct = venue
    await broker.submit(request(acct, "outside-1", 3000))  # placed by someone else, before fastexec ever ran
    j = await open_journal(tmp_path)
    rep = await recover(j, broker)
    assert {c.kind for c in rep.corrections} == {"baseline"}
    await assert_agrees_with_broker(j, broker, acct)
    assert j.state.positions[acct] == {"EUR_USD": 3000}
    assert j.state.watermark[acct] == (await broker.account_summary(acct)).last_txn_id
    await j.close()


async def test_an_order_the_broker_never_received_is_closed_not_resent(tmp_path, venue):
    sim, broker, acct = venue
    j = await open_recovered(tmp_path, broker)
    await j.write(submitted(acct, "lost-1", 1000))  # journaled, then the process died before sending
    await j.close()
    before_txn = (await broker.account_summary(acct)).last_txn_id

    j = await open_journal(tmp_path)
    rep = await recover(j, broker)
    order = journal_orders(tmp_path)["lost-1"]
    assert order["status"] == "rejected" and order["reject_reason"] == NOT_RECEIVED
    assert "lost-1" not in j.state.orders and j.state.by_client[acct]["lost-1"] == "lost-1"  # finished: its id stays
    assert [c.detail["order_id"] for c in rep.by_kind("order")] == ["lost-1"]
    assert await broker.order_by_client_id(acct, "lost-1") is None  # nothing was sent on its behalf
    assert (await broker.account_summary(acct)).last_txn_id == before_txn
    await j.close()


async def test_fills_and_cancels_the_journal_missed_are_caught_up(tmp_path, venue):
    sim, broker, acct = venue
    j = await open_recovered(tmp_path, broker)
    # sent and filled at the broker, but only the command reached the journal
    await send(j, broker, acct, "m-1", 2000, journal_events=False)
    # a limit order fully journaled as working, then cancelled at the broker while we were down
    await send(j, broker, acct, "l-1", 1000, 1_000_000_000, journal_events=True)
    assert j.state.orders["l-1"]["status"] == "working"
    await j.close()
    bo = await broker.order_by_client_id(acct, "l-1")
    await broker.cancel(acct, bo.broker_order_id)

    j = await open_journal(tmp_path)
    rep = await recover(j, broker)
    orders = journal_orders(tmp_path)
    assert orders["m-1"]["status"] == "filled" and orders["m-1"]["filled_units"] == 2000
    assert orders["l-1"]["status"] == "cancelled"
    assert j.state.orders == {}
    # m-1's fill (txn below l-1's journaled ones: found by client id) and l-1's cancel (caught up)
    assert rep.events_applied == 2
    await assert_agrees_with_broker(j, broker, acct)
    assert not rep.by_kind("position") and not rep.by_kind("balance")  # the events alone explained everything
    await j.close()


async def test_a_fill_missed_out_of_order_is_found_by_client_id(tmp_path, venue):
    sim, broker, acct = venue
    j = await open_recovered(tmp_path, broker)
    await send(j, broker, acct, "a", 1000, journal_events=False)
    await send(j, broker, acct, "b", 500, journal_events=True)  # later transactions, journaled
    await j.close()

    j = await open_recovered(tmp_path, broker)
    assert journal_orders(tmp_path)["a"]["status"] == "filled" and "a" not in j.state.orders
    balance, positions = await broker_view(broker, acct)
    assert j.state.positions[acct] == positions == {"EUR_USD": 1500}
    await j.close()


@pytest.mark.parametrize("policy", ["adopt", "cancel"])
async def test_orders_at_the_broker_the_journal_lacks(tmp_path, venue, policy):
    sim, broker, acct = venue
    j = await open_recovered(tmp_path, broker)
    await j.close()
    await broker.submit(request(acct, "stranger", 1000, 1_000_000_000))

    j = await open_journal(tmp_path)
    rep = await recover(j, broker, unknown_orders=policy)
    pending = await broker.pending_orders(acct)
    if policy == "adopt":
        assert j.state.orders["stranger"]["status"] == "working"
        assert [o.client_id for o in pending] == ["stranger"]
        assert len(rep.by_kind("adopted")) == 1
    else:
        assert pending == []
        assert len(rep.by_kind("cancelled_unknown")) == 1
        assert "stranger" not in j.state.orders  # not ours: cancelled, not adopted
        from fastexec.journal import read_records

        kinds = [r.payload["type"] for r in read_records(str(tmp_path))]
        assert "reconcile.cancelled_unknown" in kinds and "broker.cancelled" in kinds
    await j.close()


async def test_corrections_are_durable_and_a_second_run_finds_nothing(tmp_path, venue):
    sim, broker, acct = venue
    j = await open_recovered(tmp_path, broker)
    await send(j, broker, acct, "x", 1000, journal_events=False)
    await j.write(submitted(acct, "y", 700))  # never sent
    await j.close()
    # positions changed behind our back too (a trade closed by someone else)
    await broker.submit(request(acct, "other", -400))

    j = await open_journal(tmp_path)
    first = await recover(j, broker)
    assert first.corrections
    state = j.state.to_dict()
    await j.close()
    j = await open_journal(tmp_path)  # corrections replay from the journal
    assert j.state.to_dict() == state
    second = await recover(j, broker)
    assert second.corrections == [] and second.events_applied == 0
    await assert_agrees_with_broker(j, broker, acct)
    await j.close()


async def test_an_order_the_broker_processes_late_is_not_declared_lost(tmp_path, venue):
    """Journaled just before the crash, still on its way: the venue processes it during the grace period."""
    import asyncio

    sim, broker, acct = venue
    j = await open_recovered(tmp_path, broker)
    await j.write(submitted(acct, "late-1", 1000))
    await j.close()

    j = await open_journal(tmp_path)
    task = asyncio.ensure_future(recover(j, broker, in_flight_grace_s=1.0))
    await asyncio.sleep(0.3)
    await broker.submit(request(acct, "late-1", 1000))  # the request the dead process had sent
    rep = await task
    assert journal_orders(tmp_path)["late-1"]["status"] == "filled" and "late-1" not in j.state.orders
    assert not rep.by_kind("position")  # its fill was applied as an event, not patched over
    await j.close()
