"""What callers hand the engine: an order specification and its exits.

These are input types, kept separate from the views the engine returns, so a
caller can build an ``OrderSpec`` without touching engine state. Numbers are
already fixed-point ints (prices at ``PRICE_SCALE``, whole units): the decimal
strings of the REST API are parsed at the edge with the instrument's precision,
so the engine never has to guess a scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Optional


class OrderType(str, Enum):
    """The eight entry types of the seed contract.

    ``stop_limit`` and ``trailing_stop`` are emulated by the engine (v20 has
    no resting stop-limit and trails only exits); the others map 1:1 to v20.
    """

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"
    MARKET_IF_TOUCHED = "market_if_touched"
    FOK = "fok"
    IOC = "ioc"


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"


class TradingState(str, Enum):
    """Per-account gate in front of every new order.

    REDUCING lets an operator wind an account down without a full halt:
    only orders that shrink the existing net position pass.
    """

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class ExitSpec:
    """A stop loss / take profit attached to an entry, created when it fills.

    Exactly one of ``price`` (absolute, PRICE_SCALE) or ``distance`` (from the
    fill price, PRICE_SCALE) is set. ``guaranteed`` asks for a guaranteed stop
    loss where the venue allows it (stop loss only).
    """

    price: Optional[int] = None
    distance: Optional[int] = None
    guaranteed: bool = False


@dataclass(slots=True)
class OrderSpec:
    """One order as a caller describes it (contracts §5).

    ``price`` is the limit price for limit / stop_limit / fok- and ioc-limit
    orders and the trigger for stop / market_if_touched; ``stop_price`` is the
    trigger of a stop_limit; ``trailing_distance`` is how far a trailing-stop
    entry trails the market. ``trailing_stop_distance`` is the on-fill trailing
    stop loss, a different thing.
    """

    account_id: str
    instrument: str
    side: str
    units: int
    type: OrderType | str = OrderType.MARKET
    price: Optional[int] = None
    stop_price: Optional[int] = None
    trailing_distance: Optional[int] = None
    time_in_force: Optional[str] = None
    gtd_time: Optional[datetime] = None
    stop_loss: Optional[ExitSpec] = None
    take_profit: Optional[ExitSpec] = None
    trailing_stop_distance: Optional[int] = None
    client_order_id: Optional[str] = None
