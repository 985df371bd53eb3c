"""The only module that reads the time. Tests use `FakeClock` and advance it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

NS = 1_000_000_000
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now_ns(self) -> int: ...


class SystemClock:
    """Wall-clock time in Unix nanoseconds."""

    def now_ns(self) -> int:
        return time.time_ns()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start_ns: int = 1_700_000_000 * NS) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * NS)


def to_datetime(ns: int) -> datetime:
    """Unix ns to an aware datetime; 0 means unset and maps to Go's zero time."""
    if ns <= 0:
        return ZERO_TIME
    return datetime.fromtimestamp(ns / NS, tz=UTC)


def monotonic() -> float:
    """Monotonic seconds, for measuring waits."""
    return time.monotonic()
