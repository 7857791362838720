"""Time, injected: code that needs "now" takes a Clock, so tests never sleep or patch globals."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "FrozenClock", "SystemClock", "now_utc"]


class Clock(Protocol):
    """A source of the current time in seconds since the epoch."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...


def now_utc(clock: Clock) -> datetime:
    """The clock's time, as the aware datetime rows store."""
    return datetime.fromtimestamp(clock.now(), UTC)


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, at: float = 1_800_000_000.0) -> None:
        self.at = at

    def now(self) -> float:
        """The frozen time."""
        return self.at

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.at += seconds
