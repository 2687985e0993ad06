"""The state the journal can rebuild on its own: a fold over its records.

Recovery must not depend on the engine's internals (they change; old
journals must still replay), so the journal keeps its own small model of what
matters after a crash: every order still open and where it stands, net
positions, balances, the last broker transaction seen per account, kill
switches, risk limits in force and trading states. The engine restores itself
from this model (``to_dict()``), and reconciliation compares it with the broker.

A finished order (filled, cancelled, rejected) leaves the model when it
finishes: a restart adopts open orders only, and the records keep the whole
history (``fastexec audit`` exports it). Its client order id stays, for the
newest ``RETAIN_TERMINAL`` finished orders, so that a retried submit is still
refused after a restart (``JournaledEngine`` checks ``by_client``). Client ids
are unique per account (as at OANDA, and in the engine), so ``by_client`` is
per account: account id -> client id -> order id.

``apply`` is deterministic and total: the same records in the same order give
the same state, whether they come from a snapshot plus a tail or from the
beginning — which is what makes a snapshot safe to use.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Optional

import orjson

try:  # the fields the per-order fold touches, as C struct members (``_hot.StateCore``)
    from ._hot import StateCore as _StateBase
except ImportError:  # pragma: no cover - a build without the extension keeps them in slots
    _StateBase = object

TERMINAL = frozenset({"filled", "cancelled", "rejected"})
OPEN = frozenset({"accepted", "emulated", "working", "partially_filled"})
#: Broker transaction ids remembered per account to drop an event applied twice
#: (the same transaction arrives in an HTTP response and on the stream).
RECENT_TXNS = 4096
#: Client order ids of finished orders kept, for refusing a retried submit
#: after a restart (the engine refuses it while it still holds the order:
#: 10,000 + 512 finished ones, ``engine.RETAIN_TERMINAL`` + ``RETIRE_BATCH``).
#: The orders themselves leave the state when they finish. Until 2026-11-22
#: the state kept the newest 20,000 finished orders whole (held compact), and
#: nothing read them: under wrk that cost ~5 % of the CPU per order (A/B in
#: the same run), from the cache misses of forgetting each one, cold, 20,000
#: orders later.
RETAIN_TERMINAL = 20_000
#: Ids are forgotten in batches of this many, oldest first: one pass over
#: them, rather than one cold lookup in every order's fold. Small enough that
#: a batch is a ~0.1 ms pause, not a millisecond one (4,096 until 2026-11-22,
#: like the engine's and the venue's batches: together they put one
#: single-client request in ~550 over 0.8 ms, one in ~1,300 at 512; measured
#: as in ``bench/rest/tail_latency.py``).
FORGET_BATCH = 512


def _is_client_id(cid: Any) -> bool:
    """What the state indexes by client id: a non-empty string (the engine only writes those)."""
    return type(cid) is str and cid != ""


_CORE_FIELDS = ("seq", "orders", "by_client", "by_broker", "positions", "balances", "last_txn", "_recent",
                "_recent_order", "_terminal", "retain_terminal", "forget_batch")


class JournalState(_StateBase):
    __slots__ = ("watermark", "kill_switches", "risk_limits", "trading_states") + (
        _CORE_FIELDS if _StateBase is object else ())

    def __init__(self, retain_terminal: int = RETAIN_TERMINAL, forget_batch: int = FORGET_BATCH) -> None:
        self.retain_terminal = retain_terminal
        self.forget_batch = forget_batch
        self.seq = 0
        self.orders: dict[str, dict] = {}  # open orders only (see the module docstring)
        # account id -> client order id -> order id, of open orders and of the newest finished ones
        self.by_client: dict[str, dict[str, str]] = {}
        self.by_broker: dict[str, str] = {}  # "account/broker id" -> order id, of open orders
        self.positions: dict[str, dict[str, int]] = {}  # account -> instrument -> net units
        self.balances: dict[str, int] = {}
        self.last_txn: dict[str, int] = {}  # highest broker txn id applied per account
        self.watermark: dict[str, int] = {}  # broker txn id up to which a reconciliation verified everything
        self.kill_switches: dict[str, dict] = {}  # "*" = global
        self.risk_limits: dict[str, dict] = {}  # "*" = defaults
        self.trading_states: dict[str, str] = {}
        self._recent: dict[str, set[int]] = {}
        self._recent_order: dict[str, deque] = {}
        self._terminal: deque = deque()  # (account id, client id) of finished orders, oldest first

    # ------------------------------------------------------------------ queries

    def open_orders(self, account_id: Optional[str] = None) -> list[dict]:
        return [o for o in self.orders.values() if o["status"] in OPEN
                and (account_id is None or o["account_id"] == account_id)]

    def order_for(self, account_id: str, client_id: Optional[str], broker_order_id: Optional[str]) -> Optional[dict]:
        oid = None
        if client_id is not None:
            d = self.by_client.get(account_id)
            if d is not None:
                oid = d.get(client_id)
        if oid is None and broker_order_id is not None:
            oid = self.by_broker.get(f"{account_id}/{broker_order_id}")
        return self.orders.get(oid) if oid is not None else None

    def client_id_known(self, account_id: str, client_id: str) -> bool:
        """Whether ``client_id`` names an open or recently finished order of ``account_id``."""
        d = self.by_client.get(account_id)
        return d is not None and client_id in d

    def position(self, account_id: str, instrument: str) -> int:
        return self.positions.get(account_id, {}).get(instrument, 0)

    def accounts(self) -> set[str]:
        out = set(self.positions) | set(self.balances) | set(self.last_txn)
        out.update(o["account_id"] for o in self.orders.values())
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

    def _set_status(self, order: dict, status: str) -> bool:
        """True if ``order`` finished now: the caller, done changing it, calls
        ``_finish``."""
        was_terminal = order["status"] in TERMINAL
        order["status"] = status
        return status in TERMINAL and not was_terminal

    def _finish(self, order: dict, indexed: bool = True) -> None:
        """A finished order leaves the state; its client id stays (``RETAIN_TERMINAL``).
        ``indexed=False``: the caller knows ``by_broker`` never had it (it had no broker
        id until now), so no key is built and probed for it."""
        oid = order["order_id"]
        if self.orders.get(oid) is order:
            del self.orders[oid]
        if indexed:
            key = f"{order['account_id']}/{order.get('broker_order_id')}"
            if self.by_broker.get(key) == oid:
                del self.by_broker[key]
        cid = order.get("client_order_id")
        acct = order.get("account_id")
        if _is_client_id(cid) and type(acct) is str:
            terminal = self._terminal
            terminal.append((acct, cid))
            if len(terminal) > self.retain_terminal + self.forget_batch:
                self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Down to ``retain_terminal`` finished orders' client ids. An id whose order
        is open again (a client id reused after it was last forgotten) stays."""
        terminal, by_client, orders = self._terminal, self.by_client, self.orders
        while len(terminal) > self.retain_terminal:
            acct, cid = terminal.popleft()
            d = by_client.get(acct)
            oid = d.get(cid) if d is not None else None
            if oid is not None and oid not in orders:
                del d[cid]

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
        acct = rec.get("account_id")
        if _is_client_id(cid) and type(acct) is str:  # the engine writes only strings; nothing else is indexed
            d = self.by_client.get(acct)
            if d is None:
                d = self.by_client[acct] = {}
            d[cid] = oid
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
            finished = bool(rec.get("status")) and self._set_status(order, rec["status"])
            order["updated_at"] = rec.get("ts")
            if finished:
                self._finish(order)

    def _on_status(self, rec: dict) -> None:
        order = self.orders.get(rec["order_id"])
        if order is not None:
            finished = self._set_status(order, rec["status"])
            if rec.get("reason") is not None:
                order["reject_reason"] = rec["reason"]
            if rec.get("broker_order_id") is not None:
                order["broker_order_id"] = rec["broker_order_id"]
                self._index_broker(order["account_id"], rec["broker_order_id"], order["order_id"])
            order["updated_at"] = rec.get("ts")
            if finished:
                self._finish(order)

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
            d = self.by_client.get(acct)
            if d is not None:
                oid = d.get(cid)
        bid = rec.get("broker_order_id")
        if oid is None and bid is not None:
            oid = self.by_broker.get(f"{acct}/{bid}")
        order = self.orders.get(oid) if oid is not None else None
        if order is None:
            return  # an exit (stop loss, take profit, close), or a late event for a finished order
        if units < 0:
            units = -units
        filled = order["filled_units"] + units
        order["filled_units"] = filled
        order["fill_notional"] += units * rec["price"]
        finished = self._set_status(order, "filled" if filled >= order["units"] else "partially_filled")
        indexed = True
        if order.get("broker_order_id") is None:
            indexed = False  # every index entry comes with the order's broker id: none yet, none to drop
            order["broker_order_id"] = bid
            if not finished:  # a finished order leaves the index at once
                self._index_broker(acct, bid, order["order_id"])
        order["updated_at"] = rec.get("ts")
        if finished:
            self._finish(order, indexed)

    def _on_cancelled(self, rec: dict) -> None:
        acct = rec["account_id"]
        if not self._remember_txn(acct, rec.get("txn_id")):
            return
        order = self.order_for(acct, rec.get("client_id"), rec.get("broker_order_id"))
        if order is None or rec.get("replaced_by_order_id"):
            return  # a replace keeps the engine order alive under a new broker id
        finished = self._set_status(order, "cancelled")
        order["reject_reason"] = rec.get("reason")
        order["updated_at"] = rec.get("ts")
        if finished:
            self._finish(order)

    def _on_rejected(self, rec: dict) -> None:
        acct = rec["account_id"]
        if not self._remember_txn(acct, rec.get("txn_id")):
            return
        order = self.order_for(acct, rec.get("client_id"), None)
        if order is None:
            return
        finished = order["status"] in ("accepted", "emulated") and self._set_status(order, "rejected")
        if finished:
            order["reject_reason"] = rec.get("reason")
        order["updated_at"] = rec.get("ts")
        if finished:
            self._finish(order)

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
        body = {
            "seq": self.seq,
            "orders": self.orders,
            "positions": self.positions,
            "balances": self.balances,
            "last_txn": self.last_txn,
            "watermark": self.watermark,
            "kill_switches": self.kill_switches,
            "risk_limits": self.risk_limits,
            "trading_states": self.trading_states,
            "recent_txns": {a: list(d) for a, d in self._recent_order.items()},
            # finished orders' client ids, oldest first: [account id, client id, order id]
            "finished_client_ids": [[acct, cid, self.by_client.get(acct, {}).get(cid)] for acct, cid in self._terminal],
        }
        return orjson.loads(orjson.dumps(body)) if copy else body

    @classmethod
    def from_dict(cls, data: dict, retain_terminal: int = RETAIN_TERMINAL,
                  forget_batch: int = FORGET_BATCH) -> "JournalState":
        data = orjson.loads(orjson.dumps(data))
        st = cls(retain_terminal, forget_batch)
        st.seq = data["seq"]
        orders = data["orders"]
        st.orders = {oid: o for oid, o in orders.items() if o.get("status") not in TERMINAL}
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
        if "finished_client_ids" in data:
            finished = []
            legacy = None
            for entry in data["finished_client_ids"]:
                if len(entry) == 3:
                    finished.append(tuple(entry))
                else:
                    # a snapshot from before client ids were per account: [client id, order id], its
                    # account not recorded. Kept under every account the state knows, so a retry is
                    # still refused in its own account (and, until forgotten, in the others)
                    if legacy is None:
                        legacy = sorted(st.accounts() | {o["account_id"] for o in orders.values()})
                    finished.extend((acct, entry[0], entry[1]) for acct in legacy)
        else:  # a snapshot from before 2026-11-22: finished orders whole, their ids in "terminal"
            finished = [(orders[oid]["account_id"], orders[oid]["client_order_id"], oid)
                        for oid in data.get("terminal", ())
                        if oid in orders and _is_client_id(orders[oid].get("client_order_id"))]
        for acct, cid, oid in finished:
            st._terminal.append((acct, cid))
            st.by_client.setdefault(acct, {})[cid] = oid
        for oid, order in st.orders.items():
            if _is_client_id(order.get("client_order_id")) and type(order.get("account_id")) is str:
                st.by_client.setdefault(order["account_id"], {})[order["client_order_id"]] = oid
            st._index_broker(order["account_id"], order.get("broker_order_id"), oid)
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
