"""Pure-Python ``Decimal`` implementation of fastexec's risk check and P&L
update: the same-run reference for the core benchmarks.

Why it exists: "the compiled core is fast" means nothing without a yardstick.
This is what a careful Python engine without a compiled core would run for the
same decisions: the 14 ordered checks of ``fastexec._core.risk`` and the
netting, average-price, realized/unrealized P&L, conversion and margin rules
of ``fastexec._core.positions``, on ``Decimal`` values with the same
half-even rounding at the same points, kept incrementally (per-position
values updated on fill and mark, account totals kept as running sums), as a
production engine would. It is written plainly, neither slowed down nor
micro-tuned; ``tests/bench/test_decimal_reference.py`` checks that it makes
the same decisions and the same numbers as the core, so the two benchmarks
measure the same work.

Units are ints; prices, money and rates are ``Decimal`` in real units
("1.10523", not 1105230000). Accounts and instruments are addressed the way
the core's Python API addresses them (account index, instrument index).
"""
from __future__ import annotations

from collections import deque
from decimal import ROUND_HALF_EVEN, Context, Decimal

CTX = Context(prec=60, rounding=ROUND_HALF_EVEN)
PRICE_Q = Decimal("1e-9")
MONEY_Q = Decimal("1e-6")
RATE_Q = Decimal("1e-12")
BOOK_Q = Decimal("1e-4")  # P&L is booked at the broker's 4 decimals
MAX_UNITS = 10 ** 12
ZERO = Decimal(0)
ONE = Decimal(1)
NANO = 1_000_000_000

OK = "OK"


def q_price(v: Decimal) -> Decimal:
    return v.quantize(PRICE_Q, context=CTX)


def q_money(v: Decimal) -> Decimal:
    return v.quantize(MONEY_Q, context=CTX)


def q_rate(v: Decimal) -> Decimal:
    return v.quantize(RATE_Q, context=CTX)


def q_book(v: Decimal) -> Decimal:
    return v.quantize(BOOK_Q, context=CTX)


class Instrument:
    __slots__ = ("index", "name", "base", "quote", "min_size", "max_units", "margin_rate", "tick")

    def __init__(self, index, name, base, quote, min_size, max_units, margin_rate, precision):
        self.index = index
        self.name = name
        self.base = base
        self.quote = quote
        self.min_size = min_size
        self.max_units = max_units
        self.margin_rate = margin_rate
        self.tick = Decimal(1).scaleb(-precision)

    @classmethod
    def from_core(cls, inst) -> "Instrument":
        """From a ``fastexec._core.instruments.Instrument`` (rate at RATE_SCALE)."""
        return cls(inst.index, inst.name, inst.base, inst.quote, inst.minimum_trade_size,
                   inst.maximum_order_units, Decimal(inst.margin_rate).scaleb(-12), inst.display_precision)


class Position:
    __slots__ = ("units", "avg", "cost", "lots", "realized", "upl", "value", "margin")

    def __init__(self):
        self.units = 0
        self.avg = ZERO
        self.cost = ZERO      # sum of lot units * lot price
        self.lots = deque()   # [units, price, trade id (0 = unknown)], oldest first
        self.realized = ZERO
        self.upl = ZERO
        self.value = ZERO
        self.margin = ZERO


class Account:
    __slots__ = ("home", "balance", "day_start_nav", "positions", "upl", "value", "margin",
                 "realized", "working", "pending", "state", "allowed", "limits", "tokens", "last_ns")

    def __init__(self, home: str, balance: Decimal, instruments):
        self.home = home
        self.balance = balance
        self.day_start_nav = balance
        self.positions = {}  # instrument index -> Position
        self.upl = ZERO
        self.value = ZERO
        self.margin = ZERO
        self.realized = ZERO
        self.working = {}  # instrument index -> working order count
        self.pending = {}  # instrument index -> [buy, sell]: units still to fill of working orders (>= 0)
        self.state = "ACTIVE"
        self.allowed = {i.index for i in instruments}
        self.limits = {"max_units_per_order": None, "max_position_size": None,
                       "max_positions_per_instrument": None, "max_leverage": None,
                       "required_margin_ratio": None, "max_daily_loss": None,
                       "orders_per_second": None, "burst": None}
        self.tokens = 0
        self.last_ns = 0


class DecimalLedger:
    """Positions, P&L, conversion and margin, the rules of ``_core.positions``."""

    def __init__(self, instruments):
        self.instruments = [Instrument.from_core(i) if not isinstance(i, Instrument) else i
                            for i in instruments]
        self.pairs = {(i.base, i.quote): i.index for i in self.instruments}
        self.prices = {}  # instrument index -> (bid, ask, mid)
        self.accounts: list[Account] = []
        self.unmatched_trade_ids = 0  # named trade ids that closed no lot

    def add_account(self, home: str, balance: Decimal) -> int:
        self.accounts.append(Account(home, balance, self.instruments))
        return len(self.accounts) - 1

    # --- conversion --------------------------------------------------------

    def _leg(self, base, quote):
        j = self.pairs.get((base, quote))
        if j is not None:
            return j, False
        j = self.pairs.get((quote, base))
        if j is not None:
            return j, True
        return None

    def conversion(self, c: str, h: str, side: int = 2):
        """c -> h factor, legs combined exactly, one rounding; None if unknown.
        side 2: mids; 0: gain (bid of a direct leg, ask of an inverse one);
        1: loss (the other sides)."""
        if c == h:
            return ONE
        if (c, h) in self.pairs or (h, c) in self.pairs:
            legs = [self._leg(c, h)]
        elif c != "USD" and h != "USD":
            l1, l2 = self._leg(c, "USD"), self._leg("USD", h)
            if l1 is None or l2 is None:
                return None
            legs = [l1, l2]
        else:
            return None
        num, den = ONE, ONE
        for j, inverse in legs:
            px = self.prices.get(j)
            if px is None:
                return None
            m = px[2] if side == 2 else px[0 if inverse == bool(side) else 1]
            if inverse:
                den = CTX.multiply(den, m)
            else:
                num = CTX.multiply(num, m)
        if den == ONE:
            return q_rate(num)
        return q_rate(CTX.divide(num, den))

    def per_unit(self, i: int, home: str):
        """(value per unit, margin per unit) in home currency, or None."""
        px = self.prices.get(i)
        inst = self.instruments[i]
        f = self.conversion(inst.quote, home)
        if px is None or f is None:
            return None
        vpu = q_rate(CTX.multiply(px[2], f))
        return vpu, q_rate(CTX.multiply(vpu, inst.margin_rate))

    # --- P&L update ------------------------------------------------------------

    def _revalue(self, acct: Account, i: int, pos: Position) -> None:
        upl = value = margin = ZERO
        u = pos.units
        if u != 0:
            pu = self.per_unit(i, acct.home)
            if pu is not None:
                bid, ask, _ = self.prices[i]
                close = bid if u > 0 else ask
                q = CTX.multiply(u, close) - pos.cost
                f = self.conversion(self.instruments[i].quote, acct.home, 0 if q >= 0 else 1)
                upl = q_book(CTX.multiply(q, f))
                value = q_money(CTX.multiply(abs(u), pu[0]))
                margin = q_money(CTX.multiply(abs(u), pu[1]))
        acct.upl += upl - pos.upl
        acct.value += value - pos.value
        acct.margin += margin - pos.margin
        pos.upl, pos.value, pos.margin = upl, value, margin

    def mark(self, i: int, bid: Decimal, ask: Decimal) -> None:
        """New bid/ask: revalue every open position (conversions may go through it)."""
        inst = self.instruments[i]
        if bid <= 0 or ask < bid:
            raise ValueError(f"INVALID_PRICE: bid={bid} ask={ask}")
        if bid % inst.tick or ask % inst.tick:
            raise ValueError(f"INVALID_PRICE: bid={bid} ask={ask} not multiples of {inst.tick}")
        self.prices[i] = (bid, ask, q_price((bid + ask) / 2))
        for acct in self.accounts:
            for j, pos in acct.positions.items():
                if pos.units != 0:
                    self._revalue(acct, j, pos)

    def apply_fill(self, a: int, i: int, units: int, price: Decimal, quote_home: Decimal | None = None,
                   opened_trade_id: int = 0, closed_trade_ids=None) -> Decimal:
        """One fill on the netting position; returns realized P&L (home), added to the balance.

        A reducing fill closes the lots named in ``closed_trade_ids`` (the
        broker's trades, in that order) first, then the others oldest first;
        a named id that closes nothing counts in ``unmatched_trade_ids``."""
        acct = self.accounts[a]
        if units == 0 or abs(units) > MAX_UNITS:
            raise ValueError(f"INVALID_UNITS: units={units}")
        if price <= 0:
            raise ValueError(f"INVALID_PRICE: price={price}")
        pos = acct.positions.get(i)
        if pos is None:
            pos = acct.positions[i] = Position()
        p = pos.units
        n = p + units
        if abs(n) > MAX_UNITS:
            raise ValueError(f"POSITION_TOO_LARGE: position {p} + fill {units}")
        realized = ZERO
        left = abs(units)
        if p != 0 and (p > 0) != (units > 0):
            quote = self.instruments[i].quote
            if quote_home is None and self.conversion(quote, acct.home) is None:
                raise ValueError("NO_CONVERSION_RATE")
            lots = pos.lots
            if closed_trade_ids:  # named lots first, in the order named
                for tid in closed_trade_ids:
                    lot = next((x for x in lots if tid > 0 and x[2] == tid), None) if left else None
                    if lot is None:
                        self.unmatched_trade_ids += 1
                        continue
                    take = min(abs(lot[0]), left)
                    cu = take if lot[0] > 0 else -take
                    q = CTX.multiply(cu, price - lot[1])
                    f = quote_home if quote_home is not None else self.conversion(quote, acct.home, 0 if q >= 0 else 1)
                    realized += q_book(CTX.multiply(q, f))
                    pos.cost -= CTX.multiply(cu, lot[1])
                    left -= take
                    if take == abs(lot[0]):
                        lots.remove(lot)
                    else:
                        lot[0] -= cu
            while left and lots:  # FIFO: oldest lot first, each rounded on its own
                lot = lots[0]
                take = min(abs(lot[0]), left)
                cu = take if lot[0] > 0 else -take
                q = CTX.multiply(cu, price - lot[1])
                f = quote_home if quote_home is not None else self.conversion(quote, acct.home, 0 if q >= 0 else 1)
                realized += q_book(CTX.multiply(q, f))
                pos.cost -= CTX.multiply(cu, lot[1])
                left -= take
                if take == abs(lot[0]):
                    lots.popleft()
                else:
                    lot[0] -= cu
        elif closed_trade_ids:
            self.unmatched_trade_ids += len(closed_trade_ids)
        if left:
            lu = left if units > 0 else -left
            pos.lots.append([lu, price, opened_trade_id])
            pos.cost += CTX.multiply(lu, price)
        pos.units = n
        pos.avg = ZERO if n == 0 else q_price(CTX.divide(abs(pos.cost), abs(n)))
        pos.realized += realized
        acct.realized += realized
        acct.balance += realized
        self._revalue(acct, i, pos)
        return realized


class DecimalRiskEngine:
    """The ordered checks of ``_core.risk.RiskEngine.check``, on a DecimalLedger."""

    def __init__(self, ledger: DecimalLedger):
        self.ledger = ledger
        self.last_denial = None

    def set_limits(self, a: int, **limits) -> None:
        """Units as ints, max_leverage / required_margin_ratio / max_daily_loss as Decimal."""
        acct = self.ledger.accounts[a]
        acct.limits.update(limits)
        if "orders_per_second" in limits or "burst" in limits:
            if acct.limits["burst"] is None:
                acct.limits["burst"] = acct.limits["orders_per_second"]
            acct.tokens = (acct.limits["burst"] or 0) * NANO
            acct.last_ns = 0

    def _deny(self, code: str, detail: str) -> str:
        self.last_denial = f"{code}: {detail}"
        return code

    def check(self, a: int, i: int, units: int, now_ns: int) -> str:
        """"OK" or the denial code; ``last_denial`` holds the detail."""
        ledger = self.ledger
        if a < 0 or a >= len(ledger.accounts):
            return self._deny("UNKNOWN_ACCOUNT", f"account={a}")
        acct = ledger.accounts[a]
        if acct.state == "HALTED":
            return self._deny("TRADING_HALTED", f"account={a} state=HALTED")
        if i < 0 or i >= len(ledger.instruments):
            return self._deny("UNKNOWN_INSTRUMENT", f"instrument={i}")
        inst = ledger.instruments[i]
        au = abs(units)
        if units == 0 or au > MAX_UNITS or au < inst.min_size:
            return self._deny("INVALID_UNITS", f"units={units} minimum={inst.min_size} maximum={MAX_UNITS}")
        if i not in acct.allowed:
            return self._deny("INSTRUMENT_RESTRICTED", f"instrument={inst.name} account={a}")
        lim = acct.limits
        max_units = inst.max_units
        if lim["max_units_per_order"] is not None and lim["max_units_per_order"] < max_units:
            max_units = lim["max_units_per_order"]
        if au > max_units:
            return self._deny("MAX_UNITS_PER_ORDER", f"units={au} limit={max_units}")
        pos = acct.positions.get(i)
        p = pos.units if pos is not None else 0
        pend = acct.pending.get(i)
        w = 0 if pend is None else pend[0] if units > 0 else pend[1]  # working orders on the order's side
        reducing = p != 0 and (units > 0) != (p > 0) and au + w <= abs(p)
        if acct.state == "REDUCING" and not reducing:
            return self._deny("REDUCE_ONLY_VIOLATION",
                              f"units={units} position={p} working_same_side={w} state=REDUCING")
        if not reducing:
            base = p + w if units > 0 else p - w  # worst case on the order's side
            worst = abs(base + units)
            if worst > abs(base) and lim["max_position_size"] is not None and worst > lim["max_position_size"]:
                return self._deny("MAX_POSITION_SIZE", f"units={worst} limit={lim['max_position_size']} "
                                  f"position={p} working_same_side={w} order={units}")
            after = abs(p + units)
            count = acct.working.get(i, 0) + (1 if p != 0 else 0) + 1
            if lim["max_positions_per_instrument"] is not None and count > lim["max_positions_per_instrument"]:
                return self._deny("MAX_POSITIONS_PER_INSTRUMENT",
                                  f"count={count} limit={lim['max_positions_per_instrument']}")
            nav = acct.balance + acct.upl
            if lim["max_daily_loss"] is not None and nav - acct.day_start_nav <= -lim["max_daily_loss"]:
                return self._deny("MAX_DAILY_LOSS",
                                  f"daily_pl={nav - acct.day_start_nav} limit={lim['max_daily_loss']}")
            pu = ledger.per_unit(i, acct.home)
            if pu is None:
                return self._deny("PRICE_UNAVAILABLE", f"instrument={inst.name}")
            pos_value = pos.value if pos is not None else ZERO
            pos_margin = pos.margin if pos is not None else ZERO
            v_after = q_money(CTX.multiply(after, pu[0]))
            if v_after > pos_value and lim["max_leverage"] is not None:
                gross = acct.value - pos_value + v_after
                if gross > CTX.multiply(lim["max_leverage"], nav):
                    return self._deny("MAX_LEVERAGE", f"gross={gross} nav={nav} max_leverage={lim['max_leverage']}")
            m_after = q_money(CTX.multiply(after, pu[1]))
            if m_after > pos_margin:
                avail = nav - (acct.margin - pos_margin + m_after)
                ratio = lim["required_margin_ratio"] or ZERO
                if avail < CTX.multiply(ratio, nav):
                    return self._deny("INSUFFICIENT_MARGIN",
                                      f"margin_available_after={avail} nav={nav} required_margin_ratio={ratio}")
                opening = au if (p == 0 or (units > 0) == (p > 0)) else after
                order_margin = q_money(CTX.multiply(opening, pu[1]))
                if order_margin > nav - acct.margin:
                    return self._deny("INSUFFICIENT_MARGIN",
                                      f"order_margin={order_margin} margin_available={nav - acct.margin}")
        rate = lim["orders_per_second"]
        if rate:
            cap = lim["burst"] * NANO
            tokens = acct.tokens
            elapsed = now_ns - acct.last_ns
            if elapsed > 0:
                tokens = min(cap, tokens + elapsed * rate)
                acct.last_ns = now_ns
            acct.tokens = tokens
            if tokens < NANO:
                return self._deny("ORDER_RATE_LIMIT", f"orders_per_second={rate} burst={lim['burst']}")
            acct.tokens = tokens - NANO
        return OK
