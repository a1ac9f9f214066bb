"""What each local seed did, counted in one place: ``pmk stats``, the page and ``/metrics`` all read these (through
``NodeQuery``), and nothing else counts the same things, so they cannot disagree.

The router updates a seed's counters on the event loop as its runs finish (one writer: no lock):

- ``runs``: invocations of its code that finished (a consuming seed: one per packet; an injector: one per call);
- ``processed``: a consuming seed's packets taken in and finished, whether they succeeded or failed; an injector's
  packets made (each one it emitted, whether it went on or failed), so for an injector it never counts its runs;
- ``emitted``: packets it made that went on (emissions that failed are not);
- ``failed``: every failure that names the seed, by kind, one for each record failed/ keeps for it (``failures``
  is their sum): a run that raised, data that cannot travel, an undeclared state, a file it could not get;
- ``busy_s`` and ``buckets``: how long its code ran, in total and as a histogram of one run's time, measured by
  the one ``perf_counter`` pair the runner already takes around each run (a packet that failed before its seed
  could run it is a run, but not timed: the histogram's count is the timed runs).

Pure: no sockets, no clock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Upper bounds of the run-time histogram's buckets, in seconds (Prometheus's ``le``): from a quick in-process
#: seed (~10 µs) to a slow model (a minute); the last bucket, +Inf, takes the rest.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


@dataclass(slots=True)
class SeedCounters:
    """One local seed's counters (see the module documentation for what each counts).

    Kept lean: the router calls ``ran`` once per run and bumps ``emitted`` per packet on its hot path (one bisect
    and a few additions, ~0.5 µs a run here).
    """

    injector: bool = False
    runs: int = 0
    made: int = 0  # an injector's packets made (its processed)
    emitted: int = 0
    busy_s: float = 0.0  # the latency histogram's sum too
    failed: Counter[str] = field(default_factory=Counter)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))  # per bucket, +Inf last

    def ran(self, seconds: float) -> None:
        """A run finished after ``seconds`` of its code."""
        self.runs += 1
        self.busy_s += seconds
        self.buckets[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1  # the first bucket whose bound holds it

    def untimed(self) -> None:
        """A packet failed before its seed could run it (its file could not be fetched): a run, not timed."""
        self.runs += 1

    @property
    def processed(self) -> int:
        """A consuming seed's packets finished; an injector's packets made."""
        return self.made if self.injector else self.runs

    @property
    def failures(self) -> int:
        """Failures that name this seed, of every kind."""
        return sum(self.failed.values())

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound s, timed runs at most that long) per bucket, +Inf last: Prometheus's histogram form."""
        out, total = [], 0
        for bound, n in zip((*LATENCY_BUCKETS_S, float("inf")), self.buckets, strict=True):
            total += n
            out.append((bound, total))
        return out

    def view(self) -> dict[str, Any]:
        """JSON-ready, as ``pmk stats`` shows it under ``seeds``."""
        return {
            "runs": self.runs,
            "processed": self.processed,
            "emitted": self.emitted,
            "failures": self.failures,
            "failed": dict(self.failed),
            "busy_s": round(self.busy_s, 6),
        }


class SeedTally:
    """Every local seed's counters, by seed name; a seed is counted from its first event on."""

    def __init__(self) -> None:
        self.seeds: dict[str, SeedCounters] = {}

    def of(self, seed: str, injector: bool | None = None) -> SeedCounters:
        """``seed``'s counters (made at zero the first time); ``injector``, when given: whether it consumes nothing."""
        c = self.seeds.get(seed)
        if c is None:
            c = self.seeds[seed] = SeedCounters(bool(injector))
        elif injector is not None:
            c.injector = injector
        return c
