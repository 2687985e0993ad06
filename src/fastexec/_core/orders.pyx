# cython: language_level=3
"""Order state machine (one explicit table) and the store of the engine's orders.

The table is the whole truth about which events an order may take in which
state; nothing else in the code decides a next state. The edges that look odd
are the ones brokers produce in real life:

* a fill (partial or full) can arrive after we asked to cancel or replace,
  because the order was already matching; a partial fill keeps the request
  pending, a full fill ends the order;
* an ACCEPT can arrive after a cancel request sent while the order was still
  pending submit;
* a rejected cancel/replace returns the order to the working state it was in
  (``PREVIOUS``), which is SUBMITTED or PARTIALLY_FILLED depending on fills
  that arrived meanwhile;
* emulated orders (stop-limit, trailing-stop entries) live in the engine:
  EMULATED -TRIGGER-> TRIGGERED -SUBMIT-> PENDING_SUBMIT, and are cancelled or
  modified locally (CANCEL / REPLACE without a request round trip).

Routed orders are created in PENDING_SUBMIT, emulated ones in EMULATED.
Terminal states (FILLED, CANCELLED, REJECTED, EXPIRED) take no event.
"""
from enum import IntEnum

from libc.stdint cimport int8_t, int32_t, int64_t
from libc.stdlib cimport realloc, free, calloc, malloc

from fastexec._core.fixedpoint cimport C_MAX_UNITS, C_MAX_PRICE

MAX_ORDERS = C_MAX_ORDERS  # the largest max_orders (keeps the pending sums exact in int64)


class OrderState(IntEnum):
    PENDING_SUBMIT = ST_PENDING_SUBMIT
    SUBMITTED = ST_SUBMITTED
    EMULATED = ST_EMULATED
    TRIGGERED = ST_TRIGGERED
    PARTIALLY_FILLED = ST_PARTIALLY_FILLED
    FILLED = ST_FILLED
    PENDING_CANCEL = ST_PENDING_CANCEL
    PENDING_REPLACE = ST_PENDING_REPLACE
    CANCELLED = ST_CANCELLED
    REJECTED = ST_REJECTED
    EXPIRED = ST_EXPIRED


# The members by value, for returning a state from C: indexing a tuple costs a
# few instructions, ``OrderState(t)`` runs EnumType.__call__ in Python (~4.5k
# instructions, a quarter of a microsecond) on every transition.
cdef tuple _STATE_OF = tuple(OrderState)
assert [int(m) for m in _STATE_OF] == list(range(N_STATES))


class OrderEvent(IntEnum):
    SUBMIT = EV_SUBMIT
    ACCEPT = EV_ACCEPT
    REJECT = EV_REJECT
    TRIGGER = EV_TRIGGER
    PARTIAL_FILL = EV_PARTIAL_FILL
    FILL = EV_FILL
    CANCEL_REQUEST = EV_CANCEL_REQUEST
    CANCEL = EV_CANCEL
    CANCEL_REJECT = EV_CANCEL_REJECT
    REPLACE_REQUEST = EV_REPLACE_REQUEST
    REPLACE = EV_REPLACE
    REPLACE_REJECT = EV_REPLACE_REJECT
    EXPIRE = EV_EXPIRE


class _Previous:
    """Table marker: go back to the working state held before the request."""

    def __repr__(self):
        return "PREVIOUS"


PREVIOUS = _Previous()

TERMINAL_STATES = frozenset({
    OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED,
})

S = OrderState
E = OrderEvent

# The state machine. Keys absent here are invalid transitions.
TRANSITIONS = {
    (S.PENDING_SUBMIT, E.ACCEPT): S.SUBMITTED,
    (S.PENDING_SUBMIT, E.REJECT): S.REJECTED,
    (S.PENDING_SUBMIT, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PENDING_SUBMIT, E.FILL): S.FILLED,               # market orders fill in the create response
    (S.PENDING_SUBMIT, E.CANCEL): S.CANCELLED,          # FOK/IOC not filled, margin cancel
    (S.PENDING_SUBMIT, E.CANCEL_REQUEST): S.PENDING_CANCEL,
    (S.PENDING_SUBMIT, E.EXPIRE): S.EXPIRED,

    (S.SUBMITTED, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.SUBMITTED, E.FILL): S.FILLED,
    (S.SUBMITTED, E.CANCEL_REQUEST): S.PENDING_CANCEL,
    (S.SUBMITTED, E.CANCEL): S.CANCELLED,               # broker-side cancel
    (S.SUBMITTED, E.REPLACE_REQUEST): S.PENDING_REPLACE,
    (S.SUBMITTED, E.EXPIRE): S.EXPIRED,

    (S.EMULATED, E.TRIGGER): S.TRIGGERED,
    (S.EMULATED, E.CANCEL): S.CANCELLED,                # local cancel, nothing at the broker
    (S.EMULATED, E.REPLACE): S.EMULATED,                # local modify
    (S.EMULATED, E.EXPIRE): S.EXPIRED,

    (S.TRIGGERED, E.SUBMIT): S.PENDING_SUBMIT,
    (S.TRIGGERED, E.REJECT): S.REJECTED,                # e.g. denied by risk at trigger time
    (S.TRIGGERED, E.CANCEL): S.CANCELLED,

    (S.PARTIALLY_FILLED, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, E.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, E.CANCEL_REQUEST): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, E.CANCEL): S.CANCELLED,        # remainder cancelled
    (S.PARTIALLY_FILLED, E.REPLACE_REQUEST): S.PENDING_REPLACE,
    (S.PARTIALLY_FILLED, E.EXPIRE): S.EXPIRED,

    (S.PENDING_CANCEL, E.CANCEL): S.CANCELLED,
    (S.PENDING_CANCEL, E.CANCEL_REJECT): PREVIOUS,
    (S.PENDING_CANCEL, E.ACCEPT): S.PENDING_CANCEL,     # accept overtaken by our cancel request
    (S.PENDING_CANCEL, E.REJECT): S.REJECTED,
    (S.PENDING_CANCEL, E.PARTIAL_FILL): S.PENDING_CANCEL,  # fill raced the cancel
    (S.PENDING_CANCEL, E.FILL): S.FILLED,               # fill won the race
    (S.PENDING_CANCEL, E.EXPIRE): S.EXPIRED,

    (S.PENDING_REPLACE, E.REPLACE): PREVIOUS,
    (S.PENDING_REPLACE, E.REPLACE_REJECT): PREVIOUS,
    (S.PENDING_REPLACE, E.PARTIAL_FILL): S.PENDING_REPLACE,  # fill while replace pending
    (S.PENDING_REPLACE, E.FILL): S.FILLED,
    (S.PENDING_REPLACE, E.CANCEL_REQUEST): S.PENDING_CANCEL,
    (S.PENDING_REPLACE, E.CANCEL): S.CANCELLED,
    (S.PENDING_REPLACE, E.EXPIRE): S.EXPIRED,
}

del S, E

# The C copy of the table, filled from TRANSITIONS so there is one source.
cdef int8_t TABLE[N_STATES][N_EVENTS]
cdef int _s, _e
for _s in range(N_STATES):
    for _e in range(N_EVENTS):
        TABLE[_s][_e] = T_INVALID
for (_ks, _ke), _kv in TRANSITIONS.items():
    TABLE[<int>_ks][<int>_ke] = T_PREVIOUS if _kv is PREVIOUS else <int>_kv

cdef inline bint _terminal(int s) noexcept nogil:
    return s == ST_FILLED or s == ST_CANCELLED or s == ST_REJECTED or s == ST_EXPIRED


class OrderError(ValueError):
    """A request the store cannot honour; ``code`` is stable."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class InvalidTransition(OrderError):
    """An event the table does not allow in the order's current state; almost
    always a duplicated or out-of-order broker message the engine must look at."""

    def __init__(self, order_id, state, event):
        self.order_id = order_id
        self.state = OrderState(state)
        self.event = OrderEvent(event)
        super().__init__(
            "INVALID_TRANSITION",
            f"order {order_id!r} in state {self.state.name} cannot take event {self.event.name}",
        )


def next_state(state, event, previous=None):
    """The table as a function: the state after ``event`` in ``state`` (with
    ``previous`` resolving PREVIOUS), or InvalidTransition."""
    t = TRANSITIONS.get((OrderState(state), OrderEvent(event)))
    if t is None:
        raise InvalidTransition(None, state, event)
    if t is PREVIOUS:
        return OrderState(previous)
    return t


cdef class OrderStore:
    """All the engine's orders: numbers in C arrays, ids in a dict.

    ``keyed=False``: no id -> slot dict. The owner keeps each order's slot
    (what ``add`` returns) and addresses it with the ``*_at`` methods, which
    check that the slot still holds that order id; the by-id methods raise
    TypeError. The engine does so: it finds its orders in its own tables, and
    a second table of every retained order id is one more cold lookup per
    order created and per order forgotten."""

    def __cinit__(self, int max_accounts, int n_instruments, int64_t capacity=1024,
                  int64_t max_orders=1 << 22, bint keyed=True):
        if max_accounts <= 0 or n_instruments <= 0:
            raise ValueError("max_accounts and n_instruments must be positive")
        if capacity <= 0 or max_orders < capacity:
            raise ValueError("need 0 < capacity <= max_orders")
        if max_orders > C_MAX_ORDERS:
            # keeps the pend_* sums exact in int64 (orders.pxd)
            raise ValueError(f"max_orders={max_orders} above MAX_ORDERS={C_MAX_ORDERS}")
        self.max_accounts = max_accounts
        self.n_instruments = n_instruments
        self.max_orders = max_orders
        self.cap = 0
        self.hi = 0
        self.working = <int32_t*>calloc(max_accounts * n_instruments, sizeof(int32_t))
        self.working_acct = <int32_t*>calloc(max_accounts, sizeof(int32_t))
        self.pend_buy = <int64_t*>calloc(max_accounts * n_instruments, sizeof(int64_t))
        self.pend_sell = <int64_t*>calloc(max_accounts * n_instruments, sizeof(int64_t))
        if (self.working == NULL or self.working_acct == NULL
                or self.pend_buy == NULL or self.pend_sell == NULL):
            raise MemoryError()
        self.keyed = keyed
        self._ids = {} if keyed else None
        self._id_of = []
        self._free = NULL
        self._n_free = 0
        self._term = NULL
        self._term_cap = self._term_head = self._term_len = 0
        self._resize(capacity)

    def __dealloc__(self):
        free(self.account); free(self.instrument); free(self.units); free(self.filled)
        free(self.price); free(self.stop_price); free(self.state); free(self.prev)
        free(self.working); free(self.working_acct); free(self._term); free(self._free)
        free(self.pend_buy); free(self.pend_sell)

    def _resize(self, int64_t n):
        cdef void* p
        p = realloc(self.account, n * sizeof(int32_t))
        if p == NULL: raise MemoryError()
        self.account = <int32_t*>p
        p = realloc(self.instrument, n * sizeof(int32_t))
        if p == NULL: raise MemoryError()
        self.instrument = <int32_t*>p
        p = realloc(self.units, n * sizeof(int64_t))
        if p == NULL: raise MemoryError()
        self.units = <int64_t*>p
        p = realloc(self.filled, n * sizeof(int64_t))
        if p == NULL: raise MemoryError()
        self.filled = <int64_t*>p
        p = realloc(self.price, n * sizeof(int64_t))
        if p == NULL: raise MemoryError()
        self.price = <int64_t*>p
        p = realloc(self.stop_price, n * sizeof(int64_t))
        if p == NULL: raise MemoryError()
        self.stop_price = <int64_t*>p
        p = realloc(self.state, n * sizeof(int8_t))
        if p == NULL: raise MemoryError()
        self.state = <int8_t*>p
        p = realloc(self.prev, n * sizeof(int8_t))
        if p == NULL: raise MemoryError()
        self.prev = <int8_t*>p
        p = realloc(self._free, n * sizeof(int64_t))
        if p == NULL: raise MemoryError()
        self._free = <int64_t*>p
        self.cap = n

    cdef int _grow(self) except -1:
        cdef int64_t n
        if self.cap >= self.max_orders:
            # Bounded memory: reuse the oldest terminal order's slot.
            if self._term_len:
                self._evict(self._term_pop())
                return 0
            raise OrderError("STORE_FULL", f"{self.max_orders} live orders, none terminal to evict")
        n = self.cap * 2
        if n > self.max_orders:
            n = self.max_orders
        self._resize(n)
        return 0

    cdef int _term_push(self, int64_t k) except -1:
        """Queue terminal slot ``k`` (newest last)."""
        cdef int64_t n, j
        cdef int64_t* p
        if self._term_len == self._term_cap:
            n = self._term_cap * 2 if self._term_cap else 64
            p = <int64_t*>malloc(n * sizeof(int64_t))
            if p == NULL:
                raise MemoryError()
            for j in range(self._term_len):
                p[j] = self._term[(self._term_head + j) & (self._term_cap - 1)]
            free(self._term)
            self._term = p
            self._term_cap = n
            self._term_head = 0
        self._term[(self._term_head + self._term_len) & (self._term_cap - 1)] = k
        self._term_len += 1
        return 0

    cdef int64_t _term_pop(self) noexcept:
        """The oldest terminal slot, dequeued (the caller checked there is one)."""
        cdef int64_t k = self._term[self._term_head]
        self._term_head = (self._term_head + 1) & (self._term_cap - 1)
        self._term_len -= 1
        return k

    cdef int64_t _slot(self, str order_id) except -1:
        if not self.keyed:
            raise TypeError("this OrderStore has no ids (keyed=False): use the *_at methods")
        try:
            return self._ids[order_id]
        except KeyError:
            raise OrderError("UNKNOWN_ORDER", f"no order {order_id!r}") from None

    cdef int64_t _at(self, int64_t k, str order_id) except -1:
        """Slot ``k``, checked to hold ``order_id`` still (it is reused once evicted)."""
        if k < 0 or k >= self.hi:
            raise OrderError("UNKNOWN_ORDER", f"no order {order_id!r}")
        oid = self._id_of[k]
        if oid is not order_id and (oid is None or oid != order_id):
            raise OrderError("UNKNOWN_ORDER", f"no order {order_id!r}")
        return k

    def _evict_slot(self, int64_t k):
        self._evict(k)

    cdef int _evict(self, int64_t k) except -1:
        oid = self._id_of[k]
        if oid is not None:
            if self.keyed:
                del self._ids[oid]
            self._id_of[k] = None
            self._free[self._n_free] = k
            self._n_free += 1
        return 0

    # --- create ----------------------------------------------------------

    def add(self, str order_id, int account, int instrument, int64_t units,
            int64_t price=0, int64_t stop_price=0, bint emulated=False):
        """Register a new order (PENDING_SUBMIT, or EMULATED when the engine
        holds it until its trigger). Returns its slot index."""
        return self._add(order_id, account, instrument, units, price, stop_price, emulated)

    cdef int64_t _add(self, str order_id, int account, int instrument, int64_t units,
                      int64_t price, int64_t stop_price, bint emulated) except -1:
        """``add`` (the engine calls it in C on every order)."""
        cdef int64_t k
        if self.keyed and order_id in self._ids:
            raise OrderError("DUPLICATE_ORDER_ID", f"order {order_id!r} already exists")
        if account < 0 or account >= self.max_accounts:
            raise OrderError("UNKNOWN_ACCOUNT", f"account={account} outside 0..{self.max_accounts - 1}")
        if instrument < 0 or instrument >= self.n_instruments:
            raise OrderError("UNKNOWN_INSTRUMENT",
                             f"instrument={instrument} outside 0..{self.n_instruments - 1}")
        if units == 0 or units > C_MAX_UNITS or units < -C_MAX_UNITS:
            raise OrderError("INVALID_UNITS", f"units={units} must be non-zero with |units| <= {C_MAX_UNITS}")
        if price < 0 or price > C_MAX_PRICE or stop_price < 0 or stop_price > C_MAX_PRICE:
            raise OrderError("INVALID_PRICE", f"price={price} stop_price={stop_price} outside 0..{C_MAX_PRICE}")
        if self._n_free:
            self._n_free -= 1
            k = self._free[self._n_free]
        else:
            if self.hi >= self.cap:
                self._grow()
            if self._n_free:  # _grow evicted instead of growing
                self._n_free -= 1
                k = self._free[self._n_free]
            else:
                k = self.hi
                self.hi += 1
                self._id_of.append(None)
        self.account[k] = account
        self.instrument[k] = instrument
        self.units[k] = units
        self.filled[k] = 0
        self.price[k] = price
        self.stop_price[k] = stop_price
        self.state[k] = ST_EMULATED if emulated else ST_PENDING_SUBMIT
        self.prev[k] = self.state[k]
        self.working[account * self.n_instruments + instrument] += 1
        self.working_acct[account] += 1
        self._pend(k, units)
        if self.keyed:
            self._ids[order_id] = k
        self._id_of[k] = order_id
        return k

    # --- transitions --------------------------------------------------------

    cdef int transition(self, int64_t k, int event) except -1:
        cdef int s = self.state[k]
        cdef int t
        if event < 0 or event >= N_EVENTS:
            raise ValueError(f"event {event} outside 0..{N_EVENTS - 1}")
        t = TABLE[s][event]
        if t == T_INVALID:
            raise InvalidTransition(self._id_of[k], s, event)
        if t == T_PREVIOUS:
            t = self.prev[k]
        elif s != ST_PENDING_CANCEL and s != ST_PENDING_REPLACE:
            # Remember the working state a rejected request returns to.
            self.prev[k] = t if t != ST_PENDING_CANCEL and t != ST_PENDING_REPLACE else s
        else:
            # A fill or accept while a request is pending changes what
            # "previous" means: the order is now partially filled / working.
            if event == EV_PARTIAL_FILL:
                self.prev[k] = ST_PARTIALLY_FILLED
            elif event == EV_ACCEPT and self.prev[k] == ST_PENDING_SUBMIT:
                self.prev[k] = ST_SUBMITTED
        self.state[k] = t
        if _terminal(t):
            self.working[self.account[k] * self.n_instruments + self.instrument[k]] -= 1
            self.working_acct[self.account[k]] -= 1
            self._pend(k, self.filled[k] - self.units[k])  # what is left (0 after FILL)
            self._term_push(k)
        return t

    cdef void _pend(self, int64_t k, int64_t d) noexcept:
        """Add ``d`` units, signed like order k's units (+ more to fill, - a
        fill or what a cancel takes away), to its side's remaining sum."""
        cdef int64_t j = <int64_t>self.account[k] * self.n_instruments + self.instrument[k]
        if self.units[k] > 0:
            self.pend_buy[j] += d
        else:
            self.pend_sell[j] -= d

    cdef int _set_fill(self, int64_t k, int64_t fill_units) except -1:
        cdef int64_t u = self.units[k]
        cdef int64_t f = self.filled[k] + fill_units
        if fill_units == 0 or (fill_units > 0) != (u > 0):
            raise OrderError("INVALID_FILL",
                             f"fill units={fill_units} must be non-zero with the sign of order units={u}")
        if (u > 0 and f > u) or (u < 0 and f < u):
            raise OrderError("OVERFILL", f"filled={f} would exceed units={u}")
        self.filled[k] = f
        self._pend(k, -fill_units)
        return 0

    def apply(self, str order_id, int event):
        """Apply a non-fill event; returns the new OrderState. Fills go through
        ``fill`` so filled units stay consistent with the state."""
        return self._apply_k(self._slot(order_id), event)

    def apply_at(self, int64_t k, str order_id, int event):
        """``apply`` of the order in slot ``k`` (which must still hold ``order_id``)."""
        return self._apply_k(self._at(k, order_id), event)

    cdef object _apply_k(self, int64_t k, int event):
        if event == EV_FILL or event == EV_PARTIAL_FILL:
            raise OrderError("USE_FILL", "fill events carry units: call fill(order_id, units)")
        if event == EV_REPLACE:
            raise OrderError("USE_REPLACE", "replace carries new terms: call replace(order_id, ...)")
        return _STATE_OF[self.transition(k, event)]

    def fill(self, str order_id, int64_t fill_units):
        """Record a fill of ``fill_units`` (signed like the order). The event is
        FILL when it completes the order, PARTIAL_FILL otherwise; the table
        decides whether that is allowed in the current state."""
        return self._fill_k(self._slot(order_id), order_id, fill_units)

    def fill_at(self, int64_t k, str order_id, int64_t fill_units):
        """``fill`` of the order in slot ``k`` (which must still hold ``order_id``)."""
        return self._fill_k(self._at(k, order_id), order_id, fill_units)

    cdef object _fill(self, str order_id, int64_t fill_units):
        """``fill`` in C."""
        return self._fill_k(self._slot(order_id), order_id, fill_units)

    cdef object _fill_at(self, int64_t k, str order_id, int64_t fill_units):
        """``fill_at`` (the engine calls it in C on every fill)."""
        return self._fill_k(self._at(k, order_id), order_id, fill_units)

    cdef object _fill_k(self, int64_t k, str order_id, int64_t fill_units):
        cdef int s = self.state[k]
        cdef int64_t u = self.units[k]
        cdef int64_t f = self.filled[k] + fill_units
        cdef int event = EV_FILL if f == u else EV_PARTIAL_FILL
        if TABLE[s][event] == T_INVALID:
            raise InvalidTransition(order_id, s, event)
        self._set_fill(k, fill_units)
        return _STATE_OF[self.transition(k, event)]

    def replace(self, str order_id, int64_t units, int64_t price=0, int64_t stop_price=0):
        """Apply REPLACE with the order's new terms (PENDING_REPLACE -> its
        working state, or a local modify of an EMULATED order)."""
        return self._replace_k(self._slot(order_id), order_id, units, price, stop_price)

    def replace_at(self, int64_t k, str order_id, int64_t units, int64_t price=0, int64_t stop_price=0):
        """``replace`` of the order in slot ``k`` (which must still hold ``order_id``)."""
        return self._replace_k(self._at(k, order_id), order_id, units, price, stop_price)

    cdef object _replace_k(self, int64_t k, str order_id, int64_t units, int64_t price, int64_t stop_price):
        cdef int s = self.state[k]
        if TABLE[s][EV_REPLACE] == T_INVALID:
            raise InvalidTransition(order_id, s, EV_REPLACE)
        if units == 0 or units > C_MAX_UNITS or units < -C_MAX_UNITS:
            raise OrderError("INVALID_UNITS", f"units={units} must be non-zero with |units| <= {C_MAX_UNITS}")
        if (units > 0) != (self.units[k] > 0) and self.filled[k] != 0:
            raise OrderError("INVALID_UNITS", f"units={units} changes side of a partly filled order")
        if (units > 0 and units <= self.filled[k]) or (units < 0 and units >= self.filled[k]):
            raise OrderError("INVALID_UNITS", f"units={units} not beyond filled={self.filled[k]}")
        if price < 0 or price > C_MAX_PRICE or stop_price < 0 or stop_price > C_MAX_PRICE:
            raise OrderError("INVALID_PRICE", f"price={price} stop_price={stop_price} outside 0..{C_MAX_PRICE}")
        # the remaining units move from the old terms to the new (side included)
        self._pend(k, self.filled[k] - self.units[k])
        self.units[k] = units
        self._pend(k, units - self.filled[k])
        self.price[k] = price
        self.stop_price[k] = stop_price
        return _STATE_OF[self.transition(k, EV_REPLACE)]

    def set_stop_price(self, str order_id, int64_t stop_price):
        """Move an emulated order's trigger (trailing stops follow the market);
        not a state change."""
        self._set_stop_k(self._slot(order_id), order_id, stop_price)

    def set_stop_price_at(self, int64_t k, str order_id, int64_t stop_price):
        """``set_stop_price`` of the order in slot ``k`` (which must still hold ``order_id``)."""
        self._set_stop_k(self._at(k, order_id), order_id, stop_price)

    cdef int _set_stop_k(self, int64_t k, str order_id, int64_t stop_price) except -1:
        if self.state[k] != ST_EMULATED:
            raise OrderError("NOT_EMULATED", f"order {order_id!r} is {OrderState(self.state[k]).name}")
        if stop_price < 0 or stop_price > C_MAX_PRICE:
            raise OrderError("INVALID_PRICE", f"stop_price={stop_price} outside 0..{C_MAX_PRICE}")
        self.stop_price[k] = stop_price
        return 0

    # --- queries --------------------------------------------------------------

    def state_of(self, str order_id):
        return _STATE_OF[self.state[self._slot(order_id)]]

    def get(self, str order_id):
        """(account, instrument, units, filled, price, stop_price, state)."""
        cdef int64_t k = self._slot(order_id)
        return (self.account[k], self.instrument[k], self.units[k], self.filled[k],
                self.price[k], self.stop_price[k], _STATE_OF[self.state[k]])

    def index_of(self, str order_id):
        return self._slot(order_id)

    def id_of(self, int64_t k):
        if k < 0 or k >= self.hi or self._id_of[k] is None:
            raise OrderError("UNKNOWN_ORDER", f"no order in slot {k}")
        return self._id_of[k]

    def working_count(self, int account, int instrument):
        if account < 0 or account >= self.max_accounts or instrument < 0 or instrument >= self.n_instruments:
            raise IndexError(f"account={account} instrument={instrument} out of range")
        return self.working[account * self.n_instruments + instrument]

    def working_count_account(self, int account):
        if account < 0 or account >= self.max_accounts:
            raise IndexError(f"account={account} out of range")
        return self.working_acct[account]

    def pending_units(self, int account, int instrument):
        """(buy, sell): the units still to fill of the account's non-terminal
        buy and sell orders on the instrument, both >= 0 (emulated included)."""
        if account < 0 or account >= self.max_accounts or instrument < 0 or instrument >= self.n_instruments:
            raise IndexError(f"account={account} instrument={instrument} out of range")
        cdef int64_t j = <int64_t>account * self.n_instruments + instrument
        return (self.pend_buy[j], self.pend_sell[j])

    def is_terminal(self, str order_id):
        return _terminal(self.state[self._slot(order_id)])

    def __len__(self):
        return self.hi - self._n_free  # every slot below hi is live or free

    def __contains__(self, order_id):
        if not self.keyed:
            raise TypeError("this OrderStore has no ids (keyed=False)")
        return order_id in self._ids

    @property
    def capacity(self):
        return self.cap

    # --- eviction -----------------------------------------------------------

    def evict(self, str order_id):
        """Forget a terminal order (its slot is reused)."""
        cdef int64_t k = self._slot(order_id)
        if not _terminal(self.state[k]):
            raise OrderError("NOT_TERMINAL",
                             f"order {order_id!r} is {OrderState(self.state[k]).name}, not terminal")
        cdef int64_t j, m = self._term_cap - 1, h = self._term_head
        for j in range(self._term_len):
            if self._term[(h + j) & m] == k:
                break
        else:
            raise ValueError(f"terminal slot {k} not queued")
        for j in range(j, self._term_len - 1):  # close the gap: later slots move one toward the head
            self._term[(h + j) & m] = self._term[(h + j + 1) & m]
        self._term_len -= 1
        self._evict(k)

    def evict_terminal(self, int64_t keep=0):
        """Forget the oldest terminal orders, keeping the newest ``keep``.
        Returns how many were evicted."""
        return self._evict_terminal(keep)

    cdef int64_t _evict_terminal(self, int64_t keep) except -1:
        cdef int64_t n = 0
        while self._term_len > keep:
            self._evict(self._term_pop())
            n += 1
        return n
