"""The two ways of asking for a guaranteed stop loss on fill
(``OandaConfig.gslo_style``), over HTTP against the v20 simulator.

The simulator speaks v20 3.0.25: it books ``stopLossOnFill.guaranteed`` and
does not know ``guaranteedStopLossOnFill`` (it ignores the field on an order
it accepts). What crossed the wire is read from the venue's own books: a
rejected order's transaction echoes the request body exactly as the venue
received it, so each style's body is checked as the venue saw it, for a
create and for a replace; the legacy style is also checked end to end (the
venue books a guaranteed stop loss on the trade). That the modern field is
booked as a guaranteed stop loss is beyond this simulator.
"""
from __future__ import annotations

import pytest

from fastexec.brokers.base import ExitDetails, OrderAccepted, OrderRejected, OrderRequest, TimeInForce, V20OrderType
from fastexec.brokers.oanda import OandaBroker

from .conftest import adapter_config

PIP = 100_000

EXPECTED = {
    "legacy": ("stopLossOnFill", {"distance": "0.00400", "timeInForce": "GTC", "guaranteed": True}),
    "modern": ("guaranteedStopLossOnFill", {"distance": "0.00400", "timeInForce": "GTC"}),
}
ABSENT = {"legacy": "guaranteedStopLossOnFill", "modern": "stopLossOnFill"}


@pytest.fixture
async def styled(sim, request):
    b = OandaBroker(adapter_config(sim, gslo_style=request.param))
    await b.start(streams=False)
    try:
        yield request.param, b
    finally:
        await b.stop()


def venue_reject_body(sim, acct: str, txn_id: int) -> dict:
    """The request body the venue echoed into its reject transaction."""
    (t,) = [t for t in sim.venue.accounts[acct].txns if t.id == txn_id]
    assert t.type.endswith("_ORDER_REJECT")
    echo, _reason = t.p
    return echo


def gslo() -> ExitDetails:
    return ExitDetails(distance=40 * PIP, guaranteed=True)


@pytest.mark.parametrize("styled", ["legacy", "modern"], indirect=True)
async def test_create_body_as_the_venue_received_it(sim, styled, acct):
    style, b = styled
    # GTC is not a market order's time in force: the venue refuses it and echoes the body
    (rej,) = await b.submit(OrderRequest("gs-1", acct, "EUR_USD", 1000, time_in_force=TimeInForce.GTC,
                                         stop_loss=gslo()))
    assert isinstance(rej, OrderRejected) and rej.reason == "TIME_IN_FORCE_INVALID"
    body = venue_reject_body(sim, acct, rej.txn_id)
    key, shape = EXPECTED[style]
    assert body[key] == shape
    assert ABSENT[style] not in body


@pytest.mark.parametrize("styled", ["legacy", "modern"], indirect=True)
async def test_replace_body_as_the_venue_received_it(sim, styled, acct):
    style, b = styled
    bid, _, _ = sim.venue.price("EUR_USD")
    (acc,) = await b.submit(OrderRequest("gs-r", acct, "EUR_USD", 1000, type=V20OrderType.LIMIT,
                                         price=bid - 50 * PIP))
    assert isinstance(acc, OrderAccepted)
    # a GTD time in the past: the venue refuses the replacement and echoes its body
    bad = OrderRequest("gs-r2", acct, "EUR_USD", 1000, type=V20OrderType.LIMIT, price=bid - 60 * PIP,
                       time_in_force=TimeInForce.GTD, gtd_time_ns=10**18, stop_loss=gslo())
    (rej,) = await b.replace(acct, acc.broker_order_id, bad)
    assert isinstance(rej, OrderRejected) and rej.reason == "TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST"
    body = venue_reject_body(sim, acct, rej.txn_id)
    key, shape = EXPECTED[style]
    assert body[key] == shape
    assert ABSENT[style] not in body
    assert sim.venue.accounts[acct].orders[int(acc.broker_order_id)].state == "PENDING"


@pytest.mark.parametrize("styled", ["legacy"], indirect=True)
async def test_legacy_style_books_a_guaranteed_stop_loss(sim, styled, acct):
    _, b = styled
    _, ask, _ = sim.venue.price("EUR_USD")
    await b.submit(OrderRequest("gs-2", acct, "EUR_USD", 1000, stop_loss=gslo()))
    (trade,) = await b.open_trades(acct)
    sl = sim.venue.accounts[acct].orders[int(trade.stop_loss_order_id)]
    assert sl.guaranteed is True and sl.price == ask - 40 * PIP


@pytest.mark.parametrize("styled", ["legacy", "modern"], indirect=True)
async def test_plain_stop_loss_is_booked_in_either_style(sim, styled, acct):
    _, b = styled
    _, ask, _ = sim.venue.price("EUR_USD")
    await b.submit(OrderRequest("gs-3", acct, "EUR_USD", 1000, stop_loss=ExitDetails(distance=40 * PIP)))
    (trade,) = await b.open_trades(acct)
    sl = sim.venue.accounts[acct].orders[int(trade.stop_loss_order_id)]
    assert not sl.guaranteed and sl.price == ask - 40 * PIP
