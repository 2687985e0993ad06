"""Wall-clock time and the FX trading day.

The engine never calls ``time.time_ns()`` directly: it asks a clock, so tests
can inject time and cross the trading-day boundary deterministically.

OANDA's trading day (and its GFD expiry, and the daily loss window) rolls at
17:00 America/New_York, which is 21:00 or 22:00 UTC depending on US daylight
saving. ``TradingDay`` converts through the tz database rather than a fixed
offset so both sides of a DST change are right.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable
from zoneinfo import ZoneInfo

Clock = Callable[[], int]  # ns since the Unix epoch, UTC

NEW_YORK = ZoneInfo("America/New_York")
ROLL_HOUR = 17


def system_clock() -> int:
    return time.time_ns()


def ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).replace(microsecond=(ns // 1000) % 1_000_000)


def datetime_to_ns(value: datetime) -> int:
    """Naive datetimes are refused by the caller's validation; here we assume aware."""
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def trading_day_bounds(now_ns: int) -> tuple[int, int]:
    """(start_ns, end_ns) of the trading day containing ``now_ns``.

    The day that starts at 17:00 New York on date D ends at 17:00 on D+1; the
    end is exclusive, so a time exactly at 17:00 belongs to the new day.
    """
    local = ns_to_datetime(now_ns).astimezone(NEW_YORK)
    start_date = local.date()
    if local.hour < ROLL_HOUR:
        start_date -= timedelta(days=1)
    start = datetime(start_date.year, start_date.month, start_date.day, ROLL_HOUR, tzinfo=NEW_YORK)
    nxt = start_date + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, ROLL_HOUR, tzinfo=NEW_YORK)
    return datetime_to_ns(start), datetime_to_ns(end)
