"""Decimal reference model of fastexec's fixed-point core.

Written independently of the Cython code, in real decimal quantities
(prices like ``Decimal("1.10523")``, money like ``Decimal("12.345678")``), so
each documented rule is stated the way a person would check it by hand:
compute exactly, then round half-even once to the result's scale, then check
the range. Tests compare the core's integers with ``to_raw`` of these values.

Shared with other test suites: import it as ``from tests.reference_model import
...`` (or ``reference_model`` with tests/ on the path).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal

CTX = Context(prec=200, rounding=ROUND_HALF_EVEN, Emax=10**6, Emin=-(10**6))

PRICE_DECIMALS = 9
MONEY_DECIMALS = 6
RATE_DECIMALS = 12
UNITS_DECIMALS = 0

MAX_PRICE = Decimal(10**9)  # in price units
MAX_UNITS = Decimal(10**12)
MAX_MONEY = Decimal(9 * 10**9)
MAX_RATE = Decimal(10**6)

KINDS = {
    "price": (PRICE_DECIMALS, MAX_PRICE),
    "units": (UNITS_DECIMALS, MAX_UNITS),
    "money": (MONEY_DECIMALS, MAX_MONEY),
    "rate": (RATE_DECIMALS, MAX_RATE),
}


class RefError(Exception):
    """What the core must raise; ``code`` mirrors FixedPointError codes."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def to_raw(value: Decimal, kind: str) -> int:
    """Exact decimal -> raw integer at the kind's scale; must already be exact."""
    decimals, _ = KINDS[kind]
    raw = CTX.multiply(value, Decimal(10) ** decimals)
    assert raw == raw.to_integral_value(), (value, kind)
    return int(raw)


def from_raw(raw: int, kind: str) -> Decimal:
    decimals, _ = KINDS[kind]
    return CTX.divide(Decimal(raw), Decimal(10) ** decimals)


def round_to_kind(value: Decimal, kind: str) -> Decimal:
    """Round half-even to the kind's scale, then check its range."""
    decimals, limit = KINDS[kind]
    q = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN, context=CTX)
    if abs(q) > limit:
        raise RefError("OUT_OF_RANGE")
    return q


def check_range(value: Decimal, kind: str) -> Decimal:
    if abs(value) > KINDS[kind][1]:
        raise RefError("OUT_OF_RANGE")
    return value


# --- text ---------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def parse(text: str, kind: str, allowed: int | None = None) -> int:
    """Exact parse: syntax, then precision (non-zero digits beyond `allowed`),
    then range."""
    decimals, _ = KINDS[kind]
    if allowed is None:
        allowed = decimals
    if not (1 <= len(text) <= 64) or not _NUMBER.fullmatch(text) or not text.isascii():
        raise RefError("INVALID_NUMBER")
    value = Decimal(text)
    if value != value.quantize(Decimal(1).scaleb(-allowed), context=CTX):
        raise RefError("PRECISION_EXCEEDED")
    check_range(value, kind)
    return to_raw(value, kind)


def format_price(raw: int, precision: int) -> str:
    value = from_raw(raw, "price")
    check_range(value, "price")
    q = value.quantize(Decimal(1).scaleb(-precision), context=CTX)
    if q != value:
        raise RefError("PRECISION_EXCEEDED")
    return _plain(q, precision)


def format_money(raw: int, places: int = 4) -> str:
    value = check_range(from_raw(raw, "money"), "money")
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=CTX)
    return _plain(q, places)


def format_rate(raw: int) -> str:
    value = check_range(from_raw(raw, "rate"), "rate")
    s = _plain(value, RATE_DECIMALS)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _plain(value: Decimal, places: int) -> str:
    s = f"{value:.{places}f}"
    if s.startswith("-") and Decimal(s) == 0:
        s = s[1:]
    return s


# --- arithmetic (inputs and results as raw ints) ------------------------------

def notional(units: int, price: int) -> int:
    v = CTX.multiply(Decimal(abs(units)), from_raw(price, "price"))
    return to_raw(round_to_kind(v, "money"), "money")


def pnl(units: int, open_price: int, close_price: int) -> int:
    diff = from_raw(close_price, "price") - from_raw(open_price, "price")
    return to_raw(round_to_kind(CTX.multiply(Decimal(units), diff), "money"), "money")


def convert(money: int, rate: int) -> int:
    v = CTX.multiply(from_raw(money, "money"), from_raw(rate, "rate"))
    return to_raw(round_to_kind(v, "money"), "money")


def mul_price(money: int, price: int) -> int:
    v = CTX.multiply(from_raw(money, "money"), from_raw(price, "price"))
    return to_raw(round_to_kind(v, "money"), "money")


def div_price(money: int, price: int) -> int:
    v = CTX.divide(from_raw(money, "money"), from_raw(price, "price"))
    return to_raw(round_to_kind(v, "money"), "money")


def round_half_even(n: int, d: int) -> int:
    return int(CTX.divide(Decimal(n), Decimal(d)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=CTX))


# --- ledger: positions, conversion, margin, NAV -----------------------------------

def _q(value: Decimal, decimals: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN, context=CTX)


def _price_q(v: Decimal) -> Decimal:
    return _q(v, PRICE_DECIMALS)


def _money_q(v: Decimal) -> Decimal:
    return round_to_kind(v, "money")


def _rate_q(v: Decimal) -> Decimal:
    return round_to_kind(v, "rate")


BOOK_DECIMALS = 4  # the broker books and reports P&L at 4 decimals (OANDA, the venue)


def _book_q(v: Decimal) -> Decimal:
    """P&L in home currency: half-even once to 4 decimals, then the money range."""
    q = _q(v, BOOK_DECIMALS)
    return check_range(q, "money")


@dataclass
class RefInstrument:
    name: str
    margin_rate: Decimal  # real, e.g. Decimal("0.02")

    @property
    def base(self) -> str:
        return self.name.split("_")[0]

    @property
    def quote(self) -> str:
        return self.name.split("_")[1]


@dataclass
class RefPosition:
    """A netting position as lots: [[units, price, trade_id], ...], oldest
    first, every lot on the position's side (v20 trades of a non-hedging
    account); trade_id the broker's trade id, 0 when unknown."""
    lots: list = field(default_factory=list)
    realized: Decimal = Decimal(0)

    @property
    def units(self) -> int:
        return sum(lot[0] for lot in self.lots)

    @property
    def cost(self) -> Decimal:
        return sum((lot[0] * lot[1] for lot in self.lots), Decimal(0))

    @property
    def avg(self) -> Decimal:
        """Weighted average of the open lots, half-even at PRICE_SCALE; 0 flat."""
        u = self.units
        return Decimal(0) if u == 0 else _price_q(CTX.divide(abs(self.cost), Decimal(abs(u))))


@dataclass
class RefAccount:
    home: str
    balance: Decimal
    day_start_nav: Decimal
    positions: dict = field(default_factory=dict)


class RefLedger:
    """The positions rules of fastexec._core.positions, in real decimals.

    Values are recomputed from scratch whenever asked, so the model has no
    incremental bookkeeping to get wrong; the core updates incrementally and
    must agree with it after every step.
    """

    def __init__(self, instruments, max_lots=None):
        self.max_lots = max_lots  # lots per position; None: unbounded
        self.instruments = list(instruments)
        self.by_name = {i.name: i for i in self.instruments}
        self.prices = {}  # name -> (bid, ask, mid) as Decimal
        self.accounts = []
        self.unmatched_trade_ids = 0  # named trade ids that closed no lot (successful fills)

    # setup
    def add_account(self, home: str, balance: Decimal) -> int:
        self.accounts.append(RefAccount(home, balance, balance))
        return len(self.accounts) - 1

    def mark(self, name: str, bid: Decimal, ask: Decimal) -> None:
        """All or nothing: a mark that would push any value out of its range is
        refused (RefError OUT_OF_RANGE) and leaves the old price."""
        old = self.prices.get(name)
        self.prices[name] = (bid, ask, _price_q((bid + ask) / 2))
        try:
            self.check_ranges()
        except RefError:
            if old is None:
                del self.prices[name]
            else:
                self.prices[name] = old
            raise

    def check_ranges(self) -> None:
        """Raise RefError(OUT_OF_RANGE) if any stored quantity leaves its range:
        factors and per-unit values of the homes in use, each position's
        values, and each account's totals."""
        for h in {acct.home for acct in self.accounts}:
            for inst in self.instruments:
                self.conversion(inst.quote, h)
                self.per_unit(inst.name, h)
        for a in range(len(self.accounts)):
            st = self.account_state(a)
            for key in ("balance", "unrealized_pl", "margin_used", "position_value", "realized_pl"):
                check_range(st[key], "money")
            for pos in self.accounts[a].positions.values():
                check_range(pos.realized, "money")

    def _mid(self, base: str, quote: str):
        name = f"{base}_{quote}"
        if name in self.by_name:
            return self.prices[name][2] if name in self.prices else None
        return None

    def _pair(self, base: str, quote: str) -> bool:
        return f"{base}_{quote}" in self.by_name

    def conversion(self, c: str, h: str, side: str = "mid"):
        """Factor c -> h, one half-even rounding at RATE_SCALE; None if unknown.

        ``side``: "mid" (margin, value) uses mids; "gain" converts a profit,
        selling c: the bid of a direct leg, 1/ask of an inverse one; "loss"
        converts a loss, buying c: the ask of a direct leg, 1/bid of an
        inverse one (REFERENCE.md 9.4, as the simulated venue does)."""
        if c == h:
            return Decimal(1)
        legs = None
        if self._pair(c, h):
            legs = [(c, h, False)]
        elif self._pair(h, c):
            legs = [(h, c, True)]
        elif c != "USD" and h != "USD":
            l1 = (c, "USD", False) if self._pair(c, "USD") else (
                ("USD", c, True) if self._pair("USD", c) else None)
            l2 = ("USD", h, False) if self._pair("USD", h) else (
                (h, "USD", True) if self._pair(h, "USD") else None)
            if l1 and l2:
                legs = [l1, l2]
        if legs is None:
            return None
        f = Decimal(1)
        for base, quote, inverse in legs:
            m = self._mid(base, quote)
            if m is None:
                return None
            if side != "mid":
                bid, ask, _ = self.prices[f"{base}_{quote}"]
                m = (ask if inverse else bid) if side == "gain" else (bid if inverse else ask)
            f = CTX.divide(f, m) if inverse else CTX.multiply(f, m)
        return _rate_q(f)

    def pl_home(self, q: Decimal, c: str, h: str, quote_home=None) -> Decimal:
        """P&L q in currency c -> home h: gain factor if q >= 0 else loss
        factor (or ``quote_home`` for both), half-even once to 4 decimals."""
        f = quote_home if quote_home is not None else self.conversion(c, h, "gain" if q >= 0 else "loss")
        if f is None:
            raise RefError("NO_CONVERSION_RATE")
        return _book_q(CTX.multiply(q, f))

    def per_unit(self, name: str, home: str):
        inst = self.by_name[name]
        f = self.conversion(inst.quote, home)
        if name not in self.prices or f is None:
            return None
        vpu = _rate_q(CTX.multiply(self.prices[name][2], f))
        mpu = _rate_q(CTX.multiply(vpu, inst.margin_rate))
        return vpu, mpu

    # steps
    def apply_fill(self, a: int, name: str, units: int, price: Decimal, quote_home=None,
                   opened_trade_id: int = 0, closed_trade_ids=None) -> Decimal:
        """A fill on the position's side (or on a flat one) opens a lot tagged
        ``opened_trade_id``. An opposite fill closes lots in this order: first
        the lots named in ``closed_trade_ids`` (the broker's trades closed,
        then the one reduced), in the order named, then every other lot
        oldest first (FIFO); each lot closes fully, the last one reached
        partially, each realizing ``closed * (price - lot price)`` converted
        and rounded on its own; the rest of the fill, if any, opens a lot on
        the other side. A named id that closes nothing (no open lot has it,
        named again, the fill used up before it, or an opening fill) is
        counted in ``unmatched_trade_ids``."""
        if opened_trade_id < 0:
            raise RefError("INVALID_TRADE_ID")
        acct = self.accounts[a]
        pos = acct.positions.setdefault(name, RefPosition())
        p, n = pos.units, pos.units + units
        if abs(n) > MAX_UNITS:
            raise RefError("POSITION_TOO_LARGE")
        quote = self.by_name[name].quote
        reducing = p != 0 and (p > 0) != (units > 0)
        if quote_home is None and reducing and self.conversion(quote, acct.home) is None:
            raise RefError("NO_CONVERSION_RATE")
        named = list(closed_trade_ids or ())
        lots = [list(lot) for lot in pos.lots]
        realized = Decimal(0)
        left = abs(units)
        missed = len(named)
        if reducing:
            # each named id picks the open lot with that id, if any and not picked already
            picks = []
            for tid in named:
                picks.append(next((lot for lot in lots if tid > 0 and lot[2] == tid
                                   and all(lot is not q for q in picks)), None))
            order = [lot for lot in picks if lot is not None]
            order += [lot for lot in lots if all(lot is not q for q in order)]  # FIFO for the rest
            taken = {}
            for lot in order:
                if not left:
                    break
                take = min(abs(lot[0]), left)
                cu = take if lot[0] > 0 else -take
                realized += self.pl_home(CTX.multiply(Decimal(cu), price - lot[1]), quote, acct.home, quote_home)
                left -= take
                lot[0] -= cu
                taken[id(lot)] = take
            missed = sum(1 for lot in picks if lot is None or id(lot) not in taken)
            lots = [lot for lot in lots if lot[0] != 0]
        check_range(realized, "money")
        if left:
            if self.max_lots is not None and len(lots) + 1 > self.max_lots:
                raise RefError("TOO_MANY_LOTS")
            lots.append([left if units > 0 else -left, price, opened_trade_id])
        old = (pos.lots, pos.realized, acct.balance)
        pos.lots = lots
        pos.realized += realized
        acct.balance += realized
        try:
            self.check_ranges()
        except RefError:
            pos.lots, pos.realized, acct.balance = old
            raise
        self.unmatched_trade_ids += missed
        return realized

    def deposit(self, a: int, amount: Decimal) -> None:
        self.accounts[a].balance += amount
        self.accounts[a].day_start_nav += amount

    def start_trading_day(self, a: int) -> None:
        self.accounts[a].day_start_nav = self.account_state(a)["nav"]

    # reads
    def position(self, a: int, name: str) -> dict:
        acct = self.accounts[a]
        pos = acct.positions.get(name, RefPosition())
        out = dict(units=pos.units, average_price=pos.avg, unrealized_pl=Decimal(0),
                   position_value=Decimal(0), margin_used=Decimal(0), realized_pl=pos.realized)
        pu = self.per_unit(name, acct.home)
        if pos.units != 0 and pu is not None:
            bid, ask, _ = self.prices[name]
            close = bid if pos.units > 0 else ask
            # on the net position, from the exact lot cost (no walk needed)
            q = pos.units * close - pos.cost
            out["unrealized_pl"] = self.pl_home(q, self.by_name[name].quote, acct.home)
            out["position_value"] = _money_q(abs(pos.units) * pu[0])
            out["margin_used"] = _money_q(abs(pos.units) * pu[1])
        return out

    def account_state(self, a: int) -> dict:
        acct = self.accounts[a]
        ps = [self.position(a, n) for n in acct.positions]
        upl = sum((p["unrealized_pl"] for p in ps), Decimal(0))
        margin = sum((p["margin_used"] for p in ps), Decimal(0))
        value = sum((p["position_value"] for p in ps), Decimal(0))
        realized = sum((p["realized_pl"] for p in ps), Decimal(0))
        nav = acct.balance + upl
        return dict(balance=acct.balance, unrealized_pl=upl, nav=nav, margin_used=margin,
                    margin_available=nav - margin, position_value=value, realized_pl=realized,
                    daily_pl=nav - acct.day_start_nav, day_start_nav=acct.day_start_nav,
                    open_positions=sum(1 for p in ps if p["units"] != 0))


def units_value(units: int, per_unit: int) -> int:
    """|units| * per-unit value (a rate), half-even at MONEY_SCALE."""
    if per_unit < 0:
        raise RefError("OUT_OF_RANGE")
    v = CTX.multiply(Decimal(abs(units)), from_raw(per_unit, "rate"))
    return to_raw(round_to_kind(v, "money"), "money")
