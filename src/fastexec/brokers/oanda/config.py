"""Settings of the OANDA v20 adapter.

Everything that decides how hard we may hit OANDA lives here, in one frozen
object, so a test can point the adapter at the simulator and tighten timeouts
without touching the code paths production uses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional

ENVIRONMENTS: dict[str, tuple[str, str]] = {
    "practice": ("https://api-fxpractice.oanda.com", "https://stream-fxpractice.oanda.com"),
    "live": ("https://api-fxtrade.oanda.com", "https://stream-fxtrade.oanda.com"),
}


# How a guaranteed stop loss on fill is requested: "legacy" is v20 3.0.25's
# ``stopLossOnFill: {..., "guaranteed": true}``; "modern" is the separate
# ``guaranteedStopLossOnFill: {...}`` newer OANDA servers take instead. Pick
# the one the server knows: a server that does not know the field it is sent
# may ignore it and fill the order with no stop loss at all (our simulator,
# which speaks 3.0.25, does exactly that with "modern").
GSLO_STYLES = ("legacy", "modern")


class OandaConfigError(ValueError):
    """The environment does not describe a usable OANDA connection."""


@dataclass(frozen=True, slots=True)
class OandaTimeouts:
    """Seconds per request type: an order POST is given longer than a read
    because an unanswered POST costs a lookup round trip to resolve."""

    connect: float = 5.0
    order: float = 10.0
    read: float = 5.0
    cancel: float = 5.0
    # No byte on a stream for this long means the stream is dead (OANDA
    # heartbeats every 5 s, so two missed heartbeats).
    stream_heartbeat: float = 11.0


@dataclass(frozen=True, slots=True)
class OandaConfig:
    token: str = field(repr=False)
    account_ids: tuple[str, ...] = ()
    environment: str = "practice"
    rest_url: Optional[str] = None
    stream_url: Optional[str] = None
    # Connection pool (seed: 10 persistent connections, 30 s keep-alive).
    pool_size: int = 10
    keepalive_s: float = 30.0
    # OANDA: at most 2 new connections per second, ~100 requests per second.
    max_new_connections_per_s: int = 2
    max_requests_per_s: int = 100
    request_burst: int = 5
    # Safety margins for the venue's clock, not ours: requests and connect
    # attempts we space correctly can still arrive bunched (network jitter,
    # a busy server loop accepting late), so the request bucket refills as if
    # each second were ``1 + rate_slack`` long and new connections are spaced
    # over ``connection_window_s`` instead of exactly one second.
    rate_slack: float = 0.1
    connection_window_s: float = 1.2
    timeouts: OandaTimeouts = field(default_factory=OandaTimeouts)
    # Idempotent requests (reads, cancels), and order requests answered 429:
    # attempts and exponential backoff with full jitter, used when the answer
    # carries no Retry-After.
    max_attempts: int = 5
    backoff_base_s: float = 0.05
    backoff_max_s: float = 2.0
    # A Retry-After (seconds or HTTP-date) is waited out in full up to this
    # long; one asking for more ends the retries at once (reads raise, an
    # order is reported NOT_PLACED) instead of retrying early against the
    # venue's limiter or holding the caller for minutes.
    retry_after_max_s: float = 60.0
    # How long an unanswered order request is looked up (by client id) before
    # it is declared not placed; must exceed the venue's worst processing time.
    resolve_window_s: float = 15.0
    # Streams reconnect with backoff between these bounds.
    stream_backoff_base_s: float = 0.1
    stream_backoff_max_s: float = 10.0
    user_agent: str = "fastexec/0.1"
    # See GSLO_STYLES.
    gslo_style: str = "legacy"

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise OandaConfigError(
                f"OANDA_ENVIRONMENT must be one of {sorted(ENVIRONMENTS)}, got {self.environment!r}"
            )
        if not self.token:
            raise OandaConfigError("OANDA_API_KEY is empty")
        if self.pool_size < 1 or self.max_new_connections_per_s < 1 or self.max_requests_per_s < 1:
            raise OandaConfigError("pool_size, max_new_connections_per_s and max_requests_per_s must be >= 1")
        if not 1 <= self.request_burst < self.max_requests_per_s:
            raise OandaConfigError("request_burst must be >= 1 and below max_requests_per_s")
        if not self.retry_after_max_s >= 0:
            raise OandaConfigError("retry_after_max_s must be >= 0")
        if self.gslo_style not in GSLO_STYLES:
            raise OandaConfigError(f"OANDA_GSLO_STYLE must be one of {list(GSLO_STYLES)}, got {self.gslo_style!r}")

    def __repr__(self) -> str:  # the token never appears, even masked
        return (
            f"OandaConfig(environment={self.environment!r}, account_ids={self.account_ids!r}, "
            f"rest_url={self.rest_base!r}, stream_url={self.stream_base!r}, pool_size={self.pool_size}, "
            f"max_requests_per_s={self.max_requests_per_s}, "
            f"max_new_connections_per_s={self.max_new_connections_per_s})"
        )

    __str__ = __repr__

    @property
    def rest_base(self) -> str:
        return (self.rest_url or ENVIRONMENTS[self.environment][0]).rstrip("/")

    @property
    def stream_base(self) -> str:
        # A simulator serves both faces on one port, so a REST override alone
        # also moves the streams.
        return (self.stream_url or self.rest_url or ENVIRONMENTS[self.environment][1]).rstrip("/")

    def with_(self, **changes) -> "OandaConfig":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides) -> "OandaConfig":
        """Read ``OANDA_API_KEY``, ``OANDA_ACCOUNT_ID`` (comma-separated for
        several accounts), ``OANDA_ENVIRONMENT`` (practice|live) and the
        optional overrides ``OANDA_REST_URL`` / ``OANDA_STREAM_URL`` (so the
        engine can point at the simulator), ``OANDA_MAX_REQUESTS_PER_S`` /
        ``OANDA_POOL_SIZE`` and ``OANDA_GSLO_STYLE`` (legacy|modern, see
        ``GSLO_STYLES``)."""
        env = os.environ if environ is None else environ
        token = env.get("OANDA_API_KEY", "").strip()
        if not token:
            raise OandaConfigError("OANDA_API_KEY is not set")
        accounts = tuple(a.strip() for a in env.get("OANDA_ACCOUNT_ID", "").split(",") if a.strip())
        kwargs: dict = dict(
            token=token,
            account_ids=accounts,
            environment=env.get("OANDA_ENVIRONMENT", "practice").strip().lower() or "practice",
            rest_url=env.get("OANDA_REST_URL") or None,
            stream_url=env.get("OANDA_STREAM_URL") or None,
        )
        gslo = env.get("OANDA_GSLO_STYLE", "").strip().lower()
        if gslo:
            kwargs["gslo_style"] = gslo
        for var, key in (("OANDA_MAX_REQUESTS_PER_S", "max_requests_per_s"), ("OANDA_POOL_SIZE", "pool_size")):
            if env.get(var):
                try:
                    kwargs[key] = int(env[var])
                except ValueError:
                    raise OandaConfigError(f"{var} must be an integer, got {env[var]!r}") from None
        kwargs.update(overrides)
        return cls(**kwargs)
