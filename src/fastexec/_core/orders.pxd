# cython: language_level=3
"""Order book state: the engine's own orders, keyed by client order id.

Invariants:
* Each live order occupies one slot ``k`` of the C arrays; string ids live only
  in ``_ids`` (id -> slot; only when ``keyed``) and ``_id_of`` (slot -> id). Evicted slots go on a
  free list and are reused, so memory is bounded by ``max_orders``.
* ``state[k]`` only changes through ``transition``, which reads the one table
  ``TABLE[state][event]``. ``prev[k]`` is the working state to return to when
  a pending cancel/replace is rejected (or a replace completes).
* ``units[k]`` is signed (+ buy), ``0 <= |filled[k]| <= |units[k]|`` and
  ``filled[k]`` has the sign of ``units[k]``.
* ``working[a * n_instruments + i]`` = number of non-terminal orders of account
  a on instrument i; ``working_acct[a]`` their sum over instruments. The risk
  kernel reads these in C.
* ``pend_buy[a * n_instruments + i]`` = sum of ``units[k] - filled[k]`` over the
  non-terminal buy orders k of account a on instrument i, ``pend_sell[...]`` =
  sum of ``filled[k] - units[k]`` over its non-terminal sell orders: the units
  still to fill on each side, both >= 0. EMULATED and TRIGGERED orders count
  (they can trigger and fill). Kept exact by the only writers of units, filled
  and state: ``_add`` (+ the order's units; a reused slot starts from scratch),
  ``_set_fill`` (- the fill), ``_replace_k`` (- the old remaining on the old
  side, + the new on the new side) and ``transition`` into a terminal state
  (- what is left: 0 after FILL). Eviction and slot reuse touch only terminal
  orders, which count 0. No overflow, no saturation: every term is at most
  MAX_UNITS = 10**12 and at most ``max_orders`` <= MAX_ORDERS = 2**23 orders
  are non-terminal, so a sum is <= 2**23 * 10**12 < 8.4e18, and the risk
  kernel's ``position + sum + order`` (<= 8.4e18 + 2 * 10**12) stays inside
  int64.
* Prices are at PRICE_SCALE (0 = none); units whole.
"""
cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t

# bound on OrderStore.max_orders: keeps the pend_* sums exact in int64 (see above)
cdef enum:
    C_MAX_ORDERS = 8388608   # 2**23

cdef enum:
    N_STATES = 11
    N_EVENTS = 13
    T_INVALID = -1
    T_PREVIOUS = -2

cdef enum:
    ST_PENDING_SUBMIT = 0
    ST_SUBMITTED = 1
    ST_EMULATED = 2
    ST_TRIGGERED = 3
    ST_PARTIALLY_FILLED = 4
    ST_FILLED = 5
    ST_PENDING_CANCEL = 6
    ST_PENDING_REPLACE = 7
    ST_CANCELLED = 8
    ST_REJECTED = 9
    ST_EXPIRED = 10

cdef enum:
    EV_SUBMIT = 0
    EV_ACCEPT = 1
    EV_REJECT = 2
    EV_TRIGGER = 3
    EV_PARTIAL_FILL = 4
    EV_FILL = 5
    EV_CANCEL_REQUEST = 6
    EV_CANCEL = 7
    EV_CANCEL_REJECT = 8
    EV_REPLACE_REQUEST = 9
    EV_REPLACE = 10
    EV_REPLACE_REJECT = 11
    EV_EXPIRE = 12


@cython.final
cdef class OrderStore:
    cdef readonly int max_accounts
    cdef readonly int n_instruments
    cdef readonly int64_t max_orders
    cdef int64_t cap
    cdef int64_t hi
    cdef int32_t* account
    cdef int32_t* instrument
    cdef int64_t* units
    cdef int64_t* filled
    cdef int64_t* price
    cdef int64_t* stop_price
    cdef int8_t* state
    cdef int8_t* prev
    cdef int32_t* working
    cdef int32_t* working_acct
    cdef int64_t* pend_buy    # remaining units of non-terminal buy orders per (account, instrument)
    cdef int64_t* pend_sell   # ... of sell orders, as a positive number
    cdef dict _ids  # None unless keyed
    cdef list _id_of
    cdef int64_t* _free  # evicted slots to reuse, a stack (at most ``cap``)
    cdef int64_t _n_free
    # terminal slots, oldest first: a ring of int64 (power-of-two capacity)
    cdef int64_t* _term
    cdef int64_t _term_cap, _term_head, _term_len
    cdef readonly bint keyed  # False: no _ids; addressed by slot (the *_at methods)

    cdef int _grow(self) except -1
    cdef int64_t _slot(self, str order_id) except -1
    cdef int64_t _at(self, int64_t k, str order_id) except -1
    cdef object _apply_k(self, int64_t k, int event)
    cdef object _fill_k(self, int64_t k, str order_id, int64_t fill_units)
    cdef object _replace_k(self, int64_t k, str order_id, int64_t units, int64_t price, int64_t stop_price)
    cdef int _set_stop_k(self, int64_t k, str order_id, int64_t stop_price) except -1
    cdef int transition(self, int64_t k, int event) except -1
    cdef int _set_fill(self, int64_t k, int64_t fill_units) except -1
    cdef void _pend(self, int64_t k, int64_t d) noexcept
    cdef int _term_push(self, int64_t k) except -1
    cdef int64_t _term_pop(self) noexcept
    # the engine's per-order calls in C (``add``, ``fill``, ``evict_terminal``)
    cdef int64_t _add(self, str order_id, int account, int instrument, int64_t units,
                      int64_t price, int64_t stop_price, bint emulated) except -1
    cdef object _fill(self, str order_id, int64_t fill_units)
    cdef object _fill_at(self, int64_t k, str order_id, int64_t fill_units)
    cdef int _evict(self, int64_t k) except -1
    cdef int64_t _evict_terminal(self, int64_t keep) except -1
