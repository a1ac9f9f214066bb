"""Packets waiting for a consumer: one bounded FIFO per state, each packet with an expiry time.

A packet may wait for any consumer of its state, or for one particular seed (it was meant for that seed,
whose replicas were all busy or unreachable): ``release`` hands back the seed with the packet.
Pure bookkeeping driven by the caller's clock; the router decides when to park and when to release.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .packet import Packet
from .tags import StateTag

Waiting = tuple[Packet, str | None]


class WaitingRoom:
    """Per-state FIFOs of packets with no consumer (or no free replica of their seed) yet."""

    def __init__(self, max_per_state: int, expiry_s: float) -> None:
        self.max_per_state = max_per_state
        self.expiry_s = expiry_s
        self._queues: dict[StateTag, deque[tuple[float, Packet, str | None]]] = {}

    def park(self, packet: Packet, now: float, seed: str | None = None) -> bool:
        """Queue ``packet`` (for ``seed`` only, if given); False (nothing queued) when the state's queue is full."""
        queue = self._queues.setdefault(packet.tag, deque())
        if len(queue) >= self.max_per_state:
            return False
        queue.append((now + self.expiry_s, packet, seed))
        return True

    def release(self, ready: Callable[[StateTag], bool]) -> list[Waiting]:
        """Remove and return, oldest first per state, the packets of every state for which ``ready`` holds."""
        out: list[Waiting] = []
        for tag in [t for t in self._queues if ready(t)]:
            out.extend((p, s) for _, p, s in self._queues.pop(tag))
        return out

    def expire(self, now: float) -> list[Packet]:
        """Remove and return the packets whose time is up."""
        out: list[Packet] = []
        for tag, queue in list(self._queues.items()):
            while queue and queue[0][0] <= now:
                out.append(queue.popleft()[1])
            if not queue:
                del self._queues[tag]
        return out

    def counts(self) -> dict[str, int]:
        """Waiting packets per state."""
        return {str(t): len(q) for t, q in self._queues.items()}

    def peek(self, tag: StateTag, limit: int = 20) -> list[Packet]:
        """Up to ``limit`` of the packets waiting in ``tag``, oldest first."""
        return [p for _, p, _ in list(self._queues.get(tag, ()))[:limit]]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())
