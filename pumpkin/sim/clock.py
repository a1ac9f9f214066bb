"""Virtual time and the event queue: nothing here reads a real clock or sleeps.

Events due at the same virtual instant fire in the order they were scheduled (a sequence number breaks ties), so
a run depends only on what was scheduled, never on hash order or wall time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class Clock:
    """Virtual seconds; calling it reads the time, as ``time.monotonic`` would."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now = start_s

    def __call__(self) -> float:
        return self.now


class Handle:
    """A scheduled callback; ``cancel()`` stops it from firing."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """``call_soon``/``call_later`` on virtual time (the asyncio loop's interface); ``run(until)`` fires what is due."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._queue: list[tuple[float, int, Handle, Callable[[], object]]] = []
        self._seq = itertools.count()
        self.fired = 0

    def call_soon(self, callback: Callable[[], object]) -> Handle:
        return self.call_later(0.0, callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Handle:
        handle = Handle()
        heapq.heappush(self._queue, (self.clock.now + max(0.0, delay), next(self._seq), handle, callback))
        return handle

    def call_at(self, when: float, callback: Callable[[], object]) -> Handle:
        return self.call_later(when - self.clock.now, callback)

    def run(self, until: float) -> None:
        """Advance virtual time to ``until``, firing every callback due on the way, in time order."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            when, _, handle, callback = heapq.heappop(queue)
            if when > self.clock.now:
                self.clock.now = when
            if not handle.cancelled:
                self.fired += 1
                callback()
        self.clock.now = max(self.clock.now, until)

    def run_for(self, seconds: float) -> None:
        self.run(self.clock.now + seconds)

    def pending(self) -> int:
        """Callbacks still queued (cancelled ones included until their time comes)."""
        return len(self._queue)


class SkewedClock:
    """One node's view of virtual time: ``offset_s`` ahead, and running at ``rate`` (1.05: 5% fast), as a host's
    monotonic clock may. Calling it reads the node's time."""

    def __init__(self, clock: Clock, offset_s: float = 0.0, rate: float = 1.0) -> None:
        self.clock = clock
        self.offset_s = offset_s
        self.rate = rate
        self._origin = clock.now  # the skew counts from the node's start

    def __call__(self) -> float:
        return self._origin + self.offset_s + (self.clock.now - self._origin) * self.rate


class SkewedScheduler:
    """A node's timers on its own clock: a delay of d of its seconds is d / rate of virtual time."""

    def __init__(self, scheduler: Scheduler, rate: float) -> None:
        self.scheduler = scheduler
        self.rate = rate

    def call_soon(self, callback: Callable[[], object]) -> Handle:
        return self.scheduler.call_soon(callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Handle:
        return self.scheduler.call_later(delay / self.rate, callback)
