"""Entry orders v20 cannot rest: stop-limit and trailing-stop.

v20's STOP with a priceBound cancels when the market gaps through the bound,
instead of leaving a limit order working, and v20 trails only exits. So the
engine keeps these orders itself and watches the price stream:

* stop-limit buy triggers when ask >= stop price (sell: bid <= stop price);
  it then becomes a LIMIT at the limit price.
* trailing-stop buy follows the lowest ask seen, trigger = lowest ask +
  distance, and fires when ask >= trigger (sell: highest bid - distance, fires
  when bid <= trigger); it then becomes a MARKET order.

Comparing buys with the ask and sells with the bid is v20's DEFAULT trigger
condition. A trigger fires exactly once: the engine removes the order from
the book before returning it, so a second tick cannot see it again.
"""
from __future__ import annotations

from typing import Optional

STOP_LIMIT = 1
TRAILING = 2


class Emulated:
    """Trigger state of one waiting emulated order."""

    __slots__ = ("order_id", "instrument", "buy", "kind", "stop_price", "distance", "best", "trigger", "expires_ns")

    def __init__(self, order_id: str, instrument: str, buy: bool, kind: int, stop_price: Optional[int],
                 distance: Optional[int], expires_ns: Optional[int]) -> None:
        self.order_id = order_id
        self.instrument = instrument
        self.buy = buy
        self.kind = kind
        self.stop_price = stop_price
        self.distance = distance
        self.best: Optional[int] = None
        self.trigger: Optional[int] = stop_price if kind == STOP_LIMIT else None
        self.expires_ns = expires_ns

    def observe(self, bid: int, ask: int) -> bool:
        """Update the trailing level with a new top of book; True if it fires now."""
        if self.buy:
            if self.kind == TRAILING:
                if self.best is None or ask < self.best:
                    self.best = ask
                    self.trigger = ask + self.distance
            return ask >= self.trigger
        if self.kind == TRAILING:
            if self.best is None or bid > self.best:
                self.best = bid
                self.trigger = bid - self.distance
        return bid <= self.trigger


class EmulationBook:
    """Waiting emulated orders, grouped by instrument for the tick path."""

    __slots__ = ("_by_instrument", "_by_id", "_expiring")

    def __init__(self) -> None:
        self._by_instrument: dict[str, dict[str, Emulated]] = {}
        self._by_id: dict[str, Emulated] = {}
        self._expiring = 0

    @property
    def has_expiry(self) -> bool:
        return self._expiring > 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, order_id: str) -> bool:
        return order_id in self._by_id

    def get(self, order_id: str) -> Optional[Emulated]:
        return self._by_id.get(order_id)

    def add(self, em: Emulated) -> None:
        self._by_id[em.order_id] = em
        if em.expires_ns is not None:
            self._expiring += 1
        self._by_instrument.setdefault(em.instrument, {})[em.order_id] = em

    def remove(self, order_id: str) -> Optional[Emulated]:
        em = self._by_id.pop(order_id, None)
        if em is not None:
            if em.expires_ns is not None:
                self._expiring -= 1
            bucket = self._by_instrument.get(em.instrument)
            if bucket is not None:
                bucket.pop(order_id, None)
        return em

    def candidates(self, instrument: str) -> list[Emulated]:
        """The waiting orders on ``instrument``, as a list the caller may
        iterate while orders leave the book."""
        bucket = self._by_instrument.get(instrument)
        return list(bucket.values()) if bucket else []

    def expired(self, now_ns: int) -> list[Emulated]:
        """GTD orders whose time has passed, removed from the book."""
        out = [em for em in self._by_id.values() if em.expires_ns is not None and em.expires_ns <= now_ns]
        for em in out:
            self.remove(em.order_id)
        return out

    def ids(self, instrument: Optional[str] = None) -> list[str]:
        if instrument is None:
            return list(self._by_id)
        return list(self._by_instrument.get(instrument, {}))
