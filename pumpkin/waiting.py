"""Packets waiting for a consumer: one bounded FIFO per state, each packet with an expiry time.

Pure bookkeeping driven by the caller's clock; the router decides when to park and when to release.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .packet import Packet
from .tags import StateTag


class WaitingRoom:
    """Per-state FIFOs of packets with no consumer yet."""

    def __init__(self, max_per_state: int, expiry_s: float) -> None:
        self.max_per_state = max_per_state
        self.expiry_s = expiry_s
        self._queues: dict[StateTag, deque[tuple[float, Packet]]] = {}

    def park(self, packet: Packet, now: float) -> bool:
        """Queue ``packet``; False (and nothing queued) when its state's queue is full."""
        queue = self._queues.setdefault(packet.tag, deque())
        if len(queue) >= self.max_per_state:
            return False
        queue.append((now + self.expiry_s, packet))
        return True

    def release(self, ready: Callable[[StateTag], bool]) -> list[Packet]:
        """Remove and return, oldest first per state, the packets of every state for which ``ready`` holds."""
        out: list[Packet] = []
        for tag in [t for t in self._queues if ready(t)]:
            out.extend(p for _, p in self._queues.pop(tag))
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
        return [p for _, p in list(self._queues.get(tag, ()))[:limit]]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())
