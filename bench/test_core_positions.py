"""Ledger steps: one fill applied to a position, one mark that revalues 1,000
positions. Run: pytest bench/test_core_*.py --benchmark-enable"""
from fastexec._core.fixedpoint import parse_price

from fastexec._core.instruments import load_instruments

EU = load_instruments().index("EUR_USD")

P_BUY = parse_price("1.10020", 5)
P_BID = parse_price("1.10000", 5)
P_ASK = parse_price("1.10020", 5)


def test_apply_fill_adding_to_position(benchmark, core):
    """Adds 1 unit per call: the average-price path (one 128-bit division).

    Every call opens a lot, so the count is fixed (200k calls), not left to
    pytest-benchmark's time-based calibration: a faster build would otherwise
    run into the ledger's lot cap (max_lots, 2**20) and measure the refusal."""
    benchmark.pedantic(core.ledger.apply_fill, args=(0, EU, 1, P_BUY), rounds=20_000, iterations=10, warmup_rounds=100)


def test_apply_fill_reducing_position(benchmark, core):
    """Sells 1 unit per call from a 10M position: realized P&L + conversion.

    A fixed 2M calls (the position never goes flat, let alone short and
    lot-adding, whatever the machine's speed)."""
    core.ledger.apply_fill(0, EU, 10_000_000, P_BUY)
    benchmark.pedantic(core.ledger.apply_fill, args=(0, EU, -1, P_BID), rounds=20_000, iterations=100, warmup_rounds=100)
    assert core.ledger.position(0, EU).units > 0


def test_mark_to_market_1000_positions(benchmark, core_factory, note_median):
    """1,000 accounts each long EUR_USD; one mark revalues all of them."""
    c = core_factory(accounts=1000)
    for a in range(1000):
        c.ledger.apply_fill(a, EU, 1_000 + a, P_BUY)
    benchmark(c.ledger.mark, EU, P_BID, P_ASK)
    note_median("ns_per_position_median", 1000)
    assert c.ledger.account_state(999).open_positions == 1


def test_mark_to_market_single_position(benchmark, core):
    benchmark(core.ledger.mark, EU, P_BID, P_ASK)
