"""One grid of times for a daemon's periodic work, so that an idle daemon wakes once per heartbeat.

A daemon's periodic work (the mesh's heartbeat, reading beacons on a crowded LAN, reading the host's cards, the
expiry sweep, sending beacons) each had a timer of its own: ~16 wake-ups a second among 50 idle daemons, and on
these machines a wake-up of an idle process costs ~95 us of CPU whatever it then does (a bare asyncio loop with
a timer at 16 Hz: 0.15% of a core), more than the work itself. Due on one grid, they share a wake-up: asyncio runs
every timer that is due when it wakes.

Each daemon's grid is offset by a phase of its own, so that the daemons of one host do not all wake at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Ticks:
    """The times ``phase + k * period`` (``period``: the heartbeat), in the clock of the loop that uses them."""

    period: float
    phase: float = 0.0

    @classmethod
    def random_phase(cls, period: float) -> Ticks:
        return cls(period, random.uniform(0.0, period))

    def nearest(self, t: float) -> float:
        """The tick nearest to ``t``: ``nearest(now + d)`` for a ``d`` of half a period or more is a tick at least
        ``d - period / 2`` from now, so that work done a little late or early is neither run twice nor skipped."""
        return self.phase + round((t - self.phase) / self.period) * self.period

    def after(self, now: float, delay: float) -> float:
        """When to do what is due ``delay`` after ``now``: the tick nearest to it, never before ``now`` (at least
        ``delay - period / 2`` later). A delay under half a period is not aligned: ``now + delay``."""
        if delay < self.period / 2:
            return now + delay
        return self.nearest(now + delay)

    def wait(self, now: float, delay: float) -> float:
        """How long to sleep from ``now`` for ``after(now, delay)``."""
        return self.after(now, delay) - now
