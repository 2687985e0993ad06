"""The engine: one event loop that owns every account's orders, positions,
P&L, margin and risk state, and the only path from a caller to a broker.

Why it is shaped like this:

* **One owner.** All state lives in the Cython core (``OrderStore`` for the
  order state machine, ``Ledger`` for positions/P&L/margin/NAV, the risk
  kernel for limits) and is touched only from the engine's loop, so there are
  no locks and a kill switch can stop an account between two awaits.
* **One path for broker events.** What a request returns and what arrives
  later on the handler (fills of resting orders, exits hit by price, expiries)
  go through ``_on_event``, deduplicated by ``(account, txn_id)``: a venue may
  report the same transaction twice (HTTP response and transaction stream) and
  applying a fill twice would corrupt the position. Per account, every id up
  to the one the state loaded at start includes (the account's watermark,
  ``_add_account``) counts as applied from the start.
* **Never send an order twice.** Each order's client id goes to the broker
  once; when a submit fails without an answer the engine asks the broker for
  that client id instead of sending again.
* **Journal before ack.** Every accepted command and applied broker event is
  appended to ``self._journal`` (plain dicts, see ``fastexec.journal.records``)
  before the caller gets its view back. The default journal drops them.
* **Lean hot path.** With the in-process simulated venue a submit never yields
  to the loop: the broker coroutine completes synchronously. No log line is
  formatted and no event object is built unless someone listens. The steps
  every routed order runs (``_check``, ``submit``, ``_route``, ``_dispatch``,
  the fill, the view) and the per-order records are compiled with C-typed
  fields in ``hotpath.pyx``; ``Engine`` subclasses its ``EngineCore`` and
  holds everything else here.
"""
from __future__ import annotations

import asyncio
import logging
from time import perf_counter_ns
from time import time_ns as _time_ns
from typing import Callable, Optional

from fastexec._core.instruments import load_instruments
from fastexec._core.orders import OrderEvent, OrderState, OrderStore
from fastexec._core.positions import Ledger
from fastexec.brokers.base import (
    Broker,
    BrokerError,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PriceTick,
)
from fastexec.config import Settings
from fastexec.errors import (
    BrokerRejectedError,
    BrokerUnavailableError,
    ConflictError,
    FastexecError,
    KillSwitchActiveError,
    NotFoundError,
    RiskDeniedError,
    ValidationError,
)

from . import views as _views
from .clock import Clock, system_clock, trading_day_bounds
from .emulation import STOP_LIMIT, TRAILING, Emulated, EmulationBook
from .hotpath import (
    OPEN_STATUSES,
    STATUS,
    STATUSES,
    TERMINAL,
    EngineCore,
    Normalized,
    TxnWindow,
    broker_request,
    with_units,
)
from .hotpath import Order as _Order
from .hotpath import _IS_TERMINAL, engine_id_prefix, is_engine_id
from .hotpath import new_order as _new_order
from .journal import Journal, NullJournal
from .killswitch import KillSwitches
from .perf import Performance
from .risk import RiskGateway
from .types import ExitSpec, OrderSpec, OrderType, TradingState
from .validation import normalize
from .views import (
    AccountView,
    EngineEvent,
    KillSwitchView,
    OrderView,
    PositionView,
    RiskDecision,
    RiskLimitsView,
    RiskMetrics,
)

log = logging.getLogger("fastexec.engine")
_DEBUG = logging.DEBUG

S = OrderState
E = OrderEvent

_views._OPEN_STATUSES = OPEN_STATUSES  # OrderView.is_open
_PENDING_SUBMIT = S.PENDING_SUBMIT

# Finished orders (filled, cancelled, rejected, expired) stay readable through
# get_order / list_orders until RETAIN_TERMINAL newer ones have finished, then
# the oldest are forgotten (in batches of RETIRE_BATCH); the journal keeps them
# all. Bounded on purpose: every retained order is live heap the garbage
# collector walks and the caches hold. Measured with the in-process venue, an
# engine retaining 100,000 orders spent 23-28 us per submit against 11-13 us
# at 10,000. ``Engine(retain_terminal=...)`` changes the bound.
RETAIN_TERMINAL = 10_000
RETIRE_BATCH = 512
UNRESOLVED_GRACE_S = 30.0  # after this, "no record at a reachable broker" means never placed
# Start-up reads of an account (balance, open trades) are repeated at most this
# often until its last transaction id stays the same across them (_add_account).
LOAD_CONSISTENT_READS = 8
# A cancel the kill switch could not get through is tried again after these
# delays (doubling, capped): a broker outage must not leave an order working
# under an active switch, and a dead broker must not be hammered either.
KILL_RETRY_BASE_S = 0.5
KILL_RETRY_MAX_S = 30.0
# What a venue answers a replace of an order no longer pending there (filled or
# cancelled first): v20's 404 with an orderCancelRejectTransaction.
_REPLACE_TARGET_GONE = frozenset({"ORDER_DOESNT_EXIST", "NO_SUCH_ORDER"})



class _Replace:
    """A replace (modify of a routed order) sent to the broker: what the
    replacement carries, so the store takes the new terms the moment the
    replacement is known to exist (its OrderReplaced, or a fill of it that
    overtook that), before any fill of it is applied."""

    __slots__ = ("old_broker_id", "terms", "sent", "new_broker_id", "event")

    def __init__(self, old_broker_id: Optional[str], terms: Normalized, sent: int) -> None:
        self.old_broker_id = old_broker_id
        self.terms = terms  # the order's new terms (units: the whole order, fills before the replace included)
        self.sent = sent  # the replacement's own units (signed): what was left to fill when it was sent
        self.new_broker_id: Optional[str] = None  # set once the replacement is known to exist
        self.event: Optional[asyncio.Event] = None  # made by a cancel waiting for the replace to finish


def _id_position(order_id: str) -> tuple[str, int]:
    """Where an engine order id stands in creation order: its start-time prefix
    (fixed-width base36, so it sorts as text), then its counter."""
    prefix, _, n = order_id.rpartition("-")
    return prefix, int(n) if n.isdigit() else -1


class Engine(EngineCore):
    """The execution engine (contracts §5). Create it, ``await start()``, then
    call its methods from the same event loop.

    ``retain_terminal`` bounds how many finished orders stay readable through
    ``get_order`` / ``list_orders`` (default ``RETAIN_TERMINAL`` = 10,000, the
    most recently finished ones); older finished orders are forgotten by the
    engine and remain in the journal. Working orders are never forgotten."""

    def __init__(
        self,
        settings: Optional[Settings] = None,
        broker: Optional[Broker] = None,
        *,
        clock: Optional[Clock] = None,
        journal: Optional[Journal] = None,
        instruments=None,
        max_accounts: int = 64,
        retain_terminal: int = RETAIN_TERMINAL,
    ) -> None:
        if type(retain_terminal) is not int or retain_terminal < 0:
            raise ValueError("retain_terminal must be an int >= 0")
        self.settings = settings if settings is not None else Settings.from_env()
        self.broker = broker
        # the default is time.time_ns itself (what system_clock returns), without a Python frame per read
        self._clock: Clock = clock if clock is not None and clock is not system_clock else _time_ns
        self._journal: Journal = journal if journal is not None else NullJournal()
        self._journal_on = not isinstance(self._journal, NullJournal)
        self.instruments = instruments if instruments is not None else load_instruments()
        self._inst: dict = {inst.name: inst for inst in self.instruments}
        self._max_accounts = max_accounts
        self._ledger = Ledger(self.instruments, max_accounts)
        # addressed by slot (Order.slot): the engine's own tables find its orders
        self._store = OrderStore(max_accounts, len(self.instruments), keyed=False)
        self._risk = RiskGateway(self.settings, self._ledger, self._store, self.instruments, max_accounts)
        self._gate = self._risk.kernel.gate  # what RiskGateway.check calls
        self._kernel = self._risk.kernel  # submit calls its gate in C
        self._accounts: dict[str, int] = {}
        self._account_names: list[str] = []
        self._currency: dict[str, str] = {}
        self._orders: dict[str, _Order] = {}
        # per account index: client id -> order (EngineCore._client_order)
        self._by_client: list[dict[str, _Order]] = [{} for _ in range(max_accounts)]
        self._by_broker: dict[str, dict[str, _Order]] = {}  # account -> broker order id -> order
        self._terminal: list = []  # finished order ids, oldest first (EngineCore._forget_oldest)
        self._emu = EmulationBook()
        self._kill = KillSwitches()
        self._subs: list[Callable[[EngineEvent], None]] = []
        self._perf = Performance()
        self._submit_ring = self._perf.ring("submit")
        self._seen: dict[str, TxnWindow] = {}  # account -> the transaction ids applied (a window of the newest)
        self._tasks: set = set()
        # order id -> loop time of the failed submit, for orders whose outcome is unknown
        self._unresolved: dict[str, float] = {}
        self._resolving: Optional[asyncio.Task] = None
        self.unresolved_grace_s = UNRESOLVED_GRACE_S
        # order id -> the replace in flight at the broker (modify); a cancel waits for it
        self._replacing: dict[str, _Replace] = {}
        # order id -> a replace whose answer was lost and whose outcome is unknown: its
        # OrderReplaced may still come on the stream, and then brings these terms
        self._replace_unknown: dict[str, _Replace] = {}
        # order id -> the task retrying its cancel while a kill switch blocks its account
        self._kill_retries: dict[str, asyncio.Task] = {}
        self._trails: dict[str, Emulated] = {}  # trailing stops whose level moved this loop turn (_trail_moved)
        self._kill_cancel_failures = 0  # cancels under a kill switch that failed, retries included
        self.kill_retry_base_s = KILL_RETRY_BASE_S
        self.kill_retry_max_s = KILL_RETRY_MAX_S
        self.retain_terminal = retain_terminal  # finished orders kept readable (get_order, list_orders)
        self.retire_batch = RETIRE_BATCH
        self._seq = 0
        self._id_prefix = ""
        self._day_start = 0
        self._day_end = 0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._started = False
        self._broker_ok = True
        self._last_broker_error: Optional[str] = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect the broker, load accounts and prices, open the trading day."""
        if self._started:
            return
        if self.broker is None:
            self.broker = self._default_broker()
        # Events that arrive while the accounts load wait until each account's
        # watermark is known (``_add_account``): then those already in the
        # loaded state are dropped by the window and the later ones applied,
        # in the order they came.
        early: list = []
        self.broker.set_event_handler(early.append)
        try:
            await self.broker.start()
            now = self._clock()
            self._id_prefix = engine_id_prefix(now)  # a form client ids may not take (hotpath.is_engine_id)
            for account_id in self.broker.account_ids():
                await self._add_account(account_id)
        finally:
            self.broker.set_event_handler(self._on_event)
            for ev in early:
                self._on_event(ev)
        names = [inst.name for inst in self.instruments]
        try:
            await self.broker.subscribe_prices(names)
            ticks = await self.broker.latest_prices(names)
        except BrokerError:
            # Some venues do not offer every packaged instrument: take them one by one.
            ticks = []
            for name in names:
                try:
                    await self.broker.subscribe_prices([name])
                    ticks += await self.broker.latest_prices([name])
                except BrokerError:
                    continue
        for tick in ticks:
            self._on_tick(tick)
        self._day_start, self._day_end = trading_day_bounds(now)
        for a in self._accounts.values():
            self._ledger.start_trading_day(a)
        self._started = True
        self._schedule_housekeeping()

    def _default_broker(self) -> Broker:
        s = self.settings
        if s.uses_oanda:
            from fastexec.brokers.oanda import OandaBroker, OandaConfig

            cfg = OandaConfig(
                token=s.oanda_api_key,
                account_ids=tuple(a.strip() for a in (s.oanda_account_id or "").split(",") if a.strip()),
                environment=s.oanda_environment,
                rest_url=s.oanda_rest_url,
                stream_url=s.oanda_stream_url,
                max_requests_per_s=s.oanda_max_requests_per_s,
                pool_size=s.oanda_pool_size,
                gslo_style=s.oanda_gslo_style,
            )
            return OandaBroker(cfg)
        from fastexec.sim.broker import SimulatedBroker
        from fastexec.sim.venue import Venue

        venue = Venue(seed=s.sim_seed, accounts=s.sim_accounts, balance=s.sim_balance, currency=s.sim_currency,
                      history=s.sim_history or None)
        return SimulatedBroker(venue, tick_interval=s.sim_tick_interval_ms / 1000)

    async def _add_account(self, account_id: str) -> None:
        # Balance and positions opened before this engine started (e.g. on
        # OANDA, or before a restart), read at one point of the account's
        # history: its last transaction id is read before and after, and the
        # reads are repeated if it moved. That id is the account's watermark:
        # the state loaded here includes every transaction up to it, so the
        # dedupe window starts there (``TxnWindow(floor=...)``) and no path
        # that turns broker transactions into events (stream and its replays,
        # an order looked up after a lost answer or a refused cancel, the
        # housekeeping of orders of unknown fate) books one of them again.
        trades = positions = None
        for _ in range(LOAD_CONSISTENT_READS):
            before = await self.broker.account_summary(account_id)
            # The ledger closes lots FIFO like the broker, so it takes the
            # broker's open trades, oldest first, one lot each, when the broker
            # can list them; else one lot per position side at its average price
            # (later closes then realize against that average, not per trade).
            trades = await self._open_trades(account_id)
            if trades is None:
                positions = await self.broker.open_positions(account_id)
            snap = await self.broker.account_summary(account_id)
            if snap.last_txn_id == before.last_txn_id:
                break
        else:
            log.error("account %s kept moving during %d reads at start; its state is taken from the last read",
                      account_id, LOAD_CONSISTENT_READS)
        a = self._ledger.add_account(account_id, snap.currency, snap.balance)
        self._accounts[account_id] = a
        self._account_names.append(account_id)
        self._currency[account_id] = snap.currency
        self._seen[account_id] = TxnWindow(max(0, snap.last_txn_id or 0))
        self._risk.add_account(a)
        if trades is not None:
            for t in trades:
                inst = self._inst.get(t.instrument)
                if inst is not None and t.current_units:
                    self._ledger.apply_fill(a, inst.index, t.current_units, t.price, 0, int(t.trade_id))
            return
        for pos in positions:
            inst = self._inst.get(pos.instrument)
            if inst is None:
                continue
            if pos.long_units and pos.long_average_price:
                self._ledger.apply_fill(a, inst.index, pos.long_units, pos.long_average_price)
            if pos.short_units and pos.short_average_price:
                self._ledger.apply_fill(a, inst.index, pos.short_units, pos.short_average_price)

    async def _open_trades(self, account_id: str):
        """The broker's open trades oldest first (v20 trade ids grow), or None
        when the broker does not list trades (not part of the Broker interface)."""
        list_trades = getattr(self.broker, "open_trades", None)
        if list_trades is None:
            return None
        try:
            trades = await list_trades(account_id)
        except BrokerError:
            log.warning("open trades of %s unavailable; positions taken at their average price", account_id)
            return None
        try:
            return sorted(trades, key=lambda t: int(t.trade_id))
        except (AttributeError, TypeError, ValueError):
            return None

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._trails:  # this turn's trail moves, while the journal is still open
            self._journal_trails()
        retries = list(self._kill_retries.values())
        for task in retries:
            task.cancel()
        if retries:
            await asyncio.gather(*retries, return_exceptions=True)
        await self.settle()
        if self.broker is not None:  # also after a failed start: close its sessions
            await self.broker.stop()
        self._started = False

    async def settle(self) -> None:
        """Wait until work the engine started on its own (emulated orders sent
        at their trigger, follow-up cancels) has finished. Useful before
        reading state in tests and before shutdown."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def account_ids(self) -> list[str]:
        return list(self._account_names)

    # ------------------------------------------------------------------ helpers

    def _acct_index(self, account_id, *, for_order: bool = False) -> int:
        a = self._accounts.get(account_id) if type(account_id) is str else None
        if a is None:
            if for_order:
                raise ValidationError(f"unknown account {account_id!r}", code="UNKNOWN_ACCOUNT", field="account_id")
            raise NotFoundError(f"unknown account {account_id!r}", code="ACCOUNT_NOT_FOUND", field="account_id")
        return a

    def _instrument(self, name, field: str = "instrument"):
        inst = self._inst.get(name) if isinstance(name, str) else None
        if inst is None:
            raise ValidationError(f"unknown instrument {name!r}", code="UNKNOWN_INSTRUMENT", field=field)
        return inst

    def _next_id(self) -> str:
        """The next engine id no order holds (an adopted order keeps the id an earlier
        start gave it). Client ids never take this form (``check_client_order_id``)."""
        self._seq += 1
        oid = self._id_prefix + str(self._seq)
        while oid in self._orders:
            self._seq += 1
            oid = self._id_prefix + str(self._seq)
        return oid

    def _find(self, order_id, accounts=None) -> _Order:
        """The order ``order_id`` names, among the orders of ``accounts`` (account ids;
        None: every account): its engine id, else its client id. Client ids are unique
        per account only, so one that names orders in several of those accounts is a
        409 AMBIGUOUS_ORDER_ID (use the engine id); an engine id never equals a client id."""
        if type(order_id) is not str:
            raise NotFoundError(f"no order {order_id!r}", code="ORDER_NOT_FOUND", field="order_id")
        o = self._orders.get(order_id)
        if o is not None and (accounts is None or o.account_id in accounts):
            return o
        found = []
        for account_id in (self._account_names if accounts is None else accounts):
            x = self._by_client_id(account_id, order_id)
            if x is not None:
                found.append(x)
        if not found:
            raise NotFoundError(f"no order {order_id!r}", code="ORDER_NOT_FOUND", field="order_id")
        if len(found) > 1:
            raise ConflictError(
                f"client_order_id {order_id!r} names orders in {len(found)} accounts: use the engine order id",
                code="AMBIGUOUS_ORDER_ID", field="order_id",
                detail="order_ids=" + ",".join(sorted(x.order_id for x in found)))
        return found[0]

    def find_order_id(self, order_id, accounts=None) -> str:
        """The engine id of the order ``order_id`` (engine or client id) names among
        ``accounts``' orders (None: all); raises as ``_find``. Another account's order
        is not found, so the caller learns nothing of it."""
        return self._find(order_id, accounts).order_id

    @staticmethod
    def _state(o: _Order) -> OrderState:
        return o.state

    def _emit(self, kind: str, account_id, order_id, request_id, data) -> None:
        ev = EngineEvent(kind, account_id, order_id, self._clock(), request_id, data)
        for cb in tuple(self._subs):
            try:
                cb(ev)
            except Exception:  # a subscriber must never break the engine
                log.exception("event subscriber failed on %s", kind)

    def _emit_order(self, kind: str, o: _Order) -> None:
        if self._subs:
            self._emit(kind, o.account_id, o.order_id, o.request_id, self._view(o))

    def _journal_status(self, o: _Order, reason: Optional[str]) -> None:
        if self._journal_on:
            self._journal.append({
                "type": "order.status", "ts": self._clock(), "account_id": o.account_id, "order_id": o.order_id,
                "status": STATUS[self._state(o)], "reason": reason,
            })

    def _transition(self, o: _Order, event: int) -> OrderState:
        st = o.state = self._store.apply_at(o.slot, o.order_id, event)
        if _IS_TERMINAL[st]:
            self._retire(o)
        return st

    def _retire(self, o: _Order) -> None:
        """Bound memory: keep the newest RETAIN_TERMINAL finished orders readable."""
        if o.norm.emulated:
            self._emu.remove(o.order_id)
        terminal = self._terminal
        terminal.append(o.order_id)
        if len(terminal) > self.retain_terminal + self.retire_batch:
            self._forget_oldest()

    # ------------------------------------------------------------------ submit

    def validate(self, order: OrderSpec) -> RiskDecision:
        """Run every check a submit would run, without sending anything or
        changing any state (the order-rate bucket is read, not drawn from)."""
        account_id = getattr(order, "account_id", None)
        a = self._accounts.get(account_id) if type(account_id) is str else None
        if a is None:
            account_id = account_id if type(account_id) is str else None
        state = self._risk.state_name(a) if a is not None else "unknown"
        try:
            self._check(order, self._clock(), False)
        except (RiskDeniedError, KillSwitchActiveError, ValidationError, ConflictError) as exc:
            return RiskDecision(False, exc.code, exc.detail or exc.message, account_id, state)
        return RiskDecision(True, "OK", "", account_id, state)

    @staticmethod
    def _log_extra(o: _Order) -> dict:
        return {"order_id": o.order_id, "client_order_id": o.client_order_id, "account_id": o.account_id,
                "instrument": o.inst.name, "status": STATUS[o.state], "broker_order_id": o.broker_order_id,
                "reason": o.reject_reason, "request_id": o.request_id}

    def _journal_submitted(self, o: _Order) -> None:
        n = o.norm
        self._journal.append({
            "type": "order.submitted", "ts": o.created_at, "order_id": o.order_id,
            "client_order_id": o.client_order_id, "account_id": o.account_id, "instrument": o.inst.name,
            "side": o.side, "units": abs(n.units), "order_type": n.info.name, "price": n.price,
            "stop_price": n.stop_price, "trailing_distance": n.trailing_distance, "time_in_force": n.tif,
            "gtd_time_ns": n.gtd_ns,
            "stop_loss": None if n.stop_loss is None else _exit_record(n.stop_loss),
            "take_profit": None if n.take_profit is None else _exit_record(n.take_profit),
            "trailing_stop_distance": n.trailing_stop.distance if n.trailing_stop is not None else None,
            "request_id": o.request_id, "emulated": n.emulated,
        })

    async def _resolve_lost_submit(self, o: _Order, exc: BrokerError) -> list:
        """A submit that failed without an answer: the order may or may not
        exist, and it may still be on its way. Ask by client id; when the
        broker has no record the order stays pending (never resent, never
        declared dead on a guess) and the housekeeping timer keeps asking."""
        log.warning("submit of %s failed (%s); resolving by client id", o.order_id, exc, extra=self._log_extra(o))
        self._broker_ok = False
        self._last_broker_error = str(exc)
        try:
            found = await self.broker.order_by_client_id(o.account_id, o.client_order_id)
        except BrokerError:
            found = None
        if found is None:
            self._unresolved[o.order_id] = asyncio.get_running_loop().time()
            raise BrokerUnavailableError(
                f"broker did not answer and the order's fate is not known yet: {exc}", code="BROKER_UNAVAILABLE",
                detail=f"order_id={o.order_id} client_order_id={o.client_order_id} status=pending",
            )
        self._broker_ok = True
        return await self._events_for_found(o, found)

    async def _resolve_unresolved(self) -> None:
        """Ask again for orders whose submit outcome is unknown. Once the broker
        answers and still has no record after UNRESOLVED_GRACE_S (longer than
        any request can stay in flight), the order was not placed."""
        now = asyncio.get_running_loop().time()
        for oid, since in list(self._unresolved.items()):
            o = self._orders.get(oid)
            if o is None or o.state is not _PENDING_SUBMIT:
                self._unresolved.pop(oid, None)
                continue
            try:
                found = await self.broker.order_by_client_id(o.account_id, o.client_order_id)
            except BrokerError:
                return  # still unreachable; next turn
            self._broker_ok = True
            if found is not None:
                for ev in await self._events_for_found(o, found):
                    self._on_event(ev)
                await self._cancel_if_killed(o)
            elif now - since > self.unresolved_grace_s:
                o.reject_reason = "NOT_PLACED"
                o.updated_at = self._clock()
                self._transition(o, E.REJECT)
                self._journal_status(o, "NOT_PLACED")
                log.warning("order %s was never placed at the broker", oid, extra=self._log_extra(o))
                self._emit_order("order_rejected", o)
            if o.state is not _PENDING_SUBMIT:
                self._unresolved.pop(oid, None)

    async def _events_for_found(self, o: _Order, found) -> list:
        """The broker's events that decide ``o`` (found at the broker by its
        client id), for ``_on_event``. Only transactions after the account's
        watermark are asked for: the state loaded at start includes the ones
        up to it (``_add_account``), and the window drops them anyway."""
        if o.broker_order_id is None:
            o.broker_order_id = found.broker_order_id
            self._bind_broker(o, found.broker_order_id)
        txn = max(t for t in (found.filling_txn_id, found.cancelling_txn_id, 0) if t is not None)
        if txn:
            floor = self._seen[o.account_id].floor
            if txn <= floor:
                self._settle_included(o, found)
                return []
            for since in (max(txn - 64, floor), txn - 1):  # with some context; failing that, from the deciding one
                try:
                    return await self.broker.transactions_since(o.account_id, since)
                except BrokerError as exc:
                    if not exc.history_gap:  # the venue no longer serves that far back
                        return []
            return []
        if found.state == "PENDING" and self._state(o) is S.PENDING_SUBMIT:
            self._transition(o, E.ACCEPT)
        return []

    def _filled_as_loaded(self, o: _Order) -> None:
        """The broker filled the rest of ``o`` in a transaction the positions the
        engine loaded already include: the order's state follows, positions are
        not touched (booking it would count the fill twice)."""
        n = o.norm
        rest = n.units - (o.fill_units if n.units > 0 else -o.fill_units)
        o.state = self._store.fill_at(o.slot, o.order_id, rest)
        o.fill_units = abs(n.units)

    def _settle_included(self, o: _Order, found) -> None:
        """``o`` was decided by a transaction the state loaded at start already
        includes (an order taken back after a restart whose lookup failed then):
        its state follows the broker's record, and positions are not touched,
        as in ``adopt_order``."""
        if self._state(o) in TERMINAL:
            return
        if found.state in ("FILLED", "TRIGGERED"):
            self._filled_as_loaded(o)
            o.updated_at = self._clock()
            self._journal_status(o, None)
            self._emit_order("order_filled", o)
            if _IS_TERMINAL[o.state]:
                self._retire(o)
        elif found.state == "CANCELLED":
            o.reject_reason = "CANCELLED_BEFORE_START"
            o.updated_at = self._clock()
            self._transition(o, E.CANCEL)
            self._journal_status(o, o.reject_reason)
            self._emit_order("order_cancelled", o)

    async def _reconcile_order(self, o: _Order) -> None:
        try:
            found = await self.broker.order_by_client_id(o.account_id, o.client_order_id)
        except BrokerError:
            return
        if found is None:
            return
        for ev in await self._events_for_found(o, found):
            self._on_event(ev)

    # ------------------------------------------------------------------ emulated orders

    def _arm(self, o: _Order, now: int, best: Optional[int] = None) -> None:
        """Put ``o`` in the emulation book. ``best``: the best price a trailing
        stop had already seen (before a modify, or a restart). It is kept:
        re-arming from the current market would loosen the stop by however far
        the price has come back from its extreme, though nothing about the
        trail changed."""
        n = o.norm
        kind = STOP_LIMIT if n.otype is OrderType.STOP_LIMIT else TRAILING
        expires = n.gtd_ns if n.tif == "GTD" else (self._day_end if n.tif == "GFD" else None)
        em = Emulated(o.order_id, o.inst.name, n.units > 0, kind, n.stop_price, n.trailing_distance, expires)
        if best is not None and kind == TRAILING:
            em.best = best  # a new distance, if any, applies from the best price seen
            em.trigger = best + em.distance if em.buy else best - em.distance
            self._store.set_stop_price_at(o.slot, o.order_id, em.trigger)
        o.trigger_price = em.trigger
        self._emu.add(em)
        px = self._ledger.price(o.inst_idx)
        if px is not None:
            self._observe(em, px[0], px[1])

    def _observe(self, em: Emulated, bid: int, ask: int) -> None:
        fired = em.observe(bid, ask)
        o = self._orders.get(em.order_id)
        if o is None:
            self._emu.remove(em.order_id)
            return
        if o.trigger_price != em.trigger:
            o.trigger_price = em.trigger
            if em.kind == TRAILING:
                self._store.set_stop_price_at(o.slot, o.order_id, em.trigger)
                if self._journal_on and not fired:
                    self._trail_moved(em)
        if fired:
            self._emu.remove(em.order_id)
            self._fire(o)

    def _trail_moved(self, em: Emulated) -> None:
        """Journal a trailing stop's new level so a restart resumes the trail
        (``_adopt_waiting``). At most one record per order per loop turn: a
        burst of ticks in one turn is written once, at its last level."""
        first = not self._trails
        self._trails[em.order_id] = em
        if first:
            try:
                asyncio.get_running_loop().call_soon(self._journal_trails)
            except RuntimeError:  # no loop running (driven by hand): write it now
                self._journal_trails()

    def _journal_trails(self) -> None:
        trails, self._trails = self._trails, {}
        now = self._clock()
        for oid in trails:
            o = self._orders.get(oid)
            em = self._emu.get(oid)  # the book's entry: a modify in this turn re-armed it with the same trail
            if o is None or em is None or o.state is not S.EMULATED:
                continue  # fired, cancelled or expired since: its own record says where it stands
            self._journal.append({"type": "order.emulation", "ts": now, "account_id": o.account_id,
                                  "order_id": oid, "emulation": {"best": em.best, "trigger": em.trigger}})

    def _fire(self, o: _Order) -> None:
        """Trigger exactly once: the order leaves the book and becomes
        TRIGGERED before anything is sent; the child goes out on a task."""
        self._transition(o, E.TRIGGER)
        o.updated_at = self._clock()
        if self._journal_on:
            self._journal.append({
                "type": "order.emulation", "ts": o.updated_at, "account_id": o.account_id,
                "order_id": o.order_id, "emulation": {"triggered": True, "trigger_price": o.trigger_price},
            })
        self._emit_order("order_triggered", o)
        log.info("emulated order %s triggered at %s", o.order_id, o.trigger_price, extra=self._log_extra(o))
        task = asyncio.get_running_loop().create_task(self._send_triggered(o))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_triggered(self, o: _Order) -> None:
        if self._state(o) is not S.TRIGGERED:
            return  # cancelled (e.g. kill switch) between trigger and send
        reason = None
        if self._kill.blocking(o.account_id) is not None:
            reason = "KILL_SWITCH_ACTIVE"
        else:
            code, detail = self._risk.check_existing(o.acct, o.inst_idx, o.norm.units, self._clock(), False,
                                                     own=o.norm.units)  # emulated: nothing filled yet
            if code is not None:
                reason = code
        if reason is not None:
            o.reject_reason = reason
            self._transition(o, E.REJECT)
            log.info("emulated order %s not sent at its trigger: %s", o.order_id, reason, extra=self._log_extra(o))
            self._journal_status(o, reason)
            self._emit_order("order_rejected", o)
            return
        self._transition(o, E.SUBMIT)
        try:
            await self._route(o)
        except FastexecError:
            pass  # the order's state says what happened; nobody awaits this task

    # ------------------------------------------------------------------ broker events

    def _on_event(self, ev) -> None:
        """Every broker event, from a response or the handler; idempotent per txn.

        Never raises: it runs inside the broker's callbacks (the simulated
        venue calls it in the middle of its own matching), so a surprise here
        is logged loudly instead of breaking the venue's processing."""
        try:
            self._dispatch(ev)
        except Exception:
            log.exception("broker event %s could not be applied", type(ev).__name__,
                          extra={"account_id": getattr(ev, "account_id", None)})

    def _match(self, account_id: str, client_id: Optional[str], broker_order_id: Optional[str]) -> Optional[_Order]:
        o = self._by_client_id(account_id, client_id) if client_id else None
        if o is None and broker_order_id is not None:
            o = self._by_broker_id(account_id, broker_order_id)
        if o is not None and o.account_id != account_id:
            return None
        return o

    def _bind(self, o: _Order, broker_order_id: str) -> None:
        if o.broker_order_id is not None:
            self._unbind_broker(o.account_id, o.broker_order_id)
        o.broker_order_id = broker_order_id
        self._bind_broker(o, broker_order_id)

    def _on_cancelled(self, ev: OrderCancelled) -> None:
        o = self._match(ev.account_id, ev.client_id, ev.broker_order_id)
        if o is None:
            return
        o.events += 1
        if o.broker_order_id is not None and o.broker_order_id != ev.broker_order_id:
            rep = self._replacing.get(o.order_id) or self._replace_unknown.get(o.order_id)
            if rep is None or rep.new_broker_id is not None or ev.broker_order_id == rep.old_broker_id:
                return  # an old incarnation (replaced) going away
            # the replacement, cancelled at once, reported before its OrderReplaced
            self._replaced(o, ev.broker_order_id)
        st = self._state(o)
        if st in TERMINAL:
            return
        o.updated_at = ev.time_ns
        if ev.reason == "TIME_IN_FORCE_EXPIRED":
            self._transition(o, E.EXPIRE)
            o.reject_reason = None
            self._emit_order("order_expired", o)
            return
        if ev.reason not in ("CLIENT_REQUEST", "CLIENT_REQUEST_REPLACED"):
            o.reject_reason = ev.reason  # FOK/IOC not filled, margin, bounds, linked trade closed...
        self._transition(o, E.CANCEL)
        self._emit_order("order_cancelled", o)

    def _on_replaced(self, ev: OrderReplaced) -> None:
        """The broker replaced the order (v20: cancelled it and created the
        replacement under a new broker id). The order lives on under the new
        id, and the store takes the replacement's terms now, before any fill
        of it is applied: that fill may follow in the same answer or have come
        first (``_other_incarnation``)."""
        o = self._match(ev.account_id, ev.client_id, ev.old_broker_order_id)
        if o is None:
            return
        o.events += 1
        if o.broker_order_id != ev.new_broker_order_id:  # else a fill of the replacement brought it first
            self._replaced(o, ev.new_broker_order_id)
        o.updated_at = ev.time_ns
        self._emit_order("order_replaced", o)

    def _replaced(self, o: _Order, new_broker_id: str) -> None:
        """The replacement ``new_broker_id`` exists: bind it and put the new
        terms in the store. Its units are what was left to fill when it was
        sent; fills of the old order stay filled, so the order's units are
        those fills plus the replacement's."""
        self._bind(o, new_broker_id)
        rep = self._replacing.get(o.order_id)
        if rep is None:
            rep = self._replace_unknown.pop(o.order_id, None)
        if rep is None or rep.new_broker_id is not None or self._state(o) in TERMINAL:
            log.warning("order %s (%s) replaced at the broker by %s, by no modify the engine has in flight; "
                        "terms kept", o.order_id, STATUS[self._state(o)], new_broker_id, extra=self._log_extra(o))
            return
        rep.new_broker_id = new_broker_id
        n = rep.terms
        units = (o.fill_units if n.units > 0 else -o.fill_units) + rep.sent
        self._set_terms(o, n if units == n.units else with_units(n, units))

    def _set_terms(self, o: _Order, n: Normalized) -> None:
        """New terms for a routed order, in the store and on the view. From a
        working state (a replace confirmed after its request was given up on,
        or an order grown by a late fill of its old incarnation) it goes
        through the table's own REPLACE_REQUEST/REPLACE pair."""
        if self._state(o) is not S.PENDING_REPLACE:
            self._transition(o, E.REPLACE_REQUEST)
        o.state = self._store.replace_at(o.slot, o.order_id, n.units, n.price or 0, n.stop_price or 0)
        o.norm = n

    def _other_incarnation(self, o: _Order, broker_id: str, units: int) -> None:
        """A fill of ``o`` under a broker id other than its current one (called
        by ``_on_fill`` before the store takes the fill; never raises):

        * the replacement of a replace in flight, whose fill overtook its
          OrderReplaced (a lagging or replayed stream): the replacement is
          known to exist, so its terms go into the store first;
        * the old order, filled before the replace and reported only now: the
          replacement carried what was left on top of it, so the order is
          larger by this fill."""
        try:
            rep = self._replacing.get(o.order_id) or self._replace_unknown.get(o.order_id)
            if rep is not None and rep.new_broker_id is None and broker_id != rep.old_broker_id:
                self._replaced(o, broker_id)
                return
            if self._state(o) in (S.SUBMITTED, S.PARTIALLY_FILLED):
                n = o.norm
                log.info("fill of order %s under its replaced broker order %s: the order grows by %s units",
                         o.order_id, broker_id, units, extra=self._log_extra(o))
                self._set_terms(o, with_units(n, n.units + units))
            else:
                log.warning("fill of order %s under %s, not its current broker order %s, while it is %s",
                            o.order_id, broker_id, o.broker_order_id, STATUS[self._state(o)],
                            extra=self._log_extra(o))
        except Exception:
            log.exception("fill of order %s under another broker order %s could not be matched to its terms",
                          o.order_id, broker_id, extra=self._log_extra(o))

    def _on_tick(self, tick: PriceTick) -> None:
        inst = self._inst.get(tick.instrument)
        if inst is None:
            return
        self._ledger.mark(inst.index, tick.bid, tick.ask)
        if self._emu:
            for em in self._emu.candidates(tick.instrument):
                self._observe(em, tick.bid, tick.ask)
            if self._emu.has_expiry:
                self._expire_emulated(tick.time_ns if tick.time_ns > 0 else self._clock())
        if self._started:
            now = self._clock()
            if now >= self._day_end:
                self._roll_day(now)

    def _expire_emulated(self, now: int) -> None:
        for em in self._emu.expired(now):
            o = self._orders.get(em.order_id)
            if o is not None and self._state(o) is S.EMULATED:
                o.updated_at = now
                self._transition(o, E.EXPIRE)
                self._journal_status(o, "TIME_IN_FORCE_EXPIRED")
                self._emit_order("order_expired", o)

    # ------------------------------------------------------------------ trading day

    def _roll_day(self, now: int) -> None:
        """Trading day boundary (17:00 New York): new daily-loss base, GFD expiry."""
        self._day_start, self._day_end = trading_day_bounds(now)
        for a in self._accounts.values():
            self._ledger.start_trading_day(a)
        self._expire_emulated(now)

    def _schedule_housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(1.0, self._housekeeping)

    def _housekeeping(self) -> None:
        self._housekeeping_once()
        if self._unresolved and (self._resolving is None or self._resolving.done()):
            task = self._resolving = asyncio.get_running_loop().create_task(self._resolve_unresolved())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._started:
            self._schedule_housekeeping()

    def tick(self) -> None:
        """Run the periodic checks now (day roll, emulated expiry); the engine
        also runs them every second on its own. Handy with an injected clock."""
        self._housekeeping_once()

    def _housekeeping_once(self) -> None:
        now = self._clock()
        if now >= self._day_end:
            self._roll_day(now)
        if self._emu.has_expiry:
            self._expire_emulated(now)

    # ------------------------------------------------------------------ modify / cancel

    async def modify(
        self,
        order_id: str,
        *,
        price: Optional[int] = None,
        units: Optional[int] = None,
        stop_loss: Optional[ExitSpec] = None,
        take_profit: Optional[ExitSpec] = None,
    ) -> OrderView:
        """Change a working or waiting order. The changed order passes the risk
        gateway again; at the broker it is a replace (new broker id, same
        engine ``order_id``). Nothing changes unless the whole change succeeds.
        The replacement may fill at once: the order then ends filled on the
        new terms. Raises ConflictError ORDER_NOT_MODIFIABLE (and emits
        nothing) when a fill or cancel ended the order before the replace got
        there, or while another modify or cancel of it is in flight."""
        t0 = perf_counter_ns()
        o = self._find(order_id)
        st = self._state(o)
        if st not in (S.EMULATED, S.SUBMITTED, S.PARTIALLY_FILLED):
            raise ConflictError(f"order {o.order_id} is {STATUS[st]} and cannot be modified",
                                code="ORDER_NOT_MODIFIABLE", detail=f"status={STATUS[st]}")
        if o.pending_op is not None:
            # e.g. a modify whose replacement the stream already showed (so the order is
            # working again) while its answer is still on its way: one request at a time
            raise ConflictError(f"order {o.order_id} has a {o.pending_op} in flight and cannot be modified",
                                code="ORDER_NOT_MODIFIABLE", detail=f"status={STATUS[st]} pending={o.pending_op}")
        if price is None and units is None and stop_loss is None and take_profit is None:
            raise ValidationError("nothing to modify: give price, units, stop_loss or take_profit", code="NOTHING_TO_MODIFY")
        old = o.norm
        spec = OrderSpec(
            account_id=o.account_id, instrument=o.inst.name, side=o.side,
            units=abs(old.units) if units is None else units, type=old.otype,
            price=old.price if price is None else price,
            stop_price=old.stop_price, trailing_distance=old.trailing_distance,
            time_in_force=old.tif, gtd_time=None,
            stop_loss=_exit_spec(old.stop_loss) if stop_loss is None else stop_loss,
            take_profit=_exit_spec(old.take_profit) if take_profit is None else take_profit,
            trailing_stop_distance=old.trailing_stop.distance if old.trailing_stop is not None else None,
        )
        if price is not None and old.price is None:
            raise ValidationError(f"a {old.otype.value} order has no price to modify", code="PRICE_NOT_ALLOWED", field="price")
        now = self._clock()
        if old.tif == "GTD":
            from .clock import ns_to_datetime

            spec.gtd_time = ns_to_datetime(old.gtd_ns)
            now = min(now, old.gtd_ns - 1)  # an existing GTD is not re-judged as "in the past"
        inst = o.inst
        n = normalize(spec, inst, now)
        filled = o.fill_units if n.units > 0 else -o.fill_units
        if abs(n.units) <= abs(filled):
            raise ValidationError(f"units={abs(n.units)} must exceed the filled units {abs(filled)}",
                                  code="INVALID_UNITS", field="units")
        ks = self._kill.blocking(o.account_id)
        if ks is not None:
            raise KillSwitchActiveError(f"kill switch active: {ks.reason}", code="KILL_SWITCH_ACTIVE",
                                        detail=f"actor={ks.actor} reason={ks.reason}")
        remaining = n.units - filled
        own = old.units - (o.fill_units if old.units > 0 else -o.fill_units)  # what the store counts now
        code, detail = self._risk.check_existing(o.acct, inst.index, remaining, self._clock(), True, own=own)
        if code is not None:
            raise RiskDeniedError(f"risk check failed: {detail}", code=code, detail=detail)
        if self._journal_on:
            self._journal.append({
                "type": "order.modify_requested", "ts": self._clock(), "account_id": o.account_id,
                "order_id": o.order_id, "price": price, "units": units,
                "stop_loss": _exit_record(n.stop_loss) if stop_loss is not None else None,
                "take_profit": _exit_record(n.take_profit) if take_profit is not None else None,
            })
        if st is S.EMULATED:
            o.state = self._store.replace_at(o.slot, o.order_id, n.units, n.price or 0, n.stop_price or 0)
            o.norm = n
            em = self._emu.remove(o.order_id)
            if em is not None:
                self._arm(o, now, em.best)
        else:
            await self._replace_at_broker(o, n)
        o.updated_at = self._clock()
        self._perf.ring("modify").add(perf_counter_ns() - t0)
        self._emit_order("order_modified", o)
        return self._view(o)

    async def _replace_at_broker(self, o: _Order, n: Normalized) -> None:
        """Send the replace and apply its answer. Returns once the replacement
        exists, with its terms in the store (whatever became of it since:
        filled at once, cancelled by the venue). Raises ConflictError
        ORDER_NOT_MODIFIABLE when the order was gone at the broker (a fill or
        a cancel won the race), BrokerRejectedError when the broker refused
        the new terms, BrokerUnavailableError when the outcome is unknown."""
        self._transition(o, E.REPLACE_REQUEST)
        o.pending_op = "replace"
        o.reject_reason = None
        send = n
        if o.fill_units:
            # the replacement is a new broker order: it carries only what is left
            send = with_units(n, n.units - (o.fill_units if n.units > 0 else -o.fill_units))
        req = broker_request(send, o.client_order_id, o.account_id, o.inst.name)
        self._replace_unknown.pop(o.order_id, None)  # this replace's answer says what is current
        rep = self._replacing[o.order_id] = _Replace(o.broker_order_id, n, send.units)
        refused = None
        try:
            try:
                events = await self.broker.replace(o.account_id, rep.old_broker_id, req)
            except BrokerError as exc:
                if rep.new_broker_id is not None:
                    return  # the stream showed the replacement: the modify happened
                if self._state(o) is S.PENDING_REPLACE:
                    self._transition(o, E.REPLACE_REJECT)
                # it may still have happened: a later OrderReplaced brings these terms
                unknown = self._replace_unknown
                for oid in [k for k in unknown if k not in self._orders or self._orders[k].state in TERMINAL]:
                    del unknown[oid]  # those orders ended: nothing more comes for them
                unknown[o.order_id] = rep
                raise BrokerUnavailableError(f"replace failed: {exc}", code="BROKER_UNAVAILABLE") from None
            for ev in events:
                if refused is None and type(ev) is OrderRejected:
                    refused = ev.reason
                self._on_event(ev)
        finally:
            o.pending_op = None
            if self._replacing.get(o.order_id) is rep:
                del self._replacing[o.order_id]
            if rep.event is not None:
                rep.event.set()
        if rep.new_broker_id is not None:
            return  # replaced (_replaced): the new terms are in force
        st = self._state(o)
        reason = o.reject_reason or refused or "REPLACE_REJECTED"
        if st is S.PENDING_REPLACE:
            self._transition(o, E.REPLACE_REJECT)
            if reason not in _REPLACE_TARGET_GONE:
                raise BrokerRejectedError(f"broker refused the modification: {reason}", code=reason)
            # The order is no longer pending at the broker: a fill or a cancel
            # won the race and may still be on its way (as for a refused cancel).
            await self._reconcile_order(o)
            st = self._state(o)
        raise ConflictError(f"order {o.order_id} could not be modified: it is {STATUS[st]} at the broker",
                            code="ORDER_NOT_MODIFIABLE", detail=f"status={STATUS[st]} reason={reason}")

    async def _replace_settled(self, o: _Order) -> None:
        """Wait until no replace of ``o`` is in flight. A cancel sent meanwhile
        would go to the order being replaced (refused: it is gone) while the
        replacement lives on, so a cancel waits and then cancels whatever
        incarnation is current."""
        rep = self._replacing.get(o.order_id)
        while rep is not None:
            if rep.event is None:
                rep.event = asyncio.Event()
            await rep.event.wait()
            rep = self._replacing.get(o.order_id)

    async def cancel(self, order_id: str) -> OrderView:
        """Cancel a working or waiting order. Raises ConflictError when the order
        already ended (including a fill that won the race with this cancel).
        A cancel during a modify waits for the replace, then cancels what it
        left (the replacement, or the old order when it was refused)."""
        t0 = perf_counter_ns()
        o = self._find(order_id)
        if o.pending_op == "replace":
            await self._replace_settled(o)  # then cancel the incarnation the modify left
        st = self._state(o)
        if st in TERMINAL or st is S.PENDING_CANCEL:
            raise ConflictError(f"order {o.order_id} is {STATUS[st]} and cannot be cancelled",
                                code="ORDER_NOT_CANCELLABLE", detail=f"status={STATUS[st]}")
        if self._journal_on:
            self._journal.append({"type": "order.cancel_requested", "ts": self._clock(),
                                  "account_id": o.account_id, "order_id": o.order_id})
        if st in (S.EMULATED, S.TRIGGERED):
            self._cancel_local(o, None)
        elif st is S.PENDING_SUBMIT and o.broker_order_id is None:
            raise ConflictError(f"order {o.order_id} is still being submitted", code="ORDER_NOT_CANCELLABLE",
                                detail="status=pending")
        else:
            await self._cancel_at_broker(o)
            st = self._state(o)
            if st is not S.CANCELLED:
                raise ConflictError(
                    f"order {o.order_id} could not be cancelled: it is {STATUS[st]}",
                    code="ORDER_NOT_CANCELLABLE", detail=f"status={STATUS[st]} reason={o.reject_reason}",
                )
        self._perf.ring("cancel").add(perf_counter_ns() - t0)
        return self._view(o)

    def _cancel_local(self, o: _Order, reason: Optional[str]) -> None:
        self._emu.remove(o.order_id)
        self._transition(o, E.CANCEL)
        o.updated_at = self._clock()
        if reason:
            o.reject_reason = reason
        self._journal_status(o, reason or "CLIENT_REQUEST")
        self._emit_order("order_cancelled", o)

    async def _cancel_at_broker(self, o: _Order) -> None:
        if o.pending_op == "replace":
            await self._replace_settled(o)  # the kill switch's cancels too: cancel what the modify left
        st = self._state(o)
        if st not in (S.SUBMITTED, S.PARTIALLY_FILLED, S.PENDING_REPLACE, S.PENDING_SUBMIT):
            return
        self._transition(o, E.CANCEL_REQUEST)
        o.pending_op = "cancel"
        try:
            try:
                events = await self.broker.cancel(o.account_id, o.broker_order_id)
            except BrokerError as exc:
                self._transition(o, E.CANCEL_REJECT)
                self._kill_cancel_failed(o, str(exc))
                raise BrokerUnavailableError(f"cancel failed: {exc}", code="BROKER_UNAVAILABLE") from None
            for ev in events:
                self._on_event(ev)
        finally:
            o.pending_op = None
        if self._state(o) is S.PENDING_CANCEL:
            # The broker refused: the order is no longer pending there. A fill
            # that raced us may still be on its way; until it arrives the order
            # returns to its working state.
            self._transition(o, E.CANCEL_REJECT)
            await self._reconcile_order(o)
            if self._state(o) not in TERMINAL:
                self._kill_cancel_failed(o, f"refused: {o.reject_reason}")

    # ------------------------------------------------------------------ positions

    async def close_position(self, account_id: str, instrument: str, units: Optional[int] = None,
                             reason: str = "") -> PositionView:
        """Close all (``units`` None) or ``units`` of a net position at market;
        ``units`` goes to the broker as that size, never as "ALL", so a fill
        landing meanwhile is not closed too. Allowed while the account is
        halted: getting flat must always work."""
        t0 = perf_counter_ns()
        a = self._acct_index(account_id)
        inst = self._instrument(instrument)
        if not isinstance(reason, str) or len(reason) > 256:
            raise ValidationError("reason must be text of at most 256 characters", code="INVALID_REASON", field="reason")
        net = self._ledger.position(a, inst.index).units
        if net == 0:
            raise ConflictError(f"no open position in {instrument} for {account_id}", code="NO_OPEN_POSITION",
                                field="instrument")
        if units is not None:
            if type(units) is not int or units <= 0:
                raise ValidationError("units must be a positive whole number", code="INVALID_UNITS", field="units")
            if units > abs(net):
                raise ValidationError(f"units={units} exceeds the position {abs(net)}", code="UNITS_EXCEED_POSITION",
                                      field="units")
        # An explicit size is sent as that size, never as "ALL": the engine's
        # position may be stale (a fill on its way), and ALL would close that too.
        amount = "ALL" if units is None else units
        if self._journal_on:
            self._journal.append({"type": "position.close_requested", "ts": self._clock(), "account_id": account_id,
                                  "instrument": instrument, "units": units, "reason": reason})
        long_units, short_units = (amount, None) if net > 0 else (None, amount)
        try:
            events = await self.broker.close_position(account_id, instrument, long_units, short_units)
        except BrokerError as exc:
            raise BrokerUnavailableError(f"close failed: {exc}", code="BROKER_UNAVAILABLE") from None
        filled = False
        for ev in events:
            self._on_event(ev)
            if type(ev) is OrderFilled:
                filled = True
            elif type(ev) is OrderRejected or type(ev) is OrderCancelled:
                if not filled:
                    raise BrokerRejectedError(f"broker refused the close: {ev.reason}", code=ev.reason)
        self._perf.ring("close_position").add(perf_counter_ns() - t0)
        return self.position(account_id, instrument)

    def positions(self, account_id: str) -> list[PositionView]:
        a = self._acct_index(account_id)
        out = []
        for i, p in self._ledger.positions(a).items():
            inst = self.instruments.by_index(i)
            out.append(self._position_view(account_id, inst, p))
        return out

    def position(self, account_id: str, instrument: str) -> PositionView:
        a = self._acct_index(account_id)
        inst = self._instrument(instrument)
        return self._position_view(account_id, inst, self._ledger.position(a, inst.index))

    @staticmethod
    def _position_view(account_id, inst, p) -> PositionView:
        return PositionView(account_id, inst.name, p.units, p.average_price or None, p.realized_pl, p.unrealized_pl,
                            p.margin_used, p.position_value, inst.display_precision)

    # ------------------------------------------------------------------ reads

    async def adopt_order(self, record: dict) -> OrderView:
        """Take back an order that was working at the broker before a restart.

        ``record`` is the journal's view of the order (``fastexec.journal``
        ``JournalState`` order dict: order_id, client_order_id, account_id,
        instrument, side, units, order_type, price, ..., status,
        broker_order_id, filled_units, fill_notional). The order keeps its
        engine id, so cancel/modify/get_order and the kill switch work on it
        again. Its state is then checked with the broker by client id; a fill
        or cancel that happened while the engine was down ends the order
        (positions are not touched: they were loaded from the broker at start).
        No order is sent. Only a cancel can be: under an active kill switch
        an adopted working order is cancelled at once (and retried until it
        ends), since nothing may stay working while the switch is on.
        An emulated order is adopted only once it has triggered (its child
        went to the broker under the order's client id, so it is a broker
        order now); one still waiting never reached the broker and is
        re-armed by submitting it again.
        """
        status = record.get("status")
        if status not in ("accepted", "working", "partially_filled", "emulated"):
            raise ValidationError(f"only open orders can be adopted, not {status!r}", code="NOT_ADOPTABLE",
                                  field="status")
        oid = record.get("order_id")
        coid = record.get("client_order_id") or oid
        if type(oid) is not str or not oid or type(coid) is not str:
            raise ValidationError("order_id and client_order_id must be text", code="NOT_ADOPTABLE", field="order_id")
        acct = record.get("account_id")
        if oid in self._orders or self._by_client_id(acct, coid) is not None or self._by_client_id(acct, oid) is not None:
            raise ConflictError(f"order {oid!r} is already known", code="DUPLICATE_ORDER_ID", field="order_id")
        inst = self._instrument(record.get("instrument"))
        a = self._acct_index(record.get("account_id"), for_order=True)
        gtd = record.get("gtd_time_ns")
        spec = OrderSpec(
            account_id=record["account_id"], instrument=inst.name, side=record.get("side"), units=record.get("units"),
            type=record.get("order_type"), price=record.get("price"), stop_price=record.get("stop_price"),
            trailing_distance=record.get("trailing_distance"), time_in_force=record.get("time_in_force"),
            gtd_time=None if gtd is None else _ns_to_dt(gtd),
            stop_loss=_exit_from_record(record.get("stop_loss")), take_profit=_exit_from_record(record.get("take_profit")),
            trailing_stop_distance=record.get("trailing_stop_distance"),
        )
        now = self._clock()
        n = normalize(spec, inst, min(now, gtd - 1) if gtd is not None else now)
        emulation = record.get("emulation") or {}
        if status == "emulated":
            if not n.emulated or emulation.get("triggered"):
                # a triggered one may be at the broker: reconciliation resolves it by client id first
                raise ValidationError("only an emulated order still waiting for its trigger is re-armed",
                                      code="NOT_ADOPTABLE", field="status")
            return self._adopt_waiting(record, oid, coid, a, inst, n, spec.side, emulation, now)
        if n.emulated and not emulation.get("triggered"):
            raise ValidationError("an emulated order that never triggered cannot be at the broker",
                                  code="NOT_ADOPTABLE", field="order_type")
        filled = record.get("filled_units") or 0
        if type(filled) is not int or not 0 <= filled < abs(n.units):
            raise ValidationError(f"filled_units={filled!r} must be below units", code="NOT_ADOPTABLE",
                                  field="filled_units")
        broker_id = record.get("broker_order_id")
        o = self._take_back(record, oid, coid, a, inst, n, spec.side, False, now)
        if n.emulated:
            # triggered before the restart: its child is (or may be) the broker order
            # under this order's client id, watched like any routed order
            o.state = _PENDING_SUBMIT  # as the store has it
            o.trigger_price = emulation.get("trigger_price")
        if broker_id is not None:
            self._bind(o, str(broker_id))
            self._transition(o, E.ACCEPT)
        if filled:
            o.state = self._store.fill_at(o.slot, oid, filled if n.units > 0 else -filled)
            o.fill_units = filled
            o.fill_value = record.get("fill_notional") or 0
        try:
            found = await self.broker.order_by_client_id(o.account_id, coid)
        except BrokerError:
            found = None
            self._unresolved[oid] = asyncio.get_running_loop().time()
        if found is not None:
            if o.broker_order_id is None:
                self._bind(o, found.broker_order_id)
                self._transition(o, E.ACCEPT)
            elif found.broker_order_id != o.broker_order_id:
                self._bind(o, found.broker_order_id)  # replaced while we were down
            if found.state == "FILLED":
                self._filled_as_loaded(o)
                if _IS_TERMINAL[o.state]:
                    self._retire(o)
            elif found.state == "CANCELLED":
                o.reject_reason = "CANCELLED_WHILE_DOWN"
                self._transition(o, E.CANCEL)
        elif broker_id is None and oid not in self._unresolved:
            self._unresolved[oid] = asyncio.get_running_loop().time()
        log.info("adopted order %s (%s)", oid, STATUS[o.state], extra=self._log_extra(o))
        await self._cancel_if_killed(o)
        return self._view(o)

    def _take_back(self, record: dict, oid: str, coid: str, a: int, inst, n: Normalized, side, emulated: bool,
                   now: int) -> _Order:
        """A journaled order back in the engine's tables (the store, ``_orders``,
        the account's client-id index) under its own ids, as it was recorded."""
        k = self._store.add(oid, a, inst.index, n.units, n.price or 0, n.stop_price or 0, emulated)
        o = _new_order(oid, coid, record["account_id"], a, inst, n, side, record.get("request_id"),
                       record.get("created_at") or now)
        o.slot = k
        o.updated_at = record.get("updated_at") or now
        self._orders[oid] = o
        if coid != oid:
            self._by_client[a][coid] = o  # else it is found in _orders (EngineCore._client_order)
        return o

    def _adopt_waiting(self, record: dict, oid: str, coid: str, a: int, inst, n: Normalized, side, emulation: dict,
                       now: int) -> OrderView:
        """An emulated order still waiting for its trigger, back in the book under
        its own id. A trailing stop keeps the best price it had seen (journaled
        as it moved): restarting the trail from the current market would loosen
        the stop, and a market that went through the stop while the engine was
        down would never fire it. Checked against the current price at once."""
        o = self._take_back(record, oid, coid, a, inst, n, side, True, now)
        log.info("re-armed emulated order %s", oid, extra=self._log_extra(o))
        if self._kill.blocking(o.account_id) is not None:
            self._cancel_local(o, "KILL_SWITCH")  # what the activation did to every waiting order
            return self._view(o)
        best = emulation.get("best")
        self._arm(o, now, best if type(best) is int else None)
        return self._view(o)

    async def _cancel_if_killed(self, o: _Order) -> None:
        """An order found working at the broker while a kill switch blocks its
        account (adopted after a restart, or resolved late) is cancelled like
        the activation would have; a cancel that fails is retried."""
        if self._kill.blocking(o.account_id) is None or o.broker_order_id is None:
            return
        if self._state(o) not in (S.SUBMITTED, S.PARTIALLY_FILLED):
            return
        try:
            await self._cancel_at_broker(o)
        except FastexecError:
            return  # retried (_kill_cancel_failed)
        if self._state(o) is S.CANCELLED:
            o.reject_reason = "KILL_SWITCH"

    def get_order(self, order_id: str) -> OrderView:
        return self._view(self._find(order_id))

    def list_orders(self, account_id: Optional[str] = None, status: Optional[str] = None,
                    instrument: Optional[str] = None, limit: int = 100, after: Optional[str] = None) -> list[OrderView]:
        """Orders in creation order, filtered; ``after`` is the last order id of
        the previous page. ``status`` is a status word or "open".

        ``after`` is a position, not a reference: any id of the engine's form
        pages on from where that id stands (engine ids rise with creation:
        the start-time prefix, then a counter), whether or not its order is
        still held. So a walk goes on when the cursor's order is retired (the
        oldest finished orders are, past ``retain_terminal``), and a cursor
        naming another account's order answers exactly as an id never issued
        at that place: ids cannot be probed through it."""
        if account_id is not None:
            self._acct_index(account_id)
        if status is not None and status != "open" and status not in STATUSES:
            raise ValidationError(f"status={status!r} is not one of {sorted(STATUSES | {'open'})}",
                                  code="INVALID_STATUS", field="status")
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise ValidationError("limit must be 1..10000", code="INVALID_LIMIT", field="limit")
        orders = iter(self._orders.values())
        if after is not None:
            if not is_engine_id(after):
                raise ValidationError(f"cursor {after!r} is not a next_cursor (an engine order id)",
                                      code="INVALID_CURSOR", field="after")
            if after in self._orders:  # held: the page starts right after it
                for o in orders:
                    if o.order_id == after:
                        break
            else:  # retired or never issued: after every order created before that id would have been
                key = _id_position(after)
                orders = (o for o in orders if _id_position(o.order_id) > key)
        out = []
        for o in orders:
            if account_id is not None and o.account_id != account_id:
                continue
            if instrument is not None and o.inst.name != instrument:
                continue
            if status is not None:
                word = STATUS[self._state(o)]
                if status == "open":
                    if word not in OPEN_STATUSES:
                        continue
                elif word != status:
                    continue
            out.append(self._view(o))
            if len(out) >= limit:
                break
        return out

    def _working(self, a: int) -> int:
        return self._store.working_count_account(a)

    def account(self, account_id: str) -> AccountView:
        a = self._acct_index(account_id)
        s = self._ledger.account_state(a)
        return AccountView(
            account_id, self._currency[account_id], s.balance, s.nav, s.unrealized_pl, s.realized_pl,
            s.margin_used, s.margin_available, s.open_positions, self._working(a), s.daily_pl,
            self._effective_state(account_id), self._kill.blocking(account_id) is not None,
        )

    def _effective_state(self, account_id: str) -> str:
        return self._risk.state_name(self._accounts[account_id])

    # ------------------------------------------------------------------ risk

    def risk_metrics(self, account_id: str) -> RiskMetrics:
        a = self._acct_index(account_id)
        return self._risk.metrics(account_id, a, self._day_start)

    def risk_limits(self, account_id: str) -> RiskLimitsView:
        a = self._acct_index(account_id)
        return self._risk.limits_view(account_id, a)

    def set_risk_limits(self, account_id: str, **limits) -> RiskLimitsView:
        """Change some of an account's limits (names as in ``RiskLimitsView``);
        all are validated before any is applied."""
        a = self._acct_index(account_id)
        self._risk.set_limits(a, limits)
        view = self._risk.limits_view(account_id, a)
        log.info("risk limits of %s changed: %s", account_id, sorted(limits), extra={"account_id": account_id})
        if self._journal_on:
            self._journal.append({"type": "risk.limits", "ts": self._clock(), "account_id": account_id,
                                  "limits": self._risk.limits_record(a)})
        if self._subs:
            self._emit("risk_limits_changed", account_id, None, None, view)
        return view

    def set_trading_state(self, account_id: str, state: str) -> str:
        """Set ACTIVE or REDUCING (HALTED belongs to the kill switch)."""
        a = self._acct_index(account_id)
        try:
            ts = TradingState(state)
        except ValueError:
            raise ValidationError(f"state={state!r} must be active or reducing", code="INVALID_TRADING_STATE",
                                  field="state") from None
        if ts is TradingState.HALTED:
            raise ValidationError("use activate_kill_switch to halt an account", code="INVALID_TRADING_STATE",
                                  field="state")
        self._risk.set_base_state(a, ts)
        if self._journal_on:
            self._journal.append({"type": "trading_state", "ts": self._clock(), "account_id": account_id,
                                  "state": ts.value})
        name = self._effective_state(account_id)
        if self._subs:
            self._emit("trading_state_changed", account_id, None, None, name)
        return name

    # ------------------------------------------------------------------ kill switch

    async def activate_kill_switch(self, account_id: Optional[str], *, reason: str, actor: str,
                                   flatten: bool = False, activated_at: Optional[int] = None) -> KillSwitchView:
        """Halt one account (or all, with ``account_id`` None): block new orders,
        cancel every working and emulated order, optionally close positions.
        Stays active until ``release_kill_switch``. Pulling an active switch
        again sweeps again (cancels, ``flatten``) but keeps the first
        activation's reason, actor and time. ``activated_at``: the original
        time, when a restart restores the switch from the journal."""
        if account_id is not None:
            self._acct_index(account_id)
        if not isinstance(actor, str) or not actor.strip():
            raise ValidationError("actor is required", code="INVALID_ACTOR", field="actor")
        if not isinstance(reason, str) or len(reason) > 256:
            raise ValidationError("reason must be text of at most 256 characters", code="INVALID_REASON", field="reason")
        if type(flatten) is not bool:
            raise ValidationError("flatten must be a boolean", code="INVALID_FLATTEN", field="flatten")
        now = self._clock()
        accounts = [account_id] if account_id is not None else list(self._account_names)
        ks = self._kill.get(account_id)
        first = ks.activate(reason, actor, now if activated_at is None else activated_at)
        if not first:
            log.warning("kill switch for %s pulled again by %s: %s (active since %s, by %s: %s)",
                        account_id or "all accounts", actor, reason, ks.activated_at, ks.actor, ks.reason,
                        extra={"account_id": account_id, "actor": actor, "reason": reason})
        for acc in accounts:
            self._risk.set_halted(self._accounts[acc], True)
        if self._journal_on and first:
            self._journal.append({"type": "kill_switch", "ts": now, "account_id": account_id, "active": True,
                                  "reason": reason, "actor": actor, "flatten": flatten})
        # First, synchronously: every order the engine holds itself.
        cancelled: list[str] = []
        at_broker: list[_Order] = []
        targets = set(accounts)
        for o in list(self._orders.values()):
            if o.account_id not in targets:
                continue
            st = self._state(o)
            if st in (S.EMULATED, S.TRIGGERED):
                self._cancel_local(o, "KILL_SWITCH")
                cancelled.append(o.order_id)
            elif st in (S.SUBMITTED, S.PARTIALLY_FILLED, S.PENDING_REPLACE):
                at_broker.append(o)
        # Then the broker-held ones (the simulated venue answers without yielding).
        # A cancel that does not get through is reported and retried in the
        # background (``_kill_cancel_failed``) while the switch stays active.
        failed: list[str] = []
        for o in at_broker:
            try:
                await self._cancel_at_broker(o)
            except FastexecError:
                pass
            st = self._state(o)
            if st is S.CANCELLED:
                o.reject_reason = "KILL_SWITCH"
                cancelled.append(o.order_id)
            elif st not in TERMINAL:
                failed.append(o.order_id)
        flattened: list[str] = []
        if flatten:
            for acc in accounts:
                for pos in self.positions(acc):
                    try:
                        await self.close_position(acc, pos.instrument, reason=f"kill switch: {reason}")
                        flattened.append(f"{acc}:{pos.instrument}" if account_id is None else pos.instrument)
                    except FastexecError:
                        continue
        view = ks.view(tuple(cancelled), tuple(flattened), tuple(failed))
        log.warning("kill switch activated for %s by %s: %s (cancelled %d orders, %d cancels failed and are "
                    "being retried, flattened %d positions)",
                    account_id or "all accounts", actor, reason, len(cancelled), len(failed), len(flattened),
                    extra={"account_id": account_id, "actor": actor, "reason": reason})
        if self._subs:
            self._emit("kill_switch_activated", account_id, None, None, view)
        return view

    async def release_kill_switch(self, account_id: Optional[str], *, actor: str) -> KillSwitchView:
        if account_id is not None:
            self._acct_index(account_id)
        if not isinstance(actor, str) or not actor.strip():
            raise ValidationError("actor is required", code="INVALID_ACTOR", field="actor")
        now = self._clock()
        ks = self._kill.get(account_id)
        if not ks.active:
            raise ConflictError(f"kill switch for {account_id or 'all accounts'} is not active",
                                code="KILL_SWITCH_NOT_ACTIVE")
        ks.release(actor, now)
        for acc in ([account_id] if account_id is not None else self._account_names):
            self._risk.set_halted(self._accounts[acc], self._kill.blocking(acc) is not None)
        if self._journal_on:
            self._journal.append({"type": "kill_switch", "ts": now, "account_id": account_id, "active": False,
                                  "reason": ks.reason, "actor": actor, "flatten": False})
        view = ks.view()
        log.warning("kill switch released for %s by %s", account_id or "all accounts", actor,
                    extra={"account_id": account_id, "actor": actor})
        if self._subs:
            self._emit("kill_switch_released", account_id, None, None, view)
        return view

    def kill_switch(self, account_id: Optional[str]) -> KillSwitchView:
        """The switch; ``cancel_failed`` lists the orders of its accounts whose
        cancel has not got through yet and is being retried."""
        if account_id is not None:
            self._acct_index(account_id)
        ks = self._kill.get(account_id)
        retrying = ()
        if ks.active:
            retrying = tuple(oid for oid, t in self._kill_retries.items()
                             if not t.done() and (account_id is None or getattr(self._orders.get(oid), "account_id", None) == account_id))
        return ks.view(cancel_failed=retrying)

    def _kill_cancel_failed(self, o: _Order, why: str) -> None:
        """A cancel of ``o`` did not end it. Under an active kill switch nothing
        may stay working, and a failed cancel changes nothing at the broker, so
        the cancel is tried again in the background (one task per order) until
        the order ends, the switch is released or the engine stops."""
        if self._kill.blocking(o.account_id) is None:
            return
        self._kill_cancel_failures += 1
        log.error("kill switch: cancel of order %s failed (%s); retrying in the background", o.order_id, why,
                  extra=self._log_extra(o))
        task = self._kill_retries.get(o.order_id)
        if task is not None and not task.done():
            return
        task = asyncio.get_running_loop().create_task(self._retry_kill_cancel(o))
        self._kill_retries[o.order_id] = task

    async def _retry_kill_cancel(self, o: _Order) -> None:
        delay = self.kill_retry_base_s
        try:
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.kill_retry_max_s)
                if self._state(o) in TERMINAL:
                    return
                if self._kill.blocking(o.account_id) is None:
                    log.info("kill switch released: cancel of order %s no longer retried", o.order_id,
                             extra=self._log_extra(o))
                    return
                if o.pending_op is not None or (o.broker_order_id is None and self._state(o) is _PENDING_SUBMIT):
                    continue  # another request on it is in flight, or it is still being resolved
                try:
                    await self._cancel_at_broker(o)
                except FastexecError:
                    continue  # logged by _kill_cancel_failed
                st = self._state(o)
                if st in TERMINAL:
                    if st is S.CANCELLED:
                        o.reject_reason = "KILL_SWITCH"
                    log.warning("kill switch: order %s is %s after a retried cancel", o.order_id, STATUS[st],
                                extra=self._log_extra(o))
                    return
        finally:
            if self._kill_retries.get(o.order_id) is asyncio.current_task():
                del self._kill_retries[o.order_id]

    # ------------------------------------------------------------------ events, health, perf

    def subscribe(self, callback: Callable[[EngineEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` on the loop for every EngineEvent; returns
        the function that unsubscribes. Callbacks must not block."""
        if not callable(callback):
            raise ValidationError("callback must be callable", code="INVALID_CALLBACK")
        self._subs.append(callback)

        def unsubscribe() -> None:
            if callback in self._subs:
                self._subs.remove(callback)

        return unsubscribe

    def performance(self) -> dict:
        snap = self._perf.snapshot()
        snap["counters"].update({
            "orders": len(self._orders),
            "core_orders": len(self._store),
            "emulated_waiting": len(self._emu),
            "accounts": len(self._accounts),
        })
        return snap

    def health(self) -> dict:
        # requests answered (``_broker_ok``) and the streams up (``connected``: an
        # outage shows here while no orders flow)
        streams_up = getattr(self.broker, "connected", True) is not False
        broker_ok = self._broker_ok and streams_up
        broker = {"name": getattr(self.broker, "name", "broker"), "ok": broker_ok, "streams_connected": streams_up,
                  "last_error": self._last_broker_error if streams_up else getattr(self.broker, "connection_error", None)}
        stats = getattr(self.broker, "stats", None)
        if isinstance(stats, dict):  # the OANDA adapter's counters (reconnects, lookups, history gaps, ...)
            broker["stats"] = dict(stats)
        retrying = [oid for oid, t in self._kill_retries.items() if not t.done()]
        return {
            "ok": self._started and broker_ok,
            "started": self._started,
            "broker": broker,
            "accounts": len(self._accounts),
            "orders": len(self._orders),
            # orders still working under an active kill switch because their cancel failed (retried)
            "kill_switch": {"cancels_retrying": len(retrying), "retrying_orders": retrying[:20],
                            "cancel_failures": self._kill_cancel_failures},
        }


# ---------------------------------------------------------------------- helpers


def _exit_spec(d) -> Optional[ExitSpec]:
    if d is None:
        return None
    return ExitSpec(price=d.price, distance=d.distance, guaranteed=d.guaranteed)


def _exit_from_record(d) -> Optional[ExitSpec]:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ValidationError("exit records must be objects", code="NOT_ADOPTABLE")
    return ExitSpec(price=d.get("price"), distance=d.get("distance"), guaranteed=bool(d.get("guaranteed")))


def _ns_to_dt(ns: int):
    from .clock import ns_to_datetime

    return ns_to_datetime(ns)


def _exit_record(d) -> Optional[dict]:
    if d is None:
        return None
    return {"price": d.price, "distance": d.distance, "guaranteed": d.guaranteed}
