# cython: language_level=3
"""Compiled kernel of the simulated venue: the model objects and the market-order fast path.

Two things make the in-process venue slow in pure Python, and this module
removes both for the common case:

* **Garbage-collector pressure.** The venue keeps its recent history (the
  last ``history`` transactions and every order and trade they concern, see
  ``trim``; the v20 API can ask for any of them). As Python objects they are
  tracked by the cyclic collector, so every full collection walks the whole
  history. Here ``Order``, ``Trade``, ``Position`` and ``OnFill`` are
  extension types marked ``no_gc``: the collector never tracks or traverses
  them, so booking a fill adds no long-lived tracked object (closing-id and
  closed-trade records are tuples of ints, which the collector untracks).
  They cannot form reference cycles among themselves that matter: the venue
  holds each one until ``trim`` forgets it (or the venue is dropped).
* **Interpreter overhead.** ``place_market`` runs a plain market order (no
  on-fill exits, no price bound, no slippage, DEFAULT/REDUCE_FIRST position
  fill, FOK/IOC, fillable in full) from validation to the booked fill in
  C-level code. It first checks, without changing anything, that the order
  is one it handles and that it will fill; otherwise it returns None and the
  caller runs the general Python path (``Venue.place_order``), which is the
  reference for every behaviour. The two paths produce identical
  transactions and state (tests/sim/test_fill_kernel.py runs random order
  sequences through both and compares the v20 JSON).

Numbers are Python ints at the contract scales (prices 10**9, whole units,
money 10**6, rates 10**12) and every rounding is the venue's single
half-even rounding of the exact product (``venue.py`` docstring).
"""
cimport cython
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.long cimport PyLong_AsSsize_t
from cpython.list cimport PyList_Append, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_SIZE

cdef extern from *:
    const Py_ssize_t PY_SSIZE_T_MAX

cdef object RATE_SCALE = 10**12
cdef object PRICE_SCALE = 10**9
cdef object MONEY_STEP = 100
cdef object PL_DEN = PRICE_SCALE * RATE_SCALE // 10**6 * 100
cdef object PL_DEN2 = 2 * PL_DEN
cdef object MARGIN_DEN2 = 2 * (RATE_SCALE * PRICE_SCALE * RATE_SCALE // 10**6 * 100)
cdef object ZERO = 0

cdef dict TIF_DEFAULT = {"MARKET": "FOK"}


cdef extern from *:
    """
    typedef __int128 fx_i128;
    static inline int fx_mul(fx_i128 a, fx_i128 b, fx_i128 *out) { return __builtin_mul_overflow(a, b, out); }
    """
    ctypedef long long fx_i128  # __int128 in C; never converted to or from Python directly
    int fx_mul(fx_i128 a, fx_i128 b, fx_i128 *out)

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int *) except? -1

cdef fx_i128 PL_DEN_C = <fx_i128>100000000000000000  # PL_DEN = 10**17
cdef fx_i128 PL_DEN2_C = <fx_i128>200000000000000000
cdef fx_i128 MARGIN_DEN2_C = (<fx_i128>200000000000000000) * 1000000000000  # 2 * 10**29
cdef long long MAX_MONEY_STEPS = 9 * 10**15 // 100


cdef object mul_rhe(object a, object b, object c, object d, fx_i128 den, object den_py):
    """``rhe(a * b * c * d, den) * MONEY_STEP``: the exact product divided and
    rounded half-even once. In C (int128, overflow-checked) when every factor
    fits int64 and the product fits int128, else in Python ints; both give
    the same integer (tests compare against ``round_half_even_int``)."""
    cdef int ov = 0
    cdef long long x = PyLong_AsLongLongAndOverflow(a, &ov)
    cdef long long y, z, w
    cdef fx_i128 p, m, q, r
    if not ov:
        y = PyLong_AsLongLongAndOverflow(b, &ov)
    if not ov:
        z = PyLong_AsLongLongAndOverflow(c, &ov)
    if not ov:
        w = PyLong_AsLongLongAndOverflow(d, &ov)
    if not ov and not fx_mul(<fx_i128>x, <fx_i128>y, &p) and not fx_mul(p, <fx_i128>z, &p) \
            and not fx_mul(p, <fx_i128>w, &p):
        m = -p if p < 0 else p
        if m >= 0:  # not the one unnegatable value
            q = m // den
            r = m - q * den
            if 2 * r > den or (2 * r == den and (q & 1)):
                q += 1
            if q <= MAX_MONEY_STEPS:
                return (-<long long>q if p < 0 else <long long>q) * 100
    return rhe(a * b * c * d, den_py) * MONEY_STEP


cdef inline object rhe(object num, object den):
    """num / den rounded half-even (den > 0), Python ints of any size."""
    q, r = divmod(num, den)
    twice = r + r
    if twice > den or (twice == den and (q & 1)):
        q += 1
    return q


@cython.no_gc
cdef class OnFill:
    """A dependent-order spec attached to an entry order (TP/SL/TSL on fill)."""

    cdef public object price, distance, tif, gtd_ns, client_ext, guaranteed

    def __init__(self, price=None, distance=None, tif="GTC", gtd_ns=None, client_ext=None, guaranteed=None):
        self.price = price
        self.distance = distance
        self.tif = tif
        self.gtd_ns = gtd_ns
        self.client_ext = client_ext
        self.guaranteed = guaranteed


@cython.no_gc
@cython.final
cdef class _OrderMore:
    """The fields of an ``Order`` that a plain market order leaves None
    (request options, exits, cancel and replace links, trigger state): kept
    apart so that the order the venue retains for every fill is half the
    size (fewer cache lines to write when it is made and to read and free
    when it is forgotten). ``Order`` reads and writes them as properties."""

    cdef object reason, trigger, position_fill, fill_reduced, trade_opened_id
    cdef object price, price_bound, gtd_ns, trade_client_ext, tp, sl, tsl, trade_id
    cdef object client_trade_id, distance, guaranteed, trade_reduced_id, cancel_txn, cancelled_ns, replaces_id, replaced_by_id
    cdef object on_fill_txn, initial_market_price, trailing_value, expire_ns, closeout, trade_close_units, cancelling_txn_for_replace


@cython.no_gc
cdef class Order:
    """An order as requested and as it lives at the venue.

    The request fields never change after creation (a replace makes a new
    order), so the order object doubles as the payload of its create
    transaction. The ``fill_*`` fields are set by its fill (an order fills at
    most once) and read only after it. The fields a plain market order
    leaves None live in ``_x`` (``_OrderMore``, made on the first non-None
    write), read and written through properties of the same names; so do
    ``reason``, ``trigger`` and ``position_fill`` while they hold their
    defaults ("CLIENT_ORDER", "DEFAULT", "DEFAULT") and ``fill_reduced``;
    ``trade_opened_id`` is the opened trade's id (``fill_trade``). At 208
    bytes an order spans 4 cache lines instead of 5.
    """

    # the fields the fast path writes and ``_forget_order`` reads first
    cdef public object id, state, fill_txn
    cdef object _ce  # client_ext, or the bare client id str the broker's fast path stores (see client_ext)
    cdef public object fill_closed, type, inst, units, tif, create_ns, filled_ns
    cdef public object fill_units, fill_price, fill_reason, fill_pl, fill_balance, fill_trade
    cdef public object fill_hs, fill_bid, fill_ask, fill_ptime, fill_gain, fill_loss
    cdef _OrderMore _x

    def __init__(self, type_, inst=None, units=0, *, price=None, price_bound=None, tif=None, gtd_ns=None,
                 position_fill="DEFAULT", trigger="DEFAULT", client_ext=None, trade_client_ext=None, tp=None,
                 sl=None, tsl=None, trade_id=None, client_trade_id=None, distance=None, guaranteed=None):
        self.id = 0
        self.type = type_
        self.inst = inst
        self.units = units
        self.price = price
        self.price_bound = price_bound
        if tif is None:
            tif = TIF_DEFAULT.get(type_, "GTC")
        self.tif = tif
        self.gtd_ns = gtd_ns
        self.position_fill = position_fill
        self.trigger = trigger
        self._ce = client_ext
        self.trade_client_ext = trade_client_ext
        self.tp = tp
        self.sl = sl
        self.tsl = tsl
        self.trade_id = trade_id
        self.client_trade_id = client_trade_id
        self.distance = distance
        self.guaranteed = guaranteed
        self.state = "PENDING"
        self.create_ns = 0
        # every other field starts as None (or its default, see the class docstring) (extension-type object fields do)

    @property
    def price(self):
        return self._x.price if self._x is not None else None

    @price.setter
    def price(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.price = v

    @property
    def price_bound(self):
        return self._x.price_bound if self._x is not None else None

    @price_bound.setter
    def price_bound(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.price_bound = v

    @property
    def gtd_ns(self):
        return self._x.gtd_ns if self._x is not None else None

    @gtd_ns.setter
    def gtd_ns(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.gtd_ns = v

    @property
    def trade_client_ext(self):
        return self._x.trade_client_ext if self._x is not None else None

    @trade_client_ext.setter
    def trade_client_ext(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.trade_client_ext = v

    @property
    def tp(self):
        return self._x.tp if self._x is not None else None

    @tp.setter
    def tp(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.tp = v

    @property
    def sl(self):
        return self._x.sl if self._x is not None else None

    @sl.setter
    def sl(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.sl = v

    @property
    def tsl(self):
        return self._x.tsl if self._x is not None else None

    @tsl.setter
    def tsl(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.tsl = v

    @property
    def trade_id(self):
        return self._x.trade_id if self._x is not None else None

    @trade_id.setter
    def trade_id(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.trade_id = v

    @property
    def client_trade_id(self):
        return self._x.client_trade_id if self._x is not None else None

    @client_trade_id.setter
    def client_trade_id(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.client_trade_id = v

    @property
    def distance(self):
        return self._x.distance if self._x is not None else None

    @distance.setter
    def distance(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.distance = v

    @property
    def guaranteed(self):
        return self._x.guaranteed if self._x is not None else None

    @guaranteed.setter
    def guaranteed(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.guaranteed = v

    @property
    def trade_reduced_id(self):
        return self._x.trade_reduced_id if self._x is not None else None

    @trade_reduced_id.setter
    def trade_reduced_id(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.trade_reduced_id = v

    @property
    def cancel_txn(self):
        return self._x.cancel_txn if self._x is not None else None

    @cancel_txn.setter
    def cancel_txn(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.cancel_txn = v

    @property
    def cancelled_ns(self):
        return self._x.cancelled_ns if self._x is not None else None

    @cancelled_ns.setter
    def cancelled_ns(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.cancelled_ns = v

    @property
    def replaces_id(self):
        return self._x.replaces_id if self._x is not None else None

    @replaces_id.setter
    def replaces_id(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.replaces_id = v

    @property
    def replaced_by_id(self):
        return self._x.replaced_by_id if self._x is not None else None

    @replaced_by_id.setter
    def replaced_by_id(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.replaced_by_id = v

    @property
    def on_fill_txn(self):
        return self._x.on_fill_txn if self._x is not None else None

    @on_fill_txn.setter
    def on_fill_txn(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.on_fill_txn = v

    @property
    def initial_market_price(self):
        return self._x.initial_market_price if self._x is not None else None

    @initial_market_price.setter
    def initial_market_price(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.initial_market_price = v

    @property
    def trailing_value(self):
        return self._x.trailing_value if self._x is not None else None

    @trailing_value.setter
    def trailing_value(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.trailing_value = v

    @property
    def expire_ns(self):
        return self._x.expire_ns if self._x is not None else None

    @expire_ns.setter
    def expire_ns(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.expire_ns = v

    @property
    def closeout(self):
        return self._x.closeout if self._x is not None else None

    @closeout.setter
    def closeout(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.closeout = v

    @property
    def trade_close_units(self):
        return self._x.trade_close_units if self._x is not None else None

    @trade_close_units.setter
    def trade_close_units(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.trade_close_units = v

    @property
    def cancelling_txn_for_replace(self):
        return self._x.cancelling_txn_for_replace if self._x is not None else None

    @cancelling_txn_for_replace.setter
    def cancelling_txn_for_replace(self, v):
        if self._x is None:
            if v is None:
                return
            _more(self)
        self._x.cancelling_txn_for_replace = v

    @property
    def reason(self):
        return self._x.reason if self._x is not None else "CLIENT_ORDER"

    @reason.setter
    def reason(self, v):
        if self._x is None and type(v) is str and v == "CLIENT_ORDER":
            return
        _more(self).reason = v

    @property
    def trigger(self):
        return self._x.trigger if self._x is not None else "DEFAULT"

    @trigger.setter
    def trigger(self, v):
        if self._x is None and type(v) is str and v == "DEFAULT":
            return
        _more(self).trigger = v

    @property
    def position_fill(self):
        return self._x.position_fill if self._x is not None else "DEFAULT"

    @position_fill.setter
    def position_fill(self, v):
        if self._x is None and type(v) is str and v == "DEFAULT":
            return
        _more(self).position_fill = v

    @property
    def fill_reduced(self):
        return self._x.fill_reduced if self._x is not None else None

    @fill_reduced.setter
    def fill_reduced(self, v):
        if self._x is None and v is None:
            return
        _more(self).fill_reduced = v

    @property
    def trade_opened_id(self):
        """The id of the trade the fill opened: ``fill_trade``'s, unless set
        to something else."""
        if self._x is not None and self._x.trade_opened_id is not None:
            return self._x.trade_opened_id
        ft = self.fill_trade
        return (<Trade>ft).id if ft is not None else None

    @trade_opened_id.setter
    def trade_opened_id(self, v):
        ft = self.fill_trade
        if self._x is None and (v is None if ft is None else v == (<Trade>ft).id):
            return
        _more(self).trade_opened_id = v

    @property
    def client_ext(self):
        """The order's clientExtensions dict (or None). The broker's fast
        path stores a bare client id str instead (``{"id": cid}`` is all a
        plain market order has), so a retained order holds no dict of its
        own nobody reads; the dict is made, and kept, on first read."""
        ce = self._ce
        if type(ce) is str:
            ce = self._ce = {"id": ce}
        return ce

    @client_ext.setter
    def client_ext(self, value):
        self._ce = value

    @property
    def client_id(self):
        ce = self._ce
        if type(ce) is str:
            return ce
        return ce.get("id") if ce else None


cdef _OrderMore _more(Order o):
    """``o._x``, made (with the defaults) if it is not there yet."""
    cdef _OrderMore x = o._x
    if x is None:
        x = _OrderMore.__new__(_OrderMore)
        x.reason = "CLIENT_ORDER"
        x.trigger = "DEFAULT"
        x.position_fill = "DEFAULT"
        o._x = x
    return x


cdef inline object _order_cid(Order o):
    """``o.client_id`` without making the dict."""
    ce = o._ce
    if type(ce) is str:
        return ce
    if type(ce) is dict:
        return (<dict>ce).get("id")
    return ce.get("id") if ce else None


@cython.no_gc
cdef class Trade:
    cdef public object id, inst, price, open_ns, state, initial_units, initial_margin, units, realized_pl
    cdef object _closing  # closing_txn_ids: None, a tuple, or the one closing fill's id alone (an int)
    cdef public object close_ns, client_ext, tp, sl, tsl, closed_units, closed_value
    cdef public object half_spread

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
        self._closing = None
        self.client_ext = client_ext
        self.closed_units = 0  # sum of |units| closed, for averageClosePrice
        self.closed_value = 0  # sum of |units| * close price

    @property
    def closing_txn_ids(self):
        """Tuple of the fill ids that reduced or closed it (None before).
        The fast path stores a trade's only closing fill as the bare id (most
        trades close at once), so a retained closed trade holds no tuple of
        its own; it is made when read."""
        c = self._closing
        return (c,) if type(c) is int else c

    @closing_txn_ids.setter
    def closing_txn_ids(self, value):
        self._closing = value

    @property
    def client_id(self):
        ce = self.client_ext
        return ce.get("id") if ce else None


@cython.no_gc
cdef class Position:
    """Net position of one instrument (non-hedging: all open trades one way).

    ``cost`` is the sum of units * price over open trades, exact, so the
    unrealized P/L of the whole position is one product however many trades
    it holds.
    """

    cdef public object inst, units, cost, pl, long_pl, short_pl, resettable_pl
    cdef public list trades

    def __init__(self, inst):
        self.inst = inst
        self.trades = []
        self.units = 0
        self.cost = 0
        self.pl = 0
        self.long_pl = 0
        self.short_pl = 0
        self.resettable_pl = 0


# --------------------------------------------------------------------------- account and log


@cython.final
cdef class TxnLog:
    """An account's transactions as parallel lists: the kernel's typed copy of
    ``venue.TxnLog`` (same fields, same reads), so the fill path appends to
    the lists without attribute lookups.

    Indexing is by absolute position (transaction id - 1) and ``len()`` is the
    last id, whatever has been forgotten: ids ``base + 1`` .. ``len()`` are
    retained (``Account.history``); a forgotten position raises IndexError
    and slices skip it.

    Unlike ``venue.TxnLog``, the lists start with ``dead`` forgotten entries
    (None): ``_trim`` clears what it forgets in place and removes the dead
    prefix only once it is twice as long as the rest, so forgetting does not move
    every retained entry each time (list position ``dead + i`` is id
    ``base + 1 + i``)."""

    cdef public list types, times, batches, reqs, ps
    cdef public Py_ssize_t base
    cdef Py_ssize_t dead

    def __init__(self):
        self.types = []
        self.times = []
        self.batches = []
        self.reqs = []
        self.ps = []
        self.base = 0

    def __len__(self):
        return self.base + len(self.types) - self.dead

    def _view(self, Py_ssize_t i):
        """The transaction at absolute position ``i`` (id ``i + 1``), retained."""
        cdef Py_ssize_t k = i - self.base + self.dead
        typ = self.types[k]
        p = self.ps[k]
        if typ == "ORDER_FILL":
            p = _Fill(p)
        return _Txn(i + 1, typ, self.times[k], self.batches[k], self.reqs[k], p)

    def __getitem__(self, k):
        n = self.base + len(self.types) - self.dead
        if isinstance(k, slice):
            return [self._view(i) for i in range(*k.indices(n)) if i >= self.base]
        if k < 0:
            k += n
        if not self.base <= k < n:
            raise IndexError(k)
        return self._view(k)

    def __iter__(self):
        b = self.base
        return (self._view(b + i) for i in range(len(self.types) - self.dead))


@cython.final
cdef class Account:
    """The kernel's typed copy of ``venue.Account`` (same fields and methods)."""

    cdef public object id, user_id, currency, alias, created_ns, balance, pl, resettable_pl, financing
    cdef public object commission, last_id, last_fill_ns, batch, batch_start, req, hedging, gslo_mode
    cdef public object margin_call_enter_ns, history
    cdef public Py_ssize_t trim_at
    cdef public TxnLog txns
    cdef public dict orders, pending, by_client, trades, open_trades, trades_by_client, positions
    cdef public list routes

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
        self.orders = {}
        self.pending = {}
        self.by_client = {}
        self.trades = {}
        self.open_trades = {}
        self.trades_by_client = {}
        self.positions = {}
        self.last_fill_ns = None
        self.batch = 0
        self.batch_start = 0
        self.req = None
        self.hedging = False
        self.gslo_mode = "ALLOWED"
        self.margin_call_enter_ns = None
        self.routes = []  # per instrument index: conversion route to this account's currency
        self.history = None  # transactions retained (None: all); set by the venue (Venue(history=...))
        self.trim_at = PY_SSIZE_T_MAX  # log length at which the oldest are forgotten (history + TRIM_BATCH)

    def txn(self, txn_id):
        if self.txns.base < txn_id <= self.last_id:
            return self.txns[txn_id - 1]
        return None

    def since(self, txn_id):
        return self.txns[max(0, txn_id):self.last_id]


cdef class VenueCore:
    """Base class of ``venue.Venue`` (with the kernel): the attributes the
    market-order fast path reads on every order, as C fields (an instance
    attribute of a Python object is a dictionary lookup per read).
    ``Venue.__init__`` sets every one; Python code reads and writes them as
    before."""

    cdef public dict accounts, by_name
    cdef public list bids, asks, ptimes, _txn_listeners
    cdef public object clock, slippage_steps, liquidity, _now
    cdef public bint fast_path


# --------------------------------------------------------------------------- bounded history

TRIM_BATCH = 512  # transactions forgotten at once past ``history`` (venue.TRIM_BATCH is this)


def trim(Account acct):
    """Forget ``acct``'s oldest transactions down to its last ``history``, and
    with them every finished order and closed trade they were the last word
    on (``venue.Venue`` docstring, "Bounded history"); ``venue._trim`` is the
    reference this must match. Called at the start of a batch once the log
    holds ``trim_at`` transactions, so one call forgets TRIM_BATCH of them:
    O(1) amortised per transaction, and never a batch in progress."""
    _trim(acct)


cdef int _trim(Account acct) except -1:
    cdef TxnLog log = acct.txns
    h = acct.history
    if h is None:
        return 0
    cdef Py_ssize_t d = log.dead
    cdef Py_ssize_t k = PyList_GET_SIZE(log.types) - d - <Py_ssize_t>h
    if k <= 0:
        return 0
    cdef Py_ssize_t cutoff = log.base + k  # ids <= cutoff are forgotten
    cdef list ps = log.ps, types = log.types, times = log.times, batches = log.batches, reqs = log.reqs
    cdef dict orders = acct.orders, by_client = acct.by_client, trades = acct.trades
    cdef Py_ssize_t j
    cdef PyObject *p
    cdef PyObject *prev = NULL
    for j in range(d, d + k):
        p = PyList_GET_ITEM(ps, j)
        if p != prev:  # a market order's create and fill are one object: look at it once
            x = <object>p
            if type(x) is Order:  # an order's create or its fill
                prev = p
                _forget_order(<Order>x, cutoff, orders, by_client, trades)
            elif type(x) is tuple and PyTuple_GET_SIZE(x) == 2 and type((<tuple>x)[0]) is Order:  # a cancel
                _forget_order(<Order>(<tuple>x)[0], cutoff, orders, by_client, trades)
            x = None
        # drop the transaction's references now, while what they point at is
        # in cache from the look above (a forgotten order is freed here, not
        # in a second pass over TRIM_BATCH cold entries)
        fx_list_clear(ps, j)
        fx_list_clear(times, j)
        fx_list_clear(batches, j)
        fx_list_clear(reqs, j)
        fx_list_clear(types, j)
    d += k
    if d >= 2 * (PyList_GET_SIZE(types) - d):
        # the dead prefix is twice as long as what is retained: remove it
        # (moving the retained entries once per ~2 * history/TRIM_BATCH trims,
        # not each)
        fx_list_drop_dead(types, d)
        fx_list_drop_dead(times, d)
        fx_list_drop_dead(batches, d)
        fx_list_drop_dead(reqs, d)
        fx_list_drop_dead(ps, d)
        d = 0
    log.dead = d
    log.base = cutoff
    return 0


cdef inline bint _after(object txn_id, Py_ssize_t cutoff) except -1:
    """A transaction id (int or None) later than ``cutoff``."""
    return txn_id is not None and PyLong_AsSsize_t(txn_id) > cutoff


cdef int _forget_order(Order o, Py_ssize_t cutoff, dict orders, dict by_client, dict trades) except -1:
    """Forget ``o`` if it is finished and no transaction after ``cutoff``
    concerns it; with it the trades its fill closed, when that fill was the
    last of their closing transactions. Pending orders and open trades stay."""
    st = o.state
    if st != "FILLED" and st != "CANCELLED":
        return 0
    oid = o.id
    if _after(oid, cutoff) or _after(o.fill_txn, cutoff) or (o._x is not None and _after(o._x.cancel_txn, cutoff)):
        return 0
    if PyDict_GetItem(orders, oid) != <PyObject *>o:
        return 0  # forgotten already (its other transaction came first)
    del orders[oid]
    cid = _order_cid(o)
    if cid is not None and PyDict_GetItem(by_client, cid) == <PyObject *>o:
        del by_client[cid]
    fc = o.fill_closed
    if fc is not None:
        for e in <tuple?>fc:
            tid = (<tuple?>e)[0]
            tr = trades.get(tid)
            if tr is not None and (<Trade>tr).state == "CLOSED":
                ct = (<Trade>tr)._closing
                if type(ct) is not int:
                    ct = ct[len(ct) - 1]  # its last closing fill (no negative index: wraparound is off)
                if not _after(ct, cutoff):
                    del trades[tid]
    return 0


# classes of venue.py the kernel needs, bound by venue.py once they exist (no circular import)
cdef object _Venue = None
cdef object _TxnBatch = None
cdef object _Fill = None
cdef object _Txn = None


def _bind(venue_cls, txn_batch_cls, fill_cls, txn_cls):
    global _Venue, _TxnBatch, _Fill, _Txn
    _Venue, _TxnBatch, _Fill, _Txn = venue_cls, txn_batch_cls, fill_cls, txn_cls


# --------------------------------------------------------------------------- slot access

# Plain ``__slots__`` classes the kernel reads on every order (the instrument,
# the engine's OrderRequest) and the event it builds (OrderFilled): their
# slots are read and written at the offsets their member descriptors give,
# which is what ``member_get``/``member_set`` do without the generic
# attribute lookup around them. Only for objects of exactly that class, and
# only while every field is such a slot; otherwise the general path runs.

from types import MemberDescriptorType as _MemberDescr

cdef extern from *:
    """
    #include "structmember.h"
    static inline PyObject *fx_slot(PyObject *o, Py_ssize_t off) { return *(PyObject **)((char *)o + off); }
    static inline void fx_list_clear(PyObject *l, Py_ssize_t j) {
        PyObject *x = PyList_GET_ITEM(l, j);
        Py_INCREF(Py_None);
        PyList_SET_ITEM(l, j, Py_None);
        Py_DECREF(x);
    }
    /* Remove the first d items of a list, each Py_None (fx_list_clear), keeping
       its capacity: ``del l[:d]`` would also shrink the buffer when less than
       half of it stays, and the list, growing back by ~1/8 at a time, would be
       copied again and again until the next compaction. */
    static inline void fx_list_drop_dead(PyObject *l, Py_ssize_t d) {
        PyListObject *a = (PyListObject *)l;
        Py_ssize_t n = Py_SIZE(a) - d, i;
        for (i = 0; i < d; i++)
            Py_DECREF(a->ob_item[i]);
        memmove(a->ob_item, a->ob_item + d, (size_t)n * sizeof(PyObject *));
        Py_SET_SIZE(a, n);
    }
    static inline void fx_slot_init(PyObject *o, Py_ssize_t off, PyObject *v) {
        Py_INCREF(v);
        *(PyObject **)((char *)o + off) = v;
    }
    static inline PyObject *fx_alloc(PyObject *t) { return ((PyTypeObject *)t)->tp_alloc((PyTypeObject *)t, 0); }
    static inline Py_ssize_t fx_member_offset(PyObject *d) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        return (m->type == T_OBJECT_EX && !(m->flags & READONLY)) ? m->offset : -1;
    }
    """
    PyObject *fx_slot(object o, Py_ssize_t off)
    void fx_list_clear(list l, Py_ssize_t j)
    void fx_list_drop_dead(list l, Py_ssize_t d)
    void fx_slot_init(object o, Py_ssize_t off, object v)
    Py_ssize_t fx_member_offset(object d)
    object fx_alloc(object t)


cdef bint _offsets(cls, tuple names, Py_ssize_t *out) except -1:
    """The slot offsets of ``names`` in ``cls`` (its own slots), or False."""
    cdef Py_ssize_t k = 0, off
    for n in names:
        d = cls.__dict__.get(n)
        if type(d) is not _MemberDescr:
            return False
        off = fx_member_offset(d)
        if off < 0:
            return False
        out[k] = off
        k += 1
    return True


from fastexec.brokers.base import OrderFilled as _OrderFilled, OrderRequest as _OrderRequest
from fastexec.sim.instruments import SimInstrument as _SimInstrument

# SimInstrument
cdef Py_ssize_t I_OFF[5]
cdef bint I_OK = _offsets(_SimInstrument, ("index", "name", "minimum_trade_size", "maximum_order_units",
                                           "margin_rate"), I_OFF)
cdef enum:
    I_INDEX = 0
    I_NAME = 1
    I_MIN = 2
    I_MAX = 3
    I_MARGIN = 4

# OrderRequest (all its fields: a new field makes this False, and the general path runs)
_REQUEST_FIELDS = ("client_id", "account_id", "instrument", "units", "type", "price", "price_bound", "time_in_force",
                   "gtd_time_ns", "position_fill", "trigger_condition", "stop_loss", "take_profit", "trailing_stop",
                   "tag", "comment")
cdef Py_ssize_t R_OFF[16]
cdef bint R_OK = (tuple(getattr(_OrderRequest, "__dataclass_fields__", {})) == _REQUEST_FIELDS
                  and _offsets(_OrderRequest, _REQUEST_FIELDS, R_OFF))

# OrderFilled: built field by field (what the dataclass's own __init__ does
# for a frozen slotted class, without its per-field Python calls); only while
# the dataclass has exactly these fields, each a slot, else through its
# constructor
_FILLED_FIELDS = ("account_id", "client_id", "broker_order_id", "txn_id", "instrument", "units", "price", "reason",
                  "time_ns", "pl", "financing", "commission", "account_balance", "trade_opened_id", "trades_closed")
cdef Py_ssize_t F_OFF[15]
cdef bint F_OK = (tuple(getattr(_OrderFilled, "__dataclass_fields__", {})) == _FILLED_FIELDS
                  and _offsets(_OrderFilled, _FILLED_FIELDS, F_OFF))
DIRECT_EVENTS = F_OK  # the fast construction is in use (tests check it)


cdef inline object _islot(inst, Py_ssize_t k):
    """A SimInstrument field (exact type checked by the caller)."""
    cdef PyObject *p = fx_slot(inst, I_OFF[k])
    if p is NULL:
        raise AttributeError(("index", "name", "minimum_trade_size", "maximum_order_units", "margin_rate")[k])
    return <object>p


cdef object _filled(account_id, client_id, broker_order_id, txn_id, instrument, units, price, reason, time_ns, pl,
                    account_balance, trade_opened_id, trades_closed):
    if not F_OK:
        return _OrderFilled(account_id, client_id, broker_order_id, txn_id, instrument, units, price, reason, time_ns,
                            pl, 0, 0, account_balance, trade_opened_id, trades_closed)
    ev = fx_alloc(_OrderFilled)
    fx_slot_init(ev, F_OFF[0], account_id)
    fx_slot_init(ev, F_OFF[1], client_id)
    fx_slot_init(ev, F_OFF[2], broker_order_id)
    fx_slot_init(ev, F_OFF[3], txn_id)
    fx_slot_init(ev, F_OFF[4], instrument)
    fx_slot_init(ev, F_OFF[5], units)
    fx_slot_init(ev, F_OFF[6], price)
    fx_slot_init(ev, F_OFF[7], reason)
    fx_slot_init(ev, F_OFF[8], time_ns)
    fx_slot_init(ev, F_OFF[9], pl)
    fx_slot_init(ev, F_OFF[10], ZERO)
    fx_slot_init(ev, F_OFF[11], ZERO)
    fx_slot_init(ev, F_OFF[12], account_balance)
    fx_slot_init(ev, F_OFF[13], trade_opened_id)
    fx_slot_init(ev, F_OFF[14], trades_closed)
    return ev


# --------------------------------------------------------------------------- kernel


cdef tuple UNIT_FACTORS = (RATE_SCALE, RATE_SCALE, RATE_SCALE)


cdef inline tuple _factors(venue, Account acct, inst, Py_ssize_t i):
    """(gain, loss, mid) conversion factors; the same-currency case without a call."""
    cdef list routes = acct.routes
    if i < PyList_GET_SIZE(routes):
        r = routes[i]
        if r is not None and not r:
            return UNIT_FACTORS
    return tuple(venue._acct_factors(acct, inst))


cdef inline object _append(TxnLog log, str typ, object now, object batch, object req, object p):
    PyList_Append(log.types, typ)
    PyList_Append(log.times, now)
    PyList_Append(log.batches, batch)
    PyList_Append(log.reqs, req)
    PyList_Append(log.ps, p)
    return log.base - log.dead + PyList_GET_SIZE(log.types)  # the new transaction's id


def _mul_rhe(a, b, c, d, den):
    """Test hook: ``mul_rhe`` with a Python denominator (one of the venue's)."""
    dens = {PL_DEN: PL_DEN_C, PL_DEN2: PL_DEN2_C, MARGIN_DEN2: MARGIN_DEN2_C}
    return mul_rhe(a, b, c, d, dens[den], den)


def place_market(venue, Account acct, Order o, request_id):
    """Run a plain market order to its fill, or return None (nothing changed).

    Returns the v20 response keys (``orderCreateTransaction`` and
    ``orderFillTransaction`` transaction ids) with the batch open: the caller
    closes it (``Venue._end``) and builds the ``Result``.
    """
    if not isinstance(venue, VenueCore) or not _book(<VenueCore>venue, acct, o, request_id):
        return None
    return {"orderCreateTransaction": o.id, "orderFillTransaction": o.fill_txn}


cdef bint _book(VenueCore venue, Account acct, Order o, request_id) except -1:
    """``place_market``: True when booked (create + fill appended, batch
    open), False with nothing changed for an order the general path must run."""
    # ---- is this an order the kernel handles, and will it fill? (no mutation)
    if o.type != "MARKET":
        return False
    cdef _OrderMore x = o._x
    if x is not None:
        if x.tp is not None or x.sl is not None or x.tsl is not None:
            return False
        if x.price_bound is not None or x.trade_client_ext is not None or x.trade_id is not None:
            return False
        if x.closeout is not None or x.trade_close_units is not None or x.replaces_id is not None:
            return False
    pf = "DEFAULT"
    if x is not None:
        if x.reason != "CLIENT_ORDER" or x.trigger != "DEFAULT":
            return False
        pf = x.position_fill
    tif = o.tif
    if tif != "FOK" and tif != "IOC":
        return False
    if pf != "DEFAULT" and pf != "REDUCE_FIRST":
        return False
    inst = o.inst
    if type(inst) is not _SimInstrument or not I_OK:
        return False
    units = o.units
    if type(units) is not int or units == 0:
        return False
    if venue.slippage_steps:
        return False
    buy = units > 0
    au = units if buy else -units
    if au > _islot(inst, I_MAX) or au < _islot(inst, I_MIN):
        return False
    cid = _order_cid(o)
    cdef dict by_client = acct.by_client
    if cid is not None:
        if type(cid) is not str or len(<str>cid) == 0 or len(<str>cid) > 128:
            return False
        other = by_client.get(cid)
        if other is not None and (<Order?>other).state == "PENDING":
            return False
    if au > venue.liquidity:
        return False
    ii = _islot(inst, I_INDEX)
    cdef Py_ssize_t i = ii
    cdef list bids = venue.bids
    cdef list asks = venue.asks
    bid = bids[i]
    ask = asks[i]
    px = ask if buy else bid
    cdef dict positions = acct.positions
    cdef Position pos = positions.get(ii)
    net = pos.units if pos is not None else ZERO
    reducible = ZERO
    if net and (net > 0) != buy:
        reducible = -net if net < 0 else net
        if reducible > au:
            reducible = au
    opening = au - reducible if reducible else au
    cdef Position p2
    cdef Py_ssize_t j
    if opening > 0:
        # margin: the position after the fill must be covered by NAV
        after = net + units
        nav = acct.balance
        mu = ZERO
        for p2 in positions.values():
            u = p2.units
            if u:
                pinst = p2.inst
                j = pinst.index
                b2 = bids[j]
                a2 = asks[j]
                gain2, loss2, midf2 = _factors(venue, acct, pinst, j)
                q = u * (b2 if u > 0 else a2) - p2.cost
                nav += mul_rhe(q, gain2 if q >= 0 else loss2, 1, 1, PL_DEN_C, PL_DEN)
                if j != i:
                    mu += mul_rhe(pinst.margin_rate, u if u > 0 else -u, b2 + a2, midf2, MARGIN_DEN2_C, MARGIN_DEN2)
        midf = _factors(venue, acct, inst, i)[2]
        mu += mul_rhe(_islot(inst, I_MARGIN), after if after > 0 else -after, bid + ask, midf, MARGIN_DEN2_C,
                      MARGIN_DEN2)
        if mu > nav:
            return False

    # ---- book it: create + fill in one batch
    cdef TxnLog log = acct.txns
    if PyList_GET_SIZE(log.types) - log.dead >= acct.trim_at:
        _trim(acct)  # bounded history (Venue._begin does the same on the general path)
    now = venue.clock()
    venue._now = now
    last = acct.last_id
    batch = last + 1
    acct.batch = batch
    acct.batch_start = last
    acct.req = request_id
    _append(log, "MARKET_ORDER", now, batch, request_id, o)
    oid = batch  # the batch's first transaction: the same id, one int object for both
    o.id = oid
    o.create_ns = now
    acct.orders[oid] = o
    if cid is not None:
        by_client[cid] = o
    fid = _append(log, "ORDER_FILL", now, batch, request_id, o)
    acct.last_id = fid

    gain, loss, midf = _factors(venue, acct, inst, i)
    o.fill_units = units
    o.fill_price = px
    o.fill_reason = "MARKET_ORDER"
    o.fill_bid = bid
    o.fill_ask = ask
    o.fill_ptime = venue.ptimes[i]
    o.fill_gain = gain
    o.fill_loss = loss
    o.fill_trade = None
    o.fill_closed = None
    o.state = "FILLED"  # before closing trades, so an exit does not cancel itself as a dependent
    if pos is None:
        pos = Position(inst)
        positions[ii] = pos
    spread = ask - bid
    total_pl = ZERO
    total_hs = ZERO
    cdef Trade tr
    cdef list trades
    cdef list closed
    cdef dict open_trades, trades_by_client
    if reducible:
        left = reducible
        trades = pos.trades
        closed = None
        open_trades = acct.open_trades
        trades_by_client = acct.trades_by_client
        cu = ZERO
        while left:
            tr = trades[0]
            tu = tr.units
            atu = tu if tu > 0 else -tu
            k = atu if atu <= left else left
            cu = k if tu > 0 else -k  # trade-direction units closed
            dpx = px - tr.price
            # the sign of cu * dpx picks the factor: a profit converts at gain, a loss at loss
            pl = mul_rhe(cu, dpx, gain if (cu > 0) == (dpx > 0) or not dpx else loss, 1, PL_DEN_C, PL_DEN)
            hs = mul_rhe(k, spread, loss, 1, PL_DEN2_C, PL_DEN2)
            tr.units = tu - cu
            # a sum whose first term is 0 is that term: no new int retained for it
            # (here and in the sums below: one object less per retained fill)
            rpl = tr.realized_pl
            tr.realized_pl = rpl + pl if rpl else pl
            ct = tr._closing
            if ct is None:
                tr._closing = fid
            else:
                tr._closing = ((ct,) if type(ct) is int else ct) + (fid,)
            cun = tr.closed_units
            tr.closed_units = cun + k if cun else k
            cv = tr.closed_value
            tr.closed_value = cv + k * px if cv else k * px
            pos.units = pos.units - cu
            pos.cost = pos.cost - cu * tr.price
            total_pl = total_pl + pl if total_pl else pl
            total_hs = total_hs + hs if total_hs else hs
            entry = (tr.id, units if k == au else -cu, px, pl, hs)  # the order's own units when it closes k == au
            if tr.units == 0:
                tr.state = "CLOSED"
                tr.close_ns = now
                del trades[0]
                del open_trades[tr.id]
                tce = tr.client_ext
                if tce is not None:
                    tcid = tce.get("id")
                    if tcid is not None and trades_by_client.get(tcid) is tr:
                        del trades_by_client[tcid]
                if closed is None:
                    closed = [entry]
                else:
                    closed.append(entry)
                if tr.tp is not None or tr.sl is not None or tr.tsl is not None:
                    (<object>venue)._close_dependents(acct, tr, now)
            else:
                _more(o).fill_reduced = entry
                o.trade_reduced_id = tr.id
            left -= k
        if closed is not None:
            o.fill_closed = tuple(closed)
        if cu > 0:
            pos.long_pl = pos.long_pl + total_pl
        else:
            pos.short_pl = pos.short_pl + total_pl
        pos.pl = pos.pl + total_pl
        pos.resettable_pl = pos.resettable_pl + total_pl
        acct.pl = acct.pl + total_pl
        acct.resettable_pl = acct.resettable_pl + total_pl
        acct.balance = acct.balance + total_pl
    if opening:
        ou = units if opening is au else (opening if buy else -opening)  # the request's int when it opens whole
        hs = mul_rhe(opening, spread, loss, 1, PL_DEN2_C, PL_DEN2)
        im = mul_rhe(_islot(inst, I_MARGIN), opening, bid + ask, midf, MARGIN_DEN2_C, MARGIN_DEN2)
        tr = Trade.__new__(Trade)
        tr.id = fid
        tr.inst = inst
        tr.price = px
        tr.open_ns = now
        tr.state = "OPEN"
        tr.initial_units = ou
        tr.initial_margin = im
        tr.units = ou
        tr.realized_pl = ZERO
        tr.closed_units = ZERO
        tr.closed_value = ZERO
        tr.half_spread = hs
        acct.trades[fid] = tr
        acct.open_trades[fid] = tr
        pos.trades.append(tr)
        pos.units = pos.units + ou
        pos.cost = pos.cost + ou * px
        o.fill_trade = tr
        total_hs = total_hs + hs if total_hs else hs
    o.fill_pl = total_pl
    o.fill_hs = total_hs
    o.fill_balance = acct.balance
    o.fill_txn = fid
    o.filled_ns = now
    acct.last_fill_ns = now
    return True


# --------------------------------------------------------------------------- broker events

from cpython.object cimport PyTypeObject


cdef object _fill_event(Account acct, Order o, Py_ssize_t fid, time_ns):
    """The ``OrderFilled`` of a client market order's fill (transaction ``fid``)."""
    cid = _order_cid(o)
    closed = ()
    fc = o.fill_closed
    if fc:
        closed = (_id_str(fc[0][0]),) if len(fc) == 1 else tuple([_id_str(e[0]) for e in fc])
    fr = o._x.fill_reduced if o._x is not None else None
    if fr is not None:
        closed += (_id_str(fr[0]),)
    tr = o.fill_trade
    opened = _id_str((<Trade>tr).id) if tr is not None else None
    return _filled(acct.id, cid, _id_str(o.id), fid, _islot(o.inst, I_NAME) if type(o.inst) is _SimInstrument and I_OK
                   else o.inst.name, o.fill_units, o.fill_price, o.fill_reason,
                   time_ns, o.fill_pl, o.fill_balance, opened, closed)


def market_fill_events(Account acct, Py_ssize_t lo, Py_ssize_t hi):
    """Broker events of a batch that is exactly a client market order and its
    fill (what ``place_market`` books), or None for any other batch (the
    caller then maps the transactions in general)."""
    if hi - lo != 2:
        return None
    cdef TxnLog log = acct.txns
    cdef list types = log.types, ps = log.ps
    cdef Py_ssize_t k = lo - log.base + log.dead  # list position of id lo + 1
    if k < 0:
        return None
    if types[k] != "MARKET_ORDER" or types[k + 1] != "ORDER_FILL":
        return None
    o_ = ps[k]
    if o_ is not ps[k + 1] or type(o_) is not Order:
        return None
    cdef Order o = <Order>o_
    if o.reason != "CLIENT_ORDER":
        return None
    return [_fill_event(acct, o, lo + 2, log.times[k + 1])]


cdef inline str _id_str(object x):
    """A transaction/order/trade id (a Python int) as its decimal string."""
    cdef long long v = x
    return f"{v}"


from fastexec.brokers.base import PositionFill as _PF, TimeInForce as _TIF, TriggerCondition as _TC, \
    V20OrderType as _OT

cdef object _OT_MARKET = _OT.MARKET
cdef object _PF_DEFAULT = _PF.DEFAULT
cdef object _TC_DEFAULT = _TC.DEFAULT
cdef object _TIF_FOK = _TIF.FOK
cdef object _TIF_IOC = _TIF.IOC


cdef inline object _rslot(r, Py_ssize_t k):
    cdef PyObject *p = fx_slot(r, R_OFF[k])
    if p is NULL:
        raise AttributeError(_REQUEST_FIELDS[k])
    return <object>p


cdef int _end_batch(VenueCore venue, Account acct, broker) except -1:
    """``Venue._end`` inside ``broker``'s request: listeners see the batch,
    except the broker's own, which ignores its requests' batches (it is
    skipped, not called; the others run with the broker's request count
    raised, as ``SimulatedBroker.submit`` runs the general path)."""
    cdef list listeners = venue._txn_listeners
    if not listeners:
        return 0
    lo = acct.batch_start
    hi = acct.last_id
    if not hi > lo:
        return 0
    own = broker._txn_listener
    if PyList_GET_SIZE(listeners) == 1 and (<object>PyList_GET_ITEM(listeners, 0)) is own:
        return 0
    new = _TxnBatch(acct.txns, lo, hi)
    broker._in_request += 1
    try:
        for fn in tuple(listeners):
            if fn is not own:
                fn(acct, new)
    finally:
        broker._in_request -= 1
    return 0


def broker_market(venue, r, broker):
    """``_broker_market`` from Python."""
    if not isinstance(venue, VenueCore):
        return None
    return _broker_market(<VenueCore>venue, r, broker)


cdef object _events_of = None  # broker.events_of, bound by broker.py (no circular import)


def _bind_broker(events_of):
    global _events_of
    _events_of = events_of


def submit_now(broker, r):
    """``SimulatedBroker.submit_now`` (bound to the class as that method):
    the events of a plain market order booked at once by ``_broker_market``,
    or None with nothing done (``submit`` runs the general path)."""
    v = broker.venue
    if not isinstance(v, VenueCore) or not (<VenueCore>v).fast_path:
        return None
    cdef VenueCore venue = <VenueCore>v
    evs = _broker_market(venue, r, broker)
    if type(evs) is tuple:  # booked with more than the fill in its batch: mapped from the transactions
        return _events_of(venue, venue.accounts[_rslot(r, 1)], (<tuple>evs)[0], (<tuple>evs)[1])
    return evs


cdef object _broker_market(VenueCore venue, r, broker):
    """``SimulatedBroker.submit`` of a plain market ``OrderRequest``: the
    venue order built directly, booked by ``place_market``, the batch closed
    (``Venue._end``: listeners see it, see ``_end_batch``) and its events
    returned: the list, or ``(lo, hi)`` transaction ids for the caller to map
    when the batch holds more than the fill. None, with nothing changed, for
    any request the general path must handle (an unknown account too: the
    general path reports it)."""
    if type(r) is not _OrderRequest or not R_OK:
        return None
    acct = venue.accounts.get(_rslot(r, 1))
    if type(acct) is not Account:
        return None
    if _rslot(r, 4) is not _OT_MARKET or _rslot(r, 5) is not None or _rslot(r, 6) is not None:  # type, price, bound
        return None
    if _rslot(r, 11) is not None or _rslot(r, 12) is not None or _rslot(r, 13) is not None:  # exits on fill
        return None
    if _rslot(r, 9) is not _PF_DEFAULT or _rslot(r, 10) is not _TC_DEFAULT:
        return None
    t = _rslot(r, 7)
    if t is None or t is _TIF_FOK:
        tif = "FOK"
    elif t is _TIF_IOC:
        tif = "IOC"
    else:
        return None
    inst = venue.by_name.get(_rslot(r, 2))
    if inst is None:
        return None
    cid = _rslot(r, 0)
    tag = _rslot(r, 14)
    comment = _rslot(r, 15)
    cdef object ce = cid  # a bare id str stands for {"id": cid} (Order.client_ext)
    if tag is not None or comment is not None or type(cid) is not str:
        ce = {"id": cid}
        if tag is not None:
            ce["tag"] = tag
        if comment is not None:
            ce["comment"] = comment
    cdef Order o = Order.__new__(Order)
    o.id = 0
    o.type = "MARKET"
    o.inst = inst
    o.units = _rslot(r, 3)
    o.tif = tif
    gtd = _rslot(r, 8)
    if gtd is not None:
        o.gtd_ns = gtd
    o._ce = ce
    o.state = "PENDING"
    o.create_ns = 0
    cdef Account a = <Account>acct
    if not _book(venue, a, o, None):
        return None
    lo = a.batch_start
    hi = a.last_id
    # the event, from the order's fill as booked (before listeners run)
    ev = _fill_event(a, o, hi, o.filled_ns) if hi - lo == 2 else None
    if type(venue) is _Venue:
        _end_batch(venue, a, broker)
    else:
        broker._in_request += 1
        try:
            (<object>venue)._end(a)
        finally:
            broker._in_request -= 1
    # booked: never None from here on (None would make the caller place it
    # again). A batch with more than the fill (the closed trade's exits were
    # cancelled) is mapped by the caller from the transaction ids.
    return [ev] if ev is not None else (lo, hi)
