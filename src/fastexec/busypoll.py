"""Busy polling: keep the event loop awake for a while after the last request.

Why: between two requests of one client the loop sleeps in ``epoll_wait``, and a
core that sleeps is a cold core. On this VM (cpuidle driver ``haltpoll``) a
sleeping vCPU halts, and the request that wakes it pays the wake-up and a cold
L1/L2 for all of its code and data: measured with ``wrk -c1`` against
``fastexec serve`` (journal ``none``), one-client p50 fell from ~170 us to
~130 us when the core was kept out of idle, and a bare aiohttp echo server's
from ~110 us to ~85 us. The cost grows with the code and data a request touches,
so an engine pays more of it than an echo server does. With this poller
(``run_wrk.py --durability none --busy-poll-us 1000``) the one-client p50 of an
order was 97-104 us in three runs, against 144-169 us without it.

``BusyPoller`` keeps a callback re-queued with ``call_soon`` for ``window_us``
after the last completed request: while it is queued, the loop polls with a zero
timeout instead of sleeping, so the next request finds a warm core. When the
window passes with no new request it parks (the loop sleeps as usual) and looks
again every ``parked_check_s``; the first requests after a quiet spell therefore
still pay a cold wake-up, and once traffic is back the loop spins again.

The price is a core: while spinning, the process uses 100 % of one CPU, so this
is opt-in (``--busy-poll-us`` / ``FASTEXEC_BUSY_POLL_US``, default 0 = off) and
meant for a machine with a core to spare for the engine. Under load it changes
nothing: the loop never sleeps then anyway (one extra callback per loop turn).

The same idea is Aeron's ``BusySpinIdleStrategy`` followed by a back-off, or
Linux's ``SO_BUSY_POLL`` (which loopback TCP does not support).
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional

#: most a window may be: a longer one is a configuration mistake, not a latency setting
MAX_WINDOW_US = 1_000_000


class BusyPoller:
    """Spins the loop for ``window_us`` after ``activity()`` last changed.

    ``activity`` is a cheap, monotonic count of completed work (the API's
    completed requests); it is read once per window, not per spin. ``clock``
    (monotonic ns) is injectable so tests can drive the state machine without
    sleeping.
    """

    def __init__(
        self,
        window_us: int,
        activity: Callable[[], int],
        *,
        parked_check_s: float = 0.001,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if type(window_us) is not int or not 0 < window_us <= MAX_WINDOW_US:
            raise ValueError(f"busy-poll window must be 1..{MAX_WINDOW_US} us, got {window_us!r}")
        if not parked_check_s > 0:
            raise ValueError("parked_check_s must be > 0")
        self.window_us = window_us
        self._window_ns = window_us * 1000
        self._activity = activity
        self._parked_check_s = parked_check_s
        self._clock = clock
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._handle: Optional[asyncio.Handle] = None
        self._seen = 0
        self._deadline = 0
        self.spinning = False
        #: park -> spin transitions (traffic came back after a quiet window)
        self.wakeups = 0
        #: spin -> park transitions (a window passed with no completed request)
        self.parks = 0

    def start(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        """Begin parked: spinning starts once a request completes."""
        if self._loop is not None:
            raise RuntimeError("BusyPoller already started")
        self._loop = loop or asyncio.get_running_loop()
        self._seen = self._activity()
        self._handle = self._loop.call_later(self._parked_check_s, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.spinning = False
        self._loop = None

    def stats(self) -> dict:
        return {"window_us": self.window_us, "spinning": self.spinning, "wakeups": self.wakeups, "parks": self.parks}

    def _spin(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = self._clock()
        if now < self._deadline:
            self._handle = loop.call_soon(self._spin)
            return
        seen = self._activity()
        if seen != self._seen:  # requests completed during the window: another window
            self._window(loop, seen, now)
            return
        self.spinning = False
        self.parks += 1
        self._handle = loop.call_later(self._parked_check_s, self._check)

    def _check(self) -> None:
        loop = self._loop
        if loop is None:
            return
        seen = self._activity()
        if seen == self._seen:
            self._handle = loop.call_later(self._parked_check_s, self._check)
            return
        self.spinning = True
        self.wakeups += 1
        self._window(loop, seen, self._clock())

    def _window(self, loop: asyncio.AbstractEventLoop, seen: int, now: int) -> None:
        """Spin for another window from ``now``, having seen ``seen`` completed requests."""
        self._seen = seen
        self._deadline = now + self._window_ns
        self._handle = loop.call_soon(self._spin)
