"""The failed/ area: every packet Pumpkin could not process is kept here with its reason, never dropped.

Each item is two files with the same stem: ``<stem>.pkt`` holds the packet in its file form (see
``packet``), so it can be read, fixed and dropped into an rx folder again, and ``<stem>.error`` holds the
reason on its first line, then ``(kind, seed NAME, packet ID)`` (the last two when known: what ``pmk failed``
lists), followed by a traceback when there is one. A failure with no packet (an injector's run that raised) is its
``.error`` file alone. Bytes that were not even a packet
are kept as ``<stem>.raw`` (the frames, base64, one per line), cut to their first ``RAW_KEEP_BYTES``: the
``.error`` file then gives the frames' number and whole size.

The folder has a quota (``max_bytes``, ``limits.failed_max_bytes``): what it holds is measured at start, and an
item that would take it past the quota is not written. It is still counted (``counts``, and ``not_kept``), listed
in ``recent`` (with no file), logged (one line each, folded in a flood), and its packet let go of as if it had
been kept. Refusing new items rather than deleting old ones: what is there may be what someone is looking at,
or about to inject again. While full, the folder is measured again every ``REMEASURE_S``, so removing files
there makes room again without a restart.

A packet kept here counts as safe (its sender is acknowledged, the intake journal lets go of it) only once
its files are durable: they are written at once and fsynced in batches on a thread, and ``keep``'s ``then``
is called after the fsync (at once, synchronously, where no event loop runs).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import itertools
import logging
import os
import re
import shutil
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
RAW_KEEP_BYTES = 64 << 10  # of bytes that were not a packet, this much is kept: enough to see what they were
REMEASURE_S = 30.0


class FailedStore:
    """Writes failed packets under ``root`` and counts them by kind of failure."""

    def __init__(
        self,
        root: Path,
        max_bytes: int = 1 << 30,
        clock: Callable[[], float] = time.monotonic,
        keep_files: Callable[[Packet, Path], None] | None = None,
        report: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """``keep_files(packet, stem)``: keeps what a packet's data refers to beside it (file payloads);
        ``report(what, error)``: the background fsync crashed (a daemon's supervisor logs and counts it)."""
        self.root = root
        self.max_bytes = max_bytes
        self.clock = clock
        self.keep_files = keep_files
        self.report = report or _log_crash
        self.used_bytes = 0  # what the folder holds (measured by ``measure``, then counted as items are written)
        self.not_kept: Counter[str] = Counter()  # failures past the quota, by kind: counted, not written
        self._full_since: float | None = None  # when the quota was last found used up (None: not full)
        self._measured_at = clock()
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)
        self._seq = itertools.count(1)
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

    def keep_note(self, kind: str, reason: str, detail: str = "", seed: str = "") -> Path:
        """Keep a failure that has no packet (an injector's run that raised): its ``.error`` file alone."""
        return self._write(self._stem(seed or kind), "", b"", kind, reason, detail, seed)

    def keep_raw(self, frames: list[bytes], kind: str, reason: str, total_bytes: int | None = None) -> Path:
        """Keep bytes that could not be decoded as a packet: their first ``RAW_KEEP_BYTES`` only.

        ``total_bytes``: the size of the whole message, when ``frames`` are only its first frames.
        """
        kept: list[bytes] = []
        room = RAW_KEEP_BYTES
        for frame in frames:
            if room <= 0:
                break
            part = bytes(frame[:room])
            kept.append(part)
            room -= len(part)
        size = sum(len(f) for f in frames) if total_bytes is None else total_bytes
        if size > RAW_KEEP_BYTES or len(kept) < len(frames):
            reason = f"{reason} ({size} bytes; the first {RAW_KEEP_BYTES} kept)"
        body = b"\n".join(base64.b64encode(f) for f in kept) + b"\n"
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
        path = stem.with_suffix(suffix or ".error")  # a note (keep_note, no suffix) is its .error file alone
        # The reason on the first line; then what pmk failed lists beside it; then the traceback, if any.
        about = f"({kind}{f', seed {seed}' if seed else ''}{f', packet {packet_id}' if packet_id else ''})\n"
        note = (reason + "\n" + about + (detail.rstrip() + "\n" if detail else "")).encode()
        kept = self._room(len(body) + len(note))
        self.recent.append(
            {
                "time": round(time.time(), 3),
                "kind": kind,
                "reason": reason,
                "seed": seed,
                "packet": packet_id,
                "state": state,
                "file": path.name if kept else None,
            }
        )
        if not kept:
            self.not_kept[kind] += 1
            # Every one is logged (a flood of them folds into one line a minute: see ``logfold``).
            log.warning(
                "failure not kept, failed/ is full: %s: %s (packet %s)",
                kind,
                reason,
                packet_id or "-",
                extra={"seed": seed, "packet": packet_id, "kind": kind, "state": state},
            )
            self._unsynced.append(([], then))  # let go of it as if kept: its sender must not hold it for ever
            self._sync_soon()
            return path
        error = stem.with_suffix(".error")
        if suffix:
            path.write_bytes(body)
        error.write_bytes(note)
        self.used_bytes += len(body) + len(note)
        self._unsynced.append(([path, error] if suffix else [error], then))
        self._sync_soon()
        # Every one at WARNING; the kind is in the template so that ``logfold`` folds a flood per kind.
        where = f"{'traceback' if 'Traceback' in detail else 'reason'} in {error.name}"
        fields = {"seed": seed, "packet": packet_id, "kind": kind, "state": state, "file": path.name}
        log.warning(f"%s (kept in %s, {kind}; %s)", reason, path, where, extra=fields)  # noqa: G004 - kinds are few
        return path

    def _room(self, size: int) -> bool:
        """True when ``size`` more bytes fit in the quota (measuring the folder again now and then while full)."""
        if self.used_bytes + size <= self.max_bytes:
            if self._full_since is not None:
                self._full_since = None
                log.warning(
                    "failed/ has room again (%d of %d bytes used): failures are kept again",
                    self.used_bytes,
                    self.max_bytes,
                )
            return True
        now = self.clock()
        if self._full_since is not None and now - self._measured_at >= REMEASURE_S:
            self._remeasure()  # someone may have cleaned up (seen now where no loop runs, else by a later item)
            if self.used_bytes + size <= self.max_bytes:
                return self._room(size)
        if self._full_since is None:
            self._full_since = now
            log.error(
                "failed/ is full: %s holds %d bytes of its %d (limits.failed_max_bytes); further failures are "
                "counted (pmk stats: limits.failed.not_kept) and logged, but not kept until files there are removed",
                self.root,
                self.used_bytes,
                self.max_bytes,
            )
        return False

    def _remeasure(self) -> None:
        """Measure the folder again, on a thread where an event loop runs (a scan of many files takes a while)."""
        self._measured_at = self.clock()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.measure()
            return

        def done(task: asyncio.Future[int]) -> None:
            if not task.cancelled() and task.exception() is None:
                self.used_bytes = task.result()

        loop.run_in_executor(None, self._scan).add_done_callback(done)

    def measure(self) -> int:
        """Measure what the folder holds now (its files' sizes); returns it."""
        self.used_bytes = self._scan()
        self._measured_at = self.clock()
        return self.used_bytes

    def _scan(self) -> int:
        total = 0
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
        return total

    def _sync_soon(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.sync()
            return
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.ensure_future(self._sync_batches())

    async def _sync_batches(self) -> None:
        """The fsync syncer: runs while items wait; a crash in one batch is reported and the next still syncs."""
        while self._unsynced:
            batch, self._unsynced = self._unsynced, []
            try:
                paths = [p for paths, _ in batch for p in paths]
                if paths:
                    await asyncio.to_thread(self._fsync, paths)
            except OSError as exc:  # written but perhaps not durable: say so, and let the packets go anyway
                log.error("failed/: fsync in %s failed: %s", self.root, exc)
            except Exception as exc:  # noqa: BLE001 - a bug: its packets still go, later items still sync
                self.report("failed/ fsync", exc)
            for _, then in batch:
                if then is not None:
                    try:
                        then()
                    except Exception as exc:  # noqa: BLE001 - one caller's bug must not keep the others waiting
                        self.report("failed/ fsync callback", exc)

    def sync(self) -> None:
        """Make every kept item durable now and call its ``then`` (blocking; for shutdown and loop-less use)."""
        batch, self._unsynced = self._unsynced, []
        if not batch:
            return
        try:
            paths = [p for paths, _ in batch for p in paths]
            if paths:
                self._fsync(paths)
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

    def reason_of(self, name: str) -> str:
        """The one-line reason of the kept item ``name`` (a file name in the folder); "" when it is not there."""
        try:
            with open(self.root / Path(name).with_suffix(".error").name, encoding="utf-8", errors="replace") as fh:
                return fh.readline().strip()
        except OSError:
            return ""

    def listing(self, limit: int = 50) -> list[dict[str, Any]]:
        """The kept failures, newest first, at most ``limit``: time, kind, seed, packet, state, reason, file (the
        packet's file when there is one, else the .error note). Blocking: call it off the loop."""
        try:
            notes = sorted(self.root.glob("*.error"), reverse=True)[:limit]
        except OSError:
            return []
        out = []
        for note in notes:
            try:
                first, about = (note.read_text(encoding="utf-8", errors="replace").split("\n") + [""])[:2]
            except OSError:
                continue  # replayed or removed meanwhile
            item: dict[str, Any] = {"time": _stem_time(note), "reason": first, "kind": "", "seed": "", "packet": ""}
            if m := _ABOUT.fullmatch(about):
                item.update({k: v for k, v in m.groupdict().items() if v})
            kept = next((p for p in (note.with_suffix(".pkt"), note.with_suffix(".raw")) if p.exists()), note)
            item["file"] = kept.name
            if kept.suffix == ".pkt":
                with contextlib.suppress(OSError, orjson.JSONDecodeError, AttributeError):
                    doc = orjson.loads(kept.read_bytes())
                    item["packet"], item["state"] = doc.get("id", item["packet"]), doc.get("state", "")
            out.append(item)
        return out

    def find(self, packet_id: str) -> Path | None:
        """The .pkt file that keeps packet ``packet_id`` (its newest), or None. Blocking: call it off the loop."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", packet_id)[:80]
        for path in sorted(self.root.glob(f"*-{safe}.pkt"), reverse=True):
            with contextlib.suppress(OSError, orjson.JSONDecodeError, AttributeError):
                if orjson.loads(path.read_bytes()).get("id") == packet_id:
                    return path
        return None

    def forget(self, kept: Path) -> None:
        """Remove the kept item ``kept`` (its packet file, note and kept payload files): it was taken back."""
        for path in self.root.glob(f"{glob.escape(kept.stem)}.*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                continue
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                path.unlink()
                self.used_bytes = max(0, self.used_bytes - size)
        fsync_dir(self.root)

    def items(self) -> list[Path]:
        """The kept items, oldest first (their packet files)."""
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.iterdir() if p.suffix in (".pkt", ".raw"))


#: The note's second line: "(kind, seed NAME, packet ID)", the last two when known.
_ABOUT = re.compile(r"\((?P<kind>[^,()]+)(?:, seed (?P<seed>[^,]+))?(?:, packet (?P<packet>[^,()]+))?\)")


def _stem_time(path: Path) -> float:
    """When an item was kept: its name's local time stamp (else the file's mtime)."""
    try:
        return time.mktime(time.strptime(path.name[:15], "%Y%m%dT%H%M%S"))
    except ValueError:
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
        return 0.0


def _log_crash(what: str, error: BaseException) -> None:
    log.error("%s crashed", what, exc_info=error)
