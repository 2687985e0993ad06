"""The risk kernel's cached fast path (per-account rooms derived at the last
ledger or limit change, split per-unit values, upper bounds) decides exactly
like a fresh computation: after random marks, fills, deposits, charges, new
trading days, limit changes, working orders (resting, emulated, partly
filled, cancelled) and trading-state changes, every order gets the same code
from ``check`` (cached), ``_check_exact`` (nothing cached, int128),
``check_batch`` and a Decimal model of the documented checks built on
tests/reference_model.py. Limits are drawn at, and one raw unit either side
of, the boundary of the order about to be checked, where a wrong bound or
rounding would show."""
import array
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

import reference_model as ref
from fastexec._core.fixedpoint import FixedPointError, parse_money, parse_price, units_value
from fastexec._core.instruments import load_instruments
from fastexec._core.orders import OrderEvent, OrderState, OrderStore
from fastexec._core.positions import Ledger, LedgerError
from fastexec._core.risk import RiskCode, RiskEngine, TradingState

TABLE = load_instruments()
REF_INSTRUMENTS = [ref.RefInstrument(it.name, Decimal(it.to_v20()["marginRate"])) for it in TABLE]
LEVELS = {"EUR_USD": "1.10000", "USD_JPY": "150.000", "EUR_GBP": "0.86000", "GBP_USD": "1.27000",
          "XAU_USD": "2000.000", "EUR_JPY": "163.000", "AUD_USD": "0.66000"}
NAMES = list(LEVELS)
HOMES = ["USD", "EUR", "JPY"]
S = 10**12


def P(text, name):
    return parse_price(text, TABLE[name].display_precision)


def dprice(raw):
    return ref.from_raw(raw, "price")


def dmoney(raw):
    return ref.from_raw(raw, "money")


def drate(raw):
    return ref.from_raw(raw, "rate")


class Book:
    """The working orders, kept apart from the OrderStore: (account, name) ->
    list of [units, filled, live]."""

    def __init__(self):
        self.orders = {}

    def pending(self, a, name, side):
        """Units still to fill of the live orders on ``side`` (+1 buy, -1 sell), >= 0."""
        return sum(abs(u - f) for u, f, live in self.orders.get((a, name), ()) if live and (u > 0) == (side > 0))


def ref_decision(R, a, name, u, lim, book=None, state=TradingState.ACTIVE):
    """Checks 4, 6, 7, 8, 10-13 of risk.pyx's list, in order, in Decimal (the
    others are not exercised here: no count limits, no rate limit)."""
    inst = TABLE[name]
    au = abs(u)
    if u == 0 or au > ref.MAX_UNITS or au < inst.minimum_trade_size:
        return RiskCode.INVALID_UNITS
    if au > min(inst.maximum_order_units, lim.get("max_units_per_order") or 10**18):
        return RiskCode.MAX_UNITS_PER_ORDER
    acct = R.accounts[a]
    p = acct.positions.get(name, ref.RefPosition()).units
    # W: what the working orders on the order's side still have to fill
    w = book.pending(a, name, u) if book is not None else 0
    reduces = p != 0 and (u > 0) != (p > 0) and au + w <= abs(p)  # together they cannot flip it
    if state == TradingState.REDUCING and not reduces:
        return RiskCode.REDUCE_ONLY_VIOLATION
    if reduces:
        return RiskCode.OK  # reduces: no exposure checks
    worst_before = p + w if u > 0 else p - w  # every working order on the order's side filled
    worst = abs(worst_before + u)
    if lim.get("max_position_size") is not None and worst > abs(worst_before) and worst > lim["max_position_size"]:
        return RiskCode.MAX_POSITION_SIZE
    after = abs(p + u)  # money checks: on the filled position
    st_ = R.account_state(a)
    nav = st_["nav"]
    if lim.get("max_daily_loss") is not None and st_["daily_pl"] <= -dmoney(lim["max_daily_loss"]):
        return RiskCode.MAX_DAILY_LOSS
    pu = R.per_unit(name, acct.home)
    if pu is None:
        return RiskCode.PRICE_UNAVAILABLE
    pos = R.position(a, name)
    v_after = (after * pu[0]).quantize(Decimal("0.000001"), rounding="ROUND_HALF_EVEN", context=ref.CTX)
    if v_after > pos["position_value"] and lim.get("max_leverage") is not None:
        gross = st_["position_value"] - pos["position_value"] + v_after
        if gross > drate(lim["max_leverage"]) * nav:
            return RiskCode.MAX_LEVERAGE
    m_after = (after * pu[1]).quantize(Decimal("0.000001"), rounding="ROUND_HALF_EVEN", context=ref.CTX)
    if m_after > pos["margin_used"]:
        used = st_["margin_used"] - pos["margin_used"] + m_after
        if nav - used < drate(lim.get("required_margin_ratio") or 0) * nav:
            return RiskCode.INSUFFICIENT_MARGIN
        opening = after if p == 0 or (u > 0) != (p > 0) else au
        m_open = (opening * pu[1]).quantize(Decimal("0.000001"), rounding="ROUND_HALF_EVEN", context=ref.CTX)
        if m_open > nav - st_["margin_used"]:
            return RiskCode.INSUFFICIENT_MARGIN
    return RiskCode.OK


def boundary_limits(L, O, a, i, u, draw):
    """Limits of account a set at (or one raw unit off) the boundary of order u."""
    st_ = L.account_state(a)
    pos = L.position(a, i)
    after = abs(pos.units + u)
    buy, sell = O.pending_units(a, i)
    worst = abs(pos.units + (buy if u > 0 else -sell) + u)
    pu = L.value_per_unit(i, L.home_currency(a))
    lim = {}
    nav = st_.nav
    delta = draw(st.sampled_from([-1, 0, 1]))
    which = draw(st.sampled_from(["leverage", "margin", "daily", "position", "all", "random"]))
    try:
        v_after = units_value(after, pu[0]) if pu is not None else None
        m_after = units_value(after, pu[1]) if pu is not None else None
    except FixedPointError:  # past MAX_MONEY: no boundary to draw at
        v_after = None
    if v_after is not None and nav > 0:
        gross = st_.position_value - pos.position_value + v_after
        avail_after = nav - (st_.margin_used - pos.margin_used + m_after)
        if which in ("leverage", "all"):
            lim["max_leverage"] = max(0, min(10**18, gross * S // nav + delta))
        if which in ("margin", "all"):
            lim["required_margin_ratio"] = max(0, min(10**18, avail_after * S // nav + delta))
    if which in ("daily", "all"):
        lim["max_daily_loss"] = max(0, min(9 * 10**15, -st_.daily_pl + delta))
    if which in ("position", "all"):
        lim["max_position_size"] = max(0, min(10**12, worst + delta))
    if which == "random":
        lim["max_leverage"] = draw(st.sampled_from([None, 10**12, 20 * 10**12, 50 * 10**12]))
        lim["required_margin_ratio"] = draw(st.sampled_from([None, 10**11, 5 * 10**11]))
        lim["max_daily_loss"] = draw(st.sampled_from([None, parse_money("100"), parse_money("5000")]))
    return lim


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_cached_fast_path_decides_like_exact_path_batch_and_decimal_model(data):
    draw = data.draw
    L = Ledger(TABLE, 4)
    O = OrderStore(4, len(TABLE))
    K = RiskEngine(L, O)
    R = ref.RefLedger(REF_INSTRUMENTS)
    homes = draw(st.lists(st.sampled_from(HOMES), min_size=2, max_size=2))
    for n, h in enumerate(homes):
        bal = draw(st.sampled_from(["1000", "100000", "5000000"]))
        L.add_account(f"a{n}", h, parse_money(bal))
        R.add_account(h, Decimal(bal))
    limits = [{}, {}]
    book = Book()
    states = [TradingState.ACTIVE, TradingState.ACTIVE]
    n_orders = 0
    marked = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1))
    for name in marked:
        mid = P(LEVELS[name], name)
        L.mark(TABLE.index(name), mid, mid + TABLE[name].price_tick)
        R.mark(name, dprice(mid), dprice(mid + TABLE[name].price_tick))
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["mark", "fill", "fill", "deposit", "charge", "day", "limits", "limits",
                                     "order", "order", "state"]))
        a = draw(st.integers(0, 1))
        name = draw(st.sampled_from(NAMES))
        live = sorted(k for k, recs in book.orders.items() if any(r[2] for r in recs))
        if live and draw(st.booleans()):  # where working orders are, their counting shows
            a, name = draw(st.sampled_from(live))
        i = TABLE.index(name)
        tick = TABLE[name].price_tick
        px = draw(st.integers(P(LEVELS[name], name) // tick * 9 // 10,
                              P(LEVELS[name], name) // tick * 11 // 10)) * tick
        if kind == "mark":
            ask = px + draw(st.integers(0, 20)) * tick
            try:
                L.mark(i, px, ask)
                got = None
            except (LedgerError, FixedPointError) as e:
                got = e.code
            try:
                R.mark(name, dprice(px), dprice(ask))
                want = None
            except ref.RefError as e:
                want = e.code
            assert got == want
        elif kind == "fill":
            units = draw(st.integers(1, 3_000_000)) * draw(st.sampled_from([1, -1]))
            try:
                got = L.apply_fill(a, i, units, px)
            except (LedgerError, FixedPointError) as e:
                got = e.code
            try:
                want = ref.to_raw(R.apply_fill(a, name, units, dprice(px)), "money")
            except ref.RefError as e:
                want = e.code
            assert got == want
        elif kind in ("deposit", "charge"):
            amount = draw(st.integers(-10**11, 10**11))
            if kind == "deposit":
                L.deposit(a, amount)
                R.deposit(a, dmoney(amount))
            else:
                L.apply_charge(a, amount)
                R.accounts[a].balance += dmoney(amount)
        elif kind == "day":
            L.start_trading_day(a)
            R.start_trading_day(a)
        elif kind == "order":
            # a working order: resting, emulated, partly filled, or gone (cancelled, filled)
            units = draw(st.integers(1, 3_000_000)) * draw(st.sampled_from([1, -1]))
            oid = f"o{n_orders}"
            n_orders += 1
            O.add(oid, a, i, units, emulated=draw(st.booleans()))
            rec = [units, 0, True]
            book.orders.setdefault((a, name), []).append(rec)
            then = draw(st.sampled_from(["rest", "rest", "partial", "cancel", "partial_cancel", "fill"]))
            if then != "rest" and O.state_of(oid) == OrderState.EMULATED:
                O.apply(oid, OrderEvent.TRIGGER)
                O.apply(oid, OrderEvent.SUBMIT)
            if then in ("partial", "partial_cancel") and abs(units) > 1:
                part = draw(st.integers(1, abs(units) - 1)) * (1 if units > 0 else -1)
                O.fill(oid, part)
                rec[1] = part
            if then in ("cancel", "partial_cancel"):
                O.apply(oid, OrderEvent.CANCEL)
                rec[2] = False
            elif then == "fill":
                O.fill(oid, units - rec[1])
                rec[1], rec[2] = units, False
        elif kind == "state":
            states[a] = draw(st.sampled_from([TradingState.ACTIVE, TradingState.REDUCING]))
            K.set_trading_state(a, states[a])
        else:
            u = draw(st.integers(-3_000_000, 3_000_000))
            sides = [r[0] > 0 for r in book.orders.get((a, name), ()) if r[2]]
            if sides and u != 0 and draw(st.booleans()):  # on the side of a working order
                u = abs(u) if draw(st.sampled_from(sides)) else -abs(u)
            limits[a] = boundary_limits(L, O, a, i, u, draw)
            K.set_limits(a, max_leverage=None, required_margin_ratio=None, max_daily_loss=None,
                         max_position_size=None)
            K.set_limits(a, **limits[a])
        # then a few orders, the first one the order the boundary was drawn for
        orders = draw(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(NAMES),
                                         st.integers(-3_000_000, 3_000_000)), min_size=1, max_size=6))
        if kind == "limits":
            orders.insert(0, (a, name, u))
        # an order at the edge of reducing: against the position, by what the
        # working orders on its side leave of it (-1, 0, +1 unit)
        p = L.position(a, i).units
        if p != 0:
            w = book.pending(a, name, -p)
            e = abs(p) - w + draw(st.sampled_from([-1, 0, 1]))
            if e > 0:
                orders.insert(0, (a, name, e if p < 0 else -e))
        codes = []
        for oa, oname, ou in orders:
            oi = TABLE.index(oname)
            cached = K.check(oa, oi, ou, 0, consume=False)
            exact = K._check_exact(oa, oi, ou, 0)
            detail = K.check_detail(oa, oi, ou, 0, consume=False)
            want = ref_decision(R, oa, oname, ou, limits[oa], book, states[oa])
            event(want.name)
            assert cached == exact[0] == detail[0] == want, (oa, oname, ou, limits[oa])
            assert detail == exact
            codes.append(cached)
        out = array.array("i", [0] * len(orders))
        K.check_batch(array.array("i", [o[0] for o in orders]),
                      array.array("i", [TABLE.index(o[1]) for o in orders]),
                      array.array("q", [o[2] for o in orders]), 0, out)
        assert list(out) == codes


def test_cache_follows_every_ledger_change_without_a_new_check_in_between():
    """Each way an account's numbers change (mark, fill, deposit, charge, new
    day) flips a decision that was cached just before it."""
    L = Ledger(TABLE, 2)
    K = RiskEngine(L, OrderStore(2, len(TABLE)))
    eu = TABLE.index("EUR_USD")
    a = L.add_account("a", "USD", parse_money("10000"))
    L.mark(eu, P("1.10000", "EUR_USD"), P("1.10000", "EUR_USD"))
    K.set_limits(a, max_leverage=10 * S)          # 10,000 NAV -> 100,000 gross
    n = 100_000 * 10**6 // 1_100_000              # 90,909 units = 99,999.9 USD
    assert K.check(a, eu, n, 0) == 0
    assert K.check(a, eu, n + 1, 0) == RiskCode.MAX_LEVERAGE
    L.deposit(a, parse_money("1"))
    assert K.check(a, eu, n + 1, 0) == 0
    L.apply_charge(a, -parse_money("1"))
    assert K.check(a, eu, n + 1, 0) == RiskCode.MAX_LEVERAGE
    L.apply_fill(a, eu, 1000, P("1.10000", "EUR_USD"))
    assert K.check(a, eu, n - 1000, 0) == 0
    assert K.check(a, eu, n - 999, 0) == RiskCode.MAX_LEVERAGE
    L.mark(eu, P("1.20000", "EUR_USD"), P("1.20000", "EUR_USD"))  # +100 USD, dearer units
    assert K.check(a, eu, n - 1000, 0) == RiskCode.MAX_LEVERAGE
    K.set_limits(a, max_leverage=None, max_daily_loss=parse_money("50"))
    L.mark(eu, P("1.10000", "EUR_USD"), P("1.10000", "EUR_USD"))  # back: daily P&L 0
    assert K.check(a, eu, 1, 0) == 0
    L.apply_charge(a, -parse_money("51"))
    assert K.check(a, eu, 1, 0) == RiskCode.MAX_DAILY_LOSS
    L.start_trading_day(a)
    assert K.check(a, eu, 1, 0) == 0
