"""What a file in the rx drop folder means: which names are read, and the packets a file holds.

Pure: no file system access, no event loop; ``dropdir`` does the I/O and calls these.

Where a file lies decides how it is read (``rx`` is the drop folder)::

    rx/mars.json            one packet document {"state": "UNGREETED", "data": "Mars"} (data_base64 for bytes),
    rx/data.pkt             or an original-Pumpkin array [header, {}, {"stag": "String:UNGREETED", "data": ...}]
    rx/names.jsonl          JSON lines (also .ndjson): one packet document per line; blank lines are skipped
    rx/UNGREETED/photo.jpg  any file in a sub-folder named after a state: its bytes are the data

A file is all or nothing: when any part of it is bad, none of its packets is injected and the reason names
the part (``line 17: ...``). Every packet gets a new id (a new lineage): dropping a file is an injection.
Its ``meta["rx"]`` says where it came from (``file``, and ``line`` for JSON lines). A ``ttl`` a file gives must be
1 to ``packet.MAX_TTL_HOPS``: a value out of range is that file's error, like any other.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import tags
from .errors import PacketError, TagError
from .packet import DEFAULT_TTL_HOPS, LEGACY_DROPPED, MAX_TTL_HOPS, IdMaker, Packet, from_document, from_legacy

#: Sub-folders of the drop folder that are never read: where processed and unreadable files go.
RESERVED = ("done", "failed")
#: Names that writers use while a file is incomplete; never read (write to one of these, then rename).
DEFAULT_IGNORE = (".*", "~*", "*~", "*.tmp", "*.part", "*.partial", "*.crdownload", "*.swp")
LINES_SUFFIXES = (".jsonl", ".ndjson")
EXAMPLE = '{"state": "UNGREETED", "data": "Mars"}'
RAW_HINT = "raw files go in a sub-folder named after their state, e.g. rx/UNGREETED/photo.jpg"


@dataclass
class Parsed:
    """The packets one file holds, and remarks worth a log line (e.g. an ignored legacy ``code`` field)."""

    packets: list[Packet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def ignored(name: str, patterns: Iterable[str] = DEFAULT_IGNORE) -> bool:
    """True for names a writer is still working on (dot-files, ``*.tmp``, ``*.part``, ``*~`` ...)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def state_of_folder(folder: str, group: str) -> tags.StateTag:
    """The state a sub-folder of the drop folder stands for (``UNGREETED``, ``String:UNGREETED``, ...)."""
    try:
        return tags.parse(folder, group)
    except TagError as exc:
        raise PacketError(f"the folder name is not a state: {exc}") from None


def is_lines(name: str) -> bool:
    """True when the file holds one packet document per line."""
    return name.lower().endswith(LINES_SUFFIXES)


def _rx_meta(packet: Packet, rel: str, line: int | None, old_id: str | None) -> None:
    rx: dict[str, Any] = {"file": rel}
    if line is not None:
        rx["line"] = line
    if old_id:
        rx["id"] = old_id
    packet.meta = {**packet.meta, "rx": rx}


def _from_json(
    obj: Any, rel: str, group: str, ids: IdMaker, parsed: Parsed, line: int | None = None, ttl: int = DEFAULT_TTL_HOPS
) -> None:
    """One packet from a decoded document or legacy array, appended to ``parsed``."""
    now = time.time()
    if isinstance(obj, list):
        packet = from_legacy(obj, group, ids, ttl)
        header = obj[0] if isinstance(obj[0], dict) else {}
        for key in LEGACY_DROPPED:
            if key in header:
                parsed.notes.append(f"ignored the legacy header field {key!r}: Pumpkin never runs code from a packet")
        _rx_meta(packet, rel, line, None)
    elif isinstance(obj, dict):
        packet = from_document(obj, group, ids, ttl)
        if "ttl" in obj and packet.ttl < 1:
            raise PacketError(f"'ttl' {packet.ttl} leaves no hops; remove 'ttl' to get the default")
        if "ttl" in obj and packet.ttl > MAX_TTL_HOPS:
            raise PacketError(f"'ttl' {packet.ttl} is more than the {MAX_TTL_HOPS} hops a packet file may ask for")
        old_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        packet.id, packet.created = ids.root(), now
        _rx_meta(packet, rel, line, old_id)
    else:
        raise PacketError(f"a packet is a JSON object such as {EXAMPLE}, not {type(obj).__name__}")
    parsed.packets.append(packet)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PacketError(f"not a packet file: binary, not JSON text; {RAW_HINT}") from None
        raise PacketError(f"not valid JSON ({exc}); a packet file holds e.g. {EXAMPLE}") from None


def parse_document(raw: bytes, rel: str, group: str, ids: IdMaker, ttl: int = DEFAULT_TTL_HOPS) -> Parsed:
    """The packet in a whole-file JSON document (modern object or legacy array); ``ttl`` unless it says."""
    if not raw.strip():
        raise PacketError(f"the file is empty; a packet file holds e.g. {EXAMPLE}")
    parsed = Parsed()
    _from_json(_loads(raw), rel, group, ids, parsed, ttl=ttl)
    return parsed


def parse_lines(lines: Iterable[bytes], rel: str, group: str, ids: IdMaker, ttl: int = DEFAULT_TTL_HOPS) -> Parsed:
    """The packets of a JSON-lines file, one document per non-blank line; ``ttl`` unless one says."""
    parsed = Parsed()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            _from_json(_loads(line), rel, group, ids, parsed, number, ttl)
        except PacketError as exc:
            raise PacketError(f"line {number}: {exc}; nothing from this file was injected") from None
    if not parsed.packets:
        raise PacketError(f"the file has no packets (one JSON document per line, e.g. {EXAMPLE})")
    return parsed


def raw_packet(state: tags.StateTag, data: bytes, rel: str, ids: IdMaker, ttl: int = DEFAULT_TTL_HOPS) -> Packet:
    """A packet whose data is a raw file's bytes, in the state its folder names."""
    packet = Packet(ids.root(), state, data, [], ttl)
    _rx_meta(packet, rel, None, None)
    return packet
