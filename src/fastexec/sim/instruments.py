"""Per-instrument data the venue precomputes once, so the fill path reads
plain slots instead of parsing decimal strings or walking dicts.

Instrument properties come from the core's instrument table
(``fastexec._core.instruments``, docs/contracts.md §2) when it is built; the
packaged ``instruments.json`` is read directly otherwise, through the same
fixed-point parsers, so both sources give identical integers.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Optional

from .fixed import parse_price, parse_rate, parse_units

_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "instruments.json")


class SimInstrument:
    """What the venue needs about one instrument, as ints at the contract scales."""

    __slots__ = (
        "index",
        "name",
        "type",
        "base",
        "quote",
        "display_precision",
        "pip_location",
        "unit",
        "pip",
        "minimum_trade_size",
        "maximum_order_units",
        "margin_rate",
        "minimum_trailing_stop_distance",
        "maximum_trailing_stop_distance",
        "v20",
    )

    def __init__(self, index: int, d: dict):
        self.index = index
        self.name = d["name"]
        self.type = d.get("type", "CURRENCY")
        self.base, _, self.quote = self.name.partition("_")
        self.display_precision = int(d["displayPrecision"])
        self.pip_location = int(d["pipLocation"])
        if int(d.get("tradeUnitsPrecision", 0)) != 0:
            raise ValueError(f"{self.name}: tradeUnitsPrecision > 0 is not supported (whole units only)")
        # one step of the price grid (10**-displayPrecision) at PRICE_SCALE
        self.unit = 10 ** (9 - self.display_precision)
        self.pip = 10 ** (9 + self.pip_location)
        self.minimum_trade_size = parse_units(d.get("minimumTradeSize", "1"))
        self.maximum_order_units = parse_units(d.get("maximumOrderUnits", "100000000"))
        self.margin_rate = parse_rate(d.get("marginRate", "0.05"))
        p = self.display_precision
        self.minimum_trailing_stop_distance = parse_price(d.get("minimumTrailingStopDistance", "0"), p)
        self.maximum_trailing_stop_distance = parse_price(d.get("maximumTrailingStopDistance", "1000000"), p)
        self.v20 = {k: v for k, v in d.items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"SimInstrument({self.name})"


def _from_core(path: Optional[str]) -> Optional[list]:
    """The core's instrument table as v20 dicts, or None before it is built."""
    try:
        from fastexec._core.instruments import load_instruments  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - only before the core is built
        return None
    table = load_instruments(path)
    out = []
    for inst in table:
        d = inst.to_v20()
        sim = SimInstrument(0, d)
        # one source of truth: the core and the simulator must read the same integers
        assert (sim.margin_rate, sim.minimum_trade_size, sim.display_precision) == (
            inst.margin_rate, inst.minimum_trade_size, inst.display_precision), inst.name
        out.append(d)
    return out


def load_sim_instruments(path: Optional[str] = None, names: Optional[Iterable[str]] = None) -> list[SimInstrument]:
    """Instruments in file order (v20 ``Instrument`` shape), optionally filtered.

    Read through the core's instrument table when it is built (so the
    simulator refuses exactly what the engine refuses), else from the JSON.
    """
    raw = _from_core(path)
    if raw is None:
        with open(path or _DATA, "rb") as f:
            doc = json.load(f)
        raw = doc["instruments"] if isinstance(doc, dict) else doc
    if names is not None:
        wanted = set(names)
        raw = [d for d in raw if d["name"] in wanted]
    return [SimInstrument(i, d) for i, d in enumerate(raw)]
