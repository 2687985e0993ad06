"""OANDA's two hard limits, enforced inside the connection pool.

Both limiters sit in the aiohttp connector, so they act at the last moment
before bytes leave: a request takes its rate token only once it holds a
connection, and a new TCP connection is only opened when the per-second
budget allows. Taking the token earlier (before waiting for a pooled
connection) would let requests that queued behind a slow connect leave
bunched together and break the per-window limit at the venue.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Optional

import aiohttp


class RequestRateLimiter:
    """Token bucket (GCRA form) that bounds requests in *any* 1 s window.

    With capacity ``burst`` and refill rate ``r``, at most ``burst + r*T``
    requests leave in any window of length ``T``. We pick
    ``r = (limit - burst) / (1 + slack)`` so that even windows stretched by
    ``slack`` seconds of network jitter (requests sent apart but arriving
    bunched) stay at or below ``limit`` at the venue.
    """

    __slots__ = ("limit", "burst", "rate", "_interval", "_tolerance", "_tat", "_loop", "sent")

    def __init__(self, limit: int, burst: int, slack: float = 0.05) -> None:
        if not 1 <= burst < limit:
            raise ValueError("need 1 <= burst < limit")
        self.limit = limit
        self.burst = burst
        self.rate = (limit - burst) / (1.0 + slack)
        self._interval = 1.0 / self.rate
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.sent = 0

    async def acquire(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        tat = self._tat if self._tat > now else now
        # Reserve the slot before sleeping: concurrent callers queue in FIFO
        # order without a lock (one event loop owns this object).
        self._tat = tat + self._interval
        self.sent += 1
        wait = tat - self._tolerance - now
        if wait > 0:
            await asyncio.sleep(wait)


class ConnectionRateLimiter:
    """At most ``limit`` new connections in any window of ``window`` seconds.

    Reservations are appended before sleeping, so the n-th caller waits for
    the (n-limit)-th reservation to age out of the window; a failed connect
    still counts (OANDA counts attempts, not successes).

    A reservation's time moves to when its connect *finished* (``settled``).
    The venue stamps a connection when it accepts it, which is never before
    our connect completes, so spacing the next attempt from completion keeps
    the venue's accepts spaced even when the handshake or the venue's accept
    loop runs late — spacing from the start of each attempt let delayed
    accepts bunch into one window and be refused.
    """

    __slots__ = ("limit", "window", "_times", "opened")

    def next_free(self, now: float) -> float:
        """Earliest time a new connection could open without waiting."""
        times = self._times
        if len(times) < self.limit:
            return now
        return times[0][0] + self.window

    def __init__(self, limit: int, window: float = 1.05) -> None:
        self.limit = limit
        self.window = window
        self._times: collections.deque[list[float]] = collections.deque(maxlen=limit)
        self.opened = 0

    async def acquire(self) -> list[float]:
        """Wait for the budget; returns the reservation to pass to ``settled``."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        times = self._times
        at = now
        if len(times) == self.limit:
            earliest = times[0][0] + self.window
            if earliest > at:
                at = earliest
        slot = [at]
        times.append(slot)
        self.opened += 1
        if at > now:
            await asyncio.sleep(at - now)
        return slot

    @staticmethod
    def settled(slot: list[float]) -> None:
        """The connect of ``slot`` finished (or failed): count it from now."""
        now = asyncio.get_running_loop().time()
        if now > slot[0]:
            slot[0] = now


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class LimitedConnector(aiohttp.TCPConnector):
    """TCP connector that applies both limiters (see module docstring).

    While the new-connection budget is spent, a request that finds no idle
    connection waits for whichever comes first: a pooled connection being
    released or the budget reopening. Plain aiohttp would commit it to a new
    connection and park it behind the limiter for up to a few seconds while
    the connections already open sit idle.
    """

    def __init__(self, *, requests: RequestRateLimiter, connections: ConnectionRateLimiter, **kwargs) -> None:
        super().__init__(**kwargs)
        self._fx_requests = requests
        self._fx_connections = connections
        self._fx_waiters: list[asyncio.Future] = []

    async def connect(self, req, traces, timeout):  # type: ignore[override]
        key = req.connection_key
        limiter = self._fx_connections
        while not self._conns.get(key) and self._acquired and (not self._limit or len(self._acquired) < self._limit):
            now = self._loop.time()
            free_at = limiter.next_free(now)
            if free_at <= now:
                break
            fut = self._loop.create_future()
            self._fx_waiters.append(fut)
            # A timer rather than asyncio.wait_for: on Python 3.11 wait_for
            # swallows a cancellation that lands as the future completes,
            # which is exactly when stop() cancels every stream at once.
            timer = self._loop.call_later(free_at - now, _wake, fut)
            try:
                await fut
            finally:
                timer.cancel()
                if fut in self._fx_waiters:
                    self._fx_waiters.remove(fut)
        conn = await super().connect(req, traces, timeout)
        try:
            await self._fx_requests.acquire()
        except BaseException:
            conn.release()
            raise
        return conn

    def _release(self, key, protocol, *, should_close: bool = False) -> None:  # type: ignore[override]
        super()._release(key, protocol, should_close=should_close)
        waiters = self._fx_waiters
        while waiters:
            fut = waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                break

    async def _create_connection(self, req, traces, timeout):  # type: ignore[override]
        slot = await self._fx_connections.acquire()
        try:
            return await super()._create_connection(req, traces, timeout)
        finally:
            self._fx_connections.settled(slot)
