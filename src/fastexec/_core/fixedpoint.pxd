# cython: language_level=3
"""Fixed-point scales of fastexec: the single place where they are defined.

Invariants (every module in ``_core`` relies on them; change them only here and
in docs/contracts.md section 1):

    quantity  C type  scale                    range (inclusive, absolute)
    --------  ------  -----------------------  --------------------------------
    price     int64   PRICE_SCALE = 10**9      |p| <= MAX_PRICE = 10**18
    units     int64   1 (signed, + = long)     |u| <= MAX_UNITS = 10**12
    money     int64   MONEY_SCALE = 10**6      |m| <= MAX_MONEY = 9 * 10**15
    rate      int64   RATE_SCALE  = 10**12     |r| <= MAX_RATE  = 10**18

* Every value held in an int64 of one of these kinds is inside its range; the
  range leaves head-room below INT64_MAX (9.22e18), so -(2**63 - 1) is never a
  valid value and serves as the error sentinel of the ``except?`` clauses.
* Products are formed in ``int128`` (``__int128``): the largest product of two
  in-range values (MAX_PRICE * MAX_RATE = 1e36) is below INT128_MAX (1.7e38),
  so no intermediate can wrap.
* An operation whose result changes scale rounds half-even exactly once, to the
  scale of its result. ``cdivision`` is on, so C ``/`` truncates toward zero;
  ``div_half_even`` (with its 64-bit fast path, and the unsigned one inside
  ``c_units_value``) is the only place that turns a quotient into a rounded one.
* A result outside its range raises (``FixedPointRangeError``, which is both a
  ``FixedPointError``/``ValueError`` with code ``OUT_OF_RANGE`` and an
  ``OverflowError``); nothing ever wraps or clamps.

Operations (Python name / C name -> result kind, rule):

    notional(u, p)    / c_notional    money  |u| * p / 10**3            half-even
    pnl(u, o, c)      / c_pnl         money  u * (c - o) / 10**3        half-even
    convert(m, r)     / c_convert     money  m * r / 10**12             half-even
                                             (exact, unchanged, when r == 1.0)
    mul_price(m, p)   / c_mul_price   money  m * p / 10**9              half-even
    div_price(m, p)   / c_div_price   money  m * 10**9 / p   (p > 0)    half-even
    units_value(u, r) / c_units_value money  |u| * r / 10**6            half-even
    parse_*                                  exact, or FixedPointError; never rounds
    format_price/units/rate                  exact text; format_price refuses a value
                                             finer than the precision asked for
    format_money(m, places)                  half-even to ``places`` (output only)
"""
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    typedef __int128 fe_int128;
    #define FE_PRICE_SCALE 1000000000LL
    #define FE_MONEY_SCALE 1000000LL
    #define FE_RATE_SCALE 1000000000000LL
    #define FE_MAX_PRICE 1000000000000000000LL
    #define FE_MAX_UNITS 1000000000000LL
    #define FE_MAX_MONEY 9000000000000000LL
    #define FE_MAX_RATE 1000000000000000000LL
    #define FE_ERR_I64 (-9223372036854775807LL)
    #include <stdint.h>
    static inline int fe_mul_overflow(int64_t a, int64_t b, int64_t* r) {
        return __builtin_mul_overflow(a, b, r);
    }
    """
    # Cython is told "long long" so it lets us do arithmetic; the C compiler
    # sees the real 128-bit type. Never convert an int128 to a Python object
    # directly: narrow it with ``narrow`` first.
    ctypedef long long int128 "fe_int128"
    const int64_t C_PRICE_SCALE "FE_PRICE_SCALE"
    const int64_t C_MONEY_SCALE "FE_MONEY_SCALE"
    const int64_t C_RATE_SCALE "FE_RATE_SCALE"
    const int64_t C_MAX_PRICE "FE_MAX_PRICE"
    const int64_t C_MAX_UNITS "FE_MAX_UNITS"
    const int64_t C_MAX_MONEY "FE_MAX_MONEY"
    const int64_t C_MAX_RATE "FE_MAX_RATE"
    const int64_t ERR_I64 "FE_ERR_I64"
    bint mul_overflow "fe_mul_overflow"(int64_t a, int64_t b, int64_t* r) nogil

# Kinds, used to name the quantity in range errors.
cdef enum Kind:
    KIND_PRICE = 0
    KIND_UNITS = 1
    KIND_MONEY = 2
    KIND_RATE = 3


cdef inline int64_t _div_half_even64(int64_t num, int64_t den) noexcept nogil:
    # den > 0; |r| < den, so compare |r| with den - |r| instead of doubling
    # (2|r| could overflow int64).
    cdef int64_t q = num / den
    cdef int64_t r = num - q * den
    if r < 0:
        r = -r
    if r > den - r or (r == den - r and (q & 1) != 0):
        return q - 1 if num < 0 else q + 1
    return q


cdef inline int128 div_half_even(int128 num, int128 den) noexcept nogil:
    """Round num/den half-even; den > 0. Truncating C division alone would bias
    every result toward zero, which accumulates in P&L. When both fit int64
    (the usual case) the division is a 64-bit one, by a constant once inlined."""
    cdef int128 q, r, twice
    if num == <int64_t>num and den == <int64_t>den:
        return _div_half_even64(<int64_t>num, <int64_t>den)
    q = num / den
    r = num - q * den
    if r == 0:
        return q
    if r < 0:
        twice = -2 * r
    else:
        twice = 2 * r
    if twice > den or (twice == den and (q & 1) != 0):
        if num < 0:
            return q - 1
        return q + 1
    return q


cdef inline int64_t max_of(int kind) noexcept nogil:
    if kind == KIND_PRICE:
        return C_MAX_PRICE
    if kind == KIND_UNITS:
        return C_MAX_UNITS
    if kind == KIND_MONEY:
        return C_MAX_MONEY
    return C_MAX_RATE


# Raise FixedPointRangeError naming the kind, value and limit. Always returns
# ERR_I64 with the exception set.
cdef int64_t raise_range(int kind, int128 value) except? -9223372036854775807

cdef inline int64_t narrow(int128 value, int kind) except? -9223372036854775807:
    """The only exit from int128: checked against the kind's range."""
    cdef int64_t lim = max_of(kind)
    if value > lim or value < -lim:
        return raise_range(kind, value)
    return <int64_t>value


# --- operations (C level, used by the other _core modules) -----------------
# notional: |units| * price  -> money (quote ccy), half-even at MONEY_SCALE.
cdef inline int64_t c_notional(int64_t units, int64_t price) except? -9223372036854775807:
    cdef int128 u = units
    if u < 0:
        u = -u
    return narrow(div_half_even(u * <int128>price, C_PRICE_SCALE / C_MONEY_SCALE), KIND_MONEY)

# pnl: units * (close - open)  -> money (quote ccy), half-even at MONEY_SCALE.
cdef inline int64_t c_pnl(int64_t units, int64_t open_price, int64_t close_price) except? -9223372036854775807:
    cdef int128 d = <int128>close_price - <int128>open_price
    return narrow(div_half_even(<int128>units * d, C_PRICE_SCALE / C_MONEY_SCALE), KIND_MONEY)

# convert: money * rate -> money, half-even at MONEY_SCALE.
cdef inline int64_t c_convert(int64_t money, int64_t rate) except? -9223372036854775807:
    if rate == C_RATE_SCALE:  # same currency: exact, and the common case
        return money
    return narrow(div_half_even(<int128>money * <int128>rate, C_RATE_SCALE), KIND_MONEY)

# convert_by_price: money * price -> money (multiply by a price used as a
# conversion factor), half-even at MONEY_SCALE.
cdef inline int64_t c_mul_price(int64_t money, int64_t price) except? -9223372036854775807:
    return narrow(div_half_even(<int128>money * <int128>price, C_PRICE_SCALE), KIND_MONEY)

# money / price -> money (divide by a price used as a conversion factor),
# half-even at MONEY_SCALE. price must be > 0.
cdef inline int64_t c_div_price(int64_t money, int64_t price) except? -9223372036854775807:
    return narrow(div_half_even(<int128>money * C_PRICE_SCALE, price), KIND_MONEY)


# units_value: |units| * per_unit (a rate: home money per unit at RATE_SCALE)
# -> money, half-even at MONEY_SCALE. Left as int128 (unchecked) so the risk
# kernel can compare an oversized order against limits instead of raising.
# The common case fits int64 and divides by a constant (no __int128 division).
cdef inline int128 c_units_value(int64_t abs_units, int64_t per_unit) noexcept nogil:
    cdef int64_t p
    cdef uint64_t q, r
    if not mul_overflow(abs_units, per_unit, &p) and p >= 0:
        # non-negative: unsigned division by a constant is a multiply and shift
        q = (<uint64_t>p) / 1000000
        r = (<uint64_t>p) - q * 1000000
        if r > 500000 or (r == 500000 and (q & 1) != 0):
            q += 1
        return <int128>q
    return div_half_even(<int128>abs_units * <int128>per_unit, 1000000)
