"""How often a growing answer may be written to a platform.

The first piece goes out as soon as it exists: the user has only a placeholder until then, and
a second spent waiting there is a second added to every answer (the load harness measured
820 ms of hub-added time to the first visible text when the wait began at the placeholder).
After that, writes are at most one per `interval`, within the platforms' edit limits.
"""

from __future__ import annotations

import time


class EditThrottle:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None  # nothing of the answer written yet

    def due(self) -> bool:
        """Whether a write may go out now."""
        return self._last is None or time.monotonic() - self._last >= self.interval

    def wrote(self) -> None:
        self._last = time.monotonic()
