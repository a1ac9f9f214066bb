"""Packets waiting for a consumer: bounded FIFOs per state, each packet with an expiry time.

A packet waits either for any consumer of its state (none exists yet) or for one particular seed (it was
meant for that seed, whose replicas were all busy or unreachable). Each (state, seed) pair has its own FIFO,
so the router can hand a seed that has room again exactly the packets meant for it (``take``), oldest first,
without touching the others; ``release`` hands back whole states with the seed each packet waited for.
The bound (``max_per_state``) counts every packet of a state, whatever it waits for.
Pure bookkeeping driven by the caller's clock; the router decides when to park and when to release.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from .packet import Packet
from .tags import StateTag

Waiting = tuple[Packet, str | None]
_Key = tuple[StateTag, str | None]


class WaitingRoom:
    """FIFOs of packets with no consumer (or no free replica of their seed) yet, per (state, seed)."""

    def __init__(self, max_per_state: int, expiry_s: float) -> None:
        self.max_per_state = max_per_state
        self.expiry_s = expiry_s
        self._queues: dict[_Key, deque[tuple[float, Packet]]] = {}
        self._per_state: Counter[StateTag] = Counter()
        self._for_seed: Counter[StateTag] = Counter()  # packets of a state waiting for one particular seed
        self._total = 0
        self.taken: Counter[StateTag] = Counter()  # packets handed on by ``take``, per state: progress

    def park(self, packet: Packet, now: float, seed: str | None = None) -> bool:
        """Queue ``packet`` (for ``seed`` only, if given); False (nothing queued) when the state is full."""
        tag = packet.tag
        if self._per_state[tag] >= self.max_per_state:
            return False
        self._queues.setdefault((tag, seed), deque()).append((now + self.expiry_s, packet))
        self._count(tag, seed, 1)
        return True

    def take(self, tag: StateTag, seed: str, limit: int) -> list[Packet]:
        """Remove and return up to ``limit`` of the packets in ``tag`` waiting for ``seed``, oldest first."""
        queue = self._queues.get((tag, seed))
        if not queue:
            return []
        out = [queue.popleft()[1] for _ in range(min(limit, len(queue)))]
        if not queue:
            del self._queues[(tag, seed)]
        self._count(tag, seed, -len(out))
        self.taken[tag] += len(out)
        return out

    def waiting_for(self, tag: StateTag, seed: str | None) -> int:
        """How many packets of ``tag`` wait for ``seed`` (None: for any consumer)."""
        queue = self._queues.get((tag, seed))
        return len(queue) if queue else 0

    def tags_for(self, seed: str) -> list[StateTag]:
        """The states holding packets that wait for ``seed``."""
        return [t for (t, s) in self._queues if s == seed]

    def release(self, ready: Callable[[StateTag], bool]) -> list[Waiting]:
        """Remove and return, oldest first per queue, the packets of every state for which ``ready`` holds."""
        out: list[Waiting] = []
        for key in [k for k in self._queues if ready(k[0])]:
            queue = self._queues.pop(key)
            out.extend((p, key[1]) for _, p in queue)
            self._count(key[0], key[1], -len(queue))
        return out

    def expire(self, now: float) -> list[Packet]:
        """Remove and return the packets whose time is up."""
        out: list[Packet] = []
        for key, queue in list(self._queues.items()):
            before = len(out)
            while queue and queue[0][0] <= now:
                out.append(queue.popleft()[1])
            self._count(key[0], key[1], before - len(out))
            if not queue:
                del self._queues[key]
        return out

    def busy(self, tag: StateTag) -> int:
        """Packets of ``tag`` waiting for a particular seed (its replicas had no room): a backlog to throttle."""
        return self._for_seed[tag]

    def in_state(self, tag: StateTag) -> int:
        """Packets of ``tag`` waiting, whatever for: a pile to throttle its producers on."""
        return self._per_state.get(tag, 0)

    def any_busy(self) -> bool:
        """True when some packet waits for a particular seed."""
        return bool(self._for_seed)

    def counts(self) -> dict[str, int]:
        """Waiting packets per state."""
        return {str(t): n for t, n in self._per_state.items() if n}

    def peek(self, tag: StateTag, limit: int = 20) -> list[Packet]:
        """Up to ``limit`` of the packets waiting in ``tag``, oldest first."""
        found = sorted((e for (t, _), q in self._queues.items() if t == tag for e in q), key=lambda e: e[0])
        return [p for _, p in found[:limit]]

    def __len__(self) -> int:
        return self._total

    def _count(self, tag: StateTag, seed: str | None, delta: int) -> None:
        self._per_state[tag] += delta
        if not self._per_state[tag]:
            del self._per_state[tag]
        if seed is not None:
            self._for_seed[tag] += delta
            if not self._for_seed[tag]:
                del self._for_seed[tag]
        self._total += delta
