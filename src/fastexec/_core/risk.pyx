# cython: language_level=3
"""The one risk gateway every order and modification passes.

``check(account, instrument, units, now_ns)`` returns 0 (OK) or a stable
denial code; on denial ``last_denial`` holds ``"CODE: key=value ..."``. Checks
run cheapest first and stop at the first denial:

 1. UNKNOWN_ACCOUNT           account index not registered in the ledger
 2. TRADING_HALTED            account state HALTED (kill switch): nothing passes
 3. UNKNOWN_INSTRUMENT        instrument index outside the table
 4. INVALID_UNITS             0, |units| > MAX_UNITS, or below minimumTradeSize
 5. INSTRUMENT_RESTRICTED     instrument not in the account's allowed set
 6. MAX_UNITS_PER_ORDER       |units| > min(account limit, instrument maximumOrderUnits)
 7. REDUCE_ONLY_VIOLATION     state REDUCING and the order does not reduce the
                              position (see "reduces" below)
 7b. MAX_CONCURRENT_ORDERS    working orders of the account (+ this one) > limit
                              (not for an order already in the store)
    -- orders that reduce the position skip 8-13: they never add risk --
 8. MAX_POSITION_SIZE         worst case on the order's side: with
                              base = position + W (signed like the order),
                              |base + units| > limit, only if it grows
                              (|base + units| > |base|)
 9. MAX_POSITIONS_PER_INSTRUMENT  working orders + open position (+ this order)
                              on the instrument > limit
10. MAX_DAILY_LOSS            NAV - NAV at the day's start <= -limit: reaching
                              the maximum loss stops new risk (a limit of 0
                              allows new risk only on a day in profit)
11. PRICE_UNAVAILABLE         no mark yet for the instrument or its conversion
12. MAX_LEVERAGE              gross position value after the order > leverage * NAV
                              (only if the gross value grows)
13. INSUFFICIENT_MARGIN       (only if margin used grows) margin available after
                              the order < required_margin_ratio * NAV, or the
                              margin of the units the order opens > margin
                              available now
14. ORDER_RATE_LIMIT          token bucket empty; last, so only orders that
                              would be sent consume a token

W is the units still to fill of the account's *other* working orders on the
instrument on the order's side (``OrderStore.pend_buy``/``pend_sell``:
non-terminal orders, emulated ones included, units - filled). An order
*reduces* when it is on the opposite side of a non-zero position and
|units| + W <= |position|: it and every working order on its side filling
together cannot flip the position. Checks 10-13 (money) stay on the filled
position, |position + units| (the broker takes margin at the fill).

``consume=False`` checks without spending a token (a dry-run validation);
``existing=True`` checks an order already in the OrderStore (a modify, an
emulated order at its trigger), so it is not counted twice in the working
order limits, and ``own`` is the signed remaining units (units - filled) the
store counts for it now, taken out of W when on the order's side (a modify
that changes the side leaves the old remaining on the other side, where it
does not enter this check).

Values after the order use the ledger's per-unit values at the last mark
(position value and margin = |units| * per-unit value, half-even), i.e. the
same rule the ledger uses, so a check and the following fill agree.
Orders in one batch are checked against the same ledger state (they are not
applied to it); only the token bucket advances between them.

Fast path of checks 10-13 (same decisions, fewer instructions): per account
the engine caches NAV - margin used, the leverage room
``floor(max_leverage * NAV / 1e12) - gross value`` and the margin-ratio room
``NAV - ceil(required_margin_ratio * NAV / 1e12) - margin used`` (exact
int128, clamped to +-2**62) and whether the daily-loss limit holds, tagged
with ``Ledger.gen[a]``; any ledger change of the account (mark, fill, deposit,
charge, new day) or a ``set_limits`` makes the next check re-derive them. Per
order it then forms upper bounds (floor + 1) of the value and margin after the
order from the ledger's split per-unit values (two 64-bit products each) and
compares them with the rooms. Only an order that passes with the bounds takes
it; anything else (a denial, an order within a micro-unit of a limit, values
beyond the 64-bit bounds, a missing price) is decided and explained by
``_exposure_exact``, the int128 computation, so codes and details are those of
the exact rules. ``_check_exact`` runs that path alone (tests).
"""
from enum import IntEnum

from cpython cimport array
import array as _pyarray

from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t, INT64_MAX
from libc.stdlib cimport calloc, free

from fastexec._core.fixedpoint cimport (
    int128, c_units_value, C_MAX_UNITS, C_RATE_SCALE, C_MAX_RATE, C_MAX_MONEY,
)
from fastexec._core.fixedpoint import format_rate as _format_rate
from fastexec._core.positions cimport Ledger, UnitVal
from fastexec._core.orders cimport OrderStore


class RiskCode(IntEnum):
    OK = R_OK
    TRADING_HALTED = R_TRADING_HALTED
    REDUCE_ONLY_VIOLATION = R_REDUCE_ONLY_VIOLATION
    INSTRUMENT_RESTRICTED = R_INSTRUMENT_RESTRICTED
    MAX_UNITS_PER_ORDER = R_MAX_UNITS_PER_ORDER
    MAX_POSITION_SIZE = R_MAX_POSITION_SIZE
    MAX_POSITIONS_PER_INSTRUMENT = R_MAX_POSITIONS_PER_INSTRUMENT
    MAX_LEVERAGE = R_MAX_LEVERAGE
    INSUFFICIENT_MARGIN = R_INSUFFICIENT_MARGIN
    MAX_DAILY_LOSS = R_MAX_DAILY_LOSS
    ORDER_RATE_LIMIT = R_ORDER_RATE_LIMIT
    UNKNOWN_ACCOUNT = R_UNKNOWN_ACCOUNT
    UNKNOWN_INSTRUMENT = R_UNKNOWN_INSTRUMENT
    INVALID_UNITS = R_INVALID_UNITS
    PRICE_UNAVAILABLE = R_PRICE_UNAVAILABLE
    MAX_CONCURRENT_ORDERS = R_MAX_CONCURRENT_ORDERS


DENIAL_NAMES = tuple(c.name for c in sorted(RiskCode))


class TradingState(IntEnum):
    ACTIVE = TS_ACTIVE
    REDUCING = TS_REDUCING
    HALTED = TS_HALTED


NO_LIMIT = None  # pass as a limit value to disable it

cdef int64_t NANO = 1000000000

_LIMIT_NAMES = (
    "max_units_per_order", "max_position_size", "max_positions_per_instrument",
    "max_leverage", "required_margin_ratio", "max_daily_loss",
    "orders_per_second", "burst", "max_working_orders",
)

_UNSET = object()


cdef inline int64_t _abs(int64_t x) noexcept nogil:
    return -x if x < 0 else x


# Bounds of the 64-bit fast path (checks 10-13). A per-unit value split as
# hi * 10**6 + lo (Ledger.uv) gives |units| * per_unit / 10**6 =
# |units| * hi + |units| * lo / 10**6, half-even once on the total. The fast
# path runs only for |units| <= the split's max (|units| * hi <= UV_FAST =
# 2**61, see positions.pxd) and |units| <= 2 * MAX_UNITS (a position plus an
# order), so the second product is < 2e18, every value is < 2**61 + 2e12 + 1,
# and every difference and compare stays inside +-_ROOM (2**62) and int64.
# The cached rooms are clamped to +-_ROOM, which changes no compare against
# a fast-path difference (those are < _ROOM in size). Larger values take the
# exact int128 path; they are far beyond MAX_MONEY (9e15) anyway.
cdef int64_t _ROOM = 4611686018427387904      # 2**62


cdef inline int64_t _clamp(int128 v) noexcept nogil:
    if v > _ROOM:
        return _ROOM
    if v < -_ROOM:
        return -_ROOM
    return <int64_t>v


cdef inline int64_t _uv_up(int64_t au, int64_t hi, int64_t lo) noexcept nogil:
    """An upper bound of units_value(au, hi * 10**6 + lo) (the half-even
    rounded value is floor or floor + 1; this is floor + 1). Caller
    guarantees 0 <= au <= 2 * MAX_UNITS, au * hi <= UV_FAST, 0 <= lo < 10**6."""
    # au * lo < 2e18; / 10**6 by a constant is a multiply and shift
    return au * hi + <int64_t>((<uint64_t>au * <uint64_t>lo) / 1000000) + 1


cdef str _i128(int128 v):
    cdef int128 base = 1000000000000000000
    cdef bint neg = v < 0
    if neg:
        v = -v
    cdef int64_t hi = <int64_t>(v / base)
    cdef int64_t lo = <int64_t>(v - (v / base) * base)
    r = int(hi) * 10 ** 18 + int(lo)
    return str(-r if neg else r)


cdef str _money(int128 v):
    """Exact money text (6 decimals trimmed) for denial details."""
    s = _i128(v)
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    s = s.rjust(7, "0")
    ip, fp = s[:len(s) - 6], s[len(s) - 6:].rstrip("0")
    out = ip + ("." + fp if fp else "")
    return ("-" + out) if neg and out != "0" else out


cdef inline void* _alloc(size_t n, size_t size) except NULL:
    cdef void* p = calloc(n if n > 0 else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


cdef class RiskEngine:
    """Pre-trade checks over a Ledger (positions, NAV, margin) and an
    OrderStore (working-order counts), with per-account limits and state."""

    def __cinit__(self, Ledger ledger, OrderStore orders):
        cdef int na = ledger.max_accounts
        cdef int a
        if orders.max_accounts < na or orders.n_instruments != ledger.instruments.n:
            raise ValueError("OrderStore must cover the ledger's accounts and instruments")
        self.ledger = ledger
        self.orders = orders
        self.n_i = ledger.instruments.n
        self.n_c = len(ledger.instruments.currencies)
        self.words = (self.n_i + 63) // 64
        self.max_accounts = na
        self.last_denial = None
        self.acct = <AcctRisk*>_alloc(na, sizeof(AcctRisk))
        self.allowed = <uint64_t*>_alloc(<size_t>na * self.words, sizeof(uint64_t))
        for a in range(na):
            self._reset_account(a)
        self.p_units = ledger.units
        self.p_value = ledger.value
        self.p_margin = ledger.margin
        self.a_balance = ledger.balance
        self.a_upl = ledger.upl_tot
        self.a_value = ledger.value_tot
        self.a_margin = ledger.margin_tot
        self.a_day_start = ledger.day_start_nav
        self.a_home = ledger.home
        self.a_gen = ledger.gen
        self.vpu = ledger.vpu
        self.mpu = ledger.mpu
        self.vpu_ok = ledger.vpu_ok
        self.uv = ledger.uv
        self.i_min_size = ledger.instruments.minimum_trade_size
        self.i_max_units = ledger.instruments.maximum_order_units
        self.working = orders.working
        self.working_acct = orders.working_acct
        self.pend_buy = orders.pend_buy
        self.pend_sell = orders.pend_sell

    def __dealloc__(self):
        free(self.acct); free(self.allowed)

    def _reset_account(self, int a):
        cdef int w, j
        self.acct[a].max_units_per_order = INT64_MAX
        self.acct[a].max_position_size = INT64_MAX
        self.acct[a].max_positions_per_instrument = INT64_MAX
        self.acct[a].max_leverage = INT64_MAX
        self.acct[a].required_margin_ratio = 0
        self.acct[a].max_daily_loss = INT64_MAX
        self.acct[a].max_working_orders = INT64_MAX
        self.acct[a].rate_per_sec = 0
        self.acct[a].burst = 0
        self.acct[a].tokens = 0
        self.acct[a].last_ns = 0
        self.acct[a].state = TS_ACTIVE
        self.acct[a].c_gen = <uint64_t>-1   # never a ledger generation: refresh first
        for j in range(self.n_i):
            self.allowed[a * self.words + (j >> 6)] |= (<uint64_t>1) << (j & 63)

    # --- the decision procedure ---------------------------------------------------

    cdef void _refresh(self, int a) noexcept nogil:
        """Derive the per-account numbers of checks 10, 12, 13 from the ledger
        and the limits (exact int128, then clamped: see ``_ROOM``)."""
        cdef AcctRisk* r = &self.acct[a]
        cdef int64_t nav = self.a_balance[a] + self.a_upl[a]   # |.| <= 2 * MAX_MONEY
        cdef int128 x, q
        r.c_avail = nav - self.a_margin[a]
        r.c_daily_ok = not (r.max_daily_loss != INT64_MAX
                            and nav - self.a_day_start[a] <= -r.max_daily_loss)
        if r.max_leverage == INT64_MAX:
            r.c_lev_room = _ROOM
        else:
            # gross * 1e12 > L * nav  <=>  gross > floor(L * nav / 1e12)   (gross integer)
            x = <int128>r.max_leverage * nav
            q = x / C_RATE_SCALE
            if q * C_RATE_SCALE != x and x < 0:
                q -= 1
            r.c_lev_room = _clamp(q - self.a_value[a])
        # avail * 1e12 < R * nav  <=>  avail < ceil(R * nav / 1e12)          (avail integer)
        x = <int128>r.required_margin_ratio * nav
        q = x / C_RATE_SCALE
        if q * C_RATE_SCALE != x and x > 0:
            q += 1
        r.c_mr_room = _clamp(<int128>nav - q - self.a_margin[a])
        r.c_gen = self.a_gen[a]

    cdef int _exposure_exact(self, int a, int i, int64_t u, int64_t p, int64_t k, int64_t after,
                             Why* why) noexcept nogil:
        """Checks 10-13 computed from the ledger's numbers in int128, nothing
        cached: the reference the fast path in ``_eval`` must agree with, and
        the path that produces every denial's code and detail."""
        cdef int64_t nav, au = _abs(u), opening
        cdef int128 v_after, m_after, gross, used, avail
        cdef int x
        nav = self.a_balance[a] + self.a_upl[a]
        if self.acct[a].max_daily_loss != INT64_MAX and nav - self.a_day_start[a] <= -self.acct[a].max_daily_loss:
            why.x = nav - self.a_day_start[a]
            why.y = self.acct[a].max_daily_loss
            return R_MAX_DAILY_LOSS
        x = i * self.n_c + self.a_home[a]
        if not self.vpu_ok[x]:
            why.x = i
            return R_PRICE_UNAVAILABLE
        v_after = c_units_value(after, self.vpu[x])
        if v_after > self.p_value[k] and self.acct[a].max_leverage != INT64_MAX:
            gross = <int128>self.a_value[a] - self.p_value[k] + v_after
            if gross * C_RATE_SCALE > <int128>self.acct[a].max_leverage * nav:
                why.x = gross
                why.y = nav
                why.z = self.acct[a].max_leverage
                return R_MAX_LEVERAGE
        m_after = c_units_value(after, self.mpu[x])
        if m_after > self.p_margin[k]:
            used = <int128>self.a_margin[a] - self.p_margin[k] + m_after
            avail = nav - used
            if avail * C_RATE_SCALE < <int128>self.acct[a].required_margin_ratio * nav:
                why.x = avail
                why.y = nav
                why.z = self.acct[a].required_margin_ratio
                return R_INSUFFICIENT_MARGIN
            # margin of the units the order opens (all of them, or the
            # part past zero on a flip) must fit in what is available now
            if p != 0:
                opening = au if (u > 0) == (p > 0) else after
                m_after = c_units_value(opening, self.mpu[x])
            avail = <int128>nav - self.a_margin[a]
            if m_after > avail:
                why.x = m_after
                why.y = avail
                why.z = -1
                return R_INSUFFICIENT_MARGIN
        return R_OK

    cdef inline int _eval(self, int a, int i, int64_t u, int64_t now_ns, int flags, int64_t own,
                          Why* why) noexcept nogil:
        cdef int64_t k, p, au, lim, cnt, elapsed, tk, cap, after, vu, mu, pv, pm, wk, base
        cdef AcctRisk* r
        cdef const UnitVal* w
        cdef bint reducing
        cdef int x, code
        if <unsigned int>a >= <unsigned int>self.ledger.n_accounts:
            why.x = a
            return R_UNKNOWN_ACCOUNT
        r = &self.acct[a]
        if r.state == TS_HALTED:
            why.x = a
            return R_TRADING_HALTED
        if flags & F_WORKING_FIRST and self.working_acct[a] + 1 > r.max_working_orders:
            why.x = self.working_acct[a] + 1
            why.y = r.max_working_orders
            return R_MAX_CONCURRENT_ORDERS
        if <unsigned int>i >= <unsigned int>self.n_i:
            why.x = i
            return R_UNKNOWN_INSTRUMENT
        au = _abs(u)
        if u == 0 or au > C_MAX_UNITS or au < self.i_min_size[i]:
            why.x = u
            why.y = self.i_min_size[i]
            return R_INVALID_UNITS
        if not (self.allowed[a * self.words + (i >> 6)] >> (i & 63)) & 1:
            why.x = i
            return R_INSTRUMENT_RESTRICTED
        lim = r.max_units_per_order
        if self.i_max_units[i] < lim:
            lim = self.i_max_units[i]
        if au > lim:
            why.x = au
            why.y = lim
            return R_MAX_UNITS_PER_ORDER
        k = <int64_t>a * self.n_i + i
        p = self.p_units[k]
        # W: the other working orders' units still to fill on the order's side
        # (<= 2**23 * 10**12, orders.pxd: every sum below fits int64)
        wk = self.pend_buy[k] if u > 0 else self.pend_sell[k]
        if own != 0 and (own > 0) == (u > 0):
            wk -= _abs(own)
            if wk < 0:
                wk = 0
        reducing = p != 0 and (u > 0) != (p > 0) and au + wk <= _abs(p)
        if r.state == TS_REDUCING and not reducing:
            why.x = u
            why.y = p
            why.z = wk
            return R_REDUCE_ONLY_VIOLATION
        if not (flags & F_EXISTING) and self.working_acct[a] + 1 > r.max_working_orders:
            why.x = self.working_acct[a] + 1
            why.y = r.max_working_orders
            return R_MAX_CONCURRENT_ORDERS
        if not reducing:
            # worst case on the order's side: everything on it fills
            base = p + wk if u > 0 else p - wk
            after = _abs(base + u)
            if after > _abs(base) and after > r.max_position_size:
                why.x = after
                why.y = r.max_position_size
                why.z = wk
                why.w = p
                return R_MAX_POSITION_SIZE
            after = _abs(p + u)  # the filled position after it: |p|, |u| <= MAX_UNITS
            cnt = self.working[k] + (1 if p != 0 else 0) + (0 if flags & F_EXISTING else 1)
            if cnt > r.max_positions_per_instrument:
                why.x = cnt
                why.y = r.max_positions_per_instrument
                return R_MAX_POSITIONS_PER_INSTRUMENT
            # Checks 10-13 on cached per-account numbers (see _refresh) and the
            # split per-unit values: 64-bit integer products and compares.
            # Anything that would deny, or does not fit the documented bounds,
            # goes to _exposure_exact, which decides and explains.
            if r.c_gen != self.a_gen[a]:
                self._refresh(a)
            x = i * self.n_c + self.a_home[a]
            code = 1
            w = &self.uv[x]
            # after <= w.v_max / w.m_max also proves the per-unit values exist.
            # vu, mu bound the rounded value and margin after the order from
            # above, so passing with them passes with the exact values; the
            # margin of the units the order opens is at most the margin after
            # it (au <= after on an add; = after from flat or on a flip).
            if r.c_daily_ok and after <= w.v_max and after <= w.m_max and not (flags & F_EXACT):
                vu = _uv_up(after, w.v_hi, w.v_lo)
                mu = _uv_up(after, w.m_hi, w.m_lo)
                pv = self.p_value[k]
                pm = self.p_margin[k]
                code = ((vu > pv and vu - pv > r.c_lev_room)
                        or (mu > pm and (mu - pm > r.c_mr_room or mu > r.c_avail)))
            if code != 0:
                code = self._exposure_exact(a, i, u, p, k, after, why)
                if code != R_OK:
                    return code
        if r.rate_per_sec != 0:
            cap = r.burst * NANO
            tk = r.tokens
            elapsed = now_ns - r.last_ns
            if elapsed > 0:
                if <int128>elapsed * r.rate_per_sec >= <int128>cap - tk:
                    tk = cap
                else:
                    tk = tk + elapsed * r.rate_per_sec
            if tk < NANO:
                why.x = r.rate_per_sec
                why.y = r.burst
                return R_ORDER_RATE_LIMIT
            if flags & F_CONSUME:
                if elapsed > 0:
                    r.last_ns = now_ns
                r.tokens = tk - NANO
        return R_OK

    cdef str _detail(self, int code, int a, int i, int64_t u, Why* why):
        name = RiskCode(code).name
        if code == R_UNKNOWN_ACCOUNT:
            d = f"account={a}"
        elif code == R_TRADING_HALTED:
            d = f"account={a} state=HALTED"
        elif code == R_UNKNOWN_INSTRUMENT:
            d = f"instrument={i}"
        elif code == R_INVALID_UNITS:
            d = f"units={u} minimum={_i128(why.y)} maximum={C_MAX_UNITS}"
        elif code == R_INSTRUMENT_RESTRICTED:
            d = f"instrument={self.ledger.instruments.by_index(i).name} account={a}"
        elif code == R_MAX_UNITS_PER_ORDER:
            d = f"units={_i128(why.x)} limit={_i128(why.y)}"
        elif code == R_REDUCE_ONLY_VIOLATION:
            d = f"units={u} position={_i128(why.y)} working_same_side={_i128(why.z)} state=REDUCING"
        elif code == R_MAX_POSITION_SIZE:
            d = (f"units={_i128(why.x)} limit={_i128(why.y)} position={_i128(why.w)} "
                 f"working_same_side={_i128(why.z)} order={u}")
        elif code == R_MAX_POSITIONS_PER_INSTRUMENT:
            d = f"count={_i128(why.x)} limit={_i128(why.y)}"
        elif code == R_MAX_DAILY_LOSS:
            d = f"daily_pl={_money(why.x)} limit={_money(why.y)}"
        elif code == R_PRICE_UNAVAILABLE:
            d = f"instrument={self.ledger.instruments.by_index(i).name}"
        elif code == R_MAX_LEVERAGE:
            d = (f"gross={_money(why.x)} nav={_money(why.y)} "
                 f"max_leverage={_format_rate(<int64_t>why.z)}")
        elif code == R_INSUFFICIENT_MARGIN:
            if why.z >= 0:
                d = (f"margin_available_after={_money(why.x)} nav={_money(why.y)} "
                     f"required_margin_ratio={_format_rate(<int64_t>why.z)}")
            else:
                d = f"order_margin={_money(why.x)} margin_available={_money(why.y)}"
        elif code == R_MAX_CONCURRENT_ORDERS:
            d = f"count={_i128(why.x)} limit={_i128(why.y)}"
        elif code == R_ORDER_RATE_LIMIT:
            d = f"orders_per_second={_i128(why.x)} burst={_i128(why.y)}"
        else:
            d = ""
        return f"{name}: {d}"

    # --- entry points -----------------------------------------------------------------

    def check(self, int account, int instrument, int64_t units, int64_t now_ns,
              bint consume=True, bint existing=False, int64_t own=0):
        """0 if the order may go, else a RiskCode value; on denial
        ``last_denial`` holds the detail text (built only then). ``own``
        (with ``existing``): the order's signed remaining units the store
        counts now."""
        cdef Why why
        if own != 0 and not existing:
            raise ValueError("own is the remaining units of an existing order: pass existing=True")
        cdef int code = self._eval(account, instrument, units, now_ns,
                                   (F_CONSUME if consume else 0) | (F_EXISTING if existing else 0),
                                   own, &why)
        if code != R_OK:
            self.last_denial = self._detail(code, account, instrument, units, &why)
        return code

    def gate(self, int account, int instrument, int64_t units, int64_t now_ns, bint consume):
        """``check`` in the engine gateway's order: the account's working-order
        count (MAX_CONCURRENT_ORDERS) right after the halted check, before the
        instrument, units, reduce-only and exposure checks; the rate bucket
        last, a token taken only by a passing order when ``consume``. 0 or a
        RiskCode value; on denial ``last_denial`` holds the detail text."""
        return self._gate(account, instrument, units, now_ns, consume)

    cdef int _gate(self, int account, int instrument, int64_t units, int64_t now_ns, bint consume) except -1:
        """``gate`` (the engine calls it in C on every order)."""
        cdef Why why
        cdef int code = self._eval(account, instrument, units, now_ns,
                                   (F_CONSUME | F_WORKING_FIRST) if consume else F_WORKING_FIRST, 0, &why)
        if code != R_OK:
            self.last_denial = self._detail(code, account, instrument, units, &why)
        return code

    def check_detail(self, int account, int instrument, int64_t units, int64_t now_ns,
                     bint consume=True, bint existing=False, int64_t own=0):
        """(RiskCode, detail or None) for callers off the hot path."""
        cdef Why why
        if own != 0 and not existing:
            raise ValueError("own is the remaining units of an existing order: pass existing=True")
        cdef int code = self._eval(account, instrument, units, now_ns,
                                   (F_CONSUME if consume else 0) | (F_EXISTING if existing else 0),
                                   own, &why)
        if code == R_OK:
            return RiskCode.OK, None
        d = self._detail(code, account, instrument, units, &why)
        self.last_denial = d
        return RiskCode(code), d

    def _check_exact(self, int account, int instrument, int64_t units, int64_t now_ns,
                     bint consume=False, bint existing=False, int64_t own=0):
        """``check_detail`` without the cached fast path of checks 10-13 (every
        number recomputed from the ledger in int128): the reference the tests
        hold the cached decisions to. Not for the hot path."""
        cdef Why why
        if own != 0 and not existing:
            raise ValueError("own is the remaining units of an existing order: pass existing=True")
        cdef int code = self._eval(account, instrument, units, now_ns,
                                   (F_CONSUME if consume else 0) | (F_EXISTING if existing else 0)
                                   | F_EXACT, own, &why)
        if code == R_OK:
            return RiskCode.OK, None
        return RiskCode(code), self._detail(code, account, instrument, units, &why)

    def check_batch(self, array.array accounts, array.array instruments,
                    array.array units, int64_t now_ns, array.array out):
        """Check N orders in one C loop (arrays: accounts 'i', instruments 'i',
        units 'q', out 'i'); writes each code to ``out`` and returns the number
        denied. Details are not built; re-check one order for its text."""
        cdef Py_ssize_t n = len(accounts), j
        cdef int denied = 0, c
        cdef Why why
        if (accounts.typecode != 'i' or instruments.typecode != 'i'
                or units.typecode != 'q' or out.typecode != 'i'):
            raise TypeError("check_batch needs arrays of typecodes 'i', 'i', 'q', 'i'")
        if len(instruments) != n or len(units) != n or len(out) < n:
            raise ValueError("check_batch arrays must have the same length (out at least)")
        cdef int* pa = accounts.data.as_ints
        cdef int* pi = instruments.data.as_ints
        cdef long long* pu = units.data.as_longlongs
        cdef int* po = out.data.as_ints
        with nogil:
            for j in range(n):
                c = self._eval(pa[j], pi[j], pu[j], now_ns, F_CONSUME, 0, &why)
                po[j] = c
                denied += c != R_OK
        return denied

    # --- configuration ------------------------------------------------------------------

    cdef int _acct(self, int a) except -1:
        if a < 0 or a >= self.ledger.n_accounts:
            raise KeyError(f"unknown account index {a}")
        return a

    def set_limits(self, int account, *, max_units_per_order=_UNSET, max_position_size=_UNSET,
                   max_positions_per_instrument=_UNSET, max_leverage=_UNSET,
                   required_margin_ratio=_UNSET, max_daily_loss=_UNSET,
                   orders_per_second=_UNSET, burst=_UNSET, max_working_orders=_UNSET):
        """Set an account's limits; an omitted keyword is unchanged, ``None``
        disables. Units whole, max_leverage and required_margin_ratio at
        RATE_SCALE, max_daily_loss money at MONEY_SCALE (a positive amount),
        orders_per_second and burst in orders (burst defaults to one second),
        max_working_orders counts the account's non-terminal orders."""
        cdef int a = self._acct(account)
        vals = dict(max_units_per_order=max_units_per_order, max_position_size=max_position_size,
                    max_positions_per_instrument=max_positions_per_instrument,
                    max_leverage=max_leverage, required_margin_ratio=required_margin_ratio,
                    max_daily_loss=max_daily_loss, orders_per_second=orders_per_second,
                    burst=burst, max_working_orders=max_working_orders)
        for key, v in vals.items():
            if v is _UNSET or v is None:
                continue
            if type(v) is bool or not isinstance(v, int):
                raise TypeError(f"{key} must be an int at its fixed-point scale or None, got {type(v).__name__}")
            hi = {"max_units_per_order": C_MAX_UNITS, "max_position_size": C_MAX_UNITS,
                  "max_positions_per_instrument": 10**9, "max_leverage": C_MAX_RATE,
                  "required_margin_ratio": C_MAX_RATE, "max_daily_loss": C_MAX_MONEY,
                  "orders_per_second": 10**9, "burst": 10**9,
                  "max_working_orders": 10**9}[key]
            if v < 0 or v > hi:
                raise ValueError(f"{key}={v} outside 0..{hi}")
        # rate and burst: burst defaults to one second of orders
        new_rate = self.acct[a].rate_per_sec
        new_burst = self.acct[a].burst
        rate_changed = orders_per_second is not _UNSET or burst is not _UNSET
        if orders_per_second is not _UNSET:
            new_rate = 0 if orders_per_second is None else orders_per_second
        if burst is not _UNSET and burst is not None:
            new_burst = burst
        elif rate_changed:
            new_burst = new_rate
        if new_rate != 0 and new_burst == 0:
            raise ValueError("burst must be at least 1 when orders_per_second is set")
        # everything validated: apply
        if max_units_per_order is not _UNSET:
            self.acct[a].max_units_per_order = INT64_MAX if max_units_per_order is None else max_units_per_order
        if max_position_size is not _UNSET:
            self.acct[a].max_position_size = INT64_MAX if max_position_size is None else max_position_size
        if max_positions_per_instrument is not _UNSET:
            self.acct[a].max_positions_per_instrument = (INT64_MAX if max_positions_per_instrument is None
                                                    else max_positions_per_instrument)
        if max_leverage is not _UNSET:
            self.acct[a].max_leverage = INT64_MAX if max_leverage is None else max_leverage
        if required_margin_ratio is not _UNSET:
            self.acct[a].required_margin_ratio = 0 if required_margin_ratio is None else required_margin_ratio
        if max_daily_loss is not _UNSET:
            self.acct[a].max_daily_loss = INT64_MAX if max_daily_loss is None else max_daily_loss
        if max_working_orders is not _UNSET:
            self.acct[a].max_working_orders = INT64_MAX if max_working_orders is None else max_working_orders
        if rate_changed:
            self.acct[a].rate_per_sec = new_rate
            self.acct[a].burst = new_burst
            self.acct[a].tokens = new_burst * NANO  # start full
            self.acct[a].last_ns = 0
        self.acct[a].c_gen = <uint64_t>-1  # the cached rooms depend on the limits

    def limits(self, int account):
        """The account's limits as a dict (None = disabled)."""
        cdef int a = self._acct(account)

        def opt(int64_t v):
            return None if v == INT64_MAX else v

        return {
            "max_units_per_order": opt(self.acct[a].max_units_per_order),
            "max_position_size": opt(self.acct[a].max_position_size),
            "max_positions_per_instrument": opt(self.acct[a].max_positions_per_instrument),
            "max_leverage": opt(self.acct[a].max_leverage),
            "required_margin_ratio": self.acct[a].required_margin_ratio or None,
            "max_daily_loss": opt(self.acct[a].max_daily_loss),
            "orders_per_second": self.acct[a].rate_per_sec or None,
            "burst": self.acct[a].burst or None,
            "max_working_orders": opt(self.acct[a].max_working_orders),
        }

    def set_trading_state(self, int account, state):
        """ACTIVE, REDUCING (only exposure-reducing orders) or HALTED (kill switch)."""
        cdef int a = self._acct(account)
        self.acct[a].state = TradingState(state)

    def trading_state(self, int account):
        return TradingState(self.acct[self._acct(account)].state)

    def allow_all(self, int account):
        cdef int a = self._acct(account)
        cdef int j
        for j in range(self.n_i):
            self.allowed[a * self.words + (j >> 6)] |= (<uint64_t>1) << (j & 63)

    def allow_only(self, int account, instruments):
        """Allow-list: only these instrument indexes may be traded."""
        cdef int a = self._acct(account)
        cdef int j
        idx = [self._instr(j) for j in instruments]
        for j in range(self.words):
            self.allowed[a * self.words + j] = 0
        for j in idx:
            self.allowed[a * self.words + (j >> 6)] |= (<uint64_t>1) << (j & 63)

    def deny(self, int account, instruments):
        """Deny-list: these instrument indexes may not be traded."""
        cdef int a = self._acct(account)
        cdef int j
        idx = [self._instr(j) for j in instruments]
        for j in idx:
            self.allowed[a * self.words + (j >> 6)] &= ~((<uint64_t>1) << (j & 63))

    def is_allowed(self, int account, int instrument):
        cdef int a = self._acct(account)
        cdef int j = self._instr(instrument)
        return bool((self.allowed[a * self.words + (j >> 6)] >> (j & 63)) & 1)

    def _instr(self, j):
        if type(j) is bool or not isinstance(j, int) or j < 0 or j >= self.n_i:
            raise KeyError(f"unknown instrument index {j!r}")
        return j
