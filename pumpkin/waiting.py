"""Packets waiting for a consumer: FIFOs per (state, seed), each packet with an expiry time.

A packet waits either for any consumer of its state (none exists yet) or for one particular seed (it was
meant for that seed, whose replicas were all busy or unreachable). Each (state, seed) pair has its own FIFO,
so the router can hand a seed that has room again exactly the packets meant for it (``take``), oldest first,
without touching the others; ``release`` hands back whole states with the seed each packet waited for, and
``hand_out`` does the same lazily, for routing them again.

Memory holds at most ``max_in_memory`` waiting packets, across all states; past that they spill to disk
(a ``Disk``: ``spool.Spool``) until its quota is used up, and only then does ``park`` refuse. A queue is its oldest
packets in memory followed by its younger ones on disk: once a queue has spilled, its new packets go to disk
too until its disk part has been read back, so every queue stays first in, first out. Memory freed by
``take``, ``hand_out``, ``release`` or ``expire`` is filled again with the oldest spilled packets, read back
in chunks.
Every count (``counts``, ``busy``, ``waiting_for``, ``len``) includes spooled packets.
Expiry looks only at queues whose oldest packet is due: a heap holds each queue's head deadline, so a sweep
over thousands of idle queues costs nothing until one of them expires (packets of a queue expire in the order
they came: one expiry time for all, from one monotonic clock).
Bookkeeping driven by the caller's clock (the spool does the file I/O); the router decides when to park
and when to release.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterator
from itertools import islice
from operator import itemgetter
from typing import Any, Protocol

from .packet import Packet
from .tags import StateTag

Waiting = tuple[Packet, str | None]
#: (expiry, packet): a waiting packet as the room keeps it.
Entry = tuple[float, Packet]
_Key = tuple[StateTag, str | None]

# Spilled packets are read back once this much memory (or all of it, if less) is free: a few large read-backs
# rather than one per packet taken (the router takes one packet at a time).
READ_BACK_CHUNK = 256


class DiskQueue(Protocol):
    """One queue's spilled packets, a FIFO of entries (``spool.SpoolQueue``)."""

    def __len__(self) -> int: ...

    def append(self, expiry: float, packet: Packet) -> bool:
        """Add at the back; False (nothing kept) when the quota would be exceeded."""

    def head_expiry(self) -> float | None:
        """The expiry of the oldest entry, None when empty."""

    def read(self, limit: int, until: float | None = None) -> list[Entry]:
        """Remove and return up to ``limit`` entries, oldest first (only those expiring by ``until``, if given)."""

    def unread(self, entry: Entry) -> None:
        """Put ``entry`` back at the front."""

    def peek(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries from the front, left in place."""

    def close(self) -> None:
        """Forget every entry (and free what they took)."""


class Disk(Protocol):
    """Where waiting packets past memory spill, within a quota (``spool.Spool``)."""

    max_bytes: int
    used_bytes: int

    def queue(self, seed: str | None) -> DiskQueue:
        """A new, empty queue of packets waiting for ``seed``."""


class WaitingRoom:
    """FIFOs of packets with no consumer (or no free replica of their seed) yet, per (state, seed)."""

    def __init__(self, max_in_memory: int, expiry_s: float, spool: Disk | None = None) -> None:
        self.max_in_memory = max_in_memory
        self.expiry_s = expiry_s
        self.spool = spool
        # A queue's key is in _queues while it holds packets; its memory part may be empty while it has a
        # disk part. A disk part holds only packets younger than every one in the memory part.
        self._queues: dict[_Key, deque[Entry]] = {}
        self._disk: dict[_Key, DiskQueue] = {}
        self._in_memory = 0
        self._per_state: Counter[StateTag] = Counter()
        self._for_seed: Counter[StateTag] = Counter()  # packets of a state waiting for one particular seed
        self._total = 0
        self.taken: Counter[StateTag] = Counter()  # packets handed on by ``take``, per state: progress
        # Deadlines: (when the head of a queue expires, tie-breaker, key), a heap; _due holds each queue's live
        # entry there, and entries that no longer match it (the head was taken meanwhile) are skipped when popped.
        self._deadlines: list[tuple[float, int, _Key]] = []
        self._due: dict[_Key, float] = {}
        self._seq = itertools.count()
        self.version = 0  # changes whenever a count does: views computed from the counts are cached on it
        self._views: dict[object, tuple[int, object]] = {}
        self._handed: tuple[_Key, Entry] | None = None  # the packet ``hand_out`` has just handed out
        self._came_back = False

    @property
    def in_memory(self) -> int:
        """Waiting packets held in memory (the rest are spooled)."""
        return self._in_memory

    def park(self, packet: Packet, now: float, seed: str | None = None) -> bool:
        """Queue ``packet`` (for ``seed`` only, if given); False (nothing queued) when memory and spool are full."""
        key = (packet.tag, seed)
        handed = self._handed
        if handed is not None and handed[1][1] is packet and handed[0] == key:
            self._put_back(key, handed[1])
            return True
        entry = (now + self.expiry_s, packet)
        if not self._store(key, entry):
            if self._in_memory >= self.max_in_memory or not self._disk:
                return False
            # The quota is used up but memory is not quite full (read back in chunks): read back what fits,
            # which may empty this queue's disk part, and try once more.
            self._read_back(at_least=1)
            if not self._store(key, entry):
                return False
        self._count(key, 1)
        return True

    def why_full(self) -> str:
        """Why ``park`` refuses packets (when it does), for the failure reason."""
        held = f"{self.max_in_memory} packets already wait in memory (routing.waiting_max_packets)"
        if self.spool is None or self.spool.max_bytes <= 0:
            return f"{held} and spilling to disk is off (routing.spool_max_bytes = 0)"
        used, quota = self.spool.used_bytes, self.spool.max_bytes
        return f"{held} and the spool holds {used} of its {quota} bytes on disk (routing.spool_max_bytes)"

    def take(self, tag: StateTag, seed: str, limit: int) -> list[Packet]:
        """Remove and return up to ``limit`` of the packets in ``tag`` waiting for ``seed``, oldest first."""
        key = (tag, seed)
        queue = self._queues.get(key)
        if queue is None:
            return []
        out = [queue.popleft()[1] for _ in range(min(limit, len(queue)))]
        self._in_memory -= len(out)
        disk = self._disk.get(key)
        if disk is not None and len(out) < limit:
            out.extend(p for _, p in disk.read(limit - len(out)))
        self._count(key, -len(out))
        self.taken[tag] += len(out)
        self._tidy(key)
        self._read_back()
        return out

    def waiting_for(self, tag: StateTag, seed: str | None) -> int:
        """How many packets of ``tag`` wait for ``seed`` (None: for any consumer)."""
        return self._size((tag, seed))

    def tags_for(self, seed: str) -> list[StateTag]:
        """The states holding packets that wait for ``seed``."""
        return [t for (t, s) in self._queues if s == seed]

    def release(self, ready: Callable[[StateTag], bool]) -> list[Waiting]:
        """Remove and return, oldest first per queue, the packets of every state for which ``ready`` holds.

        Spooled packets too, all at once: to route a backlog again, ``hand_out`` reads it back as it goes.
        """
        return list(self.hand_out(ready))

    def hand_out(self, ready: Callable[[StateTag], bool]) -> Iterator[Waiting]:
        """Remove and hand out, oldest first per queue, the packets of every state for which ``ready`` holds.

        Lazily: a packet leaves as it is handed out, so a spooled backlog is read back only as it is routed
        again. A packet parked again for the very queue it was handed out from goes back to its front, with
        its expiry, and ends that queue's turn: its seed has no room, so neither would the rest, which stay as
        they are (in memory or on disk) instead of being read back and spooled again.
        """
        return self._hand_out([(k, self._size(k)) for k in self._queues if ready(k[0])])

    def expire(self, now: float, limit: int | None = None) -> list[Packet]:
        """Remove and return the packets whose time is up (looking only at queues whose head is due); at most
        ``limit`` of them, the oldest queues' first (the rest stay for the next call)."""
        out: list[Packet] = []
        heap = self._deadlines
        most = len(self) if limit is None else limit
        while heap and heap[0][0] <= now and len(out) < most:
            due, _, key = heapq.heappop(heap)
            if self._due.get(key) != due:
                continue  # stale: that queue's head changed since, and has an entry of its own
            del self._due[key]
            queue = self._queues.get(key)
            if queue is None:
                continue
            before = len(out)
            while queue and queue[0][0] <= now and len(out) < most:
                out.append(queue.popleft()[1])
            self._in_memory -= len(out) - before
            disk = self._disk.get(key)
            if not queue and disk is not None:  # the disk part is younger: only once the memory part is gone
                head = disk.head_expiry()
                while head is not None and head <= now and len(out) < most:
                    out.extend(p for _, p in disk.read(min(READ_BACK_CHUNK, most - len(out)), until=now))
                    head = disk.head_expiry()
            self._count(key, before - len(out))
            self._tidy(key)
            self._schedule(key)
        if out:
            self._read_back()
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
        return dict(self._view("counts", lambda: {str(t): n for t, n in self._per_state.items() if n}))

    def largest(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` states with the most waiting packets, fullest first, and their counts."""
        return list(
            self._view(
                ("largest", n),
                lambda: [(str(t), c) for t, c in heapq.nlargest(n, self._per_state.items(), key=itemgetter(1))],
            )
        )

    def state_count(self) -> int:
        """How many states have packets waiting."""
        return len(self._per_state)

    def _view(self, name: object, make: Callable[[], Any]) -> Any:
        """``make()``, computed again only once the counts have changed (the page asks four times a second)."""
        cached = self._views.get(name)
        if cached is None or cached[0] != self.version:
            cached = self._views[name] = (self.version, make())
        return cached[1]

    def peek(self, tag: StateTag, limit: int = 20) -> list[Packet]:
        """Up to ``limit`` of the packets waiting in ``tag``, oldest first (reading the spool if need be)."""
        found: list[Entry] = []
        for key, queue in self._queues.items():
            if key[0] != tag:
                continue
            found.extend(islice(queue, limit))
            disk = self._disk.get(key)
            if disk is not None and len(queue) < limit:
                found.extend(disk.peek(limit - len(queue)))
        found.sort(key=lambda e: e[0])
        return [p for _, p in found[:limit]]

    def drain(self, batch: int = 1000) -> Iterator[list[Waiting]]:
        """Remove and hand out every waiting packet with its seed, in lists of at most ``batch``, oldest first per
        queue, reading the spool only as the lists are taken: for a clean stop, which saves them elsewhere."""
        out: list[Waiting] = []
        for key in list(self._queues):
            queue, disk, seed = self._queues[key], self._disk.get(key), key[1]
            while self._size(key):
                n = min(batch - len(out), len(queue))
                part = [(queue.popleft()[1], seed) for _ in range(n)]
                self._in_memory -= n
                if disk is not None and len(part) < batch - len(out):
                    part.extend((p, seed) for _, p in disk.read(batch - len(out) - len(part)))
                self._count(key, -len(part))
                out.extend(part)
                if len(out) == batch:
                    yield out
                    out = []
            self._tidy(key)
        if out:
            yield out

    def __len__(self) -> int:
        return self._total

    # -- internals -------------------------------------------------------------------------------

    def _size(self, key: _Key) -> int:
        queue = self._queues.get(key)
        if queue is None:
            return 0
        disk = self._disk.get(key)
        return len(queue) + (len(disk) if disk is not None else 0)

    def _store(self, key: _Key, entry: Entry) -> bool:
        """Put ``entry`` at the back of its queue: in memory while there is room and the queue has not spilled."""
        if key not in self._queues:
            if not self._append(key, entry):
                return False
            self._schedule(key, entry[0])
            return True
        return self._append(key, entry)

    def _append(self, key: _Key, entry: Entry) -> bool:
        disk = self._disk.get(key)
        if disk is None and self._in_memory < self.max_in_memory:
            self._queues.setdefault(key, deque()).append(entry)
            self._in_memory += 1
            return True
        if disk is None:
            if self.spool is None:
                return False
            disk = self.spool.queue(key[1])
            if not disk.append(*entry):
                return False
            self._disk[key] = disk
        elif not disk.append(*entry):
            return False
        self._queues.setdefault(key, deque())
        return True

    def _hand_out(self, plan: list[tuple[_Key, int]]) -> Iterator[Waiting]:
        try:
            for key, n in plan:
                for _ in range(n):
                    entry = self._pop(key)
                    if entry is None:
                        break
                    self._handed, self._came_back = (key, entry), False
                    try:
                        yield entry[1], key[1]
                    finally:
                        self._handed = None
                        self._tidy(key)
                    if self._came_back:
                        break
        finally:
            self._read_back()

    def _pop(self, key: _Key) -> Entry | None:
        """The oldest entry of ``key``, removed (None when it is empty); its queue is not tidied."""
        queue = self._queues.get(key)
        if queue is None:
            return None
        if queue:
            self._in_memory -= 1
            entry = queue.popleft()
        else:
            disk = self._disk.get(key)
            got = disk.read(1) if disk is not None else []
            if not got:
                return None
            entry = got[0]
        self._count(key, -1)
        return entry

    def _put_back(self, key: _Key, entry: Entry) -> None:
        """``entry``, just handed out by ``hand_out``, came back: at the front again, where it was."""
        queue = self._queues.setdefault(key, deque())
        disk = self._disk.get(key)
        if disk is not None and not queue:
            disk.unread(entry)  # nothing older waits in memory: the disk part's front needs no room there
        else:
            queue.appendleft(entry)
            self._in_memory += 1
        self._count(key, 1)
        self._came_back = True
        if entry[0] < self._due.get(key, float("inf")):
            self._schedule(key, entry[0])

    def _tidy(self, key: _Key) -> None:
        """Forget the empty parts of ``key``'s queue."""
        disk = self._disk.get(key)
        if disk is not None and not len(disk):
            disk.close()
            del self._disk[key]
            disk = None
        queue = self._queues.get(key)
        if queue is not None and not queue and disk is None:
            del self._queues[key]
            self._due.pop(key, None)

    def _schedule(self, key: _Key, due: float | None = None) -> None:
        """Put ``key``'s head deadline (``due``, or the one its oldest packet has) on the heap."""
        if due is None:
            queue = self._queues.get(key)
            if queue is None:
                return
            if queue:
                due = queue[0][0]
            else:
                disk = self._disk.get(key)
                due = disk.head_expiry() if disk is not None else None
                if due is None:
                    return
        self._due[key] = due
        heapq.heappush(self._deadlines, (due, next(self._seq), key))
        if len(self._deadlines) > 2 * len(self._due) + 1024:  # many stale entries: keep the heap small
            self._deadlines = [(d, next(self._seq), k) for k, d in self._due.items()]
            heapq.heapify(self._deadlines)

    def _read_back(self, at_least: int = READ_BACK_CHUNK) -> None:
        """Fill freed memory with the oldest spilled packets, queue by queue in the order they spilled, once
        ``at_least`` packets fit (or the whole of memory, when it is smaller)."""
        room = self.max_in_memory - self._in_memory
        if not self._disk or room < min(at_least, self.max_in_memory) or room <= 0:
            return
        for key, disk in list(self._disk.items()):
            entries = disk.read(room)
            self._queues[key].extend(entries)
            self._in_memory += len(entries)
            room -= len(entries)
            self._tidy(key)
            if room <= 0:
                break

    def _count(self, key: _Key, delta: int) -> None:
        tag, seed = key
        self._per_state[tag] += delta
        if not self._per_state[tag]:
            del self._per_state[tag]
        if seed is not None:
            self._for_seed[tag] += delta
            if not self._for_seed[tag]:
                del self._for_seed[tag]
        self._total += delta
        self.version += 1
