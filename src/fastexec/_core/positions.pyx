# cython: language_level=3
"""Positions, P&L, margin and NAV per account, in fixed-point integers.

Rules (the Decimal model in tests/reference_model.py states the same rules;
each result is rounded half-even exactly once, from the exact value):

* Netting, FIFO (OANDA v20 without hedging, and the simulated venue): one
  position per (account, instrument), signed units, made of lots (the
  broker's trades). A fill on the position's side (or on a flat position)
  opens a lot (units, fill price, the broker's trade id or 0). An opposite
  fill closes lots oldest first, the last one partially if needed; what is
  left of the fill after every lot is closed opens a lot on the other side (a
  flip).
* Named closes: at the broker an exit attached to a trade (stop loss, take
  profit, trailing stop) or a close of a trade by id closes *that* trade, and
  every v20 fill names the trades it closed (``tradesClosed``, then
  ``tradeReduced``). A fill given ``closed_trade_ids`` closes, in the order
  named, each open lot of the position with that trade id, fully, or the
  last partially when the fill has fewer units left than the lot; whatever is
  left of the fill then closes the other lots oldest first (FIFO) and may
  flip. A named id that closes nothing (no open lot of this position has it,
  named twice, the fill already used up, or an opening fill) is counted in
  ``unmatched_trade_ids`` and does not change what the fill does otherwise.
* Realized P&L, per lot closed: ``q = closed * (fill - lot price)`` exact in
  the quote currency, times the quote->home factor, rounded half-even once to
  the broker's booking precision, 4 decimals (``BOOK_STEP`` = 100 micro),
  held at MONEY_SCALE; the fill realizes the sum over its lots, which is
  added to the balance. The factor is the gain factor when ``q >= 0``, the
  loss factor when ``q < 0`` (REFERENCE.md 9.4), or ``quote_home_rate`` for
  both when the caller passes the broker's.
* Average price = ``|sum(lot units * lot price)| / |units|`` over the open
  lots, rounded half-even at PRICE_SCALE (v20 ``averagePrice``); 0 when flat.
* Unrealized P&L, on the net position (as the venue and v20 report it):
  ``q = units * close - sum(lot units * lot price)`` exact, close = bid for a
  long, ask for a short, times the gain (q >= 0) or loss factor, rounded
  half-even once at 4 decimals. The lot sum is kept per position, so a mark
  never walks the lots.
* Mid: ``(bid + ask) / 2`` rounded at PRICE_SCALE.
* Quote->home factors (RATE_SCALE), one rounding each, over the same route:
  same currency 1; direct pair C_H; inverse pair H_C; otherwise a cross
  through USD, the two legs combined exactly before the one rounding. The
  mid factor uses mids (margin, value); the gain factor sells the quote
  currency (bid of a direct leg, 1/ask of an inverse leg), the loss factor
  buys it (ask of a direct leg, 1/bid of an inverse leg), as the venue does.
* Value per unit (home, RATE_SCALE) = mid * mid factor (rounded); margin per
  unit = value per unit * instrument margin rate (rounded). Position value =
  |units| * value per unit, margin used = |units| * margin per unit (each
  rounded at MONEY_SCALE). Margin uses mids only (OANDA, REFERENCE.md 9.1);
  the per-unit form keeps the risk kernel free of 128-bit division and differs
  from ``marginRate * positionValue`` by under 1e-12 home per unit (the venue
  rounds those two to 4 decimals: they may differ from it by < 0.0001).
* NAV = balance + unrealized; margin available = NAV - margin used; daily
  P&L = NAV - NAV at the start of the trading day (deposits move both).
A position is valued from the first mark of its instrument and of the
instruments its conversion needs; until then its values are 0.

Lots live in a growable ring per position (24 bytes a lot, allocated on the
first lot, grown twofold with malloc when full, kept when the position goes flat),
at most ``max_lots`` per position (constructor argument, default 2**20): a
fill that would open one more lot than that raises ``LedgerError
TOO_MANY_LOTS`` and changes nothing. Closing lots never allocates (a named
close may grow the ledger's scratch of ring offsets to the number of ids).
A named close finds each lot by a scan of the ring (starting after the lot
the previous id found, so ids named oldest first cost one compare each) and
removes lots from the middle of the ring by moving the younger ones down.
"""
from collections import namedtuple

from libc.stdint cimport int8_t, int32_t, int64_t, uint32_t, uint64_t, INT64_MAX
from libc.stdlib cimport calloc, free, malloc, realloc

from fastexec._core.fixedpoint cimport (
    int128, div_half_even, narrow, c_pnl, c_convert, c_units_value,
    KIND_MONEY, KIND_RATE, KIND_PRICE, KIND_UNITS,
    C_MAX_UNITS, C_MAX_PRICE, C_MAX_RATE, C_MAX_MONEY, C_RATE_SCALE,
)

# Money booked and reported at the broker's 4 decimals: P&L is rounded to
# units of BOOK_STEP micro. PL_DEN turns (units x PRICE_SCALE) x RATE_SCALE
# into those units: 10**9 * 10**12 / 10**4.
cdef extern from *:
    """
    #define FE_BOOK_STEP 100LL
    #define FE_PL_DEN 100000000000000000LL
    #define FE_PL_DEN_1 100000LL
    """
    const int64_t BOOK_STEP "FE_BOOK_STEP"
    const int64_t PL_DEN "FE_PL_DEN"          # 10**17
    const int64_t PL_DEN_1 "FE_PL_DEN_1"      # PL_DEN / RATE_SCALE: factor exactly 1

DEFAULT_MAX_LOTS = 1 << 20                    # lots per position
from fastexec._core.instruments cimport InstrumentTable

AccountState = namedtuple("AccountState", [
    "balance", "unrealized_pl", "nav", "margin_used", "margin_available",
    "position_value", "realized_pl", "daily_pl", "day_start_nav", "open_positions",
])
AccountState.__doc__ = ("All numbers of one account, money at MONEY_SCALE in its home currency; "
                        "position_value is the gross exposure (sum of |position values|).")

PositionState = namedtuple("PositionState", [
    "units", "average_price", "unrealized_pl", "position_value", "margin_used", "realized_pl",
])


class LedgerError(ValueError):
    """Bad input to the ledger; ``code`` is stable."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


cdef inline void* _alloc(size_t n, size_t size) except NULL:
    cdef void* p = calloc(n if n > 0 else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


cdef inline int64_t _abs(int64_t x) noexcept nogil:
    return -x if x < 0 else x


cdef int128 _pl_wide(int128 q, int64_t f) noexcept nogil:
    """round_half_even(q * f / PL_DEN) for |q| beyond int64, where q * f may
    not fit int128: q = qh * PL_DEN + ql, so q * f / PL_DEN = qh * f +
    ql * f / PL_DEN with both products inside int128 (|q| <= 2e30, f <= 1e18)."""
    cdef bint neg = q < 0
    cdef int128 a = -q if neg else q
    cdef int128 qh = a / PL_DEN
    cdef int128 t = (a - qh * PL_DEN) * f
    cdef int128 d = t / PL_DEN
    cdef int128 rem = t - d * PL_DEN
    cdef int128 w = qh * f + d
    if 2 * rem > PL_DEN or (2 * rem == PL_DEN and (w & 1) != 0):
        w += 1
    return -w if neg else w


cdef inline int128 _factor1(int64_t m1, bint inv) noexcept nogil:
    """Factor (RATE_SCALE) of one leg at price m1: m1, or 1 / m1."""
    if inv:
        return div_half_even(<int128>1000000000 * <int128>1000000000000, m1)  # 1e21 / m1
    return <int128>m1 * 1000


cdef inline int128 _factor2(int64_t m1, bint inv1, int64_t m2, bint inv2) noexcept nogil:
    """Factor (RATE_SCALE) of two legs, combined exactly, rounded once."""
    if not inv1 and not inv2:
        return div_half_even(<int128>m1 * m2, 1000000)
    if not inv1:
        return div_half_even(<int128>m1 * <int128>1000000000000, m2)
    if not inv2:
        return div_half_even(<int128>m2 * <int128>1000000000000, m1)
    return div_half_even(<int128>1000000000000000 * <int128>1000000000000000, <int128>m1 * m2)


cdef inline int64_t _pl_home(int128 q, int64_t f) except? -9223372036854775807:
    """P&L ``q`` (units x price, exact, in the quote currency) times the factor
    ``f`` (RATE_SCALE): home money rounded half-even once to 4 decimals,
    returned at MONEY_SCALE (a multiple of BOOK_STEP)."""
    cdef int128 r
    if f == C_RATE_SCALE:
        r = div_half_even(q, PL_DEN_1)       # 64-bit division when q fits
    elif q == <int64_t>q:
        r = div_half_even(q * f, PL_DEN)     # |q * f| < 9.3e36: fits int128
    else:
        r = _pl_wide(q, f)
    return narrow(r * BOOK_STEP, KIND_MONEY)


cdef inline int64_t _close_lot(int64_t lot_units, int64_t lot_price, int64_t left, int64_t price,
                               int64_t fg, int64_t fl, int128* realized, int128* cost) except? -9223372036854775807:
    """Close up to ``left`` units of a lot (``lot_units`` at ``lot_price``) at
    ``price``: adds the realized P&L in home money (gain factor ``fg``, loss
    factor ``fl``) to ``realized``, takes the closed cost off ``cost`` and
    returns the units taken, signed as the lot (== ``lot_units`` when the lot
    closes fully)."""
    cdef int64_t lu = _abs(lot_units)
    cdef int64_t take = lu if lu <= left else left
    if lot_units < 0:
        take = -take
    cdef int128 q = <int128>take * (price - lot_price)
    realized[0] += _pl_home(q, fg if q >= 0 else fl)
    cost[0] -= <int128>take * lot_price
    return take


cdef inline bint _listed(const uint32_t* offs, uint32_t n, uint32_t j) noexcept nogil:
    """Whether ring offset ``j`` is among ``offs[0..n)``."""
    cdef uint32_t x
    for x in range(n):
        if offs[x] == j:
            return True
    return False


cdef enum:
    # why apply_fill refuses a fill (raised by _refuse, out of the hot path)
    R_UNITS = 1
    R_PRICE
    R_RATE
    R_TRADE_ID
    R_POSITION
    R_CONVERSION
    R_LOTS


cdef Py_ssize_t _count_ids(object ids) except -1:
    """The number of trade ids, each read as an int64 (TypeError if not an int)."""
    cdef int64_t tid
    for x in ids:
        tid = x
    return len(ids)


cdef class Ledger:
    """Prices, conversion factors, positions and account numbers for many
    accounts; accounts and instruments are small int indexes."""

    def __cinit__(self, InstrumentTable instruments, int max_accounts=256,
                  long long max_lots=DEFAULT_MAX_LOTS):
        if max_accounts <= 0:
            raise ValueError("max_accounts must be positive")
        if max_lots <= 0 or max_lots > (1 << 30):
            raise ValueError("max_lots must be in 1..2**30")
        self.max_lots = <uint32_t>max_lots
        cdef int ni = instruments.n
        cdef int nc = len(instruments.currencies)
        cdef size_t na = max_accounts
        self.instruments = instruments
        self.max_accounts = max_accounts
        self.n_accounts = 0
        self.n_i = ni
        self.n_c = nc
        self.bid = <int64_t*>_alloc(ni, sizeof(int64_t))
        self.ask = <int64_t*>_alloc(ni, sizeof(int64_t))
        self.mid = <int64_t*>_alloc(ni, sizeof(int64_t))
        self.has_price = <int8_t*>_alloc(ni, sizeof(int8_t))
        self.conv = <int64_t*>_alloc(nc * nc, sizeof(int64_t))
        self.conv_g = <int64_t*>_alloc(nc * nc, sizeof(int64_t))
        self.conv_l = <int64_t*>_alloc(nc * nc, sizeof(int64_t))
        self.conv_ok = <int8_t*>_alloc(nc * nc, sizeof(int8_t))
        self.leg1 = <int32_t*>_alloc(nc * nc, sizeof(int32_t))
        self.leg2 = <int32_t*>_alloc(nc * nc, sizeof(int32_t))
        self.leg1_inv = <int8_t*>_alloc(nc * nc, sizeof(int8_t))
        self.leg2_inv = <int8_t*>_alloc(nc * nc, sizeof(int8_t))
        self.home_used = <int8_t*>_alloc(nc, sizeof(int8_t))
        self.vpu = <int64_t*>_alloc(ni * nc, sizeof(int64_t))
        self.mpu = <int64_t*>_alloc(ni * nc, sizeof(int64_t))
        self.vpu_ok = <int8_t*>_alloc(ni * nc, sizeof(int8_t))
        self.uv = <UnitVal*>_alloc(ni * nc, sizeof(UnitVal))
        self.units = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.avg = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.cost = <int128*>_alloc(na * ni, sizeof(int128))
        self.rings = <LotRing*>_alloc(na * ni, sizeof(LotRing))
        self.realized = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.upl = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.value = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.margin = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.home = <int32_t*>_alloc(na, sizeof(int32_t))
        self.balance = <int64_t*>_alloc(na, sizeof(int64_t))
        self.upl_tot = <int64_t*>_alloc(na, sizeof(int64_t))
        self.value_tot = <int64_t*>_alloc(na, sizeof(int64_t))
        self.margin_tot = <int64_t*>_alloc(na, sizeof(int64_t))
        self.realized_tot = <int64_t*>_alloc(na, sizeof(int64_t))
        self.day_start_nav = <int64_t*>_alloc(na, sizeof(int64_t))
        self.n_open = <int32_t*>_alloc(na, sizeof(int32_t))
        self.gen = <uint64_t*>_alloc(na, sizeof(uint64_t))
        self.aff = <int32_t*>_alloc(nc * ni, sizeof(int32_t))
        self.n_aff = <int32_t*>_alloc(nc, sizeof(int32_t))
        self.chg = <int8_t*>_alloc(nc, sizeof(int8_t))
        self.s_upl = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.s_value = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.s_margin = <int64_t*>_alloc(na * ni, sizeof(int64_t))
        self.t_upl = <int64_t*>_alloc(na, sizeof(int64_t))
        self.t_value = <int64_t*>_alloc(na, sizeof(int64_t))
        self.t_margin = <int64_t*>_alloc(na, sizeof(int64_t))
        self._acct_index = {}
        self._acct_names = []
        self._pair = {}
        for j in range(ni):
            self._pair[(instruments.base_ccy[j], instruments.quote_ccy[j])] = j
        self.usd = instruments.currencies.index("USD") if "USD" in instruments.currencies else -1

    def __dealloc__(self):
        cdef size_t k
        if self.rings != NULL:
            for k in range(<size_t>self.max_accounts * self.n_i):
                free(self.rings[k].buf)
        free(self.rings); free(self.cost); free(self.conv_g); free(self.conv_l)
        free(self.bid); free(self.ask); free(self.mid); free(self.has_price)
        free(self.conv); free(self.conv_ok); free(self.leg1); free(self.leg2)
        free(self.leg1_inv); free(self.leg2_inv); free(self.home_used)
        free(self.vpu); free(self.mpu); free(self.vpu_ok); free(self.uv); free(self.gen)
        free(self.units); free(self.avg); free(self.realized); free(self.upl)
        free(self.value); free(self.margin)
        free(self.home); free(self.balance); free(self.upl_tot); free(self.value_tot)
        free(self.margin_tot); free(self.realized_tot); free(self.day_start_nav)
        free(self.n_open); free(self.aff); free(self.n_aff); free(self.chg)
        free(self.s_upl); free(self.s_value); free(self.s_margin)
        free(self.t_upl); free(self.t_value); free(self.t_margin)
        free(self.s_off)

    # --- accounts -------------------------------------------------------------

    def add_account(self, str name, str home_currency, int64_t balance=0):
        """Register an account; returns its index. ``balance`` at MONEY_SCALE."""
        cdef int a, h
        if name in self._acct_index:
            raise LedgerError("DUPLICATE_ACCOUNT", f"account {name!r} already exists")
        if self.n_accounts >= self.max_accounts:
            raise LedgerError("TOO_MANY_ACCOUNTS", f"max_accounts={self.max_accounts} reached")
        if home_currency not in self.instruments.currencies:
            raise LedgerError("UNKNOWN_CURRENCY",
                              f"home currency {home_currency!r} is not a currency of any instrument")
        narrow(balance, KIND_MONEY)
        h = self.instruments.currency_index(home_currency)
        if not self.home_used[h]:
            self._setup_home(h)
        a = self.n_accounts
        self.home[a] = h
        self.balance[a] = balance
        self.day_start_nav[a] = balance
        self.gen[a] += 1
        self.n_accounts += 1
        self._acct_index[name] = a
        self._acct_names.append(name)
        return a

    def account_index(self, str name):
        try:
            return self._acct_index[name]
        except KeyError:
            raise KeyError(f"unknown account {name!r}") from None

    def account_name(self, int a):
        self._check_account(a)
        return self._acct_names[a]

    def home_currency(self, int a):
        self._check_account(a)
        return self.instruments.currencies[self.home[a]]

    cdef int _check_account(self, int a) except -1:
        if a < 0 or a >= self.n_accounts:
            raise LedgerError("UNKNOWN_ACCOUNT", f"account={a} outside 0..{self.n_accounts - 1}")
        return 0

    cdef int _check_instrument(self, int i) except -1:
        if i < 0 or i >= self.n_i:
            raise LedgerError("UNKNOWN_INSTRUMENT", f"instrument={i} outside 0..{self.n_i - 1}")
        return 0

    def deposit(self, int a, int64_t amount):
        """Add (or withdraw, if negative) cash. Not P&L: the day's starting NAV
        moves with it so daily P&L is unchanged."""
        self._check_account(a)
        cdef int64_t b = narrow(<int128>self.balance[a] + amount, KIND_MONEY)
        cdef int64_t d = narrow(<int128>self.day_start_nav[a] + amount, KIND_MONEY)
        self.balance[a] = b
        self.day_start_nav[a] = d
        self.gen[a] += 1
        return b

    def apply_charge(self, int a, int64_t amount):
        """Financing, commission or fees (signed, home currency): moves the
        balance and counts in daily P&L."""
        self._check_account(a)
        self.balance[a] = narrow(<int128>self.balance[a] + amount, KIND_MONEY)
        self.gen[a] += 1
        return self.balance[a]

    def start_trading_day(self, int a):
        """Snapshot NAV as the start of the trading day (daily-loss limit base)."""
        self._check_account(a)
        self.day_start_nav[a] = narrow(<int128>self.balance[a] + self.upl_tot[a], KIND_MONEY)
        self.gen[a] += 1
        return self.day_start_nav[a]

    # --- conversion setup -------------------------------------------------------

    def _setup_home(self, int h):
        cdef int c, x, l1, l2, u = self.usd
        cdef int nc = self.n_c
        for c in range(nc):
            x = c * nc + h
            self.leg1[x] = -2
            self.leg2[x] = -1
            self.leg1_inv[x] = 0
            self.leg2_inv[x] = 0
            if c == h:
                self.leg1[x] = -1
            elif (c, h) in self._pair:
                self.leg1[x] = self._pair[(c, h)]
            elif (h, c) in self._pair:
                self.leg1[x] = self._pair[(h, c)]
                self.leg1_inv[x] = 1
            elif u >= 0 and c != u and h != u:
                l1 = -1
                l2 = -1
                if (c, u) in self._pair:
                    l1 = self._pair[(c, u)]
                elif (u, c) in self._pair:
                    l1 = self._pair[(u, c)]
                    self.leg1_inv[x] = 1
                if (u, h) in self._pair:
                    l2 = self._pair[(u, h)]
                elif (h, u) in self._pair:
                    l2 = self._pair[(h, u)]
                    self.leg2_inv[x] = 1
                if l1 >= 0 and l2 >= 0:
                    self.leg1[x] = l1
                    self.leg2[x] = l2
            self._recompute_conv(c, h)
        self.home_used[h] = 1
        for c in range(self.n_i):
            self._recompute_vpu(c, h)

    cdef int _recompute_conv(self, int c, int h) except -1:
        cdef int x = c * self.n_c + h
        cdef int l1 = self.leg1[x]
        cdef int l2 = self.leg2[x]
        cdef bint i1 = self.leg1_inv[x], i2 = self.leg2_inv[x]
        self.conv_ok[x] = 0
        if l1 == -1:
            self.conv[x] = C_RATE_SCALE
            self.conv_g[x] = C_RATE_SCALE
            self.conv_l[x] = C_RATE_SCALE
            self.conv_ok[x] = 1
            return 0
        if l1 < 0 or not self.has_price[l1] or (l2 >= 0 and not self.has_price[l2]):
            return 0
        # gain sells the quote currency: bid of a direct leg, ask of an
        # inverse one (divided by); loss buys it: the other side
        cdef int64_t g1 = self.ask[l1] if i1 else self.bid[l1]
        cdef int64_t s1 = self.bid[l1] if i1 else self.ask[l1]
        cdef int64_t f, fg, fl
        if l2 < 0:
            f = narrow(_factor1(self.mid[l1], i1), KIND_RATE)
            fg = narrow(_factor1(g1, i1), KIND_RATE)
            fl = narrow(_factor1(s1, i1), KIND_RATE)
        else:
            f = narrow(_factor2(self.mid[l1], i1, self.mid[l2], i2), KIND_RATE)
            fg = narrow(_factor2(g1, i1, self.ask[l2] if i2 else self.bid[l2], i2), KIND_RATE)
            fl = narrow(_factor2(s1, i1, self.bid[l2] if i2 else self.ask[l2], i2), KIND_RATE)
        self.conv[x] = f
        self.conv_g[x] = fg
        self.conv_l[x] = fl
        self.conv_ok[x] = 1
        return 0

    cdef int _recompute_vpu(self, int i, int h) except -1:
        cdef int x = i * self.n_c + h
        cdef int q = self.instruments.quote_ccy[i]
        cdef int cx = q * self.n_c + h
        cdef int64_t v
        self.vpu_ok[x] = 0
        self.uv[x].v_max = -1
        self.uv[x].m_max = -1
        if not self.has_price[i] or not self.conv_ok[cx]:
            return 0
        v = narrow(div_half_even(<int128>self.mid[i] * self.conv[cx], 1000000000), KIND_RATE)
        self.mpu[x] = narrow(div_half_even(<int128>v * self.instruments.margin_rate[i], C_RATE_SCALE),
                             KIND_RATE)
        self.vpu[x] = v
        self.uv[x].v_hi = v // 1000000
        self.uv[x].v_lo = v % 1000000
        self.uv[x].m_hi = self.mpu[x] // 1000000
        self.uv[x].m_lo = self.mpu[x] % 1000000
        self.uv[x].v_max = UV_FAST // self.uv[x].v_hi if self.uv[x].v_hi > 0 else INT64_MAX
        self.uv[x].m_max = UV_FAST // self.uv[x].m_hi if self.uv[x].m_hi > 0 else INT64_MAX
        self.vpu_ok[x] = 1
        return 0

    cdef int _value_of(self, int a, int i, int64_t u, int128 cost,
                       int64_t* nu, int64_t* nv, int64_t* nm) except -1:
        """Values of a (hypothetical) position of u units whose lots cost
        ``cost`` (sum of units x price), at the current marks; zeros while
        unvalued. Writes nothing else."""
        cdef int h = self.home[a]
        cdef int x = i * self.n_c + h
        cdef int cx = self.instruments.quote_ccy[i] * self.n_c + h
        cdef int128 q
        nu[0] = 0
        nv[0] = 0
        nm[0] = 0
        if u != 0 and self.vpu_ok[x]:
            q = <int128>u * (self.bid[i] if u > 0 else self.ask[i]) - cost
            nu[0] = _pl_home(q, self.conv_g[cx] if q >= 0 else self.conv_l[cx])
            nv[0] = narrow(c_units_value(_abs(u), self.vpu[x]), KIND_MONEY)
            nm[0] = narrow(c_units_value(_abs(u), self.mpu[x]), KIND_MONEY)
        return 0

    cdef int _mark_convs(self, int i) except -1:
        """Recompute the conversion factors and per-unit values that depend on
        instrument i, and list (per home) the instruments to revalue."""
        cdef int h, c, j, n, x
        cdef int nc = self.n_c, ni = self.n_i
        for h in range(nc):
            if not self.home_used[h]:
                continue
            for c in range(nc):
                x = c * nc + h
                self.chg[c] = self.leg1[x] == i or self.leg2[x] == i
                if self.chg[c]:
                    self._recompute_conv(c, h)
            n = 0
            for j in range(ni):
                if j == i or self.chg[self.instruments.quote_ccy[j]]:
                    self._recompute_vpu(j, h)
                    self.aff[h * ni + n] = j
                    n += 1
            self.n_aff[h] = n
        return 0

    # --- the three steps ----------------------------------------------------------

    def mark(self, int instrument, int64_t bid, int64_t ask):
        """New bid/ask for an instrument: revalues every position in it and every
        position whose home conversion goes through it. Prices at PRICE_SCALE,
        on the instrument's tick, 0 < bid <= ask."""
        cdef int i = instrument
        cdef int h, c, j, t, a, n, x
        cdef int nc = self.n_c, ni = self.n_i
        cdef int64_t tick
        cdef int64_t* units = self.units
        self._check_instrument(i)
        tick = self.instruments.price_tick[i]
        if bid <= 0 or ask < bid or ask > C_MAX_PRICE:
            raise LedgerError("INVALID_PRICE", f"bid={bid} ask={ask} need 0 < bid <= ask <= {C_MAX_PRICE}")
        if bid % tick != 0 or ask % tick != 0:
            raise LedgerError("INVALID_PRICE",
                              f"bid={bid} ask={ask} not multiples of tick={tick} "
                              f"(instrument {self.instruments.by_index(i).name})")
        cdef int64_t old_bid = self.bid[i], old_ask = self.ask[i], old_mid = self.mid[i]
        cdef int8_t old_has = self.has_price[i]
        cdef int64_t k
        self.bid[i] = bid
        self.ask[i] = ask
        self.mid[i] = <int64_t>div_half_even(<int128>bid + ask, 2)
        self.has_price[i] = 1
        try:
            self._mark_convs(i)
            # pass 1: new values and totals into scratch (may raise)
            for a in range(self.n_accounts):
                if self.n_open[a] == 0:
                    continue
                h = self.home[a]
                self.t_upl[a] = self.upl_tot[a]
                self.t_value[a] = self.value_tot[a]
                self.t_margin[a] = self.margin_tot[a]
                for t in range(self.n_aff[h]):
                    j = self.aff[h * ni + t]
                    k = <int64_t>a * ni + j
                    if units[k] != 0:
                        self._value_of(a, j, units[k], self.cost[k],
                                       &self.s_upl[k], &self.s_value[k], &self.s_margin[k])
                        self.t_upl[a] = narrow(<int128>self.t_upl[a] - self.upl[k] + self.s_upl[k], KIND_MONEY)
                        self.t_value[a] = narrow(<int128>self.t_value[a] - self.value[k] + self.s_value[k], KIND_MONEY)
                        self.t_margin[a] = narrow(<int128>self.t_margin[a] - self.margin[k] + self.s_margin[k], KIND_MONEY)
        except BaseException:
            # put the old price back; recomputing from it reproduces the old
            # factors exactly (they were computed from it before)
            self.bid[i] = old_bid
            self.ask[i] = old_ask
            self.mid[i] = old_mid
            self.has_price[i] = old_has
            self._mark_convs(i)
            raise
        # pass 2: commit (cannot fail)
        for a in range(self.n_accounts):
            if self.n_open[a] == 0:
                continue
            h = self.home[a]
            for t in range(self.n_aff[h]):
                j = self.aff[h * ni + t]
                k = <int64_t>a * ni + j
                if units[k] != 0:
                    self.upl[k] = self.s_upl[k]
                    self.value[k] = self.s_value[k]
                    self.margin[k] = self.s_margin[k]
            self.upl_tot[a] = self.t_upl[a]
            self.value_tot[a] = self.t_value[a]
            self.margin_tot[a] = self.t_margin[a]
            self.gen[a] += 1

    cdef int _grow(self, LotRing* r) except -1:
        """Room for one more lot: twice the ring (oldest first from 0)."""
        cdef uint32_t cap = r.cap * 2 if r.cap else 4
        cdef uint32_t j
        cdef Lot* buf = <Lot*>malloc(cap * sizeof(Lot))
        if buf == NULL:
            raise MemoryError()
        for j in range(r.n):
            buf[j] = r.buf[(r.head + j) & (r.cap - 1)]
        free(r.buf)
        r.buf = buf
        r.head = 0
        r.cap = cap
        return 0

    cdef int _close_named(self, LotRing* r, object ids, int64_t units, int64_t price,
                          int64_t fg, int64_t fl, int128* realized, int128* cost,
                          int64_t* left, uint32_t* done, uint32_t* nf, uint32_t* f,
                          int64_t* part, uint32_t* part_off, int64_t* miss) except -1:
        """Plan a reducing fill that names the trades it closes; changes no lot.

        Closes, in the order of ``ids``, the open lot with each id (fully, or
        partially when the fill has fewer units left), then the other lots
        oldest first with what is left of the fill. Adds the realized P&L to
        ``realized`` and the closed cost to ``cost``; returns in ``left`` the
        units of the fill left over (a flip), in ``done`` the number of lots
        closed fully, in ``s_off[0..nf)`` the ring offsets (from head) of the
        named lots closed fully, in ``f`` the offset below which every lot is
        closed fully (the FIFO part), in ``part``/``part_off`` the units
        (signed, the lot's side) taken from the one lot closed partially and
        its offset, in ``miss`` the number of ids that closed nothing."""
        cdef Py_ssize_t m = len(ids), t
        cdef uint32_t mask = r.cap - 1, n = r.n, s, j = 0, last = 0, nfull = 0, fo = 0, dn = 0
        cdef int64_t lft = _abs(units), tid, lu, take, hit = 0
        cdef int128 rz = 0, c = cost[0]
        cdef Lot* lot
        cdef uint32_t* buf
        cdef bint found
        if m > self.s_off_cap:
            buf = <uint32_t*>realloc(self.s_off, m * sizeof(uint32_t))
            if buf == NULL:
                raise MemoryError()
            self.s_off = buf
            self.s_off_cap = m
        part[0] = 0
        part_off[0] = 0
        for t in range(m):
            tid = ids[t]              # every id is read: a non-int raises TypeError
            if tid <= 0 or lft == 0:
                continue
            found = False
            for s in range(n):
                j = last + s
                if j >= n:
                    j -= n
                if r.buf[(r.head + j) & mask].trade_id == tid:
                    found = True
                    break
            if not found:
                continue
            if _listed(self.s_off, nfull, j):    # named twice: closed already
                continue
            lot = &r.buf[(r.head + j) & mask]
            lu = lot.units
            take = _close_lot(lu, lot.price, lft, price, fg, fl, &rz, &c)
            lft -= _abs(take)
            hit += 1
            if take == lu:
                self.s_off[nfull] = j
                nfull += 1
            else:
                part[0] = take
                part_off[0] = j
            last = j + 1
            if last == n:
                last = 0
        dn = nfull
        # the rest of the fill: the other lots, oldest first (offsets below
        # fo are all closed fully: by name or here)
        while lft > 0 and fo < n:
            if _listed(self.s_off, nfull, fo):
                fo += 1
                continue
            lot = &r.buf[(r.head + fo) & mask]
            lu = lot.units
            take = _close_lot(lu, lot.price, lft, price, fg, fl, &rz, &c)
            lft -= _abs(take)
            if take == lu:
                dn += 1
                fo += 1
            else:
                part[0] = take
                part_off[0] = fo
        realized[0] = realized[0] + rz
        cost[0] = c
        left[0] = lft
        done[0] = dn
        nf[0] = nfull
        f[0] = fo
        miss[0] = m - hit
        return 0

    cdef void _commit_named(self, LotRing* r, uint32_t done, uint32_t nf, uint32_t f,
                            int64_t part, uint32_t part_off) noexcept:
        """Apply the plan of ``_close_named``: reduce the partial lot, drop the
        ``done`` lots closed fully (those below offset ``f`` and the named
        ones in ``s_off``), the younger lots moving down, order kept."""
        cdef uint32_t mask = r.cap - 1, x, j, w, adv
        cdef Lot* lot
        if part:
            r.buf[(r.head + part_off) & mask].units -= part
        if done == 0:
            return
        for x in range(nf):
            r.buf[(r.head + self.s_off[x]) & mask].units = 0
        # every lot below f is closed; skip further closed lots at the head
        adv = f
        while adv < r.n and r.buf[(r.head + adv) & mask].units == 0:
            adv += 1
        r.head = (r.head + adv) & mask
        r.n -= adv
        done -= adv if adv <= done else done    # closed lots still in the ring
        if done == 0:
            return
        w = 0
        while r.buf[(r.head + w) & mask].units != 0:
            w += 1
        for j in range(w + 1, r.n):
            lot = &r.buf[(r.head + j) & mask]
            if lot.units != 0:
                r.buf[(r.head + w) & mask] = lot[0]
                w += 1
        r.n = w

    cdef int _refuse(self, int why, int a, int i, int64_t x, int64_t y) except -1:
        """Raise the LedgerError of a refused fill (kept out of apply_fill so
        its message formatting does not weigh on the hot path)."""
        if why == R_UNITS:
            raise LedgerError("INVALID_UNITS", f"units={x} need 0 < |units| <= {C_MAX_UNITS}")
        if why == R_PRICE:
            raise LedgerError("INVALID_PRICE", f"price={x} need 0 < price <= {C_MAX_PRICE}")
        if why == R_RATE:
            raise LedgerError("INVALID_RATE", f"quote_home_rate={x} outside 0..{C_MAX_RATE}")
        if why == R_TRADE_ID:
            raise LedgerError("INVALID_TRADE_ID", f"opened_trade_id={x} must be >= 0 (0 = unknown)")
        if why == R_POSITION:
            raise LedgerError("POSITION_TOO_LARGE",
                              f"position {x} + fill {y} outside +-{C_MAX_UNITS} units")
        if why == R_CONVERSION:
            raise LedgerError(
                "NO_CONVERSION_RATE",
                f"no quote->home rate for {self.instruments.by_index(i).name} in "
                f"{self.instruments.currencies[self.home[a]]}: mark the conversion "
                f"instruments or pass quote_home_rate")
        raise LedgerError("TOO_MANY_LOTS", f"position would hold {x} lots, max_lots={self.max_lots}")

    def apply_fill(self, int account, int instrument, int64_t units, int64_t price,
                   int64_t quote_home_rate=0, int64_t opened_trade_id=0, closed_trade_ids=None, /):
        """Apply one fill to the position; returns the realized P&L in home
        currency (MONEY_SCALE, a multiple of 0.0001), already added to the
        balance. Arguments are positional only (no keywords): Cython parses
        them faster, and this is called on every fill.

        ``quote_home_rate`` (RATE_SCALE) overrides the marked quote->home gain
        and loss factors, e.g. with the broker's factor from the fill; without
        it a reducing fill needs marked prices for the conversion.

        ``opened_trade_id`` (the broker's trade id, > 0; 0 = unknown) tags the
        lot the fill opens, if it opens one. ``closed_trade_ids`` (None, or a
        tuple or list of ints: the broker's ``tradesClosed`` ids, then its
        ``tradeReduced`` id) are the trades the fill closes: their lots close
        first, in that order (each fully, the last partially if the fill runs
        out), the rest of the fill FIFO. Ids that close nothing are counted in
        ``unmatched_trade_ids`` (only when the fill succeeds). Without
        ``closed_trade_ids`` a reducing fill closes lots oldest first, with
        no Python object touched."""
        return self._apply_fill(account, instrument, units, price, quote_home_rate, opened_trade_id, closed_trade_ids)

    cdef object _apply_fill(self, int account, int instrument, int64_t units, int64_t price,
                            int64_t quote_home_rate, int64_t opened_trade_id, object closed_trade_ids):
        """``apply_fill`` (the engine calls it in C on every fill)."""
        cdef int a = account, i = instrument
        self._check_account(a)
        self._check_instrument(i)
        if units == 0 or units > C_MAX_UNITS or units < -C_MAX_UNITS:
            self._refuse(R_UNITS, a, i, units, 0)
        if price <= 0 or price > C_MAX_PRICE:
            self._refuse(R_PRICE, a, i, price, 0)
        if quote_home_rate < 0 or quote_home_rate > C_MAX_RATE:
            self._refuse(R_RATE, a, i, quote_home_rate, 0)
        if opened_trade_id < 0:
            self._refuse(R_TRADE_ID, a, i, opened_trade_id, 0)
        cdef int64_t k = <int64_t>a * self.n_i + i
        cdef LotRing* r = &self.rings[k]
        cdef int64_t p = self.units[k]
        cdef int128 n = <int128>p + units
        cdef int128 cost = self.cost[k]
        cdef int128 realized = 0
        cdef int64_t new_avg, left, take, lu, fg, fl, realized_h = 0, part = 0, miss = 0
        cdef int64_t new_bal, new_rk, new_rt, nu, nv, nm, tu, tv, tm
        cdef uint32_t mask = r.cap - 1, done = 0, nf = 0, f = 0, part_off = 0
        cdef bint opens, named = closed_trade_ids is not None
        cdef Lot* lot
        cdef int cx
        if n > C_MAX_UNITS or n < -C_MAX_UNITS:
            self._refuse(R_POSITION, a, i, p, units)
        if p == 0 or (p > 0) == (units > 0):
            opens = True
            cost += <int128>units * price
            if named:
                miss = _count_ids(closed_trade_ids)   # an opening fill closes nothing
        else:
            if quote_home_rate > 0:
                fg = fl = quote_home_rate
            else:
                cx = self.instruments.quote_ccy[i] * self.n_c + self.home[a]
                if not self.conv_ok[cx]:
                    self._refuse(R_CONVERSION, a, i, 0, 0)
                fg = self.conv_g[cx]
                fl = self.conv_l[cx]
            if named:
                self._close_named(r, closed_trade_ids, units, price, fg, fl, &realized, &cost,
                                  &left, &done, &nf, &f, &part, &part_off, &miss)
            else:
                # close lots oldest first; `done` lots close fully, then `part`
                # units (signed, the lot's side) of the next one
                left = _abs(units)
                while left > 0 and done < r.n:
                    lot = &r.buf[(r.head + done) & mask]
                    lu = lot.units
                    take = _close_lot(lu, lot.price, left, price, fg, fl, &realized, &cost)
                    left -= _abs(take)
                    if take == lu:
                        done += 1
                    else:
                        part = take
            realized_h = narrow(realized, KIND_MONEY)
            opens = left > 0          # a flip: the rest opens the other side
            if opens:
                cost = n * price          # every lot closed: cost is 0 before
        if opens and (r.n - done) + 1 > self.max_lots:
            self._refuse(R_LOTS, a, i, r.n - done + 1, 0)
        if n == 0:
            new_avg = 0
        elif r.n - done + opens == 1 and not named:
            # one lot left: its price, exactly (|cost| / |n| has no remainder)
            new_avg = price if opens else r.buf[(r.head + done) & mask].price
        else:
            # a weighted average of in-range lot prices is in range: no check
            new_avg = <int64_t>div_half_even(cost if cost >= 0 else -cost, n if n >= 0 else -n)
        new_bal = self.balance[a]
        new_rk = self.realized[k]
        new_rt = self.realized_tot[a]
        if realized_h != 0:
            new_bal = narrow(<int128>new_bal + realized_h, KIND_MONEY)
            new_rk = narrow(<int128>new_rk + realized_h, KIND_MONEY)
            new_rt = narrow(<int128>new_rt + realized_h, KIND_MONEY)
        self._value_of(a, i, <int64_t>n, cost, &nu, &nv, &nm)
        tu = narrow(<int128>self.upl_tot[a] - self.upl[k] + nu, KIND_MONEY)
        tv = narrow(<int128>self.value_tot[a] - self.value[k] + nv, KIND_MONEY)
        tm = narrow(<int128>self.margin_tot[a] - self.margin[k] + nm, KIND_MONEY)
        if opens and r.n - done + 1 > r.cap:
            self._grow(r)             # may raise MemoryError: nothing changed yet
        # All checks passed: commit.
        if named:
            self._commit_named(r, done, nf, f, part, part_off)
            self.unmatched_trade_ids += miss
        else:
            if done:
                r.head = (r.head + done) & (r.cap - 1)
                r.n -= done
            if part:
                r.buf[r.head].units -= part
        if opens:
            lot = &r.buf[(r.head + r.n) & (r.cap - 1)]
            lot.units = units if p == 0 or (p > 0) == (units > 0) else <int64_t>n
            lot.price = price
            lot.trade_id = opened_trade_id
            r.n += 1
        if p == 0:
            self.n_open[a] += 1
        elif n == 0:
            self.n_open[a] -= 1
        self.units[k] = <int64_t>n
        self.avg[k] = new_avg
        self.cost[k] = cost
        self.balance[a] = new_bal
        self.realized[k] = new_rk
        self.realized_tot[a] = new_rt
        self.upl[k] = nu
        self.value[k] = nv
        self.margin[k] = nm
        self.upl_tot[a] = tu
        self.value_tot[a] = tv
        self.margin_tot[a] = tm
        self.gen[a] += 1
        return realized_h

    # --- reads ------------------------------------------------------------------------

    def account_state(self, int account):
        cdef int a = account
        self._check_account(a)
        cdef int64_t nav = self.balance[a] + self.upl_tot[a]
        return AccountState(
            self.balance[a], self.upl_tot[a], nav, self.margin_tot[a],
            nav - self.margin_tot[a], self.value_tot[a], self.realized_tot[a],
            nav - self.day_start_nav[a], self.day_start_nav[a], self.n_open[a],
        )

    def position(self, int account, int instrument):
        self._check_account(account)
        self._check_instrument(instrument)
        cdef int64_t k = <int64_t>account * self.n_i + instrument
        return PositionState(self.units[k], self.avg[k], self.upl[k], self.value[k],
                             self.margin[k], self.realized[k])

    def positions(self, int account):
        """{instrument index: PositionState} of the account's open positions."""
        self._check_account(account)
        return {i: self.position(account, i) for i in range(self.n_i)
                if self.units[<int64_t>account * self.n_i + i] != 0}

    def lots(self, int account, int instrument):
        """The position's open lots, oldest first: [(units, price, trade_id), ...]
        (trade_id 0 = unknown)."""
        self._check_account(account)
        self._check_instrument(instrument)
        cdef LotRing* r = &self.rings[<int64_t>account * self.n_i + instrument]
        cdef uint32_t j
        cdef Lot* lot
        out = []
        for j in range(r.n):
            lot = &r.buf[(r.head + j) & (r.cap - 1)]
            out.append((lot.units, lot.price, lot.trade_id))
        return out

    def price(self, int instrument):
        """(bid, ask, mid) or None before the first mark."""
        self._check_instrument(instrument)
        if not self.has_price[instrument]:
            return None
        return (self.bid[instrument], self.ask[instrument], self.mid[instrument])

    def conversion(self, str currency, str home_currency):
        """Current currency->home factor (RATE_SCALE), or None if not available
        (home not used by any account, or its instruments not marked)."""
        cdef int c = self.instruments.currency_index(currency)
        cdef int h = self.instruments.currency_index(home_currency)
        if not self.home_used[h] or not self.conv_ok[c * self.n_c + h]:
            return None
        return self.conv[c * self.n_c + h]

    def pl_factors(self, str currency, str home_currency):
        """(gain, loss) currency->home factors (RATE_SCALE) for P&L, or None."""
        cdef int c = self.instruments.currency_index(currency)
        cdef int h = self.instruments.currency_index(home_currency)
        cdef int x = c * self.n_c + h
        if not self.home_used[h] or not self.conv_ok[x]:
            return None
        return (self.conv_g[x], self.conv_l[x])

    def value_per_unit(self, int instrument, str home_currency):
        """(value per unit, margin per unit) in home currency at RATE_SCALE, or None."""
        self._check_instrument(instrument)
        cdef int h = self.instruments.currency_index(home_currency)
        cdef int x = instrument * self.n_c + h
        if not self.home_used[h] or not self.vpu_ok[x]:
            return None
        return (self.vpu[x], self.mpu[x])
