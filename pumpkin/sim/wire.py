"""The simulated wire: puts messages on links, decides their fate, and writes it all down in the history.

It knows nothing of what a message means: the caller passes a callback that hands the message over on arrival.
Partitions and crashed nodes are the wire's business, since both decide whether a message gets through.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from typing import Any

from pumpkin.sim.clock import Scheduler
from pumpkin.sim.history import History, Record
from pumpkin.sim.links import Link


class Wire:
    """Links between named nodes, a partition (groups that cannot hear each other), and which nodes are down."""

    def __init__(self, scheduler: Scheduler, rng: random.Random, history: History, default: Link | None = None) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.history = history
        self.default = default or Link()
        self.links: dict[tuple[str, str], Link] = {}
        self.down: set[str] = set()
        self._group: dict[str, int] = {}  # node -> its side of the partition; absent: no partition
        self._ids = itertools.count(1)
        self._last_arrival: dict[tuple[str, str], float] = {}  # per link, for ``send(..., fifo=True)``
        self.sent = 0
        self.delivered = 0

    def set_link(self, a: str, b: str, link: Link, both_ways: bool = True) -> None:
        self.links[(a, b)] = link
        if both_ways:
            self.links[(b, a)] = link

    def partition(self, *groups: Iterable[str]) -> None:
        """From now on, nodes in different groups cannot reach each other (nodes in no group reach everyone)."""
        sides = [sorted(g) for g in groups]
        self._group = {node: i for i, side in enumerate(sides) for node in side}
        self.history.add(Record(self.scheduler.clock.now, "partition", data={"groups": sides}))

    def heal(self) -> None:
        self._group = {}
        self.history.add(Record(self.scheduler.clock.now, "heal"))

    def cut(self, src: str, dst: str) -> bool:
        a, b = self._group.get(src), self._group.get(dst)
        return a is not None and b is not None and a != b

    def send(
        self, src: str, dst: str, kind: str, data: dict[str, Any], arrive: Callable[[], object], fifo: bool = False
    ) -> int:
        """Put a message on the wire; ``arrive()`` runs at each copy's arrival unless ``dst`` is down then.
        ``fifo``: the link is a stream (TCP): a message never arrives before one sent earlier on it, whatever
        the latencies drawn (without it, jitter alone reorders messages, as datagrams are)."""
        now = self.scheduler.clock.now
        mid = next(self._ids)
        self.sent += 1
        history = self.history
        history.add(Record(now, "send", src, dst, kind, mid, data=data))
        if src in self.down:
            history.add(Record(now, "drop", src, dst, kind, mid, "sender down"))
            return mid
        if self.cut(src, dst):
            history.add(Record(now, "drop", src, dst, kind, mid, "partition"))
            return mid
        delays = self.links.get((src, dst), self.default).fate(self.rng)
        if not delays:
            history.add(Record(now, "drop", src, dst, kind, mid, "loss"))
        if fifo and delays:
            link = (src, dst)
            # (1 ns after the one before at least: a time recomputed as now + delay may round below it.)
            at = max(now + delays[0], self._last_arrival.get(link, 0.0) + 1e-9)
            self._last_arrival[link] = at
            delays = [at - now for _ in delays]
        for delay in delays:

            def land(mid: int = mid) -> None:
                t = self.scheduler.clock.now
                if dst in self.down:
                    history.add(Record(t, "drop", src, dst, kind, mid, "receiver down"))
                    return
                self.delivered += 1
                history.add(Record(t, "deliver", dst, src, kind, mid))
                arrive()

            self.scheduler.call_later(delay, land)
        return mid
