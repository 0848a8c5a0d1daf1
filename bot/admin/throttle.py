"""Slowing down guesses of the admin token, per client address.

The token's length is the real defence; this makes guessing a short one slow and noisy. Every
failure (a wrong login or a wrong bearer token) costs its client a pause, and an address with
too many failures in a window is refused outright until the window has passed. State is kept in
memory, per worker: a shared store would be needed for exact limits across workers, which is
more than a brake on guessing needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_FAILURES = 10
WINDOW_SECONDS = 300.0
FAILURE_DELAY_SECONDS = 0.5
MAX_TRACKED_ADDRESSES = 10_000  # bounds memory under a flood of spoofed addresses


@dataclass(slots=True)
class _Failures:
    first: float
    count: int


class LoginThrottle:
    """Counts failed admin authentications per address within a fixed window."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 delay: float = FAILURE_DELAY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.delay = delay  # the caller sleeps this long after each failure
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    def _current(self, address: str) -> _Failures | None:
        entry = self._failures.get(address)
        if entry is not None and self._clock() - entry.first >= self.window:
            del self._failures[address]
            return None
        return entry

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it may try now."""
        entry = self._current(address)
        if entry is None or entry.count < self.max_failures:
            return None
        return max(0.0, entry.first + self.window - self._clock())

    def failed(self, address: str) -> int:
        """Record a failure; returns how many this address has in the current window."""
        entry = self._current(address)
        if entry is None:
            if len(self._failures) >= MAX_TRACKED_ADDRESSES:
                self._forget_oldest()
            entry = self._failures[address] = _Failures(first=self._clock(), count=0)
        entry.count += 1
        return entry.count

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _forget_oldest(self) -> None:
        now = self._clock()
        for address in [a for a, e in self._failures.items() if now - e.first >= self.window]:
            del self._failures[address]
        while len(self._failures) >= MAX_TRACKED_ADDRESSES:  # insertion order: oldest first
            del self._failures[next(iter(self._failures))]
