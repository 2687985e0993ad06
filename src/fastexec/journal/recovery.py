"""Start-up reconciliation: make the replayed state agree with the broker.

After a crash the journal knows everything fastexec acknowledged, but the
broker may have moved on: orders sent just before the crash may or may not
have arrived, working orders may have filled or been cancelled, exits may have
closed trades. Serving before that is resolved risks the two failures a
trading engine must not have: orders working at the broker that nobody
watches, and orders sent twice.

Per account, in this order:

1. Catch up on broker transactions after the last one journaled
   (``transactions_since``); each is journaled as the ``broker.*`` record the
   live path would have written (``source: "reconcile"``). A broker that no
   longer serves them (``sinceid`` answers 416: OANDA past what it serves, the
   simulated venue past its bounded history) is not an error: the steps below
   take its present state instead, and ``ReconcileReport.history_gaps`` says so.
2. Resolve every open order by its client order id (``order_by_client_id``) —
   never by resending: never received (asked again after a short grace
   period if it was journaled just before the crash) -> ``rejected`` with
   reason ``NOT_RECEIVED_BY_BROKER``; working -> ``working``; filled -> its fill is
   fetched and applied; cancelled -> ``cancelled``. An emulated order that
   triggered without its child being confirmed is resolved the same way (the
   child carries the order's client id); one still waiting for its trigger
   was never sent and is left to the engine.
3. Orders working at the broker that the journal lacks are adopted (journaled
   as ``reconcile.adopted``, so they are watched) or cancelled, by policy.
4. Net positions and the balance are set to the broker's where they differ
   (``reconcile.position`` / ``reconcile.balance``).
5. A ``reconcile.watermark`` records the broker transaction id everything was
   verified up to, so the next start catches up from there.

Steps 1 and 4 read the broker at one consistent point: the account's last
transaction id is read before and after, and the reads are repeated if it
moved (a fill landing mid-reconciliation would otherwise be counted twice:
once in the positions read, once when its event arrives).

Every correction is journaled (durably, before serving) and logged.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

from fastexec.brokers.base import Broker, BrokerError, BrokerOrder, OrderFilled, PriceTick

from .records import event_record
from .state import OPEN
from .store import Journal

log = logging.getLogger("fastexec.journal.recovery")

NOT_RECEIVED = "NOT_RECEIVED_BY_BROKER"
NOT_FOUND = "NOT_FOUND_AT_BROKER"
MAX_CONSISTENT_READS = 8
#: An order journaled less than this long ago and unknown to the broker is
#: looked up once more when the time is up before it is declared never received.
IN_FLIGHT_GRACE_S = 2.0


@dataclass
class Correction:
    account_id: str
    kind: str  # order | adopted | cancelled_unknown | position | balance | event | baseline (first sight of an account)
    detail: dict


@dataclass
class ReconcileReport:
    accounts: list[str] = field(default_factory=list)
    events_applied: int = 0
    corrections: list[Correction] = field(default_factory=list)
    consistent: dict[str, bool] = field(default_factory=dict)
    #: account -> the journal's last transaction id, for accounts whose later transactions
    #: the broker no longer serves (``sinceid`` answered 416): reconciled from the broker's
    #: present state (open orders by client id, positions, balance) instead of its history
    history_gaps: dict[str, int] = field(default_factory=dict)

    def by_kind(self, kind: str) -> list[Correction]:
        return [c for c in self.corrections if c.kind == kind]


class Reconciler:
    """Runs the reconciliation of a ``Journal`` (already opened) against a started ``Broker``.

    ``unknown_orders``: ``"adopt"`` (default: start watching orders someone
    else — or a lost journal tail — placed) or ``"cancel"`` (cancel them).
    """

    def __init__(self, journal: Journal, broker: Broker, *, unknown_orders: str = "adopt",
                 in_flight_grace_s: float = IN_FLIGHT_GRACE_S):
        if unknown_orders not in ("adopt", "cancel"):
            raise ValueError("unknown_orders must be 'adopt' or 'cancel'")
        self.in_flight_grace_s = in_flight_grace_s
        self.journal = journal
        self.broker = broker
        self.unknown_orders = unknown_orders
        self.report = ReconcileReport()

    async def run(self, accounts: Optional[Iterable[str]] = None) -> ReconcileReport:
        accts = list(accounts) if accounts is not None else list(self.broker.account_ids())
        for acct in accts:
            self.report.accounts.append(acct)
            await self._account(acct)
        await self.journal.flush()
        log.info("reconciliation done: %d accounts, %d broker events caught up, %d corrections",
                 len(accts), self.report.events_applied, len(self.report.corrections))
        return self.report

    # ------------------------------------------------------------------ helpers

    def _journal(self, rec: dict, kind: Optional[str] = None) -> None:
        self.journal.append(rec)
        if kind is not None:
            acct = rec.get("account_id", "")
            self.report.corrections.append(Correction(acct, kind, rec))
            log.warning("reconcile %s %s: %s", acct, kind,
                        {k: v for k, v in rec.items() if k not in ("type", "ts")})

    def _apply_event(self, ev) -> bool:
        if isinstance(ev, PriceTick):
            return False
        st = self.journal.state
        if self.journal.state.seen_txn(ev.account_id, getattr(ev, "txn_id", None)):
            return False
        txn = getattr(ev, "txn_id", None)
        if txn is not None and txn <= st.last_txn.get(ev.account_id, 0) and txn <= st.watermark.get(ev.account_id, 0):
            return False  # verified by an earlier reconciliation
        rec = event_record(ev, source="reconcile")
        self._journal(rec)
        self.report.events_applied += 1
        return True

    async def _catch_up(self, acct: str) -> None:
        since = self.journal.state.last_txn.get(acct, 0)
        events = await self._since(acct, since)
        if events is None:
            if acct not in self.report.history_gaps:
                self.report.history_gaps[acct] = since
                log.warning("reconcile %s: the broker no longer serves the transactions after %d; reconciling "
                            "from its present state (open orders, positions, balance) instead", acct, since)
            return
        for ev in events:
            self._apply_event(ev)

    async def _since(self, acct: str, txn_id: int) -> Optional[list]:
        """The broker's events after ``txn_id``, or None when it no longer keeps them
        (v20 answers 416 to a ``sinceid`` older than what it serves; so does the
        simulated venue past its bounded history). Any other failure propagates."""
        try:
            return await self.broker.transactions_since(acct, txn_id)
        except BrokerError as exc:
            if exc.history_gap:
                return None
            raise

    # ------------------------------------------------------------------ per account

    async def _account(self, acct: str) -> None:
        st = self.journal.state
        # An account this journal has never seen: its history at the broker is
        # not ours to replay (it may be years long); start from its present.
        fresh = acct not in st.last_txn and not any(o["account_id"] == acct for o in st.orders.values())
        if not fresh:
            await self._catch_up(acct)
            await self._resolve_open_orders(acct)
        consistent = False
        for _ in range(MAX_CONSISTENT_READS):
            before = await self.broker.account_summary(acct)
            if not fresh:
                await self._catch_up(acct)
            positions = await self.broker.open_positions(acct)
            pending = await self.broker.pending_orders(acct)
            after = await self.broker.account_summary(acct)
            if after.last_txn_id == before.last_txn_id:
                consistent = True
                break
        self.report.consistent[acct] = consistent
        if not consistent:
            log.error("reconcile %s: broker kept moving during %d reads; using the last read", acct, MAX_CONSISTENT_READS)
        await self._unknown_orders(acct, pending)
        self._positions(acct, positions, fresh)
        if st.balances.get(acct) != after.balance:
            self._journal({"type": "reconcile.balance", "account_id": acct, "balance": after.balance,
                           "before": st.balances.get(acct)}, "baseline" if fresh else "balance")
        self._journal({"type": "reconcile.watermark", "account_id": acct, "txn_id": after.last_txn_id})

    async def _resolve_open_orders(self, acct: str) -> None:
        st = self.journal.state
        for order in list(st.open_orders(acct)):
            sent_at = order.get("ts")
            if order["status"] == "emulated":
                if not triggered_unconfirmed(order):
                    continue  # held by the engine, never sent: it survives as is
                # Triggered, and its child may have gone out before the crash
                # under the order's client id: the broker says whether it did.
                sent_at = order.get("updated_at") or sent_at
            cid = order.get("client_order_id")
            if not cid:
                continue
            bo = await self.broker.order_by_client_id(acct, cid)
            if bo is None and order["status"] in ("accepted", "emulated"):
                # Sent just before the crash? The venue may still be processing
                # it: ask again once the grace period since its submission is over.
                wait_s = ((sent_at or 0) + int(self.in_flight_grace_s * 1e9) - time.time_ns()) / 1e9
                if wait_s > 0:
                    await asyncio.sleep(min(wait_s, self.in_flight_grace_s))
                    bo = await self.broker.order_by_client_id(acct, cid)
            await self._resolve(order, bo)

    async def _resolve(self, order: dict, bo: Optional[BrokerOrder]) -> None:
        acct = order["account_id"]
        base = {"type": "reconcile.order", "account_id": acct, "order_id": order["order_id"],
                "client_order_id": order.get("client_order_id"), "before": order["status"]}
        if bo is None:
            reason = NOT_RECEIVED if order["status"] in ("accepted", "emulated") else NOT_FOUND
            self._journal({**base, "status": "rejected", "reason": reason}, "order")
            return
        if bo.state == "PENDING":
            if order["status"] == "accepted" or order.get("broker_order_id") != bo.broker_order_id:
                self._journal({**base, "status": "working", "broker_order_id": bo.broker_order_id}, "order")
            return
        if bo.state in ("FILLED", "TRIGGERED"):
            if bo.filling_txn_id is not None and not self.journal.state.seen_txn(acct, bo.filling_txn_id):
                for ev in await self._since(acct, bo.filling_txn_id - 1) or ():  # gone: status alone, below
                    if isinstance(ev, OrderFilled) and ev.txn_id == bo.filling_txn_id:
                        if self._apply_event(ev):
                            self.report.corrections.append(Correction(acct, "event", event_record(ev)))
                        break
            current = self.journal.state.orders.get(order["order_id"])  # gone: the fill finished it
            if current is not None and current["status"] in OPEN:
                self._journal({**base, "status": "filled", "broker_order_id": bo.broker_order_id}, "order")
            return
        if bo.state == "CANCELLED":
            self._journal({**base, "status": "cancelled", "reason": "CANCELLED_AT_BROKER",
                           "broker_order_id": bo.broker_order_id}, "order")

    async def _unknown_orders(self, acct: str, pending: list[BrokerOrder]) -> None:
        st = self.journal.state
        for bo in pending:
            if st.order_for(acct, bo.client_id, bo.broker_order_id) is not None:
                continue
            if self.unknown_orders == "cancel":
                events = await self.broker.cancel(acct, bo.broker_order_id)
                self._journal({"type": "reconcile.cancelled_unknown", "account_id": acct,
                               "broker_order_id": bo.broker_order_id, "client_order_id": bo.client_id},
                              "cancelled_unknown")
                for ev in events:
                    self._apply_event(ev)
                continue
            oid = bo.client_id or f"broker-{bo.broker_order_id}"
            self._journal({"type": "reconcile.adopted", "account_id": acct, "order_id": oid,
                           "client_order_id": bo.client_id, "broker_order_id": bo.broker_order_id,
                           "instrument": bo.instrument, "side": "buy" if bo.units > 0 else "sell",
                           "units": abs(bo.units), "order_type": bo.type.lower(), "price": bo.price},
                          "adopted")

    def _positions(self, acct: str, positions, fresh: bool = False) -> None:
        st = self.journal.state
        broker_net = {p.instrument: p.long_units + p.short_units for p in positions}
        broker_net = {k: v for k, v in broker_net.items() if v}
        ours = dict(st.positions.get(acct, {}))
        for inst in sorted(set(broker_net) | set(ours)):
            b, o = broker_net.get(inst, 0), ours.get(inst, 0)
            if b != o:
                self._journal({"type": "reconcile.position", "account_id": acct, "instrument": inst,
                               "units": b, "before": o}, "baseline" if fresh else "position")


def triggered_unconfirmed(order: dict) -> bool:
    """An emulated order whose trigger is journaled but whose child order the
    broker never confirmed (no ``broker.accepted``): it may be at the broker."""
    return order["status"] == "emulated" and bool((order.get("emulation") or {}).get("triggered"))


async def recover(journal: Journal, broker: Broker, *, accounts: Optional[Iterable[str]] = None,
                  unknown_orders: str = "adopt", in_flight_grace_s: float = IN_FLIGHT_GRACE_S) -> ReconcileReport:
    """Reconcile an opened journal with a started broker; returns what was corrected."""
    return await Reconciler(journal, broker, unknown_orders=unknown_orders,
                            in_flight_grace_s=in_flight_grace_s).run(accounts)
