# cython: language_level=3
"""Pre-trade risk kernel: one entry point, small checks, stable denial codes.

Invariants:
* ``_eval`` is the only decision procedure; ``check``, ``check_detail`` and
  ``check_batch`` are wrappers. It touches no Python object, so it runs without
  the GIL and allocates nothing on the OK path; the detail text is built from
  the ``Why`` numbers only after a denial.
* Per-account limit arrays hold ``NO_LIMIT`` (INT64_MAX) when disabled.
  Scales: units whole, money MONEY_SCALE (home ccy), leverage and ratios
  RATE_SCALE, rate limit in orders per second with a burst in orders.
* Token bucket: ``tokens`` in nano-orders (1 order = 10**9), refilled by
  ``elapsed_ns * orders_per_second`` and capped at ``burst * 10**9``;
  timestamps are caller-supplied integer nanoseconds (a clock going backwards
  refills nothing).
* Working orders (``OrderStore.pend_buy``/``pend_sell``, the units still to
  fill on each side; exact in int64, see orders.pxd) enter two checks: an
  order reduces only if it is on the opposite side of the position and its
  units plus those of the account's other working orders on its side are at
  most |position|; MAX_POSITION_SIZE bounds the worst case on the order's
  side, position + those orders + this one. An order already in the store
  (``F_EXISTING``) passes ``own``, its signed remaining units the store
  counts, so it is not counted twice. Every sum fits int64 (orders.pxd).
* The pointers cached from the Ledger/OrderStore/InstrumentTable point to
  arrays those objects never reallocate, and the engine keeps references to
  them (``ledger``, ``orders``), so they stay valid.
"""
cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t

from fastexec._core.fixedpoint cimport int128
from fastexec._core.positions cimport Ledger, UnitVal
from fastexec._core.orders cimport OrderStore

cdef enum:
    R_OK = 0
    R_TRADING_HALTED = 1
    R_REDUCE_ONLY_VIOLATION = 2
    R_INSTRUMENT_RESTRICTED = 3
    R_MAX_UNITS_PER_ORDER = 4
    R_MAX_POSITION_SIZE = 5
    R_MAX_POSITIONS_PER_INSTRUMENT = 6
    R_MAX_LEVERAGE = 7
    R_INSUFFICIENT_MARGIN = 8
    R_MAX_DAILY_LOSS = 9
    R_ORDER_RATE_LIMIT = 10
    R_UNKNOWN_ACCOUNT = 11
    R_UNKNOWN_INSTRUMENT = 12
    R_INVALID_UNITS = 13
    R_PRICE_UNAVAILABLE = 14
    R_MAX_CONCURRENT_ORDERS = 15

# _eval flags
cdef enum:
    F_CONSUME = 1      # spend a rate-limit token when the order passes
    F_EXISTING = 2     # the order is already in the OrderStore (modify, trigger)
    F_EXACT = 4        # skip the cached fast path (tests: the reference decision)
    F_WORKING_FIRST = 8  # the working-order count right after the halted check (the engine gateway's order)

cdef enum:
    TS_ACTIVE = 0
    TS_REDUCING = 1
    TS_HALTED = 2

cdef struct AcctRisk:
    # first cache line: what every adding order reads
    uint64_t c_gen          # Ledger.gen[a] the cached numbers below were derived at
    int64_t c_lev_room      # floor(max_leverage * NAV / 1e12) - gross value (clamped)
    int64_t c_mr_room       # NAV - ceil(required_margin_ratio * NAV / 1e12) - margin used (clamped)
    int64_t c_avail         # NAV - margin used (margin available now)
    int64_t max_units_per_order
    int64_t max_position_size
    int64_t max_positions_per_instrument
    int64_t max_working_orders
    # second: limits read on refresh or rarely, token bucket
    int64_t rate_per_sec
    int64_t burst
    int64_t tokens
    int64_t last_ns
    int64_t max_leverage
    int64_t required_margin_ratio
    int64_t max_daily_loss
    int8_t state
    int8_t c_daily_ok       # NAV - day-start NAV > -max_daily_loss (or no limit)

cdef struct Why:
    int128 x
    int128 y
    int128 z
    int128 w


@cython.final
cdef class RiskEngine:
    cdef readonly Ledger ledger
    cdef readonly OrderStore orders
    cdef int n_i
    cdef int n_c
    cdef int words
    cdef int max_accounts
    cdef public object last_denial
    # limits and rate-limit state, one struct per account (one cache line)
    cdef AcctRisk* acct
    cdef int32_t* working_acct
    cdef int64_t* rate_per_sec
    cdef int64_t* burst
    cdef int64_t* tokens
    cdef int64_t* last_ns
    cdef int8_t* state
    cdef uint64_t* allowed
    # cached pointers (see invariants)
    cdef int64_t* p_units
    cdef int64_t* p_value
    cdef int64_t* p_margin
    cdef int64_t* a_balance
    cdef int64_t* a_upl
    cdef int64_t* a_value
    cdef int64_t* a_margin
    cdef int64_t* a_day_start
    cdef int32_t* a_home
    cdef uint64_t* a_gen
    cdef int64_t* vpu
    cdef int64_t* mpu
    cdef int8_t* vpu_ok
    cdef UnitVal* uv
    cdef int64_t* i_min_size
    cdef int64_t* i_max_units
    cdef int32_t* working
    cdef int64_t* pend_buy
    cdef int64_t* pend_sell

    cdef inline int _eval(self, int a, int i, int64_t u, int64_t now_ns, int flags, int64_t own,
                          Why* why) noexcept nogil
    cdef int _exposure_exact(self, int a, int i, int64_t u, int64_t p, int64_t k, int64_t after,
                             Why* why) noexcept nogil
    cdef void _refresh(self, int a) noexcept nogil
    cdef str _detail(self, int code, int a, int i, int64_t u, Why* why)
    cdef int _acct(self, int a) except -1
    # the engine's per-order call in C (``gate``)
    cdef int _gate(self, int account, int instrument, int64_t units, int64_t now_ns, bint consume) except -1
