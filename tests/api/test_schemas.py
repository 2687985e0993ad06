"""Exact number handling at the JSON edge (Decimal reference, hypothesis)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastexec.api.schemas import MAX_DECIMAL_TEXT, JsonNumber, Price, Units, decode_body
from fastexec.errors import ValidationError


@settings(max_examples=500, deadline=None)
@given(mantissa=st.integers(min_value=0, max_value=10**20), frac=st.integers(min_value=0, max_value=12), exp=st.integers(-60, 60))
def test_exponent_literals_expand_exactly(mantissa, frac, exp):
    digits = str(mantissa)
    text = (digits[:-frac] or "0") + "." + digits[-frac:].rjust(frac, "0") if frac else digits
    text = f"{text}e{exp}"
    try:
        plain = JsonNumber(text).plain("price")
    except ValidationError as exc:
        # refused only when the plain form would be longer than any valid price
        assert exc.code in ("OUT_OF_RANGE", "PRECISION_EXCEEDED")
        expected = format(Decimal(text), "f")
        if "." in expected:
            expected = expected.rstrip("0").rstrip(".")
        assert len(expected) > MAX_DECIMAL_TEXT
        return
    assert "e" not in plain.lower()
    assert Decimal(plain) == Decimal(text)
    if "." in plain:
        assert not plain.endswith("0")


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b'{"p": 1.0950}', "1.0950"),
        (b'{"p": 1.100000000000000001}', "1.100000000000000001"),
        (b'{"p": 1e-5}', "0.00001"),
        (b'{"p": 12E2}', "1200"),
        (b'{"p": "1.0950"}', "1.0950"),
        (b'{"p": 2}', "2"),
    ],
)
def test_price_text_is_the_literal_the_client_sent(raw, expected):
    assert Price().parse(decode_body(raw)["p"], "p") == expected


@pytest.mark.parametrize(
    "raw,value",
    [(b'{"u": 10000}', 10000), (b'{"u": "10000"}', 10000), (b'{"u": 1e3}', 1000), (b'{"u": 10000.0}', 10000)],
)
def test_units_accept_integral_forms(raw, value):
    assert Units().parse(decode_body(raw)["u"], "u") == value


def test_big_integers_are_not_rounded_through_floats():
    # orjson would hand back 1.2345678901234568e+29 for this literal
    body = decode_body(b'{"u": 123456789012345678901234567890, "p": 123456789012345678901}')
    assert isinstance(body["u"], JsonNumber) and body["u"].text == "123456789012345678901234567890"
    with pytest.raises(ValidationError) as e:
        Units().parse(body["u"], "u")
    assert e.value.code == "OUT_OF_RANGE"
