"""The one interface every broker implements, and the typed events it emits.

The engine cannot tell the simulated venue from the OANDA adapter: both take
``OrderRequest`` objects and report what happened as ``BrokerEvent`` values.
Keeping the interface this narrow is what lets the v20 HTTP simulator test the
OANDA adapter over real HTTP against the same venue model the engine uses
in-process.

Numbers crossing this boundary are already fixed-point integers at the core's
scales (see ``fastexec._core.fixedpoint``): prices at ``PRICE_SCALE``, units as
signed whole units (positive = buy/long), money at ``MONEY_SCALE`` in the
account's home currency. Decimal strings live only at the wire edges
(v20 JSON, REST API).

Every event that comes from a broker transaction carries ``txn_id`` — the
broker's per-account, strictly increasing transaction id — so the engine can
drop duplicates when the same transaction arrives twice (once in the HTTP
response, once on the transaction stream) and can resume a stream with
``transactions_since`` without missing a fill.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional, Sequence, Union


class V20OrderType(str, Enum):
    """Order types a v20 venue accepts as entries (exits are on-fill details)."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    MARKET_IF_TOUCHED = "MARKET_IF_TOUCHED"


class TimeInForce(str, Enum):
    GTC = "GTC"
    GTD = "GTD"
    GFD = "GFD"
    FOK = "FOK"
    IOC = "IOC"


class PositionFill(str, Enum):
    DEFAULT = "DEFAULT"
    REDUCE_FIRST = "REDUCE_FIRST"
    REDUCE_ONLY = "REDUCE_ONLY"
    OPEN_ONLY = "OPEN_ONLY"


class TriggerCondition(str, Enum):
    DEFAULT = "DEFAULT"
    INVERSE = "INVERSE"
    BID = "BID"
    ASK = "ASK"
    MID = "MID"


@dataclass(slots=True, frozen=True)
class ExitDetails:
    """An on-fill exit (stop loss, take profit or trailing stop).

    Exactly one of ``price`` / ``distance`` is set (both fixed-point at
    PRICE_SCALE). ``guaranteed`` applies to stop losses only.
    """

    price: Optional[int] = None
    distance: Optional[int] = None
    guaranteed: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    gtd_time_ns: Optional[int] = None


@dataclass(slots=True)
class OrderRequest:
    """One order as the engine hands it to a broker.

    ``client_id`` is the engine's client order id; brokers send it as v20
    ``clientExtensions.id`` and use it to find the order again after a lost
    response (never by resending).
    """

    client_id: str
    account_id: str
    instrument: str
    units: int  # signed: > 0 buy, < 0 sell
    type: V20OrderType = V20OrderType.MARKET
    price: Optional[int] = None
    price_bound: Optional[int] = None
    time_in_force: Optional[TimeInForce] = None  # None = v20's default for the type
    gtd_time_ns: Optional[int] = None
    position_fill: PositionFill = PositionFill.DEFAULT
    trigger_condition: TriggerCondition = TriggerCondition.DEFAULT
    stop_loss: Optional[ExitDetails] = None
    take_profit: Optional[ExitDetails] = None
    trailing_stop: Optional[ExitDetails] = None
    tag: Optional[str] = None
    comment: Optional[str] = None


# --------------------------------------------------------------------------- events


@dataclass(slots=True, frozen=True)
class OrderAccepted:
    """The broker holds a pending (working) order."""

    account_id: str
    client_id: Optional[str]
    broker_order_id: str
    txn_id: int
    time_ns: int


@dataclass(slots=True, frozen=True)
class OrderFilled:
    """Units traded. ``units`` is signed; ``price`` is the fill price (VWAP).

    ``pl``, ``financing`` and ``commission`` are in home-currency money;
    ``account_balance`` is the broker's balance after the fill when it says so.
    Fills of broker-side exits (stop loss, take profit, trailing stop, trade or
    position close) carry ``client_id`` None and a ``reason`` such as
    ``STOP_LOSS_ORDER``.
    """

    account_id: str
    client_id: Optional[str]
    broker_order_id: str
    txn_id: int
    instrument: str
    units: int
    price: int
    reason: str
    time_ns: int
    pl: int = 0
    financing: int = 0
    commission: int = 0
    account_balance: Optional[int] = None
    trade_opened_id: Optional[str] = None
    trades_closed: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class OrderCancelled:
    """The broker cancelled an order; ``reason`` is v20's OrderCancelReason."""

    account_id: str
    client_id: Optional[str]
    broker_order_id: str
    txn_id: int
    reason: str
    time_ns: int
    replaced_by_order_id: Optional[str] = None


@dataclass(slots=True, frozen=True)
class OrderRejected:
    """The broker refused a request; ``reason`` is v20's TransactionRejectReason."""

    account_id: str
    client_id: Optional[str]
    txn_id: Optional[int]
    reason: str
    message: str
    time_ns: int


@dataclass(slots=True, frozen=True)
class OrderReplaced:
    """A replace gave the order a new broker id (v20 replace = cancel + create)."""

    account_id: str
    client_id: Optional[str]
    old_broker_order_id: str
    new_broker_order_id: str
    txn_id: int
    time_ns: int


@dataclass(slots=True, frozen=True)
class PriceTick:
    """Top of book at instrument precision (PRICE_SCALE ints)."""

    instrument: str
    bid: int
    ask: int
    time_ns: int
    tradeable: bool = True


BrokerEvent = Union[OrderAccepted, OrderFilled, OrderCancelled, OrderRejected, OrderReplaced, PriceTick]
EventHandler = Callable[[BrokerEvent], None]


# --------------------------------------------------------------------------- snapshots


@dataclass(slots=True, frozen=True)
class AccountSnapshot:
    """The broker's view of an account, for reconciliation and display."""

    account_id: str
    currency: str
    balance: int
    unrealized_pl: int
    nav: int
    margin_used: int
    margin_available: int
    open_trade_count: int
    open_position_count: int
    pending_order_count: int
    last_txn_id: int


@dataclass(slots=True, frozen=True)
class BrokerPosition:
    account_id: str
    instrument: str
    long_units: int
    long_average_price: Optional[int]
    short_units: int  # negative or 0, as v20 reports it
    short_average_price: Optional[int]
    unrealized_pl: int
    pl: int


@dataclass(slots=True, frozen=True)
class BrokerOrder:
    """A working order at the broker as read back (by id or by client id)."""

    account_id: str
    broker_order_id: str
    client_id: Optional[str]
    instrument: Optional[str]
    units: int
    type: str
    state: str  # PENDING | FILLED | TRIGGERED | CANCELLED
    price: Optional[int] = None
    filling_txn_id: Optional[int] = None
    cancelling_txn_id: Optional[int] = None


class BrokerError(Exception):
    """A broker request failed for a reason other than a v20 reject.

    ``retryable`` is True only when repeating the request cannot duplicate an
    effect (reads, cancels) — order submission never retries through this.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable

    @property
    def history_gap(self) -> bool:
        """The venue no longer serves the transactions asked for: v20 answers 416 to a
        ``sinceid`` (or ``from``) older than the history it keeps, and so does the
        simulated venue past its bounded history. The caller has lost events it can
        only recover from the account's present state, not by asking again."""
        return self.status == 416


class Broker(abc.ABC):
    """What the engine needs from a venue. All methods run on the engine's loop.

    Request methods return the events the request produced, in transaction
    order (the same events are also delivered to the handler set with
    ``set_event_handler`` when they arrive asynchronously — later fills of
    pending orders, exits hit by price, expiries, price ticks). The engine
    dedupes by ``(account_id, txn_id)``.
    """

    name: str = "broker"

    @property
    def connected(self) -> bool:
        """False while the venue's streams are down (a stream failed and has not
        reconnected yet). A broker without streams is always connected: its
        outages show on requests. The engine's health and
        ``execution_broker_connected`` read this, so an outage shows even while
        no orders flow."""
        return True

    @property
    def connection_error(self) -> Optional[str]:
        """Why ``connected`` is False (``None`` while connected)."""
        return None

    @abc.abstractmethod
    def set_event_handler(self, handler: EventHandler) -> None: ...

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def account_ids(self) -> Sequence[str]: ...

    @abc.abstractmethod
    async def submit(self, request: OrderRequest) -> list[BrokerEvent]: ...

    @abc.abstractmethod
    async def replace(self, account_id: str, broker_order_id: str, request: OrderRequest) -> list[BrokerEvent]: ...

    @abc.abstractmethod
    async def cancel(self, account_id: str, broker_order_id: str) -> list[BrokerEvent]: ...

    @abc.abstractmethod
    async def close_position(
        self, account_id: str, instrument: str, long_units: Union[int, str, None], short_units: Union[int, str, None]
    ) -> list[BrokerEvent]:
        """Close a position; each side is a positive unit count, ``"ALL"`` or None."""

    @abc.abstractmethod
    async def close_trade(self, account_id: str, trade_id: str, units: Union[int, str] = "ALL") -> list[BrokerEvent]: ...

    @abc.abstractmethod
    async def account_summary(self, account_id: str) -> AccountSnapshot: ...

    @abc.abstractmethod
    async def open_positions(self, account_id: str) -> list[BrokerPosition]: ...

    @abc.abstractmethod
    async def pending_orders(self, account_id: str) -> list[BrokerOrder]: ...

    @abc.abstractmethod
    async def order_by_client_id(self, account_id: str, client_id: str) -> Optional[BrokerOrder]:
        """Look an order up by its client order id; None when the broker never saw it."""

    @abc.abstractmethod
    async def transactions_since(self, account_id: str, txn_id: int) -> list[BrokerEvent]:
        """Order events after ``txn_id``, for gap recovery and start-up reconciliation."""

    @abc.abstractmethod
    async def subscribe_prices(self, instruments: Sequence[str]) -> None:
        """Start delivering ``PriceTick`` events for these instruments to the handler."""

    @abc.abstractmethod
    async def latest_prices(self, instruments: Sequence[str]) -> list[PriceTick]: ...
