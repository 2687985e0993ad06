"""Shared set-up for the core benchmarks: one realistic core (ledger, order
store, risk engine) per benchmark, marked and with positions, so the numbers
measure the paths the engine actually takes (not an empty early return)."""
import pytest

from fastexec._core.fixedpoint import parse_money, parse_price, parse_rate
from fastexec._core.instruments import load_instruments
from fastexec._core.orders import OrderStore
from fastexec._core.positions import Ledger
from fastexec._core.risk import RiskEngine

TABLE = load_instruments()
EU = TABLE.index("EUR_USD")
UJ = TABLE.index("USD_JPY")


class CoreBench:
    def __init__(self, accounts=1):
        self.ledger = Ledger(TABLE, max_accounts=max(accounts, 1))
        self.orders = OrderStore(max(accounts, 1), len(TABLE))
        self.risk = RiskEngine(self.ledger, self.orders)
        for n in range(accounts):
            self.ledger.add_account(f"acc{n}", "USD", parse_money("1000000"))
        self.ledger.mark(EU, parse_price("1.10000", 5), parse_price("1.10020", 5))
        self.ledger.mark(UJ, parse_price("150.000", 3), parse_price("150.020", 3))

    def full_limits(self, a=0):
        """Every limit on, generous enough that the benchmark order passes: the
        check then runs all its steps (the slowest OK path)."""
        self.risk.set_limits(
            a, max_units_per_order=10_000_000, max_position_size=50_000_000,
            max_positions_per_instrument=1_000, max_leverage=parse_rate("50"),
            required_margin_ratio=parse_rate("0.1"), max_daily_loss=parse_money("100000"),
            max_working_orders=10_000)


@pytest.fixture
def core_factory():
    """CoreBench class, for benchmarks that need many accounts."""
    return CoreBench


@pytest.fixture
def core():
    c = CoreBench()
    c.full_limits()
    c.ledger.apply_fill(0, EU, 100_000, parse_price("1.10020", 5))
    return c


@pytest.fixture
def note_median(benchmark):
    """``note_median(key, per, scale)`` stores ``median / per * scale`` in the
    benchmark's extra_info. Only a timed run has statistics: the default
    ``--benchmark-disable`` (a smoke run of every benchmark body) has none."""
    def note(key, per=1, scale=1e9, digits=None):
        if benchmark.stats is not None:
            value = benchmark.stats.stats.median / per * scale
            benchmark.extra_info[key] = round(value, digits) if digits is not None else value

    return note
