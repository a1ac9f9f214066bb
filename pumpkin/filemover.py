"""File payloads on disk and between nodes: the store in ``WORKDIR/files/``, serving chunks, fetching them.

Store layout, one folder per copy of a file (its descriptor's key, see ``files``)::

    files/<key>/<name>             the file, complete and verified (sealed here, or fetched)
    files/<key>/.pmk-file.json     its descriptor and the sha256 of every chunk (what this node serves)
    files/<key>/.part, .have       a fetch under way: the chunks written so far, and "index sha256" per line

**Lifetime.** A file is kept while a packet that refers to it is held on this node, as custody counts holds
(see ``custody``): each such packet gets a custody token of its own, chained to the one it inherited, and when
that token is released (the packet and everything made from it here is safe: acknowledged by the next node,
which acknowledges only after its seed ran on its own copy, or durable in failed/ or tx/) the folder is removed.
So the holder's copy goes only once the next node has the file and has finished with it. A packet kept in
``failed/`` keeps its file: it is hard-linked next to it (``<stem>.files/<name>``). Nothing is removed once the
daemon stops: packets saved to ``pending/`` keep theirs.

Sealing (hashing a file, moving it into the store) runs where the seed runs, on its worker thread; reading,
writing and verifying chunks run on threads too. Everything else here lives on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import files
from .custody import Custody
from .files import CHUNK_BYTES, Descriptor, File, FileError, Transfer
from .packet import Packet

log = logging.getLogger(__name__)

SIDECAR = ".pmk-file.json"
PART = ".part"
HAVE = ".have"
#: Fetches under way at once; more wait their turn (each costs a window of chunks in memory).
MAX_FETCHES = 2
#: A fetch that receives nothing for this long fails its packet (the holder is gone for good).
FETCH_STALL_S = 60.0
TICK_S = 0.25
SERVED_CACHE = 16  # descriptors and digests of files being served, kept in memory
READ_BUFFER_BYTES = 1 << 20

#: send(node, frames) -> False when there is no link to ``node`` (or no room on it now).
Send = Callable[[str, list[bytes]], bool]
#: done(error): "" once the file is here, else why it could not be fetched (called on the loop).
Done = Callable[[str], None]


class FileStore:
    """``WORKDIR/files/``: sealing, serving and assembling files (thread-safe where it runs on threads)."""

    def __init__(self, root: Path, node_id: str) -> None:
        self.root = root
        self.node_id = node_id
        self.refs: Counter[str] = Counter()
        self.frozen = False
        self._served: OrderedDict[str, tuple[Descriptor, list[str]]] = OrderedDict()

    def folder(self, key: str) -> Path:
        """Where the copy named ``key`` lives."""
        return self.root / key

    def path_of(self, desc: Descriptor) -> Path:
        """Where the complete file of ``desc`` is (or will be) on this node."""
        return self.root / desc.key / desc.name

    # -- sealing (seed threads) ------------------------------------------------------------------

    def seal(self, data: Any, legacy: bool) -> Any:
        """Seed output ``data`` as it travels: a ``File`` (or a legacy seed's ``file://`` string) becomes the
        descriptor of a sealed copy; anything else is returned as it is. Raises FileError."""
        if isinstance(data, File):
            return self.seal_path(data.path, data.name, keep=data.keep).data()
        path = files.legacy_path(data) if legacy else None
        if path is not None:
            return self.seal_path(Path(path), keep=False).data()
        return data

    def seal_path(self, path: Path, name: str = "", keep: bool = False) -> Descriptor:
        """Hand ``path`` over to the store (moved, or copied with ``keep``), hashed per chunk and whole."""
        try:
            resolved = path.resolve()
            inside = resolved.parent.parent == self.root.resolve()
        except OSError as exc:
            raise FileError(f"file {path} cannot be handed over: {exc}") from None
        if inside:
            known = self._sidecar(resolved.parent.name)
            if known is not None and known[0].name == resolved.name:
                return known[0].held_by(self.node_id)  # a file this node received, passed on as it is
        if not path.is_file():
            raise FileError(f"file {path} cannot be handed over: it is not a regular file")
        key = os.urandom(16).hex()
        folder = self.folder(key)
        desc_name = files.safe_name(name or path.name)
        target = folder / desc_name
        try:
            folder.mkdir(parents=True)
            if keep:
                shutil.copyfile(path, target)
            else:
                shutil.move(str(path), target)
            size, whole, digests = hash_file(target)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise FileError(f"file {path} cannot be handed over: {exc}") from None
        desc = Descriptor(key, desc_name, size, whole, CHUNK_BYTES, self.node_id)
        self._write_sidecar(desc, digests)
        return desc

    def _write_sidecar(self, desc: Descriptor, digests: list[str]) -> None:
        body = orjson.dumps({"desc": desc.data()[files.DESCRIPTOR_KEY], "digests": digests})
        tmp = self.folder(desc.key) / f"{SIDECAR}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self.folder(desc.key) / SIDECAR)

    def _sidecar(self, key: str) -> tuple[Descriptor, list[str]] | None:
        try:
            raw = orjson.loads((self.folder(key) / SIDECAR).read_bytes())
            desc = files.descriptor_of({files.DESCRIPTOR_KEY: raw["desc"]})
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, FileError):
            return None
        digests = raw.get("digests")
        if desc is None or not isinstance(digests, list) or len(digests) != desc.chunks:
            return None
        return desc, [str(d) for d in digests]

    def localize(self, data: Any, legacy: bool) -> Any:
        """Packet ``data`` as a seed sees it: a descriptor becomes a ``File`` at its local path (a legacy
        seed gets a ``file://`` URL to it); anything else is returned as it is."""
        try:
            desc = files.descriptor_of(data)
        except FileError:
            return data
        if desc is None:
            return data
        path = self.path_of(desc)
        if legacy:
            return files.LEGACY_SCHEME + str(path)
        f = File(path, desc.name)
        f.size, f.sha256 = desc.size, desc.sha256
        return f

    def complete(self, desc: Descriptor) -> bool:
        """True when this node has the whole file of ``desc`` (verified)."""
        known = self._sidecar(desc.key)
        return known is not None and known[0].sha256 == desc.sha256 and self.path_of(desc).is_file()

    # -- serving (threads) -----------------------------------------------------------------------

    def served(self, key: str) -> tuple[Descriptor, list[str]] | None:
        """The descriptor and chunk digests of a complete file this node can serve (cached)."""
        hit = self._served.get(key)
        if hit is not None:
            self._served.move_to_end(key)
            return hit
        known = self._sidecar(key)
        if known is not None and self.path_of(known[0]).is_file():
            self._served[key] = known
            while len(self._served) > SERVED_CACHE:
                self._served.popitem(last=False)
        return known

    def read_chunk(self, desc: Descriptor, index: int) -> bytes:
        """Chunk ``index`` as it is on disk now (its digest is the one from sealing: see ``served``)."""
        with open(self.path_of(desc), "rb") as fh:
            return os.pread(fh.fileno(), desc.chunk, index * desc.chunk)

    # -- assembling (threads) --------------------------------------------------------------------

    def partial(self, desc: Descriptor) -> dict[int, str]:
        """The chunks of ``desc`` already written here by an earlier fetch (index -> sha256)."""
        folder = self.folder(desc.key)
        folder.mkdir(parents=True, exist_ok=True)
        have: dict[int, str] = {}
        try:
            text = (folder / HAVE).read_text()
        except OSError:
            return have
        for line in text.splitlines():
            index, _, digest = line.partition(" ")
            if index.isdigit() and len(digest) == 64:
                have[int(index)] = digest
        return have

    def write_chunk(self, desc: Descriptor, index: int, digest: str, data: bytes) -> str | None:
        """Check ``data`` against ``digest``, then write it in place and record it; None when it does not match."""
        if hashlib.sha256(data).hexdigest() != digest or len(data) != _chunk_size(desc, index):
            return None
        folder = self.folder(desc.key)
        fd = os.open(folder / PART, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, index * desc.chunk)
        finally:
            os.close(fd)
        with open(folder / HAVE, "a") as fh:
            fh.write(f"{index} {digest}\n")  # after the data: a recorded chunk is a written one
        return digest

    def finish(self, desc: Descriptor, have: dict[int, str]) -> list[int]:
        """Check the whole assembled file; when it matches, make it durable and complete (``[]``). Otherwise
        check each chunk again and return those that are wrong on disk, to fetch again; FileError when every
        chunk matches its digest and the whole still does not: the holder's copy is corrupt."""
        folder = self.folder(desc.key)
        part = folder / PART
        if desc.size == 0:
            part.touch()
        with open(part, "r+b") as fh:
            fh.truncate(desc.size)
            os.fsync(fh.fileno())
        size, whole, digests = hash_file(part, desc.chunk)
        if whole == desc.sha256 and size == desc.size:
            os.replace(part, self.path_of(desc))
            self._write_sidecar(desc, digests)
            (folder / HAVE).unlink(missing_ok=True)
            _fsync_dir(folder)
            return []
        bad = [i for i, d in enumerate(digests) if have.get(i) != d]
        if not bad:
            raise FileError(
                f"{desc.name} from {desc.node}: every chunk matches its sha256 and the whole file does not: "
                "the holder's copy is corrupt"
            )
        keep = "".join(f"{i} {d}\n" for i, d in sorted(have.items()) if i not in set(bad))
        (folder / HAVE).write_text(keep)
        return bad

    # -- lifetime (loop) -------------------------------------------------------------------------

    def acquire(self, key: str) -> None:
        """One more packet held here refers to the copy ``key``."""
        self.refs[key] += 1

    def release(self, key: str) -> bool:
        """One packet fewer refers to ``key``; True when that was the last and the copy is to be removed."""
        self.refs[key] -= 1
        if self.refs[key] > 0:
            return False
        del self.refs[key]
        self._served.pop(key, None)
        return not self.frozen

    def remove(self, key: str) -> None:
        """Remove the copy ``key`` (blocking: a thread)."""
        shutil.rmtree(self.folder(key), ignore_errors=True)

    def keep_with(self, packet: Packet, stem: Path) -> None:
        """Hard-link the file of a packet kept in failed/ next to it (``<stem>.files/<name>``), when it is here."""
        try:
            desc = files.descriptor_of(packet.data)
        except FileError:
            return
        if desc is None or not self.path_of(desc).is_file():
            return
        target = stem.with_name(stem.name + ".files")
        target.mkdir(exist_ok=True)
        try:
            os.link(self.path_of(desc), target / desc.name)
        except OSError:
            shutil.copyfile(self.path_of(desc), target / desc.name)


def _chunk_size(desc: Descriptor, index: int) -> int:
    return max(0, min(desc.chunk, desc.size - index * desc.chunk))


def hash_file(path: Path, chunk: int = CHUNK_BYTES) -> tuple[int, str, list[str]]:
    """(size, sha256 of the whole, sha256 of each ``chunk``-byte piece) of ``path``, reading a chunk at a time."""
    whole = hashlib.sha256()
    digests: list[str] = []
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while True:
            piece = fh.read(chunk)
            if not piece:
                break
            size += len(piece)
            whole.update(piece)
            digests.append(hashlib.sha256(piece).hexdigest())
    return size, whole.hexdigest(), digests


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Fetch:
    """One file being fetched, and the packets waiting for it."""

    transfer: Transfer
    waiters: list[Done] = field(default_factory=list)
    started: float = 0.0
    finishing: bool = False
    busy: int = 0  # chunks being verified and written on a thread


class FileMover:
    """Moves files between nodes for the packets that carry them; lives on the event loop.

    The seed runner calls ``prepare`` before a packet with a file runs (the file is fetched first when it is
    elsewhere), ``seal``/``localize`` on its worker threads; the router calls ``adopt`` for every packet a seed
    made here; the daemon hands it GET and CHUNK messages (``handle``).
    """

    def __init__(self, store: FileStore, node_id: str, send: Send, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.node_id = node_id
        self.send = send
        self.clock = clock
        self.fetches: dict[str, Fetch] = {}
        self.queue: OrderedDict[str, Fetch] = OrderedDict()  # waiting for a place among MAX_FETCHES
        self.counters: Counter[str] = Counter()
        self._tick: asyncio.TimerHandle | None = None
        self._stopped = False
        self._logged: set[str] = set()

    # -- the runner's side -----------------------------------------------------------------------

    def seal(self, data: Any, legacy: bool) -> Any:
        """See ``FileStore.seal`` (on a seed's thread)."""
        return self.store.seal(data, legacy)

    def localize(self, data: Any, legacy: bool) -> Any:
        """See ``FileStore.localize`` (on a seed's thread)."""
        return self.store.localize(data, legacy)

    def needs(self, packet: Packet) -> bool:
        """True when ``packet`` carries a file this node does not hold (``prepare`` it before it runs)."""
        data = packet.data
        if not files.is_file_data(data):
            return False
        inner = data[files.DESCRIPTOR_KEY]
        return not (isinstance(inner, dict) and inner.get("node") == self.node_id)

    def prepare(self, packet: Packet, then: Done) -> None:
        """Make ``packet``'s file local (fetched from its holder unless here already), then call ``then("")``;
        ``then(reason)`` when that fails. From then on the packet's descriptor names this node, and its local
        copy lives until the packet (held once now) and what is made of it are safe."""
        try:
            desc = files.descriptor_of(packet.data)
        except FileError as exc:
            asyncio.get_running_loop().call_soon(then, str(exc))
            return
        assert desc is not None
        self._chain(packet, desc.key, swap=True)
        mine = desc.held_by(self.node_id)

        def done(error: str) -> None:
            if not error:
                packet.data = mine.data()
            then(error)

        if self.store.complete(desc):
            self.counters["already_here"] += 1
            asyncio.get_running_loop().call_soon(done, "")
            return
        fetch = self.fetches.get(desc.key) or self.queue.get(desc.key)
        if fetch is None:
            fetch = Fetch(Transfer(desc), started=self.clock())
            self.queue[desc.key] = fetch
        fetch.waiters.append(done)
        self._start_queued()

    def adopt(self, packet: Packet) -> None:
        """A seed here made ``packet``: when it carries a file held here, the copy lives as long as the packet."""
        data = packet.data
        if not files.is_file_data(data):
            return
        inner = data[files.DESCRIPTOR_KEY]
        if isinstance(inner, dict) and inner.get("node") == self.node_id and isinstance(inner.get("key"), str):
            custody = self._chain(packet, inner["key"], swap=False)
            asyncio.get_running_loop().call_soon(custody.settle)  # after the router's routing of it

    def _chain(self, packet: Packet, key: str, swap: bool) -> Custody:
        """Give ``packet`` a custody token of its own that keeps copy ``key`` while held, chained to the one it had.
        ``swap``: the packet is held once already (by its runner), and that hold moves to the new token."""
        parent = packet.custody
        self.store.acquire(key)

        def release() -> None:
            if self.store.release(key):
                self.counters["removed"] += 1
                asyncio.get_running_loop().run_in_executor(None, self.store.remove, key)
            if parent is not None:
                parent.add(-1)

        custody = Custody(release)
        if parent is not None and not swap:
            parent.add(1)
        packet.custody = custody
        return custody

    # -- fetching --------------------------------------------------------------------------------

    def _start_queued(self) -> None:
        while self.queue and len(self.fetches) < MAX_FETCHES and not self._stopped:
            key, fetch = self.queue.popitem(last=False)
            self.fetches[key] = fetch
            asyncio.get_running_loop().create_task(self._begin(fetch), name=f"fetch-{key[:8]}")

    async def _begin(self, fetch: Fetch) -> None:
        desc = fetch.transfer.desc
        try:
            have = await asyncio.to_thread(self.store.partial, desc)
        except OSError as exc:
            self._end(fetch, f"cannot write {desc.name} under {self.store.root}: {exc}")
            return
        fetch.transfer = Transfer(desc, have, last_progress=self.clock())
        if have:
            log.info("Resuming %s from %s: %d of %d chunks already here", desc.name, desc.node, len(have), desc.chunks)
        self._pump(fetch)
        self._arm()

    def _pump(self, fetch: Fetch) -> None:
        """Ask for what the window allows; finish once everything is here."""
        t = fetch.transfer
        if t.complete:
            if not fetch.finishing and not fetch.busy:
                fetch.finishing = True
                asyncio.get_running_loop().create_task(self._finish(fetch), name=f"finish-{t.desc.key[:8]}")
            return
        wanted = t.want(self.clock())
        if wanted:
            if self.send(t.desc.node, files.encode_get(self.node_id, t.desc.key, wanted)):
                self.counters["chunks_asked"] += len(wanted)
            else:
                self.counters["gets_unsent"] += 1  # no link now: asked again after CHUNK_TIMEOUT_S

    async def _finish(self, fetch: Fetch) -> None:
        t = fetch.transfer
        try:
            bad = await asyncio.to_thread(self.store.finish, t.desc, dict(t.have))
        except (OSError, FileError) as exc:
            self.counters["corrupt_files"] += 1
            self._end(fetch, str(exc))
            return
        if bad:
            self.counters["bad_on_disk"] += len(bad)
            log.warning("%s: %d chunk(s) wrong on disk, fetching them again", t.desc.name, len(bad))
            t.forget(bad)
            fetch.finishing = False
            self._pump(fetch)
            return
        seconds = self.clock() - fetch.started
        self.counters["files_fetched"] += 1
        self.counters["bytes_fetched"] += t.desc.size
        log.info(
            "File %s (%d bytes) from %s is here in %.2f s: %d chunks received, %d resumed, %d asked again, "
            "%d corrupt, %d duplicate",
            t.desc.name,
            t.desc.size,
            t.desc.node,
            seconds,
            t.received,
            t.resumed,
            t.asked_again,
            sum(t.bad.values()),
            t.duplicates,
        )
        self._end(fetch, "")

    def _end(self, fetch: Fetch, error: str) -> None:
        key = fetch.transfer.desc.key
        self.fetches.pop(key, None)
        if error:
            self.counters["fetches_failed"] += 1
            log.warning("Fetching %s from %s failed: %s", fetch.transfer.desc.name, fetch.transfer.desc.node, error)
        for waiter in fetch.waiters:
            waiter(error)
        self._start_queued()

    def _arm(self) -> None:
        if self._tick is None and self.fetches and not self._stopped:
            self._tick = asyncio.get_running_loop().call_later(TICK_S, self._on_tick)

    def _on_tick(self) -> None:
        """Ask again for overdue chunks; give up on a fetch that made no progress for FETCH_STALL_S."""
        self._tick = None
        now = self.clock()
        for fetch in list(self.fetches.values()):
            t = fetch.transfer
            if fetch.finishing or not t.last_progress:
                continue
            if now - t.last_progress > FETCH_STALL_S:
                self._end(fetch, f"nothing came from {t.desc.node} for {FETCH_STALL_S:g} s")
                continue
            self._pump(fetch)
        self._arm()

    # -- messages --------------------------------------------------------------------------------

    def handle(self, frames: list[bytes], member: str | None, keyed: bool) -> None:
        """A GET or CHUNK from the inbox. ``member``: the node id the CurveZMQ key that sent it holds (keyed
        networks: a message from anyone else, or claiming another id, is dropped unread)."""
        try:
            msg = files.decode(frames)
        except FileError as exc:
            self._reject(str(exc))
            return
        if keyed and member != msg.node:
            self.counters["from_strangers"] += 1
            return
        if msg.kind == files.GET:
            self._serve(msg)
        else:
            self._received(msg)

    def _serve(self, msg: files.ChunkMessage) -> None:
        known = self.store.served(msg.key)
        if known is None:
            self.counters["unknown_gets"] += 1
            self.send(msg.node, files.encode_missing(self.node_id, msg.key, "no such file here (removed, or never)"))
            return
        desc, digests = known
        wanted = [i for i in msg.chunks if i < desc.chunks]
        if wanted:
            asyncio.get_running_loop().create_task(self._send_chunks(msg.node, desc, digests, wanted))

    async def _send_chunks(self, node: str, desc: Descriptor, digests: list[str], wanted: list[int]) -> None:
        for i in wanted:
            try:
                data = await asyncio.to_thread(self.store.read_chunk, desc, i)
            except OSError as exc:
                self.send(node, files.encode_missing(self.node_id, desc.key, f"cannot read {desc.name}: {exc}"))
                return
            if self.send(node, files.encode_chunk(self.node_id, desc.key, i, digests[i], data)):
                self.counters["chunks_served"] += 1
                self.counters["bytes_served"] += len(data)

    def _received(self, msg: files.ChunkMessage) -> None:
        fetch = self.fetches.get(msg.key)
        if fetch is None or fetch.finishing:
            self.counters["chunks_unexpected"] += 1
            return
        t = fetch.transfer
        if msg.error:
            if msg.node == t.desc.node:
                self._end(fetch, f"{t.desc.node} says: {msg.error}")
            return
        if not t.expects(msg.index):
            t.duplicates += 1
            self.counters["chunks_unexpected"] += 1
            return
        fetch.busy += 1
        asyncio.get_running_loop().create_task(self._write(fetch, msg))

    async def _write(self, fetch: Fetch, msg: files.ChunkMessage) -> None:
        t = fetch.transfer
        try:
            digest = await asyncio.to_thread(self.store.write_chunk, t.desc, msg.index, msg.sha256, msg.data)
        except OSError as exc:
            fetch.busy -= 1
            self._end(fetch, f"cannot write {t.desc.name}: {exc}")
            return
        fetch.busy -= 1
        if self.fetches.get(t.desc.key) is not fetch:
            return
        if digest is None:
            self.counters["chunks_corrupt"] += 1
            log.warning("Chunk %d of %s from %s failed its sha256; asking again", msg.index, t.desc.name, msg.node)
        else:
            self.counters["chunks_received"] += 1
        try:
            t.arrived(msg.index, digest, self.clock())
        except FileError as exc:
            self._end(fetch, str(exc))
            return
        self._pump(fetch)

    def _reject(self, why: str) -> None:
        self.counters["rejected"] += 1
        if why not in self._logged:
            self._logged.add(why)
            log.warning("Rejected a file message: %s", why)

    # -- lifecycle -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Remove nothing from now on (packets are saved to pending/ with their files), fetch nothing more."""
        self._stopped = True
        self.store.frozen = True
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def stats(self) -> dict[str, Any]:
        """Counters, and the fetches under way (for ``pmk stats``)."""
        return {
            **self.counters,
            "fetching": {
                f.transfer.desc.name: f"{len(f.transfer.have)}/{f.transfer.desc.chunks}" for f in self.fetches.values()
            },
            "queued": len(self.queue),
        }
