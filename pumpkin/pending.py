"""``pending/``: the packets a node still held when it stopped, saved then and resumed at its next start.

At a clean stop everything held that no durable store owns yet (queued for local seeds, waiting for a seed or a
join, sent to a peer and not acknowledged) is written to one fsynced JSON-lines file (one packet document a line,
``packet.to_document``), and then let go of: its custody is done, so its sender gets its ACK and the intake
journal forgets it. At the next start the files are read back (and ``.pkt`` files, one packet each, as older
releases wrote them), the packets journaled and routed again, and the files removed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from . import packet as packets
from .custody import Custody
from .errors import PacketError
from .journal import fsync_dir
from .packet import IdMaker, Packet

log = logging.getLogger("pumpkin")

#: ``keep_raw(frames, kind, reason)``: keeps a line that cannot be resumed (in failed/), with why.
KeepRaw = Callable[[list[bytes], str, str], object]


class Pending:
    """The ``pending/`` folder of one working directory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, batches: Iterable[list[Packet]]) -> int:
        """Write the packets of ``batches`` as one fsynced file, then let go of them (they are safe there); the
        count saved. Streamed a batch at a time: a spooled backlog need not fit in memory."""
        self.folder.mkdir(exist_ok=True)
        final = self.folder / f"{time.time_ns():020d}.jsonl"
        tmp = self.folder / f".{final.name}.tmp"
        custodies: list[Custody] = []  # not the packets themselves (see above)
        saved = 0
        with open(tmp, "wb") as fh:
            for batch in batches:
                fh.write(b"".join(orjson.dumps(packets.to_document(p)) + b"\n" for p in batch))
                custodies.extend(p.custody for p in batch if p.custody is not None)
                saved += len(batch)
            fh.flush()
            os.fsync(fh.fileno())
        if not saved:
            tmp.unlink()
            return 0
        os.replace(tmp, final)
        fsync_dir(self.folder)
        for custody in custodies:
            custody.add(-1)  # its sender is acknowledged, or the intake journal lets go of it
        log.info("Saved %d packet(s) still on their way to %s; they resume at the next start", saved, self.folder)
        return saved

    def files(self) -> list[Path]:
        """The saved files, oldest first."""
        if not self.folder.exists():
            return []
        return sorted([*self.folder.glob("*.pkt"), *self.folder.glob("*.jsonl")])

    def read(self, files: list[Path], group: str, ids: IdMaker, keep_raw: KeepRaw) -> list[Packet]:
        """The packets saved in ``files``; a line that is not one is kept with ``keep_raw`` and skipped."""
        resumed: list[Packet] = []
        for file in files:
            lines = file.read_bytes().splitlines() if file.suffix == ".jsonl" else [file.read_bytes()]
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    resumed.append(packets.from_document(orjson.loads(line), group, ids))
                except (PacketError, orjson.JSONDecodeError) as exc:
                    keep_raw([line], "bad-pending", f"{file} line {number}: cannot resume: {exc}")
        return resumed

    def remove(self, files: list[Path]) -> None:
        """Remove ``files`` (resumed and journaled), and what a save cut short left behind."""
        for file in files:
            file.unlink()
        for tmp in self.folder.glob(".*.tmp") if self.folder.exists() else []:
            tmp.unlink()  # a save cut short: its packets are still in the journal or with their senders
