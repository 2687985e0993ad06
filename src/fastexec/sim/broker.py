"""The in-process face of the simulated venue: the engine's default broker.

``SimulatedBroker`` implements ``fastexec.brokers.base.Broker`` directly on
the venue model — no HTTP, no JSON — so running fastexec without an OANDA
account costs one Python call per order. It reports what happened with the
same typed events the OANDA adapter emits, carrying the venue's transaction
ids, so the engine's dedupe and gap recovery work the same on both.

Events a request produces are returned by that request; events that happen
later (pending orders triggered by a tick, exits, expiries, price ticks) go to
the handler. Prices move from an optional background task stepping the
venue's random walk, or synchronously with ``venue.set_price``.
"""
from __future__ import annotations

import asyncio
from typing import Optional, Sequence, Union

from fastexec.brokers.base import (
    AccountSnapshot,
    Broker,
    BrokerError,
    BrokerEvent,
    BrokerOrder,
    BrokerPosition,
    EventHandler,
    ExitDetails,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderRequest,
    PriceTick,
)

from .fixed import round_half_even_int
from .reasons import REJECT_MESSAGES
from .venue import DEPENDENT_TYPES, HAVE_KERNEL, Account, OnFill, Order, Result, Txn, Venue

_ENTRY_REASONS = ("CLIENT_ORDER", "REPLACEMENT")

if HAVE_KERNEL:
    from ._fill import _bind_broker
    from ._fill import market_fill_events as _market_fill_events
    from ._fill import submit_now as _submit_now
else:  # pragma: no cover - only without the compiled kernel
    def _market_fill_events(acct, lo, hi):
        return None

    def _submit_now(broker, request):
        return None


def events_of(venue: Venue, acct: Account, lo: int, hi: int) -> list:
    """Broker events of transactions ``lo + 1 .. hi`` (ids): a plain market
    fill straight from the order, anything else through ``events_from_txns``."""
    evs = _market_fill_events(acct, lo, hi)
    if evs is None:
        evs = events_from_txns(venue, acct, acct.txns[lo:hi])
    return evs


if HAVE_KERNEL:
    _bind_broker(events_of)


def _on_fill(d: Optional[ExitDetails]) -> Optional[OnFill]:
    if d is None:
        return None
    return OnFill(price=d.price, distance=d.distance, tif=d.time_in_force.value, gtd_ns=d.gtd_time_ns,
                  guaranteed=True if d.guaranteed else None)


def events_from_txns(venue: Venue, acct: Account, txns: Sequence[Txn]) -> list:
    """Map venue transactions to broker events, in transaction order.

    An order's create transaction becomes ``OrderAccepted`` only when the
    order is still working after its batch (a market order that filled at
    once is reported by its fill alone); a replacement becomes one
    ``OrderReplaced`` (its ``CLIENT_REQUEST_REPLACED`` cancel is implied).
    Broker-side orders (on-fill exits, trade/position closes) produce fills
    and cancels with ``client_id`` None.
    """
    done = set()
    for t in txns:
        if t.type == "ORDER_FILL":
            done.add((t.batch, t.p.order.id))
        elif t.type == "ORDER_CANCEL":
            done.add((t.batch, t.p[0].id))
    out: list = []
    aid = acct.id
    for t in txns:
        typ = t.type
        p = t.p
        if typ == "ORDER_FILL":
            o = p.order
            closed = tuple(str(e[0]) for e in (p.closed or ()))
            if p.reduced is not None:
                closed += (str(p.reduced[0]),)
            client = o.client_id if o.reason in _ENTRY_REASONS and o.type not in DEPENDENT_TYPES else None
            out.append(OrderFilled(aid, client, str(o.id), t.id, o.inst.name, p.units, p.price, p.reason, t.time,
                                   pl=p.pl, account_balance=p.balance,
                                   trade_opened_id=str(p.opened[0]) if p.opened else None, trades_closed=closed))
        elif typ == "ORDER_CANCEL":
            o, reason = p
            if reason == "CLIENT_REQUEST_REPLACED":
                continue
            out.append(OrderCancelled(aid, o.client_id, str(o.id), t.id, reason, t.time,
                                      replaced_by_order_id=str(o.replaced_by_id) if o.replaced_by_id else None))
        elif typ.endswith("_REJECT"):
            echo, reason = p
            ce = echo.get("clientExtensions") if isinstance(echo, dict) else None
            cid = ce.get("id") if isinstance(ce, dict) else None
            out.append(OrderRejected(aid, cid, t.id, reason, REJECT_MESSAGES.get(reason, reason), t.time))
        elif typ.endswith("_ORDER") and isinstance(p, Order):
            o = p
            if o.type in DEPENDENT_TYPES or o.reason not in _ENTRY_REASONS:
                continue
            if o.reason == "REPLACEMENT" and o.replaces_id is not None:
                old = acct.orders.get(o.replaces_id)
                out.append(OrderReplaced(aid, o.client_id if o.client_id else (old.client_id if old else None),
                                         str(o.replaces_id), str(o.id), t.id, t.time))
            elif (t.batch, o.id) not in done:
                out.append(OrderAccepted(aid, o.client_id, str(o.id), t.id, t.time))
    return out


class SimulatedBroker(Broker):
    """``Broker`` over an in-process ``Venue`` (the embedded default)."""

    name = "sim"

    def __init__(self, venue: Optional[Venue] = None, *, tick_interval: Optional[float] = None):
        self.venue = venue if venue is not None else Venue()
        self.tick_interval = tick_interval
        self._handler: Optional[EventHandler] = None
        self._subscribed: set = set()
        self._in_request = 0
        self._ticker: Optional[asyncio.Task] = None
        self._started = False
        # the one bound method registered as the venue's listener: the kernel
        # skips it in this broker's own requests (it would return at once)
        self._txn_listener = self._on_txns

    # ------------------------------------------------------------------ lifecycle

    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.venue.on_transactions(self._txn_listener)
        self.venue.on_price(self._on_price)
        if self.tick_interval:
            self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        if self._started:
            self.venue.remove_transactions_listener(self._txn_listener)
            self.venue.remove_price_listener(self._on_price)
            self._started = False

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.venue.tick()

    def _on_txns(self, acct: Account, txns: list) -> None:
        if self._in_request or self._handler is None:
            return  # the request returns its own events
        for ev in events_from_txns(self.venue, acct, txns):
            self._handler(ev)

    def _on_price(self, inst, bid: int, ask: int, t: int) -> None:
        if self._handler is not None and inst.name in self._subscribed:
            self._handler(PriceTick(inst.name, bid, ask, t))

    def account_ids(self) -> Sequence[str]:
        return list(self.venue.accounts)

    # ------------------------------------------------------------------ requests

    def _run(self, account_id: str, fn) -> list:
        acct = self.venue.accounts.get(account_id)
        if acct is None:
            raise BrokerError(f"unknown account {account_id}", status=404)
        self._in_request += 1
        try:
            res: Result = fn()
        finally:
            self._in_request -= 1
        return events_of(self.venue, acct, res.start, res.last_id)

    def _order(self, account_id: str, r: OrderRequest) -> Union[Order, Result]:
        v = self.venue
        inst = v.by_name.get(r.instrument)
        ce = {"id": r.client_id}
        if r.tag is not None:
            ce["tag"] = r.tag
        if r.comment is not None:
            ce["comment"] = r.comment
        typ = r.type._value_  # the enum's plain str without the Enum.value descriptor call

        def reject(reason):
            echo = {"instrument": r.instrument, "units": str(r.units), "clientExtensions": ce, "reason": "CLIENT_ORDER"}
            return v.reject(account_id, typ + "_ORDER_REJECT", echo, reason)

        if inst is None:
            return reject("INSTRUMENT_UNKNOWN")
        unit = inst.unit
        price, bound = r.price, r.price_bound
        if price is not None and price % unit:
            return reject("PRICE_PRECISION_EXCEEDED")
        if bound is not None and bound % unit:
            return reject("PRICE_BOUND_PRECISION_EXCEEDED")
        tp, sl, tsl = r.take_profit, r.stop_loss, r.trailing_stop
        if tp is not None or sl is not None or tsl is not None:
            for d, prefix in ((tp, "TAKE_PROFIT_ON_FILL_PRICE"), (sl, "STOP_LOSS_ON_FILL_PRICE"),
                              (tsl, "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE")):
                if d is not None and ((d.price is not None and d.price % unit) or
                                      (d.distance is not None and d.distance % unit)):
                    return reject(prefix + "_PRECISION_EXCEEDED")
            tp, sl, tsl = _on_fill(tp), _on_fill(sl), _on_fill(tsl)
        tif = r.time_in_force
        return Order(typ, inst, r.units, price=price, price_bound=bound,
                     tif=tif._value_ if tif is not None else None, gtd_ns=r.gtd_time_ns,
                     position_fill=r.position_fill._value_, trigger=r.trigger_condition._value_, client_ext=ce,
                     tp=tp, sl=sl, tsl=tsl)

    # A plain market order, compiled from request to OrderFilled (``_fill.submit_now``): its
    # events, or None with nothing done. The engine calls it before awaiting ``submit`` (no
    # coroutine when it answers); ``submit`` starts with it.
    submit_now = _submit_now

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "submit" in cls.__dict__ and "submit_now" not in cls.__dict__:
            cls.submit_now = None  # an overridden submit sees every order

    async def submit(self, request: OrderRequest) -> list[BrokerEvent]:
        v = self.venue
        evs = _submit_now(self, request)
        if evs is not None:  # booked (never place it again)
            return evs
        aid = request.account_id
        acct = v.accounts.get(aid)
        if acct is None:
            raise BrokerError(f"unknown account {aid}", status=404)
        self._in_request += 1
        try:
            o = self._order(aid, request)
            res = o if type(o) is Result else v.place_order(aid, o)
        finally:
            self._in_request -= 1
        return events_of(v, acct, res.start, res.last_id)

    async def replace(self, account_id: str, broker_order_id: str, request: OrderRequest) -> list[BrokerEvent]:
        def go():
            o = self._order(account_id, request)
            if isinstance(o, Result):
                return o
            return self.venue.replace_order(account_id, broker_order_id, o)

        return self._run(account_id, go)

    async def cancel(self, account_id: str, broker_order_id: str) -> list[BrokerEvent]:
        return self._run(account_id, lambda: self.venue.cancel_order(account_id, broker_order_id))

    async def close_position(self, account_id: str, instrument: str, long_units: Union[int, str, None],
                             short_units: Union[int, str, None]) -> list[BrokerEvent]:
        return self._run(account_id, lambda: self.venue.close_position(account_id, instrument, long_units, short_units))

    async def close_trade(self, account_id: str, trade_id: str, units: Union[int, str] = "ALL") -> list[BrokerEvent]:
        return self._run(account_id, lambda: self.venue.close_trade(account_id, trade_id, units))

    # ------------------------------------------------------------------ reads

    def _acct(self, account_id: str) -> Account:
        acct = self.venue.accounts.get(account_id)
        if acct is None:
            raise BrokerError(f"unknown account {account_id}", status=404)
        return acct

    async def account_summary(self, account_id: str) -> AccountSnapshot:
        acct = self._acct(account_id)
        n = self.venue.account_numbers(acct)
        return AccountSnapshot(acct.id, acct.currency, acct.balance, n["unrealizedPL"], n["NAV"], n["marginUsed"],
                               n["marginAvailable"], len(acct.open_trades),
                               sum(1 for p in acct.positions.values() if p.units), len(acct.pending), acct.last_id)

    async def open_positions(self, account_id: str) -> list[BrokerPosition]:
        acct = self._acct(account_id)
        out = []
        for pos in acct.positions.values():
            if not pos.units:
                continue
            upl = self.venue.position_numbers(acct, pos)[0]
            avg = round_half_even_int(abs(pos.cost), abs(pos.units))  # den > 0: shorts have negative cost and units
            long_ = pos.units > 0
            out.append(BrokerPosition(acct.id, pos.inst.name, pos.units if long_ else 0, avg if long_ else None,
                                      pos.units if not long_ else 0, avg if not long_ else None, upl, pos.pl))
        return out

    @staticmethod
    def _broker_order(acct: Account, o: Order) -> BrokerOrder:
        return BrokerOrder(acct.id, str(o.id), o.client_id, o.inst.name if o.inst else None, o.units, o.type, o.state,
                           o.price, o.fill_txn, o.cancel_txn)

    async def pending_orders(self, account_id: str) -> list[BrokerOrder]:
        acct = self._acct(account_id)
        return [self._broker_order(acct, o) for o in acct.pending.values()]

    async def order_by_client_id(self, account_id: str, client_id: str) -> Optional[BrokerOrder]:
        acct = self._acct(account_id)
        o = acct.by_client.get(client_id)
        return self._broker_order(acct, o) if o is not None else None

    async def transactions_since(self, account_id: str, txn_id: int) -> list[BrokerEvent]:
        acct = self._acct(account_id)
        if txn_id < acct.txns.base:  # older than the history the venue keeps: v20's sinceid answers 416
            raise BrokerError(f"transactions after {txn_id} are no longer kept (oldest kept: {acct.txns.base + 1})",
                              status=416)
        return events_from_txns(self.venue, acct, acct.txns[max(0, txn_id):])

    async def subscribe_prices(self, instruments: Sequence[str]) -> None:
        for name in instruments:
            if name not in self.venue.by_name:
                raise BrokerError(f"unknown instrument {name}", status=400)
            self._subscribed.add(name)

    async def latest_prices(self, instruments: Sequence[str]) -> list[PriceTick]:
        out = []
        for name in instruments:
            if name not in self.venue.by_name:
                raise BrokerError(f"unknown instrument {name}", status=400)
            b, a, t = self.venue.price(name)
            out.append(PriceTick(name, b, a, t))
        return out
