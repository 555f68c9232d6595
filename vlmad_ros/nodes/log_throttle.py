"""
Throttled logging that works on every rclpy.

rclpy's own `throttle_duration_sec` raises "Requested logging filters cannot be changed between
calls" on Kilted when called repeatedly from one line (seen here), so nodes throttle per key.
"""
from __future__ import annotations

import time
from typing import Callable, Dict


class LogThrottle:
    """Call `log(text)` at most once per `period` seconds (wall clock) for each key."""

    def __init__(self, period: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period, self.clock = period, clock
        self._last: Dict[str, float] = {}
        self.suppressed: Dict[str, int] = {}

    def __call__(self, log: Callable[[str], None], key: str, text: str) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        skipped = self.suppressed.pop(key, 0)
        self._last[key] = now
        log(text + (f' ({skipped} more since the last report)' if skipped else ''))
        return True
