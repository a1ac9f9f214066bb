"""The tx folder: every packet that reaches an extractor on this node is also written out as a file.

``<tx>/<seed>/<source>-<lineage>-<hop>-<fragment>.<ext>``: one file per packet id and extractor,
where ``source`` is the stem of the rx file the lineage came from (when it did). Packet ids are the same
wherever and however often a packet is made (``packet.IdMaker.child``), and the journal routes a packet
again with its own id after a crash, so a packet delivered twice replaces its earlier copy instead of adding
a result. Files are written to a temporary name (a dot-file), fsynced and renamed: a reader (or another
daemon's rx folder) never sees half a file. ``form`` says what a file holds:

- ``document``: the packet in its file form (``{"state": ..., "data": ...}``, bytes as ``data_base64``),
  ready to be dropped into the next daemon's rx folder;
- ``data``: the data alone: bytes as they are (with the source file's extension), a string as UTF-8
  text (``.txt``), any other value as JSON (``.json``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from .journal import fsync_dir
from .packet import Packet, to_document
from .supervisor import Spawn, unsupervised

log = logging.getLogger(__name__)

FORMS = ("document", "data")
# Each result file is fsynced before its lineage counts as finished; concurrent fsyncs share the file
# system's journal commits, which doubled the rate of 256 small files here (2 ms each when one at a time).
WRITE_THREADS = 4
#: Called on the loop once a result file is durable (its path), or could not be written (the error).
Then = Callable[[Path | OSError], None]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def file_name(packet: Packet, form: str) -> str:
    """The stable name of ``packet``'s result file (without the seed's folder)."""
    key = "-".join(_UNSAFE.sub("_", part) for part in packet.id.split(":")[1:])
    source = packet.meta.get("rx", {}).get("file", "") if isinstance(packet.meta.get("rx"), dict) else ""
    base = Path(str(source)).name
    stem, suffix = os.path.splitext(base)
    stem = _UNSAFE.sub("_", stem)[:60]
    name = f"{stem}-{key}" if stem else key
    if form == "document":
        return name + ".json"
    if isinstance(packet.data, (bytes, bytearray, memoryview)):
        return name + (_UNSAFE.sub("_", suffix) if suffix else ".bin")
    return name + (".txt" if isinstance(packet.data, str) else ".json")


def file_body(packet: Packet, form: str) -> bytes:
    """What the result file holds."""
    if form == "document":
        return orjson.dumps(to_document(packet), option=orjson.OPT_INDENT_2) + b"\n"
    if isinstance(packet.data, (bytes, bytearray, memoryview)):
        return bytes(packet.data)
    if isinstance(packet.data, str):
        return packet.data.encode()
    return orjson.dumps(packet.data, option=orjson.OPT_INDENT_2) + b"\n"


class TxWriter:
    """Writes result files under ``root``, many per fsync round, on a thread."""

    def __init__(self, root: Path, form: str = "document", spawn: Spawn = unsupervised) -> None:
        """``spawn`` starts the writer task (a daemon's supervisor: critical, results would stop leaving)."""
        self._spawn = spawn
        self.root = root
        self.form = form
        self.written = 0
        self._queue: list[tuple[str, Packet, Then]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start writing (on the running loop)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._task = self._spawn("tx-writer", self._writer, critical=True)

    async def close(self) -> None:
        """Write what is queued, then stop (idempotent)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, packet: Packet, seed: str, then: Then) -> None:
        """Queue ``packet``'s result file for extractor ``seed``; ``then`` hears how it went."""
        self._queue.append((seed, packet, then))
        self._wake.set()

    async def _writer(self) -> None:
        while not (self._closing and not self._queue):
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._write_all, [(s, p) for s, p, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every caller must hear back
                results = [OSError(f"{type(exc).__name__}: {exc}")] * len(batch)
            for (_, _, then), result in zip(batch, results, strict=True):
                self.written += isinstance(result, Path)
                then(result)

    def written_before(self, seed: str, packet: Packet) -> bool:
        """True when ``packet``'s result file for extractor ``seed`` exists (durable: it is renamed into place
        only after its fsync): the packet reached the extractor before, in this run or an earlier one."""
        return self._path(seed, packet).exists()

    def _path(self, seed: str, packet: Packet) -> Path:
        return self.root / _UNSAFE.sub("_", seed) / file_name(packet, self.form)

    def _write_one(self, item: tuple[str, Packet]) -> Path | OSError:
        seed, packet = item
        path = self._path(seed, packet)
        folder = path.parent
        tmp = folder / f".{path.name}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(file_body(packet, self.form))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            return exc
        return path

    def _write_all(self, items: list[tuple[str, Packet]]) -> list[Path | OSError]:
        # The same packet twice in one batch (delivered again) is written once: the last copy wins.
        last = {self._path(seed, packet): (seed, packet) for seed, packet in items}
        with ThreadPoolExecutor(min(WRITE_THREADS, len(last)), thread_name_prefix="tx-write") as pool:
            written = dict(zip(last, pool.map(self._write_one, last.values()), strict=True))
        out = [written[self._path(seed, packet)] for seed, packet in items]
        folders = {p.parent for p in out if isinstance(p, Path)}
        for folder in folders:
            try:
                fsync_dir(folder)
            except OSError as exc:  # the files are written; only their names may not survive a power cut
                log.warning("tx folder %s: fsync failed: %s", folder, exc)
        return out
