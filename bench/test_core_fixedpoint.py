"""Decimal text in and out (the wire edges). Run: pytest bench/test_core_*.py --benchmark-enable"""
from fastexec._core.fixedpoint import convert, format_price, notional, parse_price, parse_units


def test_parse_price(benchmark):
    assert benchmark(parse_price, "1.10523", 5) == 1_105_230_000


def test_parse_units(benchmark):
    assert benchmark(parse_units, "-100000") == -100_000


def test_format_price(benchmark):
    assert benchmark(format_price, 1_105_230_000, 5) == "1.10523"


def test_notional(benchmark):
    assert benchmark(notional, 100_000, 1_105_230_000) == 110_523_000_000


def test_convert(benchmark):
    benchmark(convert, 110_523_000_000, 6_666_222_252)
