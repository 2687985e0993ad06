"""Fault injection and request statistics for the v20 HTTP simulator.

A client that only ever meets a perfect broker is untested where it matters:
OANDA limits request and connection rates, answers 5xx, and sometimes applies
an order but never delivers the response. ``FaultConfig`` switches each of
those on, by probability (from a seeded RNG, so a run is repeatable) or for
the next N matching requests (so a test can force exactly one), and it can be
changed while the server runs. ``Stats`` records what the server saw so tests
can check a client kept under the limits.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class FaultConfig:
    """Faults applied to the next requests; mutate fields at run time freely.

    Times are in seconds (latency is scheduling, never money). Probabilities
    are drawn from ``random.Random(seed)``; ``*_next`` counters force the next
    N matching requests regardless of probability and count down.

    At most one request fault hits a request. They are tried in this order and
    the first that fires wins (the later ones are not even drawn, so their
    ``*_next`` counters are not consumed): the rate limit (429), then an error
    (``error_*``: 5xx, nothing applied unless ``error_applies``), then a
    timeout (``timeout_*``), then a
    drop before the venue sees the request (``drop_before_apply_*``), then a
    drop after it was applied (``drop_*``). So an error fault takes precedence
    over a timeout fault on the same request. Streams take only the error
    fault at open; their own faults are the ``stream_*`` fields.
    """

    seed: int = 1
    # added latency before each request is handled: fixed + uniform [0, jitter]
    latency: float = 0.0
    jitter: float = 0.0
    # OANDA's limits; None = unlimited. Excess requests get 429, excess new
    # connections are refused (closed at once, or answered 429 when
    # connection_reject_with_429 is set).
    rate_limit: Optional[int] = None
    connection_rate_limit: Optional[int] = None
    connection_reject_with_429: bool = False
    # random server errors: by default answered before the request touches the
    # venue (a load balancer refusing it). A 5xx proves nothing to a client,
    # though: OANDA's order engine can apply a request and its front end still
    # answer 500/503, so with ``error_applies`` the venue applies the request
    # and the client gets only the error. ``error_apply_delay`` > 0 sends the
    # error first and applies the request that many seconds later (a gateway
    # giving up on an order engine still working on it: lookups made at once
    # find nothing yet). Streams never apply: an error at stream open is a
    # refusal.
    error_rate: float = 0.0
    error_next: int = 0
    error_status: int = 503
    error_applies: bool = False
    error_apply_delay: float = 0.0
    # a Retry-After header on the error answer (seconds or an HTTP-date), to
    # test a client's waiting; None sends none
    error_retry_after: Optional[str] = None
    # held requests: the server sits on the request for ``hold`` seconds (longer
    # than the client's timeout) and then applies it or not
    timeout_rate: float = 0.0
    timeout_next: int = 0
    hold: float = 5.0
    timeout_applies: bool = True
    timeout_apply_late: bool = False  # apply after the hold (the client has given up and may have looked already)
    # the request is applied at the venue, then the connection is dropped
    # without a response (the order exists; the client never hears of it)
    drop_rate: float = 0.0
    drop_next: int = 0
    # the connection is dropped before the venue sees the request: nothing is
    # applied (no order, no transaction id consumed) and no response is sent,
    # so a client cannot tell it from ``drop_*`` until it looks the order up
    drop_before_apply_rate: float = 0.0
    drop_before_apply_next: int = 0
    # which requests the error/timeout/drop faults apply to
    fault_methods: tuple = ("POST", "PUT", "PATCH", "GET")
    fault_path: Optional[str] = None  # substring of the path, e.g. "/orders"
    # streams
    heartbeat: float = 5.0
    stream_stall_after: Optional[int] = None  # lines sent before the stream goes silent
    stream_stall_for: float = 30.0
    stream_disconnect_after: Optional[int] = None  # lines sent before the server closes the stream
    # the transaction stream silently leaves out the next N transaction lines
    # (heartbeats still flow and still carry lastTransactionID, the connection
    # stays open): a client must notice the id gap and fetch the missing
    # transactions with /transactions/sinceid
    stream_skip_next: int = 0
    max_streams: int = 20
    # fields replaced in the transaction with this id wherever it is read from
    # the log (sinceid, idrange, GET /transactions/{id}, the transaction
    # stream), the venue's books unchanged: how a test shows a client a
    # transaction this venue cannot make, such as a fill of an index CFD
    # traded in tenths of a unit from another platform on the same account
    txn_overrides: dict = field(default_factory=dict)
    price_interval: float = 0.25  # seconds between stream price updates per instrument (≤ 4/s)

    _rng: random.Random = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def matches(self, method: str, path: str) -> bool:
        return method in self.fault_methods and (self.fault_path is None or self.fault_path in path)

    def delay(self) -> float:
        if self.jitter:
            return self.latency + self._rng.uniform(0.0, self.jitter)
        return self.latency

    def _take(self, next_attr: str, rate: float) -> bool:
        n = getattr(self, next_attr)
        if n > 0:
            setattr(self, next_attr, n - 1)
            return True
        return rate > 0 and self._rng.random() < rate

    def take_error(self) -> bool:
        return self._take("error_next", self.error_rate)

    def take_timeout(self) -> bool:
        return self._take("timeout_next", self.timeout_rate)

    def take_drop(self) -> bool:
        return self._take("drop_next", self.drop_rate)

    def take_drop_before_apply(self) -> bool:
        return self._take("drop_before_apply_next", self.drop_before_apply_rate)

    def take_stream_skip(self) -> bool:
        """One transaction line to leave out of a transaction stream?"""
        if self.stream_skip_next > 0:
            self.stream_skip_next -= 1
            return True
        return False


@dataclass
class RequestRecord:
    time: float  # time.monotonic() when the request arrived
    method: str
    path: str
    status: int = 0
    fault: Optional[str] = None  # None | "429" | "5xx" | "timeout" | "drop_before_apply" | "drop"
    delay: float = 0.0  # latency added by the fault config, seconds
    applied: Optional[bool] = None  # for 5xx/timeout/drop faults: did (or will) the request reach the venue


@dataclass
class Stats:
    """What the server saw, in arrival order (monotonic seconds)."""

    requests: list = field(default_factory=list)
    connections: list = field(default_factory=list)  # accepted new connections
    rejected_connections: list = field(default_factory=list)
    streams_opened: int = 0
    streams_rejected: int = 0
    stream_lines_skipped: list = field(default_factory=list)  # transaction ids left out by stream_skip_next

    def request_times(self) -> list:
        return [r.time for r in self.requests]

    def count(self, fault: Optional[str] = None, path: Optional[str] = None) -> int:
        return sum(1 for r in self.requests if (fault is None or r.fault == fault) and (path is None or path in r.path))

    @staticmethod
    def max_in_window(times: list, window: float = 1.0) -> int:
        """Largest number of events inside any window of ``window`` seconds."""
        best = 0
        j = 0
        ts = sorted(times)
        for i, t in enumerate(ts):
            while ts[j] <= t - window:
                j += 1
            best = max(best, i - j + 1)
        return best

    def clear(self) -> None:
        self.requests.clear()
        self.connections.clear()
        self.rejected_connections.clear()
        self.streams_opened = 0
        self.streams_rejected = 0
        self.stream_lines_skipped.clear()


class SlidingWindow:
    """Events in the last second, for OANDA's per-second limits."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        from collections import deque

        self.times = deque()

    def admit(self, limit: Optional[int], now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        q = self.times
        while q and q[0] <= now - 1.0:
            q.popleft()
        if limit is not None and len(q) >= limit:
            return False
        q.append(now)
        return True
