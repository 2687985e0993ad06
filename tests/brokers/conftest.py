"""The OANDA adapter against the v20 simulator over real HTTP on loopback.

Every assertion about what happened at the venue reads the simulator's own
books (``sim.venue``: its transaction log, orders and trades) or its request
log (``sim.stats``), never the adapter's word for it.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

import pytest

from fastexec.brokers.base import OrderRequest
from fastexec.brokers.oanda import OandaBroker, OandaConfig, OandaTimeouts
from fastexec.sim.faults import FaultConfig
from fastexec.sim.testing import SimServer
from fastexec.sim.venue import Order

# Tight but generous-on-a-shared-2-core-box settings: every fault test is
# bounded by these, not by production's seconds.
TEST_TIMEOUTS = OandaTimeouts(connect=2.0, order=0.5, read=0.5, cancel=0.5, stream_heartbeat=0.8)


def adapter_config(sim: SimServer, **kw) -> OandaConfig:
    base = dict(
        token=sim.token,
        account_ids=tuple(sim.account_ids),
        rest_url=sim.base_url,
        stream_url=sim.stream_url,
        timeouts=TEST_TIMEOUTS,
        resolve_window_s=2.5,
        backoff_base_s=0.01,
        backoff_max_s=0.1,
        stream_backoff_base_s=0.02,
        stream_backoff_max_s=0.2,
    )
    base.update(kw)
    return OandaConfig(**base)


def order(acct: str, cid: str, units: int = 1000, instrument: str = "EUR_USD", **kw) -> OrderRequest:
    """An order request with the tests' usual defaults (1000 EUR_USD)."""
    return OrderRequest(client_id=cid, account_id=acct, instrument=instrument, units=units, **kw)


class Recorder(list):
    """The event handler: keeps every event the adapter delivered."""

    def __call__(self, ev) -> None:
        self.append(ev)

    def of(self, cls, **match) -> list:
        return [e for e in self if isinstance(e, cls) and all(getattr(e, k) == v for k, v in match.items())]


async def eventually(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def venue_creates(sim: SimServer, account_id: str, client_id: str) -> list:
    """Client orders the venue created under ``client_id`` (its own log)."""
    acct = sim.venue.accounts[account_id]
    return [
        t
        for t in acct.txns
        if isinstance(t.p, Order) and t.p.reason == "CLIENT_ORDER" and t.p.client_id == client_id
    ]


def venue_txn_types(sim: SimServer, account_id: str, since: int = 0) -> list:
    return [t.type for t in sim.venue.accounts[account_id].txns if t.id > since]


@pytest.fixture
async def sim():
    async with SimServer(seed=7, accounts=1, balance="100000", faults=FaultConfig(seed=7, heartbeat=0.25)) as s:
        yield s


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
async def broker(sim, events):
    b = OandaBroker(adapter_config(sim))
    b.set_event_handler(events)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture
def acct(sim) -> str:
    return sim.account_ids[0]
