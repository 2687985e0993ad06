"""Fixed-point parse/format and arithmetic against the Decimal reference model."""
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import reference_model as ref
from fastexec._core import fixedpoint as fp
from fastexec._core.fixedpoint import (
    FixedPointError,
    FixedPointRangeError,
    convert,
    div_price,
    format_money,
    format_price,
    format_rate,
    format_units,
    mul_price,
    notional,
    parse_money,
    parse_price,
    parse_rate,
    parse_units,
    pnl,
    round_half_even,
    units_value,
)

prices = st.integers(-fp.MAX_PRICE, fp.MAX_PRICE)
pos_prices = st.integers(1, fp.MAX_PRICE)
units = st.integers(-fp.MAX_UNITS, fp.MAX_UNITS)
money = st.integers(-fp.MAX_MONEY, fp.MAX_MONEY)
rates = st.integers(-fp.MAX_RATE, fp.MAX_RATE)
precisions = st.integers(0, 9)


def outcome(fn, *args):
    """('ok', value) or ('err', code) so core and reference compare in one assert."""
    try:
        return ("ok", fn(*args))
    except (FixedPointError, ref.RefError) as e:
        return ("err", e.code)


# --- constants -----------------------------------------------------------------

def test_scales_match_contract():
    assert (fp.PRICE_SCALE, fp.MONEY_SCALE, fp.RATE_SCALE) == (10**9, 10**6, 10**12)
    assert (fp.MAX_PRICE, fp.MAX_UNITS, fp.MAX_MONEY, fp.MAX_RATE) == (
        10**18, 10**12, 9 * 10**15, 10**18)


# --- parse: contract examples ----------------------------------------------------

def test_parse_price_at_instrument_precision():
    assert parse_price("1.10523", 5) == 1105230000
    assert parse_price("101.000", 3) == 101 * 10**9
    assert parse_price("1.105230", 5) == 1105230000  # trailing zero is exact


def test_parse_price_with_excess_precision_is_refused():
    with pytest.raises(FixedPointError) as e:
        parse_price("1.105231", 5)
    assert e.value.code == "PRECISION_EXCEEDED"
    assert "1.105231" in str(e.value) and "5" in str(e.value)


def test_parse_units_whole_and_exact():
    assert parse_units("-10000") == -10000
    assert parse_units("1.0") == 1
    assert parse_units("+7") == 7
    with pytest.raises(FixedPointError) as e:
        parse_units("1.5")
    assert e.value.code == "PRECISION_EXCEEDED"


@pytest.mark.parametrize("text", ["", "1e5", " 1", "1 ", "1.", ".5", "--1", "0x10", "1,000",
                                  "NaN", "inf", "١٢", "1_000", "+", "-", "1.2.3"])
def test_parse_malformed_text_is_invalid_number(text):
    with pytest.raises(FixedPointError) as e:
        parse_units(text)
    assert e.value.code == "INVALID_NUMBER"


def test_parse_overlong_text_is_refused():
    with pytest.raises(FixedPointError) as e:
        parse_money("1" + "0" * 64)
    assert e.value.code == "INVALID_NUMBER"


@pytest.mark.parametrize("fn,args", [
    (parse_units, (1,)), (parse_units, (1.0,)), (parse_units, (b"1",)),
    (parse_price, (1.1, 5)), (parse_money, (None,)), (parse_rate, (True,)),
])
def test_parse_non_string_raises_type_error(fn, args):
    with pytest.raises(TypeError):
        fn(*args)


def test_parse_price_precision_argument_checked():
    with pytest.raises(ValueError):
        parse_price("1", 10)
    with pytest.raises(ValueError):
        parse_price("1", -1)


# --- parse: range boundaries (MAX and MAX+1) --------------------------------------

@pytest.mark.parametrize("fn,at_max,above,raw_max", [
    (parse_units, "1000000000000", "1000000000001", fp.MAX_UNITS),
    (parse_money, "9000000000.000000", "9000000000.000001", fp.MAX_MONEY),
    (parse_rate, "1000000", "1000000.000000000001", fp.MAX_RATE),
    (lambda t: parse_price(t, 9), "1000000000", "1000000000.000000001", fp.MAX_PRICE),
])
def test_parse_at_max_accepts_and_above_max_raises_out_of_range(fn, at_max, above, raw_max):
    assert fn(at_max) == raw_max
    assert fn("-" + at_max) == -raw_max
    for text in (above, "-" + above, "9" * 40):
        with pytest.raises(FixedPointRangeError) as e:
            fn(text)
        assert e.value.code == "OUT_OF_RANGE"
        assert isinstance(e.value, OverflowError) and isinstance(e.value, ValueError)


# --- parse: properties vs reference --------------------------------------------------

decimal_texts = st.builds(
    lambda sign, ip, frac: f"{sign}{ip}" + (f".{frac}" if frac else ""),
    st.sampled_from(["", "-", "+"]),
    st.one_of(st.integers(0, 10**13).map(str), st.text("0123456789", min_size=1, max_size=25)),
    st.text("0123456789", max_size=16),
)


@settings(deadline=None)
@given(decimal_texts, precisions)
@example("1000000000.000000000", 9)
@example("0.1000000000", 0)
def test_parse_price_matches_reference(text, precision):
    assert outcome(parse_price, text, precision) == outcome(ref.parse, text, "price", precision)


@settings(deadline=None)
@given(decimal_texts)
def test_parse_units_money_rate_match_reference(text):
    assert outcome(parse_units, text) == outcome(ref.parse, text, "units")
    assert outcome(parse_money, text) == outcome(ref.parse, text, "money")
    assert outcome(parse_rate, text) == outcome(ref.parse, text, "rate")


@settings(deadline=None)
@given(st.text(max_size=20))
def test_parse_arbitrary_text_never_crashes_and_matches_reference(text):
    assert outcome(parse_money, text) == outcome(ref.parse, text, "money")


@settings(deadline=None)
@given(prices, precisions)
def test_format_price_round_trips_or_refuses_excess_precision(raw, precision):
    core = outcome(format_price, raw, precision)
    assert core == outcome(ref.format_price, raw, precision)
    if core[0] == "ok":
        assert parse_price(core[1], precision) == raw
        assert len(core[1].partition(".")[2]) == precision


def test_format_price_pads_to_precision():
    assert format_price(1105230000, 5) == "1.10523"
    assert format_price(101 * 10**9, 3) == "101.000"
    assert format_price(-2 * 10**9, 0) == "-2"
    with pytest.raises(FixedPointError) as e:
        format_price(1105231000, 5)
    assert e.value.code == "PRECISION_EXCEEDED"


@settings(deadline=None)
@given(units)
def test_format_units_round_trips(raw):
    assert parse_units(format_units(raw)) == raw


@settings(deadline=None)
@given(money, st.integers(0, 6))
def test_format_money_rounds_half_even_to_places(raw, places):
    text = format_money(raw, places)
    assert text == ref.format_money(raw, places)
    if places == 6:
        assert parse_money(text) == raw


def test_format_money_half_even_examples():
    assert format_money(1_000_050, 4) == "1.0000"  # 1.000050: tie, 0 is even
    assert format_money(1_000_150, 4) == "1.0002"  # 1.000150: tie, 1 is odd -> up
    assert format_money(-1_000_150, 4) == "-1.0002"
    assert format_money(-50, 4) == "0.0000"  # no negative zero
    assert format_money(12_345_678) == "12.3457"


@settings(deadline=None)
@given(rates)
def test_format_rate_is_shortest_exact(raw):
    text = format_rate(raw)
    assert text == ref.format_rate(raw)
    assert parse_rate(text) == raw
    assert not (("." in text) and text.endswith("0"))


def test_format_rate_examples():
    assert format_rate(2 * 10**10) == "0.02"
    assert format_rate(10**12) == "1"
    assert format_rate(0) == "0"
    assert format_rate(1) == "0.000000000001"


# --- arithmetic vs reference --------------------------------------------------------

@settings(deadline=None)
@given(units, st.integers(0, fp.MAX_PRICE))
@example(fp.MAX_UNITS, 9 * 10**9)          # 9e21 raw product: > int64, result 9e18 > MAX_MONEY
@example(fp.MAX_UNITS, fp.MAX_PRICE)       # 1e30 raw product: int128 holds it, result refused
@example(10**6, 9 * 10**12)                # exactly MAX_MONEY
@example(1, 500)                           # 0.5 micro: tie -> 0 (even)
@example(3, 500)                           # 1.5 micro: tie -> 2 (even)
def test_notional_matches_reference(u, p):
    assert outcome(notional, u, p) == outcome(ref.notional, u, p)


def test_notional_at_max_money_and_one_past():
    assert notional(10**6, 9 * 10**12) == fp.MAX_MONEY
    assert notional(-(10**6), 9 * 10**12) == fp.MAX_MONEY
    with pytest.raises(OverflowError):
        notional(10**6, 9 * 10**12 + 1)
    assert notional(-10000, 1105230000) == 11052300000  # 11052.30 USD


@settings(deadline=None)
@given(money, rates)
@example(fp.MAX_MONEY, 10**12)          # 9e27 raw product: overflows int64, result == MAX_MONEY
@example(fp.MAX_MONEY, 10**12 + 1)      # one pico more: result past MAX_MONEY
@example(-fp.MAX_MONEY, 10**12)
@example(fp.MAX_MONEY, fp.MAX_RATE)     # 9e33 product in int128, refused
@example(1, 5 * 10**11)                 # 0.5 micro -> 0
@example(-3, 5 * 10**11)                # -1.5 micro -> -2
def test_convert_matches_reference(m, r):
    assert outcome(convert, m, r) == outcome(ref.convert, m, r)


def test_convert_product_beyond_int64_with_in_range_result():
    # 9e15 * 1e12 = 9e27 does not fit int64; formed in int128 it is exact.
    assert convert(fp.MAX_MONEY, 10**12) == fp.MAX_MONEY
    assert convert(fp.MAX_MONEY, 5 * 10**11) == fp.MAX_MONEY // 2
    with pytest.raises(FixedPointRangeError):
        convert(fp.MAX_MONEY, 10**12 + 10**6)


@settings(deadline=None)
@given(units, prices, prices)
@example(fp.MAX_UNITS, 0, 9 * 10**9)    # 9e21 product -> out of range, must not wrap
@example(1, 0, 500)
@example(-1, 0, 1500)
def test_pnl_matches_reference(u, o, c):
    assert outcome(pnl, u, o, c) == outcome(ref.pnl, u, o, c)


@settings(deadline=None)
@given(money, st.integers(0, fp.MAX_PRICE))
@example(fp.MAX_MONEY, 10**9)           # 9e24 product: > int64, result MAX_MONEY
@example(fp.MAX_MONEY, 10**9 + 1)
def test_mul_price_matches_reference(m, p):
    assert outcome(mul_price, m, p) == outcome(ref.mul_price, m, p)


@settings(deadline=None)
@given(money, pos_prices)
@example(fp.MAX_MONEY, 10**9)
@example(fp.MAX_MONEY, 10**9 - 1)
@example(1, 2 * 10**9)                  # 0.5 micro tie
def test_div_price_matches_reference(m, p):
    assert outcome(div_price, m, p) == outcome(ref.div_price, m, p)


def test_div_price_by_zero_refused():
    with pytest.raises(FixedPointError):
        div_price(1, 0)


@settings(deadline=None)
@given(units, st.integers(0, fp.MAX_RATE))
@example(fp.MAX_UNITS, 9 * 10**9)           # 9e21 product: int64 overflows, result == MAX_MONEY
@example(fp.MAX_UNITS, 9 * 10**9 + 1)       # one past
@example(9 * 10**12, 10**18)                # units out of range
@example(1, 500_000)                        # tie -> 0
@example(3, 500_000)                        # tie -> 2
def test_units_value_matches_reference(u, r):
    assert outcome(units_value, u, r) == outcome(ref.units_value, u, r)


@settings(deadline=None)
@given(st.integers(-(2**63) + 1, 2**63 - 1), st.integers(1, 2**63 - 1))
@example(5, 2)
@example(-5, 2)
@example(7, 2)
@example(-7, 2)
@example(2**63 - 1, 1)
def test_round_half_even_matches_decimal(n, d):
    assert round_half_even(n, d) == ref.round_half_even(n, d)


# --- argument types and input ranges ----------------------------------------------------

@pytest.mark.parametrize("args", [(True, 10), (1.0, 10), (1, 2.5), ("1", 10), (None, 1)])
def test_arithmetic_refuses_non_int_arguments(args):
    with pytest.raises(TypeError):
        notional(*args)


@pytest.mark.parametrize("fn,args", [
    (notional, (fp.MAX_UNITS + 1, 1)),
    (notional, (1, fp.MAX_PRICE + 1)),
    (convert, (fp.MAX_MONEY + 1, 1)),
    (convert, (1, -fp.MAX_RATE - 1)),
    (format_units, (fp.MAX_UNITS + 1,)),
    (format_money, (-fp.MAX_MONEY - 1,)),
    (format_price, (fp.MAX_PRICE + 1, 9)),
    (format_rate, (2**70,)),
])
def test_out_of_range_input_raises_overflow_error(fn, args):
    with pytest.raises(FixedPointRangeError) as e:
        fn(*args)
    assert e.value.code == "OUT_OF_RANGE"
