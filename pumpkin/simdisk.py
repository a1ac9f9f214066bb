"""A simulated node's disk: what it made durable (its intake journal, its tx folder) outlives its crashes.

A crash loses what was not yet committed, as on a real machine: an entry is durable once its group commit
completes (``COMMIT_S`` of virtual time after it was queued, an fsync's worth), a tx result file ``TX_WRITE_S``
after its extractor ran. ``SimJournal`` is the daemon's ``journal.Journal`` with its file I/O replaced: the same
entries, the same JSON lines per batch and ``.done`` records, the same release and retire logic, and the same
reading back at start-up (entries not finished are routed again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from .journal import Entry, Journal
from .packet import IdMaker, Packet, to_document

#: One group commit: write, fsync, rename (the journal's batches are small; an fsync here takes ~2 ms).
COMMIT_S = 0.002
#: A tx result file written and fsynced.
TX_WRITE_S = 0.002


class Scheduler(Protocol):
    """What the simulated disk needs of the event queue (``pumpkin.sim.clock.Scheduler``)."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> object: ...


@dataclass
class Disk:
    """The files of one node's working directory that matter after a crash, by name."""

    journal: dict[str, bytes] = field(default_factory=dict)  # "<batch>.jrn" / "<batch>.done" -> content
    tx: set[tuple[str, str]] = field(default_factory=set)  # (extractor, packet id) result files
    commits: int = 0


class SimJournal(Journal):
    """The intake journal of one incarnation, on a ``Disk``; commits on the virtual clock, one at a time."""

    def __init__(self, disk: Disk, group: str, ids: IdMaker, scheduler: Scheduler, alive: Callable[[], bool]) -> None:
        """``alive()``: False once this incarnation crashed (its commit in progress never completes)."""
        super().__init__(Path("/nonexistent-simulated-journal"), group, ids)
        self.disk = disk
        self.scheduler = scheduler
        self.alive = alive
        self._waiting: list[tuple[list[Packet], Callable[[Entry], None]]] = []
        self._due = False

    # -- what the node calls -------------------------------------------------------------------------------------

    def submit(self, packets: list[Packet], then: Callable[[Entry], None]) -> None:
        """Make ``packets`` one durable entry; ``then(entry)`` once committed (never, if the node crashes first)."""
        self._waiting.append((packets, then))
        self._kick()

    def recover(self) -> list[Entry]:
        """What the disk holds unfinished, oldest first, with its packets (``Journal.recover`` on the Disk)."""
        found: list[Entry] = []
        for name in sorted(n for n in self.disk.journal if n.endswith(".jrn")):
            batch = name.removesuffix(".jrn")
            done = set(self.disk.journal.get(f"{batch}.done", b"").decode().split())
            lines = self.disk.journal[name].splitlines()
            found += self._recovered(batch, (self._entry_from(batch, orjson.loads(line), done) for line in lines))
        if self._drop:
            self._kick()
        return found

    # -- the journal's hooks -------------------------------------------------------------------------------------

    def _retire(self, entry: Entry) -> None:
        super()._retire(entry)
        self._kick()

    def release(self, entry: Entry, lineage: str) -> None:
        super().release(entry, lineage)
        self._kick()

    def _kick(self) -> None:
        if not self._due and (self._waiting or self._done or self._drop):
            self._due = True
            self.scheduler.call_later(COMMIT_S, self._commit_now)

    def _commit_now(self) -> None:
        """One group commit (``Journal._committer``'s turn, with the Disk for files)."""
        self._due = False
        if not self.alive():
            return  # crashed while writing: nothing of this commit reached the disk
        adds, self._waiting = self._waiting, []
        done, self._done = self._done, {}
        drop, self._drop = self._drop, []
        self.disk.commits += 1
        batch = f"{self.disk.commits:020d}-{self.ids.ship}"
        entries: list[tuple[Entry, list[Packet], Callable[[Entry], None]]] = []
        lines = []
        for i, (packets, then) in enumerate(adds):
            entry = Entry(f"{batch}.{i}", batch, None, {p.lineage for p in packets}, moved=True)
            record: dict[str, Any] = {"entry": entry.id, "source": None, "packets": [to_document(p) for p in packets]}
            lines.append(orjson.dumps(record) + b"\n")
            entries.append((entry, packets, then))
        if lines:
            self.disk.journal[f"{batch}.jrn"] = b"".join(lines)
            self.batches[batch] = {e.id for e, _, _ in entries}
        for name, ids in done.items():
            if name not in drop:
                key = f"{name}.done"
                self.disk.journal[key] = self.disk.journal.get(key, b"") + "".join(i + "\n" for i in ids).encode()
        for name in drop:
            self.disk.journal.pop(f"{name}.jrn", None)
            self.disk.journal.pop(f"{name}.done", None)
        self.commits += 1
        for entry, _, then in entries:
            self._register(entry)
            then(entry)
        self._kick()
