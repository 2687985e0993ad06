"""The engine with its journal, wrapped from outside: recovery at start, durable acks.

The engine appends plain dict records through its journal seam
(``Engine(journal=...)`` calling ``journal.append(record)``, synchronously)
but returns to its caller without waiting for the disk. ``JournaledEngine``
closes that gap without touching the engine's internals:

* every command method (submit, modify, cancel, close_position, kill switch)
  returns only after ``Journal.barrier()``: the records the command appended
  are durable before the caller sees its acknowledgement;
* ``start()`` opens the journal (snapshot + replay, torn tail dropped),
  starts the engine, reconciles the journal with the broker
  (``fastexec.journal.recovery``), restores what the engine lets us restore,
  and only then returns, so nothing is served from an unreconciled state;
* a client order id already in the journal is refused after a restart too
  (``DUPLICATE_CLIENT_ORDER_ID``), so a client retrying an order it never got
  an answer for cannot make the engine send it twice;
* ``Idempotency-Key`` outcomes are journaled with the orders they placed
  (``fastexec.journal.keys``, ``idempotency_keys``; the API submits those through
  ``submit_recorded``), so a retry after a restart gets the first answer too;
* ``stop()`` snapshots and closes the journal.

Restoring engine state: when the engine offers ``restore_state(dict)`` it gets
``JournalState.to_dict()`` (orders with status and broker ids, emulated orders
with their trigger state, kill switches, risk limits, trading states). Until it
does, everything goes through the engine's public methods: risk limits,
trading states and kill switches are re-applied, and open orders are taken
back under their own engine id (``Engine.adopt_order``): orders working at
the broker (a triggered emulated order whose child rests there among them),
and emulated orders still waiting for their trigger, with a trailing stop's
journaled best price.

``fastexec serve`` (``fastexec.service``) runs the engine through this
wrapper (journal in ``$FASTEXEC_DATA_DIR/journal``, durability from
``FASTEXEC_JOURNAL_DURABILITY``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Optional

from fastexec.config import Settings
from fastexec.errors import ConflictError, FastexecError

from .keys import IdempotencyKeys, keys_from_settings
from .recovery import ReconcileReport, recover, triggered_unconfirmed
from .store import Journal, OpenReport
from .writer import DEFAULT_SEGMENT_BYTES, Durability

try:  # submit -> durable ack, compiled (one future awaited, no coroutine layers)
    from ._hot import journaled_submit as _journaled_submit
except ImportError:  # pragma: no cover
    _journaled_submit = None

log = logging.getLogger("fastexec.journal")

DEFAULT_SNAPSHOT_EVERY = 100_000


class JournaledEngine:
    """An ``Engine`` whose acknowledgements wait for the journal; delegates everything else."""

    def __init__(
        self,
        settings: Optional[Settings] = None,
        broker: Any = None,
        *,
        journal_dir: Optional[str] = None,
        durability: Durability | str = Durability.FSYNC,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        keep_snapshots: int = 3,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        unknown_orders: str = "adopt",
        direct: Optional[bool] = None,
        commit_delay_us: Optional[int] = None,
        **engine_kwargs: Any,
    ) -> None:
        from fastexec.engine import Engine

        settings = settings if settings is not None else Settings.from_env()
        self.journal_dir = journal_dir or os.path.join(settings.data_dir, "journal")
        self.journal = Journal(self.journal_dir, durability=durability, segment_bytes=segment_bytes,
                               keep_snapshots=keep_snapshots, snapshot_every=snapshot_every,
                               direct=settings.journal_direct if direct is None else direct,
                               commit_delay_us=(settings.journal_commit_delay_us if commit_delay_us is None
                                                else commit_delay_us))
        self.engine = Engine(settings, broker, journal=self.journal, **engine_kwargs)
        #: ``Idempotency-Key`` outcomes, in the journal and its snapshots (``fastexec.journal.keys``)
        self.idempotency_keys: IdempotencyKeys = keys_from_settings(settings)
        self.journal.add_fold("idempotency", self.idempotency_keys)
        self.unknown_orders = unknown_orders
        self.open_report: Optional[OpenReport] = None
        self.reconcile_report: Optional[ReconcileReport] = None
        self.restored: dict[str, int] = {}
        # start() completed: only then is there a state worth a snapshot at stop
        self._running = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def health(self) -> dict:
        """The engine's health with the journal's beside it; a journal that cannot
        acknowledge (failed, or not open) makes the whole engine not ok."""
        h = self.engine.health()
        h["journal"] = j = self.journal.health()
        if not j["ok"]:
            h["ok"] = False
        return h

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.open_report = self.journal.open()
        await self.engine.start()
        self.reconcile_report = await recover(self.journal, self.engine.broker, accounts=list(self.engine.account_ids),
                                              unknown_orders=self.unknown_orders)
        await self._restore()
        await self.journal.barrier()
        self._running = True
        log.info("journal recovery done", extra={
            "snapshot_seq": self.open_report.snapshot_seq, "replayed": self.open_report.replayed,
            "truncated_bytes": self.open_report.truncated_bytes,
            "corrections": len(self.reconcile_report.corrections), "restored": self.restored})

    async def stop(self) -> None:
        try:
            await self.engine.stop()
        finally:
            # after a failed start (broker unreachable, journal locked) nothing
            # new is in the journal: no snapshot, just close what was opened
            if self._running and self.journal.writer is not None and self.journal.writer.failed is None:
                try:
                    await self.journal.snapshot()
                except Exception:  # noqa: BLE001 - the journal itself is intact; the next start replays more
                    log.exception("journal: snapshot at stop failed")
            self._running = False
            await self.journal.close()

    async def _restore(self) -> None:
        st = self.journal.state
        restore = getattr(self.engine, "restore_state", None)
        if restore is not None:
            result = restore(st.to_dict())
            if asyncio.iscoroutine(result):
                await result
            self.restored = {"orders": len(st.open_orders()), "kill_switches": len(st.kill_switches)}
            return
        accounts = set(self.engine.account_ids)
        limits = 0
        for key, values in st.risk_limits.items():
            targets = accounts if key == "*" else ({key} & accounts)
            for acct in targets:
                try:
                    self.engine.set_risk_limits(acct, **values)
                    limits += 1
                except (FastexecError, TypeError) as exc:
                    log.error("journal: cannot restore risk limits of %s: %s", acct, exc)
        states = 0
        for acct, state in st.trading_states.items():
            if acct in accounts and state != "halted":
                try:
                    self.engine.set_trading_state(acct, state)
                    states += 1
                except FastexecError as exc:
                    log.error("journal: cannot restore trading state of %s: %s", acct, exc)
        # kill switches before anything can send: a re-armed order must not slip out under an active switch
        switches = 0
        for key, ks in st.kill_switches.items():
            acct = None if key == "*" else key
            if ks.get("active") and (acct is None or acct in accounts):
                ts = ks.get("ts")
                await self.engine.activate_kill_switch(acct, reason=ks.get("reason") or "restored from journal",
                                                       actor=ks.get("actor") or "journal", flatten=False,
                                                       activated_at=ts if type(ts) is int else None)
                switches += 1
        adopted, unrestorable = await self._adopt_working(accounts)
        rearmed = await self._rearm_emulated(accounts)
        if unrestorable:
            log.warning("journal: %d orders working at the broker could not be taken back as orders "
                        "(their fills still move positions): %s", len(unrestorable), unrestorable[:20])
        self.restored = {"risk_limits": limits, "trading_states": states, "kill_switches": switches,
                         "orders_adopted": adopted, "emulated_rearmed": rearmed,
                         "orders_not_restored": len(unrestorable)}

    async def _adopt_working(self, accounts: set) -> tuple[int, list[str]]:
        """Orders working at the broker keep their engine id (``Engine.adopt_order``)."""
        adopt = getattr(self.engine, "adopt_order", None)
        adopted, failed = 0, []
        for o in list(self.journal.state.open_orders()):
            if o["status"] == "emulated" or o["account_id"] not in accounts:
                continue
            if adopt is None:
                failed.append(o["order_id"])
                continue
            try:
                await adopt(dict(o))
                adopted += 1
            except FastexecError as exc:
                log.error("journal: order %s could not be adopted: %s", o["order_id"], exc)
                failed.append(o["order_id"])
        return adopted, failed

    async def _rearm_emulated(self, accounts: set) -> int:
        """Emulated orders still waiting for their trigger go back into the
        engine's book under their own engine id (``Engine.adopt_order``): they
        never reached the broker, so nothing is sent, and a trailing stop
        resumes from the best price it had journaled. One the market went
        through while the engine was down fires at once."""
        count = 0
        for o in list(self.journal.state.open_orders()):
            if o["status"] != "emulated" or o["account_id"] not in accounts:
                continue
            if triggered_unconfirmed(o):
                # reconciliation resolves these by client id; re-arming one could send its child twice
                log.error("journal: triggered order %s was not resolved with the broker; not re-armed",
                          o["order_id"])
                continue
            try:
                await self.engine.adopt_order(dict(o))
            except FastexecError as exc:
                self.journal.append({"type": "order.status", "account_id": o["account_id"], "order_id": o["order_id"],
                                     "status": "rejected", "reason": f"RESTORE_FAILED: {exc.code}"})
                log.error("journal: emulated order %s could not be re-armed: %s", o["order_id"], exc)
                continue
            count += 1
        return count

    # ------------------------------------------------------------------ commands: ack after durable

    async def _durable(self, call) -> Any:
        """Run an engine command; before its result (or its error) reaches the
        caller, make every record it appended durable. A command that
        appended nothing (refused by validation or risk) does not wait; one
        alone in its loop turn writes its records itself, as a submit does."""
        w = self.journal.writer
        before = w._next_seq
        try:
            return await call
        finally:
            if w._next_seq != before:
                w.ack_turn(w._next_seq - 1)  # alone in its turn: written now, on the loop, as a submit
                fut = w.durable_future()  # else one future, resolved with its batch
                if fut is not None:
                    await fut

    def _refuse_journaled_client_id(self, order: Any) -> None:
        """``order``'s client id is in the journal for its account: refuse it (the
        Python side of ``journaled_submit``'s check)."""
        cid = getattr(order, "client_order_id", None)
        acct = getattr(order, "account_id", None)
        if cid is not None and type(acct) is str and self.journal.state.client_id_known(acct, cid):
            self._refuse_forgotten(acct, cid)

    def _refuse_forgotten(self, account_id: str, cid: str) -> None:
        """``cid`` is in the journal for ``account_id``: refuse it unless the engine still
        knows the order (then the engine refuses it itself, as a duplicate of a live id)."""
        if self.engine._by_client_id(account_id, cid) is None:  # the engine forgot it in a restart; the journal did not
            raise ConflictError(f"client_order_id {cid!r} is already in use", code="DUPLICATE_CLIENT_ORDER_ID",
                                field="client_order_id")

    async def _submit_durable_py(self, order: Any, request_id: Optional[str]) -> Any:
        w = self.journal.writer
        before = w._next_seq
        try:
            return await self.engine.submit(order, request_id=request_id)
        finally:
            if w._next_seq != before:
                w.ack_turn(w._next_seq - 1)  # alone in its turn: written now, on the loop
                fut = w.durable_future()
                if fut is not None:
                    await fut

    async def submit_py(self, order: Any, *, request_id: Optional[str] = None) -> Any:
        """The reference of ``submit`` (``_hot.journaled_submit``, what runs when compiled)."""
        self._refuse_journaled_client_id(order)
        return await self._submit_durable_py(order, request_id)

    async def submit_recorded(self, order: Any, record: Any, *, request_id: Optional[str] = None) -> Any:
        """``submit`` (the same refusal of a journaled client order id, the same durable
        ack) for a caller that journals records of its own about the outcome:
        ``record(view, None)`` or ``record(None, exc)`` runs as soon as the engine has
        answered, before the wait that makes the submit's records durable, so the
        caller's records share that wait (one write, no second fsync). The API's
        ``Idempotency-Key`` path (``fastexec.journal.keys``); everything else uses
        ``submit``."""
        return await self._durable(self._submit_recording(order, record, request_id))

    async def _submit_recording(self, order: Any, record: Any, request_id: Optional[str]) -> Any:
        try:
            self._refuse_journaled_client_id(order)  # as submit_py / journaled_submit
            view = await self.engine.submit(order, request_id=request_id)
        except BaseException as exc:
            record(None, exc)
            raise
        record(view, None)
        return view

    if _journaled_submit is not None:
        submit = _journaled_submit  # a compiled coroutine function, bound like any method
    else:  # pragma: no cover - a build without the extension
        submit = submit_py

    async def modify(self, order_id: str, **changes: Any) -> Any:
        return await self._durable(self.engine.modify(order_id, **changes))

    async def cancel(self, order_id: str) -> Any:
        return await self._durable(self.engine.cancel(order_id))

    async def close_position(self, *args: Any, **kwargs: Any) -> Any:
        return await self._durable(self.engine.close_position(*args, **kwargs))

    async def activate_kill_switch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._durable(self.engine.activate_kill_switch(*args, **kwargs))

    async def release_kill_switch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._durable(self.engine.release_kill_switch(*args, **kwargs))

    # set_risk_limits / set_trading_state are synchronous in the engine: their
    # records go out with the next group commit (milliseconds). A caller that
    # must know they are durable awaits ``journal_barrier()``.

    async def journal_barrier(self) -> int:
        return await self.journal.barrier()


# ``python -m fastexec.journal.integration`` is ``fastexec serve`` (which is journaled)
if __name__ == "__main__":  # pragma: no cover
    from fastexec.service import serve_main

    sys.exit(serve_main())
