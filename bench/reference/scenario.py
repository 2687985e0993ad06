"""One trading state, built twice: in the compiled core and in the Decimal
reference, so every benchmark of the hot paths (callgrind counts, wall-clock
medians) measures both implementations on the same numbers.

The state is the ordinary busy case, chosen so the checks run to the end
rather than stopping at an early denial: one USD account with 1,000,000 of
balance, every limit enabled (so every check runs), positions open in
EUR_USD, USD_JPY (conversion through an inverse pair) and EUR_GBP (a cross
through USD), all instruments marked. The order checked adds 10,000 EUR_USD
to a long: it passes all 14 checks.
"""
from __future__ import annotations

import os
import sys
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import decimal_core as ref  # noqa: E402

ACCOUNT_BALANCE = Decimal("1000000")
QUOTES = {  # bid, ask
    "EUR_USD": ("1.10520", "1.10523"),
    "GBP_USD": ("1.27010", "1.27014"),
    "USD_JPY": ("151.201", "151.205"),
    "USD_CHF": ("0.88110", "0.88114"),
    "AUD_USD": ("0.66010", "0.66013"),
    "USD_CAD": ("1.36010", "1.36014"),
    "NZD_USD": ("0.60010", "0.60014"),
    "EUR_GBP": ("0.87010", "0.87013"),
    "EUR_JPY": ("167.101", "167.106"),
    "GBP_JPY": ("192.101", "192.107"),
    "EUR_CHF": ("0.97410", "0.97414"),
    "AUD_JPY": ("99.801", "99.805"),
    "EUR_AUD": ("1.67410", "1.67416"),
    "GBP_CHF": ("1.11910", "1.11916"),
    "CHF_JPY": ("171.601", "171.607"),
    "EUR_CAD": ("1.50310", "1.50316"),
    "AUD_NZD": ("1.09910", "1.09916"),
    "XAU_USD": ("2001.101", "2001.451"),
}
OPEN = [("EUR_USD", 250_000), ("USD_JPY", -100_000), ("EUR_GBP", 50_000)]
ORDER = ("EUR_USD", 10_000)
LIMITS = dict(
    max_units_per_order=5_000_000,
    max_position_size=10_000_000,
    max_positions_per_instrument=100,
    max_leverage=Decimal(50),
    required_margin_ratio=Decimal("0.05"),
    max_daily_loss=Decimal("50000"),
    orders_per_second=10 ** 9,  # enabled, never empty within a benchmark
    burst=10 ** 9,
)


def _raw(v: Decimal, places: int) -> int:
    return int(v.scaleb(places))


class Core:
    """The compiled side: Ledger + OrderStore + RiskEngine, as the engine builds them."""

    def __init__(self):
        from fastexec._core.instruments import load_instruments
        from fastexec._core.orders import OrderStore
        from fastexec._core.positions import Ledger
        from fastexec._core.risk import RiskEngine

        self.table = table = load_instruments()
        self.ledger = Ledger(table, max_accounts=8)
        self.orders = OrderStore(8, table.n)
        self.risk = RiskEngine(self.ledger, self.orders)
        self.account = self.ledger.add_account("bench", "USD", _raw(ACCOUNT_BALANCE, 6))
        for name, (bid, ask) in QUOTES.items():
            self.ledger.mark(table.index(name), _raw(Decimal(bid), 9), _raw(Decimal(ask), 9))
        for name, units in OPEN:
            bid, ask = QUOTES[name]
            self.ledger.apply_fill(self.account, table.index(name), units,
                                   _raw(Decimal(ask if units > 0 else bid), 9))
        core_limits = {k: (_raw(v, 12) if k in ("max_leverage", "required_margin_ratio")
                           else _raw(v, 6) if k == "max_daily_loss" else v) for k, v in LIMITS.items()}
        self.risk.set_limits(self.account, **core_limits)
        self.instrument = table.index(ORDER[0])
        self.units = ORDER[1]
        bid, ask = QUOTES[ORDER[0]]
        self.bid, self.ask = _raw(Decimal(bid), 9), _raw(Decimal(ask), 9)
        # a second quote one tick up, so alternating marks really move values
        self.bid2, self.ask2 = self.bid + 10_000, self.ask + 10_000


class Reference:
    """The Decimal side, same state."""

    def __init__(self, table=None):
        if table is None:
            from fastexec._core.instruments import load_instruments
            table = load_instruments()
        self.ledger = ref.DecimalLedger(list(table))
        self.risk = ref.DecimalRiskEngine(self.ledger)
        self.account = self.ledger.add_account("USD", ACCOUNT_BALANCE)
        for name, (bid, ask) in QUOTES.items():
            self.ledger.mark(table.index(name), Decimal(bid), Decimal(ask))
        for name, units in OPEN:
            bid, ask = QUOTES[name]
            self.ledger.apply_fill(self.account, table.index(name), units, Decimal(ask if units > 0 else bid))
        self.risk.set_limits(self.account, **LIMITS)
        self.instrument = table.index(ORDER[0])
        self.units = ORDER[1]
        bid, ask = QUOTES[ORDER[0]]
        self.bid, self.ask = Decimal(bid), Decimal(ask)
        self.bid2, self.ask2 = self.bid + Decimal("0.00001"), self.ask + Decimal("0.00001")


# --- the four operations, as run(n) loops (callgrind) and single steps (timing) ---
# Each loop keeps the state steady: fills alternate open/close of the same
# size at one price (buying at the ask and selling at the bid would realize
# the spread every round trip and walk the account into its daily-loss
# limit, turning the timed check into a denial), marks alternate between two
# quotes, checks do not change the ledger. ``still_passes`` asserts it.

def core_check_loop(c: Core):
    check, a, i, u = c.risk.check, c.account, c.instrument, c.units

    def run(n):
        for _ in range(n):
            check(a, i, u, 0)

    return run


def core_check_batch_loop(c: Core, batch: int = 500):
    import array

    accts = array.array("i", [c.account] * batch)
    insts = array.array("i", [c.instrument] * batch)
    units = array.array("q", [c.units] * batch)
    out = array.array("i", [0] * batch)
    check_batch = c.risk.check_batch

    def run(n):
        if n % batch:
            raise ValueError(f"n={n} must be a multiple of the batch size {batch}")
        for _ in range(n // batch):
            check_batch(accts, insts, units, 0, out)

    return run


def core_fill_loop(c: Core):
    fill, a, i, u, px = c.ledger.apply_fill, c.account, c.instrument, c.units, c.ask

    def run(n):
        for _ in range(n // 2):
            fill(a, i, u, px)
            fill(a, i, -u, px)

    return run


def core_mark_loop(c: Core):
    mark, i, b1, a1, b2, a2 = c.ledger.mark, c.instrument, c.bid, c.ask, c.bid2, c.ask2

    def run(n):
        for _ in range(n // 2):
            mark(i, b2, a2)
            mark(i, b1, a1)

    return run


def ref_check_loop(r: Reference):
    check, a, i, u = r.risk.check, r.account, r.instrument, r.units

    def run(n):
        for _ in range(n):
            check(a, i, u, 0)

    return run


def ref_fill_loop(r: Reference):
    fill, a, i, u, px = r.ledger.apply_fill, r.account, r.instrument, r.units, r.ask

    def run(n):
        for _ in range(n // 2):
            fill(a, i, u, px)
            fill(a, i, -u, px)

    return run


def ref_mark_loop(r: Reference):
    mark, i, b1, a1, b2, a2 = r.ledger.mark, r.instrument, r.bid, r.ask, r.bid2, r.ask2

    def run(n):
        for _ in range(n // 2):
            mark(i, b2, a2)
            mark(i, b1, a1)

    return run


def still_passes(c: Core | None = None, r: Reference | None = None) -> None:
    """The benchmarked order must still pass every check after the loops ran:
    a benchmark that drifted into a denial would time the wrong path."""
    if c is not None:
        code = c.risk.check(c.account, c.instrument, c.units, 0)
        if code != 0:
            raise AssertionError(f"core risk check drifted into a denial: {c.risk.last_denial}")
    if r is not None:
        code = r.risk.check(r.account, r.instrument, r.units, 0)
        if code != ref.OK:
            raise AssertionError(f"reference risk check drifted into a denial: {r.risk.last_denial}")
