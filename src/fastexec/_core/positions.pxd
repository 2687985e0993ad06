# cython: language_level=3
"""Netting positions, prices, home-currency conversion and account numbers.

Shared with the risk kernel (``risk.pyx`` cimports ``Ledger`` and reads these
arrays directly), so the check never calls back into Python.

Indexing: accounts ``a`` in 0..max_accounts-1, instruments ``i`` in 0..n_i-1,
currencies ``c``/``h`` in 0..n_c-1 (the instrument table's currencies).
Position arrays use ``k = a * n_i + i``; conversion arrays ``c * n_c + h``;
per-unit arrays ``i * n_c + h``.

Invariants (after every public call returns):
* ``units[k]`` signed whole units; ``avg[k]`` PRICE_SCALE, 0 iff flat.
* ``rings[k]`` the position's open lots (the broker's trades), oldest first,
  in a ring: ``buf[(head + j) & (cap - 1)]`` for j in 0..n-1, each of the
  position's sign and non-zero, ``sum(lot.units) == units[k]``; ``cap`` a
  power of two (0 until the first lot), ``n <= max_lots``; ``lot.trade_id``
  the broker's trade id (> 0) or 0 (unknown).
* ``cost[k] = sum(lot.units * lot.price)`` exactly (int128, units x
  PRICE_SCALE), so unrealized P&L needs no walk over the lots; ``avg[k]`` is
  ``|cost| / |units|`` rounded half-even at PRICE_SCALE.
* ``upl/value/margin[k]`` are the position's values in the account's home
  currency at MONEY_SCALE as of the last mark (0 while unvalued);
  ``upl_tot/value_tot/margin_tot[a]`` are their exact sums over the account.
* ``mid[i] = half_even((bid + ask) / 2)``; ``has_price[i]`` once marked.
* ``conv[c*n_c+h]`` quote->home factor at RATE_SCALE (1.0 when c == h),
  from mids, valid iff ``conv_ok``; ``conv_g``/``conv_l`` the gain / loss
  factors of the same route from the sided prices (valid with ``conv_ok``); ``vpu[i*n_c+h]`` = home value of one unit of i
  (RATE_SCALE), ``mpu`` its margin; valid iff ``vpu_ok``.
* NAV = balance + upl_tot; margin available = NAV - margin_tot.
* ``uv[i*n_c+h]`` holds ``vpu``/``mpu`` split at MONEY_SCALE
  (``v_hi = vpu // 10**6``, ``v_lo = vpu % 10**6``, same for m), written with
  them, so ``|units| * per_unit / 10**6`` is ``|units| * hi + |units| * lo / 10**6``:
  two 64-bit products and one division by a constant, no 128-bit division.
  ``v_max``/``m_max`` = the largest ``|units|`` with ``|units| * hi <= UV_FAST``
  (2**61), and -1 while ``vpu_ok`` is 0, so one compare both proves the
  products fit and that the value exists.
* ``gen[a]`` changes (grows) whenever any number of account ``a`` that the
  risk kernel reads per account changes: balance, day-start NAV, and the
  totals ``upl_tot/value_tot/margin_tot`` (fills, marks, deposits, charges,
  a new trading day). Caches derived from them are valid while it is equal.
"""
cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, uint32_t, uint64_t

from fastexec._core.fixedpoint cimport int128

cdef extern from *:
    """
    #define FE_UV_FAST 2305843009213693952LL
    """
    const int64_t UV_FAST "FE_UV_FAST"   # 2**61


cdef struct Lot:
    int64_t units      # signed, the position's sign
    int64_t price      # PRICE_SCALE
    int64_t trade_id   # the broker's trade id; 0 = unknown

cdef struct LotRing:
    Lot* buf
    uint32_t head
    uint32_t n
    uint32_t cap       # power of two; 0 = no buffer yet


cdef struct UnitVal:
    int64_t v_max
    int64_t v_hi
    int64_t v_lo
    int64_t m_max
    int64_t m_hi
    int64_t m_lo

from fastexec._core.instruments cimport InstrumentTable


@cython.final
cdef class Ledger:
    cdef readonly InstrumentTable instruments
    cdef readonly int max_accounts
    cdef readonly int n_accounts
    cdef int n_i
    cdef int n_c
    # prices, per instrument
    cdef int64_t* bid
    cdef int64_t* ask
    cdef int64_t* mid
    cdef int8_t* has_price
    # conversions, per (currency, home)
    cdef int64_t* conv
    cdef int64_t* conv_g
    cdef int64_t* conv_l
    cdef int8_t* conv_ok
    cdef int32_t* leg1
    cdef int32_t* leg2
    cdef int8_t* leg1_inv
    cdef int8_t* leg2_inv
    cdef int8_t* home_used
    # per-unit value/margin, per (instrument, home)
    cdef int64_t* vpu
    cdef int64_t* mpu
    cdef int8_t* vpu_ok
    cdef UnitVal* uv
    # positions, per (account, instrument)
    cdef int64_t* units
    cdef int64_t* avg
    cdef int128* cost
    cdef LotRing* rings
    cdef readonly uint32_t max_lots
    cdef int64_t* realized
    cdef int64_t* upl
    cdef int64_t* value
    cdef int64_t* margin
    # accounts
    cdef int32_t* home
    cdef int64_t* balance
    cdef int64_t* upl_tot
    cdef int64_t* value_tot
    cdef int64_t* margin_tot
    cdef int64_t* realized_tot
    cdef int64_t* day_start_nav
    cdef int32_t* n_open
    cdef uint64_t* gen
    # scratch for mark(): instruments to revalue, per home
    cdef int32_t* aff
    cdef int32_t* n_aff
    cdef int8_t* chg
    # scratch for mark(): new values per position and new totals per account,
    # so a mark that would overflow anywhere changes nothing
    cdef int64_t* s_upl
    cdef int64_t* s_value
    cdef int64_t* s_margin
    cdef int64_t* t_upl
    cdef int64_t* t_value
    cdef int64_t* t_margin
    cdef dict _pair
    cdef int usd
    cdef dict _acct_index
    cdef list _acct_names
    # named closes (apply_fill with closed_trade_ids): ring offsets of the
    # lots a fill closes fully by name (scratch), and the count of named
    # trade ids that closed nothing
    cdef uint32_t* s_off
    cdef Py_ssize_t s_off_cap
    cdef readonly uint64_t unmatched_trade_ids

    cdef int _check_account(self, int a) except -1
    cdef int _check_instrument(self, int i) except -1
    cdef int _recompute_conv(self, int c, int h) except -1
    cdef int _recompute_vpu(self, int i, int h) except -1
    cdef int _value_of(self, int a, int i, int64_t u, int128 cost,
                       int64_t* nu, int64_t* nv, int64_t* nm) except -1
    cdef int _grow(self, LotRing* r) except -1
    cdef int _mark_convs(self, int i) except -1
    cdef int _close_named(self, LotRing* r, object ids, int64_t units, int64_t price,
                          int64_t fg, int64_t fl, int128* realized, int128* cost,
                          int64_t* left, uint32_t* done, uint32_t* nf, uint32_t* f,
                          int64_t* part, uint32_t* part_off, int64_t* miss) except -1
    cdef int _refuse(self, int why, int a, int i, int64_t x, int64_t y) except -1
    cdef void _commit_named(self, LotRing* r, uint32_t done, uint32_t nf, uint32_t f,
                            int64_t part, uint32_t part_off) noexcept
    # the engine's per-fill call in C (``apply_fill``)
    cdef object _apply_fill(self, int account, int instrument, int64_t units, int64_t price,
                            int64_t quote_home_rate, int64_t opened_trade_id, object closed_trade_ids)
