"""The disk part of the waiting room: packets that do not fit in memory, in append-only segment files.

Layout: ``<workdir>/spool/<queue>-<segment>.jsonl`` (both numbers of 6 digits), one series of segments per
waiting queue. Each line is a packet's file form (``packet.to_document``: bytes data as ``data_base64``) with
two more keys, ``expiry`` (on the waiting room's clock) and ``seed`` (the seed it waits for, or null). A
packet's custody (a live object) stays in memory, a reference per spooled packet, and goes back on it when read. A queue
appends to its last segment and reads from its first; a new segment starts once the last one holds
``segment_bytes``, and a segment is deleted as soon as it has been read back whole. The quota (``max_bytes``)
counts the bytes of the files on disk, read or not, so it is what the folder really takes.

No more a durable store than memory: a waiting packet is in custody here, so whoever handed it over (a peer
waiting for the ACK, the intake journal) still holds it and sends or routes it again after a crash, and a clean
stop saves it to pending/. So nothing is fsynced, and the folder is emptied when the spool is made (what a crash
left there is junk).
An OSError here (the disk failing, the folder removed under us) is an infrastructure failure: it propagates.
"""

from __future__ import annotations

import shutil
from collections import deque
from pathlib import Path
from typing import BinaryIO

import orjson

from .custody import Custody
from .packet import IdMaker, Packet, from_document, to_document
from .tags import DEFAULT_GROUP
from .waiting import Entry

SEGMENT_BYTES = 4 << 20  # small enough that a half-read head segment wastes little of the quota
IO_BUFFER_BYTES = 64 << 10  # read back and write in chunks of this many bytes, not a system call per packet


class Spool:
    """A folder of spooled queues sharing one quota of ``max_bytes`` (0: nothing is ever spooled)."""

    def __init__(self, folder: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.used_bytes = 0
        self._next_queue = 0
        # Spooled packets always carry their id; from_document wants an IdMaker only for documents without one.
        self.ids = IdMaker("00000000")
        shutil.rmtree(folder, ignore_errors=True)  # what a crash left behind (see the module doc)
        folder.mkdir(parents=True, exist_ok=True)

    def queue(self, seed: str | None) -> SpoolQueue:
        """A new, empty queue of packets waiting for ``seed`` (None: for any consumer)."""
        self._next_queue += 1
        return SpoolQueue(self, self._next_queue, seed)


class _Segment:
    __slots__ = ("path", "records", "size")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self.size = 0


class SpoolQueue:
    """One waiting queue's disk part: a FIFO of entries appended at the back and read back from the front."""

    def __init__(self, spool: Spool, number: int, seed: str | None) -> None:
        self._spool = spool
        self._number = number
        self._seed = seed
        self._segments: deque[_Segment] = deque()  # oldest first; the last is the one written
        self._next_segment = 0
        self._writer: BinaryIO | None = None  # on the last segment
        self._reader: BinaryIO | None = None  # on the first segment
        self._read = 0  # records of the first segment read so far
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
        if tail is None or self._writer is None or tail.size >= spool.segment_bytes:
            tail = self._start_segment()
        assert self._writer is not None
        self._writer.write(line)
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
        offset = self._reader.tell() if self._reader is not None else 0
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
        if self._writer is not None:
            self._writer.close()  # the reader may come to this segment: it must see every line
        segment = _Segment(self._spool.folder / f"{self._number:06d}-{self._next_segment:06d}.jsonl")
        self._next_segment += 1
        self._writer = open(segment.path, "wb", buffering=IO_BUFFER_BYTES)  # noqa: SIM115 (kept open across calls)
        self._segments.append(segment)
        return segment

    def _read_one(self) -> Entry:
        head = self._segments[0]
        if self._read == head.records:  # read whole: its lines are all in memory or handed out
            self._delete_head()
            head = self._segments[0]
        if self._reader is None:
            self._reader = open(head.path, "rb", buffering=IO_BUFFER_BYTES)  # noqa: SIM115 (kept open across calls)
        if len(self._segments) == 1 and self._writer is not None:
            self._writer.flush()  # reading the segment being written: its buffered lines too
        line = self._reader.readline()
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
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if not self._segments and self._writer is not None:
            self._writer.close()
            self._writer = None
        self._read = 0
        head.path.unlink()
        self._spool.used_bytes -= head.size

    def _drop_files(self) -> None:
        while self._segments:
            self._delete_head()
        self._custody.clear()
