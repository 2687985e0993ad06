# cython: language_level=3
"""Instruments from the packaged v20-shaped JSON, checked at load.

Loading is the one place instrument text becomes numbers, so every field is
parsed exactly (``fixedpoint``) and anything the core cannot represent is
refused here, loudly, rather than discovered on the first order: fractional
trade units (``tradeUnitsPrecision > 0``), more than 9 price decimals,
duplicate names, names that are not ``BASE_QUOTE``.
"""
import json
from importlib import resources

from libc.stdint cimport int64_t, int32_t
from libc.stdlib cimport malloc, free

from fastexec._core.fixedpoint import (
    FixedPointError,
    format_price as _format_price,
    format_rate as _format_rate,
    format_units as _format_units,
    parse_price as _parse_price,
    parse_rate as _parse_rate,
    parse_units as _parse_units,
)

_TICKS = tuple(10 ** (9 - p) for p in range(10))

_REQUIRED = (
    "name", "type", "pipLocation", "displayPrecision", "tradeUnitsPrecision",
    "minimumTradeSize", "maximumOrderUnits", "marginRate",
    "minimumTrailingStopDistance", "maximumTrailingStopDistance",
)


class InstrumentDataError(ValueError):
    """The instrument file holds something the core cannot trade safely."""


cdef class Instrument:
    """One tradeable instrument; read-only, numbers at the core's scales."""

    def __init__(self, *, int index, str name, str type, int display_precision,
                 int pip_location, int trade_units_precision,
                 int64_t minimum_trade_size, int64_t maximum_order_units,
                 int64_t margin_rate, int64_t minimum_trailing_stop_distance,
                 int64_t maximum_trailing_stop_distance,
                 int64_t maximum_position_size=0, str display_name=None):
        parts = name.split("_")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise InstrumentDataError(f"instrument name {name!r} is not BASE_QUOTE")
        if trade_units_precision != 0:
            raise InstrumentDataError(
                f"instrument {name}: tradeUnitsPrecision={trade_units_precision} "
                f"(fractional units) is not supported; units are whole"
            )
        if not 0 <= display_precision <= 9:
            raise InstrumentDataError(
                f"instrument {name}: displayPrecision={display_precision} outside 0..9"
            )
        if margin_rate <= 0:
            raise InstrumentDataError(f"instrument {name}: marginRate must be positive")
        if minimum_trade_size < 0 or maximum_order_units <= 0:
            raise InstrumentDataError(f"instrument {name}: trade size limits must be positive")
        self.index = index
        self.name = name
        self.type = type
        self.display_name = display_name if display_name is not None else name.replace("_", "/")
        self.base = parts[0]
        self.quote = parts[1]
        self.display_precision = display_precision
        self.pip_location = pip_location
        self.trade_units_precision = trade_units_precision
        self.minimum_trade_size = minimum_trade_size
        self.maximum_order_units = maximum_order_units
        self.maximum_position_size = maximum_position_size
        self.margin_rate = margin_rate
        self.minimum_trailing_stop_distance = minimum_trailing_stop_distance
        self.maximum_trailing_stop_distance = maximum_trailing_stop_distance

    @property
    def price_tick(self):
        """Smallest price step at PRICE_SCALE (10**(9 - display_precision))."""
        return 10 ** (9 - self.display_precision)

    def parse_price(self, text):
        """Price text at this instrument's precision -> int at PRICE_SCALE."""
        return _parse_price(text, self.display_precision)

    def format_price(self, value):
        """int at PRICE_SCALE -> text padded to display_precision (v20 style)."""
        return _format_price(value, self.display_precision)

    def check_price(self, value):
        """Raise FixedPointError(PRECISION_EXCEEDED) if an integer price is finer
        than this instrument's tick; returns the value for chaining."""
        _format_price(value, self.display_precision)
        return value

    def to_v20(self):
        return {
            "name": self.name,
            "type": self.type,
            "displayName": self.display_name,
            "pipLocation": self.pip_location,
            "displayPrecision": self.display_precision,
            "tradeUnitsPrecision": self.trade_units_precision,
            "minimumTradeSize": _format_units(self.minimum_trade_size),
            "maximumOrderUnits": _format_units(self.maximum_order_units),
            "maximumPositionSize": _format_units(self.maximum_position_size),
            "minimumTrailingStopDistance": _format_price(
                self.minimum_trailing_stop_distance, self.display_precision),
            "maximumTrailingStopDistance": _format_price(
                self.maximum_trailing_stop_distance, self.display_precision),
            "marginRate": _format_rate(self.margin_rate),
        }

    def __repr__(self):
        return f"Instrument({self.name!r}, index={self.index})"


def _from_v20(int index, dict d):
    missing = [k for k in _REQUIRED if k not in d]
    name = d.get("name", f"#{index}")
    if missing:
        raise InstrumentDataError(f"instrument {name}: missing fields {missing}")
    for k in ("pipLocation", "displayPrecision", "tradeUnitsPrecision"):
        if type(d[k]) is not int:
            raise InstrumentDataError(f"instrument {name}: {k} must be an integer, got {d[k]!r}")
    prec = d["displayPrecision"]
    if not 0 <= prec <= 9:
        raise InstrumentDataError(f"instrument {name}: displayPrecision={prec} outside 0..9")
    try:
        return Instrument(
            index=index,
            name=name,
            type=d["type"],
            display_name=d.get("displayName"),
            display_precision=prec,
            pip_location=d["pipLocation"],
            trade_units_precision=d["tradeUnitsPrecision"],
            minimum_trade_size=_parse_units(d["minimumTradeSize"]),
            maximum_order_units=_parse_units(d["maximumOrderUnits"]),
            maximum_position_size=_parse_units(d.get("maximumPositionSize", "0")),
            margin_rate=_parse_rate(d["marginRate"]),
            minimum_trailing_stop_distance=_parse_price(d["minimumTrailingStopDistance"], prec),
            maximum_trailing_stop_distance=_parse_price(d["maximumTrailingStopDistance"], prec),
        )
    except (FixedPointError, TypeError) as e:
        raise InstrumentDataError(f"instrument {name}: {e}") from e


cdef class InstrumentTable:
    """Instruments in file order, by name and by small int index."""

    def __cinit__(self):
        self.n = 0
        self.display_precision = NULL
        self.price_tick = NULL
        self.minimum_trade_size = NULL
        self.maximum_order_units = NULL
        self.margin_rate = NULL
        self.base_ccy = NULL
        self.quote_ccy = NULL

    def __init__(self, instruments):
        cdef Instrument it
        cdef int j
        items = list(instruments)
        by_name = {}
        ccys = {}
        for i, inst in enumerate(items):
            if not isinstance(inst, Instrument):
                raise TypeError(f"expected Instrument, got {type(inst).__name__}")
            if (<Instrument>inst).index != i:
                raise InstrumentDataError(
                    f"instrument {inst.name} has index {inst.index}, expected {i}")
            if inst.name in by_name:
                raise InstrumentDataError(f"duplicate instrument {inst.name}")
            by_name[inst.name] = i
            for c in (inst.base, inst.quote):
                if c not in ccys:
                    ccys[c] = len(ccys)
        cdef int n = len(items)
        cdef size_t m = n if n > 0 else 1
        self.display_precision = <int32_t*>malloc(m * sizeof(int32_t))
        self.base_ccy = <int32_t*>malloc(m * sizeof(int32_t))
        self.quote_ccy = <int32_t*>malloc(m * sizeof(int32_t))
        self.price_tick = <int64_t*>malloc(m * sizeof(int64_t))
        self.minimum_trade_size = <int64_t*>malloc(m * sizeof(int64_t))
        self.maximum_order_units = <int64_t*>malloc(m * sizeof(int64_t))
        self.margin_rate = <int64_t*>malloc(m * sizeof(int64_t))
        if (self.display_precision == NULL or self.base_ccy == NULL or self.quote_ccy == NULL
                or self.price_tick == NULL or self.minimum_trade_size == NULL
                or self.maximum_order_units == NULL or self.margin_rate == NULL):
            raise MemoryError()
        for j in range(n):
            it = items[j]
            self.display_precision[j] = it.display_precision
            self.price_tick[j] = _TICKS[it.display_precision]
            self.minimum_trade_size[j] = it.minimum_trade_size
            self.maximum_order_units[j] = it.maximum_order_units
            self.margin_rate[j] = it.margin_rate
            self.base_ccy[j] = ccys[it.base]
            self.quote_ccy[j] = ccys[it.quote]
        self.n = n
        self._items = items
        self._by_name = by_name
        self.currencies = tuple(ccys)
        self._ccy_index = ccys

    def __dealloc__(self):
        free(self.display_precision)
        free(self.price_tick)
        free(self.minimum_trade_size)
        free(self.maximum_order_units)
        free(self.margin_rate)
        free(self.base_ccy)
        free(self.quote_ccy)

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(self._items)

    def __contains__(self, name):
        return name in self._by_name

    def __getitem__(self, str name):
        try:
            return self._items[self._by_name[name]]
        except KeyError:
            raise KeyError(f"unknown instrument {name!r}") from None

    cpdef int index(self, str name) except -1:
        """Small int index of an instrument name (KeyError naming it if unknown)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown instrument {name!r}") from None

    cpdef Instrument by_index(self, int i):
        if i < 0 or i >= self.n:
            raise IndexError(f"instrument index {i} outside 0..{self.n - 1}")
        return self._items[i]

    @property
    def names(self):
        return tuple(it.name for it in self._items)

    def currency_index(self, str code):
        """Small int index of a currency among the instruments' base/quote
        currencies (KeyError naming it if no instrument uses it)."""
        try:
            return self._ccy_index[code]
        except KeyError:
            raise KeyError(f"unknown currency {code!r}") from None

    def to_v20(self):
        return {"instruments": [it.to_v20() for it in self._items]}

    def __repr__(self):
        return f"InstrumentTable({self.n} instruments)"


def load_instruments(path=None):
    """Load the v20-shaped instrument file (default: the packaged
    ``fastexec/data/instruments.json``). Accepts ``{"instruments": [...]}`` (the
    v20 response body) or a bare list."""
    if path is None:
        text = resources.files("fastexec").joinpath("data/instruments.json").read_text("utf-8")
    else:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("instruments")
    if not isinstance(data, list):
        raise InstrumentDataError("instrument file must hold a list under 'instruments'")
    items = []
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            raise InstrumentDataError(f"instrument #{i} is not an object")
        items.append(_from_v20(i, d))
    return InstrumentTable(items)
