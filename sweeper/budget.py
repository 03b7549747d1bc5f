"""The hard time budget of one sweep, and a running estimate of call time.

The budget counts from process start (CONTRACT section 3), so a cron job with
a 300 s kill timer can set 280 s and know the process is gone before then.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

Clock = Callable[[], float]

# Seconds kept back at the end of the budget to cancel calls, release leases
# and flush writes; the sweep stops starting work this long before the deadline.
MAX_CLEANUP_RESERVE = 2.0


def process_age(clock: Clock = time.monotonic) -> float:
    """Seconds since this process started (0.0 where /proc is unavailable)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            system_up = float(uptime.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0
    started_ticks = int(fields[19])  # field 22 of stat, counted after "pid (comm)"
    age = system_up - started_ticks / os.sysconf("SC_CLK_TCK")
    return max(age, 0.0)


class Budget:
    """A deadline on a monotonic clock, with a reserve for clean-up."""

    def __init__(
        self, seconds: float, *, started_at: float | None = None, clock: Clock = time.monotonic
    ) -> None:
        self.clock = clock
        self.seconds = seconds
        self.started_at = clock() if started_at is None else started_at
        self.deadline = self.started_at + seconds
        self.reserve = min(MAX_CLEANUP_RESERVE, seconds * 0.1)

    @classmethod
    def from_process_start(cls, seconds: float) -> Budget:
        """A budget that started when the process did."""
        now = time.monotonic()
        return cls(seconds, started_at=now - process_age())

    def remaining(self) -> float:
        """Seconds until the hard deadline (negative once past)."""
        return self.deadline - self.clock()

    def working_remaining(self) -> float:
        """Seconds left for starting and finishing work, clean-up reserve excluded."""
        return self.remaining() - self.reserve

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.started_at


class CallTimer:
    """Exponentially weighted mean of observed call durations."""

    def __init__(self, initial: float = 0.0, weight: float = 0.3) -> None:
        self.estimate = initial
        self.weight = weight
        self.samples = 0

    def observe(self, seconds: float) -> None:
        """Fold one observed call duration into the estimate."""
        if self.samples == 0:
            self.estimate = seconds
        else:
            self.estimate += self.weight * (seconds - self.estimate)
        self.samples += 1
