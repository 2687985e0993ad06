"""The state the journal can rebuild on its own: a fold over its records.

Recovery must not depend on the engine's internals (they change; old
journals must still replay), so the journal keeps its own small model of what
matters after a crash: every order and where it stands, net positions,
balances, the last broker transaction seen per account, kill switches, risk
limits in force and trading states. The engine restores itself from this
model (``to_dict()``), and reconciliation compares it with the broker.

``apply`` is deterministic and total: the same records in the same order give
the same state, whether they come from a snapshot plus a tail or from the
beginning — which is what makes a snapshot safe to use.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Optional

import orjson

try:  # the fields the per-order fold touches, as C struct members (``_hot.StateCore``), and
    # finished orders held compact (``_hot.Finished`` in an ``OrderTable``: see there)
    from ._hot import Finished, OrderTable, StateCore as _StateBase
except ImportError:  # pragma: no cover - a build without the extension keeps them in slots, as dicts
    _StateBase = object
    Finished = None
    OrderTable = dict

TERMINAL = frozenset({"filled", "cancelled", "rejected"})
OPEN = frozenset({"accepted", "emulated", "working", "partially_filled"})
#: Broker transaction ids remembered per account to drop an event applied twice
#: (the same transaction arrives in an HTTP response and on the stream).
RECENT_TXNS = 4096
#: Finished orders kept (for lookups and duplicate client-id checks after a
#: restart); older ones are dropped so the state does not grow forever. The
#: engine keeps at most 10,000 + 4,096 readable (``engine.RETAIN_TERMINAL`` +
#: ``RETIRE_BATCH``), so 20,000 restores every order a client could still read
#: before the crash. It was 100,000: those dicts (about 2 KB each) were 200 MB of
#: live heap that every snapshot copied and every request's caches competed
#: with; over REST at steady state they cost about 8 % of the CPU per order
#: (A/B under wrk, same run).
RETAIN_TERMINAL = 20_000
_HEAVY = ("stop_loss", "take_profit", "emulation", "trailing_distance", "trailing_stop_distance", "stop_price",
          "time_in_force", "gtd_time_ns", "request_id", "cancel_requested")


_CORE_FIELDS = ("seq", "orders", "by_client", "by_broker", "positions", "balances", "last_txn", "_recent",
                "_recent_order", "_terminal", "retain_terminal")


class JournalState(_StateBase):
    __slots__ = ("watermark", "kill_switches", "risk_limits", "trading_states") + (
        _CORE_FIELDS if _StateBase is object else ())

    def __init__(self, retain_terminal: int = RETAIN_TERMINAL) -> None:
        self.retain_terminal = retain_terminal
        self.seq = 0
        self.orders: dict[str, dict] = OrderTable()
        self.by_client: dict[str, str] = {}
        self.by_broker: dict[str, str] = {}  # "account/broker id" -> order id
        self.positions: dict[str, dict[str, int]] = {}  # account -> instrument -> net units
        self.balances: dict[str, int] = {}
        self.last_txn: dict[str, int] = {}  # highest broker txn id applied per account
        self.watermark: dict[str, int] = {}  # broker txn id up to which a reconciliation verified everything
        self.kill_switches: dict[str, dict] = {}  # "*" = global
        self.risk_limits: dict[str, dict] = {}  # "*" = defaults
        self.trading_states: dict[str, str] = {}
        self._recent: dict[str, set[int]] = {}
        self._recent_order: dict[str, deque] = {}
        self._terminal: deque = deque()

    # ------------------------------------------------------------------ queries

    def open_orders(self, account_id: Optional[str] = None) -> list[dict]:
        return [o for o in dict.values(self.orders)  # a compact (``Finished``) order is never open
                if type(o) is not Finished and o["status"] in OPEN
                and (account_id is None or o["account_id"] == account_id)]

    def order_dicts(self) -> list[dict]:
        """Every order's dict, for a pass that only reads them: finished ones decoded
        but left compact in the state."""
        orders = self.orders
        return orders.plain_values() if type(orders) is not dict else list(orders.values())

    def order_for(self, account_id: str, client_id: Optional[str], broker_order_id: Optional[str]) -> Optional[dict]:
        oid = None
        if client_id is not None:
            oid = self.by_client.get(client_id)
        if oid is None and broker_order_id is not None:
            oid = self.by_broker.get(f"{account_id}/{broker_order_id}")
        return self.orders.get(oid) if oid is not None else None

    def position(self, account_id: str, instrument: str) -> int:
        return self.positions.get(account_id, {}).get(instrument, 0)

    def accounts(self) -> set[str]:
        out = set(self.positions) | set(self.balances) | set(self.last_txn)
        out.update(o["account_id"] for o in self.order_dicts())
        return out

    def seen_txn(self, account_id: str, txn_id: Optional[int]) -> bool:
        return txn_id is not None and txn_id in self._recent.get(account_id, ())

    # ------------------------------------------------------------------ fold

    def apply(self, rec: dict, seq: Optional[int] = None) -> None:
        if seq is not None:
            self.seq = seq
        handler = _HANDLERS.get(rec.get("type"))
        if handler is not None:
            handler(self, rec)
        # unknown types (future record kinds, free-form notes) change nothing

    def _remember_txn(self, account: str, txn_id: Optional[int]) -> bool:
        """False if this transaction was already applied."""
        if txn_id is None:
            return True
        seen = self._recent.setdefault(account, set())
        if txn_id in seen:
            return False
        order = self._recent_order.setdefault(account, deque())
        seen.add(txn_id)
        order.append(txn_id)
        if len(order) > RECENT_TXNS:
            seen.discard(order.popleft())
        if txn_id > self.last_txn.get(account, 0):
            self.last_txn[account] = txn_id
        return True

    def _set_status(self, order: dict, status: str) -> None:
        was_terminal = order["status"] in TERMINAL
        order["status"] = status
        if status in TERMINAL and not was_terminal:
            for key in _HEAVY:  # a finished order is kept for lookups, not for re-arming
                order.pop(key, None)
            self._terminal.append(order["order_id"])
            while len(self._terminal) > self.retain_terminal:
                self._forget(self._terminal.popleft())

    def _forget(self, order_id: str) -> None:
        order = dict.get(self.orders, order_id)
        if type(order) is Finished:  # held compact by the compiled fold: finished, keys at hand
            del self.orders[order_id]
            if self.by_client.get(order.client_order_id) == order_id:
                del self.by_client[order.client_order_id]
            if self.by_broker.get(order.broker_key) == order_id:
                del self.by_broker[order.broker_key]
            return
        if order is None or order["status"] not in TERMINAL:
            return  # re-opened by a later correction: keep it
        del self.orders[order_id]
        if self.by_client.get(order.get("client_order_id")) == order_id:
            del self.by_client[order["client_order_id"]]
        key = f"{order['account_id']}/{order.get('broker_order_id')}"
        if self.by_broker.get(key) == order_id:
            del self.by_broker[key]

    def _index_broker(self, account: str, broker_id: Optional[str], order_id: str) -> None:
        if broker_id is not None:
            self.by_broker[f"{account}/{broker_id}"] = order_id

    def _on_submitted(self, rec: dict) -> None:
        oid = rec["order_id"]
        ts = rec.get("ts")
        # one C-level copy with the new fields (cheaper than filtering key by key);
        # status: new, never terminal. fill_notional: sum of |units| * price
        # (PRICE_SCALE), an exact VWAP without floats
        order = dict(rec, created_at=ts, updated_at=ts, status="emulated" if rec.get("emulated") else "accepted",
                     filled_units=0, fill_notional=0, reject_reason=None)
        del order["type"]
        if "source" in order:
            del order["source"]
        bid = order.get("broker_order_id")
        if bid is None:
            order["broker_order_id"] = None
        self.orders[oid] = order
        cid = rec.get("client_order_id")
        if cid:
            self.by_client[cid] = oid
        if bid is not None:
            self.by_broker[f"{rec['account_id']}/{bid}"] = oid

    def _on_modify(self, rec: dict) -> None:
        order = self.orders.get(rec["order_id"])
        if order is None:
            return
        for key in ("price", "units", "stop_loss", "take_profit", "stop_price", "trailing_distance"):
            if rec.get(key) is not None:
                order[key] = rec[key]
        order["updated_at"] = rec.get("ts")

    def _on_cancel_requested(self, rec: dict) -> None:
        order = self.orders.get(rec["order_id"])
        if order is not None:
            order["cancel_requested"] = True
            order["updated_at"] = rec.get("ts")

    def _on_emulation(self, rec: dict) -> None:
        order = self.orders.get(rec["order_id"])
        if order is not None:
            order.setdefault("emulation", {}).update(rec.get("emulation") or {})
            if rec.get("status"):
                self._set_status(order, rec["status"])
            order["updated_at"] = rec.get("ts")

    def _on_status(self, rec: dict) -> None:
        order = self.orders.get(rec["order_id"])
        if order is not None:
            self._set_status(order, rec["status"])
            if rec.get("reason") is not None:
                order["reject_reason"] = rec["reason"]
            if rec.get("broker_order_id") is not None:
                order["broker_order_id"] = rec["broker_order_id"]
                self._index_broker(order["account_id"], rec["broker_order_id"], order["order_id"])
            order["updated_at"] = rec.get("ts")

    def _on_kill_switch(self, rec: dict) -> None:
        key = rec.get("account_id") or "*"
        self.kill_switches[key] = {k: rec.get(k) for k in ("active", "reason", "actor", "flatten", "ts")}

    def _on_limits(self, rec: dict) -> None:
        key = rec.get("account_id") or "*"
        self.risk_limits[key] = dict(rec.get("limits") or {})

    def _on_trading_state(self, rec: dict) -> None:
        self.trading_states[rec["account_id"]] = rec["state"]

    # broker events

    def _on_accepted(self, rec: dict) -> None:
        acct = rec["account_id"]
        if not self._remember_txn(acct, rec.get("txn_id")):
            return
        order = self.order_for(acct, rec.get("client_id"), rec.get("broker_order_id"))
        if order is None:
            return
        order["broker_order_id"] = rec["broker_order_id"]
        self._index_broker(acct, rec["broker_order_id"], order["order_id"])
        if order["status"] in ("accepted", "emulated"):
            self._set_status(order, "working")
        order["updated_at"] = rec.get("ts")

    def _on_filled(self, rec: dict) -> None:
        # the most frequent record: _remember_txn and order_for inlined
        acct = rec["account_id"]
        txn = rec.get("txn_id")
        if txn is not None:
            seen = self._recent.get(acct)
            if seen is None:
                seen = self._recent[acct] = set()
            elif txn in seen:
                return  # already applied
            recent = self._recent_order.get(acct)
            if recent is None:
                recent = self._recent_order[acct] = deque()
            seen.add(txn)
            recent.append(txn)
            if len(recent) > RECENT_TXNS:
                seen.discard(recent.popleft())
            if txn > self.last_txn.get(acct, 0):
                self.last_txn[acct] = txn
        units = rec["units"]
        inst = rec["instrument"]
        book = self.positions.get(acct)
        if book is None:
            book = self.positions[acct] = {}
        net = book.get(inst, 0) + units
        if net:
            book[inst] = net
        else:
            book.pop(inst, None)
        balance = rec.get("account_balance")
        if balance is not None:
            self.balances[acct] = balance
        elif acct in self.balances:
            self.balances[acct] += rec.get("pl", 0) + rec.get("financing", 0) - rec.get("commission", 0)
        oid = None
        cid = rec.get("client_id")
        if cid is not None:
            oid = self.by_client.get(cid)
        bid = rec.get("broker_order_id")
        if oid is None and bid is not None:
            oid = self.by_broker.get(f"{acct}/{bid}")
        order = self.orders.get(oid) if oid is not None else None
        if order is None:
            return  # an exit (stop loss, take profit, close) with no engine order behind it
        if order.get("broker_order_id") is None:
            order["broker_order_id"] = bid
            self._index_broker(acct, bid, order["order_id"])
        if units < 0:
            units = -units
        filled = order["filled_units"] + units
        order["filled_units"] = filled
        order["fill_notional"] += units * rec["price"]
        self._set_status(order, "filled" if filled >= order["units"] else "partially_filled")
        order["updated_at"] = rec.get("ts")

    def _on_cancelled(self, rec: dict) -> None:
        acct = rec["account_id"]
        if not self._remember_txn(acct, rec.get("txn_id")):
            return
        order = self.order_for(acct, rec.get("client_id"), rec.get("broker_order_id"))
        if order is None or rec.get("replaced_by_order_id"):
            return  # a replace keeps the engine order alive under a new broker id
        if order["status"] not in TERMINAL:
            self._set_status(order, "cancelled")
            order["reject_reason"] = rec.get("reason")
        order["updated_at"] = rec.get("ts")

    def _on_rejected(self, rec: dict) -> None:
        acct = rec["account_id"]
        if not self._remember_txn(acct, rec.get("txn_id")):
            return
        order = self.order_for(acct, rec.get("client_id"), None)
        if order is None:
            return
        if order["status"] in ("accepted", "emulated"):
            self._set_status(order, "rejected")
            order["reject_reason"] = rec.get("reason")
        order["updated_at"] = rec.get("ts")

    def _on_replaced(self, rec: dict) -> None:
        acct = rec["account_id"]
        if not self._remember_txn(acct, rec.get("txn_id")):
            return
        order = self.order_for(acct, rec.get("client_id"), rec.get("old_broker_order_id"))
        if order is None:
            return
        order["broker_order_id"] = rec["new_broker_order_id"]
        self._index_broker(acct, rec["new_broker_order_id"], order["order_id"])
        order["updated_at"] = rec.get("ts")

    # reconciliation corrections

    def _on_reconcile_order(self, rec: dict) -> None:
        self._on_status(rec)

    def _on_reconcile_adopted(self, rec: dict) -> None:
        self._on_submitted(rec)
        self._set_status(self.orders[rec["order_id"]], "working")

    def _on_reconcile_position(self, rec: dict) -> None:
        book = self.positions.setdefault(rec["account_id"], {})
        if rec["units"]:
            book[rec["instrument"]] = rec["units"]
        else:
            book.pop(rec["instrument"], None)

    def _on_reconcile_balance(self, rec: dict) -> None:
        self.balances[rec["account_id"]] = rec["balance"]

    def _on_reconcile_watermark(self, rec: dict) -> None:
        acct = rec["account_id"]
        self.watermark[acct] = rec["txn_id"]
        if rec["txn_id"] > self.last_txn.get(acct, 0):
            self.last_txn[acct] = rec["txn_id"]

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self, *, copy: bool = True) -> dict[str, Any]:
        """The snapshot body: ints and strings only. ``copy=False`` returns
        live references, for a caller that encodes them at once (a snapshot
        cut on the loop); otherwise a deep copy, made by orjson (fast, in C)."""
        orders = self.orders
        body = {
            "seq": self.seq,
            "orders": orders if type(orders) is dict else orders.for_snapshot(),
            "positions": self.positions,
            "balances": self.balances,
            "last_txn": self.last_txn,
            "watermark": self.watermark,
            "kill_switches": self.kill_switches,
            "risk_limits": self.risk_limits,
            "trading_states": self.trading_states,
            "recent_txns": {a: list(d) for a, d in self._recent_order.items()},
            "terminal": list(self._terminal),
        }
        return orjson.loads(orjson.dumps(body)) if copy else body

    @classmethod
    def from_dict(cls, data: dict, retain_terminal: int = RETAIN_TERMINAL) -> "JournalState":
        data = orjson.loads(orjson.dumps(data))
        st = cls(retain_terminal)
        st.seq = data["seq"]
        st.orders = OrderTable(data["orders"])
        st.positions = data["positions"]
        st.balances = data["balances"]
        st.last_txn = data["last_txn"]
        st.watermark = data.get("watermark", {})
        st.kill_switches = data["kill_switches"]
        st.risk_limits = data["risk_limits"]
        st.trading_states = data["trading_states"]
        for acct, txns in data.get("recent_txns", {}).items():
            st._recent_order[acct] = deque(txns)
            st._recent[acct] = set(txns)
        st._terminal = deque(data.get("terminal", ()))
        for oid, order in data["orders"].items():
            if order.get("client_order_id"):
                st.by_client[order["client_order_id"]] = oid
            st._index_broker(order["account_id"], order.get("broker_order_id"), oid)
            if _hot is not None and order.get("status") in TERMINAL:
                _hot.compact(st, oid)  # as the fold would have left it
        return st

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JournalState) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


_HANDLERS = {
    "order.submitted": JournalState._on_submitted,
    "order.modify_requested": JournalState._on_modify,
    "order.cancel_requested": JournalState._on_cancel_requested,
    "order.emulation": JournalState._on_emulation,
    "order.status": JournalState._on_status,
    "kill_switch": JournalState._on_kill_switch,
    "risk.limits": JournalState._on_limits,
    "trading_state": JournalState._on_trading_state,
    "broker.accepted": JournalState._on_accepted,
    "broker.filled": JournalState._on_filled,
    "broker.cancelled": JournalState._on_cancelled,
    "broker.rejected": JournalState._on_rejected,
    "broker.replaced": JournalState._on_replaced,
    "reconcile.order": JournalState._on_reconcile_order,
    "reconcile.adopted": JournalState._on_reconcile_adopted,
    "reconcile.position": JournalState._on_reconcile_position,
    "reconcile.balance": JournalState._on_reconcile_balance,
    "reconcile.watermark": JournalState._on_reconcile_watermark,
}

#: The handlers as written in Python: the reference the compiled ones are tested against.
PY_HANDLERS = dict(_HANDLERS)

try:  # the two records every market order appends, folded by compiled ports of the methods above
    from . import _hot
except ImportError:  # pragma: no cover - a build without the extension folds in Python
    _hot = None
if _hot is not None:
    if _hot.RECENT_TXNS != RECENT_TXNS:  # pragma: no cover
        raise ImportError("fastexec.journal._hot is stale (RECENT_TXNS differs): rebuild the extensions")
    _HANDLERS["order.submitted"] = _hot.on_submitted
    _HANDLERS["broker.filled"] = _hot.on_filled
