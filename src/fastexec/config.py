"""Configuration from the environment (and an optional ``.env`` file).

Variable names and defaults are the seed README's, so a deployment written
for the service fastexec replaces keeps working. Every value is validated at
start-up: a typo in a limit must stop the engine, not trade with a default.

Money limits are decimal strings converted to fixed-point here, once; nothing
downstream sees a float.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Mapping, Optional

MONEY_SCALE = 10**6
RATE_SCALE = 10**12
# Largest values the core accepts (fastexec._core.fixedpoint MAX_UNITS, MAX_MONEY,
# MAX_RATE; counts as fastexec.engine.risk), checked here so that a huge value is
# a ConfigError naming its variable, not a traceback from inside engine.start().
MAX_UNITS = 10**12
MAX_MONEY = 9 * 10**15  # at MONEY_SCALE: 9e9 in home currency
MAX_RATE = 10**18  # at RATE_SCALE: 1e6
MAX_COUNT = 10**9
# The simulated venue builds every account up front: more than this is a typo
# (100000000 accounts took 24 GB before the kernel killed the process).
MAX_SIM_ACCOUNTS = 1000


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _get(env: Mapping[str, str], name: str, default: Optional[str]) -> Optional[str]:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: Optional[int] = None) -> int:
    raw = _get(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw.strip()[:40]} is above the maximum {maximum}")
    return value


def _scaled(env: Mapping[str, str], name: str, default: str, scale: int, *, maximum: Optional[int] = None,
            positive: bool = False) -> int:
    """Parse a decimal string exactly at ``scale``; excess precision is an error.
    ``maximum`` is the largest allowed value at ``scale``; ``positive``: 0 is refused
    too (a limit whose 0 would stop all trading silently, which is the kill switch's job)."""
    raw = _get(env, name, default)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name}={raw!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{name}={raw!r} must be a finite non-negative number")
    if positive and value == 0:
        raise ConfigError(f"{name}=0 would refuse every order; it must be above 0 (use the kill switch to stop trading)")
    if maximum is not None and value * scale > maximum:
        raise ConfigError(f"{name}={raw.strip()[:40]} is above the maximum {Decimal(maximum) / scale:f}")
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"{name}={raw!r} has more decimals than supported (1/{scale})")
    return int(scaled)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name, None)
    if raw is None:
        return default
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false)")


def _commit_delay(value: int) -> int:
    from fastexec.journal.writer import MAX_COMMIT_DELAY_US

    if value > MAX_COMMIT_DELAY_US:
        raise ConfigError(f"FASTEXEC_JOURNAL_COMMIT_DELAY_US={value} is above the maximum {MAX_COMMIT_DELAY_US}")
    return value


def _tokens(raw: Optional[str]) -> dict[str, frozenset[str]]:
    """``FASTEXEC_API_TOKENS="tokA:acct1,acct2;tokB:*"`` -> {token: accounts}.

    ``*`` grants every account. Tokens are secrets: they are kept only here and
    compared in constant time by the API layer; they are never logged.
    """
    out: dict[str, frozenset[str]] = {}
    if not raw:
        return out
    for entry in raw.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        token, sep, accounts = entry.partition(":")
        token = token.strip()
        if not sep or not token or not accounts.strip():
            raise ConfigError("FASTEXEC_API_TOKENS entries must look like 'token:account1,account2' or 'token:*'")
        if len(token) < 16:
            raise ConfigError("FASTEXEC_API_TOKENS: every token must be at least 16 characters")
        out[token] = frozenset(a.strip() for a in accounts.split(",") if a.strip())
    return out


def busy_poll_window(value: int, name: str) -> int:
    """``value`` (microseconds; 0 = off) if it is a valid busy-poll window for ``name``
    (the environment variable or the flag), else a ``ConfigError`` naming it."""
    from fastexec.busypoll import MAX_WINDOW_US

    if value < 0:
        raise ConfigError(f"{name}={value} must be >= 0")
    if value > MAX_WINDOW_US:
        raise ConfigError(f"{name}={value} is above the maximum {MAX_WINDOW_US} (microseconds)")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the process reads from its environment, validated."""

    # OANDA (all three set -> OANDA broker; none set -> simulated venue)
    oanda_api_key: Optional[str] = field(default=None, repr=False)
    oanda_account_id: Optional[str] = None
    oanda_environment: str = "practice"
    oanda_rest_url: Optional[str] = None
    oanda_stream_url: Optional[str] = None
    # risk defaults applied to every account (seed names)
    max_concurrent_orders: int = 50
    max_position_size: int = 100_000
    max_leverage: int = 30 * RATE_SCALE
    max_daily_loss: int = 1000 * MONEY_SCALE
    max_positions_per_instrument: int = 3
    required_margin_ratio: int = RATE_SCALE // 50  # 0.02
    max_units_per_order: int = 100_000
    max_orders_per_second: int = 100
    # service
    host: str = "127.0.0.1"
    port: int = 8004
    prometheus_port: int = 8091
    log_level: str = "info"
    api_tokens: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    data_dir: str = "var"
    # fsync (default) | fdatasync | none. fsync and fdatasync both survive power loss (segments are
    # preallocated, so a batch changes no metadata reading it back needs; fdatasync skips the mtime
    # update and is slightly cheaper); none stops at the page cache: tests and benchmarks only
    journal_durability: str = "fsync"
    # fsync / fdatasync: batches as O_DIRECT writes through Linux AIO from the event loop (no writer
    # thread); false, or a file system without direct I/O, keeps the writer thread
    journal_direct: bool = True
    # direct writes under concurrent load: how long the next batch may wait for more records after
    # one completes (PostgreSQL's commit_delay); 0 = submit at once
    journal_commit_delay_us: int = 100
    # Idempotency-Key: the newest this many keys are remembered, each for this many seconds after
    # its first use; journaled with the orders, so a retry after a restart is answered too
    idempotency_keys: int = 10_000
    idempotency_ttl_s: int = 24 * 3600
    oanda_max_requests_per_s: int = 100
    oanda_pool_size: int = 10
    oanda_gslo_style: str = "legacy"  # legacy: stopLossOnFill.guaranteed (v20 3.0.25); modern: guaranteedStopLossOnFill
    # simulated venue
    sim_accounts: int = 1
    sim_balance: int = 100_000 * MONEY_SCALE
    sim_currency: str = "USD"
    sim_seed: int = 1
    sim_tick_interval_ms: int = 250
    sim_history: int = 20_000  # transactions the simulated venue keeps per account; 0 keeps all (memory grows per order)
    # keep the event loop polling this long after the last request instead of sleeping (0 = off);
    # lower one-client latency for a core's worth of CPU (see fastexec.busypoll)
    busy_poll_us: int = 0

    @property
    def uses_oanda(self) -> bool:
        return bool(self.oanda_api_key and self.oanda_account_id)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, *, dotenv: bool = True) -> "Settings":
        if env is None:
            if dotenv:
                try:
                    from dotenv import dotenv_values

                    file_values = {k: v for k, v in dotenv_values(".env").items() if v is not None}
                except ImportError:  # pragma: no cover - python-dotenv is a dependency
                    file_values = {}
                env = {**file_values, **os.environ}
            else:
                env = dict(os.environ)
        environment = (_get(env, "OANDA_ENVIRONMENT", "practice") or "practice").lower()
        if environment not in ("practice", "live"):
            raise ConfigError(f"OANDA_ENVIRONMENT={environment!r} must be 'practice' or 'live'")
        log_level = (_get(env, "LOG_LEVEL", "info") or "info").lower()
        if log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"LOG_LEVEL={log_level!r} is not one of debug, info, warning, error, critical")
        key = _get(env, "OANDA_API_KEY", None)
        account = _get(env, "OANDA_ACCOUNT_ID", None)
        if bool(key) != bool(account):
            raise ConfigError("OANDA_API_KEY and OANDA_ACCOUNT_ID must be set together (or neither, for the simulated venue)")
        durability = (_get(env, "FASTEXEC_JOURNAL_DURABILITY", "fsync") or "fsync").lower()
        if durability not in ("fsync", "fdatasync", "none"):
            raise ConfigError(f"FASTEXEC_JOURNAL_DURABILITY={durability!r} must be fsync, fdatasync or none")
        gslo_style = (_get(env, "OANDA_GSLO_STYLE", "legacy") or "legacy").lower()
        if gslo_style not in ("legacy", "modern"):
            raise ConfigError(f"OANDA_GSLO_STYLE={gslo_style!r} must be legacy or modern")
        currency = (_get(env, "FASTEXEC_SIM_CURRENCY", "USD") or "USD").upper()
        if len(currency) != 3 or not currency.isalpha():
            raise ConfigError(f"FASTEXEC_SIM_CURRENCY={currency!r} is not a currency code")
        return cls(
            oanda_api_key=key,
            oanda_account_id=account,
            oanda_environment=environment,
            oanda_rest_url=_get(env, "OANDA_REST_URL", None),
            oanda_stream_url=_get(env, "OANDA_STREAM_URL", None),
            max_concurrent_orders=_int(env, "MAX_CONCURRENT_ORDERS", 50, minimum=1, maximum=MAX_COUNT),
            max_position_size=_int(env, "MAX_POSITION_SIZE", 100_000, minimum=0, maximum=MAX_UNITS),
            max_leverage=_scaled(env, "MAX_LEVERAGE", "30", RATE_SCALE, maximum=MAX_RATE, positive=True),
            max_daily_loss=_scaled(env, "MAX_DAILY_LOSS", "1000", MONEY_SCALE, maximum=MAX_MONEY),
            max_positions_per_instrument=_int(env, "MAX_POSITIONS_PER_INSTRUMENT", 3, minimum=1, maximum=MAX_COUNT),
            required_margin_ratio=_scaled(env, "REQUIRED_MARGIN_RATIO", "0.02", RATE_SCALE, maximum=RATE_SCALE),
            max_units_per_order=_int(env, "MAX_UNITS_PER_ORDER", 100_000, minimum=1, maximum=MAX_UNITS),
            max_orders_per_second=_int(env, "MAX_ORDERS_PER_SECOND", 100, minimum=1, maximum=MAX_COUNT),
            host=_get(env, "FASTEXEC_HOST", "127.0.0.1"),
            port=_int(env, "FASTEXEC_PORT", 8004, minimum=0, maximum=65535),
            prometheus_port=_int(env, "PROMETHEUS_PORT", 8091, minimum=0, maximum=65535),
            log_level=log_level,
            api_tokens=_tokens(_get(env, "FASTEXEC_API_TOKENS", None)),
            data_dir=_get(env, "FASTEXEC_DATA_DIR", "var"),
            journal_durability=durability,
            journal_direct=_bool(env, "FASTEXEC_JOURNAL_DIRECT", True),
            journal_commit_delay_us=_commit_delay(_int(env, "FASTEXEC_JOURNAL_COMMIT_DELAY_US", 100)),
            idempotency_keys=_int(env, "FASTEXEC_IDEMPOTENCY_KEYS", 10_000, minimum=1),
            idempotency_ttl_s=_int(env, "FASTEXEC_IDEMPOTENCY_TTL_S", 24 * 3600, minimum=1),
            oanda_max_requests_per_s=_int(env, "OANDA_MAX_REQUESTS_PER_S", 100, minimum=1),
            oanda_pool_size=_int(env, "OANDA_POOL_SIZE", 10, minimum=1),
            oanda_gslo_style=gslo_style,
            sim_accounts=_int(env, "FASTEXEC_SIM_ACCOUNTS", 1, minimum=1, maximum=MAX_SIM_ACCOUNTS),
            sim_balance=_scaled(env, "FASTEXEC_SIM_BALANCE", "100000", MONEY_SCALE, maximum=MAX_MONEY),
            sim_currency=currency,
            sim_seed=_int(env, "FASTEXEC_SIM_SEED", 1),
            sim_tick_interval_ms=_int(env, "FASTEXEC_SIM_TICK_MS", 250, minimum=1),
            sim_history=_int(env, "FASTEXEC_SIM_HISTORY", 20_000),
            busy_poll_us=busy_poll_window(_int(env, "FASTEXEC_BUSY_POLL_US", 0), "FASTEXEC_BUSY_POLL_US"),
        )
