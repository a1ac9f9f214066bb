"""What this node heard through discovery, for ``pmk doctor``: by which ways each node was heard and when, how far
its clock is from ours, whether our own beacons come back, and other daemons that use this node's id.

Fed every origin discovery reports (before the mesh judges it); holds one small record per node id heard, so a
flood of made-up ids is bounded by ``MAX_NODES`` (the oldest are forgotten first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .messages import Origin, wall_clock

#: Node ids remembered at most (a stranger inventing ids cannot grow this without end).
MAX_NODES = 1024
#: Other users of our id remembered at most.
MAX_DUPLICATES = 16


@dataclass
class Heard:
    """One node, as discovery heard it."""

    first: float = 0.0  # when first heard (monotonic)
    ways: dict[str, float] = field(default_factory=dict)  # via -> when last heard (monotonic)
    offset_s: float | None = None  # its wall clock minus ours when its last beacon came (one LAN trip included)
    endpoint: str = ""


class Hearing:
    """Records discovery's news; ``facts`` is what ``pmk doctor`` reads."""

    def __init__(
        self,
        me: Callable[[], Origin],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = wall_clock,
    ) -> None:
        """``me()``: this node's origin (id, incarnation, endpoints); ``clock``/``wall``: monotonic and wall time."""
        self.me = me
        self.clock = clock
        self.wall = wall
        self.nodes: dict[str, Heard] = {}
        self.own: dict[str, float] = {}  # via -> when our own beacon or card came back
        self.duplicates: dict[tuple[str, int], tuple[str, float]] = {}  # (endpoint, inc) -> (via, when)

    def heard(self, origin: Origin, via: str) -> None:
        """Discovery reported ``origin`` by ``via`` (broadcast, supernode, mdns, local)."""
        now = self.clock()
        me = self.me()
        endpoint = origin.tcp or origin.ipc or ""
        if origin.id == me.id:
            ours = origin.inc == me.inc if origin.inc else (origin.tcp, origin.ipc) == (me.tcp, me.ipc)
            if ours:
                self.own[via] = now
            elif (endpoint, origin.inc) in self.duplicates or len(self.duplicates) < MAX_DUPLICATES:
                self.duplicates[(endpoint, origin.inc)] = (via, now)
            return
        record = self.nodes.pop(origin.id, None) or Heard(first=now)
        self.nodes[origin.id] = record  # re-inserted: the dict stays ordered oldest news first
        if len(self.nodes) > MAX_NODES:
            del self.nodes[next(iter(self.nodes))]
        record.ways["direct" if origin.direct else via] = now
        record.endpoint = endpoint or record.endpoint
        if origin.wall:
            record.offset_s = origin.wall - self.wall()

    def facts(self) -> dict[str, Any]:
        """JSON-ready: ages in seconds of every way each node was heard, clock offsets, our echoes, duplicates."""
        now = self.clock()
        return {
            "nodes": {
                node: {
                    "heard_for_s": round(now - h.first, 3),
                    "ways": {via: round(now - at, 3) for via, at in h.ways.items()},
                    "offset_s": None if h.offset_s is None else round(h.offset_s, 3),
                    "endpoint": h.endpoint,
                }
                for node, h in self.nodes.items()
            },
            "own": {via: round(now - at, 3) for via, at in self.own.items()},
            "duplicates": [
                {"endpoint": endpoint, "incarnation": inc, "via": via, "age_s": round(now - at, 3)}
                for (endpoint, inc), (via, at) in self.duplicates.items()
            ],
        }
