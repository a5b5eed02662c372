"""The seconds each phase of a long run took, for its report (``dpps night``, the testbed's
night): a phase ends at ``lap(name)`` and the next one begins there."""

from __future__ import annotations

import time


class Laps:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, name: str) -> None:
        """End the phase that began at the previous lap (or at creation) as ``name``."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self._clock, 2)
        self._clock = now
