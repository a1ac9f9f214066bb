"""The intake journal: packets from outside (rx files, ``pmk inject``) are made durable before they are accepted.

A packet is written here, fsynced, before its source file leaves the drop folder and before ``pmk inject``
answers; it stays until this node is finished with its lineage, and a restart routes again every entry that
was not finished. So a crash (``kill -9``, power loss) at any moment neither loses an accepted packet nor
injects a file twice: each entry records the identity of its source file (name, size, mtime, sha256), and a
file still in the drop folder that matches an entry was accepted already and is only moved on.

Layout of ``<workdir>/journal/``, one *batch* per group commit::

    <batch>.jrn    JSON lines, one entry each: {"entry": "<batch>.<n>", "source": {...} | null,
                   "packets": [document, ...]} (the file form of ``packet``). Written to a temporary name,
                   fsynced, renamed and the folder fsynced: a batch is there whole or not at all.
    <batch>.done   ids of this batch's entries finished since, one per line (fsynced at the next commit).

A batch's files are deleted when every entry in it is finished and its source has left the drop folder.
Many callers share one commit (one fsync per batch, not per file); commits run on a thread. Each entry is
written as JSON on its own: one that cannot be (a number past 64 bits, nesting deeper than orjson writes) is
refused alone (``Unwritable``), and the others of its commit are accepted.

*Finished* means nothing of the entry's lineages is held on this node any more (each lineage's ``Custody``,
see ``custody``, was released): each packet made from it was extracted (and its tx result file is durable,
when there is a tx folder), dropped by a seed, kept in failed/ (durably), acknowledged by the peer it was
sent to (which acknowledges only once what it made is safe in turn), or saved to pending/ at a clean stop.
Packets being processed at a crash are routed again at the restart, so seeds may see them twice; the tx
folder's files are written idempotently, and a result already there is not made again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import PacketError
from .packet import IdMaker, Packet, from_document, to_document

log = logging.getLogger(__name__)


class Unwritable(OSError):
    """One item the journal cannot write as JSON; only that item is refused, never the rest of its commit.

    An OSError, as every other reason an item is not accepted, so callers of ``add`` need one handler.
    """


@dataclass(frozen=True)
class Source:
    """Identity of a file in the drop folder: a file matching all four was accepted already."""

    rel: str
    size: int
    mtime_ns: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        """The journal's form."""
        return {"rel": self.rel, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}


@dataclass
class Entry:
    """One accepted unit (a file's packets, or one ``pmk inject``): which lineages it waits for."""

    id: str
    batch: str
    source: Source | None
    open: set[str] = field(default_factory=set)  # lineages this node still holds packets of
    moved: bool = False  # the source has left the drop folder (always true without a source)
    packets: list[Packet] = field(default_factory=list)  # only for entries read back at start-up

    @property
    def finished(self) -> bool:
        """True when no packet of this entry is held here any more."""
        return not self.open


def fsync_dir(path: Path) -> None:
    """Make the names in ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Durable intake entries under ``root``; ``add`` on the loop, commits on a thread."""

    def __init__(
        self, root: Path, group: str, ids: IdMaker, spawn: Callable[..., asyncio.Task[None]] | None = None
    ) -> None:
        """``spawn(name, run, critical=...)`` starts the committer (a daemon's supervisor; a plain task if None)."""
        self._spawn = spawn
        self.root = root
        self.group = group
        self.ids = ids
        self.entries: dict[str, Entry] = {}
        self.batches: dict[str, set[str]] = {}  # batch -> ids of its entries not yet done and moved
        self.commits = 0
        self._adds: list[tuple[Entry, list[Packet], asyncio.Future[None]]] = []
        self._closing = False
        self._done: dict[str, list[str]] = {}
        self._drop: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- start-up ----------------------------------------------------------------------------------

    def recover(self) -> list[Entry]:
        """Read what the last run left (blocking; before ``start``): every entry not yet done and moved.

        Entries come back oldest first, with their packets; ``moved`` is unknown after a crash, so it is
        False for entries with a source until the drop folder has been looked at again.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink()  # a commit that did not complete: its callers were never told it was durable
        found: list[Entry] = []
        for jrn in sorted(self.root.glob("*.jrn")):
            batch = jrn.stem
            done_file = jrn.with_suffix(".done")
            done = set(done_file.read_text().split()) if done_file.exists() else set()
            found += self._recovered(batch, self._read_entries(jrn, batch, done))
        return found

    def _read_entries(self, jrn: Path, batch: str, done: set[str]) -> Iterator[Entry]:
        """The entries of journal file ``jrn``; a line that cannot be read is logged and skipped."""
        for number, line in enumerate(jrn.read_bytes().splitlines(), 1):
            try:
                yield self._entry_from(batch, orjson.loads(line), done)
            except (PacketError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                # Only a bug or a disk fault gets here: a commit is renamed into place whole.
                log.error("journal %s line %d cannot be read (%s); that entry is skipped", jrn, number, exc)

    def _recovered(self, batch: str, entries: Iterable[Entry]) -> list[Entry]:
        """Register ``batch``'s unfinished ``entries`` (and those whose rx file may still have to be moved on) and
        return them; a batch left with none is dropped."""
        found: list[Entry] = []
        for entry in entries:
            if entry.finished and entry.source is None:
                continue
            self._register(entry)
            found.append(entry)
        if found:
            self.batches[batch] = {entry.id for entry in found}
        else:
            self._drop.append(batch)
        return found

    def _entry_from(self, batch: str, record: dict[str, Any], done: set[str]) -> Entry:
        src = record.get("source")
        source = Source(src["rel"], int(src["size"]), int(src["mtime_ns"]), str(src["sha256"])) if src else None
        entry = Entry(str(record["entry"]), batch, source, moved=source is None)
        if entry.id not in done:
            entry.packets = [from_document(doc, self.group, self.ids) for doc in record["packets"]]
            entry.open = {p.lineage for p in entry.packets}
        return entry

    def _register(self, entry: Entry) -> None:
        self.entries[entry.id] = entry

    def start(self) -> None:
        """Start committing (on the running loop)."""
        if self._spawn is None:
            self._task = asyncio.create_task(self._committer(), name="journal")
        else:  # critical: a journal that stopped committing would leave every intake waiting forever
            self._task = self._spawn("journal", self._committer, critical=True)
        if self._drop:
            self._wake.set()

    async def close(self) -> None:
        """Commit what is queued, then stop (idempotent)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # -- the loop side ----------------------------------------------------------------------------

    async def add(self, items: list[tuple[Source | None, list[Packet]]]) -> list[Entry]:
        """Make each item (a source and its packets) durable; returns their entries once they are on disk.

        Raises OSError when the commit failed (disk full, I/O error): then nothing was accepted; ``Unwritable``
        when an item cannot be written (then only that item was not accepted: ``add_each`` says which).
        """
        results = await self.add_each(items)
        for result in results:
            if isinstance(result, Unwritable):
                raise result
        return [r for r in results if isinstance(r, Entry)]

    async def add_each(self, items: list[tuple[Source | None, list[Packet]]]) -> list[Entry | Unwritable]:
        """``add``, with each item's own outcome: its entry once durable, or why it cannot be written.

        Raises OSError when the commit itself failed (disk full, I/O error): then nothing was accepted.
        """
        if self._closing:
            raise OSError("the journal is closing")
        loop = asyncio.get_running_loop()
        entries = [Entry("", "", source, {p.lineage for p in pkts}, moved=source is None) for source, pkts in items]
        futures: list[asyncio.Future[None]] = [loop.create_future() for _ in items]
        self._adds.extend(zip(entries, (pkts for _, pkts in items), futures, strict=True))
        self._wake.set()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        results: list[Entry | Unwritable] = []
        for entry, outcome in zip(entries, outcomes, strict=True):
            if isinstance(outcome, Unwritable):
                results.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results.append(entry)
        return results

    def release(self, entry: Entry, lineage: str) -> None:
        """The custody of ``entry``'s packets of ``lineage`` was released: nothing of them is held here any more."""
        if lineage not in entry.open:
            return
        entry.open.discard(lineage)
        if entry.finished:
            self._done.setdefault(entry.batch, []).append(entry.id)
            self._wake.set()
            self._retire(entry)

    def moved(self, entry: Entry) -> None:
        """The entry's source file has left the drop folder (durably)."""
        entry.moved = True
        self._retire(entry)

    def _retire(self, entry: Entry) -> None:
        if not (entry.finished and entry.moved):
            return
        self.entries.pop(entry.id, None)
        live = self.batches.get(entry.batch)
        if live is None:
            return
        live.discard(entry.id)
        if not live:
            del self.batches[entry.batch]
            self._drop.append(entry.batch)
        self._wake.set()

    def unfinished(self) -> int:
        """Entries whose packets are still on their way (for ``pmk stats``)."""
        return sum(1 for e in self.entries.values() if not e.finished)

    # -- commits ----------------------------------------------------------------------------------

    async def _committer(self) -> None:
        while not (self._closing and not (self._adds or self._done or self._drop)):
            await self._wake.wait()
            self._wake.clear()
            adds, self._adds = self._adds, []
            done, self._done = self._done, {}
            drop, self._drop = self._drop, []
            batch = f"{time.time_ns():020d}-{self.ids.ship}"
            records = []
            for i, (entry, pkts, _) in enumerate(adds):
                entry.id, entry.batch = f"{batch}.{i}", batch
                records.append(
                    {
                        "entry": entry.id,
                        "source": entry.source.as_json() if entry.source else None,
                        "packets": [to_document(p) for p in pkts],
                    }
                )
            if not (adds or done or drop):
                continue
            try:
                refused = await asyncio.to_thread(self._commit, batch, records, done, drop)
            except Exception as exc:  # noqa: BLE001 - callers must hear of any failure, not wait forever
                log.error("journal commit failed in %s: %s; %d source(s) not accepted", self.root, exc, len(adds))
                for _, _, fut in adds:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, OSError) else OSError(str(exc)))
                continue
            self.commits += 1
            written = [add for i, add in enumerate(adds) if i not in refused]
            if written:
                self.batches[batch] = {entry.id for entry, _, _ in written}
            for i, (entry, _, fut) in enumerate(adds):
                if i in refused:
                    if not fut.done():
                        fut.set_exception(Unwritable(f"cannot be written to the journal as JSON: {refused[i]}"))
                    continue
                self._register(entry)
                if not fut.done():
                    fut.set_result(None)

    def _commit(
        self, batch: str, records: list[dict[str, Any]], done: dict[str, list[str]], drop: list[str]
    ) -> dict[int, str]:
        """Write one batch, append finish records, delete retired batches (on a thread); returns the records
        that could not be written as JSON (index -> why), which were left out."""
        lines: list[bytes] = []
        refused: dict[int, str] = {}
        for i, record in enumerate(records):
            try:
                lines.append(orjson.dumps(record) + b"\n")
            except TypeError as exc:  # orjson: an int past 64 bits, nesting past 254 levels, a non-JSON value
                refused[i] = str(exc)
        if lines:
            final = self.root / f"{batch}.jrn"
            tmp = final.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        for name, ids in done.items():
            if name in drop:
                continue
            with open(self.root / f"{name}.done", "a", encoding="utf-8") as fh:
                fh.write("".join(i + "\n" for i in ids))
                fh.flush()
                os.fsync(fh.fileno())
        for name in drop:
            (self.root / f"{name}.jrn").unlink(missing_ok=True)
            (self.root / f"{name}.done").unlink(missing_ok=True)
        fsync_dir(self.root)
        return refused
