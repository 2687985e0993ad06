"""Test fixture: the v20 HTTP simulator on an ephemeral loopback port.

``SimServer`` is the contract of docs/contracts.md §4: an async context
manager that starts the simulator in the running loop and tears it down,
exposing the venue, the mutable fault configuration and the request stats so
a test can both drive the broker and check what the client did to it.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Optional, Union

from fastexec.brokers.base import BrokerError

from .broker import SimulatedBroker
from .faults import FaultConfig, Stats
from .server import DEFAULT_TOKEN, V20Sim
from .venue import Venue


def run_inline(coro):
    """Run a coroutine that must complete without yielding to the event loop
    and return its value: with the in-process venue, ``Engine.submit`` and
    ``SimulatedBroker.submit`` never await anything that suspends, which
    benchmarks and tests rely on (driving them with ``send(None)`` keeps the
    event loop out of the measurement). A yield is an await on the hot path:
    an AssertionError, not a silent wait."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine yielded to the event loop on the in-process path")


async def wait_for(pred: Callable[[], object], timeout: float = 5.0, poll: float = 0.02) -> None:
    """Poll ``pred`` on the running loop until it holds; AssertionError after
    ``timeout`` seconds. For outcomes that arrive over loopback (a retried
    cancel, a resolved lookup): a bounded wait, never a sleep that hopes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(poll)


class SimServer:
    """``async with SimServer(seed=1, accounts=1, balance="100000") as sim: ...``

    Prices stay still unless ``tick_interval`` is given, so tests move them
    with ``sim.venue.set_price(...)`` and get deterministic triggers.
    """

    def __init__(self, seed: int = 1, accounts: int = 1, balance: Union[str, int] = "100000", currency: str = "USD",
                 faults: Optional[FaultConfig] = None, port: int = 0, host: str = "127.0.0.1",
                 token: str = DEFAULT_TOKEN, tick_interval: Optional[float] = None, venue: Optional[Venue] = None,
                 clock=None):
        self.venue = venue or Venue(seed=seed, accounts=accounts, balance=balance, currency=currency, clock=clock)
        self.faults = faults or FaultConfig(seed=seed)
        self._sim = V20Sim(self.venue, token=token, faults=self.faults, tick_interval=tick_interval)
        self._host = host
        self._port = port

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, value: FaultConfig) -> None:
        self._faults = value
        if hasattr(self, "_sim"):
            self._sim.faults = value

    @property
    def stats(self) -> Stats:
        return self._sim.stats

    @property
    def token(self) -> str:
        return self._sim.token

    @property
    def account_ids(self) -> list:
        return list(self.venue.accounts)

    @property
    def host(self) -> str:
        return self._sim.host

    @property
    def port(self) -> int:
        return self._sim.port

    @property
    def base_url(self) -> str:
        return self._sim.base_url

    @property
    def stream_url(self) -> str:
        return self._sim.base_url

    @property
    def sim(self) -> V20Sim:
        return self._sim

    async def start(self) -> "SimServer":
        await self._sim.start(self._host, self._port)
        return self

    async def stop(self) -> None:
        await self._sim.stop()

    async def __aenter__(self) -> "SimServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class LosingBroker(SimulatedBroker):
    """The in-process venue, with submits whose answer is lost after the venue
    applied them (``lose`` of them): the engine must resolve them by client id,
    never by sending again."""

    lose = 0

    async def submit(self, request):
        events = await super().submit(request)
        if self.lose:
            self.lose -= 1
            raise BrokerError("connection lost after the request was sent")
        return events
