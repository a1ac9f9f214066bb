"""The disk part of the waiting room: packets that do not fit in memory, in append-only segment files.

Layout: ``<workdir>/spool/<queue>-<segment>.jsonl`` (both numbers of 6 digits), one series of segments per
waiting queue. Each line is a packet's file form (``packet.to_document``: bytes data as ``data_base64``) with
two more keys, ``expiry`` (on the waiting room's clock) and ``seed`` (the seed it waits for, or null). A
packet's custody (a live object) stays in memory, a reference per spooled packet, and goes back on it when read. A queue
appends to its last segment and reads from its first; a new segment starts once the last one holds
``segment_bytes``, and a segment is deleted as soon as it has been read back whole. The quota (``max_bytes``)
counts the bytes of the files on disk, read or not, so it is what the folder really takes.

Open files are bounded too: a queue's writer (on its last segment) and reader (on its first) are opened when
used and closed again, least recently used first, past ``OPEN_FILES_MAX`` across the spool (a reader keeps its
offset). Thousands of states waiting at once (each a queue) would otherwise take as many descriptors, and a
64 KiB buffer each.

No more a durable store than memory: a waiting packet is in custody here, so whoever handed it over (a peer
waiting for the ACK, the intake journal) still holds it and sends or routes it again after a crash, and a clean
stop saves it to pending/. So nothing is fsynced, and the folder is emptied when the spool is made (what a crash
left there is junk).
An OSError here (the disk failing, the folder removed under us) is an infrastructure failure: it propagates.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict, deque
from pathlib import Path
from typing import BinaryIO

import orjson

from .custody import Custody
from .packet import IdMaker, Packet, from_document, to_document
from .tags import DEFAULT_GROUP
from .waiting import Entry

SEGMENT_BYTES = 4 << 20  # small enough that a half-read head segment wastes little of the quota
IO_BUFFER_BYTES = 64 << 10  # read back and write in chunks of this many bytes, not a system call per packet
OPEN_FILES_MAX = 64  # segment files open at once, across all queues (each with an IO_BUFFER_BYTES buffer)


class Spool:
    """A folder of spooled queues sharing one quota of ``max_bytes`` (0: nothing is ever spooled)."""

    def __init__(
        self, folder: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES, open_files_max: int = OPEN_FILES_MAX
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.open_files_max = open_files_max
        self.used_bytes = 0
        # The files open now, least recently used first: (queue number, "r" or "w") -> its queue.
        self._open: OrderedDict[tuple[int, str], SpoolQueue] = OrderedDict()
        self._next_queue = 0
        # Spooled packets always carry their id; from_document wants an IdMaker only for documents without one.
        self.ids = IdMaker("00000000")
        shutil.rmtree(folder, ignore_errors=True)  # what a crash left behind (see the module doc)
        folder.mkdir(parents=True, exist_ok=True)

    def queue(self, seed: str | None) -> SpoolQueue:
        """A new, empty queue of packets waiting for ``seed`` (None: for any consumer)."""
        self._next_queue += 1
        return SpoolQueue(self, self._next_queue, seed)

    @property
    def open_files(self) -> int:
        """Segment files open now."""
        return len(self._open)

    def _using(self, queue: SpoolQueue, kind: str) -> None:
        """``queue`` uses its file of ``kind`` now: the least recently used ones past the bound are closed."""
        key = (queue.number, kind)
        if key in self._open:
            self._open.move_to_end(key)
            return
        self._open[key] = queue
        while len(self._open) > self.open_files_max:
            (_, old_kind), old = self._open.popitem(last=False)
            old._close_file(old_kind)

    def _closed(self, queue: SpoolQueue, kind: str) -> None:
        self._open.pop((queue.number, kind), None)


class _Segment:
    __slots__ = ("path", "records", "size")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self.size = 0


class SpoolQueue:
    """One waiting queue's disk part: a FIFO of entries appended at the back and read back from the front."""

    # One per state with spilled packets, and there may be thousands of those: no __dict__ each.
    __slots__ = (
        "_count",
        "_custody",
        "_front",
        "_next_segment",
        "_read",
        "_read_offset",
        "_reader",
        "_seed",
        "_segments",
        "_spool",
        "_writer",
        "number",
    )

    def __init__(self, spool: Spool, number: int, seed: str | None) -> None:
        self._spool = spool
        self.number = number
        self._seed = seed
        self._segments: deque[_Segment] = deque()  # oldest first; the last is the one written
        self._next_segment = 0
        self._writer: BinaryIO | None = None  # on the last segment
        self._reader: BinaryIO | None = None  # on the first segment (None: closed, or not opened yet)
        self._read = 0  # records of the first segment read so far
        self._read_offset = 0  # where the reader is in the first segment, while it is closed
        # Read from disk (to learn the head's expiry) or put back (``unread``), not yet handed out.
        self._front: deque[Entry] = deque()
        # The custody of each packet on disk, in order: a live object (its release answers a sender), never
        # written; a reference per packet, the token itself being shared with whoever else holds it.
        self._custody: deque[Custody | None] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, expiry: float, packet: Packet) -> bool:
        """Add ``packet`` at the back; False (nothing written) when it would take the spool past its quota."""
        doc = to_document(packet)
        doc["expiry"] = expiry
        doc["seed"] = self._seed
        line = orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
        spool = self._spool
        if spool.used_bytes + len(line) > spool.max_bytes:
            return False
        tail = self._segments[-1] if self._segments else None
        if tail is None or tail.size >= spool.segment_bytes:
            tail = self._start_segment()
        self._write_file(tail).write(line)
        self._custody.append(packet.custody)
        tail.records += 1
        tail.size += len(line)
        spool.used_bytes += len(line)
        self._count += 1
        return True

    def head_expiry(self) -> float | None:
        """The expiry of the oldest entry, None when empty."""
        if not self._front and self._count:
            self._front.append(self._read_one())
        return self._front[0][0] if self._front else None

    def read(self, limit: int, until: float | None = None) -> list[Entry]:
        """Remove and return up to ``limit`` entries, oldest first (only those expiring by ``until``, if given)."""
        out: list[Entry] = []
        while len(out) < limit and self._count:
            entry = self._front.popleft() if self._front else self._read_one()
            if until is not None and entry[0] > until:
                self._front.appendleft(entry)
                break
            out.append(entry)
            self._count -= 1
        if not self._count:
            self._drop_files()
        return out

    def unread(self, entry: Entry) -> None:
        """Put ``entry`` back at the front (a packet handed out that came straight back)."""
        self._front.appendleft(entry)
        self._count += 1

    def peek(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries from the front, oldest first, leaving the queue as it is (those read from disk
        for this are copies, without custody: to look at)."""
        out = list(self._front)[:limit]
        if len(out) >= limit or len(out) == self._count:
            return out
        if self._writer is not None:
            self._writer.flush()
        offset = self._reader.tell() if self._reader is not None else self._read_offset
        for segment in self._segments:
            with open(segment.path, "rb", buffering=IO_BUFFER_BYTES) as fh:
                fh.seek(offset)
                for line in fh:
                    out.append(self._decode(line))
                    if len(out) >= limit:
                        return out
            offset = 0
        return out

    def close(self) -> None:
        """Forget every entry and delete the files."""
        self._front.clear()
        self._count = 0
        self._drop_files()

    def _start_segment(self) -> _Segment:
        self._close_file("w")  # the reader may come to this segment: it must see every line
        segment = _Segment(self._spool.folder / f"{self.number:06d}-{self._next_segment:06d}.jsonl")
        self._next_segment += 1
        segment.path.touch()
        self._segments.append(segment)
        return segment

    def _write_file(self, tail: _Segment) -> BinaryIO:
        """The writer on ``tail`` (the last segment), opened again if it was closed."""
        if self._writer is None:
            self._writer = open(tail.path, "ab", buffering=IO_BUFFER_BYTES)  # noqa: SIM115 (kept open across calls)
        self._spool._using(self, "w")
        return self._writer

    def _read_file(self, head: _Segment) -> BinaryIO:
        """The reader on ``head`` (the first segment), opened again where it was if it was closed."""
        if self._reader is None:
            self._reader = open(head.path, "rb", buffering=IO_BUFFER_BYTES)  # noqa: SIM115 (kept open across calls)
            if self._read_offset:
                self._reader.seek(self._read_offset)
        self._spool._using(self, "r")
        return self._reader

    def _close_file(self, kind: str) -> None:
        """Close the writer (``"w"``) or the reader (``"r"``, remembering where it was); opened again when used."""
        if kind == "w" and self._writer is not None:
            self._writer.close()
            self._writer = None
        elif kind == "r" and self._reader is not None:
            self._read_offset = self._reader.tell()
            self._reader.close()
            self._reader = None
        self._spool._closed(self, kind)

    def _read_one(self) -> Entry:
        head = self._segments[0]
        if self._read == head.records:  # read whole: its lines are all in memory or handed out
            self._delete_head()
            head = self._segments[0]
        if len(self._segments) == 1 and self._writer is not None:
            self._writer.flush()  # reading the segment being written: its buffered lines too
        line = self._read_file(head).readline()
        self._read += 1
        if self._read == head.records and len(self._segments) > 1:
            self._delete_head()
        entry = self._decode(line)
        entry[1].custody = self._custody.popleft()
        return entry

    def _decode(self, line: bytes) -> Entry:
        doc = orjson.loads(line)
        return float(doc["expiry"]), from_document(doc, DEFAULT_GROUP, self._spool.ids)

    def _delete_head(self) -> None:
        head = self._segments.popleft()
        self._close_file("r")
        self._read_offset = 0
        if not self._segments:
            self._close_file("w")
        self._read = 0
        head.path.unlink()
        self._spool.used_bytes -= head.size

    def _drop_files(self) -> None:
        while self._segments:
            self._delete_head()
        self._custody.clear()
