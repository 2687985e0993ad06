"""OANDA v20 adapter: ``OandaBroker`` implements ``fastexec.brokers.base.Broker``.

Configure with ``OandaConfig.from_env()`` (``OANDA_API_KEY``,
``OANDA_ACCOUNT_ID``, ``OANDA_ENVIRONMENT``, optional ``OANDA_REST_URL`` /
``OANDA_STREAM_URL``).
"""
from .broker import NOT_PLACED, OandaBroker
from .config import OandaConfig, OandaConfigError, OandaTimeouts
from .limits import ConnectionRateLimiter, RequestRateLimiter
from .types import AccountChanges, OandaInstrument, OandaTrade

__all__ = [
    "NOT_PLACED",
    "AccountChanges",
    "ConnectionRateLimiter",
    "OandaBroker",
    "OandaConfig",
    "OandaConfigError",
    "OandaInstrument",
    "OandaTimeouts",
    "OandaTrade",
    "RequestRateLimiter",
]
