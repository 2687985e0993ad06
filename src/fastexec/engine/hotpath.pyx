# cython: language_level=3
"""The engine's per-order path, compiled: the records it keeps per order and
the steps every submit runs.

Why this module exists: with the in-process venue, what remained of a submit
in the engine was Python glue, about 1,000 bytecodes per order (the core's
own C calls are ~3.6k of ~53k instructions). Compiling ``engine.py`` as it
was made it *slower*: CPython 3.11 specialises attribute access on plain
objects, and Cython's generic ``PyObject_GetAttr`` does not. So the speed
comes from types, not from compiling:

* ``Order`` (the engine's record of one order), ``Normalized`` (a validated
  order) and ``TypeInfo`` (per order type) are extension types: their fields
  are C struct members when read here.
* ``EngineCore`` is the base class of ``fastexec.engine.Engine``. It declares
  the attributes the per-order path reads as C fields and holds the methods
  every routed order runs: ``_check`` (the one check path, shared by submit
  and validate), ``submit``, ``_route`` (the one send path), ``_dispatch`` and
  the fill. These are the engine's only copies: ``engine.py`` keeps
  everything else (modify, cancel, emulation, recovery, reads) and the hot
  methods call it through ordinary attribute lookups when they need it.
* Objects of the broker interface (``OrderRequest``, ``OrderFilled``) and the
  caller's ``OrderSpec`` are slotted dataclasses owned elsewhere: their
  fields are read and written through their slot descriptors (the C
  functions ``getattr`` ends in), only while each class is exactly such a
  dataclass with the expected fields; otherwise through ``getattr`` and the
  class call.

Numbers stay Python ints unless a C type is exact for the whole range the
engine accepts: ``fill_units`` (|units| <= 10**12 after the core took the
fill, whose argument is int64) is an int64; ``fill_value`` (sum of |units| x
price, up to 10**12 x 10**9 per fill and unbounded in count) is an int64
until it no longer fits, then a Python int; prices and units pass through as
the objects they came as. A retained order owns as few objects as it can
(timings and int64 timestamps in C, a shared Normalized for plain orders):
the engine keeps ~14k finished orders and forgets the oldest when they are
cold, so each object it owns costs cache misses when freed and when its
block is reused.
"""
cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject, PyTypeObject, Py_TYPE
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_SET_ITEM
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from fastexec._core.instruments cimport Instrument
from fastexec._core.orders cimport OrderStore
from fastexec._core.positions cimport Ledger
from fastexec._core.risk cimport RiskEngine
cimport fastexec.engine._dictfill as df

import logging
from time import time_ns as _time_ns

from fastexec._core.fixedpoint import MAX_UNITS as _MAX_UNITS_PY
from fastexec._core.orders import OrderError, OrderEvent, OrderState
from fastexec.brokers.base import (
    BrokerError,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderRequest,
    PositionFill,
    PriceTick,
    TimeInForce,
    TriggerCondition,
    V20OrderType,
)
from fastexec.errors import (
    BrokerUnavailableError,
    ConflictError,
    FastexecError,
    KillSwitchActiveError,
    RiskDeniedError,
    ValidationError,
)

from .risk import _CODE_NAMES as _RISK_CODE_NAMES
from .types import ExitSpec, OrderSpec, OrderType
from .views import OrderView

cdef extern from *:
    """
    /* A tuple subclass (OrderView) of n items, the way tuple.__new__(cls, t)
       allocates it; the caller fills every item before anyone sees it. */
    static PyObject* fe_tuple_alloc(PyObject* cls, Py_ssize_t n) {
        return ((PyTypeObject*)cls)->tp_alloc((PyTypeObject*)cls, n);
    }
    """
    object fe_tuple_alloc(object cls, Py_ssize_t n)

cdef extern from *:
    """
    #include "structmember.h"
    /* The offset of a writable object slot (a __slots__ member descriptor), or -1. */
    static inline Py_ssize_t fe_member_offset(PyObject *d) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        return (m->type == T_OBJECT_EX && !(m->flags & READONLY)) ? m->offset : -1;
    }
    /* A slot's value (borrowed; NULL when empty). */
    static inline PyObject *fe_slot_get(PyObject *o, Py_ssize_t off) { return *(PyObject **)((char *)o + off); }
    /* Set an empty slot of a new object (what member_set does, without its checks). */
    static inline void fe_slot_init(PyObject *o, Py_ssize_t off, PyObject *v) {
        Py_INCREF(v);
        *(PyObject **)((char *)o + off) = v;
    }
    """
    Py_ssize_t fe_member_offset(object d)
    void fe_slot_init(object o, Py_ssize_t off, object v)
    PyObject* fe_slot_get "fe_slot_get"(object o, Py_ssize_t off)

cdef extern from *:
    """
    /* prefix + str(n), written into one new str for an ASCII prefix and n > 0;
       otherwise the + of the two (so errors are those of prefix + str(n)). */
    static PyObject* fe_id_str(PyObject* prefix, long long n) {
        char buf[24];
        char* end = buf + sizeof buf;
        char* s = end;
        unsigned long long a;
        Py_ssize_t lp, nd;
        PyObject *u, *num, *ns;
        if (n > 0 && PyUnicode_CheckExact(prefix) && PyUnicode_IS_ASCII(prefix)) {
            a = (unsigned long long)n;
            do { *--s = (char)('0' + a % 10); a /= 10; } while (a);
            lp = PyUnicode_GET_LENGTH(prefix);
            nd = end - s;
            u = PyUnicode_New(lp + nd, 127);
            if (u == NULL) return NULL;
            memcpy(PyUnicode_1BYTE_DATA(u), PyUnicode_1BYTE_DATA(prefix), (size_t)lp);
            memcpy(PyUnicode_1BYTE_DATA(u) + lp, s, (size_t)nd);
            return u;
        }
        num = PyLong_FromLongLong(n);
        if (num == NULL) return NULL;
        ns = PyObject_Str(num);
        Py_DECREF(num);
        if (ns == NULL) return NULL;
        u = PyNumber_Add(prefix, ns);
        Py_DECREF(ns);
        return u;
    }
    """
    object fe_id_str(object prefix, long long n)


cdef extern from *:
    """
    static inline int fx_mul64(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out); }
    static inline int fx_add64(int64_t a, int64_t b, int64_t *out) { return __builtin_add_overflow(a, b, out); }
    """
    int fx_mul64(int64_t a, int64_t b, int64_t *out)
    int fx_add64(int64_t a, int64_t b, int64_t *out)


cdef inline int64_t _perf_ns() noexcept nogil:
    """``time.perf_counter_ns()`` without the call and the int object: on
    Linux both read CLOCK_MONOTONIC."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec

log = logging.getLogger("fastexec.engine")
cdef object _DEBUG = logging.DEBUG
# The logger's instance dict, for _debug_enabled (a plain Logger only).
cdef dict _LOG_DICT = log.__dict__ if type(log) is logging.Logger else None


cdef bint _debug_enabled() except -1:
    """``log.isEnabledFor(DEBUG)``, answered from the logger's own cache when
    it holds the answer (the first steps of ``Logger.isEnabledFor``, which
    logging clears whenever a level changes), else by the method."""
    cdef dict d = _LOG_DICT
    if d is not None:
        disabled = d.get("disabled")
        if disabled is not None:
            if disabled:
                return False
            c = d.get("_cache")
            if type(c) is dict:
                v = (<dict>c).get(_DEBUG)
                if v is not None:
                    return v
    return log.isEnabledFor(_DEBUG)
cdef long long MAX_UNITS = _MAX_UNITS_PY
cdef tuple _NOARGS = ()
# Applied-transaction dedupe per account (``TxnWindow``): the newest SEEN_WINDOW
# transaction ids are remembered exactly; every id older than that counts as applied.
DEF _WINDOW_BITS = 18
DEF _WINDOW_WORDS = 4096  # (1 << _WINDOW_BITS) / 64
SEEN_WINDOW = 1 << _WINDOW_BITS
cdef long long _SPAN = 1 << _WINDOW_BITS
cdef long long _MASK = _SPAN - 1
assert _WINDOW_WORDS * 64 == SEEN_WINDOW


@cython.final
cdef class TxnWindow:
    """Which transaction ids of one account the engine has applied: a bitmap over the
    newest ``SEEN_WINDOW`` ids (32 KiB), so a redelivered event is never booked twice.

    v20 transaction ids only grow per account, so a numeric window is enough:
    invariant: every id ``<= floor`` counts as applied; an id in
    ``(floor, floor + SEEN_WINDOW]`` is applied iff its bit (``id & (SEEN_WINDOW - 1)``)
    is set. An id beyond the window slides it forward, clearing the bits of the ids
    it leaves behind (each id's bit is cleared at most once, so sliding is O(1)
    per id on average and never more than one pass over the bitmap).

    It replaced a Python set trimmed from 200k to 100k ids by rebuilding it: the
    rebuild held the loop for 10-35 ms once per 100k events (measured single-client
    under load), and its table took 4-8 MiB against this bitmap's 32 KiB."""

    cdef unsigned long long bits[_WINDOW_WORDS]
    cdef readonly long long floor

    def __init__(self, long long floor=0):
        if floor < 0:  # ids are positive; a negative floor could overflow ``txn - floor``
            raise ValueError(f"floor must be >= 0, not {floor}")
        self.floor = floor

    cdef inline void _slide(self, long long new_floor) noexcept:
        """Move ``floor`` up to ``new_floor``, clearing the bits of the ids in between."""
        cdef long long i
        if new_floor - self.floor >= _SPAN:
            memset(self.bits, 0, sizeof(self.bits))
        else:
            i = self.floor + 1
            while i <= new_floor:
                self.bits[(i & _MASK) >> 6] &= ~(1ULL << (i & 63))
                i += 1
        self.floor = new_floor

    cdef inline bint applied_or_add(self, long long txn) noexcept:
        """True if ``txn`` was applied (or is older than the window); else record it."""
        if txn <= self.floor:
            return True
        if txn - self.floor > _SPAN:
            self._slide(txn - _SPAN)
        cdef Py_ssize_t w = (txn & _MASK) >> 6
        cdef unsigned long long b = 1ULL << (txn & 63)
        if self.bits[w] & b:
            return True
        self.bits[w] |= b
        return False

    def record(self, long long txn):
        """``applied_or_add`` from Python: True if ``txn`` counts as applied already."""
        return self.applied_or_add(txn)

    def __contains__(self, txn):
        """Whether ``txn`` counts as applied (nothing is recorded)."""
        cdef long long t = txn
        if t <= self.floor:
            return True
        if t - self.floor > _SPAN:
            return False
        return (self.bits[(t & _MASK) >> 6] >> (t & 63)) & 1 == 1

    def __len__(self):
        """How many ids inside the window are recorded (at most ``SEEN_WINDOW``)."""
        cdef Py_ssize_t n = 0, j
        cdef unsigned long long x
        for j in range(_WINDOW_WORDS):
            x = self.bits[j]
            while x:
                x &= x - 1
                n += 1
        return n

# ---------------------------------------------------------------------- order states

S = OrderState
E = OrderEvent
# OrderState -> the status word callers see. The words follow the issue's
# vocabulary (an emulated order is "waiting", a routed one "working") rather
# than the core's internal names.
STATUS = {
    S.PENDING_SUBMIT: "pending",
    S.SUBMITTED: "working",
    S.EMULATED: "waiting",
    S.TRIGGERED: "triggered",
    S.PARTIALLY_FILLED: "partially_filled",
    S.FILLED: "filled",
    S.PENDING_CANCEL: "pending_cancel",
    S.PENDING_REPLACE: "pending_replace",
    S.CANCELLED: "cancelled",
    S.REJECTED: "rejected",
    S.EXPIRED: "expired",
}
DEF N_STATES = 11
_STATUS_BY_INT = [STATUS[S(i)] for i in range(N_STATES)]
cdef tuple _WORD = tuple(_STATUS_BY_INT)
STATUSES = frozenset(STATUS.values())
TERMINAL = frozenset({S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED})
OPEN_STATUSES = frozenset(STATUS[s] for s in S if s not in TERMINAL)
# States in which an order rests at the broker and can be cancelled there.
AT_BROKER = frozenset({S.SUBMITTED, S.PARTIALLY_FILLED})
# Indexed by the state's int: an array read instead of hashing an IntEnum.
_IS_TERMINAL = [S(i) in TERMINAL for i in range(N_STATES)]
_IS_AT_BROKER = [S(i) in AT_BROKER for i in range(N_STATES)]
cdef bint C_TERMINAL[N_STATES]
cdef bint C_AT_BROKER[N_STATES]
for _i in range(N_STATES):
    C_TERMINAL[_i] = _IS_TERMINAL[_i]
    C_AT_BROKER[_i] = _IS_AT_BROKER[_i]
cdef object _PENDING_SUBMIT = S.PENDING_SUBMIT
cdef object _EMULATED = S.EMULATED
cdef object _FILLED = S.FILLED


cdef inline int _st(object state) except -1:
    """The int of an OrderState (an IntEnum member), range-checked."""
    cdef int s = state
    if s < 0 or s >= N_STATES:
        raise ValueError(f"not an order state: {state!r}")
    return s


# ---------------------------------------------------------------------- slotted dataclasses

cdef object _slot_descriptors(cls, tuple names):
    """``cls``'s slot descriptors for ``names`` in order, or None unless
    ``cls`` is a slotted dataclass whose fields are exactly ``names``."""
    if tuple(getattr(cls, "__dataclass_fields__", {})) != names:
        return None
    ds = tuple([cls.__dict__.get(n) for n in names])
    if not all(type(d).__name__ == "member_descriptor" for d in ds):
        return None
    return ds


cdef inline object _get(tuple ds, Py_ssize_t k, object obj):
    """``getattr(obj, names[k])``: read at the slot's offset when ``obj`` is
    exactly the class of ``_SPEC`` or ``_FILL``, else (and for an empty slot,
    to raise its AttributeError) through the slot descriptor, which
    type-checks it."""
    cdef PyObject* p = NULL
    if ds is _SPEC and _SPEC_RAW and Py_TYPE(obj) == _SPEC_TYPE:
        p = fe_slot_get(obj, _SPEC_OFF[k])
    elif ds is _FILL and _FILL_RAW and Py_TYPE(obj) == _FILL_TYPE:
        p = fe_slot_get(obj, _FILL_OFF[k])
    if p != NULL:
        return <object>p
    cdef object d = <object>PyTuple_GET_ITEM(ds, k)
    return Py_TYPE(d).tp_descr_get(d, obj, None)


cdef bint _offsets_of(object ds, Py_ssize_t* out) except -1:
    """The slot offsets of descriptors ``ds`` into ``out``, or False."""
    if ds is None:
        return False
    for k in range(len(ds)):
        out[k] = fe_member_offset(ds[k])
        if out[k] < 0:
            return False
    return True


cdef inline int _set(tuple ds, Py_ssize_t k, object obj, object value) except -1:
    cdef object d = <object>PyTuple_GET_ITEM(ds, k)
    return Py_TYPE(d).tp_descr_set(d, obj, value)


_REQUEST_FIELDS = ("client_id", "account_id", "instrument", "units", "type", "price", "price_bound",
                   "time_in_force", "gtd_time_ns", "position_fill", "trigger_condition", "stop_loss",
                   "take_profit", "trailing_stop", "tag", "comment")
cdef object _REQ = _slot_descriptors(OrderRequest, _REQUEST_FIELDS)
# their offsets: broker_request fills a new OrderRequest's empty slots directly
cdef Py_ssize_t _REQ_OFF[16]
cdef bint _REQ_DIRECT = _REQ is not None


cdef bint _req_offsets() except -1:
    cdef Py_ssize_t k
    for k in range(16):
        _REQ_OFF[k] = fe_member_offset(_REQ[k])
        if _REQ_OFF[k] < 0:
            return False
    return True


if _REQ_DIRECT:
    _REQ_DIRECT = _req_offsets()
DIRECT_REQUEST_INIT = _REQ_DIRECT  # broker_request writes the slots in place (tests check it)

_FILLED_FIELDS = ("account_id", "client_id", "broker_order_id", "txn_id", "instrument", "units", "price", "reason",
                  "time_ns", "pl", "financing", "commission", "account_balance", "trade_opened_id", "trades_closed")
cdef object _FILL = _slot_descriptors(OrderFilled, _FILLED_FIELDS)
DEF F_ACCOUNT = 0
DEF F_CLIENT = 1
DEF F_BROKER_ID = 2
DEF F_TXN = 3
DEF F_INSTRUMENT = 4
DEF F_UNITS = 5
DEF F_PRICE = 6
DEF F_TIME = 8
DEF F_FINANCING = 10
DEF F_COMMISSION = 11
DEF F_OPENED = 13
DEF F_CLOSED = 14

_SPEC_FIELDS = ("account_id", "instrument", "side", "units", "type", "price", "stop_price", "trailing_distance",
                "time_in_force", "gtd_time", "stop_loss", "take_profit", "trailing_stop_distance", "client_order_id")
cdef object _SPEC = _slot_descriptors(OrderSpec, _SPEC_FIELDS)

# the offsets _get reads OrderSpec's and OrderFilled's slots at
cdef PyTypeObject* _SPEC_TYPE = <PyTypeObject*>OrderSpec
cdef PyTypeObject* _FILL_TYPE = <PyTypeObject*>OrderFilled
cdef Py_ssize_t _SPEC_OFF[14]
cdef Py_ssize_t _FILL_OFF[15]
cdef bint _SPEC_RAW = _offsets_of(_SPEC, _SPEC_OFF)
cdef bint _FILL_RAW = _offsets_of(_FILL, _FILL_OFF)

# which of the three fast paths are in use (tests check them)
DIRECT_SLOTS = {"OrderRequest": _REQ is not None, "OrderFilled": _FILL is not None, "OrderSpec": _SPEC is not None}


# ---------------------------------------------------------------------- order types

@cython.final
cdef class TypeInfo:
    """Everything the engine needs to know about one order type, looked up
    once per order. Which of price / stop_price / trailing_distance the type
    needs (True), accepts optionally (None) or refuses (False); allowed
    time-in-force values and the default (v20 §4.1); the v20 type sent for
    it (for fok/ioc: a MARKET when unpriced, a LIMIT when priced)."""

    cdef public object otype, name, need_price, need_stop, need_trail, tifs, default_tif, v20, v20_priced, child_tif
    cdef public bint emulated
    # A spec of this type with every optional field None is valid as it is
    # (no price, stop or trailing distance required; the default time in
    # force needs no gtd_time): normalize's fast path.
    cdef public bint plain
    # ``_plain``'s Normalized of this type per |units| (a plain order without
    # a client id is nothing else), one dict per side: orders share these
    # (Normalized is immutable), so a retained order does not own one.
    cdef dict _buys, _sells

    def __init__(self, otype, need, tifs, default_tif, v20, v20_priced=None, child_tif=None):
        self._buys = {}
        self._sells = {}
        self.otype = otype
        self.name = otype.value
        self.need_price, self.need_stop, self.need_trail = need
        self.tifs = frozenset(tifs)
        self.default_tif = default_tif
        self.emulated = otype in (OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)
        self.v20 = v20
        self.v20_priced = v20_priced or v20
        self.child_tif = child_tif  # forced time in force of the child sent at trigger
        self.plain = self.need_price is not True and not self.need_stop and not self.need_trail and default_tif != "GTD"

    def __repr__(self):
        return f"TypeInfo({self.name})"


_V = V20OrderType
_INFO_LIST = [
    TypeInfo(OrderType.MARKET, (False, False, False), ("FOK", "IOC"), "FOK", _V.MARKET),
    TypeInfo(OrderType.LIMIT, (True, False, False), ("GTC", "GTD", "GFD", "FOK", "IOC"), "GTC", _V.LIMIT),
    TypeInfo(OrderType.STOP, (True, False, False), ("GTC", "GTD", "GFD", "FOK", "IOC"), "GTC", _V.STOP),
    TypeInfo(OrderType.MARKET_IF_TOUCHED, (True, False, False), ("GTC", "GTD", "GFD"), "GTC", _V.MARKET_IF_TOUCHED),
    TypeInfo(OrderType.STOP_LIMIT, (True, True, False), ("GTC", "GTD", "GFD"), "GTC", _V.LIMIT),
    TypeInfo(OrderType.TRAILING_STOP, (False, False, True), ("GTC", "GTD", "GFD"), "GTC", _V.MARKET, child_tif="FOK"),
    TypeInfo(OrderType.FOK, (None, False, False), ("FOK",), "FOK", _V.MARKET, _V.LIMIT),
    TypeInfo(OrderType.IOC, (None, False, False), ("IOC",), "IOC", _V.MARKET, _V.LIMIT),
]
cdef tuple _INFOS = tuple(_INFO_LIST)
_INFO_BY_NAME = {i.name: i for i in _INFO_LIST}
cdef dict _BY_NAME = _INFO_BY_NAME
_TIF_ENUM = {t.value: t for t in TimeInForce}
cdef dict _TIF = _TIF_ENUM
cdef object _V_MARKET = V20OrderType.MARKET
cdef object _PF_DEFAULT = PositionFill.DEFAULT
cdef object _TC_DEFAULT = TriggerCondition.DEFAULT
MAX_CLIENT_ID_LENGTH = 128  # v20 ClientID limit

# Engine order ids: the engine's start time in ms, in base36, as exactly 8 characters
# (zero-padded; 8 digits last until 2059, the count wraps after that), a hyphen, and a
# decimal sequence number: "mws6cffq-17". Client order ids may not take that form, so the
# two never name different orders: ``{order_id}`` (either one) is unambiguous, no engine
# id a later start makes can equal a client id already in use, and an order without a
# client id of its own can be its own client id at the broker (clientExtensions.id).
ENGINE_ID_PREFIX_LEN = 8
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36 = frozenset(_BASE36)
_DIGITS = frozenset("0123456789")


def engine_id_prefix(long long now_ns):
    """The id prefix of an engine started at ``now_ns``: 8 base36 digits of the ms, and "-"."""
    cdef long long n = (now_ns // 1_000_000) % (36 ** ENGINE_ID_PREFIX_LEN)
    out = []
    for _ in range(ENGINE_ID_PREFIX_LEN):
        n, r = divmod(n, 36)
        out.append(_BASE36[r])
    return "".join(reversed(out)) + "-"


def is_engine_id(value):
    """True when ``value`` has the engine order id form (see ``engine_id_prefix``)."""
    return (type(value) is str and len(value) > ENGINE_ID_PREFIX_LEN + 1 and value[ENGINE_ID_PREFIX_LEN] == "-"
            and _B36.issuperset(value[:ENGINE_ID_PREFIX_LEN]) and _DIGITS.issuperset(value[ENGINE_ID_PREFIX_LEN + 1:]))


cdef TypeInfo _info_of(object value):
    """The TypeInfo of an OrderType member or its value string, or None."""
    cdef TypeInfo info
    for x in _INFOS:
        info = <TypeInfo>x
        if info.otype is value:
            return info
    if type(value) is str:
        return _BY_NAME.get(value)
    return None


def check_client_order_id(value):
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_ID_LENGTH or not value.isprintable() or " " in value:
        raise ValidationError(
            f"client_order_id must be 1..{MAX_CLIENT_ID_LENGTH} printable characters without spaces",
            code="INVALID_CLIENT_ORDER_ID", field="client_order_id",
        )
    if len(value) > ENGINE_ID_PREFIX_LEN + 1 and value[ENGINE_ID_PREFIX_LEN] == "-" and is_engine_id(value):
        raise ValidationError(
            f"client_order_id {value!r} has the form of an engine order id (8 characters 0-9a-z, '-', digits), "
            "which is reserved for the engine's own ids",
            code="RESERVED_CLIENT_ORDER_ID", field="client_order_id",
        )
    return value


# ---------------------------------------------------------------------- Normalized

NORMALIZED_FIELDS = ("info", "otype", "units", "price", "stop_price", "trailing_distance", "tif", "gtd_ns",
                     "stop_loss", "take_profit", "trailing_stop", "client_order_id", "emulated")


@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class Normalized:
    """A validated order: everything the engine needs, in core units.

    Not tracked by the cyclic garbage collector (``no_gc``): every engine
    order keeps one (plain orders share theirs: it is immutable), and its fields (ints, strings, enums, exit details,
    the type table) never refer back to it, so it cannot be part of a cycle;
    untracked, the collector does not walk the retained orders' copies."""

    cdef readonly TypeInfo info
    cdef readonly object otype, units, price, stop_price, trailing_distance, tif, gtd_ns
    cdef readonly object stop_loss, take_profit, trailing_stop, client_order_id
    cdef readonly bint emulated

    def __init__(self, TypeInfo info not None, units, price, stop_price, trailing_distance, tif, gtd_ns, sl, tp, tsl, coid):
        _fill_normalized(self, info, units, price, stop_price, trailing_distance, tif, gtd_ns, sl, tp, tsl, coid)


cdef inline void _fill_normalized(Normalized n, TypeInfo info, units, price, stop_price, trailing_distance, tif,
                                  gtd_ns, sl, tp, tsl, coid):
    n.info = info
    n.otype = info.otype
    n.units = units
    n.price = price
    n.stop_price = stop_price
    n.trailing_distance = trailing_distance
    n.tif = tif
    n.gtd_ns = gtd_ns
    n.stop_loss = sl
    n.take_profit = tp
    n.trailing_stop = tsl
    n.client_order_id = coid
    n.emulated = info.emulated


def normalized(TypeInfo info not None, units, price, stop_price, trailing_distance, tif, gtd_ns, sl, tp, tsl, coid):
    """``Normalized(...)`` (kept for validation.py's callers: the same object)."""
    cdef Normalized n = Normalized.__new__(Normalized)
    _fill_normalized(n, info, units, price, stop_price, trailing_distance, tif, gtd_ns, sl, tp, tsl, coid)
    return n


DEF _PLAIN_SHARED_MAX = 1024  # shared plain Normalized per type and side (distinct order sizes)


cdef Normalized _plain(object spec, Instrument inst):
    """``normalize`` for a plain order (an order type whose optional fields
    may all be absent, and they are: a market order without exits, the
    common case), or None when the spec needs the full checks (including
    every spec those would refuse, so they raise as always). Raises only for
    a bad client order id, exactly as the full checks would (they reach that
    check last, and for such a spec every earlier one passes)."""
    cdef TypeInfo info
    cdef long long u
    cdef int overflow = 0
    cdef tuple d = _SPEC
    if d is None or type(spec) is not OrderSpec:
        return None
    info = _info_of(_get(d, 4, spec))
    if info is None or not info.plain:
        return None
    units = _get(d, 3, spec)
    if type(units) is not int:
        return None
    u = PyLong_AsLongLongAndOverflow(units, &overflow)
    if overflow or u <= 0 or u > MAX_UNITS or u > inst.maximum_order_units or u < inst.minimum_trade_size:
        return None
    side = _get(d, 2, spec)
    cdef dict shared
    if side == "sell":
        shared = info._sells
    elif side == "buy":
        shared = info._buys
    else:
        return None
    if (_get(d, 5, spec) is not None or _get(d, 6, spec) is not None or _get(d, 7, spec) is not None
            or _get(d, 8, spec) is not None or _get(d, 9, spec) is not None or _get(d, 10, spec) is not None
            or _get(d, 11, spec) is not None or _get(d, 12, spec) is not None):
        return None
    coid = _get(d, 13, spec)
    if coid is not None:
        coid = check_client_order_id(coid)
    else:
        x = shared.get(units)
        if x is not None:
            return <Normalized>x
    cdef Normalized n = Normalized.__new__(Normalized)
    _fill_normalized(n, info, units if shared is info._buys else -u, None, None, None, info.default_tif,
                     None, None, None, None, coid)
    if coid is None and len(shared) < _PLAIN_SHARED_MAX:
        shared[units] = n
    return n


def plain(spec, instrument):
    """``_plain`` from Python: validation.normalize's first step."""
    if type(instrument) is not Instrument:
        return None
    return _plain(spec, <Instrument>instrument)


def with_units(Normalized n not None, units):
    """A copy of ``n`` for ``units`` (the remainder of a partly filled order,
    which is what a broker-side replacement must carry)."""
    return Normalized(n.info, units, n.price, n.stop_price, n.trailing_distance, n.tif, n.gtd_ns,
                      n.stop_loss, n.take_profit, n.trailing_stop, n.client_order_id)


cpdef object broker_request(Normalized n, client_id, account_id, instrument):
    """The v20 order for a validated spec (for emulated types: the child order
    sent at trigger time). Built through OrderRequest's slot descriptors,
    every field set, when it is the slotted dataclass this expects."""
    if n is None:
        raise TypeError("broker_request needs a Normalized, not None")
    cdef TypeInfo info = n.info
    vtype = info.v20 if n.price is None else info.v20_priced
    tif = info.child_tif or n.tif
    price = None if vtype is _V_MARKET else n.price
    time_in_force = _TIF[tif]
    gtd = n.gtd_ns if tif == "GTD" else None
    cdef tuple d = _REQ
    if d is None:
        return OrderRequest(client_id, account_id, instrument, n.units, vtype, price, None, time_in_force, gtd,
                            _PF_DEFAULT, _TC_DEFAULT, n.stop_loss, n.take_profit, n.trailing_stop, None, None)
    r = (<PyTypeObject*>OrderRequest).tp_new(OrderRequest, <PyObject*>_NOARGS, NULL)
    if _REQ_DIRECT:  # every slot of the new object is empty: filled in place
        fe_slot_init(r, _REQ_OFF[0], client_id)
        fe_slot_init(r, _REQ_OFF[1], account_id)
        fe_slot_init(r, _REQ_OFF[2], instrument)
        fe_slot_init(r, _REQ_OFF[3], n.units)
        fe_slot_init(r, _REQ_OFF[4], vtype)
        fe_slot_init(r, _REQ_OFF[5], price)
        fe_slot_init(r, _REQ_OFF[6], None)
        fe_slot_init(r, _REQ_OFF[7], time_in_force)
        fe_slot_init(r, _REQ_OFF[8], gtd)
        fe_slot_init(r, _REQ_OFF[9], _PF_DEFAULT)
        fe_slot_init(r, _REQ_OFF[10], _TC_DEFAULT)
        fe_slot_init(r, _REQ_OFF[11], n.stop_loss)
        fe_slot_init(r, _REQ_OFF[12], n.take_profit)
        fe_slot_init(r, _REQ_OFF[13], n.trailing_stop)
        fe_slot_init(r, _REQ_OFF[14], None)
        fe_slot_init(r, _REQ_OFF[15], None)
        return r
    _set(d, 0, r, client_id)
    _set(d, 1, r, account_id)
    _set(d, 2, r, instrument)
    _set(d, 3, r, n.units)
    _set(d, 4, r, vtype)
    _set(d, 5, r, price)
    _set(d, 6, r, None)
    _set(d, 7, r, time_in_force)
    _set(d, 8, r, gtd)
    _set(d, 9, r, _PF_DEFAULT)
    _set(d, 10, r, _TC_DEFAULT)
    _set(d, 11, r, n.stop_loss)
    _set(d, 12, r, n.take_profit)
    _set(d, 13, r, n.trailing_stop)
    _set(d, 14, r, None)
    _set(d, 15, r, None)
    return r


# ---------------------------------------------------------------------- Order

@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class Order:
    """Engine-side facts about one order that the C store does not hold.

    ``no_gc`` like ``Normalized``: the engine retains up to ~14k of these
    and none refers back to another order or to the engine, so the cyclic
    collector need not walk them (a full collection walked each one and its
    ``__dict__`` when this was a plain class). Created with ``new_order``."""

    cdef public object order_id, client_order_id, broker_order_id, account_id, acct
    # its slot in the engine's OrderStore (addressed by slot: the store keeps no ids)
    cdef public int64_t slot
    cdef public Instrument inst
    cdef public int inst_idx, precision
    cdef public object side, otype
    cdef public Normalized norm
    # created_at / updated_at: in C while exact ints in int64 (the clock's
    # ns), else the object (``_set_created`` / ``_set_updated``): a forgotten
    # order does not touch the (by then cold) int objects it was given.
    cdef int64_t _created, _updated
    cdef bint _created_c, _updated_c
    cdef object _created_obj, _updated_obj
    cdef public object request_id
    # The core's state for this order (an OrderState), as returned by its
    # last transition (every transition goes through the core's table; this
    # saves asking).
    cdef public object state
    # ``fill_value``, the sum of |units| * price over fills, exact (the VWAP
    # without rounding): ``_fv`` while it fits int64, else ``_fv_big``.
    cdef int64_t _fv
    cdef object _fv_big  # None, or the value when it does not fit _fv
    cdef public int64_t fill_units
    cdef public object reject_reason
    # Numbers kept in C, not as int objects: an engine retains ~14k orders
    # and frees the oldest while they are cold, so every object an order
    # owns is a cache miss when it is forgotten (and another when its freed
    # block is reused); the view makes the ints when it is built.
    cdef public int64_t risk_ns, broker_ns, total_ns
    cdef public object pending_op  # "cancel" | "replace" while such a request is in flight
    cdef public object trigger_price
    cdef public Py_ssize_t events  # broker events applied to this order

    @property
    def created_at(self):
        return _created(self)

    @created_at.setter
    def created_at(self, value):
        _set_created(self, value)

    @property
    def updated_at(self):
        return _updated(self)

    @updated_at.setter
    def updated_at(self, value):
        _set_updated(self, value)

    @property
    def fill_value(self):
        return self._fv if self._fv_big is None else self._fv_big

    @fill_value.setter
    def fill_value(self, value):
        cdef int overflow = 0
        cdef long long v = 0
        if type(value) is int:
            v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if type(value) is int and not overflow:
            self._fv = v
            self._fv_big = None
        else:
            self._fv = 0
            self._fv_big = value


cdef inline bint _as_int64(v, int64_t* out) except -1:
    """``*out = v`` when ``v`` is an int in int64 (True), else False."""
    cdef int overflow = 0
    cdef long long x
    if type(v) is not int:
        return False
    x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow:
        return False
    out[0] = x
    return True


cdef inline int _set_created(Order o, v) except -1:
    o._created_c = _as_int64(v, &o._created)
    o._created_obj = None if o._created_c else v
    return 0


cdef inline int _set_updated(Order o, v) except -1:
    o._updated_c = _as_int64(v, &o._updated)
    o._updated_obj = None if o._updated_c else v
    return 0


cdef inline object _created(Order o):
    return o._created if o._created_c else o._created_obj


cdef inline object _updated(Order o):
    return o._updated if o._updated_c else o._updated_obj


cdef Order _new_order(order_id, client_order_id, account_id, acct, Instrument inst, Normalized norm, side,
                      request_id, now):
    cdef Order o = Order.__new__(Order)
    o.order_id = order_id
    o.client_order_id = client_order_id
    o.account_id = account_id
    o.acct = acct
    o.inst = inst
    o.inst_idx = inst.index
    o.precision = inst.display_precision
    o.side = side
    o.otype = norm.otype
    o.norm = norm
    _set_created(o, now)
    o._updated_c = o._created_c
    o._updated = o._created
    o._updated_obj = o._created_obj
    o.request_id = request_id
    o.state = _EMULATED if norm.emulated else _PENDING_SUBMIT
    return o


def new_order(order_id, client_order_id, account_id, acct, Instrument inst not None, Normalized norm not None, side,
              request_id, now):
    """A new ``Order``: nothing filled, no broker id, pending (or waiting, if emulated)."""
    return _new_order(order_id, client_order_id, account_id, acct, inst, norm, side, request_id, now)


cdef object _exit_spec(d):
    if d is None:
        return None
    return ExitSpec(price=d.price, distance=d.distance, guaranteed=d.guaranteed)


cdef object order_view(Order o):
    """The OrderView of ``o`` now (a NamedTuple of OrderView's 26 fields)."""
    cdef Normalized n = o.norm
    cdef int64_t fu = o.fill_units
    if n is None or o.inst is None:
        raise ValueError(f"order {o.order_id!r} has no terms")
    units = n.units
    cdef long long fv, cq, cr
    cdef int overflow = 0
    avg = None
    if fu:
        fv = o._fv if o._fv_big is None else -1
        if fu > 0 and fv >= 0:  # in C (the common case: it fits int64)
            cq = fv // fu
            cr = fv - cq * fu
            if 2 * cr > fu or (2 * cr == fu and cq & 1):
                cq += 1
            avg = cq
        else:
            q, r = divmod(o._fv if o._fv_big is None else o._fv_big, fu)
            if 2 * r > fu or (2 * r == fu and q & 1):
                q += 1
            avg = q
    # Filled in place, like tuple.__new__(OrderView, items) but without the
    # items tuple. Every value is computed before the allocation, so nothing
    # can fail or run Python code while the tuple is incomplete.
    status = _WORD[_st(o.state)]
    sl = _exit_spec(n.stop_loss)
    tp = _exit_spec(n.take_profit)
    tsl = n.trailing_stop.distance if n.trailing_stop is not None else None
    cdef dict timings = df.new(_TIMINGS)
    cdef bint dr = _DIRECT and df.direct(timings, 3)
    df.put(timings, dr, _TIMINGS_KEYS, 0, o.risk_ns)
    df.put(timings, dr, _TIMINGS_KEYS, 1, o.broker_ns)
    df.put(timings, dr, _TIMINGS_KEYS, 2, o.total_ns)
    filled = fu
    size = units if units > 0 else -units
    precision = o.precision
    created = _created(o)
    updated = _updated(o)
    v = fe_tuple_alloc(OrderView, 26)
    _put(v, 0, o.order_id)
    _put(v, 1, o.client_order_id)
    _put(v, 2, o.broker_order_id)
    _put(v, 3, status)
    _put(v, 4, o.account_id)
    _put(v, 5, o.inst.name)
    _put(v, 6, o.side)
    _put(v, 7, n.info.name)
    _put(v, 8, size)
    _put(v, 9, filled)
    _put(v, 10, n.price)
    _put(v, 11, n.stop_price)
    _put(v, 12, n.trailing_distance)
    _put(v, 13, o.trigger_price)
    _put(v, 14, avg)
    _put(v, 15, n.tif)
    _put(v, 16, n.gtd_ns)
    _put(v, 17, sl)
    _put(v, 18, tp)
    _put(v, 19, tsl)
    _put(v, 20, created)
    _put(v, 21, updated)
    _put(v, 22, o.reject_reason)
    _put(v, 23, o.request_id)
    _put(v, 24, timings)
    _put(v, 25, precision)
    return v


cdef inline void _put(object t, Py_ssize_t k, object x) noexcept:
    Py_INCREF(x)
    PyTuple_SET_ITEM(t, k, x)


def view(Order o not None):
    """``order_view`` from Python."""
    return order_view(o)


cdef object _trade_id(object s):
    """``int(s)`` for one trade id. v20 ids are short ASCII decimal strings:
    those are parsed here (int() would give the same number); anything else
    goes to int() itself (same result, same ValueError)."""
    cdef Py_ssize_t n, k
    cdef long long v = 0, d
    if type(s) is str:
        n = len(<str>s)
        if 0 < n <= 18:  # 18 digits cannot overflow a long long
            for k in range(n):
                d = <long long>(<Py_UCS4>(<str>s)[k]) - 48
                if d < 0 or d > 9:  # not '0'..'9'
                    return int(s)
                v = v * 10 + d
            return v
    return int(s)


cdef tuple _trade_ids(opened_id, closed_ids):
    """The trade a fill opened (0 = none) and the trades it closed (None = FIFO).

    v20 trade ids are decimal strings; anything else (a broker with other ids)
    falls back to FIFO, as before ids were tracked.
    """
    try:
        opened = _trade_id(opened_id) if opened_id else 0
        if not closed_ids:
            closed = None
        elif type(closed_ids) is tuple and len(<tuple>closed_ids) == 1:  # the common case: one trade closed
            closed = (_trade_id((<tuple>closed_ids)[0]),)
        else:
            closed = tuple([_trade_id(x) for x in closed_ids])
    except ValueError:
        return (0, None)
    return (opened if opened > 0 else 0, closed)


def trade_ids(opened_id, closed_ids):
    """``_trade_ids`` from Python (``OrderFilled.trade_opened_id``, ``.trades_closed``)."""
    return _trade_ids(opened_id, closed_ids)


# ---------------------------------------------------------------------- latency ring

@cython.final
cdef class LatencyRing:
    """The most recent ``capacity`` samples of one operation (ns), in a C array.

    Not a list of ints: every sample as an int object meant one allocation per
    add and, ``capacity`` adds later, freeing that object when its slot was
    reused, by then cold (two rings, 8,192 samples each, are ~0.6 MB of int
    objects that every order touched once more). The fields are read-only from
    Python: ``_add_ns`` indexes the array without a bounds check, which is safe
    because only it moves ``_pos`` (< ``_cap``)."""

    cdef int64_t* _vals
    cdef readonly Py_ssize_t _pos, _count, _cap

    def __cinit__(self, Py_ssize_t capacity=8192):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._vals = <int64_t*>PyMem_Calloc(capacity, sizeof(int64_t))
        if self._vals is NULL:
            raise MemoryError()
        self._cap = capacity
        self._pos = 0
        self._count = 0

    def __dealloc__(self):
        PyMem_Free(self._vals)

    def add(self, int64_t ns) -> None:
        self._add_ns(ns)

    cdef inline int _add_ns(self, int64_t ns) except -1:
        cdef Py_ssize_t pos = self._pos
        self._vals[pos] = ns
        pos += 1
        self._pos = 0 if pos == self._cap else pos
        self._count += 1
        return 0

    def summary(self) -> dict:
        cdef Py_ssize_t n = min(self._count, self._cap), i
        if n == 0:
            return {"count": 0}
        data = sorted([self._vals[i] for i in range(n)])

        def pct(p: int) -> int:
            # nearest-rank percentile: the smallest sample with at least p% at or below it
            idx = max(0, -(-p * n // 100) - 1)
            return data[idx]

        return {
            "count": self._count,
            "p50_ns": pct(50),
            "p95_ns": pct(95),
            "p99_ns": pct(99),
            "max_ns": data[n - 1],
        }


# ---------------------------------------------------------------------- the engine's per-order path

cdef object _normalize_fn = None
cdef object _event_record = None  # fastexec.journal.records.event_record, imported on first journaled event


cdef object _normalize():
    """validation.normalize (imported on first use: validation imports this module)."""
    global _normalize_fn
    if _normalize_fn is None:
        from fastexec.engine.validation import normalize
        _normalize_fn = normalize
    return _normalize_fn


# The two records of every market order, as templates (``_dictfill``): the
# keys in the records' order, the constant "type" set.
cdef bint _DIRECT = df.works()
cdef tuple _FILLED_KEYS = _FILLED_FIELDS + ("type", "ts")
cdef dict _FILLED_REC = df.template(_FILLED_KEYS)
_FILLED_REC["type"] = "broker.filled"
cdef tuple _SUBMITTED_KEYS = (
    "type", "ts", "order_id", "client_order_id", "account_id", "instrument", "side", "units", "order_type", "price",
    "stop_price", "trailing_distance", "time_in_force", "gtd_time_ns", "stop_loss", "take_profit",
    "trailing_stop_distance", "request_id", "emulated",
)
cdef dict _SUBMITTED_REC = df.template(_SUBMITTED_KEYS)
_SUBMITTED_REC["type"] = "order.submitted"
cdef tuple _TIMINGS_KEYS = ("risk_ns", "broker_ns", "total_ns")
cdef dict _TIMINGS = df.template(_TIMINGS_KEYS)
DIRECT_DICTS = _DIRECT  # records and timings written into template copies (tests check it)


cdef dict _filled_record(ev):
    """``records.event_record`` of an OrderFilled, read through its slot descriptors (``_FILL``,
    the fields in declaration order): the same keys in the same order, ``ts`` now."""
    cdef tuple d = _FILL
    cdef tuple k = _FILLED_KEYS
    cdef Py_ssize_t i
    cdef dict r = df.new(_FILLED_REC)
    cdef bint dr = _DIRECT and df.direct(r, 17)
    for i in range(14):
        df.put(r, dr, k, i, _get(d, i, ev))
    df.put(r, dr, k, 14, list(_get(d, 14, ev)))
    df.put(r, dr, k, 16, _time_ns())
    return r


cdef inline object _exit_rec(d):
    return None if d is None else {"price": d.price, "distance": d.distance, "guaranteed": d.guaranteed}


cdef dict _submitted_record(Order o, ts):
    """``Engine._journal_submitted``'s record (engine.py keeps the Python original, the reference):
    the same keys in the same order."""
    cdef Normalized n = o.norm
    cdef tuple k = _SUBMITTED_KEYS
    instrument = o.inst.name
    units = abs(n.units)
    sl = _exit_rec(n.stop_loss)
    tp = _exit_rec(n.take_profit)
    tsl = n.trailing_stop
    tsd = tsl.distance if tsl is not None else None
    cdef dict r = df.new(_SUBMITTED_REC)
    cdef bint dr = _DIRECT and df.direct(r, 19)
    df.put(r, dr, k, 1, ts)  # o.created_at: submit passes the clock's object it was made from
    df.put(r, dr, k, 2, o.order_id)
    df.put(r, dr, k, 3, o.client_order_id)
    df.put(r, dr, k, 4, o.account_id)
    df.put(r, dr, k, 5, instrument)
    df.put(r, dr, k, 6, o.side)
    df.put(r, dr, k, 7, units)
    df.put(r, dr, k, 8, n.info.name)
    df.put(r, dr, k, 9, n.price)
    df.put(r, dr, k, 10, n.stop_price)
    df.put(r, dr, k, 11, n.trailing_distance)
    df.put(r, dr, k, 12, n.tif)
    df.put(r, dr, k, 13, n.gtd_ns)
    df.put(r, dr, k, 14, sl)
    df.put(r, dr, k, 15, tp)
    df.put(r, dr, k, 16, tsd)
    df.put(r, dr, k, 17, o.request_id)
    df.put(r, dr, k, 18, n.emulated)
    return r


def submitted_record(Order o not None):
    """The compiled ``order.submitted`` record (for the differential tests)."""
    return _submitted_record(o, o.created_at)


def filled_record(ev):
    """The compiled ``broker.filled`` record (for the differential tests); None when OrderFilled
    is not the slotted shape it reads."""
    return None if _FILL is None else _filled_record(ev)


cdef class EngineCore:
    """Base class of ``Engine``: the attributes the per-order path reads, as
    C fields, and the methods every routed order runs (see the module
    docstring). ``Engine.__init__`` sets every field."""

    cdef public object broker
    cdef public object _clock
    cdef public object _journal
    cdef public bint _journal_on
    cdef public dict _inst
    cdef public Ledger _ledger
    cdef public OrderStore _store
    cdef public object _risk
    cdef public object _gate
    cdef public RiskEngine _kernel  # _risk.kernel: _gate's object, called in C
    cdef public dict _accounts
    cdef public dict _orders
    # Orders by client id, per account (a list indexed by the account's int:
    # client ids are unique per account, as at OANDA), for the orders whose
    # client id differs from their order id (a client chose it); an order
    # without one is its own client id and found in ``_orders``
    # (``_client_order``): one big table fewer to insert into and forget
    # from per order.
    cdef public list _by_client
    # account id -> {broker order id -> order}: keyed by the broker's id
    # alone within an account, no (account, broker id) tuple per order
    # (``_broker_order``, ``_bind_broker``)
    cdef public dict _by_broker
    cdef public list _terminal  # ids of finished orders, oldest first (see _forget_oldest)
    cdef public object _kill
    cdef public list _subs
    cdef public object _perf
    cdef public LatencyRing _submit_ring
    cdef public dict _seen  # account -> TxnWindow
    cdef public Py_ssize_t retain_terminal
    cdef public Py_ssize_t retire_batch
    cdef public int64_t _seq
    cdef public str _id_prefix
    cdef public object _day_end
    cdef public bint _broker_ok
    # The broker's ``submit_now`` (see ``_send_now``), looked up once per
    # broker object: ``_now_broker`` is the broker it was looked up on.
    cdef object _submit_now
    cdef object _now_broker
    cdef object _now_exc  # (BrokerError, send time) of a submit_now that raised, for submit to resolve
    # ``_journal.append``, bound once per journal object (``_journal_add``)
    cdef object _jappend
    cdef object _jobj

    cdef inline int _journal_add(self, rec) except -1:
        """``self._journal.append(rec)`` through the bound method taken once per journal."""
        j = self._journal
        if j is not self._jobj:
            self._jappend = j.append
            self._jobj = j
        self._jappend(rec)
        return 0

    # ------------------------------------------------------------------ check

    def _check(self, spec, now, bint consume):
        """Shape, kill switch and risk, in that order; nothing is changed
        unless every check passes (and then only the rate bucket, if consume).
        Returns (instrument, account index, Normalized)."""
        return self._check_c(spec, now, consume)

    cdef tuple _check_c(self, spec, now, bint consume):
        cdef Instrument inst
        cdef Normalized n
        if type(spec) is not OrderSpec and not isinstance(spec, OrderSpec):
            raise ValidationError("order must be an OrderSpec", code="INVALID_ORDER")
        cdef tuple sd = _SPEC if type(spec) is OrderSpec else None  # its fields through the slots
        name = _get(sd, 1, spec) if sd is not None else spec.instrument
        inst = self._inst.get(name) if type(name) is str else None
        if inst is None:
            inst = self._instrument(name)  # raises with the right code
        account_id = _get(sd, 0, spec) if sd is not None else spec.account_id
        a = self._accounts.get(account_id) if type(account_id) is str else None
        if a is None:
            a = self._acct_index(account_id, for_order=True)  # raises
        n = _plain(spec, inst)
        if n is None:
            n = _normalize()(spec, inst, now)
        coid = n.client_order_id
        if coid is not None and self._client_order(a, coid) is not None:
            raise ConflictError(
                f"client_order_id {coid!r} is already in use",
                code="DUPLICATE_CLIENT_ORDER_ID", field="client_order_id",
            )
        kill = self._kill
        if kill.n_active:
            ks = kill.blocking(account_id)
            if ks is not None:
                raise KillSwitchActiveError(
                    f"kill switch active for {ks.account_id or 'all accounts'}: {ks.reason}",
                    code="KILL_SWITCH_ACTIVE", detail=f"actor={ks.actor} reason={ks.reason}",
                )
        if now >= self._day_end:
            self._roll_day(now)
        code = self._kernel._gate(a, inst.index, n.units, now, consume)  # RiskGateway.check, one C call
        if code:
            detail = self._risk.kernel.last_denial
            raise RiskDeniedError(f"risk check failed: {detail}", code=_RISK_CODE_NAMES[code], detail=detail)
        return (inst, a, n)

    # ------------------------------------------------------------------ submit

    async def submit(self, order, *, request_id=None):
        """Risk-check, record and route one order; returns its view after the
        broker's immediate answer (filled, working, cancelled or rejected).

        Raises ValidationError / RiskDeniedError / KillSwitchActiveError /
        ConflictError before anything is recorded, BrokerUnavailableError when
        the broker cannot be reached and the order provably was not placed.
        """
        cdef Order o
        cdef Normalized n
        cdef int64_t t0 = _perf_ns(), total
        now = self._clock()
        try:
            inst, a, n = self._check_c(order, now, True)
        except FastexecError as exc:
            self._perf.count("refused." + exc.code)
            raise
        o = self._record(order, inst, a, n, request_id, now, _perf_ns() - t0)
        # Atomic up to the first send: if the journal refuses the record (it cannot encode
        # it, or the writer failed) or arming raises, the order leaves every table it
        # entered and the error reaches the caller; no half-recorded order stays behind.
        # (A try costs nothing measurable on the success path.)
        cdef bint journaled = False
        try:
            if self._journal_on:
                self._journal_add(_submitted_record(o, now))  # Engine._journal_submitted, compiled
                journaled = True
            if self._subs:
                self._emit_order("order_submitted", o)
            if n.emulated:
                self._arm(o, now)
        except BaseException:
            self._unrecord(o, journaled)
            raise
        if not n.emulated:
            # one send per order (never resent; lost answers are resolved by
            # client id): at once when the broker can answer without waiting
            # (_send_now), else through _route
            code = self._send_now(o)
            if code == 0:
                await self._route(o)
            elif code == 3:
                lost, self._now_exc = self._now_exc, None
                await self._route_lost(o, lost[0], lost[1])
            elif code != 1:
                await self._follow_up(o, code == 2)
            if o.reject_reason is not None and o.reject_reason == "NOT_PLACED":
                # The broker proved it never placed the order (it could not be
                # reached): that is an outage for the caller, not a business reject.
                raise BrokerUnavailableError(
                    "the broker could not be reached; the order was not placed", code="BROKER_UNAVAILABLE",
                    detail=f"order_id={o.order_id} status=rejected reason=NOT_PLACED",
                )
        total = _perf_ns() - t0
        o.total_ns = total
        self._submit_ring._add_ns(total)
        if _debug_enabled():  # no record is built otherwise
            log.debug("order %s %s", o.order_id, STATUS[o.state], extra=self._log_extra(o))
        return order_view(o)

    cdef Order _record(self, spec, Instrument inst, a, Normalized n, request_id, now, int64_t risk_ns):
        """A checked order's id, its row in the C store and its record."""
        cdef Order o
        self._seq += 1
        oid = fe_id_str(self._id_prefix, self._seq)  # self._id_prefix + str(self._seq)
        if oid in self._orders:  # an adopted order's id (client ids never take this form)
            oid = self._next_id()
        coid = n.client_order_id or oid
        price = n.price
        stop = n.stop_price
        cdef int64_t k = self._store._add(oid, a, inst.index, n.units, price or 0, stop or 0, n.emulated)
        cdef tuple sd = _SPEC if type(spec) is OrderSpec else None
        if sd is not None:
            o = _new_order(oid, coid, _get(sd, 0, spec), a, inst, n, _get(sd, 2, spec), request_id, now)
        else:
            o = _new_order(oid, coid, spec.account_id, a, inst, n, spec.side, request_id, now)
        o.slot = k
        o.risk_ns = risk_ns
        self._orders[oid] = o
        if coid is not oid and coid != oid:
            (<dict>self._by_client[a])[coid] = o
        return o

    cdef int _unrecord(self, Order o, bint journaled) except -1:
        """Undo ``_record`` for an order that was never sent (``submit`` failed before
        its first send): out of ``_orders``, the client-id index and the emulation book;
        its store row ends (working counts drop) and is forgotten with the finished
        orders. If its ``order.submitted`` record went out, a ``rejected`` status follows
        it (best effort: the journal may be the thing that failed)."""
        oid = o.order_id
        if self._orders.get(oid) is o:
            del self._orders[oid]
        coid = o.client_order_id
        d = <dict>self._by_client[o.acct]
        if coid is not oid and coid != oid and d.get(coid) is o:
            del d[coid]
        if o.norm.emulated:
            self._emu.remove(oid)
        if not C_TERMINAL[_st(o.state)]:
            o.state = self._store.apply_at(o.slot, oid, E.CANCEL if o.state is _EMULATED else E.REJECT)
            self._terminal.append(oid)
        o.reject_reason = "SUBMIT_FAILED"
        if journaled:
            try:
                self._journal_add({"type": "order.status", "ts": self._clock(), "account_id": o.account_id,
                                   "order_id": oid, "status": "rejected", "reason": "SUBMIT_FAILED"})
            except Exception:
                log.exception("order %s: its rejection could not be journaled", oid)
        return 0

    cdef Order _client_order(self, a, cid):
        """The order of account ``a`` (its int) whose client id is ``cid`` (a str), or None."""
        x = (<dict>self._by_client[a]).get(cid)
        if x is None:
            x = self._orders.get(cid)
            if x is None or ((<Order>x).client_order_id is not cid and (<Order>x).client_order_id != cid):
                return None
            if (<Order>x).acct is not a and (<Order>x).acct != a:
                return None
        return <Order>x

    def _by_client_id(self, account_id, cid):
        """``_client_order`` from Python: the order of ``account_id`` (its id) whose client
        id is ``cid``, or None."""
        a = self._accounts.get(account_id) if type(account_id) is str else None
        return self._client_order(a, cid) if a is not None and type(cid) is str else None

    async def _route(self, Order o not None):
        """Send a routed order (or a triggered emulated order's child) once."""
        req = broker_request(o.norm, o.client_order_id, o.account_id, o.inst.name)
        cdef int64_t tb = _perf_ns()
        try:
            events = await self.broker.submit(req)
        except BrokerError as exc:
            events = await self._resolve_lost_submit(o, exc)
        cdef int code = self._routed(o, events, tb)
        if code != 1:
            await self._follow_up(o, code == 2)

    cdef int _send_now(self, Order o) except -1:
        """``_route`` without a coroutine, for a broker whose ``submit_now``
        answers at once (the simulated venue's compiled market path): it
        returns the events ``submit`` would have returned, or None having
        done nothing (then ``_route`` sends it). 0: not sent (await
        ``_route``); 3: it raised BrokerError (``_now_exc``: await
        ``_route_lost``); else ``_routed``'s code."""
        broker = self.broker
        if broker is not self._now_broker:
            self._now_broker = broker
            self._submit_now = getattr(broker, "submit_now", None)
        fn = self._submit_now
        if fn is None:
            return 0
        req = broker_request(o.norm, o.client_order_id, o.account_id, o.inst.name)
        cdef int64_t tb = _perf_ns()
        try:
            events = fn(req)
        except BrokerError as exc:
            self._now_exc = (exc, tb)
            return 3
        if events is None:
            return 0
        return self._routed(o, events, tb)

    async def _route_lost(self, Order o not None, exc, int64_t tb):
        """``_route``'s BrokerError branch, for a ``submit_now`` that raised."""
        events = await self._resolve_lost_submit(o, exc)
        cdef int code = self._routed(o, events, tb)
        if code != 1:
            await self._follow_up(o, code == 2)

    cdef int _routed(self, Order o, events, int64_t tb) except -1:
        """Apply the broker's answer to a send. 1: done; 2: the answer did not
        say what became of the order (``_follow_up`` reconciles it); 4: the
        kill switch was pulled while it was in flight (``_follow_up``
        cancels it)."""
        o.broker_ns = _perf_ns() - tb
        self._broker_ok = True
        cdef Py_ssize_t seen = o.events
        for ev in events:
            try:
                self._dispatch_c(ev)
            except Exception:
                log.exception("broker event %s could not be applied", type(ev).__name__, extra=self._log_extra(o))
        if o.events == seen and o.state is _PENDING_SUBMIT:
            return 2
        if C_AT_BROKER[_st(o.state)] and self._kill.n_active and self._kill.blocking(o.account_id) is not None:
            return 4
        return 1

    async def _follow_up(self, Order o not None, bint reconcile):
        if reconcile:
            # The broker answered without saying what became of the order:
            # look it up by client id rather than guess (never resend).
            await self._reconcile_order(o)
        if C_AT_BROKER[_st(o.state)] and self._kill.n_active and self._kill.blocking(o.account_id) is not None:
            # The kill switch was pulled while this order was in flight.
            await self._cancel_at_broker(o)

    # ------------------------------------------------------------------ retire

    def _forget_oldest(self):
        """Forget finished orders in batches, oldest first (``Engine._retire``
        queues them). The store forgets its own in the same order
        (``evict_terminal`` pops from its queue, O(1) each; evicting one id
        at a time would scan that queue)."""
        cdef list terminal = self._terminal
        cdef Py_ssize_t keep = self.retain_terminal
        cdef Py_ssize_t n = len(terminal) - keep
        cdef dict orders = self._orders, by_broker = self._by_broker
        cdef list by_client = self._by_client
        cdef Order o
        if n > 0:
            old = terminal[:n]
            del terminal[:n]
            for oid in old:
                x = orders.pop(oid, None)
                if x is None:
                    continue
                o = <Order?>x
                coid = o.client_order_id
                if coid is not oid and coid != oid:
                    (<dict>by_client[o.acct]).pop(coid, None)
                if o.broker_order_id is not None:
                    d = by_broker.get(o.account_id)
                    if d is not None:
                        (<dict>d).pop(o.broker_order_id, None)
        self._store._evict_terminal(keep)

    cdef Order _broker_order(self, account_id, broker_id):
        """The order the broker knows in ``account_id`` as ``broker_id``, or None."""
        d = self._by_broker.get(account_id)
        if d is None:
            return None
        x = (<dict>d).get(broker_id)
        return None if x is None else <Order>x

    cdef int _bind_broker_c(self, Order o, broker_id) except -1:
        """Find ``o`` by ``broker_id`` (in its account) from now on."""
        d = self._by_broker.get(o.account_id)
        if d is None:
            d = self._by_broker[o.account_id] = {}
        (<dict>d)[broker_id] = o
        return 0

    def _by_broker_id(self, account_id, broker_id):
        """``_broker_order`` from Python."""
        return self._broker_order(account_id, broker_id)

    def _bind_broker(self, Order o not None, broker_id):
        """``_bind_broker_c`` from Python."""
        self._bind_broker_c(o, broker_id)

    def _unbind_broker(self, account_id, broker_id):
        """Stop finding an order by ``broker_id`` in ``account_id``."""
        d = self._by_broker.get(account_id)
        if d is not None:
            (<dict>d).pop(broker_id, None)

    # ------------------------------------------------------------------ broker events

    def _dispatch(self, ev):
        """Apply one broker event (deduplicated by its transaction id)."""
        self._dispatch_c(ev)

    cdef int _dispatch_c(self, ev) except -1:
        global _event_record
        cdef Order o
        t = type(ev)
        if t is PriceTick:
            self._on_tick(ev)
            return 0
        cdef bint fill = t is OrderFilled and _FILL is not None
        txn = _get(_FILL, F_TXN, ev) if fill else ev.txn_id
        if txn is not None:
            account_id = _get(_FILL, F_ACCOUNT, ev) if fill else ev.account_id
            seen = self._seen.get(account_id)
            if seen is None:
                return 0  # not one of our accounts
            # applied already, or older than the window (a redelivered old fill
            # must never be booked twice): dropped
            if (<TxnWindow?>seen).applied_or_add(txn):
                return 0
        if self._journal_on:
            if _event_record is None:
                from fastexec.journal.records import event_record
                _event_record = event_record
            rec = _filled_record(ev) if fill else _event_record(ev)
            if rec is not None:
                self._journal_add(rec)
        if t is OrderFilled:
            self._on_fill(ev)
        elif t is OrderAccepted:
            o = self._match(ev.account_id, ev.client_id, ev.broker_order_id)
            if o is not None:
                o.events += 1
                self._bind(o, ev.broker_order_id)
                if o.state in (S.PENDING_SUBMIT, S.PENDING_CANCEL):
                    self._transition(o, E.ACCEPT)
                    _set_updated(o, ev.time_ns)
                    self._emit_order("order_working", o)
        elif t is OrderCancelled:
            self._on_cancelled(ev)
        elif t is OrderRejected:
            o = self._match(ev.account_id, ev.client_id, None)
            if o is not None:
                o.events += 1
                if o.pending_op is not None:
                    o.reject_reason = ev.reason  # a refused cancel/replace; the request handles the state
                elif o.state in (S.PENDING_SUBMIT, S.PENDING_CANCEL):
                    o.reject_reason = ev.reason
                    _set_updated(o, ev.time_ns)
                    self._transition(o, E.REJECT)
                    log.info("order %s rejected by the broker: %s", o.order_id, ev.reason, extra=self._log_extra(o))
                    self._emit_order("order_rejected", o)
        elif t is OrderReplaced:
            self._on_replaced(ev)  # Engine: the new terms enter the store before the replacement's fill
        return 0

    cdef int _on_fill(self, ev) except -1:
        cdef Order o
        cdef Instrument inst
        cdef Ledger ledger
        cdef tuple d = _FILL
        cdef int i
        if d is None:  # OrderFilled is not the slotted dataclass this expects: plain attribute reads
            account_id, cid, broker_id, txn_id = ev.account_id, ev.client_id, ev.broker_order_id, ev.txn_id
            inst_name, units, price, time_ns = ev.instrument, ev.units, ev.price, ev.time_ns
            financing, commission, tid, closed_ids = ev.financing, ev.commission, ev.trade_opened_id, ev.trades_closed
        else:
            account_id, cid, broker_id, txn_id = _get(d, F_ACCOUNT, ev), _get(d, F_CLIENT, ev), \
                _get(d, F_BROKER_ID, ev), _get(d, F_TXN, ev)
            inst_name, units, price, time_ns = _get(d, F_INSTRUMENT, ev), _get(d, F_UNITS, ev), \
                _get(d, F_PRICE, ev), _get(d, F_TIME, ev)
            financing, commission, tid, closed_ids = _get(d, F_FINANCING, ev), _get(d, F_COMMISSION, ev), \
                _get(d, F_OPENED, ev), _get(d, F_CLOSED, ev)
        a = self._accounts[account_id]
        inst = self._inst.get(inst_name)
        if inst is None:
            log.error("fill for unknown instrument %s ignored", inst_name)
            return 0
        i = inst.index
        # The fill happened at the venue: positions take it whatever our order
        # bookkeeping says below.
        # Exits and trade closes name the trades they close: the ledger closes
        # those lots (not the oldest) so realized P&L matches the broker's.
        opened, closed = _trade_ids(tid, closed_ids)
        ledger = self._ledger
        cdef int64_t cu = units, cpx = price, au, uv  # the conversions the ledger's call made, in that order
        if closed is None:
            ledger._apply_fill(a, i, cu, cpx, 0, opened, None)
        else:
            miss = ledger.unmatched_trade_ids
            ledger._apply_fill(a, i, cu, cpx, 0, opened, closed)
            if ledger.unmatched_trade_ids != miss:
                log.warning("fill %s names trades %s the books do not hold; closed FIFO instead",
                            txn_id, closed_ids)
        charge = financing - commission
        if charge:
            ledger.apply_charge(a, charge)
        o = self._client_order(a, cid) if type(cid) is str else None
        if o is None:
            o = self._broker_order(account_id, broker_id)
        if o is not None and o.inst_idx == i and o.account_id == account_id:
            o.events += 1
            if o.broker_order_id is not None and broker_id is not None and broker_id != o.broker_order_id:
                # another incarnation of the order (a replace): the engine first makes the
                # store's terms those of the order this fill is for (Engine._other_incarnation)
                self._other_incarnation(o, broker_id, units)
            try:
                st = o.state = self._store._fill_at(o.slot, o.order_id, units)
            except OrderError:
                st = None
            if o.broker_order_id is None:
                o.broker_order_id = broker_id
                # an order this fill finishes is not indexed by broker id: its later events
                # (none for a filled market order) carry its client id, and the index
                # would only be one more big table to insert into and forget from
                if st is None or not C_TERMINAL[_st(st)]:
                    self._bind_broker_c(o, broker_id)
            if st is None:
                log.error("fill %s does not fit order %s (%s); position updated, order state kept",
                          txn_id, o.order_id, STATUS[o.state], extra=self._log_extra(o))
                return 0
            au = cu if cu > 0 else -cu  # the ledger took it: |units| <= 10**12
            o.fill_units += au
            if o._fv_big is not None or fx_mul64(au, cpx, &uv) or fx_add64(o._fv, uv, &uv):
                o.fill_value = o.fill_value + au * price  # beyond int64: Python ints
            else:
                o._fv = uv
            _set_updated(o, time_ns)
            if C_TERMINAL[_st(st)]:
                if o.norm.emulated:
                    self._retire(o)
                else:  # _retire, inlined for routed orders
                    terminal = self._terminal
                    terminal.append(o.order_id)
                    if len(terminal) > self.retain_terminal + self.retire_batch:
                        self._forget_oldest()
            if not self._subs:
                return 0
            self._emit_order("order_filled" if st is _FILLED else "order_partially_filled", o)
        elif not self._subs:
            return 0
        else:
            # A broker-side order: stop loss, take profit, trailing stop, close-out.
            self._emit("exit_filled", account_id, None, None, ev)
        if self._subs:
            self._emit("position_changed", account_id, None, None, self.position(account_id, inst.name))
        return 0

    def _view(self, Order o not None):
        return order_view(o)
