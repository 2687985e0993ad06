"""Engine test harness: a real engine on the real simulated venue.

Time is injected: the engine and the venue share one ``FakeClock`` so tests
can cross the 17:00 New York trading-day boundary and GTD expiries
deterministically. Prices move only when a test calls ``set_price``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from fastexec._core.fixedpoint import parse_price
from fastexec.config import Settings
from fastexec.engine import Engine, ListJournal
from fastexec.sim.broker import SimulatedBroker
from fastexec.sim.venue import Venue

# Wednesday 2026-01-14 15:00 UTC = 10:00 New York: mid trading day, no DST edge.
T0 = int(datetime(2026, 1, 14, 15, 0, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
SEC = 1_000_000_000


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


def px(text: str, precision: int = 5) -> int:
    return parse_price(text, precision)


class Harness:
    """An engine, its venue and clock, plus helpers to move prices."""

    def __init__(self, engine: Engine, venue: Venue, clock: FakeClock, journal: ListJournal) -> None:
        self.engine = engine
        self.venue = venue
        self.clock = clock
        self.journal = journal
        self.a1, self.a2 = engine.account_ids[:2]

    def quote(self, instrument: str, bid: str, ask: str, precision: int = 5) -> None:
        self.venue.set_price(instrument, px(bid, precision), px(ask, precision), self.clock.now)

    async def settle(self) -> None:
        await self.engine.settle()


def make_settings(**overrides) -> Settings:
    base = dict(max_orders_per_second=10_000, max_concurrent_orders=50, max_positions_per_instrument=20)
    base.update(overrides)
    return Settings(**base)


async def make_harness(settings: Settings | None = None, accounts: int = 2, balance: str = "100000") -> Harness:
    clock = FakeClock()
    venue = Venue(seed=7, accounts=accounts, balance=balance, clock=clock)
    journal = ListJournal()
    engine = Engine(settings or make_settings(), SimulatedBroker(venue), clock=clock, journal=journal)
    await engine.start()
    h = Harness(engine, venue, clock, journal)
    h.quote("EUR_USD", "1.10000", "1.10010")
    h.quote("USD_JPY", "150.000", "150.010", 3)
    return h

