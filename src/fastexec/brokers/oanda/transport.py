"""The one HTTP face of the adapter: pooled sessions, limits, safe retries.

Two aiohttp sessions share one pair of limiters: the REST session (a pool of
``pool_size`` keep-alive connections, the one every request uses) and a
stream session for the long-lived pricing/transaction streams, which in
production live on a different host and would otherwise pin pool slots.

Retries here are only for requests whose repetition cannot change the venue
(reads, cancels). Order-creating calls use ``send`` once and leave the
resolution of an unknown outcome to the broker, which looks the order up.

Errors raised from this module carry method, path and status only: the
bearer token lives in the session's default headers and never reaches a
message, a repr or a log line.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from email.utils import parsedate_to_datetime
from typing import Any, Optional

import aiohttp
import orjson

from ..base import BrokerError
from .config import OandaConfig
from .limits import ConnectionRateLimiter, LimitedConnector, RequestRateLimiter

log = logging.getLogger("fastexec.brokers.oanda")

# Exceptions that mean "no usable answer": the request may or may not have
# reached the venue.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError)

_EMPTY: dict = {}


def _safe_path(url: str) -> str:
    """The path part of a URL for messages (no host, no query)."""
    i = url.find("/v3/")
    path = url[i:] if i >= 0 else url
    return path.split("?", 1)[0]


def retry_after_s(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds a ``Retry-After`` value asks for (RFC 9110 §10.2.3: delta
    seconds or an HTTP-date; a date in the past asks for nothing), or None
    when it is absent or unreadable.

    An unreadable value is ignored rather than failing the request: the
    jittered backoff still spaces the retry, and a malformed header from a
    proxy must not make a read or an order fail on its own."""
    if not value:
        return None
    v = value.strip()
    try:
        secs = float(v)
    except ValueError:
        try:
            when = parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(secs):
        return None
    return max(0.0, secs)


class V20Http:
    __slots__ = (
        "cfg",
        "requests",
        "connections",
        "session",
        "stream_session",
        "t_order",
        "t_read",
        "t_cancel",
        "t_stream",
        "_headers",
        "retries",
        "statuses",
    )

    def __init__(self, cfg: OandaConfig) -> None:
        self.cfg = cfg
        self.requests = RequestRateLimiter(cfg.max_requests_per_s, cfg.request_burst, cfg.rate_slack)
        self.connections = ConnectionRateLimiter(cfg.max_new_connections_per_s, cfg.connection_window_s)
        self.session: Optional[aiohttp.ClientSession] = None
        self.stream_session: Optional[aiohttp.ClientSession] = None
        t = cfg.timeouts
        # The read timer starts once the request is on the wire, so time spent
        # queued behind our own limiters never counts as a venue timeout.
        self.t_order = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.order)
        self.t_read = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.read)
        self.t_cancel = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.cancel)
        self.t_stream = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.stream_heartbeat)
        self._headers = {
            "Authorization": "Bearer " + cfg.token,
            "Content-Type": "application/json",
            "Accept-Datetime-Format": "RFC3339",
            "User-Agent": cfg.user_agent,
        }
        self.retries = 0
        self.statuses: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"V20Http(rest={self.cfg.rest_base!r}, pool_size={self.cfg.pool_size})"

    async def open(self) -> None:
        if self.session is not None:
            return
        cfg = self.cfg
        rest = LimitedConnector(
            requests=self.requests,
            connections=self.connections,
            limit=cfg.pool_size,
            limit_per_host=cfg.pool_size,
            keepalive_timeout=cfg.keepalive_s,
            ttl_dns_cache=300,
        )
        streams = LimitedConnector(
            requests=self.requests,
            connections=self.connections,
            limit=0,
            keepalive_timeout=cfg.keepalive_s,
        )
        common = dict(
            headers=self._headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            json_serialize=lambda o: orjson.dumps(o).decode(),
            raise_for_status=False,
            trust_env=False,
        )
        self.session = aiohttp.ClientSession(connector=rest, **common)
        self.stream_session = aiohttp.ClientSession(connector=streams, **common)
        # aiohttp silently re-sends PUT/GET once when a kept-alive connection
        # drops mid-request; v20's PUTs (replace, trade/position close) are not
        # idempotent, so that resend could close a position twice. Every retry
        # must be ours, where it is decided by lookup.
        for s in (self.session, self.stream_session):
            if not hasattr(s, "_retry_connection"):
                raise RuntimeError("aiohttp changed: cannot disable its automatic request retry")
            s._retry_connection = False

    async def close(self) -> None:
        for s in (self.session, self.stream_session):
            if s is not None:
                await s.close()
        self.session = self.stream_session = None

    async def send(
        self, method: str, url: str, body: Optional[bytes], timeout: aiohttp.ClientTimeout, params: Any = None
    ) -> tuple[int, dict, Any]:
        """One attempt. Returns (status, parsed JSON body, headers); raises a
        transport error when there is no complete answer."""
        session = self.session
        if session is None:
            raise BrokerError("OANDA adapter is not started")
        async with session.request(method, url, data=body, params=params, timeout=timeout) as resp:
            raw = await resp.read()
            status = resp.status
            headers = resp.headers
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if raw:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = {"errorMessage": f"non-JSON body ({len(raw)} bytes)"}
        else:
            data = _EMPTY
        return status, data, headers

    def retry_delay(self, attempt: int, headers: Any = None) -> Optional[float]:
        """Seconds to wait before the attempt after ``attempt``, or None when
        the venue's ``Retry-After`` asks for more than ``retry_after_max_s``:
        the caller gives up then, since retrying sooner than asked is what a
        rate limiter counts against us and a request stuck for minutes is
        worth less to the engine than a prompt failure.

        Without a ``Retry-After``: exponential backoff with full jitter up to
        ``backoff_max_s``. With one, at least what it asks for."""
        cfg = self.cfg
        delay = random.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_base_s * (2**attempt)))
        if headers is not None:
            asked = retry_after_s(headers.get("Retry-After"))
            if asked is not None:
                if asked > cfg.retry_after_max_s:
                    return None
                delay = max(delay, asked)
        return delay

    async def idempotent(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        body: Optional[bytes] = None,
        timeout: Optional[aiohttp.ClientTimeout] = None,
        attempts: Optional[int] = None,
    ) -> tuple[int, dict]:
        """Send, retrying 429/5xx/transport failures with jittered backoff
        (or after the ``Retry-After`` the venue sends, see ``retry_delay``).

        Only for requests that change nothing at the venue when repeated.
        Returns the first definitive (non-429, non-5xx) answer.
        """
        n = attempts or self.cfg.max_attempts
        tmo = timeout or self.t_read
        last = ""
        for attempt in range(n):
            headers = None
            try:
                status, data, headers = await self.send(method, url, body, tmo, params)
            except TRANSPORT_ERRORS as exc:
                last = type(exc).__name__
            else:
                if status != 429 and status < 500:
                    return status, data
                last = f"HTTP {status}"
            if attempt + 1 < n:
                delay = self.retry_delay(attempt, headers)
                if delay is None:
                    raise BrokerError(
                        f"{method} {_safe_path(url)} failed after {attempt + 1} attempts: {last}, and the venue asks "
                        f"to wait longer than {self.cfg.retry_after_max_s:g} s (Retry-After)",
                        retryable=True,
                    )
                self.retries += 1
                log.debug("retrying %s %s after %s", method, _safe_path(url), last)
                await asyncio.sleep(delay)
        raise BrokerError(f"{method} {_safe_path(url)} failed after {n} attempts: {last}", retryable=True)
