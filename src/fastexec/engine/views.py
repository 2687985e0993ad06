"""Read-only snapshots the engine hands out.

A view is taken at one instant and never changes afterwards, so a caller can
keep it, compare it, or serialise it later without racing the event loop.
Fields are ints at the core's scales (prices PRICE_SCALE, money MONEY_SCALE in
the account currency, rates RATE_SCALE); ``to_dict()`` gives the JSON wire form:
prices as decimal strings at the instrument's display precision, money at 4
places (rounded half-even for display only), rates as exact decimals,
timestamps as RFC 3339 UTC with nanoseconds, like v20.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from time import gmtime as _gmtime
from time import strftime as _strftime
from typing import NamedTuple, Optional

from fastexec._core.fixedpoint import MAX_PRICE, format_money, format_rate
from fastexec._core.fixedpoint import format_price as _core_format_price

from . import wire as _wire
from .types import ExitSpec


_TS_CACHE = [None, ""]  # [seconds, "YYYY-MM-DDTHH:MM:SS."] of the last timestamp formatted


def _ts(ns: Optional[int]) -> Optional[str]:
    """RFC 3339 UTC with nanoseconds. The date-time part is formatted once per
    second (views of one order, and consecutive orders, share it)."""
    if ns is None:
        return None
    secs, frac = divmod(ns, 1_000_000_000)
    cache = _TS_CACHE
    if secs != cache[0]:
        cache[1] = _strftime("%Y-%m-%dT%H:%M:%S.", _gmtime(secs))
        cache[0] = secs
    return f"{cache[1]}{frac:09d}Z"


_PX_UNIT = tuple(10 ** (9 - p) for p in range(10))  # PRICE_SCALE step of the last decimal at precision p
_PX_PAD = tuple(10 ** p for p in range(10))


def format_price(value, precision) -> str:
    """``fastexec._core.fixedpoint.format_price`` with the common case in a few
    integer operations (the core's builds its format spec per call, ~14k
    instructions). Same text for every value; anything unusual (zero,
    negative, out of range, finer than ``precision``, not an int) goes to the
    core, which raises as before."""
    if type(value) is int and 0 < value <= MAX_PRICE and type(precision) is int and 0 < precision <= 9:
        q, r = divmod(value, 1_000_000_000)
        unit = _PX_UNIT[precision]
        if not r % unit:
            # zero-padded decimals: str(r // unit + 10**p) is "1" followed by them
            return f"{q}.{str(r // unit + _PX_PAD[precision])[1:]}"
    return _core_format_price(value, precision)


def _px(value: Optional[int], precision: int) -> Optional[str]:
    return None if value is None else format_price(value, precision)


def _avg_px(value: Optional[int], precision: int) -> Optional[str]:
    """Average fill prices are VWAPs and may carry more decimals than the
    instrument quotes: those are shown (up to nanos), never rounded away."""
    if value is None:
        return None
    unit = _PX_UNIT[precision] if type(precision) is int and 0 <= precision <= 9 else 10 ** (9 - precision)
    if value % unit == 0:
        return format_price(value, precision)
    return format_price(value, 9).rstrip("0")


def _money(value: Optional[int]) -> Optional[str]:
    return None if value is None else format_money(value, 4)


def _exit(spec: Optional[ExitSpec], precision: int) -> Optional[dict]:
    if spec is None:
        return None
    out: dict = {}
    if spec.price is not None:
        out["price"] = format_price(spec.price, precision)
    if spec.distance is not None:
        out["distance"] = format_price(spec.distance, precision)
    if spec.guaranteed:
        out["guaranteed"] = True
    return out


class OrderView(NamedTuple):
    """One order as the engine knows it. ``order_id`` never changes, even
    when the broker replaces the order and gives it a new ``broker_order_id``.

    ``status`` is the lower-case status word (see ``fastexec.engine.STATUS``).
    Emulated orders show ``waiting`` until their trigger, then ``triggered``
    while the child order is on its way, then the child's state. ``trigger_price``
    is the current trigger level (it moves for a trailing-stop entry).

    Immutable like the other views, but a ``NamedTuple`` rather than a frozen
    dataclass: it is built once per submit on the hot path, where a 26-field
    frozen dataclass costs several microseconds and a tuple a fraction of one.
    """

    order_id: str
    client_order_id: str
    broker_order_id: Optional[str]
    status: str
    account_id: str
    instrument: str
    side: str
    type: str
    units: int
    filled_units: int
    price: Optional[int]
    stop_price: Optional[int]
    trailing_distance: Optional[int]
    trigger_price: Optional[int]
    average_fill_price: Optional[int]
    time_in_force: Optional[str]
    gtd_time: Optional[int]
    stop_loss: Optional[ExitSpec]
    take_profit: Optional[ExitSpec]
    trailing_stop_distance: Optional[int]
    created_at: int
    updated_at: int
    reject_reason: Optional[str]
    request_id: Optional[str]
    timings: dict
    precision: int = 5

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN_STATUSES

    # The JSON wire form (compiled, fastexec.engine.wire; the Python
    # reference is _order_dict_reference below, same text for every view).
    to_dict = _wire.order_dict


def _order_dict_reference(self) -> dict:
    """``OrderView.to_dict`` in Python: the reference the compiled one
    (``wire.order_dict``) must equal, text for text and error for error
    (tests/engine/test_views_wire.py)."""
    (order_id, client_order_id, broker_order_id, status, account_id, instrument, side, type_, units,
     filled_units, price, stop_price, trailing_distance, trigger_price, average_fill_price, time_in_force,
     gtd_time, stop_loss, take_profit, trailing_stop_distance, created_at, updated_at, reject_reason,
     request_id, timings, p) = self
    return {
        "order_id": order_id,
        "client_order_id": client_order_id,
        "broker_order_id": broker_order_id,
        "status": status,
        "account_id": account_id,
        "instrument": instrument,
        "side": side,
        "type": type_,
        "units": str(units),
        "filled_units": str(filled_units),
        "price": None if price is None else format_price(price, p),
        "stop_price": None if stop_price is None else format_price(stop_price, p),
        "trailing_distance": None if trailing_distance is None else format_price(trailing_distance, p),
        "trigger_price": None if trigger_price is None else format_price(trigger_price, p),
        "average_fill_price": None if average_fill_price is None else _avg_px(average_fill_price, p),
        "time_in_force": time_in_force,
        "gtd_time": None if gtd_time is None else _ts(gtd_time),
        "stop_loss": None if stop_loss is None else _exit(stop_loss, p),
        "take_profit": None if take_profit is None else _exit(take_profit, p),
        "trailing_stop_distance": None if trailing_stop_distance is None else format_price(trailing_stop_distance, p),
        "created_at": _ts(created_at),
        "updated_at": _ts(updated_at),
        "reject_reason": reject_reason,
        "request_id": request_id,
        "timings": dict(timings),
    }


_wire.install(_ts, format_price, _avg_px, _money, _exit, _order_dict_reference, OrderView)

_OPEN_STATUSES = frozenset()  # filled in by engine.orders once the core's states are known


@dataclass(frozen=True, slots=True)
class PositionView:
    """Net position of one account in one instrument (netting, like a
    non-hedging v20 account). ``units`` is signed; money is in the account
    currency; ``average_price`` is None when flat."""

    account_id: str
    instrument: str
    units: int
    average_price: Optional[int]
    realized_pl: int
    unrealized_pl: int
    margin_used: int
    notional: int
    precision: int = field(default=5, repr=False, compare=False)

    @property
    def side(self) -> str:
        return "long" if self.units > 0 else "short" if self.units < 0 else "flat"

    to_dict = _wire.position_dict  # compiled; reference: _position_dict_reference

    def _position_dict_reference(self) -> dict:
        return {
            "account_id": self.account_id,
            "instrument": self.instrument,
            "side": self.side,
            "units": str(self.units),
            "average_price": _avg_px(self.average_price, self.precision),
            "realized_pl": _money(self.realized_pl),
            "unrealized_pl": _money(self.unrealized_pl),
            "margin_used": _money(self.margin_used),
            "notional": _money(self.notional),
        }


@dataclass(frozen=True, slots=True)
class AccountView:
    account_id: str
    currency: str
    balance: int
    nav: int
    unrealized_pl: int
    realized_pl: int
    margin_used: int
    margin_available: int
    open_positions: int
    working_orders: int
    daily_pl: int
    trading_state: str
    kill_switch_active: bool

    to_dict = _wire.account_dict  # compiled; reference: _account_dict_reference

    def _account_dict_reference(self) -> dict:
        return {
            "account_id": self.account_id,
            "currency": self.currency,
            "balance": _money(self.balance),
            "nav": _money(self.nav),
            "unrealized_pl": _money(self.unrealized_pl),
            "realized_pl": _money(self.realized_pl),
            "margin_used": _money(self.margin_used),
            "margin_available": _money(self.margin_available),
            "open_positions": self.open_positions,
            "working_orders": self.working_orders,
            "daily_pl": _money(self.daily_pl),
            "trading_state": self.trading_state,
            "kill_switch_active": self.kill_switch_active,
        }


@dataclass(frozen=True, slots=True)
class RiskMetrics:
    """Exposure and limit usage of one account; see ``engine.risk`` for the
    risk score formula. ``leverage`` and ``margin_utilisation`` are rates
    (RATE_SCALE); exposure and P&L are money."""

    account_id: str
    exposure: int
    net_exposure: int
    leverage: int
    margin_utilisation: int
    daily_pl: int
    daily_loss_limit: int
    risk_score: int
    trading_state: str
    working_orders: int
    open_positions: int
    trading_day_start: int

    def to_dict(self) -> dict:
        return {
            "account_id": self.account_id,
            "exposure": _money(self.exposure),
            "net_exposure": _money(self.net_exposure),
            "leverage": format_rate(self.leverage),
            "margin_utilisation": format_rate(self.margin_utilisation),
            "daily_pl": _money(self.daily_pl),
            "daily_loss_limit": _money(self.daily_loss_limit),
            "risk_score": self.risk_score,
            "trading_state": self.trading_state,
            "working_orders": self.working_orders,
            "open_positions": self.open_positions,
            "trading_day_start": _ts(self.trading_day_start),
        }


@dataclass(frozen=True, slots=True)
class RiskLimitsView:
    """Limits in force for one account (defaults come from Settings)."""

    account_id: str
    max_position_size: int
    max_positions_per_instrument: int
    max_leverage: int
    required_margin_ratio: int
    max_daily_loss: int
    max_units_per_order: int
    max_orders_per_second: int
    max_concurrent_orders: int
    restricted_instruments: frozenset[str]

    def to_dict(self) -> dict:
        return {
            "account_id": self.account_id,
            "max_position_size": str(self.max_position_size),
            "max_positions_per_instrument": self.max_positions_per_instrument,
            "max_leverage": format_rate(self.max_leverage),
            "required_margin_ratio": format_rate(self.required_margin_ratio),
            "max_daily_loss": _money(self.max_daily_loss),
            "max_units_per_order": str(self.max_units_per_order),
            "max_orders_per_second": self.max_orders_per_second,
            "max_concurrent_orders": self.max_concurrent_orders,
            "restricted_instruments": sorted(self.restricted_instruments),
        }


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """Outcome of the risk gateway. ``code`` is "OK" or the stable denial
    code; ``detail`` is ``key=value`` text naming the value and the limit."""

    allowed: bool
    code: str
    detail: str
    account_id: str
    trading_state: str

    def to_dict(self) -> dict:
        return {
            "allowed": self.allowed,
            "code": self.code,
            "detail": self.detail,
            "account_id": self.account_id,
            "trading_state": self.trading_state,
        }


@dataclass(frozen=True, slots=True)
class KillSwitchView:
    """A kill switch (``account_id`` None = global) and what activating it did."""

    account_id: Optional[str]
    active: bool
    reason: Optional[str]
    actor: Optional[str]
    activated_at: Optional[int]
    released_by: Optional[str]
    released_at: Optional[int]
    cancelled_orders: tuple[str, ...] = ()
    flattened: tuple[str, ...] = ()
    #: orders whose cancel did not get through (broker unreachable or refusing); they are still
    #: working, and the engine retries their cancel in the background while the switch is active
    cancel_failed: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "account_id": self.account_id,
            "active": self.active,
            "reason": self.reason,
            "actor": self.actor,
            "activated_at": _ts(self.activated_at),
            "released_by": self.released_by,
            "released_at": _ts(self.released_at),
            "cancelled_orders": list(self.cancelled_orders),
            "flattened": list(self.flattened),
            "cancel_failed": list(self.cancel_failed),
        }


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """What subscribers receive. ``kind`` is one of

    * ``order_submitted`` (recorded, about to be routed or armed), ``order_working`` (resting at the
      broker), ``order_triggered`` (an emulated order fired), ``order_filled``,
      ``order_partially_filled``, ``order_cancelled``, ``order_expired``,
      ``order_rejected``, ``order_replaced`` (new broker id), ``order_modified``
      — ``data`` is the OrderView;
    * ``exit_filled`` — a broker-side fill (stop loss, take profit, trailing
      stop, close-out): ``data`` is the broker's ``OrderFilled``;
    * ``position_changed`` — ``data`` is the PositionView after a fill;
    * ``kill_switch_activated`` / ``kill_switch_released`` — KillSwitchView;
    * ``risk_limits_changed`` — RiskLimitsView; ``trading_state_changed`` —
      the new state word.
    """

    kind: str
    account_id: Optional[str]
    order_id: Optional[str]
    time_ns: int
    request_id: Optional[str]
    data: object

    def to_dict(self) -> dict:
        data = self.data.to_dict() if hasattr(self.data, "to_dict") else self.data
        return {
            "kind": self.kind,
            "account_id": self.account_id,
            "order_id": self.order_id,
            "time": _ts(self.time_ns),
            "request_id": self.request_id,
            "data": data,
        }
