"""Packets: data in a state, with an id and a trail, and their wire and file forms.

Wire format (version 1), three frames of a ZeroMQ multipart message per packet::

    frame 0  b"PMK1"                       magic and version
    frame 1  header, a JSON object (UTF-8):
             {"id": "ship:container:box:fragment",   str, unique in the network
              "tag": "group:type:STATE",              str, the packet's current state
              "ttl": 63,                              int, hops left before it is failed
              "created": 1763776000.123,              float, unix seconds at injection
              "trail": [[seed, node, tag, at], ...],  how the data was made, oldest first
              "enc": "j" | "b",                       how frame 2 is encoded
              "meta": {...}}                          optional, free-form JSON (e.g. legacy header fields)
    frame 2  payload: JSON text when enc is "j", the raw bytes themselves when enc is "b"

A message holds one packet, or several back to back (3, 6, 9, ... frames, each group starting with the
magic): a sender batches the packets it has for a peer at one moment (see ``split_batch``). A batch may also
travel packed in ONE frame, which is how a sender sends it (``pack_batch``)::

    b"PMKB" then, per packet: header length, payload length (each a 4-byte little-endian unsigned integer),
    the header, the payload                (the frames 1 and 2 of the packet above)

One frame instead of three per packet: receiving and sending a frame costs ~1.5 us in pyzmq here, more than
decoding a small packet (5.4 against 0.7 us per packet sent and received, 64 packets of 100 B per message).

Nothing is ever pickled. JSON is written with orjson (about 4.5 times faster than the standard library here,
see ../shared/notes/measured-facts.md); headers are read and written with msgspec, which checks the header's
types and builds the trail's ``Hop`` tuples in one C call (1.3 us for a header with 3 hops here, against
5.2 us for orjson and a Python loop over the trail). A header msgspec will not take is read again the
slow way, which says exactly what is wrong. A frame that breaks any rule above raises PacketError.

Ids follow the original Pumpkin's ``ship:container:box:fragment`` scheme, made unique without a uuid per
packet: ship is the exec context of the daemon run where the lineage entered the network (random per
run), container is the lineage (random at injection, inherited by every packet made from it), box is the
hop count, and fragment is a per-run counter for injected packets or, for a packet a seed made, a digest
of (parent id, seed, output index). So a packet processed again after a failover gets the same id as
the first time, and a node that receives both recognises the duplicate.

A packet sent to a peer for one particular seed carries that seed's name in the optional header key
``"to"`` and the sending node's id in ``"from"``; the receiver acknowledges it (see ``messages``) once
that seed has finished with it.

File form (the failed/ area, and the modern form of rx files): a JSON object
``{"state": tag, "data": value}`` or ``{"state": tag, "data_base64": "..."}`` for bytes, with the optional
keys ``id``, ``trail``, ``ttl``, ``created`` and ``meta``.

Legacy form (packet files written for the original Pumpkin, read by ``from_legacy``): a JSON array
``[header, {}, entry]`` (sometimes ``[header, entry]``) whose last object with a ``stag`` key is the entry::

    [{"box": "0", "e": "E", "ship": "c466f181", "container": "98ea09ac"}, {},
     {"stag": "String:UNGREETED", "data": "Mars", "exstate": "0001", "func": ""}]

``stag`` is ``group:type:STATE`` or ``type:STATE`` (group ``public``, as the original read it). The header's
fields are kept in ``meta["legacy_header"]`` (legacy seeds see them again and pass them on); a header ``code``
field is dropped, never run. The header's ``ttl`` was the original's seconds before an unacknowledged packet is
sent again (``"D"``: never): kept, never refused; the packet gets the default number of hops.

Numbers are checked where a file is read, so that a value no later step can carry (a ttl past 64 bits, a time
that is not finite) is that file's error and never reaches the journal or the wire (``dropfile`` holds an rx
document's ``ttl`` to 1 to ``MAX_TTL_HOPS``); a document's ``ttl`` must fit
in 64 bits, its ``created`` and trail times be finite.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import math
import os
import random
import reprlib
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import msgspec
import orjson

from . import tags
from .errors import PacketError, TagError
from .tags import StateTag

if TYPE_CHECKING:
    from .custody import Custody

MAGIC = b"PMK1"
PACKED = b"PMKB"  # a batch of packets in one frame (see the module documentation)
_LENGTHS = struct.Struct("<II")
DEFAULT_TTL_HOPS = 64
#: The most hops a packet file may ask for: far past any real path, and far inside what JSON readers keep exact.
MAX_TTL_HOPS = 1_000_000
#: The integers orjson writes (the journal, the wire, failed/): a signed or an unsigned 64-bit value.
JSON_INT_MIN, JSON_INT_MAX = -(1 << 63), (1 << 64) - 1
MAX_HEADER_BYTES = 1 << 20
ENC_JSON = "j"
ENC_BYTES = "b"
#: orjson reads JSON nested up to 1024 levels deep but writes at most 254, and the deepest file that holds a
#: packet (a journal record) nests its data and meta 3 levels down: deeper ones from outside are refused at once,
#: rather than accepted and then impossible to journal, spool, keep in failed/ or send on.
MAX_NESTING = 251


class Hop(NamedTuple):
    """One step of a packet's trail: ``seed`` on ``node`` put the data in state ``tag`` at ``at``.

    A named tuple: every packet from the network rebuilds its trail, and a frozen dataclass costs several
    times more to make.
    """

    seed: str
    node: str
    tag: str
    at: float


class _Header(msgspec.Struct):
    """A header as the module documentation gives it, for msgspec: exactly these types, or the slow path."""

    id: str
    tag: str
    ttl: Annotated[int, msgspec.Meta(ge=JSON_INT_MIN, le=(1 << 63) - 1)]  # msgspec's bounds are int64's
    created: float
    trail: list[Hop]
    enc: str
    # Left as its bytes, read by orjson: msgspec would take integers past 64 bits that nothing can write again.
    meta: msgspec.Raw = msgspec.Raw()
    to: str | None = None
    sender: str | None = msgspec.field(default=None, name="from")


_read_header = msgspec.json.Decoder(_Header).decode
_write_header = msgspec.json.Encoder().encode  # writes a Hop (a named tuple) as the array the format gives


@dataclass(slots=True)
class Packet:
    """Data in a state. ``data`` is any JSON value, or ``bytes``."""

    id: str
    tag: StateTag
    data: Any
    trail: list[Hop] = field(default_factory=list)
    ttl: int = DEFAULT_TTL_HOPS
    created: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)
    #: Who this node answers to for the packet (see ``custody``); local to this node, never sent.
    custody: Custody | None = field(default=None, compare=False, repr=False)

    @property
    def lineage(self) -> str:
        """The container part of the id, shared by every packet made from the same injection."""
        return self.id.partition(":")[2].partition(":")[0]


class IdMaker:
    """Makes packet ids for one daemon run."""

    def __init__(self, ship: str | None = None, seed: int | None = None) -> None:
        """``seed``: lineages from a generator seeded with it, the same on every run (the simulator)."""
        self.ship = ship or os.urandom(4).hex()
        self._counter = itertools.count(1)
        # Lineages from a generator seeded by the OS, not a getrandom() call per packet (a system call that
        # cost more than the rest of making the packet here); the counter keeps ids unique regardless.
        self._random = random.Random(os.urandom(16) if seed is None else seed)

    def root(self) -> str:
        """An id for a packet entering the network (a new lineage)."""
        return f"{self.ship}:{self._random.getrandbits(32):08x}:0:{next(self._counter):x}"

    def child(self, parent_id: str, seed: str, index: int, fork: bool = False) -> str:
        """The id of output ``index`` of ``seed`` made from ``parent_id``: the same wherever it is made.
        ``fork``: in a new lineage (container), itself made from the same three."""
        try:
            ship, container, box, _ = parent_id.split(":")
            hops = int(box) + 1
        except ValueError:
            ship, container, hops = self.ship, os.urandom(4).hex(), 1
        digest = hashlib.blake2b(f"{parent_id}|{seed}|{index}".encode(), digest_size=6).hexdigest()
        if fork:
            container = hashlib.blake2b(f"fork|{parent_id}|{seed}|{index}".encode(), digest_size=4).hexdigest()
        return f"{ship}:{container}:{hops}:{digest}"


def check_data(data: Any) -> None:
    """Raise PacketError unless ``data`` is bytes or JSON-serialisable."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return
    try:
        orjson.dumps(data)
    except TypeError as exc:
        raise PacketError(f"data of type {type(data).__name__} is neither JSON-serialisable nor bytes: {exc}") from None


#: JSON text shorter than this cannot nest more than MAX_NESTING levels (each level is two brackets).
_NESTABLE_BYTES = 2 * (MAX_NESTING + 1)


def _check_nesting(value: Any, what: str, raw: bytes | None = None) -> None:
    """PacketError when ``value`` (decoded from ``raw``, when given) nests more than MAX_NESTING levels deep.

    orjson refuses to write it: cheaper than counting brackets in ``raw`` (1 MB of JSON: 73 us to write it,
    486 us to count its brackets here); JSON text too short to nest that deep is not looked at at all.
    """
    if raw is not None and len(raw) < _NESTABLE_BYTES:
        return
    try:
        orjson.dumps([[[value]]])
    except TypeError:
        raise PacketError(f"{what} nests deeper than {MAX_NESTING} levels") from None


def encode(packet: Packet, to: str | None = None, sender: str | None = None) -> list[bytes]:
    """The wire frames of ``packet``; ``to`` and ``sender`` address it to one seed on a peer."""
    if isinstance(packet.data, (bytes, bytearray, memoryview)):
        enc, payload = ENC_BYTES, bytes(packet.data)
    else:
        enc = ENC_JSON
        try:
            payload = orjson.dumps(packet.data)
        except TypeError as exc:
            raise PacketError(f"packet {packet.id}: data is neither JSON-serialisable nor bytes: {exc}") from None
    header: dict[str, Any] = {
        "id": packet.id,
        "tag": str(packet.tag),
        "ttl": packet.ttl,
        "created": packet.created,
        "trail": packet.trail,
        "enc": enc,
    }
    if packet.meta:
        header["meta"] = packet.meta
    if to is not None:
        header["to"] = to
    if sender is not None:
        header["from"] = sender
    try:
        return [MAGIC, _write_header(header), payload]
    except (TypeError, ValueError) as exc:  # meta a seed filled with what JSON cannot carry
        raise PacketError(f"packet {packet.id}: header is not JSON-serialisable: {exc}") from None


def pack_batch(frames: list[bytes]) -> bytes:
    """One frame holding the packets whose frames (3 each, as ``encode`` makes them) are back to back in
    ``frames``; ``split_batch`` takes it apart again."""
    parts = [PACKED]
    pack = _LENGTHS.pack
    for i in range(0, len(frames), 3):
        header, payload = frames[i + 1], frames[i + 2]
        parts += (pack(len(header), len(payload)), header, payload)
    return b"".join(parts)


def _unpack(frame: bytes) -> list[list[bytes]] | None:
    """The packets' frames in a packed batch; None when it is cut short or has bytes left over."""
    groups: list[list[bytes]] = []
    end, at = len(frame), len(PACKED)
    lengths = _LENGTHS.unpack_from
    while at < end:
        if at + 8 > end:
            return None
        header_len, payload_len = lengths(frame, at)
        at += 8
        if at + header_len + payload_len > end:
            return None
        groups.append([MAGIC, frame[at : at + header_len], frame[at + header_len : at + header_len + payload_len]])
        at += header_len + payload_len
    return groups or None


def split_batch(frames: list[bytes]) -> list[list[bytes]]:
    """The packets' frame groups of a message (see the module documentation); a message that is not a
    clean batch comes back whole, for ``decode`` to say what is wrong with it."""
    if len(frames) == 1 and frames[0][:4] == PACKED:
        return _unpack(bytes(frames[0])) or [frames]
    if len(frames) <= 3 or len(frames) % 3:
        return [frames]
    groups = [frames[i : i + 3] for i in range(0, len(frames), 3)]
    if any(bytes(g[0]) != MAGIC for g in groups):
        return [frames]
    return groups


def decode(frames: list[bytes]) -> Packet:
    """The packet in ``frames``; raises PacketError saying what is wrong."""
    return decode_addressed(frames)[0]


def decode_addressed(frames: list[bytes]) -> tuple[Packet, str | None, str | None]:
    """The packet in ``frames``, the seed it was sent for and the node that sent it (None: not addressed)."""
    if len(frames) != 3:
        if len(frames) == 1 and frames[0][:4] == PACKED:
            raise PacketError("a packed batch of packets that is cut short or has bytes left over")
        raise PacketError(f"a packet has 3 frames, got {len(frames)}")
    magic, raw_header, payload = frames
    if type(raw_header) is not bytes or type(payload) is not bytes or type(magic) is not bytes:
        magic, raw_header, payload = (bytes(f) for f in frames)  # (frames of a batch are bytes already)
    if magic != MAGIC:
        raise PacketError(f"bad magic {magic[:8]!r}; expected {MAGIC!r} (a peer of another version?)")
    if len(raw_header) > MAX_HEADER_BYTES:
        raise PacketError(f"header of {len(raw_header)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = _read_header(raw_header)
        # (A memoryview: orjson takes no msgspec.Raw, and the JSONDecodeError it raised sent every packet with
        # meta, every original-format seed's, down the slow path.)
        raw_meta = memoryview(header.meta)
        meta = orjson.loads(raw_meta) if raw_meta else {}
        meta_bytes = len(raw_meta)
    except (msgspec.MsgspecError, orjson.JSONDecodeError, RecursionError):  # msgspec's depth limit, too
        header, meta = _header_slowly(raw_header)
        meta_bytes = len(raw_header)
    if not isinstance(meta, dict):
        header, meta = _header_slowly(raw_header)
        meta_bytes = len(raw_header)
    pid, tag_text, enc = header.id, header.tag, header.enc
    if pid.count(":") != 3:
        raise PacketError(f"id {reprlib.repr(pid)} is not ship:container:box:fragment")
    try:
        tag = _full_tag(tag_text) if tag_text.count(":") == 2 else None
    except TagError as exc:
        raise PacketError(str(exc)) from None
    if tag is None:
        raise PacketError(f"tag {reprlib.repr(tag_text)} is not a full group:type:STATE tag")
    if enc == ENC_BYTES:
        data: Any = payload
    elif enc == ENC_JSON:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise PacketError(f"packet {pid}: payload is not JSON: {exc}") from None
        if len(payload) >= _NESTABLE_BYTES:
            _check_nesting(data, f"packet {pid}: the data")
    else:
        raise PacketError(f"packet {pid}: unknown payload encoding {reprlib.repr(enc)}")
    if meta and meta_bytes >= _NESTABLE_BYTES:  # JSON text shorter than that cannot nest too deep
        _check_nesting(meta, f"packet {pid}: meta")
    return Packet(pid, tag, data, header.trail, header.ttl, header.created, meta), header.to, header.sender


def _header_slowly(raw_header: bytes) -> tuple[_Header, dict[str, Any]]:
    """The header msgspec did not take, read with orjson and checked field by field: PacketError saying what is
    wrong, or the header (a trail name that is a number, say, is taken as its text)."""
    try:
        header = orjson.loads(raw_header)
    except orjson.JSONDecodeError as exc:
        raise PacketError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise PacketError("header is not a JSON object")
    try:
        pid, tag_text, enc = header["id"], header["tag"], header["enc"]
        ttl, created, trail = header["ttl"], header["created"], header["trail"]
    except KeyError as exc:
        raise PacketError(f"header lacks the key {exc.args[0]!r}") from None
    if not isinstance(pid, str) or pid.count(":") != 3:
        raise PacketError(f"id {reprlib.repr(pid)} is not ship:container:box:fragment")
    if not isinstance(ttl, int) or not isinstance(created, (int, float)):
        raise PacketError("ttl must be an integer and created a number")
    if not isinstance(tag_text, str) or tag_text.count(":") != 2:
        raise PacketError(f"tag {reprlib.repr(tag_text)} is not a full group:type:STATE tag")
    if not isinstance(enc, str):
        raise PacketError(f"packet {pid}: unknown payload encoding {reprlib.repr(enc)}")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise PacketError(f"packet {pid}: meta is not a JSON object")
    to, sender = header.get("to"), header.get("from")
    if not isinstance(to, (str, type(None))) or not isinstance(sender, (str, type(None))):
        raise PacketError(f"packet {pid}: 'to' and 'from' must be a seed name and a node id")
    return _Header(pid, tag_text, ttl, float(created), _trail(trail), enc, msgspec.Raw(), to, sender), meta


@functools.lru_cache(maxsize=4096)
def _full_tag(text: str) -> StateTag:
    """``tags.parse`` for the tags of packets from the network: a network has few, parsed once each."""
    return tags.parse(text)


def _trail(raw: Any) -> list[Hop]:
    if not isinstance(raw, list):
        raise PacketError("trail is not a list")
    try:
        hops = [Hop(_text(s), _text(n), _text(t), float(a)) for s, n, t, a in raw]
    except (TypeError, ValueError, OverflowError):
        raise PacketError("trail entries must be [seed, node, tag, time]") from None
    # float("inf") reads, but JSON writes it as null, which no reader takes back: a journaled packet would be lost.
    if not all(math.isfinite(h.at) for h in hops):
        raise PacketError("trail times must be finite numbers")
    return hops


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, (list, dict)):  # str() of a deeply nested one recurses past Python's limit
        raise TypeError("a trail entry's name is not a scalar")
    return str(value)


def to_document(packet: Packet) -> dict[str, Any]:
    """The file form of ``packet`` (a JSON object a person can read and drop into an rx folder again)."""
    doc: dict[str, Any] = {"id": packet.id, "state": str(packet.tag)}
    if isinstance(packet.data, (bytes, bytearray, memoryview)):
        doc["data_base64"] = base64.b64encode(bytes(packet.data)).decode()
    else:
        doc["data"] = packet.data
    doc["ttl"] = packet.ttl
    doc["created"] = packet.created
    doc["trail"] = [[h.seed, h.node, h.tag, h.at] for h in packet.trail]
    if packet.meta:
        doc["meta"] = packet.meta
    return doc


def from_document(doc: Any, group: str, ids: IdMaker, default_ttl: int = DEFAULT_TTL_HOPS) -> Packet:
    """A packet from its file form; tag shorthands expand against ``group``; a missing id gets a new one."""
    if not isinstance(doc, dict):
        raise PacketError("a packet document must be a JSON object with 'state' and 'data'")
    if "state" not in doc:
        raise PacketError('the packet document has no \'state\' key (e.g. {"state": "UNGREETED", "data": "Mars"})')
    try:
        tag = tags.parse(doc["state"], group)
    except TagError as exc:
        raise PacketError(str(exc)) from None
    if "data_base64" in doc:
        try:
            data: Any = base64.b64decode(doc["data_base64"], validate=True)
        except (ValueError, TypeError):
            raise PacketError("'data_base64' is not valid base64") from None
    elif "data" in doc:
        data = doc["data"]
        _check_nesting(data, "'data'")
    else:
        raise PacketError("the packet document has neither 'data' nor 'data_base64'")
    pid = doc.get("id")
    if not isinstance(pid, str) or pid.count(":") != 3:
        pid = ids.root()
    ttl = doc.get("ttl", default_ttl)
    created = doc.get("created", time.time())
    if type(ttl) is not int or isinstance(created, bool) or not isinstance(created, (int, float)):
        raise PacketError("'ttl' must be an integer and 'created' a number")
    if not JSON_INT_MIN <= ttl <= JSON_INT_MAX:
        raise PacketError(f"'ttl' {ttl} does not fit in 64 bits")
    try:
        created = float(created)
    except OverflowError:
        raise PacketError("'created' is out of range") from None
    if not math.isfinite(created):
        raise PacketError(f"'created' {created} is not a finite number of seconds")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise PacketError("'meta' must be a JSON object")
    _check_nesting(meta, "'meta'")
    return Packet(pid, tag, data, _trail(doc.get("trail", [])), ttl, created, meta)


#: The group of a legacy tag written ``type:STATE``: the original read such a packet file into group ``public``.
LEGACY_GROUP = "public"
#: Header fields of a legacy packet that never travel on: code is never run, and ids are made anew.
LEGACY_DROPPED = ("code",)


def from_legacy(obj: Any, group: str, ids: IdMaker, default_ttl: int = DEFAULT_TTL_HOPS) -> Packet:
    """A new packet (new lineage) from an original-Pumpkin ``[header, {}, entry]`` array; see the module doc."""
    if not isinstance(obj, list) or not obj:
        raise PacketError("a legacy packet is a JSON array [header, {}, entry]")
    entry = next((e for e in reversed(obj) if isinstance(e, dict) and "stag" in e), None)
    if entry is None:
        raise PacketError(
            'the legacy packet has no entry with a \'stag\' (e.g. {"stag": "String:UNGREETED", "data": "Mars"})'
        )
    header = obj[0] if isinstance(obj[0], dict) and obj[0] is not entry else {}
    try:
        tag = tags.parse(entry["stag"], LEGACY_GROUP)
    except TagError as exc:
        raise PacketError(f"'stag': {exc}") from None
    if "data" not in entry:
        raise PacketError(f"the legacy entry with stag {entry['stag']!r} has no 'data'")
    ttl = default_ttl  # the header's ttl is the original's re-send timer, kept in the header (see above)
    kept = {k: v for k, v in header.items() if k not in LEGACY_DROPPED}
    if "ttl" in kept and not _json_number(kept["ttl"]):
        kept["ttl"] = str(kept["ttl"])  # kept as text when JSON cannot carry the number (past 64 bits, inf)
    _check_nesting(entry["data"], "'data'")
    _check_nesting(kept, "the header")
    now = time.time()
    return Packet(ids.root(), tag, entry["data"], [], ttl, now, {"legacy_header": kept} if kept else {})


def _json_number(value: Any) -> bool:
    """False for a number that orjson cannot write (an integer past 64 bits, a float that is not finite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return JSON_INT_MIN <= value <= JSON_INT_MAX
