"""Latency samples per operation, kept cheap enough for the hot path.

Recording is one list store into a fixed ring (no allocation once warm, no
formatting); percentiles are computed only when someone asks, from the most
recent ``capacity`` samples. Counters are plain ints in a dict.
"""
from __future__ import annotations

from .hotpath import LatencyRing  # compiled: the engine adds one sample per submit from C


class Performance:
    """One ring per operation name and a flat counter table."""

    __slots__ = ("rings", "counters")

    def __init__(self) -> None:
        self.rings: dict[str, LatencyRing] = {}
        self.counters: dict[str, int] = {}

    def ring(self, name: str) -> LatencyRing:
        ring = self.rings.get(name)
        if ring is None:
            ring = self.rings[name] = LatencyRing()
        return ring

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def completed(self) -> int:
        """Samples recorded so far over every operation: a monotonic count of
        completed operations (what ``BusyPoller`` watches for activity)."""
        return sum(ring._count for ring in self.rings.values())

    def snapshot(self) -> dict:
        return {
            "latency": {name: ring.summary() for name, ring in sorted(self.rings.items())},
            "counters": dict(sorted(self.counters.items())),
        }
