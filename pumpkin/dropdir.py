"""The rx drop folder: finds files that are complete, has their packets journaled and routed, moves them on.

A file is read when it is *complete*: its name is not a temporary one (``dropfile.DEFAULT_IGNORE``), its
size and mtime have not changed for ``rx.settle_s``, and no process has it open for writing (checked with a
read lease where the kernel grants one: files this user owns, or any file as root). Writing to a temporary
name and renaming it into the folder is always safe. File events (inotify, through watchfiles) wake the
scanner at once; a rescan every ``rx.poll_interval_s`` catches what events miss, and is all there is where
events are unavailable.

Each batch of complete files is read on a thread (a file is read once: its sha256 is taken as it is read),
its packets are committed to the journal (one fsync for the batch), routed, and only then is each file
moved to ``done/`` (or removed) and the folder fsynced. A file that cannot be read as packets moves to
``failed/`` next to a ``<name>.error`` file giving the reason on one line. Names keep their sub-folder
(``done/UNGREETED/photo.jpg``); a name already taken gets ``-1``, ``-2``, ... before its extension.

All state is owned by the event loop; only stat, read, rename and fsync calls run on threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import signal
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import dropfile
from .config import RxConfig
from .errors import PacketError
from .journal import Entry, Journal, Source, fsync_dir
from .packet import DEFAULT_TTL_HOPS, Hop, IdMaker, Packet

log = logging.getLogger(__name__)
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch of events at INFO

BATCH_FILES = 256  # files per journal commit: one fsync each way, and a bounded pause of the scanner
READ_CHUNK_BYTES = 1 << 20
WATCH_STEP_MS = 50  # watchfiles: how long a burst of events is gathered before the scanner is woken

Signature = tuple[int, int]  # (size, mtime_ns)


@dataclass
class Read:
    """What reading one file gave: packets, an error for failed/, or a reason to look again later."""

    rel: str
    sig: Signature
    source: Source | None = None
    packets: list[Packet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    again: bool = False  # changed while read, or still open for writing: wait for it to settle again
    known: Entry | None = None  # accepted before a crash: only move it on


@dataclass
class Seen:
    """A file the scanner has seen, and since when it has looked the same."""

    sig: Signature
    since: float


def writer_open(fd: int) -> bool | None:
    """True when some process has the file open for writing; None when the kernel will not say.

    A read lease is granted only when nobody has the file open for writing (fcntl(2), F_SETLEASE); it is
    released at once. A writer opening the file meanwhile gets SIGIO sent here, which ``DropDir`` ignores.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:
        return True
    except OSError:
        return None  # not our file (and no CAP_LEASE), or a file system without leases
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def _free_name(path: Path) -> Path:
    if not path.exists() and not path.with_name(path.name + ".error").exists():
        return path
    stem, suffix = os.path.splitext(path.name)
    for n in range(1, 1_000_000):
        candidate = path.with_name(f"{stem}-{n}{suffix}")
        if not candidate.exists() and not candidate.with_name(candidate.name + ".error").exists():
            return candidate
    raise OSError(errno.EEXIST, f"no free name for {path}")


class DropDir:
    """Watches ``cfg.dir``; ``admit`` routes packets once the journal holds them."""

    def __init__(
        self,
        cfg: RxConfig,
        group: str,
        node_id: str,
        ids: IdMaker,
        journal: Journal,
        admit: Callable[[Entry, list[Packet]], None],
        ttl_hops: int = DEFAULT_TTL_HOPS,
    ) -> None:
        """``ttl_hops``: the hops a packet from a file may make unless the file says (``routing.ttl_hops``)."""
        assert cfg.dir is not None
        self.ttl_hops = ttl_hops
        self.root = Path(os.path.abspath(cfg.dir))
        self.cfg = cfg
        self.group = group
        self.node_id = node_id
        self.ids = ids
        self.journal = journal
        self.admit = admit
        self.counters: Counter[str] = Counter()
        self.events = False  # file events are arriving (else: polling only)
        self._seen: dict[str, Seen] = {}
        self._stuck: dict[str, tuple[Signature, Entry | None]] = {}  # could not be moved on: retried, never re-read
        self._warned: set[str] = set()
        self._wake = asyncio.Event()
        self._stop = threading.Event()  # watchfiles checks it from its thread
        self._tasks: list[asyncio.Task[None]] = []
        self._leases = threading.current_thread() is threading.main_thread()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, expected: list[Entry]) -> None:
        """Recognise files accepted before a crash (``expected``), then watch the folder."""
        if self._leases:
            # A writer opening a file while we hold its lease for a moment makes the kernel send SIGIO, whose
            # default action would end the daemon.
            signal.signal(signal.SIGIO, signal.SIG_IGN)
        await asyncio.to_thread(self._prepare)
        if expected:
            await self._recognise(expected)
        self._tasks = [
            asyncio.create_task(self._scanner(), name="rx-scanner"),
            asyncio.create_task(self._watcher(), name="rx-watcher"),
        ]
        log.info(
            "Watching rx folder %s (processed files go to %s)",
            self.root,
            "done/" if self.cfg.processed == "move" else "nowhere: they are removed",
        )

    async def close(self) -> None:
        """Stop taking files; a batch already read finishes (journaled, routed, moved). Idempotent."""
        self._stop.set()
        self._wake.set()
        for task in self._tasks:
            if task.get_name() == "rx-watcher":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def snapshot(self) -> dict[str, object]:
        """Counters for ``pmk stats``."""
        return {"dir": str(self.root), "events": self.events, **self.counters}

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in dropfile.RESERVED:
            (self.root / sub).mkdir(exist_ok=True)

    # -- watching --------------------------------------------------------------------------------

    async def _watcher(self) -> None:
        try:
            import watchfiles

            reserved = tuple(str(self.root / sub) + os.sep for sub in dropfile.RESERVED)
            async for _ in watchfiles.awatch(
                self.root,
                watch_filter=lambda _c, p: not p.startswith(reserved),
                debounce=1000,
                step=WATCH_STEP_MS,
                stop_event=self._stop,
                rust_timeout=1000,
                recursive=True,
            ):
                self.events = True
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - events are an optimisation; polling still finds every file
            log.warning(
                "rx folder %s: file events unavailable (%s); polling every %g s",
                self.root,
                exc,
                self.cfg.poll_interval_s,
            )
            self.events = False

    async def _scanner(self) -> None:
        while not self._stop.is_set():
            timeout = self.cfg.poll_interval_s
            try:
                found = await asyncio.to_thread(self._scan)
            except OSError as exc:
                self._warn("scan", f"rx folder {self.root} cannot be read: {exc}; trying again")
                found = {}
            ready, wait_s = self._settled(found, time.monotonic())
            if wait_s is not None:
                timeout = min(timeout, wait_s)
            for i in range(0, len(ready), BATCH_FILES):
                await self._take(ready[i : i + BATCH_FILES], found)
                if self._stop.is_set():
                    return
            if ready:
                continue  # more may have arrived while this batch was taken
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _scan(self) -> dict[str, Signature]:
        """Every candidate file (relative name -> size and mtime); on a thread."""
        out: dict[str, Signature] = {}
        patterns = self.cfg.ignore
        with os.scandir(self.root) as top:
            for entry in top:
                if dropfile.ignored(entry.name, patterns):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in dropfile.RESERVED:
                        self._scan_state_folder(entry, out)
                elif entry.is_file():
                    st = entry.stat()
                    out[entry.name] = (st.st_size, st.st_mtime_ns)
                else:
                    self._warn(entry.name, f"rx: {entry.path} is neither a file nor a folder; it is left alone")
        return out

    def _scan_state_folder(self, folder: os.DirEntry[str], out: dict[str, Signature]) -> None:
        with os.scandir(folder.path) as inner:
            for entry in inner:
                if dropfile.ignored(entry.name, self.cfg.ignore):
                    continue
                if entry.is_file():
                    st = entry.stat()
                    out[f"{folder.name}/{entry.name}"] = (st.st_size, st.st_mtime_ns)
                else:
                    self._warn(entry.path, f"rx: {entry.path} is not read: a state folder holds files, not folders")

    def _settled(self, found: dict[str, Signature], now: float) -> tuple[list[str], float | None]:
        """The files that have looked the same for ``settle_s``, oldest first; and when to look again."""
        ready: list[tuple[int, str]] = []
        wait_s: float | None = None
        for rel in [r for r in self._seen if r not in found]:
            del self._seen[rel]
        for rel in [r for r in self._stuck if r not in found]:
            _, entry = self._stuck.pop(rel)
            if entry is not None:
                self.journal.moved(entry)  # someone took it out of the folder for us
        for rel, sig in found.items():
            stuck = self._stuck.get(rel)
            if stuck is not None and stuck[0] == sig:
                continue
            seen = self._seen.get(rel)
            if seen is None or seen.sig != sig:
                self._seen[rel] = seen = Seen(sig, now)
            left = seen.since + self.cfg.settle_s - now
            if left <= 0:
                ready.append((sig[1], rel))
            else:
                wait_s = left if wait_s is None else min(wait_s, left)
        return [rel for _, rel in sorted(ready)], wait_s

    # -- taking files ----------------------------------------------------------------------------

    async def _take(self, rels: list[str], found: dict[str, Signature]) -> None:
        """Read, journal, route and move on one batch of complete files."""
        reads = await asyncio.to_thread(lambda: [self._read(rel, found[rel]) for rel in rels])
        good: list[Read] = []
        moves: list[tuple[Read, str]] = []
        for r in reads:
            if r.again:
                self._seen.pop(r.rel, None)
            elif r.error:
                moves.append((r, "failed"))
            elif r.source is not None:
                good.append(r)
        if good:
            now = time.time()
            for r in good:
                for p in r.packets:
                    p.trail.append(Hop("rx", self.node_id, str(p.tag), now))
            try:
                entries = await self.journal.add([(r.source, r.packets) for r in good])
            except OSError as exc:
                self._warn(
                    "journal", f"rx: cannot accept files now ({exc}); they stay in {self.root} and are tried again"
                )
                for r in good:
                    self._seen.pop(r.rel, None)
                good = []
            else:
                for r, entry in zip(good, entries, strict=True):
                    r.known = entry
                    for note in r.notes:
                        log.warning("rx %s: %s", r.rel, note)
                    self.admit(entry, r.packets)
                    self.counters["files_accepted"] += 1
                    self.counters["packets_injected"] += len(r.packets)
                    r.packets = []
                    moves.append((r, "done"))
        if moves:
            await self._move_on(moves)

    def _read(self, rel: str, sig: Signature) -> Read:
        """Read one file as packets (on a thread); never raises."""
        out = Read(rel, sig)
        try:
            fh = open(self.root / rel, "rb")  # noqa: SIM115 - closed below, after the re-check
        except FileNotFoundError:
            out.again = True
            return out
        except OSError as exc:
            out.error = f"cannot be opened: {exc.strerror}"
            return out
        with fh:
            try:
                self._read_open(fh, out)
            except PacketError as exc:
                out.error = str(exc)
            except OSError as exc:
                out.error = f"cannot be read: {exc.strerror or exc}"
            after = os.fstat(fh.fileno())
            if not out.again and (after.st_size, after.st_mtime_ns) != sig:
                out.again, out.error = True, ""  # written to while we read it
        if out.again:
            out.packets, out.source = [], None
        return out

    def _read_open(self, fh: IO[bytes], out: Read) -> None:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PacketError("not a regular file")
        if (st.st_size, st.st_mtime_ns) != out.sig or writer_open(fh.fileno()):
            out.again = True
            return
        if st.st_size > self.cfg.max_file_bytes:
            raise PacketError(
                f"the file has {st.st_size} bytes, more than rx.max_file_bytes "
                f"({self.cfg.max_file_bytes}); raise that key or split the file"
            )
        digest = hashlib.sha256()
        folder, _, name = out.rel.rpartition("/")
        if folder:
            state = dropfile.state_of_folder(folder, self.group)
            data = fh.read()
            digest.update(data)
            out.packets = [dropfile.raw_packet(state, data, out.rel, self.ids, self.ttl_hops)]
        elif dropfile.is_lines(name):

            def lines() -> Iterator[bytes]:
                for line in fh:
                    digest.update(line)
                    yield line

            parsed = dropfile.parse_lines(lines(), out.rel, self.group, self.ids, self.ttl_hops)
            out.packets, out.notes = parsed.packets, parsed.notes
        else:
            raw = fh.read()
            digest.update(raw)
            parsed = dropfile.parse_document(raw, out.rel, self.group, self.ids, self.ttl_hops)
            out.packets, out.notes = parsed.packets, parsed.notes
        out.source = Source(out.rel, st.st_size, st.st_mtime_ns, digest.hexdigest())

    async def _move_on(self, moves: list[tuple[Read, str]]) -> None:
        results = await asyncio.to_thread(self._move_all, [(r.rel, where, r.error) for r, where in moves])
        for (r, where), problem in zip(moves, results, strict=True):
            self._seen.pop(r.rel, None)
            if where == "failed":
                self.counters["files_failed"] += 1
                first = self.counters["files_failed"] == 1
                log.log(
                    logging.WARNING if first else logging.DEBUG,
                    "rx %s: %s (%s)%s",
                    r.rel,
                    r.error,
                    "could not be moved to failed/" if problem else "moved to failed/",
                    " [further failed files are logged at debug level; see failed/ and pmk stats]" if first else "",
                )
            if problem:
                self._stuck[r.rel] = (r.sig, r.known)
                self._warn(
                    f"move:{r.rel}",
                    f"rx {r.rel}: cannot move it to {where}/: {problem}; it stays in "
                    "the folder and will not be read again",
                )
            elif r.known is not None:
                self.counters["files_done"] += 1
                self.journal.moved(r.known)

    def _move_all(self, items: list[tuple[str, str, str]]) -> list[str]:
        """Move each file to done/ or failed/ (or remove it), then fsync the folders; on a thread."""
        problems: list[str] = []
        touched: set[Path] = set()
        for rel, where, error in items:
            src = self.root / rel
            try:
                if where == "done" and self.cfg.processed == "remove":
                    src.unlink()
                else:
                    dest = _free_name(self.root / where / rel)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if where == "failed":
                        reason = " ".join(error.split())
                        dest.with_name(dest.name + ".error").write_text(f"{rel}: {reason}\n", encoding="utf-8")
                    os.replace(src, dest)
                    touched.add(dest.parent)
                touched.add(src.parent)
                problems.append("")
            except FileNotFoundError:
                problems.append("")  # gone already (a user took it back): nothing left to move
            except OSError as exc:
                problems.append(str(exc.strerror or exc))
        for folder in touched:
            try:
                fsync_dir(folder)
            except OSError as exc:
                log.warning("rx: fsync of %s failed: %s", folder, exc)
        return problems

    # -- after a crash ---------------------------------------------------------------------------

    async def _recognise(self, expected: list[Entry]) -> None:
        """Files still here that were accepted before a crash are moved on, not injected again."""

        def check() -> list[tuple[Entry, Signature | None]]:
            out = []
            for entry in expected:
                assert entry.source is not None
                path = self.root / entry.source.rel
                same: Signature | None = None
                try:
                    st = path.stat()
                    sig = (st.st_size, st.st_mtime_ns)
                    if sig == (entry.source.size, entry.source.mtime_ns) and _sha256(path) == entry.source.sha256:
                        same = sig
                except OSError:
                    pass  # gone: it was moved on before the crash
                out.append((entry, same))
            return out

        moves: list[tuple[Read, str]] = []
        for entry, sig in await asyncio.to_thread(check):
            if sig is None:
                self.journal.moved(entry)  # it left the folder before the crash (or was replaced)
            else:
                assert entry.source is not None
                self.counters["files_recognised"] += 1
                moves.append((Read(entry.source.rel, sig, entry.source, known=entry), "done"))
        if moves:
            log.info("rx: %d file(s) were accepted before the last stop but not yet moved; moving them on", len(moves))
            await self._move_on(moves)

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
