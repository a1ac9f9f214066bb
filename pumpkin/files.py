"""File payloads: the ``File`` a seed returns and receives, the descriptor a file packet carries, the chunk
messages, and the bookkeeping of one transfer. Pure: no sockets, no event loop, no clock of its own.

A packet whose data is a file carries a *descriptor*, never the bytes::

    {"pumpkin.file": {"v": 1, "key": 32 hex digits (random, names this copy of the file),
                      "name": "results.tar.gz", "size": bytes, "sha256": hex digest of the whole file,
                      "chunk": chunk size in bytes, "node": id of the node that holds the file}}

The file itself moves by **pull**, over the same ZeroMQ links as packets (so through CurveZMQ and the
membership check in a keyed network): the node that is to run a seed on the packet asks the holder for chunks,
at most ``WINDOW_CHUNKS`` at a time, and the holder answers each request with one chunk::

    b"PMKF" GET    [kind, JSON {"id": requester, "key": key, "chunks": [index, ...]}]
    b"PMKC" CHUNK  [kind, JSON {"id": holder, "key": key, "i": index, "sha256": hex digest of the chunk
                                as sealed, "error": "..." (instead, when the holder has no such file)},
                    the chunk's bytes (empty with an error)]

Pull puts flow control and resumption on one side: the receiver knows what it has (chunks verified and written,
recorded next to the partial file), asks only for what it lacks, and asks again for what does not come within
``CHUNK_TIMEOUT_S`` (a cut link): no chunk that arrived is sent twice, and neither side holds more than a
window of chunks in memory. Each chunk is checked against the sha256 the holder computed when the file was
handed over (*sealed*), and the whole file against its sha256 once complete.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import PumpkinError

DESCRIPTOR_KEY = "pumpkin.file"
VERSION = 1
#: Bytes per chunk: one ZeroMQ message each (the inbox takes frames up to 256 MiB; 1 MiB keeps a window small).
CHUNK_BYTES = 1 << 20
#: Chunks one transfer has asked for and not yet received: the memory a transfer costs on either side.
WINDOW_CHUNKS = 8
#: A chunk asked for and not received within this long is asked for again (the link was cut, or the request lost).
CHUNK_TIMEOUT_S = 5.0
#: Times a chunk may fail its sha256 before the transfer fails: the holder's copy itself is then corrupt.
MAX_BAD_CHUNK = 3
#: Chunk indexes in one GET at most (a holder serves no more for one request).
MAX_GET_CHUNKS = 64
GET = b"PMKF"
CHUNK = b"PMKC"
KINDS = (GET, CHUNK)
LEGACY_SCHEME = "file://"
_KEY = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_NAME_CHARS = 200


class FileError(PumpkinError):
    """A file payload cannot be handed over, moved or verified (the reason says which and why)."""


class File:
    """A file as seed data. Return one to send the file to the next seed; a seed that consumes it gets a
    ``File`` whose ``path`` is a local copy, in the node's working directory (``files/``).

    Returning a file hands it over: Pumpkin moves it into its working directory (``keep=True`` copies it
    instead), so the seed must not write to it afterwards::

        from pumpkin import File, Seed

        class Render(Seed):
            consumes = "Scene:READY"
            emits = "Image:RENDERED"

            def run(self, scene):
                out = render(scene)              # writes /tmp/frame-0001.png
                return File(out)

        class Publish(Seed):
            consumes = "Image:RENDERED"

            def run(self, image):                # a File; image.path is on this host
                upload(image.path.read_bytes())
    """

    __slots__ = ("path", "name", "size", "sha256", "keep")

    def __init__(self, path: str | Path, name: str = "", keep: bool = False) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        self.keep = keep
        self.size: int | None = None
        self.sha256 = ""

    def __fspath__(self) -> str:
        return str(self.path)

    def open(self, mode: str = "rb") -> IO[Any]:
        """The file, opened."""
        return open(self.path, mode)  # noqa: SIM115 - the caller closes it

    def read_bytes(self) -> bytes:
        """The whole file (mind its size)."""
        return self.path.read_bytes()

    def __repr__(self) -> str:
        return f"File({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and (self.path, self.name) == (other.path, other.name)

    def __hash__(self) -> int:
        return hash((self.path, self.name))


@dataclass(frozen=True)
class Descriptor:
    """What a file packet carries instead of the file."""

    key: str
    name: str
    size: int
    sha256: str
    chunk: int
    node: str

    @property
    def chunks(self) -> int:
        """How many chunks the file has (0 for an empty file)."""
        return chunk_count(self.size, self.chunk)

    def data(self) -> dict[str, Any]:
        """The packet data standing for the file."""
        return {
            DESCRIPTOR_KEY: {
                "v": VERSION,
                "key": self.key,
                "name": self.name,
                "size": self.size,
                "sha256": self.sha256,
                "chunk": self.chunk,
                "node": self.node,
            }
        }

    def held_by(self, node: str) -> Descriptor:
        """The same file, held by ``node`` (a seed passed on the file it received)."""
        return Descriptor(self.key, self.name, self.size, self.sha256, self.chunk, node)


def chunk_count(size: int, chunk: int) -> int:
    """Chunks of ``chunk`` bytes in ``size`` bytes."""
    return -(-size // chunk)


def is_file_data(data: Any) -> bool:
    """True when packet ``data`` stands for a file (cheap: used on every packet)."""
    return type(data) is dict and DESCRIPTOR_KEY in data and len(data) == 1


def descriptor_of(data: Any) -> Descriptor | None:
    """The descriptor in packet ``data``, None when it is not a file; FileError when it claims to be one
    and is malformed (data from the network: every field is checked, the name made safe)."""
    if not is_file_data(data):
        return None
    d = data[DESCRIPTOR_KEY]
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise FileError(f"file descriptor {reprlib.repr(d)} is not version {VERSION}")
    key, name, size, sha, chunk, node = (d.get(k) for k in ("key", "name", "size", "sha256", "chunk", "node"))
    if not (isinstance(key, str) and _KEY.fullmatch(key)):
        raise FileError(f"file descriptor key {reprlib.repr(key)} is not 32 hex digits")
    if not (isinstance(sha, str) and _HEX64.fullmatch(sha)):
        raise FileError("file descriptor sha256 is not 64 hex digits")
    if type(size) is not int or size < 0 or type(chunk) is not int or not 1 <= chunk <= 64 << 20:
        raise FileError("file descriptor size and chunk must be non-negative integers (chunk at most 64 MiB)")
    if not isinstance(node, str) or not node or len(node) > 128:
        raise FileError("file descriptor node must be a node id")
    if not isinstance(name, str):
        raise FileError("file descriptor name must be a string")
    return Descriptor(key, safe_name(name), size, sha, chunk, node)


def safe_name(name: str) -> str:
    """``name`` as one harmless path component (no separators, no leading dot, not empty)."""
    clean = re.sub(r"[^A-Za-z0-9_.+=@,-]", "_", name.rsplit("/", 1)[-1])[:MAX_NAME_CHARS].lstrip(".")
    return clean or "file"


def legacy_path(data: Any) -> str | None:
    """The path in a legacy seed's ``file://`` data (the original's form), else None."""
    if isinstance(data, str) and data.startswith(LEGACY_SCHEME) and "|,|" not in data:
        return data[len(LEGACY_SCHEME) :]
    return None


# -- chunk messages --------------------------------------------------------------------------------


def encode_get(node: str, key: str, chunks: Iterable[int]) -> list[bytes]:
    """A request for ``chunks`` of file ``key``."""
    return [GET, orjson.dumps({"id": node, "key": key, "chunks": list(chunks)})]


def encode_chunk(node: str, key: str, index: int, sha256: str, data: bytes) -> list[bytes]:
    """Chunk ``index`` of file ``key``, with the digest it was sealed with."""
    return [CHUNK, orjson.dumps({"id": node, "key": key, "i": index, "sha256": sha256}), data]


def encode_missing(node: str, key: str, why: str) -> list[bytes]:
    """The answer of a node that cannot serve file ``key``."""
    return [CHUNK, orjson.dumps({"id": node, "key": key, "i": -1, "error": why}), b""]


@dataclass(frozen=True)
class ChunkMessage:
    """A decoded GET or CHUNK."""

    kind: bytes
    node: str
    key: str
    chunks: tuple[int, ...] = ()
    index: int = -1
    sha256: str = ""
    error: str = ""
    data: bytes = b""


def decode(frames: list[bytes]) -> ChunkMessage:
    """A GET or CHUNK from its frames; FileError says what is wrong (input from the network)."""
    kind = bytes(frames[0]) if frames else b""
    if kind not in KINDS or len(frames) != (2 if kind == GET else 3):
        raise FileError("not a file message")
    try:
        body = orjson.loads(frames[1])
    except orjson.JSONDecodeError:
        raise FileError("file message body is not JSON") from None
    if not isinstance(body, dict):
        raise FileError("file message body is not an object")
    node, key = body.get("id"), body.get("key")
    if not isinstance(node, str) or not node or len(node) > 128:
        raise FileError("file message without a node id")
    if not (isinstance(key, str) and _KEY.fullmatch(key)):
        raise FileError("file message key is not 32 hex digits")
    if kind == GET:
        chunks = body.get("chunks")
        if (
            not isinstance(chunks, list)
            or len(chunks) > MAX_GET_CHUNKS
            or not all(type(i) is int and i >= 0 for i in chunks)
        ):
            raise FileError(f"GET chunks must be a list of at most {MAX_GET_CHUNKS} non-negative integers")
        return ChunkMessage(kind, node, key, chunks=tuple(chunks))
    index, sha, error = body.get("i"), body.get("sha256", ""), body.get("error", "")
    if type(index) is not int or not isinstance(error, str) or not isinstance(sha, str):
        raise FileError("CHUNK needs an index, and a digest or an error")
    if not error and not _HEX64.fullmatch(sha):
        raise FileError("CHUNK digest is not 64 hex digits")
    return ChunkMessage(kind, node, key, index=index, sha256=sha, error=error[:500], data=bytes(frames[2]))


# -- one transfer ----------------------------------------------------------------------------------


@dataclass
class Transfer:
    """Which chunks of one file this node has, has asked for, and still needs (sans-I/O: give it the time).

    ``have`` (index -> sha256 as received) comes from the record next to a partial file, so a transfer
    started again after a cut or a restart asks only for what is missing.
    """

    desc: Descriptor
    have: dict[int, str] = field(default_factory=dict)
    asked: dict[int, float] = field(default_factory=dict)  # index -> when last asked for
    bad: dict[int, int] = field(default_factory=dict)  # index -> digests that did not match
    resumed: int = 0  # chunks already there when the transfer started
    requested: int = 0
    asked_again: int = 0
    received: int = 0
    duplicates: int = 0
    last_progress: float = 0.0
    _next: int = 0

    def __post_init__(self) -> None:
        self.have = {i: d for i, d in self.have.items() if 0 <= i < self.desc.chunks}
        self.resumed = len(self.have)

    @property
    def complete(self) -> bool:
        """Every chunk is here and verified."""
        return len(self.have) == self.desc.chunks

    def want(self, now: float, window: int = WINDOW_CHUNKS) -> list[int]:
        """The chunks to ask for now: those asked for too long ago, then new ones, up to ``window`` in flight."""
        out: list[int] = []
        for i, at in self.asked.items():
            if now - at >= CHUNK_TIMEOUT_S:
                out.append(i)
                self.asked_again += 1
        room = window - len(self.asked)
        n = self.desc.chunks
        while room > 0 and self._next < n:
            i = self._next
            self._next += 1
            if i in self.have or i in self.asked:
                continue
            out.append(i)
            room -= 1
        if self._next >= n and room > 0:
            # Chunks given up as bad and asked for again wait here: they are neither had nor asked.
            for i in range(n):
                if room <= 0:
                    break
                if i not in self.have and i not in self.asked and i not in out:
                    out.append(i)
                    room -= 1
        for i in out:
            self.asked[i] = now
        self.requested += len(out)
        return out

    def expects(self, index: int) -> bool:
        """True when chunk ``index`` was asked for and is not here yet (anything else is dropped unread)."""
        return index in self.asked and index not in self.have

    def arrived(self, index: int, sha256: str | None, now: float) -> None:
        """Chunk ``index`` was written and matched ``sha256`` (None: it did not match its digest).

        Raises FileError once one chunk failed ``MAX_BAD_CHUNK`` times.
        """
        self.asked.pop(index, None)
        if index in self.have:
            self.duplicates += 1
            return
        if sha256 is None:
            self.bad[index] = self.bad.get(index, 0) + 1
            if self.bad[index] >= MAX_BAD_CHUNK:
                raise FileError(
                    f"chunk {index} of {self.desc.name} from {self.desc.node} failed its sha256 {MAX_BAD_CHUNK} times:"
                    " the holder's copy is corrupt"
                )
            return
        self.have[index] = sha256
        self.received += 1
        self.last_progress = now

    def forget(self, indexes: Iterable[int]) -> None:
        """These chunks turned out bad on disk (the whole file did not match): fetch them again."""
        for i in indexes:
            self.have.pop(i, None)
        self._next = 0
