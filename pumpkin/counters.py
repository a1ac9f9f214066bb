"""What each local seed did, counted in one place: ``pmk stats``, the page and ``/metrics`` all read these (through
``NodeQuery``), and nothing else counts the same things, so they cannot disagree.

The router updates a seed's counters on the event loop as its runs finish (one writer: no lock):

- ``runs``: invocations of its code that finished (a consuming seed: one per packet; an injector: one per call);
- ``processed``: a consuming seed's packets taken in and finished, whether they succeeded or failed; an injector's
  packets made (each one it emitted, whether it went on or failed), so for an injector it never counts its runs;
- ``emitted``: packets it made that went on (emissions that failed are not);
- ``failed``: every failure that names the seed, by kind, one for each record failed/ keeps for it (``failures``
  is their sum): a run that raised, data that cannot travel, an undeclared state, a file it could not get;
- ``busy_s`` and ``latency``: how long its code ran, in total and as a histogram of one run's time, measured by
  the one ``perf_counter`` pair the runner already takes around each run.

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
class Histogram:
    """Observations counted per bucket of ``LATENCY_BUCKETS_S`` (one more for +Inf), and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation: the first bucket whose bound is at least ``seconds``."""
        self.counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at most that long) per bucket, +Inf last: Prometheus's form."""
        out, total = [], 0
        for bound, n in zip((*LATENCY_BUCKETS_S, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


@dataclass(slots=True)
class SeedCounters:
    """One local seed's counters (see the module documentation for what each counts)."""

    runs: int = 0
    processed: int = 0
    emitted: int = 0
    busy_s: float = 0.0
    failed: Counter[str] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)

    @property
    def failures(self) -> int:
        """Failures that name this seed, of every kind."""
        return sum(self.failed.values())

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

    def of(self, seed: str) -> SeedCounters:
        """``seed``'s counters (made at zero the first time)."""
        c = self.seeds.get(seed)
        if c is None:
            c = self.seeds[seed] = SeedCounters()
        return c

    def ran(self, seed: str, seconds: float, packet: bool, timed: bool = True) -> None:
        """A run of ``seed`` finished after ``seconds``; ``packet``: it had an input packet (not an injector's
        call); ``timed``: it really ran (False: its packet failed before it could, e.g. its file was missing)."""
        c = self.of(seed)
        c.runs += 1
        if packet:
            c.processed += 1
        if timed:
            c.busy_s += seconds
            c.latency.observe(seconds)

    def made(self, seed: str, n: int = 1) -> None:
        """An injector made ``n`` packets (they count as what it processed)."""
        self.of(seed).processed += n

    def emitted(self, seed: str) -> None:
        """``seed`` made a packet that went on."""
        self.of(seed).emitted += 1

    def failed(self, seed: str, kind: str) -> None:
        """A failure of ``kind`` that names ``seed`` was kept."""
        self.of(seed).failed[kind] += 1

    def emitted_by(self) -> dict[str, int]:
        """Packets each seed made that went on."""
        return {n: c.emitted for n, c in self.seeds.items()}
