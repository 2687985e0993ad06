"""Latency samples per operation, kept cheap enough for the hot path.

Recording is one list store into a fixed ring (no allocation once warm, no
formatting); percentiles are computed only when someone asks, from the most
recent ``capacity`` samples. Counters are plain ints in a dict.
"""
from __future__ import annotations


class LatencyRing:
    __slots__ = ("_buf", "_pos", "_count", "_cap")

    def __init__(self, capacity: int = 8192) -> None:
        self._buf = [0] * capacity
        self._cap = capacity
        self._pos = 0
        self._count = 0

    def add(self, ns: int) -> None:
        pos = self._pos
        self._buf[pos] = ns
        pos += 1
        self._pos = 0 if pos == self._cap else pos
        self._count += 1

    def summary(self) -> dict:
        n = min(self._count, self._cap)
        if n == 0:
            return {"count": 0}
        data = sorted(self._buf[:n])

        def pct(p: int) -> int:
            # nearest-rank percentile: the smallest sample with at least p% at or below it
            idx = max(0, -(-p * n // 100) - 1)
            return data[idx]

        return {
            "count": self._count,
            "p50_ns": pct(50),
            "p95_ns": pct(95),
            "p99_ns": pct(99),
            "max_ns": data[-1],
        }


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

    def snapshot(self) -> dict:
        return {
            "latency": {name: ring.summary() for name, ring in sorted(self.rings.items())},
            "counters": dict(sorted(self.counters.items())),
        }
