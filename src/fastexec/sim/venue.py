"""The simulated venue: one model of an OANDA v20 broker, used in-process by
the engine and behind the v20 HTTP face by the simulator server.

Everything is integers at the contract scales (prices at 10**9, whole units,
money at 10**6). The venue never formats JSON: transactions are stored as
small slotted objects pointing at the orders/trades they concern and are
rendered to v20 bodies lazily (``fastexec.sim.render``) only when the HTTP
face or a test asks, which keeps the fill path lean.

Account maths (REFERENCE.md §9) and its rounding, each result rounded
half-even exactly once from the exact rational value:

* money amounts the venue books (realized P/L, half-spread cost, initial
  margin) and money it reports (unrealized P/L, position value, margin used)
  are rounded to the account currency's 4 decimals, OANDA's ``AccountUnits``
  precision, so the balance moves by exactly the ``pl`` each fill reports;
* ``pl = units_closed × (close − open) × quote→home factor`` where the factor
  is the gain factor for a profit and the loss factor for a loss; the factor
  itself is a rate (12 decimals, rounded half-even, like OANDA's published
  ``…QuoteHomeConversionFactor``), exactly 1 when the quote currency is the
  home currency;
* margin uses mid prices and the mid conversion factor (§9.1):
  ``positionValue = |net units| × mid × factor``, ``marginUsed = marginRate ×
  positionValue`` per position; unrealized P/L uses the closing side (bid for
  long, ask for short); ``marginCloseout*`` use mid (§9.2);
* ``NAV = balance + unrealizedPL``, ``marginAvailable = NAV − marginUsed``,
  ``marginCloseoutPercent = 0.5 × marginCloseoutMarginUsed / marginCloseoutNAV``,
  ``marginCallPercent = marginCallMarginUsed / marginCloseoutNAV`` (rates).

Speed and the garbage collector. A plain market order (the engine's common
case) runs in the compiled kernel ``fastexec.sim._fill``; everything else runs
the Python code below, which is the reference the kernel is tested against.
Orders, trades and positions are collector-free extension types, so the
history the venue keeps costs the cyclic collector nothing and CPython's
default thresholds are fine. A process that builds a lot of other long-lived
state at start-up (instrument tables, journals replayed into memory) can
still call ``gc.freeze()`` once after start-up so later full collections
skip it; nothing in the venue needs it.
"""
from __future__ import annotations

import os
import random
import sys
import time as _time
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional, Sequence, Union

from .fixed import PRICE_SCALE, RATE_SCALE, parse_money, round_half_even_int
from .instruments import SimInstrument, load_sim_instruments
from .reasons import REJECT_MESSAGES

# Order types (v20 spellings, used as plain str constants on the hot path)
MARKET = "MARKET"
LIMIT = "LIMIT"
STOP = "STOP"
MARKET_IF_TOUCHED = "MARKET_IF_TOUCHED"
TAKE_PROFIT = "TAKE_PROFIT"
STOP_LOSS = "STOP_LOSS"
TRAILING_STOP_LOSS = "TRAILING_STOP_LOSS"
ENTRY_TYPES = (MARKET, LIMIT, STOP, MARKET_IF_TOUCHED)
DEPENDENT_TYPES = (TAKE_PROFIT, STOP_LOSS, TRAILING_STOP_LOSS)
ORDER_TYPES = ENTRY_TYPES + DEPENDENT_TYPES

TIF_ALLOWED = {
    MARKET: ("FOK", "IOC"),
    LIMIT: ("GTC", "GTD", "GFD", "FOK", "IOC"),
    STOP: ("GTC", "GTD", "GFD", "FOK", "IOC"),
    MARKET_IF_TOUCHED: ("GTC", "GTD", "GFD"),
    TAKE_PROFIT: ("GTC", "GTD", "GFD"),
    STOP_LOSS: ("GTC", "GTD", "GFD"),
    TRAILING_STOP_LOSS: ("GTC", "GTD", "GFD"),
}
TIF_DEFAULT = {MARKET: "FOK"}  # every other type defaults to GTC
ON_FILL_TIF = ("GTC", "GTD", "GFD")
POSITION_FILLS = ("DEFAULT", "REDUCE_FIRST", "REDUCE_ONLY", "OPEN_ONLY")
TRIGGER_CONDITIONS = ("DEFAULT", "INVERSE", "BID", "ASK", "MID")
FILL_REASON = {
    MARKET: "MARKET_ORDER",
    LIMIT: "LIMIT_ORDER",
    STOP: "STOP_ORDER",
    MARKET_IF_TOUCHED: "MARKET_IF_TOUCHED_ORDER",
    TAKE_PROFIT: "TAKE_PROFIT_ORDER",
    STOP_LOSS: "STOP_LOSS_ORDER",
    TRAILING_STOP_LOSS: "TRAILING_STOP_LOSS_ORDER",
}
MARKET_FILL_REASON = {
    "CLIENT_ORDER": "MARKET_ORDER",
    "TRADE_CLOSE": "MARKET_ORDER_TRADE_CLOSE",
    "POSITION_CLOSEOUT": "MARKET_ORDER_POSITION_CLOSEOUT",
    "MARGIN_CLOSEOUT": "MARKET_ORDER_MARGIN_CLOSEOUT",
    "DELAYED_TRADE_CLOSE": "MARKET_ORDER_DELAYED_TRADE_CLOSE",
}

# money is reported and booked at the account currency's 4 decimals:
# 10**-4 in money units of 10**-6
_MONEY_STEP = 100
# price(1e9) * rate(1e12) -> money(1e6) at 4 decimals
_PL_DEN = PRICE_SCALE * RATE_SCALE // 10**6 * _MONEY_STEP
# rate(1e12) * price(1e9) * rate(1e12) -> money(1e6) at 4 decimals
_MARGIN_DEN = RATE_SCALE * PRICE_SCALE * RATE_SCALE // 10**6 * _MONEY_STEP

_UNIT_FACTORS = (RATE_SCALE, RATE_SCALE, RATE_SCALE)
_NY = None


def _new_york():
    global _NY
    if _NY is None:
        from zoneinfo import ZoneInfo

        _NY = ZoneInfo("America/New_York")
    return _NY


def gfd_expiry_ns(now_ns: int) -> int:
    """End of the trading day for a GFD order: the next 17:00 New York time."""
    ny = _new_york()
    t = datetime.fromtimestamp(now_ns / 1e9, tz=timezone.utc).astimezone(ny)  # time only, no money
    cut = t.replace(hour=17, minute=0, second=0, microsecond=0)
    if cut <= t:
        cut = (cut + timedelta(days=1)).replace(hour=17)
    cut = cut.astimezone(ny)  # DST-safe re-normalisation
    return int(cut.timestamp()) * 1_000_000_000


class SimReject(Exception):
    """A request the venue refuses; carries v20's reject reason."""

    def __init__(self, reason: str, status: int = 400, message: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message or REJECT_MESSAGES.get(reason, reason)


# --------------------------------------------------------------------------- model objects


class OnFill:
    """A dependent-order spec attached to an entry order (TP/SL/TSL on fill)."""

    __slots__ = ("price", "distance", "tif", "gtd_ns", "client_ext", "guaranteed")

    def __init__(self, price=None, distance=None, tif="GTC", gtd_ns=None, client_ext=None, guaranteed=None):
        self.price = price
        self.distance = distance
        self.tif = tif
        self.gtd_ns = gtd_ns
        self.client_ext = client_ext
        self.guaranteed = guaranteed


class Order:
    """An order as requested and as it lives at the venue.

    The request fields never change after creation (a replace makes a new
    order), so the order object doubles as the payload of its create
    transaction.
    """

    __slots__ = (
        "id", "type", "inst", "units", "price", "price_bound", "tif", "gtd_ns", "position_fill", "trigger",
        "client_ext", "trade_client_ext", "tp", "sl", "tsl", "trade_id", "client_trade_id", "distance",
        "guaranteed", "state", "reason", "create_ns", "fill_txn", "filled_ns", "trade_opened_id",
        "trade_reduced_id", "cancel_txn", "cancelled_ns", "replaces_id", "replaced_by_id",
        "on_fill_txn", "initial_market_price", "trailing_value", "expire_ns", "closeout", "trade_close_units",
        "cancelling_txn_for_replace",
        # set by the fill (an order fills at most once), read only after it:
        "fill_units", "fill_price", "fill_reason", "fill_pl", "fill_balance", "fill_trade", "fill_closed",
        "fill_reduced", "fill_hs", "fill_bid", "fill_ask", "fill_ptime", "fill_gain", "fill_loss",
    )

    def __init__(self, type_: str, inst: Optional[SimInstrument] = None, units: int = 0, *, price=None,
                 price_bound=None, tif=None, gtd_ns=None, position_fill="DEFAULT", trigger="DEFAULT",
                 client_ext=None, trade_client_ext=None, tp=None, sl=None, tsl=None, trade_id=None,
                 client_trade_id=None, distance=None, guaranteed=None):
        self.id = 0
        self.type = type_
        self.inst = inst
        self.units = units
        self.price = price
        self.price_bound = price_bound
        self.tif = tif if tif is not None else TIF_DEFAULT.get(type_, "GTC")
        self.gtd_ns = gtd_ns
        self.position_fill = position_fill
        self.trigger = trigger
        self.client_ext = client_ext
        self.trade_client_ext = trade_client_ext
        self.tp = tp
        self.sl = sl
        self.tsl = tsl
        self.trade_id = trade_id
        self.client_trade_id = client_trade_id
        self.distance = distance
        self.guaranteed = guaranteed
        self.state = "PENDING"
        self.reason = "CLIENT_ORDER"
        self.create_ns = 0
        self.fill_txn = None
        self.filled_ns = None
        self.trade_opened_id = None
        self.trade_reduced_id = None
        self.cancel_txn = None
        self.cancelled_ns = None
        self.replaces_id = None
        self.replaced_by_id = None
        self.on_fill_txn = None
        self.initial_market_price = None
        self.trailing_value = None
        self.expire_ns = None
        self.closeout = None  # ("long"|"short", "ALL"|units) for position closeouts
        self.trade_close_units = None  # "ALL" or units for trade closes
        self.cancelling_txn_for_replace = None

    @property
    def client_id(self) -> Optional[str]:
        ce = self.client_ext
        return ce.get("id") if ce else None


class Trade:
    __slots__ = (
        "id", "inst", "price", "open_ns", "state", "initial_units", "initial_margin", "units", "realized_pl",
        "closing_txn_ids", "close_ns", "client_ext", "tp", "sl", "tsl", "closed_units", "closed_value",
        "half_spread",
    )

    def __init__(self, id_, inst, price, open_ns, units, initial_margin, client_ext):
        self.id = id_
        self.inst = inst
        self.price = price
        self.open_ns = open_ns
        self.state = "OPEN"
        self.initial_units = units
        self.initial_margin = initial_margin
        self.units = units
        self.realized_pl = 0
        self.closing_txn_ids = None  # tuple of fill ids once reduced or closed
        self.close_ns = None
        self.client_ext = client_ext
        self.tp = None
        self.sl = None
        self.tsl = None
        self.closed_units = 0  # sum of |units| closed, for averageClosePrice
        self.closed_value = 0  # sum of |units| * close price

    @property
    def client_id(self) -> Optional[str]:
        ce = self.client_ext
        return ce.get("id") if ce else None


class Position:
    """Net position of one instrument (non-hedging: all open trades one way).

    ``cost`` is Σ units × price over open trades, exact, so unrealized P/L
    of the whole position is one product no matter how many trades it holds.
    """

    __slots__ = ("inst", "trades", "units", "cost", "pl", "long_pl", "short_pl", "resettable_pl")

    def __init__(self, inst):
        self.inst = inst
        self.trades: list[Trade] = []
        self.units = 0
        self.cost = 0
        self.pl = 0
        self.long_pl = 0
        self.short_pl = 0
        self.resettable_pl = 0


class Fill:
    """Payload view of an ORDER_FILL transaction.

    The fill's numbers live on the order itself (an order fills at most
    once), so booking a fill allocates no extra long-lived object; this view
    is made only when a transaction is read.
    """

    __slots__ = ("order",)

    def __init__(self, order):
        self.order = order

    units = property(lambda s: s.order.fill_units)
    price = property(lambda s: s.order.fill_price)
    reason = property(lambda s: s.order.fill_reason)
    pl = property(lambda s: s.order.fill_pl)
    balance = property(lambda s: s.order.fill_balance)
    closed = property(lambda s: s.order.fill_closed)  # list of (trade_id, units, price, realized_pl, half_spread)
    reduced = property(lambda s: s.order.fill_reduced)
    half_spread = property(lambda s: s.order.fill_hs)
    bid = property(lambda s: s.order.fill_bid)
    ask = property(lambda s: s.order.fill_ask)
    ptime = property(lambda s: s.order.fill_ptime)
    gain = property(lambda s: s.order.fill_gain)
    loss = property(lambda s: s.order.fill_loss)

    @property
    def opened(self):
        """(trade_id, units, price, half_spread, initial_margin, client_ext) or None."""
        tr = self.order.fill_trade
        if tr is None:
            return None
        return tr.id, tr.initial_units, tr.price, tr.half_spread, tr.initial_margin, tr.client_ext


class Txn:
    """One transaction. ``p`` is the type-specific payload:

    order-create types -> Order; ORDER_FILL -> Fill; ORDER_CANCEL ->
    (Order, reason); ``*_REJECT`` -> (echo dict, reject reason); others -> dict.
    """

    __slots__ = ("id", "type", "time", "batch", "req", "p")

    def __init__(self, id_, type_, time_, batch, req, p):
        self.id = id_
        self.type = type_
        self.time = time_
        self.batch = batch
        self.req = req
        self.p = p

    def __repr__(self) -> str:
        return f"Txn({self.id}, {self.type})"


class TxnLog:
    """An account's transactions as parallel lists.

    Storing five plain lists instead of one object per transaction keeps the
    fill path from creating garbage-collector-tracked objects that live for
    ever; ``Txn`` views are made when someone reads the log.

    Indexing is by absolute position (transaction id - 1) and ``len()`` is the
    last id, whatever has been forgotten: the lists hold ids ``base + 1`` ..
    ``base + len(types)`` (see ``Account.history``); a forgotten position
    raises IndexError and slices skip it.
    """

    __slots__ = ("types", "times", "batches", "reqs", "ps", "base")

    def __init__(self):
        self.types: list = []
        self.times: list = []
        self.batches: list = []
        self.reqs: list = []
        self.ps: list = []
        self.base = 0  # transactions forgotten: ids 1 .. base

    def __len__(self) -> int:
        return self.base + len(self.types)

    def _view(self, i: int) -> Txn:
        k = i - self.base
        typ = self.types[k]
        p = self.ps[k]
        if typ == "ORDER_FILL":
            p = Fill(p)
        return Txn(i + 1, typ, self.times[k], self.batches[k], self.reqs[k], p)

    def __getitem__(self, k):
        n = self.base + len(self.types)
        if isinstance(k, slice):
            return [self._view(i) for i in range(*k.indices(n)) if i >= self.base]
        if k < 0:
            k += n
        if not self.base <= k < n:
            raise IndexError(k)
        return self._view(k)

    def __iter__(self):
        b = self.base
        return (self._view(b + i) for i in range(len(self.types)))


class TxnBatch:
    """The transactions of one batch as handed to listeners: a read-only
    sequence whose ``Txn`` views are made only if a listener reads it (the
    in-process broker ignores batches of its own requests, so a market order
    makes no views at all)."""

    __slots__ = ("log", "lo", "hi", "_views")

    def __init__(self, log: TxnLog, lo: int, hi: int):
        self.log = log
        self.lo = lo
        self.hi = hi
        self._views = None

    def _list(self) -> list:
        v = self._views
        if v is None:
            v = self._views = self.log[self.lo:self.hi]
        return v

    def __len__(self) -> int:
        return self.hi - self.lo

    def __iter__(self):
        return iter(self._list())

    def __getitem__(self, k):
        return self._list()[k]

    def __repr__(self) -> str:
        return f"TxnBatch({self.lo + 1}..{self.hi})"


class Result:
    """What one request did: HTTP-ish status and its transactions.

    ``keys`` maps v20 response keys (``orderCreateTransaction``…) to the
    transactions; both it and ``txns`` are built on access from the ids.
    """

    __slots__ = ("status", "acct", "key_ids", "start", "last_id", "error_code", "error_message", "order")

    def __init__(self, status, acct, key_ids, start, error_code=None, error_message=None, order=None):
        self.status = status
        self.acct = acct
        self.key_ids = key_ids
        self.start = start
        self.last_id = acct.last_id
        self.error_code = error_code
        self.error_message = error_message
        self.order = order

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def keys(self) -> dict:
        log = self.acct.txns
        return {k: log[v - 1] for k, v in self.key_ids.items()}

    @property
    def txns(self) -> list:
        return self.acct.txns[self.start:self.last_id]


class Account:
    __slots__ = (
        "id", "user_id", "currency", "alias", "created_ns", "balance", "pl", "resettable_pl", "financing",
        "commission", "last_id", "txns", "orders", "pending", "by_client", "trades", "open_trades",
        "trades_by_client", "positions", "last_fill_ns", "batch", "batch_start", "req", "hedging", "gslo_mode",
        "margin_call_enter_ns", "routes", "history", "trim_at",
    )

    def __init__(self, id_, user_id, currency, created_ns):
        self.id = id_
        self.user_id = user_id
        self.currency = currency
        self.alias = "Primary"
        self.created_ns = created_ns
        self.balance = 0
        self.pl = 0
        self.resettable_pl = 0
        self.financing = 0
        self.commission = 0
        self.last_id = 0
        self.txns = TxnLog()
        self.orders: dict[int, Order] = {}
        self.pending: dict[int, Order] = {}
        self.by_client: dict[str, Order] = {}
        self.trades: dict[int, Trade] = {}
        self.open_trades: dict[int, Trade] = {}
        self.trades_by_client: dict[str, Trade] = {}
        self.positions: dict[int, Position] = {}
        self.last_fill_ns = None
        self.batch = 0
        self.batch_start = 0
        self.req = None
        self.hedging = False
        self.gslo_mode = "ALLOWED"
        self.margin_call_enter_ns = None
        self.routes: list = []  # per instrument index: conversion route to this account's currency
        self.history = None  # transactions retained (None: all); set by the venue (Venue(history=...))
        self.trim_at = sys.maxsize  # log length at which the oldest are forgotten (history + TRIM_BATCH)

    def txn(self, txn_id: int) -> Optional[Txn]:
        if self.txns.base < txn_id <= self.last_id:
            return self.txns[txn_id - 1]
        return None

    def since(self, txn_id: int) -> list:
        return self.txns[max(0, txn_id):self.last_id]


# Bounded history (see ``Venue``): how many transactions past ``history`` are
# forgotten at once. The kernel's ``_fill.TRIM_BATCH`` is the same number.
TRIM_BATCH = 512
DEFAULT_HISTORY = 20_000


def _trim(acct: Account) -> None:
    """Forget ``acct``'s oldest transactions down to its last ``history``, and
    with them every finished order and closed trade they were the last word
    on. The reference of the kernel's ``_fill.trim`` (same result)."""
    log = acct.txns
    h = acct.history
    if h is None:
        return
    k = len(log.types) - h
    if k <= 0:
        return
    cutoff = log.base + k  # ids <= cutoff are forgotten
    orders, by_client, trades = acct.orders, acct.by_client, acct.trades
    for p in log.ps[:k]:
        if isinstance(p, Order):  # an order's create or its fill
            _forget_order(p, cutoff, orders, by_client, trades)
        elif type(p) is tuple and len(p) == 2 and isinstance(p[0], Order):  # a cancel
            _forget_order(p[0], cutoff, orders, by_client, trades)
    for lst in (log.types, log.times, log.batches, log.reqs, log.ps):
        del lst[:k]
    log.base = cutoff


def _forget_order(o: Order, cutoff: int, orders: dict, by_client: dict, trades: dict) -> None:
    """Forget ``o`` if it is finished and no transaction after ``cutoff``
    concerns it; with it the trades its fill closed, when that fill was the
    last of their closing transactions. Pending orders and open trades stay."""
    if o.state != "FILLED" and o.state != "CANCELLED":
        return
    oid = o.id
    if orders.get(oid) is not o:
        return  # forgotten already (its other transaction came first)
    if oid > cutoff or (o.fill_txn is not None and o.fill_txn > cutoff) or \
            (o.cancel_txn is not None and o.cancel_txn > cutoff):
        return
    del orders[oid]
    cid = o.client_ext.get("id") if o.client_ext else None
    if cid is not None and by_client.get(cid) is o:
        del by_client[cid]
    for e in (o.fill_closed if o.fill_txn is not None else None) or ():  # unset on a never-filled Order
        tr = trades.get(e[0])
        if tr is not None and tr.state == "CLOSED" and tr.closing_txn_ids[-1] <= cutoff:
            del trades[e[0]]


# The compiled kernel (``_fill.pyx``) replaces the model classes above with
# extension types of the same shape (collector-free for the per-order ones;
# Account and TxnLog typed so the kernel reaches their fields directly) and
# adds the market-order fast path. The pure-Python definitions stay as the fallback for a checkout
# whose extensions are not built (or FASTEXEC_SIM_PURE=1, which the tests use
# to run the reference path).
_place_market = None
_VenueBase = object
if not os.environ.get("FASTEXEC_SIM_PURE"):
    try:
        from ._fill import Account, OnFill, Order, Position, Trade, TxnLog  # type: ignore[no-redef]  # noqa: F811
        from ._fill import VenueCore as _VenueBase  # type: ignore[no-redef]  # noqa: F811
        from ._fill import place_market as _place_market
        from ._fill import trim as _trim  # noqa: F811
    except ImportError:  # pragma: no cover - only before the extensions are built
        _place_market = None
        _VenueBase = object
HAVE_KERNEL = _place_market is not None


# --------------------------------------------------------------------------- venue

TxnListener = Callable[[Account, Sequence], None]  # a TxnBatch: views made on first read
PriceListener = Callable[[SimInstrument, int, int, int], None]


class Venue(_VenueBase):  # _fill.VenueCore with the kernel: the fields its fast path reads, as C fields
    """Accounts, orders, trades and positions with OANDA v20 semantics.

    ``set_price`` is the only way prices move; it triggers pending orders,
    trailing stops, expiries and margin closeouts deterministically (accounts
    in creation order, orders in id order), which is what lets tests push one
    tick and assert exactly what happened.

    Bounded history. OANDA keeps an account's history for ever; a venue that
    did would grow by ~1.3 KB per filled order until the process ran out of
    memory. Each account keeps its last ``history`` transactions (default
    ``DEFAULT_HISTORY`` = 20,000, about 10,000 market orders; ``None`` keeps
    everything) and, with them, every order and trade any of those concerns.
    Once the log holds ``history + TRIM_BATCH`` transactions, the oldest
    ``TRIM_BATCH`` (512) are forgotten at the start of the next batch (never
    inside one), in O(1) amortised per transaction, and so are

    * finished orders (FILLED/CANCELLED) whose create, fill and cancel
      transactions are all forgotten (their client id is freed with them);
    * closed trades whose last closing fill is forgotten.

    Pending orders, open trades and positions are never forgotten, however old.
    A forgotten id is answered the way v20 answers an id it does not know:
    ``GET orders/{id|@clientID}`` 404 ``NO_SUCH_ORDER``, ``GET trades/{id}``
    404 ``NO_SUCH_TRADE``, ``GET transactions/{id}`` 404
    ``NO_SUCH_TRANSACTION``, a cancel 404 ``ORDER_DOESNT_EXIST``. A range that
    starts before the oldest retained transaction cannot be served whole, so
    ``transactions/sinceid``, ``transactions/idrange`` and ``changes`` answer
    416 (v20's status for a transaction range it will not satisfy; OANDA's own
    ``changes`` refuses a ``sinceTransactionID`` that is too old) instead of a
    silently partial list: a client that gets 416 re-reads the account
    (``GET /accounts/{id}``) and polls from its ``lastTransactionID``. Asking
    from the oldest retained id - 1 onwards works (``TxnLog.base`` is that id).
    ``GET transactions`` (pages) lists retained transactions only.
    """

    def __init__(
        self,
        instruments: Optional[Sequence[SimInstrument]] = None,
        *,
        seed: int = 1,
        accounts: int = 1,
        balance: Union[str, int] = "100000",
        currency: str = "USD",
        clock: Optional[Callable[[], int]] = None,
        slippage_steps: int = 0,
        liquidity: int = 10_000_000,
        user_id: int = 1,
        site: str = "101-001",
        history: Optional[int] = DEFAULT_HISTORY,
    ):
        if history is not None and (type(history) is not int or history < 1):
            raise ValueError("history must be an int >= 1 (transactions retained per account) or None")
        self.history = history
        self._now = 0  # the time of the request being applied
        self.instruments = list(instruments) if instruments is not None else load_sim_instruments()
        self.by_name = {i.name: i for i in self.instruments}
        n = len(self.instruments)
        self.bids = [0] * n
        self.asks = [0] * n
        self.ptimes = [0] * n
        self.clock = clock or _time.time_ns
        self.rng = random.Random(seed)
        self.slippage_steps = slippage_steps
        self.liquidity = liquidity
        self.accounts: dict[str, Account] = {}
        self._txn_listeners: list[TxnListener] = []
        self._price_listeners: list[PriceListener] = []
        self._triggers: list[dict] = [dict() for _ in range(n)]  # per instrument: (acct id, order id) -> (acct, order)
        self._expiring: dict = {}
        self._conv_routes: dict = {}
        self.user_id = user_id
        self.site = site
        self._next_request = 0
        # plain market orders through the compiled kernel; False forces the
        # general (reference) path, which the kernel must match exactly
        self.fast_path = HAVE_KERNEL
        from .prices import RandomWalk

        self.walk = RandomWalk(self.instruments, seed)
        now = self.clock()
        for i in range(n):
            b, a = self.walk.quote(i)
            self.bids[i], self.asks[i], self.ptimes[i] = b, a, now
        bal = parse_money(balance) if isinstance(balance, str) else int(balance)
        for k in range(accounts):
            self.add_account(balance=bal, currency=currency)

    # ------------------------------------------------------------------ accounts

    def add_account(self, *, balance: int = 0, currency: str = "USD", account_id: Optional[str] = None) -> Account:
        """Open an account: CREATE then a TRANSFER_FUNDS deposit of ``balance``
        (money int), so the balance is the sum of its transactions from id 1."""
        num = len(self.accounts) + 1
        aid = account_id or f"{self.site}-{self.user_id:07d}-{num:03d}"
        self._now = self.clock()
        acct = Account(aid, self.user_id, currency, self._now)
        if self.history is not None:
            acct.history = self.history
            acct.trim_at = self.history + TRIM_BATCH
        self.accounts[aid] = acct
        self._begin(acct, None)
        self._txn(acct, "CREATE", {"divisionID": 1, "siteID": 101, "accountUserID": self.user_id,
                                   "accountNumber": num, "homeCurrency": currency})
        if balance:
            acct.balance += balance
            self._txn(acct, "TRANSFER_FUNDS", {"amount": balance, "fundingReason": "CLIENT_FUNDING",
                                               "accountBalance": acct.balance})
        self._end(acct)
        return acct

    def account(self, account_id: str) -> Account:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise SimReject("ACCOUNT_NOT_FOUND", 404, "The specified Account does not exist") from None

    def on_transactions(self, fn: TxnListener) -> None:
        self._txn_listeners.append(fn)

    def remove_transactions_listener(self, fn: TxnListener) -> None:
        if fn in self._txn_listeners:
            self._txn_listeners.remove(fn)

    def on_price(self, fn: PriceListener) -> None:
        self._price_listeners.append(fn)

    def remove_price_listener(self, fn: PriceListener) -> None:
        if fn in self._price_listeners:
            self._price_listeners.remove(fn)

    def next_request_id(self) -> str:
        """v20 RequestIDs are long numeric strings; ours count up per venue."""
        self._next_request += 1
        return str(24_000_000_000_000_000 + self._next_request)

    # ------------------------------------------------------------------ transactions

    def _begin(self, acct: Account, req: Optional[str]) -> None:
        log = acct.txns
        if len(log) - log.base >= acct.trim_at:  # transactions retained (the kernel's lists have a dead prefix)
            _trim(acct)  # bounded history; between batches, never inside one
        acct.batch = acct.last_id + 1
        acct.batch_start = acct.last_id
        acct.req = req

    def _txn(self, acct: Account, type_: str, p) -> int:
        """Append a transaction; returns its id."""
        log = acct.txns
        log.types.append(type_)
        log.times.append(self._now)
        log.batches.append(acct.batch)
        log.reqs.append(acct.req)
        log.ps.append(p)
        acct.last_id += 1
        return acct.last_id

    def _end(self, acct: Account) -> tuple[int, int]:
        """Close a batch: listeners (streams, the in-process broker) see it whole. Returns
        its bounds (ids after ``lo`` up to ``hi``) as they were before the listeners ran:
        a listener that books a batch of its own in reaction moves ``acct``'s."""
        lo, hi = acct.batch_start, acct.last_id
        if self._txn_listeners and hi > lo:
            new = TxnBatch(acct.txns, lo, hi)
            for fn in tuple(self._txn_listeners):
                fn(acct, new)
        return lo, hi

    def _close(self, acct: Account, res: Result) -> Result:
        """``_end``, answering with ``res``: built before the listeners run, so its bounds
        are this request's batch, not one a listener booked in reaction."""
        self._end(acct)
        return res


    # ------------------------------------------------------------------ prices & conversion

    def price(self, instrument: str) -> tuple[int, int, int]:
        i = self.by_name[instrument].index
        return self.bids[i], self.asks[i], self.ptimes[i]

    def _route(self, currency: str, inst: SimInstrument):
        """How to turn the instrument's quote currency into ``currency``:
        a list of (instrument index, multiply?) legs, found once and cached."""
        key = (currency, inst.index)
        r = self._conv_routes.get(key)
        if r is None:
            r = self._find_route(inst.quote, currency)
            self._conv_routes[key] = r
        return r

    def _find_route(self, src: str, dst: str):
        if src == dst:
            return ()
        bn = self.by_name
        if f"{src}_{dst}" in bn:
            return ((bn[f"{src}_{dst}"].index, True),)
        if f"{dst}_{src}" in bn:
            return ((bn[f"{dst}_{src}"].index, False),)
        for via in ("USD", "EUR", "GBP", "JPY"):
            if via in (src, dst):
                continue
            a = self._find_route(src, via) if (f"{src}_{via}" in bn or f"{via}_{src}" in bn) else None
            b = self._find_route(via, dst) if (f"{via}_{dst}" in bn or f"{dst}_{via}" in bn) else None
            if a and b:
                return a + b
        raise SimReject("INSTRUMENT_PRICE_UNKNOWN", 400, f"No conversion from {src} to {dst}")

    def _acct_factors(self, acct: Account, inst: SimInstrument) -> tuple[int, int, int]:
        """``factors`` for an account, with the route cached on the account."""
        routes = acct.routes
        i = inst.index
        if i >= len(routes):
            routes.extend([None] * (len(self.instruments) - len(routes)))
        r = routes[i]
        if r is None:
            r = routes[i] = self._route(acct.currency, inst)
        if not r:
            return _UNIT_FACTORS
        return self.factors(acct.currency, inst)

    def factors(self, currency: str, inst: SimInstrument) -> tuple[int, int, int]:
        """(gain, loss, mid) quote→home conversion factors as rates.

        Gain converts a profit at the side the venue would sell the quote
        currency at, loss at the side it would buy it at, mid for margin
        (§9.1, §9.4). Each is the exact product/quotient of the legs' prices
        rounded half-even once to RATE_SCALE.
        """
        route = self._route(currency, inst)
        if not route:
            return RATE_SCALE, RATE_SCALE, RATE_SCALE
        out = []
        for kind in (0, 1, 2):
            num, den = 1, 1
            for idx, mul in route:
                b, a = self.bids[idx], self.asks[idx]
                if kind == 2:
                    p2 = b + a  # mid * 2, kept exact
                    if mul:
                        num *= p2
                        den *= 2 * PRICE_SCALE
                    else:
                        num *= 2 * PRICE_SCALE
                        den *= p2
                elif mul:  # quote currency -> other: sell at bid (gain) / buy at ask (loss)
                    num *= b if kind == 0 else a
                    den *= PRICE_SCALE
                else:
                    num *= PRICE_SCALE
                    den *= a if kind == 0 else b
            out.append(round_half_even_int(num * RATE_SCALE, den))
        return out[0], out[1], out[2]

    # ------------------------------------------------------------------ account maths

    def position_numbers(self, acct: Account, pos: Position) -> tuple[int, int, int, int, int]:
        """(unrealized_pl, closeout_unrealized_pl, position_value, margin_used, closeout_position_value)."""
        if not pos.units:
            return 0, 0, 0, 0, 0
        inst = pos.inst
        i = inst.index
        bid, ask = self.bids[i], self.asks[i]
        gain, loss, midf = self._acct_factors(acct, inst)
        u = pos.units
        close = bid if u > 0 else ask
        q = u * close - pos.cost
        upl = round_half_even_int(q * (gain if q >= 0 else loss), _PL_DEN) * _MONEY_STEP
        # closeout P/L at mid: (units * (bid + ask) - 2 * cost) / 2, kept exact
        q2 = u * (bid + ask) - 2 * pos.cost
        cupl = round_half_even_int(q2 * (gain if q2 >= 0 else loss), 2 * _PL_DEN) * _MONEY_STEP
        au = abs(u)
        pv = round_half_even_int(au * (bid + ask) * midf, 2 * _PL_DEN) * _MONEY_STEP
        mu = round_half_even_int(inst.margin_rate * au * (bid + ask) * midf, 2 * _MARGIN_DEN) * _MONEY_STEP
        return upl, cupl, pv, mu, pv

    def trade_numbers(self, acct: Account, trade: Trade) -> tuple[int, int]:
        """(unrealized_pl, margin_used) of one open trade, same rules as positions."""
        if not trade.units:
            return 0, 0
        inst = trade.inst
        i = inst.index
        bid, ask = self.bids[i], self.asks[i]
        gain, loss, midf = self._acct_factors(acct, inst)
        u = trade.units
        q = u * ((bid if u > 0 else ask) - trade.price)
        upl = round_half_even_int(q * (gain if q >= 0 else loss), _PL_DEN) * _MONEY_STEP
        mu = round_half_even_int(inst.margin_rate * abs(u) * (bid + ask) * midf, 2 * _MARGIN_DEN) * _MONEY_STEP
        return upl, mu

    def account_numbers(self, acct: Account) -> dict:
        """The price-dependent account numbers of §9.2 as ints (money, rates)."""
        upl = cupl = pv = mu = 0
        for pos in acct.positions.values():
            if pos.units:
                a, b, c, d, _ = self.position_numbers(acct, pos)
                upl += a
                cupl += b
                pv += c
                mu += d
        nav = acct.balance + upl
        cnav = acct.balance + cupl
        if cnav > 0:
            cpct = round_half_even_int(mu * RATE_SCALE, 2 * cnav)
            callpct = round_half_even_int(mu * RATE_SCALE, cnav)
        else:
            cpct = callpct = RATE_SCALE if mu else 0
        avail = nav - mu
        return {
            "unrealizedPL": upl,
            "NAV": nav,
            "marginUsed": mu,
            "marginAvailable": avail,
            "positionValue": pv,
            "marginCloseoutUnrealizedPL": cupl,
            "marginCloseoutNAV": cnav,
            "marginCloseoutMarginUsed": mu,
            "marginCloseoutPositionValue": pv,
            "marginCloseoutPercent": cpct,
            "withdrawalLimit": max(0, avail),
            "marginCallMarginUsed": mu,
            "marginCallPercent": callpct,
        }

    def _nav_and_margin(self, acct: Account, skip_margin: int = -1) -> tuple[int, int]:
        """(NAV, marginUsed) only — the margin check at fill time needs no more.

        ``skip_margin``: an instrument index whose margin is left out (the one
        about to be filled, whose margin the caller recomputes for the new size).
        """
        nav = acct.balance
        mu = 0
        bids, asks = self.bids, self.asks
        for pos in acct.positions.values():
            u = pos.units
            if u:
                inst = pos.inst
                i = inst.index
                bid, ask = bids[i], asks[i]
                gain, loss, midf = self._acct_factors(acct, inst)
                q = u * (bid if u > 0 else ask) - pos.cost
                nav += round_half_even_int(q * (gain if q >= 0 else loss), _PL_DEN) * _MONEY_STEP
                if i != skip_margin:
                    mu += round_half_even_int(inst.margin_rate * (u if u > 0 else -u) * (bid + ask) * midf,
                                              2 * _MARGIN_DEN) * _MONEY_STEP
        return nav, mu

    def _margin_of(self, acct: Account, inst: SimInstrument, units: int) -> int:
        i = inst.index
        midf = self._acct_factors(acct, inst)[2]
        return round_half_even_int(inst.margin_rate * abs(units) * (self.bids[i] + self.asks[i]) * midf,
                                   2 * _MARGIN_DEN) * _MONEY_STEP

    # ------------------------------------------------------------------ lookups

    def find_order(self, acct: Account, spec: str) -> Optional[Order]:
        """An order by id or ``@clientID`` (the most recent order with that client id)."""
        if spec.startswith("@"):
            return acct.by_client.get(spec[1:])
        try:
            return acct.orders.get(int(spec))
        except ValueError:
            return None

    def find_trade(self, acct: Account, spec: str) -> Optional[Trade]:
        if spec.startswith("@"):
            cid = spec[1:]
            t = acct.trades_by_client.get(cid)
            if t is None:
                for tr in reversed(list(acct.trades.values())):
                    if tr.client_id == cid:
                        return tr
            return t
        try:
            return acct.trades.get(int(spec))
        except ValueError:
            return None

    # ------------------------------------------------------------------ rejects

    def reject(self, account_id: str, txn_type: str, echo: dict, reason: str, status: int = 400,
               key: str = "orderRejectTransaction", request_id: Optional[str] = None) -> Result:
        """Record a reject transaction (rejects consume ids, §2.3) and say so."""
        acct = self.account(account_id)
        self._now = self.clock()
        self._begin(acct, request_id)
        echo = dict(echo)
        t = self._txn(acct, txn_type, (echo, reason))
        return self._close(acct, Result(status, acct, {key: t}, acct.batch_start, reason,
                                        REJECT_MESSAGES.get(reason, reason)))

    # ------------------------------------------------------------------ order entry

    def place_order(self, account_id: str, order: Order, request_id: Optional[str] = None,
                    raw: Optional[dict] = None) -> Result:
        """Create an order (v20 POST /orders). Returns 201 with the create
        transaction and, for immediate orders, its fill or cancel; 400/404 with
        a reject transaction when validation fails."""
        acct = self.accounts.get(account_id)
        if acct is None:
            raise SimReject("ACCOUNT_NOT_FOUND", 404, "The specified Account does not exist")
        if self.fast_path:
            keys = _place_market(self, acct, order, request_id)
            if keys is not None:
                return self._close(acct, Result(201, acct, keys, acct.batch_start, order=order))
        self._now = now = self.clock()
        try:
            self._validate(acct, order, now)
        except SimReject as e:
            return self._reject_order(acct, order, e, request_id, raw=raw)
        self._begin(acct, request_id)
        keys = self._accept(acct, order, now)
        return self._close(acct, Result(201, acct, keys, acct.batch_start, order=order))

    def _reject_order(self, acct: Account, order: Order, e: SimReject, request_id, key="orderRejectTransaction",
                      extra: Optional[dict] = None, raw: Optional[dict] = None) -> Result:
        """A reject echoes the request as sent when there is one (v20 does:
        ``"price": "1212"`` stays unnormalised), else the parsed order."""
        from .render import order_echo

        self._begin(acct, request_id)
        if raw is not None:
            echo = {k: v for k, v in raw.items() if k != "type"}
            echo.setdefault("reason", "CLIENT_ORDER")
        else:
            echo = order_echo(order)
        if extra:
            echo.update(extra)
        t = self._txn(acct, order.type + "_ORDER_REJECT", (echo, e.reason))
        return self._close(acct, Result(e.status, acct, {key: t}, acct.batch_start, e.reason, e.message))

    def _validate(self, acct: Account, o: Order, now: int) -> None:
        t = o.type
        if t not in TIF_ALLOWED:
            raise SimReject("INTERNAL_SERVER_ERROR", 400, f"Unsupported order type {t}")
        if o.tif not in TIF_ALLOWED[t]:
            raise SimReject("TIME_IN_FORCE_INVALID")
        if o.tif == "GTD":
            if o.gtd_ns is None:
                raise SimReject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING")
            if o.gtd_ns <= now:
                raise SimReject("TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST")
        ce = o.client_ext
        if ce is not None and ce.get("id") is not None:
            if ce["id"] == "" or len(ce["id"]) > 128:
                raise SimReject("CLIENT_ORDER_ID_INVALID")
            other = acct.by_client.get(ce["id"])
            if other is not None and other.state == "PENDING":
                raise SimReject("CLIENT_ORDER_ID_ALREADY_EXISTS")
        if t in ENTRY_TYPES:
            inst = o.inst
            if inst is None:
                raise SimReject("INSTRUMENT_MISSING")
            u = o.units
            if u == 0:
                raise SimReject("UNITS_INVALID")
            au = -u if u < 0 else u
            if au > inst.maximum_order_units:
                raise SimReject("UNITS_LIMIT_EXCEEDED")
            if au < inst.minimum_trade_size:
                raise SimReject("UNITS_MIMIMUM_NOT_MET")
            if t != MARKET:
                if o.price is None:
                    raise SimReject("PRICE_MISSING")
                if o.price <= 0:
                    raise SimReject("PRICE_INVALID")
            if o.position_fill not in POSITION_FILLS:
                raise SimReject("ORDER_FILL_POSITION_ACTION_INVALID")
            if o.trigger not in TRIGGER_CONDITIONS:
                raise SimReject("TRIGGER_CONDITION_INVALID")
            if o.price_bound is not None and o.price_bound <= 0:
                raise SimReject("PRICE_BOUND_INVALID")
            ids = []
            if o.tp is not None:
                self._validate_on_fill(acct, o.tp, "TAKE_PROFIT_ON_FILL", now, ids, need_price=True)
            if o.sl is not None:
                self._validate_on_fill(acct, o.sl, "STOP_LOSS_ON_FILL", now, ids, need_price=False)
                if o.sl.guaranteed and acct.gslo_mode == "DISABLED":
                    raise SimReject("STOP_LOSS_ON_FILL_GUARANTEED_NOT_ALLOWED")
            if o.tsl is not None:
                self._validate_tsl_on_fill(acct, inst, o.tsl, now, ids)
            if len(ids) != len(set(ids)):
                raise SimReject("ORDERS_ON_FILL_DUPLICATE_CLIENT_ORDER_IDS")
            tce = o.trade_client_ext
            if tce is not None and tce.get("id") is not None and tce["id"] in acct.trades_by_client:
                raise SimReject("CLIENT_TRADE_ID_ALREADY_EXISTS")
        else:
            trade = None
            if o.trade_id is not None:
                trade = acct.trades.get(o.trade_id)
                if o.client_trade_id is not None and (trade is None or trade.client_id != o.client_trade_id):
                    raise SimReject("TRADE_IDENTIFIER_INCONSISTENCY")
            elif o.client_trade_id is not None:
                trade = acct.trades_by_client.get(o.client_trade_id)
            else:
                raise SimReject("TRADE_ID_UNSPECIFIED")
            if trade is None or trade.state != "OPEN":
                raise SimReject("TRADE_DOESNT_EXIST", 404)
            o.trade_id = trade.id
            o.inst = trade.inst
            if t == TAKE_PROFIT:
                if trade.tp is not None and o.replaces_id != trade.tp.id:
                    raise SimReject("TAKE_PROFIT_ORDER_ALREADY_EXISTS")
                if o.price is None:
                    raise SimReject("PRICE_MISSING")
                if o.price <= 0:
                    raise SimReject("PRICE_INVALID")
            elif t == STOP_LOSS:
                if trade.sl is not None and o.replaces_id != trade.sl.id:
                    raise SimReject("STOP_LOSS_ORDER_ALREADY_EXISTS")
                if o.price is not None and o.distance is not None:
                    raise SimReject("STOP_LOSS_ORDER_PRICE_AND_DISTANCE_BOTH_SPECIFIED")
                if o.price is None and o.distance is None:
                    raise SimReject("STOP_LOSS_ORDER_PRICE_AND_DISTANCE_BOTH_MISSING")
                if o.guaranteed and acct.gslo_mode == "DISABLED":
                    raise SimReject("STOP_LOSS_ORDER_GUARANTEED_NOT_ALLOWED")
                if o.guaranteed and o.trigger not in ("DEFAULT", "BID" if trade.units > 0 else "ASK"):
                    raise SimReject("TRIGGER_CONDITION_INVALID")
            else:
                if trade.tsl is not None and o.replaces_id != trade.tsl.id:
                    raise SimReject("TRAILING_STOP_LOSS_ORDER_ALREADY_EXISTS")
                if o.distance is None:
                    raise SimReject("PRICE_DISTANCE_MISSING")
                if o.distance < trade.inst.minimum_trailing_stop_distance:
                    raise SimReject("PRICE_DISTANCE_MINIMUM_NOT_MET")
                if o.distance > trade.inst.maximum_trailing_stop_distance:
                    raise SimReject("PRICE_DISTANCE_MAXIMUM_EXCEEDED")
            if o.trigger not in TRIGGER_CONDITIONS:
                raise SimReject("TRIGGER_CONDITION_INVALID")

    def _validate_on_fill(self, acct, of: OnFill, prefix: str, now: int, ids: list, need_price: bool) -> None:
        if need_price:
            if of.price is None:
                raise SimReject(prefix + "_PRICE_MISSING")
        else:
            if of.price is not None and of.distance is not None:
                raise SimReject(prefix + "_PRICE_AND_DISTANCE_BOTH_SPECIFIED")
            if of.price is None and of.distance is None:
                raise SimReject(prefix + "_PRICE_AND_DISTANCE_BOTH_MISSING")
            if of.distance is not None and of.distance <= 0:
                raise SimReject(prefix + "_DISTANCE_INVALID")
        if of.price is not None and of.price <= 0:
            raise SimReject(prefix + "_PRICE_INVALID")
        self._validate_on_fill_common(acct, of, prefix, now, ids)

    def _validate_on_fill_common(self, acct, of: OnFill, prefix: str, now: int, ids: list) -> None:
        if of.tif not in ON_FILL_TIF:
            raise SimReject(prefix + "_TIME_IN_FORCE_INVALID")
        if of.tif == "GTD":
            if of.gtd_ns is None:
                raise SimReject(prefix + "_GTD_TIMESTAMP_MISSING")
            if of.gtd_ns <= now:
                raise SimReject(prefix + "_GTD_TIMESTAMP_IN_PAST")
        ce = of.client_ext
        if ce is not None and ce.get("id") is not None:
            if ce["id"] == "":
                raise SimReject(prefix + "_CLIENT_ORDER_ID_INVALID")
            ids.append(ce["id"])
            other = acct.by_client.get(ce["id"])
            if other is not None and other.state == "PENDING":
                raise SimReject("CLIENT_ORDER_ID_ALREADY_EXISTS")

    def _validate_tsl_on_fill(self, acct, inst, of: OnFill, now: int, ids: list) -> None:
        p = "TRAILING_STOP_LOSS_ON_FILL"
        if of.distance is None:
            raise SimReject(p + "_PRICE_DISTANCE_MISSING")
        if of.distance <= 0:
            raise SimReject(p + "_PRICE_DISTANCE_INVALID")
        if of.distance < inst.minimum_trailing_stop_distance:
            raise SimReject(p + "_PRICE_DISTANCE_MINIMUM_NOT_MET")
        if of.distance > inst.maximum_trailing_stop_distance:
            raise SimReject(p + "_PRICE_DISTANCE_MAXIMUM_EXCEEDED")
        self._validate_on_fill_common(acct, of, p, now, ids)

    def _register(self, acct: Account, o: Order, now: int, reason: str = "CLIENT_ORDER") -> Txn:
        """Create the order's ``*_ORDER`` transaction; the order takes its id."""
        t = self._txn(acct, o.type + "_ORDER", o)
        o.id = t
        o.create_ns = now
        o.reason = reason
        acct.orders[o.id] = o
        cid = o.client_ext.get("id") if o.client_ext else None
        if cid is not None:
            acct.by_client[cid] = o
        return t

    def _accept(self, acct: Account, o: Order, now: int, reason: str = "CLIENT_ORDER") -> dict:
        """Register an accepted order and run it (immediate fill, cancel or rest)."""
        keys = {"orderCreateTransaction": self._register(acct, o, now, reason)}
        t = o.type
        if t == MARKET:
            self._execute(acct, o, keys, now)
            return keys
        i = o.inst.index
        bid, ask = self.bids[i], self.asks[i]
        if t in DEPENDENT_TYPES:
            trade = acct.trades[o.trade_id]
            self._attach(acct, trade, o, now)
            self._rest(acct, o)
            if self._triggered(o, bid, ask):  # already through its price: fills at once
                self._run_triggered(acct, o, now)
            return keys
        buy = o.units > 0
        if t == MARKET_IF_TOUCHED:
            o.initial_market_price = ask if buy else bid
        if t != MARKET_IF_TOUCHED and self._triggered(o, bid, ask):
            self._execute(acct, o, keys, now)
            return keys
        if o.tif in ("FOK", "IOC"):
            keys["orderCancelTransaction"] = self._cancel(acct, o, "INSUFFICIENT_LIQUIDITY", now)
            return keys
        self._rest(acct, o)
        return keys

    def _rest(self, acct: Account, o: Order) -> None:
        acct.pending[o.id] = o
        self._triggers[o.inst.index][(acct.id, o.id)] = (acct, o)
        if o.tif == "GTD":
            o.expire_ns = o.gtd_ns
        elif o.tif == "GFD":
            o.expire_ns = gfd_expiry_ns(o.create_ns)
        if o.expire_ns is not None:
            self._expiring[(acct.id, o.id)] = (acct, o)

    def _unrest(self, acct: Account, o: Order) -> None:
        acct.pending.pop(o.id, None)
        self._triggers[o.inst.index].pop((acct.id, o.id), None)
        if o.expire_ns is not None:
            self._expiring.pop((acct.id, o.id), None)

    def _attach(self, acct: Account, trade: Trade, o: Order, now: int) -> None:
        i = trade.inst.index
        if o.type == TAKE_PROFIT:
            trade.tp = o
        elif o.type == STOP_LOSS:
            trade.sl = o
            if o.distance is not None and o.price is None:
                # stand-alone SL distance is measured from the current closing price
                ref = self.bids[i] if trade.units > 0 else self.asks[i]
                o.price = ref - o.distance if trade.units > 0 else ref + o.distance
        else:
            trade.tsl = o
            ref = self.bids[i] if trade.units > 0 else self.asks[i]
            o.trailing_value = ref - o.distance if trade.units > 0 else ref + o.distance
        o.units = -trade.units
        o.position_fill = "REDUCE_ONLY"

    def _cancel(self, acct: Account, o: Order, reason: str, now: int, replaced_by: Optional[int] = None) -> Txn:
        t = self._txn(acct, "ORDER_CANCEL", (o, reason))
        if o.state == "PENDING":
            self._unrest(acct, o)
        o.state = "CANCELLED"
        o.cancel_txn = t
        o.cancelled_ns = now
        if replaced_by is not None:
            o.replaced_by_id = replaced_by
        if o.type in DEPENDENT_TYPES:
            trade = acct.trades.get(o.trade_id)
            if trade is not None:
                if trade.tp is o:
                    trade.tp = None
                elif trade.sl is o:
                    trade.sl = None
                elif trade.tsl is o:
                    trade.tsl = None
        return t

    # ------------------------------------------------------------------ triggering

    @staticmethod
    def _trigger_price(o: Order, buy: bool, bid: int, ask: int) -> int:
        tc = o.trigger
        if tc == "DEFAULT":
            return ask if buy else bid
        if tc == "INVERSE":
            return bid if buy else ask
        if tc == "BID":
            return bid
        if tc == "ASK":
            return ask
        return (bid + ask) // 2  # MID: compared against a grid price, floor is exact enough to decide <= / >=

    def _triggered(self, o: Order, bid: int, ask: int) -> bool:
        buy = o.units > 0
        p = self._trigger_price(o, buy, bid, ask)
        t = o.type
        if t == LIMIT or t == TAKE_PROFIT:
            return p <= o.price if buy else p >= o.price
        if t == STOP or t == STOP_LOSS:
            return p >= o.price if buy else p <= o.price
        if t == MARKET_IF_TOUCHED:
            if o.initial_market_price > o.price:  # price below the market: touched from above
                return p <= o.price
            return p >= o.price
        if t == TRAILING_STOP_LOSS:
            d = o.distance
            if buy:  # short trade: trail down from the ask
                v = p + d
                if v < o.trailing_value:
                    o.trailing_value = v
                return p >= o.trailing_value
            v = p - d
            if v > o.trailing_value:
                o.trailing_value = v
            return p <= o.trailing_value
        return False

    def set_price(self, instrument: str, bid: int, ask: int, time_ns: Optional[int] = None) -> list:
        """Move one instrument's price and run everything it triggers.

        Returns the transactions created (any account). Raises ValueError for
        a crossed or off-grid quote, since a tick OANDA could not publish
        would make every later fill meaningless.
        """
        inst = self.by_name[instrument]
        if bid <= 0 or ask < bid or bid % inst.unit or ask % inst.unit:
            raise ValueError(f"bad quote for {instrument}: bid={bid} ask={ask}")
        i = inst.index
        now = self.clock() if time_ns is None else time_ns
        self._now = now
        self.bids[i], self.asks[i], self.ptimes[i] = bid, ask, now
        for fn in tuple(self._price_listeners):
            fn(inst, bid, ask, now)
        out = []
        if self._expiring:
            out += self.expire_orders(now)
        trig = self._triggers[i]
        if trig:
            for acct, o in list(trig.values()):
                if o.state != "PENDING":
                    continue
                if self._triggered(o, bid, ask):
                    self._begin(acct, None)
                    self._run_triggered(acct, o, now)
                    lo, hi = self._end(acct)
                    out += acct.txns[lo:hi]
        for acct in self.accounts.values():
            pos = acct.positions.get(i)
            if pos is not None and pos.units:
                out += self._check_margin_closeout(acct, now)
        return out

    def _run_triggered(self, acct: Account, o: Order, now: int) -> dict:
        self._unrest(acct, o)
        if o.type in DEPENDENT_TYPES:
            tr = acct.trades[o.trade_id]
            o.units = -tr.units  # the trade may have been reduced since the order was made
        keys: dict = {}
        self._execute(acct, o, keys, now)
        return keys

    def tick(self, instrument: Optional[str] = None) -> list:
        """Advance the random walk one step (one instrument or all) and apply it."""
        out = []
        names = [instrument] if instrument else [x.name for x in self.instruments]
        for name in names:
            i = self.by_name[name].index
            bid, ask = self.walk.step(i)
            out += self.set_price(name, bid, ask)
        return out

    def expire_orders(self, now: Optional[int] = None) -> list:
        """Cancel GTD/GFD orders whose time has come (TIME_IN_FORCE_EXPIRED)."""
        now = self.clock() if now is None else now
        self._now = now
        out = []
        due = [(a, o) for a, o in self._expiring.values() if o.expire_ns <= now]
        due.sort(key=lambda ao: (ao[1].expire_ns, ao[1].id))
        for acct, o in due:
            if o.state != "PENDING":
                continue
            self._begin(acct, None)
            self._cancel(acct, o, "TIME_IN_FORCE_EXPIRED", now)
            lo, hi = self._end(acct)
            out += acct.txns[lo:hi]
        return out

    def _check_margin_closeout(self, acct: Account, now: int) -> list:
        n = self.account_numbers(acct)
        if n["marginCloseoutPercent"] < RATE_SCALE:
            return []
        self._begin(acct, None)
        for pos in list(acct.positions.values()):
            if not pos.units:
                continue
            o = Order(MARKET, pos.inst, -pos.units, position_fill="REDUCE_ONLY")
            o.closeout = ("margin", "ALL")
            keys = {"orderCreateTransaction": self._register(acct, o, now, "MARGIN_CLOSEOUT")}
            self._execute(acct, o, keys, now)
        lo, hi = self._end(acct)
        return acct.txns[lo:hi]

    # ------------------------------------------------------------------ execution

    def _execute(self, acct: Account, o: Order, keys: dict, now: int) -> None:
        """Fill ``o`` now at the market (with its limits and bounds), or cancel it."""
        inst = o.inst
        i = inst.index
        bid, ask = self.bids[i], self.asks[i]
        units = o.units
        buy = units > 0
        px = ask if buy else bid
        t = o.type
        if t == LIMIT or t == TAKE_PROFIT:
            # never worse than the limit, even when triggered on another side
            if buy:
                if px > o.price:
                    px = o.price
            elif px < o.price:
                px = o.price
        elif t == STOP_LOSS and o.guaranteed:
            px = o.price  # guaranteed: filled exactly at the stop price
        elif self.slippage_steps:
            s = self.rng.randint(0, self.slippage_steps) * inst.unit
            px = px + s if buy else px - s
        if o.price_bound is not None and (px > o.price_bound if buy else px < o.price_bound):
            keys["orderCancelTransaction"] = self._cancel(acct, o, "BOUNDS_VIOLATION", now)
            return
        pos = acct.positions.get(i)
        net = pos.units if pos is not None else 0
        au = units if buy else -units
        reducible = 0
        if net and (net > 0) != buy:
            reducible = -net if net < 0 else net
            if reducible > au:
                reducible = au
        pf = o.position_fill
        if pf == "REDUCE_ONLY":
            if reducible == 0:
                reason = "POSITION_CLOSEOUT_FAILED" if o.reason != "CLIENT_ORDER" else "FIFO_VIOLATION"
                keys["orderCancelTransaction"] = self._cancel(acct, o, reason, now)
                return
            fill_units = reducible
        elif pf == "OPEN_ONLY" and reducible:
            keys["orderCancelTransaction"] = self._cancel(acct, o, "FIFO_VIOLATION", now)
            return
        else:
            fill_units = au
        liq = self.liquidity
        if fill_units > liq:
            if o.tif == "IOC":
                fill_units = liq
            else:
                keys["orderCancelTransaction"] = self._cancel(acct, o, "INSUFFICIENT_LIQUIDITY", now)
                return
        opening = fill_units - reducible
        if opening > 0:
            tce = o.trade_client_ext
            if tce is not None and tce.get("id") is not None and tce["id"] in acct.trades_by_client:
                keys["orderCancelTransaction"] = self._cancel(acct, o, "CLIENT_TRADE_ID_ALREADY_EXISTS", now)
                return
            # on-fill exits that would fire at once are refused before filling
            if o.tp is not None and (o.tp.price < px if buy else o.tp.price > px):
                keys["orderCancelTransaction"] = self._cancel(acct, o, "TAKE_PROFIT_ON_FILL_LOSS", now)
                return
            if o.sl is not None:
                slp = o.sl.price if o.sl.price is not None else (px - o.sl.distance if buy else px + o.sl.distance)
                if slp <= 0:
                    keys["orderCancelTransaction"] = self._cancel(
                        acct, o, "STOP_LOSS_ON_FILL_PRICE_DISTANCE_MAXIMUM_EXCEEDED", now)
                    return
                if (slp >= bid) if buy else (slp <= ask):
                    keys["orderCancelTransaction"] = self._cancel(acct, o, "STOP_LOSS_ON_FILL_LOSS", now)
                    return
            for of, r in ((o.tp, "TAKE_PROFIT"), (o.sl, "STOP_LOSS"), (o.tsl, "TRAILING_STOP_LOSS")):
                if of is not None and of.tif == "GTD" and of.gtd_ns <= now:
                    keys["orderCancelTransaction"] = self._cancel(acct, o, r + "_ON_FILL_GTD_TIMESTAMP_IN_PAST", now)
                    return
            # margin: the position after the fill must be covered by NAV
            after = net + (fill_units if buy else -fill_units)
            nav, other_mu = self._nav_and_margin(acct, i)
            if other_mu + self._margin_of(acct, inst, after) > nav:
                keys["orderCancelTransaction"] = self._cancel(acct, o, "INSUFFICIENT_MARGIN", now)
                return
        signed = fill_units if buy else -fill_units
        ft = self._fill(acct, o, signed, px, reducible, now, bid, ask, pos)
        keys["orderFillTransaction"] = ft
        if fill_units < au and o.tif == "IOC":
            keys["orderCancelTransaction"] = self._cancel_remainder(acct, o, now)

    def _cancel_remainder(self, acct, o, now):
        t = self._txn(acct, "ORDER_CANCEL", (o, "INSUFFICIENT_LIQUIDITY"))
        return t

    def _fill(self, acct: Account, o: Order, units: int, px: int, reducible: int, now: int, bid: int, ask: int,
              pos: Optional[Position]) -> Txn:
        inst = o.inst
        gain, loss, midf = self._acct_factors(acct, inst)
        t = o.type
        if t == MARKET:
            reason = MARKET_FILL_REASON[o.reason] if o.reason in MARKET_FILL_REASON else "MARKET_ORDER"
        else:
            reason = FILL_REASON[t]
        ft = fid = self._txn(acct, "ORDER_FILL", o)
        o.fill_units = units
        o.fill_price = px
        o.fill_reason = reason
        o.fill_bid = bid
        o.fill_ask = ask
        o.fill_ptime = self.ptimes[inst.index]
        o.fill_gain = gain
        o.fill_loss = loss
        o.fill_trade = o.fill_closed = o.fill_reduced = None
        o.state = "FILLED"  # before closing trades, so an exit does not cancel itself as a dependent
        if pos is None:
            pos = acct.positions[inst.index] = Position(inst)
        spread = ask - bid
        total_pl = 0
        total_hs = 0
        if reducible:
            left = reducible
            trades = pos.trades
            target = acct.trades[o.trade_id] if o.trade_id is not None else None
            closed = []
            while left:
                tr = target if target is not None else trades[0]
                tu = tr.units
                atu = tu if tu > 0 else -tu
                k = atu if atu <= left else left
                cu = k if tu > 0 else -k  # trade-direction units closed
                q = cu * (px - tr.price)
                pl = round_half_even_int(q * (gain if q >= 0 else loss), _PL_DEN) * _MONEY_STEP
                hs = round_half_even_int(k * spread * loss, 2 * _PL_DEN) * _MONEY_STEP
                tr.units = tu - cu
                tr.realized_pl += pl
                # tuples of ints: the collector untracks them, so history costs it nothing
                tr.closing_txn_ids = (fid,) if tr.closing_txn_ids is None else tr.closing_txn_ids + (fid,)
                tr.closed_units += k
                tr.closed_value += k * px
                pos.units -= cu
                pos.cost -= cu * tr.price
                total_pl += pl
                total_hs += hs
                entry = (tr.id, -cu, px, pl, hs)
                if tr.units == 0:
                    tr.state = "CLOSED"
                    tr.close_ns = now
                    if trades[0] is tr:
                        trades.pop(0)
                    else:
                        trades.remove(tr)
                    del acct.open_trades[tr.id]
                    ce = tr.client_ext
                    if ce is not None:
                        cid = ce.get("id")
                        if cid is not None and acct.trades_by_client.get(cid) is tr:
                            del acct.trades_by_client[cid]
                    closed.append(entry)
                    if tr.tp is not None or tr.sl is not None or tr.tsl is not None:
                        self._close_dependents(acct, tr, now)
                else:
                    o.fill_reduced = entry
                    o.trade_reduced_id = tr.id
                left -= k
            if closed:
                o.fill_closed = tuple(closed)
            if cu > 0:
                pos.long_pl += total_pl
            else:
                pos.short_pl += total_pl
            pos.pl += total_pl
            pos.resettable_pl += total_pl
            acct.pl += total_pl
            acct.resettable_pl += total_pl
            acct.balance += total_pl
        au = units if units > 0 else -units
        opening = au - reducible
        if opening:
            ou = opening if units > 0 else -opening
            hs = round_half_even_int(opening * spread * loss, 2 * _PL_DEN) * _MONEY_STEP
            im = round_half_even_int(inst.margin_rate * opening * (bid + ask) * midf, 2 * _MARGIN_DEN) * _MONEY_STEP
            tr = Trade(fid, inst, px, now, ou, im, o.trade_client_ext)
            tr.half_spread = hs
            acct.trades[fid] = tr
            acct.open_trades[fid] = tr
            ce = tr.client_ext
            if ce is not None and ce.get("id") is not None:
                acct.trades_by_client[ce["id"]] = tr
            pos.trades.append(tr)
            pos.units += ou
            pos.cost += ou * px
            o.fill_trade = tr
            o.trade_opened_id = fid
            total_hs += hs
        o.fill_pl = total_pl
        o.fill_hs = total_hs
        o.fill_balance = acct.balance
        o.state = "FILLED"
        o.fill_txn = fid
        o.filled_ns = now
        acct.last_fill_ns = now
        if opening and (o.tp is not None or o.sl is not None or o.tsl is not None):
            self._on_fill_orders(acct, o, acct.trades[fid], px, fid, now)
        return ft

    def _on_fill_orders(self, acct: Account, o: Order, trade: Trade, px: int, fid: int, now: int) -> None:
        """Dependent orders created after the fill, same batch: TP, SL, then TSL."""
        long_ = trade.units > 0
        if o.tp is not None:
            d = Order(TAKE_PROFIT, trade.inst, -trade.units, price=o.tp.price, tif=o.tp.tif, gtd_ns=o.tp.gtd_ns,
                      client_ext=o.tp.client_ext, trade_id=trade.id)
            d.on_fill_txn = fid
            self._register(acct, d, now, "ON_FILL")
            trade.tp = d
            self._rest(acct, d)
        if o.sl is not None:
            p = o.sl.price
            dist = o.sl.distance
            if p is None:
                p = px - dist if long_ else px + dist
            d = Order(STOP_LOSS, trade.inst, -trade.units, price=p, tif=o.sl.tif, gtd_ns=o.sl.gtd_ns,
                      client_ext=o.sl.client_ext, trade_id=trade.id, distance=dist, guaranteed=o.sl.guaranteed)
            d.on_fill_txn = fid
            self._register(acct, d, now, "ON_FILL")
            trade.sl = d
            self._rest(acct, d)
        if o.tsl is not None:
            d = Order(TRAILING_STOP_LOSS, trade.inst, -trade.units, tif=o.tsl.tif, gtd_ns=o.tsl.gtd_ns,
                      client_ext=o.tsl.client_ext, trade_id=trade.id, distance=o.tsl.distance)
            d.on_fill_txn = fid
            d.trailing_value = px - o.tsl.distance if long_ else px + o.tsl.distance
            self._register(acct, d, now, "ON_FILL")
            trade.tsl = d
            self._rest(acct, d)

    def _close_dependents(self, acct: Account, tr: Trade, now: int) -> None:
        for d in (tr.tp, tr.sl, tr.tsl):
            if d is not None and d.state == "PENDING":
                self._cancel(acct, d, "LINKED_TRADE_CLOSED", now)

    # ------------------------------------------------------------------ cancel / replace

    def cancel_order(self, account_id: str, spec: str, request_id: Optional[str] = None) -> Result:
        """v20 PUT /orders/{spec}/cancel: 200 with ORDER_CANCEL, or 404 with
        ORDER_CANCEL_REJECT (ORDER_DOESNT_EXIST) when it is not pending."""
        acct = self.account(account_id)
        self._now = now = self.clock()
        o = self.find_order(acct, spec)
        self._begin(acct, request_id)
        if o is None or o.state != "PENDING":
            p = {"orderID": str(o.id) if o is not None else (spec if not spec.startswith("@") else None),
                 "clientOrderID": spec[1:] if spec.startswith("@") else None}
            t = self._txn(acct, "ORDER_CANCEL_REJECT", ({k: v for k, v in p.items() if v}, "ORDER_DOESNT_EXIST"))
            return self._close(acct, Result(404, acct, {"orderCancelRejectTransaction": t}, acct.batch_start,
                                            "ORDER_DOESNT_EXIST", REJECT_MESSAGES["ORDER_DOESNT_EXIST"]))
        t = self._cancel(acct, o, "CLIENT_REQUEST", now)
        return self._close(acct, Result(200, acct, {"orderCancelTransaction": t}, acct.batch_start, order=o))

    def replace_order(self, account_id: str, spec: str, new: Order, request_id: Optional[str] = None,
                      raw: Optional[dict] = None) -> Result:
        """v20 PUT /orders/{spec}: cancel (CLIENT_REQUEST_REPLACED) + create
        (REPLACEMENT) in one batch; the replacement gets a new id."""
        acct = self.account(account_id)
        self._now = now = self.clock()
        old = self.find_order(acct, spec)
        if old is None or old.state != "PENDING":
            self._begin(acct, request_id)
            p = {"orderID": str(old.id) if old is not None else (spec if not spec.startswith("@") else None),
                 "clientOrderID": spec[1:] if spec.startswith("@") else None}
            t = self._txn(acct, "ORDER_CANCEL_REJECT", ({k: v for k, v in p.items() if v}, "ORDER_DOESNT_EXIST"))
            return self._close(acct, Result(404, acct, {"orderCancelRejectTransaction": t}, acct.batch_start,
                                            "ORDER_DOESNT_EXIST", REJECT_MESSAGES["ORDER_DOESNT_EXIST"]))
        new.replaces_id = old.id
        try:
            if new.type != old.type:
                raise SimReject("REPLACING_ORDER_INVALID")
            if new.type in DEPENDENT_TYPES:
                if new.trade_id is None and new.client_trade_id is None:
                    new.trade_id = old.trade_id
                if new.trade_id is not None and new.trade_id != old.trade_id:
                    raise SimReject("REPLACING_TRADE_ID_INVALID")
            # the old order's client id is free once it is cancelled
            cid = old.client_id
            if cid is not None and new.client_id == cid:
                old_state, old.state = old.state, "CANCELLING"
                try:
                    self._validate(acct, new, now)
                finally:
                    old.state = old_state
            else:
                self._validate(acct, new, now)
        except SimReject as e:
            return self._reject_order(acct, new, e, request_id, extra={"intendedReplacesOrderID": str(old.id)},
                                      raw=raw)
        self._begin(acct, request_id)
        ct = self._cancel(acct, old, "CLIENT_REQUEST_REPLACED", now)
        keys = {"orderCancelTransaction": ct}
        new.cancelling_txn_for_replace = ct
        keys2 = self._accept(acct, new, now, "REPLACEMENT")
        old.replaced_by_id = new.id
        keys.update(keys2)
        if "orderCancelTransaction" in keys2:  # the replacement itself was cancelled at once
            keys["replacingOrderCancelTransaction"] = keys2["orderCancelTransaction"]
            keys["orderCancelTransaction"] = ct
        return self._close(acct, Result(201, acct, keys, acct.batch_start, order=new))

    # ------------------------------------------------------------------ trade / position close

    def close_trade(self, account_id: str, spec: str, units: Union[str, int] = "ALL",
                    request_id: Optional[str] = None) -> Result:
        """v20 PUT /trades/{spec}/close: a server-side MARKET order (FOK,
        REDUCE_ONLY, reason TRADE_CLOSE) for all or part of the trade."""
        acct = self.account(account_id)
        self._now = now = self.clock()
        tr = self.find_trade(acct, spec)
        if tr is None or tr.state != "OPEN":
            return Result(404, acct, {}, acct.last_id, "NO_SUCH_TRADE", "The trade ID specified does not exist")
        o = Order(MARKET, tr.inst, 0, position_fill="REDUCE_ONLY")
        o.trade_close_units = units
        o.trade_id = tr.id
        if units == "ALL":
            k = abs(tr.units)
        else:
            k = units
            if k <= 0:
                return self._reject_order(acct, o, SimReject("CLOSE_TRADE_PARTIAL_UNITS_MISSING"), request_id)
            if k > abs(tr.units):
                return self._reject_order(acct, o, SimReject("CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE"), request_id)
        o.units = -k if tr.units > 0 else k
        self._begin(acct, request_id)
        keys = {"orderCreateTransaction": self._register(acct, o, now, "TRADE_CLOSE")}
        self._execute(acct, o, keys, now)
        return self._close(acct, Result(200, acct, keys, acct.batch_start, order=o))

    def close_position(self, account_id: str, instrument: str, long_units: Union[str, int, None] = None,
                       short_units: Union[str, int, None] = None, request_id: Optional[str] = None) -> Result:
        """v20 PUT /positions/{instrument}/close. Each side: "ALL", "NONE"/None
        or a positive unit count. A side that cannot be closed fails the whole
        request with 400 and both sides' rejects recorded (observed 2026 body)."""
        acct = self.account(account_id)
        self._now = now = self.clock()
        inst = self.by_name.get(instrument)
        if inst is None:
            return Result(400, acct, {}, acct.last_id, None, "Invalid value specified for 'instrument'")
        if long_units == "NONE":
            long_units = None
        if short_units == "NONE":
            short_units = None
        pos = acct.positions.get(inst.index)
        net = pos.units if pos is not None else 0
        sides = []
        if long_units is not None:
            sides.append(("long", long_units))
        if short_units is not None:
            sides.append(("short", short_units))
        if not sides:
            return Result(400, acct, {}, acct.last_id, "CLOSEOUT_POSITION_INCOMPLETE_SPECIFICATION",
                          REJECT_MESSAGES["CLOSEOUT_POSITION_INCOMPLETE_SPECIFICATION"])
        errors = {}
        orders = []
        for side, u in sides:
            have = net if side == "long" else -net
            o = Order(MARKET, inst, 0, position_fill="REDUCE_ONLY")
            o.closeout = (side, u)
            if have <= 0:
                errors[side] = "CLOSEOUT_POSITION_DOESNT_EXIST"
            elif u != "ALL" and (u <= 0 or u > have):
                errors[side] = "CLOSEOUT_POSITION_PARTIAL_UNITS_MISSING" if u <= 0 else "CLOSEOUT_POSITION_UNITS_EXCEED_POSITION_SIZE"
            k = have if u == "ALL" else (u if isinstance(u, int) else 0)
            o.units = (-k if side == "long" else k) if have > 0 else 0
            orders.append((side, o))
        if errors:
            from .render import order_echo

            first = next(iter(errors.values()))
            self._begin(acct, request_id)
            keys = {}
            for side, o in orders:
                o.reason = "POSITION_CLOSEOUT"
                r = errors.get(side, "CLOSEOUT_POSITION_REJECT")
                echo = order_echo(o)
                if not o.units:
                    echo.pop("units", None)
                keys[side + "OrderRejectTransaction"] = self._txn(acct, "MARKET_ORDER_REJECT", (echo, r))
            return self._close(acct, Result(400, acct, keys, acct.batch_start, first,
                                            REJECT_MESSAGES.get(first, first)))
        self._begin(acct, request_id)
        keys = {}
        for side, o in orders:
            k2: dict = {"orderCreateTransaction": self._register(acct, o, now, "POSITION_CLOSEOUT")}
            self._execute(acct, o, k2, now)
            for kk, v in k2.items():
                keys[side + kk[0].upper() + kk[1:]] = v
        return self._close(acct, Result(200, acct, keys, acct.batch_start))

    def set_trade_orders(self, account_id: str, spec: str, changes: dict, request_id: Optional[str] = None) -> Result:
        """v20 PUT /trades/{spec}/orders. ``changes`` maps ``takeProfit`` /
        ``stopLoss`` / ``trailingStopLoss`` to an OnFill (create or replace) or
        None (cancel); keys not present are left alone."""
        acct = self.account(account_id)
        self._now = now = self.clock()
        tr = self.find_trade(acct, spec)
        if tr is None or tr.state != "OPEN":
            return Result(404, acct, {}, acct.last_id, "NO_SUCH_TRADE", "The trade ID specified does not exist")
        plan = []
        for key, typ, attr in (("takeProfit", TAKE_PROFIT, "tp"), ("stopLoss", STOP_LOSS, "sl"),
                               ("trailingStopLoss", TRAILING_STOP_LOSS, "tsl")):
            if key not in changes:
                continue
            old = getattr(tr, attr)
            of = changes[key]
            if of is None:
                if old is not None:
                    plan.append((key, old, None))
                continue
            new = Order(typ, tr.inst, -tr.units, price=of.price, tif=of.tif, gtd_ns=of.gtd_ns,
                        client_ext=of.client_ext if of.client_ext is not None else (old.client_ext if old else None),
                        trade_id=tr.id, distance=of.distance, guaranteed=of.guaranteed)
            if old is not None:
                new.replaces_id = old.id
            try:
                self._validate(acct, new, now)
            except SimReject as e:
                self._begin(acct, request_id)
                t = self._txn(acct, typ + "_ORDER_REJECT", (self._echo(new), e.reason))
                return self._close(acct, Result(400, acct, {key + "OrderRejectTransaction": t}, acct.batch_start,
                                                e.reason, e.message))
            plan.append((key, old, new))
        self._begin(acct, request_id)
        keys = {}
        for key, old, new in plan:
            if old is not None:
                keys[key + "OrderCancelTransaction"] = self._cancel(
                    acct, old, "CLIENT_REQUEST_REPLACED" if new is not None else "CLIENT_REQUEST", now)
            if new is not None:
                if old is not None:
                    new.cancelling_txn_for_replace = keys[key + "OrderCancelTransaction"]
                    old.replaced_by_id = None
                k2 = self._accept(acct, new, now, "REPLACEMENT" if old is not None else "CLIENT_ORDER")
                if old is not None:
                    old.replaced_by_id = new.id
                keys[key + "OrderTransaction"] = k2["orderCreateTransaction"]
        return self._close(acct, Result(200, acct, keys, acct.batch_start))

    @staticmethod
    def _echo(o: Order) -> dict:
        from .render import order_echo

        return order_echo(o)

    # ------------------------------------------------------------------ reads

    def transactions_since(self, account_id: str, txn_id: int) -> list:
        return self.account(account_id).since(txn_id)

    def pending_orders(self, account_id: str) -> list:
        return list(self.account(account_id).pending.values())

    def open_trades(self, account_id: str) -> list:
        return list(self.account(account_id).open_trades.values())


if HAVE_KERNEL:  # the kernel's fast paths build these (it cannot import this module: it is imported by it)
    from ._fill import _bind

    _bind(Venue, TxnBatch, Fill, Txn)
