"""Time as a parameter: the only module that reads the wall clock.

Every expiry, skew and window check takes a :class:`Clock`, so tests can freeze
or move time without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

#: Allowed clock skew, in seconds, when checking ``iat``/``nbf``/``exp`` of
#: assertions minted by other parties (RFC 7523 §3 lets the server pick it).
MAX_CLOCK_SKEW = 60


class Clock(Protocol):
    """Something that tells the current time in seconds since the epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()


class FrozenClock:
    """A clock that only moves when told to (tests, demos)."""

    def __init__(self, at: float = 1_800_000_000.0) -> None:
        self._at = at

    def now(self) -> float:
        return self._at

    def advance(self, seconds: float) -> None:
        self._at += seconds

    def set(self, at: float) -> None:
        self._at = at
