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

**What the folder's writers can do.** Whoever may write into the folder may make the daemon inject data, and
nothing more: the daemon may run as root, and what lies in the folder must not make it read or write anywhere
else. So no link is ever followed: every file and folder is opened relative to a descriptor of the folder it
lies in, with ``O_NOFOLLOW`` (the drop folder itself is opened once, at start, as configured). Only regular
files with one link are read: a symbolic link, a FIFO, a socket, a device or a file with several hard links
(a link can reach a file its maker may not read) is refused unopened and moved, as it is, to ``failed/`` with
the reason; a file is opened non-blocking and checked (``fstat``) to be the one that was looked at. ``done/``
and ``failed/`` must be real folders owned by the daemon's user: while one is not, no file is taken (nothing
is read or written) and the reason is logged once; taking resumes when it is fixed. A sub-folder of theirs
that is not keeps the file bound for it in the drop folder, never read again (as any file that cannot be
moved on). A
file not owned by the daemon's user is read when it has one link (that is how users hand files to a daemon
that runs as root). File events are watched on the folder and its real sub-folders only, never through links.

All state is owned by the event loop; only stat, read, rename and fsync calls run on threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import io
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
from .journal import Entry, Journal, Source, Unwritable
from .packet import DEFAULT_TTL_HOPS, Hop, IdMaker, Packet
from .supervisor import Spawn, unsupervised

log = logging.getLogger(__name__)
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch of events at INFO

BATCH_FILES = 256  # files per journal commit: one fsync each way, and a bounded pause of the scanner
READ_CHUNK_BYTES = 1 << 20
WATCH_STEP_MS = 50  # watchfiles: how long a burst of events is gathered before the scanner is woken
# Sub-folders given file events; past this many, the rest are found by the rescan alone (inotify watches are a
# per-user kernel resource, and every folder costs one).
WATCH_FOLDERS_MAX = 256
REWATCH_S = 60.0  # after file events failed to start: try them again this often (or when the sub-folders change)
# O_NONBLOCK: opening a FIFO (put there after it was looked at) must not wait for a writer; O_NOCTTY: a terminal
# device must not become ours. Neither changes how a regular file reads.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ERROR_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Signature = tuple[int, int]  # (size, mtime_ns)
Identity = tuple[int, int]  # (st_dev, st_ino): the very file that was read, whatever its name holds later


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
    ident: Identity | None = None  # what was read (or refused): only that is moved on
    refused: bool = False  # never opened: a link, a special file, a file with several links


@dataclass
class Seen:
    """A file the scanner has seen, and since when it has looked the same."""

    sig: Signature
    since: float


class Refused(Exception):
    """An entry of the folder the daemon will not open, or a folder it will not write in; the text says why."""

    def __init__(self, reason: str, ident: Identity | None = None) -> None:
        super().__init__(reason)
        self.ident = ident


class _Changed(Exception):
    """The entry is not what the scan saw (gone, or replaced since): look at it again at the next scan."""


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


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a file" if stat.S_ISREG(mode) else "of an unknown kind"


def refusal(st: os.stat_result) -> str | None:
    """Why an entry (as ``lstat`` sees it) is never opened; None for a regular file with one link."""
    if stat.S_ISLNK(st.st_mode):
        return "refused: a symbolic link; links are never followed here (move or copy the file itself in)"
    if not stat.S_ISREG(st.st_mode):
        return f"refused: {_kind(st.st_mode)}; only regular files are read"
    if st.st_nlink > 1:
        return (
            f"refused: the file has {st.st_nlink} hard links (a link can reach a file its maker may not read); "
            "move or copy the file in instead"
        )
    return None


def open_dir(name: str, dir_fd: int) -> int:
    """A descriptor of the folder ``name`` in ``dir_fd``; OSError when it is not a folder or is a link to one."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def own_dir(name: str, dir_fd: int, label: str) -> int:
    """A descriptor of the folder ``name`` in ``dir_fd`` (made when missing) that the daemon may write in: a real
    folder, reached through no link, owned by the daemon's user. Raises Refused saying what is wrong."""
    try:
        os.mkdir(name, dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Refused(f"{label} cannot be made: {exc.strerror or exc}") from None
    try:
        fd = open_dir(name, dir_fd)
    except OSError as exc:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            raise Refused(f"{label} cannot be opened: {exc.strerror or exc}") from None
        raise Refused(f"{label} is {_kind(st.st_mode)}, not a folder") from None
    owner, euid = os.fstat(fd).st_uid, os.geteuid()
    if owner != euid:
        os.close(fd)
        raise Refused(f"{label} belongs to uid {owner}, not to the daemon's user (uid {euid})")
    return fd


def _taken(name: str, dir_fd: int) -> bool:
    for candidate in (name, name + ".error"):
        try:
            os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        return True
    return False


def _free_name(name: str, dir_fd: int) -> str:
    if not _taken(name, dir_fd):
        return name
    stem, suffix = os.path.splitext(name)
    for n in range(1, 1_000_000):
        candidate = f"{stem}-{n}{suffix}"
        if not _taken(candidate, dir_fd):
            return candidate
    raise OSError(errno.EEXIST, f"no free name for {name}")


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
        spawn: Spawn = unsupervised,
    ) -> None:
        """``ttl_hops``: the hops a packet from a file may make unless the file says (``routing.ttl_hops``);
        ``spawn`` starts the scanner and the watcher (restarted if they crash)."""
        self._spawn = spawn
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
        self.halted = ""  # why no file is taken now (done/ or failed/ is unsafe); empty while files are taken
        self._root_fd = -1
        self._expected: list[Entry] = []  # accepted before a crash: recognised before any file is read
        self._seen: dict[str, Seen] = {}
        self._stuck: dict[str, tuple[Signature, Entry | None]] = {}  # could not be moved on: retried, never re-read
        self._warned: set[str] = set()
        self._wake = asyncio.Event()
        self._stop = threading.Event()  # watchfiles checks it from its thread
        self._folders: list[str] = []  # the real sub-folders the last scan found
        self._watching: list[str] | None = None  # the sub-folders file events are watched in
        self._rewatch = threading.Event()  # set: the watch ends, and starts again on the sub-folders found now
        self._folders_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._leases = threading.current_thread() is threading.main_thread()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, expected: list[Entry]) -> None:
        """Recognise files accepted before a crash (``expected``), then watch the folder."""
        if self._leases:
            # A writer opening a file while we hold its lease for a moment makes the kernel send SIGIO, whose
            # default action would end the daemon.
            signal.signal(signal.SIGIO, signal.SIG_IGN)
        self._root_fd = await asyncio.to_thread(self._open_root)
        self._expected = list(expected)  # the scanner recognises them before it reads any file
        self._tasks = [
            self._spawn("rx-scanner", self._scanner),
            self._spawn("rx-watcher", self._watcher),
        ]
        log.info(
            "Watching rx folder %s (processed files go to %s)",
            self.root,
            "done/" if self.cfg.processed == "move" else "nowhere: they are removed",
        )

    async def close(self) -> None:
        """Stop taking files; a batch already read finishes (journaled, routed, moved). Idempotent."""
        self._stop.set()
        self._rewatch.set()
        self._wake.set()
        for task in self._tasks:
            if task.get_name() == "rx-watcher":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def snapshot(self) -> dict[str, object]:
        """Counters for ``pmk stats``."""
        halted = {"halted": self.halted} if self.halted else {}
        return {"dir": str(self.root), "events": self.events, **halted, **self.counters}

    def _open_root(self) -> int:
        # Opened once, following the configured path as an administrator wrote it: what becomes of that path
        # later (renamed, replaced by a link) never moves the daemon into another folder.
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for sub in dropfile.RESERVED:
            with contextlib.suppress(OSError):
                os.mkdir(sub, dir_fd=fd)  # there at once; what is there instead is judged by every scan
        return fd

    def _halt(self, reason: str) -> None:
        """Say once when taking files stops (and why) or starts again."""
        if reason and reason != self.halted:
            log.error(
                "rx folder %s: %s; no file is taken (nothing in the folder is read or written) until that is fixed",
                self.root,
                reason,
            )
        elif not reason and self.halted:
            log.warning("rx folder %s: done/ and failed/ are usable again; taking files", self.root)
        self.halted = reason

    # -- watching --------------------------------------------------------------------------------

    async def _watcher(self) -> None:
        try:
            import watchfiles
        except ImportError as exc:
            self._warn(
                "watch", f"rx folder {self.root}: no file events ({exc}); polling every {self.cfg.poll_interval_s:g} s"
            )
            return
        reserved = {str(self.root / sub) for sub in dropfile.RESERVED}  # made and moved into by us
        while not self._stop.is_set():
            # Never recursive: watchfiles follows symbolic links into whatever they point at (all of / for a
            # link to it). The folder and each real sub-folder are watched, each on its own.
            self._watching = self._folders[:WATCH_FOLDERS_MAX]
            self._rewatch = threading.Event()
            if self._stop.is_set():
                return
            self._folders_changed.clear()
            try:
                async for _ in watchfiles.awatch(
                    self.root,
                    *(self.root / name for name in self._watching),
                    watch_filter=lambda _c, p: p not in reserved,
                    debounce=1000,
                    step=WATCH_STEP_MS,
                    stop_event=self._rewatch,
                    rust_timeout=1000,
                    recursive=False,
                ):
                    self.events = True
                    self._wake.set()
                continue  # the sub-folders changed (or the daemon stops)
            except asyncio.CancelledError:
                raise
            except FileNotFoundError:
                pass  # a sub-folder went away between the scan and the watch: the scan notices, and it starts again
            except Exception as exc:  # noqa: BLE001 - events are an optimisation; polling still finds every file
                self._warn(
                    "watch",
                    f"rx folder {self.root}: file events unavailable ({exc}); polling every "
                    f"{self.cfg.poll_interval_s:g} s",
                )
            self.events = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._folders_changed.wait(), REWATCH_S)

    async def _scanner(self) -> None:
        while not self._stop.is_set():
            timeout = self.cfg.poll_interval_s
            try:
                halted, found, folders = await asyncio.to_thread(self._scan)
            except OSError as exc:
                # Not an empty folder: what the scan could not list must not count as gone (see _settled).
                self._warn("scan", f"rx folder {self.root} cannot be read: {exc}; trying again")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            self._halt(halted)
            if folders != self._folders:
                self._folders = folders
                self._folders_changed.set()
                if folders[:WATCH_FOLDERS_MAX] != self._watching:
                    self._rewatch.set()
            if halted:
                self.counters["scans"] += 1
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            if self._expected:
                expected, self._expected = self._expected, []
                await self._recognise(expected)
                continue  # what it moved on is gone from the folder: look again before reading anything
            ready, wait_s = self._settled(found, time.monotonic())
            self.counters["scans"] += 1
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

    def _scan(self) -> tuple[str, dict[str, Signature], list[str]]:
        """Why no file may be taken now (or ""), every candidate entry (relative name -> size and mtime, as
        lstat sees it), and the real sub-folders; on a thread."""
        try:
            self._check_folders()
        except Refused as exc:
            return str(exc), {}, self._folders
        out: dict[str, Signature] = {}
        folders: list[str] = []
        patterns = self.cfg.ignore
        with os.scandir(self._root_fd) as top:
            for entry in top:
                if entry.name in dropfile.RESERVED or dropfile.ignored(entry.name, patterns):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.name)
                        self._scan_state_folder(entry.name, out)
                    else:
                        st = entry.stat(follow_symlinks=False)  # links, FIFOs...: listed, and refused when read
                        out[entry.name] = (st.st_size, st.st_mtime_ns)
                except FileNotFoundError:
                    continue  # gone since it was listed
        return "", out, sorted(folders)

    def _scan_state_folder(self, name: str, out: dict[str, Signature]) -> None:
        try:
            fd = open_dir(name, self._root_fd)
        except OSError:
            return  # replaced since it was listed (a link now?): the next scan sees what it is
        try:
            with os.scandir(fd) as inner:
                for entry in inner:
                    if dropfile.ignored(entry.name, self.cfg.ignore):
                        continue
                    rel = f"{name}/{entry.name}"
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            self._warn(
                                rel, f"rx: {self.root / rel} is not read: a state folder holds files, not folders"
                            )
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    out[rel] = (st.st_size, st.st_mtime_ns)
        finally:
            os.close(fd)

    def _check_folders(self) -> None:
        """Raise Refused unless every folder files are moved to is one the daemon may write in (made if missing)."""
        for sub in dropfile.RESERVED:
            if sub == "done" and self.cfg.processed == "remove":
                # Made as ever, but never written in: whatever is there instead does no harm.
                with contextlib.suppress(OSError):
                    os.mkdir(sub, dir_fd=self._root_fd)
                continue
            os.close(own_dir(sub, self._root_fd, f"{sub}/"))

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
                results = await self.journal.add_each([(r.source, r.packets) for r in good])
            except OSError as exc:
                self._warn(
                    "journal", f"rx: cannot accept files now ({exc}); they stay in {self.root} and are tried again"
                )
                for r in good:
                    self._seen.pop(r.rel, None)
                good = []
                results = []
            for r, result in zip(good, results, strict=True):
                if isinstance(result, Unwritable):
                    r.error, r.packets = str(result), []  # this file alone: the others of the batch are accepted
                    moves.append((r, "failed"))
                    continue
                r.known = result
                for note in r.notes:
                    log.warning("rx %s: %s", r.rel, note)
                self.admit(result, r.packets)
                self.counters["files_accepted"] += 1
                self.counters["packets_injected"] += len(r.packets)
                r.packets = []
                moves.append((r, "done"))
        if moves:
            await self._move_on(moves)

    @contextlib.contextmanager
    def _opened(self, rel: str) -> Iterator[tuple[IO[bytes], os.stat_result]]:
        """The regular file ``rel`` with one link, opened through no link and checked to be the entry looked at.

        Raises Refused (an entry never to be opened), _Changed (gone or replaced: look again) or OSError.
        """
        folder, _, name = rel.rpartition("/")
        try:
            dir_fd = open_dir(folder, self._root_fd) if folder else self._root_fd
        except OSError:
            raise _Changed from None  # the sub-folder went away, or is a link now: the next scan says which
        try:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise _Changed from None
            why = refusal(st)
            if why:
                raise Refused(why, (st.st_dev, st.st_ino))
            try:
                fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
                    raise _Changed from None  # gone, or no longer a regular file since the stat above
                raise
            with open(fd, "rb") as fh:
                now = os.fstat(fd)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or refusal(now):
                    raise _Changed
                yield fh, now
        finally:
            if folder:
                os.close(dir_fd)

    def _read(self, rel: str, sig: Signature) -> Read:
        """Read one file as packets (on a thread); never raises."""
        out = Read(rel, sig)
        try:
            with self._opened(rel) as (fh, st):
                out.ident = (st.st_dev, st.st_ino)
                try:
                    self._read_open(fh, st, out)
                except PacketError as exc:
                    out.error = str(exc)
                except OSError as exc:
                    out.error = f"cannot be read: {exc.strerror or exc}"
                after = os.fstat(fh.fileno())
                if not out.again and (after.st_size, after.st_mtime_ns) != sig:
                    out.again = True  # written to while we read it
        except _Changed:
            out.again = True
        except Refused as exc:
            out.error, out.refused, out.ident = str(exc), True, exc.ident
        except OSError as exc:
            out.error = f"cannot be opened: {exc.strerror or exc}"
        if out.again:
            out.packets, out.source, out.error = [], None, ""
        return out

    def _read_open(self, fh: IO[bytes], st: os.stat_result, out: Read) -> None:
        if (st.st_size, st.st_mtime_ns) != out.sig or writer_open(fh.fileno()):
            out.again = True
            return
        if st.st_size > self.cfg.max_file_bytes:
            raise PacketError(
                f"the file has {st.st_size} bytes, more than rx.max_file_bytes "
                f"({self.cfg.max_file_bytes}); raise that key or split the file"
            )
        # At most one byte more than it had: a writer that appends without end cannot make us read without end.
        raw = fh.read(st.st_size + 1)
        if len(raw) != st.st_size:
            out.again = True
            return
        folder, _, name = out.rel.rpartition("/")
        if folder:
            state = dropfile.state_of_folder(folder, self.group)
            out.packets = [dropfile.raw_packet(state, raw, out.rel, self.ids, self.ttl_hops)]
        else:
            if dropfile.is_lines(name):
                parsed = dropfile.parse_lines(io.BytesIO(raw), out.rel, self.group, self.ids, self.ttl_hops)
            else:
                parsed = dropfile.parse_document(raw, out.rel, self.group, self.ids, self.ttl_hops)
            out.packets, out.notes = parsed.packets, parsed.notes
        out.source = Source(out.rel, st.st_size, st.st_mtime_ns, hashlib.sha256(raw).hexdigest())

    async def _move_on(self, moves: list[tuple[Read, str]]) -> None:
        results = await asyncio.to_thread(self._move_all, [(r.rel, where, r.error, r.ident) for r, where in moves])
        for (r, where), problem in zip(moves, results, strict=True):
            self._seen.pop(r.rel, None)
            if where == "failed":
                self.counters["files_failed"] += 1
                if r.refused:
                    self.counters["files_refused"] += 1
                # Every one at WARNING (``logfold`` folds a flood of them into a line a minute).
                log.warning(
                    "rx %s: %s (%s)", r.rel, r.error, "could not be moved to failed/" if problem else "moved to failed/"
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

    def _move_all(self, items: list[tuple[str, str, str, Identity | None]]) -> list[str]:
        """Move each entry to done/ or failed/ (or remove it), then fsync the folders; on a thread.

        Every step is relative to a folder descriptor opened through no link; an entry whose name holds
        another file than the one read (replaced meanwhile) is left for the next scan: the one read is gone.
        """
        problems: list[str] = []
        fds: dict[str, int] = {}  # "x" a sub-folder of the drop folder, "done/" done/ itself, "done/x" its sub-folder
        touched: set[int] = set()

        def source_fd(folder: str) -> int:
            if not folder:
                return self._root_fd
            if folder not in fds:
                fds[folder] = open_dir(folder, self._root_fd)
            return fds[folder]

        def dest_fd(where: str, folder: str) -> int:
            if f"{where}/" not in fds:
                fds[f"{where}/"] = own_dir(where, self._root_fd, f"{where}/")
            top = fds[f"{where}/"]
            if not folder:
                return top
            if f"{where}/{folder}" not in fds:
                fds[f"{where}/{folder}"] = own_dir(folder, top, f"{where}/{folder}/")
            return fds[f"{where}/{folder}"]

        try:
            for rel, where, error, ident in items:
                folder, _, name = rel.rpartition("/")
                try:
                    src = source_fd(folder)
                    try:
                        st = os.stat(name, dir_fd=src, follow_symlinks=False)
                    except FileNotFoundError:
                        problems.append("")  # gone already (a user took it back): nothing left to move
                        continue
                    if ident is not None and (st.st_dev, st.st_ino) != ident:
                        problems.append("")  # replaced since it was read: the new one is looked at anew
                        continue
                    if where == "done" and self.cfg.processed == "remove":
                        os.unlink(name, dir_fd=src)
                    else:
                        dest = dest_fd(where, folder)
                        target = _free_name(name, dest)
                        if where == "failed":
                            reason = " ".join(error.split())
                            with open(
                                os.open(target + ".error", ERROR_FLAGS, 0o644, dir_fd=dest), "w", encoding="utf-8"
                            ) as fh:
                                fh.write(f"{rel}: {reason}\n")
                        os.rename(name, target, src_dir_fd=src, dst_dir_fd=dest)
                        touched.add(dest)
                    touched.add(src)
                    problems.append("")
                except Refused as exc:
                    problems.append(str(exc))
                except OSError as exc:
                    problems.append(str(exc.strerror or exc))
            for fd in touched:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    log.warning("rx: fsync of a folder in %s failed: %s", self.root, exc)
        finally:
            for fd in fds.values():
                os.close(fd)
        return problems

    # -- after a crash ---------------------------------------------------------------------------

    async def _recognise(self, expected: list[Entry]) -> None:
        """Files still here that were accepted before a crash are moved on, not injected again."""

        def check() -> list[tuple[Entry, tuple[Signature, Identity] | str | None]]:
            out: list[tuple[Entry, tuple[Signature, Identity] | str | None]] = []
            for entry in expected:
                assert entry.source is not None
                src = entry.source
                same: tuple[Signature, Identity] | str | None = None
                try:
                    with self._opened(src.rel) as (fh, st):
                        sig = (st.st_size, st.st_mtime_ns)
                        if sig == (src.size, src.mtime_ns) and _sha256(fh) == src.sha256:
                            same = (sig, (st.st_dev, st.st_ino))
                except (Refused, _Changed):
                    pass  # gone (moved on before the crash), or not the file that was accepted
                except OSError as exc:
                    same = str(exc.strerror or exc)  # cannot tell: it must not be taken for a new file
                out.append((entry, same))
            return out

        moves: list[tuple[Read, str]] = []
        for entry, same in await asyncio.to_thread(check):
            assert entry.source is not None
            if same is None:
                self.journal.moved(entry)  # it left the folder before the crash (or was replaced)
            elif isinstance(same, str):
                # Left where it is, and never read while it keeps the size and mtime it was accepted with.
                self._stuck[entry.source.rel] = ((entry.source.size, entry.source.mtime_ns), entry)
                self._warn(
                    f"move:{entry.source.rel}",
                    f"rx {entry.source.rel}: accepted before the last stop, but cannot be checked now ({same}); "
                    "it stays in the folder and will not be read again",
                )
            else:
                self.counters["files_recognised"] += 1
                sig, ident = same
                moves.append((Read(entry.source.rel, sig, entry.source, known=entry, ident=ident), "done"))
        if moves:
            log.info("rx: %d file(s) were accepted before the last stop but not yet moved; moving them on", len(moves))
            await self._move_on(moves)

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


def _sha256(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(READ_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()
