"""The record vocabulary: plain dicts with a ``type`` key, ints for numbers.

The engine hands the journal plain dicts (its seam, contracts §5) so the
journal does not depend on the engine's classes and old journals stay
readable when those classes change. Every record carries ``ts`` (wall-clock
ns, for audit and time filters) and, where it concerns one account,
``account_id`` (for audit filters). Numbers are fixed-point ints at the core's
scales; no float is ever written.

Command records (written before the caller's acknowledgement):

- ``order.submitted``   order_id, client_order_id, account_id, instrument, side,
  units (> 0), order_type, price, stop_price, trailing_distance, time_in_force,
  gtd_time_ns, stop_loss, take_profit ({price, distance, guaranteed} | None),
  trailing_stop_distance, request_id, emulated (bool: held by the engine, not
  yet at the broker)
- ``order.modify_requested``  order_id, price, units, stop_loss, take_profit
- ``order.cancel_requested``  order_id
- ``order.emulation``   order_id, emulation (dict merged into the order:
  trailing reference price, triggered flag...)
- ``order.status``      order_id, status, reason (an engine-side outcome:
  risk reject after acceptance, emulated order cancelled or expired...)
- ``position.close_requested``  account_id, instrument, units, reason
- ``kill_switch``       account_id (None = all), active, reason, actor, flatten
- ``risk.limits``       account_id (None = defaults), limits {name: int}
- ``trading_state``     account_id, state (active | reducing | halted)

API records (``idempotency.key``, ``idempotency.result``, ``idempotency.released``): the
``Idempotency-Key`` of a submit, journaled just before its ``order.submitted``, and its
outcome; folded by ``fastexec.journal.keys``, not by ``JournalState``.

Broker records (``broker.<event>``, one per ``BrokerEvent`` except price ticks):
the event's fields, as built by ``event_record``.

Reconciliation records (``reconcile.*``): corrections made at start-up; see
``fastexec.journal.recovery``.
"""
from __future__ import annotations

import time
from dataclasses import fields
from operator import attrgetter
from typing import Any, Optional

from fastexec.brokers.base import (
    BrokerEvent,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PriceTick,
)

EVENT_TYPES: dict[type, str] = {
    OrderAccepted: "broker.accepted",
    OrderFilled: "broker.filled",
    OrderCancelled: "broker.cancelled",
    OrderRejected: "broker.rejected",
    OrderReplaced: "broker.replaced",
}
EVENT_CLASSES = {v: k for k, v in EVENT_TYPES.items()}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in EVENT_TYPES}  # fields() is slow per call
_GETTERS = {cls: attrgetter(*names) for cls, names in _FIELDS.items()}  # one C call per event


def _builder(cls: type):
    """``event -> record`` for one event class, as a single dict display
    (generated once: about half the cost of ``dict(zip(names, values))``).
    Keys in field order, then ``type`` and ``ts``; tuples of ids become lists."""
    items = []
    for name in _FIELDS[cls]:
        value = f"list(e.{name})" if name == "trades_closed" else f"e.{name}"
        items.append(f"{name!r}: {value}")
    items.append(f"'type': {EVENT_TYPES[cls]!r}")
    items.append("'ts': _now()")
    src = f"def build(e, _now=_now):\n    return {{{', '.join(items)}}}\n"
    scope: dict[str, Any] = {"_now": time.time_ns}
    exec(src, scope)  # noqa: S102 - source built above from dataclass field names only
    return scope["build"]


_BUILDERS = {cls: _builder(cls) for cls in EVENT_TYPES}


def event_record(event: BrokerEvent, *, source: Optional[str] = None) -> Optional[dict]:
    """The journal record of a broker event; None for price ticks (not journaled:
    they are market data, replayable from nowhere and far too many)."""
    build = _BUILDERS.get(type(event))
    if build is None:
        if isinstance(event, PriceTick):
            return None
        raise KeyError(type(event))
    rec: dict[str, Any] = build(event)
    if source is not None:
        rec["source"] = source
    return rec


def event_from_record(rec: dict) -> BrokerEvent:
    """Rebuild the typed event of a ``broker.*`` record (for tools and tests)."""
    cls = EVENT_CLASSES[rec["type"]]
    kwargs = {}
    for f in fields(cls):
        if f.name in rec:
            value = rec[f.name]
            kwargs[f.name] = tuple(value) if f.name == "trades_closed" and value is not None else value
    return cls(**kwargs)
