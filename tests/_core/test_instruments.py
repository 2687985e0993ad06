"""The packaged instrument table and what the loader refuses."""
import json
from importlib import resources

import pytest

from fastexec._core.fixedpoint import FixedPointError
from fastexec._core.instruments import (
    Instrument,
    InstrumentDataError,
    InstrumentTable,
    load_instruments,
)


@pytest.fixture(scope="module")
def table():
    return load_instruments()


@pytest.fixture(scope="module")
def raw_file():
    text = resources.files("fastexec").joinpath("data/instruments.json").read_text("utf-8")
    return json.loads(text)


def test_load_default_keeps_file_order(table, raw_file):
    names = [d["name"] for d in raw_file["instruments"]]
    assert len(table) == len(names) == 18
    assert [it.name for it in table] == names
    assert table.names == tuple(names)
    for i, name in enumerate(names):
        assert table.index(name) == i
        assert table.by_index(i) is table[name]
        assert table[name].index == i


def test_eur_usd_fields_at_core_scales(table):
    eu = table["EUR_USD"]
    assert (eu.type, eu.base, eu.quote) == ("CURRENCY", "EUR", "USD")
    assert (eu.display_precision, eu.pip_location, eu.trade_units_precision) == (5, -4, 0)
    assert eu.minimum_trade_size == 1
    assert eu.maximum_order_units == 100_000_000
    assert eu.margin_rate == 2 * 10**10  # 0.02 at RATE_SCALE
    assert eu.minimum_trailing_stop_distance == 500_000  # 0.00050 at PRICE_SCALE
    assert eu.maximum_trailing_stop_distance == 10**9
    assert eu.price_tick == 10**4


def test_usd_jpy_has_three_decimals(table):
    uj = table["USD_JPY"]
    assert uj.display_precision == 3
    assert uj.parse_price("114.824") == 114_824_000_000
    with pytest.raises(FixedPointError) as e:
        uj.parse_price("114.8241")
    assert e.value.code == "PRECISION_EXCEEDED"
    assert uj.format_price(101 * 10**9) == "101.000"


def test_check_price_refuses_sub_tick_price(table):
    eu = table["EUR_USD"]
    assert eu.check_price(1_105_230_000) == 1_105_230_000
    with pytest.raises(FixedPointError):
        eu.check_price(1_105_231_000)


def test_to_v20_reproduces_the_file(table, raw_file):
    for d, inst in zip(raw_file["instruments"], table):
        assert inst.to_v20() == d
    assert table.to_v20() == {"instruments": raw_file["instruments"]}


def test_unknown_name_raises_key_error_naming_it(table):
    with pytest.raises(KeyError, match="FOO_BAR"):
        table["FOO_BAR"]
    with pytest.raises(KeyError, match="FOO_BAR"):
        table.index("FOO_BAR")
    assert "FOO_BAR" not in table and "EUR_USD" in table


def test_by_index_out_of_range_raises(table):
    with pytest.raises(IndexError):
        table.by_index(18)
    with pytest.raises(IndexError):
        table.by_index(-1)


def test_attributes_are_read_only(table):
    with pytest.raises(AttributeError):
        table["EUR_USD"].margin_rate = 1


def test_currencies_indexed_in_order_of_first_use(table):
    assert table.currencies[:4] == ("EUR", "USD", "GBP", "JPY")
    assert table.currency_index("USD") == 1
    assert "XAU" in table.currencies
    with pytest.raises(KeyError, match="ZZZ"):
        table.currency_index("ZZZ")


def _write(tmp_path, instruments):
    p = tmp_path / "instruments.json"
    p.write_text(json.dumps({"instruments": instruments}))
    return str(p)


def _good():
    return {
        "name": "EUR_USD", "type": "CURRENCY", "displayName": "EUR/USD",
        "pipLocation": -4, "displayPrecision": 5, "tradeUnitsPrecision": 0,
        "minimumTradeSize": "1", "maximumOrderUnits": "100000000", "maximumPositionSize": "0",
        "minimumTrailingStopDistance": "0.00050", "maximumTrailingStopDistance": "1.00000",
        "marginRate": "0.02",
    }


def test_load_from_path_accepts_bare_list(tmp_path):
    p = tmp_path / "i.json"
    p.write_text(json.dumps([_good()]))
    t = load_instruments(str(p))
    assert len(t) == 1 and t["EUR_USD"].index == 0


@pytest.mark.parametrize("change,match", [
    ({"tradeUnitsPrecision": 1}, "tradeUnitsPrecision"),
    ({"displayPrecision": 10}, "displayPrecision"),
    ({"displayPrecision": "5"}, "displayPrecision"),
    ({"marginRate": "0.0200000000001"}, "marginRate|decimal places"),
    ({"marginRate": 0.02}, "decimal string"),
    ({"minimumTrailingStopDistance": "0.000501"}, "decimal places"),
    ({"maximumOrderUnits": "1.5"}, "decimal places"),
    ({"name": "EURUSD"}, "BASE_QUOTE"),
    ({"marginRate": "0"}, "marginRate"),
])
def test_load_refuses_values_the_core_cannot_represent(tmp_path, change, match):
    d = _good()
    d.update(change)
    with pytest.raises(InstrumentDataError, match=match):
        load_instruments(_write(tmp_path, [d]))


def test_load_refuses_missing_fields_and_duplicates(tmp_path):
    d = _good()
    del d["marginRate"]
    with pytest.raises(InstrumentDataError, match="marginRate"):
        load_instruments(_write(tmp_path, [d]))
    with pytest.raises(InstrumentDataError, match="duplicate"):
        load_instruments(_write(tmp_path, [_good(), _good()]))


def test_table_refuses_misnumbered_instruments():
    a = Instrument(index=1, name="EUR_USD", type="CURRENCY", display_precision=5,
                   pip_location=-4, trade_units_precision=0, minimum_trade_size=1,
                   maximum_order_units=10, margin_rate=1, minimum_trailing_stop_distance=1,
                   maximum_trailing_stop_distance=2)
    with pytest.raises(InstrumentDataError, match="index"):
        InstrumentTable([a])
