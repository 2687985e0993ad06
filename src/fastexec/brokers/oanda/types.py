"""Read-side values the OANDA adapter offers beyond the ``Broker`` interface
(trades, instruments, account changes), at the core's fixed-point scales."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fastexec._core.fixedpoint import parse_money, parse_price, parse_rate, parse_units

from ..base import BrokerEvent


def _opt_price(text: Optional[str]) -> Optional[int]:
    return parse_price(text, 9) if text else None


@dataclass(slots=True, frozen=True)
class OandaTrade:
    account_id: str
    trade_id: str
    instrument: str
    price: int
    initial_units: int
    current_units: int
    unrealized_pl: int
    realized_pl: int
    client_id: Optional[str] = None
    take_profit_order_id: Optional[str] = None
    stop_loss_order_id: Optional[str] = None
    trailing_stop_loss_order_id: Optional[str] = None

    @classmethod
    def from_v20(cls, account_id: str, t: dict) -> "OandaTrade":
        def oid(key: str) -> Optional[str]:
            v = t.get(key + "ID")
            if v:
                return v
            o = t.get(key)
            return o.get("id") if o else None

        return cls(
            account_id=account_id,
            trade_id=t["id"],
            instrument=t["instrument"],
            price=parse_price(t["price"], 9),
            initial_units=parse_units(t.get("initialUnits", "0")),
            current_units=parse_units(t.get("currentUnits", "0")),
            unrealized_pl=parse_money(t["unrealizedPL"]) if t.get("unrealizedPL") else 0,
            realized_pl=parse_money(t["realizedPL"]) if t.get("realizedPL") else 0,
            client_id=(t.get("clientExtensions") or {}).get("id"),
            take_profit_order_id=oid("takeProfitOrder"),
            stop_loss_order_id=oid("stopLossOrder"),
            trailing_stop_loss_order_id=oid("trailingStopLossOrder"),
        )


@dataclass(slots=True, frozen=True)
class OandaInstrument:
    name: str
    type: str
    display_precision: int
    pip_location: int
    trade_units_precision: int
    minimum_trade_size: int
    maximum_order_units: int
    margin_rate: int
    minimum_trailing_stop_distance: Optional[int]
    maximum_trailing_stop_distance: Optional[int]

    @classmethod
    def from_v20(cls, i: dict) -> "OandaInstrument":
        def units(key: str) -> int:
            v = i.get(key)
            if not v:
                return 0
            # "1" or "1.0": whole units only (tradeUnitsPrecision 0 instruments)
            return parse_units(v)

        return cls(
            name=i["name"],
            type=i.get("type", ""),
            display_precision=int(i["displayPrecision"]),
            pip_location=int(i.get("pipLocation", 0)),
            trade_units_precision=int(i.get("tradeUnitsPrecision", 0)),
            minimum_trade_size=units("minimumTradeSize"),
            maximum_order_units=units("maximumOrderUnits"),
            margin_rate=parse_rate(i["marginRate"]) if i.get("marginRate") else 0,
            minimum_trailing_stop_distance=_opt_price(i.get("minimumTrailingStopDistance")),
            maximum_trailing_stop_distance=_opt_price(i.get("maximumTrailingStopDistance")),
        )


@dataclass(slots=True)
class AccountChanges:
    """``GET /changes``: the order events since a transaction id plus v20's
    raw ``changes``/``state`` objects (for reconciliation and display)."""

    account_id: str
    last_txn_id: int
    events: list[BrokerEvent] = field(default_factory=list)
    changes: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
