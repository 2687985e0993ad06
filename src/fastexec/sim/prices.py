"""Price sources for the simulated venue: a seeded random walk and tick replay.

Both produce ``(instrument, bid, ask, time_ns)`` with prices as ints at
PRICE_SCALE that lie on the instrument's price grid (displayPrecision), so a
fill price is always a price OANDA could have quoted. The random walk is
integer maths on grid steps driven by ``random.Random(seed)``: the same seed
gives the same ticks on every machine, which is what makes simulator runs
reproducible in tests.
"""
from __future__ import annotations

import csv
import io
import json
import random
from typing import Iterator, Optional, Sequence

from .fixed import parse_price
from .instruments import SimInstrument

# Typical mid prices and spreads (in grid steps, i.e. fractional pips for FX)
# so a fresh simulator quotes something that looks like a real market.
# EUR_USD starts at 1.10000 so the seed README's example (buy EUR_USD, stop
# loss 1.0950, take profit 1.1050) is accepted on a fresh simulator; the EUR
# crosses are the products/quotients of the USD legs so the book is coherent.
DEFAULT_MIDS = {
    "EUR_USD": "1.10000", "GBP_USD": "1.27000", "USD_JPY": "150.000", "USD_CHF": "0.88000",
    "AUD_USD": "0.66000", "USD_CAD": "1.36000", "NZD_USD": "0.61000", "EUR_GBP": "0.86600",
    "EUR_JPY": "165.000", "GBP_JPY": "190.500", "EUR_CHF": "0.96800", "AUD_JPY": "99.000",
    "EUR_AUD": "1.66700", "GBP_CHF": "1.11500", "CHF_JPY": "170.500", "EUR_CAD": "1.49600",
    "AUD_NZD": "1.08000", "XAU_USD": "2000.000",
}
DEFAULT_SPREAD_STEPS = {
    "EUR_USD": 14, "GBP_USD": 20, "USD_JPY": 14, "USD_CHF": 18, "AUD_USD": 16, "USD_CAD": 22,
    "NZD_USD": 22, "EUR_GBP": 18, "EUR_JPY": 20, "GBP_JPY": 30, "EUR_CHF": 22, "AUD_JPY": 20,
    "EUR_AUD": 30, "GBP_CHF": 40, "CHF_JPY": 30, "EUR_CAD": 30, "AUD_NZD": 30, "XAU_USD": 40,
}


class Tick(tuple):
    """``(instrument_name, bid, ask, time_ns)``; a tuple so replay stays cheap."""

    __slots__ = ()

    def __new__(cls, instrument: str, bid: int, ask: int, time_ns: int):
        return tuple.__new__(cls, (instrument, bid, ask, time_ns))

    instrument = property(lambda self: self[0])
    bid = property(lambda self: self[1])
    ask = property(lambda self: self[2])
    time_ns = property(lambda self: self[3])


class RandomWalk:
    """Seeded random walk of each instrument's mid on its price grid.

    Each step moves the mid by a whole number of grid steps drawn uniformly
    from ``[-max_step, max_step]`` (default one pip = 10 steps on FX) and
    jitters the spread by up to ±25% around its typical value; bid and ask are
    derived from the mid so ``ask - bid`` is always at least one grid step.
    """

    def __init__(
        self,
        instruments: Sequence[SimInstrument],
        seed: int = 1,
        *,
        mids: Optional[dict[str, int]] = None,
        spreads: Optional[dict[str, int]] = None,
        max_step: int = 10,
    ):
        self.rng = random.Random(seed)
        self.instruments = list(instruments)
        self.max_step = max_step
        self._mid_steps: list[int] = []
        self._spread_steps: list[int] = []
        for inst in self.instruments:
            if mids and inst.name in mids:
                mid = mids[inst.name]
            else:
                mid = parse_price(DEFAULT_MIDS.get(inst.name, "1." + "0" * inst.display_precision), inst.display_precision)
            self._mid_steps.append(mid // inst.unit)
            sp = (spreads or {}).get(inst.name) or DEFAULT_SPREAD_STEPS.get(inst.name, 20)
            self._spread_steps.append(max(1, sp))

    def quote(self, i: int) -> tuple[int, int]:
        """Current (bid, ask) of instrument at position ``i`` without stepping."""
        inst = self.instruments[i]
        mid = self._mid_steps[i]
        sp = self._spread_steps[i]
        bid = mid - sp // 2
        return bid * inst.unit, (bid + sp) * inst.unit

    def step(self, i: int) -> tuple[int, int]:
        """Advance one instrument by one random step; returns (bid, ask)."""
        rng = self.rng
        inst = self.instruments[i]
        mid = self._mid_steps[i] + rng.randint(-self.max_step, self.max_step)
        base = self._spread_steps[i]
        sp = max(1, base + rng.randint(-(base // 4), base // 4))
        if mid - sp // 2 <= 0:  # never walk to a non-positive price
            mid = self._mid_steps[i]
        self._mid_steps[i] = mid
        bid = mid - sp // 2
        return bid * inst.unit, (bid + sp) * inst.unit


def _parse_time_ns(value) -> int:
    """Tick times in replay files: int ns, decimal seconds, or RFC3339."""
    if isinstance(value, int):
        return value
    s = str(value).strip()
    if s.isdigit():
        return int(s)
    if "T" in s:
        from .render import parse_rfc3339

        return parse_rfc3339(s)
    whole, _, frac = s.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def read_ticks(path: str, instruments: dict[str, SimInstrument]) -> Iterator[Tick]:
    """Recorded ticks from CSV (``time,instrument,bid,ask``) or JSONL.

    JSONL lines may be flat (``{"time","instrument","bid","ask"}``) or v20
    stream price lines (``bids``/``asks`` lists); heartbeats are skipped.
    Prices are parsed at the instrument's precision, so a recording with more
    decimals than the instrument allows is refused rather than rounded.
    """
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".csv"):
        for row in csv.DictReader(io.StringIO(text)):
            inst = instruments[row["instrument"]]
            yield Tick(inst.name, parse_price(row["bid"], inst.display_precision),
                       parse_price(row["ask"], inst.display_precision), _parse_time_ns(row["time"]))
        return
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if d.get("type") == "HEARTBEAT":
            continue
        inst = instruments[d["instrument"]]
        if "bids" in d:
            bid_s, ask_s = d["bids"][0]["price"], d["asks"][0]["price"]
        else:
            bid_s, ask_s = d["bid"], d["ask"]
        yield Tick(inst.name, parse_price(bid_s, inst.display_precision),
                   parse_price(ask_s, inst.display_precision), _parse_time_ns(d["time"]))
