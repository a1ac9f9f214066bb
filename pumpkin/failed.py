"""The failed/ area: every packet Pumpkin could not process is kept here with its reason, never dropped.

Each item is two files with the same stem: ``<stem>.pkt`` holds the packet in its file form (see
``packet``), so it can be read, fixed and dropped into an rx folder again, and ``<stem>.error`` holds the
reason on its first line, followed by a traceback when there is one. Bytes that were not even a packet
are kept as ``<stem>.raw`` (the frames, base64, one per line).

A packet kept here counts as safe (its sender is acknowledged, the intake journal lets go of it) only once
its files are durable: they are written at once and fsynced in batches on a thread, and ``keep``'s ``then``
is called after the fsync (at once, synchronously, where no event loop runs).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .journal import fsync_dir
from .packet import Packet, to_document

log = logging.getLogger(__name__)

RECENT_MAX = 200  # failures remembered in memory for the web page (all of them stay on disk)


class FailedStore:
    """Writes failed packets under ``root`` and counts them by kind of failure."""

    def __init__(self, root: Path, keep_files: Callable[[Packet, Path], None] | None = None) -> None:
        """``keep_files(packet, stem)``: keeps what a packet's data refers to beside it (file payloads)."""
        self.root = root
        self.keep_files = keep_files
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)
        self._seq = itertools.count(1)
        self._logged: set[str] = set()
        self._unsynced: list[tuple[list[Path], Callable[[], None] | None]] = []
        self._syncer: asyncio.Task[None] | None = None

    def _stem(self, hint: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", hint)[:80]
        return self.root / f"{time.strftime('%Y%m%dT%H%M%S')}-{next(self._seq):06d}-{safe}"

    def keep(
        self,
        packet: Packet,
        kind: str,
        reason: str,
        detail: str = "",
        seed: str = "",
        then: Callable[[], None] | None = None,
    ) -> Path:
        """Keep ``packet`` with a one-line ``reason``; ``kind`` names the counter (e.g. 'seed-error').

        ``seed`` names the seed the failure belongs to, when there is one (the page shows it there);
        ``then`` is called once the kept files are durable.
        """
        stem = self._stem(packet.id)
        if self.keep_files is not None:
            try:
                self.keep_files(packet, stem)
            except OSError as exc:
                detail = f"{detail}\n(its file could not be kept beside it: {exc})".lstrip()
        try:
            body = orjson.dumps(to_document(packet), option=orjson.OPT_INDENT_2)
        except TypeError:
            doc = to_document(packet)
            doc["data"] = repr(doc.pop("data", None))
            doc["meta"] = {**packet.meta, "data_was_not_json": True}
            body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        return self._write(stem, ".pkt", body, kind, reason, detail, seed, packet.id, str(packet.tag), then)

    def keep_raw(self, frames: list[bytes], kind: str, reason: str) -> Path:
        """Keep bytes that could not be decoded as a packet."""
        body = b"\n".join(base64.b64encode(bytes(f)) for f in frames) + b"\n"
        return self._write(self._stem(kind), ".raw", body, kind, reason, "")

    def _write(
        self,
        stem: Path,
        suffix: str,
        body: bytes,
        kind: str,
        reason: str,
        detail: str,
        seed: str = "",
        packet_id: str = "",
        state: str = "",
        then: Callable[[], None] | None = None,
    ) -> Path:
        self.counts[kind] += 1
        reason = " ".join(reason.split())
        path = stem.with_suffix(suffix)
        self.recent.append(
            {
                "time": round(time.time(), 3),
                "kind": kind,
                "reason": reason,
                "seed": seed,
                "packet": packet_id,
                "state": state,
                "file": path.name,
            }
        )
        path.write_bytes(body)
        error = stem.with_suffix(".error")
        error.write_text(reason + "\n" + (detail.rstrip() + "\n" if detail else ""))
        self._unsynced.append(([path, error], then))
        self._sync_soon()
        # Loud once per kind, then quiet: a flood of bad input must not drown the log.
        if kind not in self._logged:
            self._logged.add(kind)
            log.error("%s (kept in %s; further '%s' failures are logged at debug level)", reason, path, kind)
        else:
            log.debug("%s (kept in %s)", reason, path)
        return path

    def _sync_soon(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.sync()
            return
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.ensure_future(self._sync_batches())

    async def _sync_batches(self) -> None:
        while self._unsynced:
            batch, self._unsynced = self._unsynced, []
            try:
                await asyncio.to_thread(self._fsync, [p for paths, _ in batch for p in paths])
            except OSError as exc:  # written but perhaps not durable: say so, and let the packets go anyway
                log.error("failed/: fsync in %s failed: %s", self.root, exc)
            for _, then in batch:
                if then is not None:
                    then()

    def sync(self) -> None:
        """Make every kept item durable now and call its ``then`` (blocking; for shutdown and loop-less use)."""
        batch, self._unsynced = self._unsynced, []
        if not batch:
            return
        try:
            self._fsync([p for paths, _ in batch for p in paths])
        except OSError as exc:
            log.error("failed/: fsync in %s failed: %s", self.root, exc)
        for _, then in batch:
            if then is not None:
                then()

    async def close(self) -> None:
        """Wait for the fsyncs under way, then make the rest durable."""
        if self._syncer is not None:
            await asyncio.gather(self._syncer, return_exceptions=True)
        self.sync()

    def _fsync(self, paths: list[Path]) -> None:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.root)

    def items(self) -> list[Path]:
        """The kept items, oldest first (their packet files)."""
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.iterdir() if p.suffix in (".pkt", ".raw"))
