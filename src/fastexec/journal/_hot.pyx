# cython: language_level=3
"""The journal's per-record hot path, compiled: frame encoding and the fold of
the two records every market order appends (``order.submitted``, ``broker.filled``).

Each function here is a line-for-line port of its Python original and must stay
one: ``codec.encode`` (frame layout: see ``codec``), ``JournalState._on_submitted``,
``_on_filled``, ``_set_status`` and ``_forget``. The Python originals remain the
reference (and the fallback when this module is not built); the differential
tests (``tests/journal/test_hot.py``) feed both the same records, including
hypothesis-generated ones, and compare frames byte for byte and states key for
key. What compiling buys: no bytecode dispatch, dict calls straight into the C
API, the frame built in one allocation (header written in place, no ``struct``
pack, no concatenation) and its CRC-32 (zlib's polynomial, bit-identical to
``zlib.crc32``) computed slicing-by-8 in place.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Copy, PyDict_GetItem, PyDict_SetItem, PyDict_DelItem, PyDict_Contains
from cpython.object cimport PyObject, PyObject_IsTrue
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from collections import deque

import orjson

cdef object _dumps = orjson.dumps
cdef object _deque = deque

cdef Py_ssize_t MAX_PAYLOAD_C = 16 * 1024 * 1024
MAX_PAYLOAD = MAX_PAYLOAD_C  # codec.MAX_PAYLOAD (codec.py checks they agree)
RECENT_TXNS = 4096  # state.RECENT_TXNS (state.py checks they agree)
cdef Py_ssize_t _RECENT_TXNS = RECENT_TXNS

# ---------------------------------------------------------------------------- CRC-32 (zlib's)

cdef uint32_t _T[8][256]


cdef void _init_tables() noexcept:
    cdef uint32_t c, i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ (0xEDB88320U if (c & 1) else 0)
        _T[0][i] = c
    for i in range(256):
        for k in range(1, 8):
            _T[k][i] = (_T[k - 1][i] >> 8) ^ _T[0][_T[k - 1][i] & 0xFF]


_init_tables()


cdef inline uint32_t _crc_update(uint32_t crc, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """zlib.crc32(data, crc) over ``n`` bytes at ``p`` (slicing-by-8, byte order independent loads)."""
    cdef uint32_t c = crc ^ 0xFFFFFFFFU
    cdef uint32_t lo, hi
    while n >= 8:
        lo = c ^ (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))
        hi = <uint32_t>p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        c = (_T[7][lo & 0xFF] ^ _T[6][(lo >> 8) & 0xFF] ^ _T[5][(lo >> 16) & 0xFF] ^ _T[4][lo >> 24] ^
             _T[3][hi & 0xFF] ^ _T[2][(hi >> 8) & 0xFF] ^ _T[1][(hi >> 16) & 0xFF] ^ _T[0][hi >> 24])
        p += 8
        n -= 8
    while n > 0:
        c = _T[0][(c ^ p[0]) & 0xFF] ^ (c >> 8)
        p += 1
        n -= 1
    return c ^ 0xFFFFFFFFU


def crc32(const unsigned char[::1] data, uint32_t value=0):
    """Same result as ``zlib.crc32(data, value)`` (for the tests)."""
    if data.shape[0] == 0:
        return value
    return _crc_update(value, &data[0], data.shape[0])


cdef inline void _le32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cpdef bytes frame(long long seq_in, bytes body):
    """The frame around an encoded payload (``codec.encode_raw``'s layout, the default limit).
    (``seq`` is taken as a signed C long long: converting to an unsigned one goes through
    ``_PyLong_AsByteArray``, ~500 instructions a record.)"""
    if seq_in < 0:
        raise OverflowError("journal sequence numbers are not negative")
    cdef uint64_t seq = <uint64_t>seq_in
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    if n > MAX_PAYLOAD_C:
        raise ValueError(f"journal record of {n} bytes exceeds the {MAX_PAYLOAD_C}-byte limit")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 20 + n)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    p[0] = 70  # F
    p[1] = 88  # X
    p[2] = 74  # J
    p[3] = 1   # version
    _le32(p + 4, <uint32_t>n)
    _le32(p + 8, <uint32_t>(seq & 0xFFFFFFFFU))
    _le32(p + 12, <uint32_t>(seq >> 32))
    memcpy(p + 20, PyBytes_AS_STRING(body), n)
    _le32(p + 16, _crc_update(_crc_update(0, p, 16), p + 20, n))
    return out


cpdef bytes encode(long long seq, payload):
    """``codec.encode``: one complete frame of an orjson-encoded dict."""
    return frame(seq, _dumps(payload))


# ---------------------------------------------------------------------------- the fold

cdef frozenset TERMINAL = frozenset({"filled", "cancelled", "rejected"})
cdef tuple _HEAVY = ("stop_loss", "take_profit", "emulation", "trailing_distance", "trailing_stop_distance",
                     "stop_price", "time_in_force", "gtd_time_ns", "request_id", "cancel_requested")


cdef inline object _get(dict d, key, default=None):
    cdef PyObject* v = PyDict_GetItem(d, key)
    return default if v is NULL else <object>v


cdef inline void _pop(dict d, key) except *:
    if PyDict_Contains(d, key):
        PyDict_DelItem(d, key)


cdef int _forget(state, order_id) except -1:
    cdef dict orders = state.orders
    cdef object order_o = _get(orders, order_id)
    if order_o is None:
        return 0
    cdef dict order = order_o
    if order["status"] not in TERMINAL:
        return 0  # re-opened by a later correction: keep it
    del orders[order_id]
    cdef dict by_client = state.by_client
    cid = order.get("client_order_id")
    if _get(by_client, cid) == order_id:
        del by_client[order["client_order_id"]]
    key = f"{order['account_id']}/{order.get('broker_order_id')}"
    cdef dict by_broker = state.by_broker
    if _get(by_broker, key) == order_id:
        del by_broker[key]
    return 0


cdef int _set_status(state, dict order, str status) except -1:
    was_terminal = order["status"] in TERMINAL
    order["status"] = status
    if status in TERMINAL and not was_terminal:
        for key in _HEAVY:  # a finished order is kept for lookups, not for re-arming
            _pop(order, key)
        terminal = state._terminal
        terminal.append(order["order_id"])
        limit = state.retain_terminal
        while len(terminal) > limit:
            _forget(state, terminal.popleft())
    return 0


def on_submitted(state, dict rec):
    """``JournalState._on_submitted``."""
    oid = rec["order_id"]
    ts = _get(rec, "ts")
    cdef dict order = PyDict_Copy(rec)
    order["created_at"] = ts
    order["updated_at"] = ts
    order["status"] = "emulated" if PyObject_IsTrue(_get(rec, "emulated")) else "accepted"
    order["filled_units"] = 0
    order["fill_notional"] = 0
    order["reject_reason"] = None
    del order["type"]
    _pop(order, "source")
    bid = _get(order, "broker_order_id")
    if bid is None:
        order["broker_order_id"] = None
    cdef dict orders = state.orders
    orders[oid] = order
    cid = _get(rec, "client_order_id")
    if PyObject_IsTrue(cid):
        (<dict>state.by_client)[cid] = oid
    if bid is not None:
        (<dict>state.by_broker)[f"{rec['account_id']}/{bid}"] = oid


def on_filled(state, dict rec):
    """``JournalState._on_filled``."""
    acct = rec["account_id"]
    txn = _get(rec, "txn_id")
    cdef dict recent_sets, recent_orders, last_txn
    if txn is not None:
        recent_sets = state._recent
        seen = _get(recent_sets, acct)
        if seen is None:
            seen = set()
            recent_sets[acct] = seen
        elif txn in seen:
            return  # already applied
        recent_orders = state._recent_order
        recent = _get(recent_orders, acct)
        if recent is None:
            recent = _deque()
            recent_orders[acct] = recent
        seen.add(txn)
        recent.append(txn)
        if len(recent) > _RECENT_TXNS:
            seen.discard(recent.popleft())
        last_txn = state.last_txn
        if txn > _get(last_txn, acct, 0):
            last_txn[acct] = txn
    units = rec["units"]
    inst = rec["instrument"]
    cdef dict positions = state.positions
    book_o = _get(positions, acct)
    if book_o is None:
        book_o = {}
        positions[acct] = book_o
    cdef dict book = book_o
    net = _get(book, inst, 0) + units
    if net:
        book[inst] = net
    else:
        _pop(book, inst)
    cdef dict balances = state.balances
    balance = _get(rec, "account_balance")
    if balance is not None:
        balances[acct] = balance
    elif PyDict_Contains(balances, acct):
        balances[acct] += _get(rec, "pl", 0) + _get(rec, "financing", 0) - _get(rec, "commission", 0)
    oid = None
    cid = _get(rec, "client_id")
    if cid is not None:
        oid = _get(<dict>state.by_client, cid)
    bid = _get(rec, "broker_order_id")
    if oid is None and bid is not None:
        oid = _get(<dict>state.by_broker, f"{acct}/{bid}")
    if oid is None:
        return
    order_o = _get(<dict>state.orders, oid)
    if order_o is None:
        return  # an exit (stop loss, take profit, close) with no engine order behind it
    cdef dict order = order_o
    if _get(order, "broker_order_id") is None:
        order["broker_order_id"] = bid
        if bid is not None:
            (<dict>state.by_broker)[f"{acct}/{bid}"] = order["order_id"]
    if units < 0:
        units = -units
    filled = order["filled_units"] + units
    order["filled_units"] = filled
    order["fill_notional"] += units * rec["price"]
    _set_status(state, order, "filled" if filled >= order["units"] else "partially_filled")
    order["updated_at"] = _get(rec, "ts")
