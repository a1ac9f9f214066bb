"""The link model: how long a message takes, and whether it is lost, duplicated or held back to arrive late.

Every random choice is drawn from the one ``random.Random`` the wire is given, so a run replays from its seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol


class Latency(Protocol):
    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class Fixed:
    """Always ``seconds``."""

    seconds: float

    def sample(self, rng: random.Random) -> float:
        return self.seconds


@dataclass(frozen=True)
class Uniform:
    """Between ``low_s`` and ``high_s``, all equally likely."""

    low_s: float
    high_s: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low_s, self.high_s)


@dataclass(frozen=True)
class Normal:
    """Normal around ``mean_s``; never below ``floor_s`` (a message cannot arrive before it left)."""

    mean_s: float
    stdev_s: float
    floor_s: float = 0.0

    def sample(self, rng: random.Random) -> float:
        return max(self.floor_s, rng.gauss(self.mean_s, self.stdev_s))


@dataclass(frozen=True)
class LogNormal:
    """Long-tailed, as real networks are: median ``median_s``, spread ``sigma`` (of the underlying normal)."""

    median_s: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median_s), self.sigma)


@dataclass(frozen=True)
class Link:
    """One direction of a link: latency, and the chances that a message is lost, duplicated or held back.

    A held-back (reordered) message gets ``reorder_delay`` added, so later messages overtake it.
    """

    latency: Latency = field(default_factory=lambda: Fixed(0.001))
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: Latency = field(default_factory=lambda: Uniform(0.0, 0.05))

    def fate(self, rng: random.Random) -> list[float]:
        """The delays of the copies that arrive: ``[]`` when lost, two when duplicated."""
        if self.loss and rng.random() < self.loss:
            return []
        copies = 2 if self.duplicate and rng.random() < self.duplicate else 1
        delays = []
        for _ in range(copies):
            delay = self.latency.sample(rng)
            if self.reorder and rng.random() < self.reorder:
                delay += self.reorder_delay.sample(rng)
            delays.append(delay)
        return delays
