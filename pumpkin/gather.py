"""Gathering packets for one run: AND-joins and the merge of a split packet. Pure bookkeeping: no I/O, no clock.

Two kinds of *group*, each kept on one replica of its seed (its *owner*) until it is complete:

- **join**: a seed consuming ``A&B`` runs once per lineage, with one packet in each state of the join. The
  group's key is the packets' lineage (``lineage_of``), its slots the join's states.
- **merge**: a seed that splits a packet into fragments (``split``) has each fragment run by any replica; each
  fragment's result goes to one replica, which calls ``merge`` once the results of all fragments are there.
  The group's key is the id of the packet that was split, its slots the fragment indices 0..n-1.

The owner is chosen by rendezvous (highest random weight) hashing of the key over the seed's replicas
(``owner``): every node that knows the same replicas picks the same one, and a replica that leaves moves only
the groups it owned. A group that stays incomplete for ``wait_s`` ends: its packets go to failed/ with the reason
(``expire``). Packets in a group stay held (custody) by whoever handed them over until the group has run.

What a packet carries in its ``meta`` (JSON, so it travels, is journaled and saved to pending/ like any packet):

- ``"fragment"``: ``{"by": seed, "of": split packet id, "i": index, "n": count, "no": label, "last": bool}`` on a
  fragment (run by ``by``), and the same with ``"result": true`` on what a fragment's run made (for the merge).
  ``no`` and ``last`` are what a legacy seed gave ``fragment_pkt``/``last_fragment_pkt``.
- ``"gathered"``: ``{"kind": "join" | "merge", "seed": seed, ...}`` on the packet a complete group made (see
  ``joined`` and ``merged``): it goes to ``seed`` only, which runs it (``splitmerge``).
- ``"lineage"``: a lineage named by whoever injected the packet (e.g. ``pmk inject`` meta, an rx document's
  ``meta``), so that packets injected apart (two hosts) join: see ``lineage_of``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .packet import Hop, Packet

FRAGMENT = "fragment"
GATHERED = "gathered"
LINEAGE = "lineage"
JOIN = "join"
MERGE = "merge"
#: Packets held in groups on one node, across all groups: past this a new part goes to failed/ at once.
MAX_PARTS = 100_000


class Fragment(NamedTuple):
    """The ``fragment`` mark of a packet (see the module documentation)."""

    by: str
    of: str
    i: int
    n: int
    no: str
    last: bool
    result: bool


def fragment_of(packet: Packet) -> Fragment | None:
    """The fragment mark of ``packet``; None when it has none, or a malformed one (it is then an ordinary packet)."""
    meta = packet.meta
    raw = meta.get(FRAGMENT) if meta else None
    if not isinstance(raw, dict):
        return None
    by, of, i, n = raw.get("by"), raw.get("of"), raw.get("i"), raw.get("n")
    if not (isinstance(by, str) and isinstance(of, str) and type(i) is int and type(n) is int and 0 <= i < n):
        return None
    return Fragment(by, of, i, n, str(raw.get("no", i + 1)), bool(raw.get("last", i == n - 1)), bool(raw.get("result")))


def fragment_mark(by: str, of: str, i: int, n: int, no: str, last: bool, result: bool = False) -> dict[str, Any]:
    """The ``fragment`` meta value of fragment ``i`` of ``n`` (``result``: of what its run made)."""
    mark: dict[str, Any] = {"by": by, "of": of, "i": i, "n": n, "no": no, "last": last}
    if result:
        mark["result"] = True
    return mark


def gathered_of(packet: Packet) -> dict[str, Any] | None:
    """The ``gathered`` mark of a packet a complete group made, or None."""
    meta = packet.meta
    raw = meta.get(GATHERED) if meta else None
    if isinstance(raw, dict) and raw.get("kind") in (JOIN, MERGE) and isinstance(raw.get("seed"), str):
        return raw
    return None


def lineage_of(packet: Packet) -> str:
    """The lineage join parts are matched by: ``meta.lineage`` when the injector named one, else a legacy packet's
    ``ship`` (the original's seeds joined on it, e.g. tracula), else the id's container (one injection)."""
    meta = packet.meta
    if meta:
        named = meta.get(LINEAGE)
        if isinstance(named, str) and named:
            return named
        header = meta.get("legacy_header")
        if isinstance(header, dict):
            ship = header.get("ship")
            if isinstance(ship, str) and ship:
                return f"ship:{ship}"
    return packet.lineage


def names_ship(packet: Packet) -> bool:
    """Whether ``packet``'s legacy header names a ship (its lineage then comes from it, see ``lineage_of``)."""
    header = packet.meta.get("legacy_header") if packet.meta else None
    return isinstance(header, dict) and "ship" in header


def owner(key: str, nodes: Sequence[str]) -> str:
    """The node among ``nodes`` (not empty) that keeps the group ``key``: rendezvous hashing, the same anywhere."""
    return max(nodes, key=lambda node: hashlib.blake2b(f"{key}|{node}".encode(), digest_size=8).digest())


@dataclass
class Group:
    """Packets of one join or merge, waiting for the rest."""

    kind: str
    seed: str
    key: str
    slots: tuple[str, ...]
    since: float
    parts: dict[str, list[Packet]] = field(default_factory=dict)
    filled: int = 0  # slots holding at least one packet

    def missing(self) -> list[str]:
        """The slots no packet fills yet."""
        return [s for s in self.slots if not self.parts.get(s)]

    def packets(self) -> list[Packet]:
        """Every packet the group holds."""
        return [p for held in self.parts.values() for p in held]


class Added(NamedTuple):
    """What ``Gatherer.add`` did: ``status`` is held, complete, duplicate, invalid (no such slot) or full;
    ``parts`` (complete) one packet per slot, in slot order."""

    status: str
    group: Group | None = None
    parts: tuple[Packet, ...] = ()


GroupId = tuple[str, str, str]  # (kind, seed, key)


class Gatherer:
    """The incomplete groups of this node, with their deadlines (see the module documentation)."""

    def __init__(self, wait_s: float, max_parts: int = MAX_PARTS) -> None:
        self.wait_s = wait_s
        self.max_parts = max_parts
        self.groups: dict[GroupId, Group] = {}
        self.held = 0

    def __len__(self) -> int:
        return self.held

    def add(
        self, kind: str, seed: str, key: str, slots: tuple[str, ...] | int, slot: str, packet: Packet, now: float
    ) -> Added:
        """Put ``packet`` in ``slot`` of its group, made on first use with ``slots`` (a count n: "0".."n-1").
        When that completes the group, its parts are taken out and returned."""
        gid = (kind, seed, key)
        group = self.groups.get(gid)
        if group is not None:
            held = group.parts.get(slot)
            if held is not None and any(p.id == packet.id for p in held):
                return Added("duplicate", group)
        if self.held >= self.max_parts:
            return Added("full", group)
        if group is None:
            names = slots if isinstance(slots, tuple) else tuple(str(i) for i in range(slots))
            group = Group(kind, seed, key, names, now)
        if slot not in group.parts and not _is_slot(group, slot):
            return Added("invalid", group)
        self.groups[gid] = group
        held = group.parts.setdefault(slot, [])
        held.append(packet)
        if len(held) == 1:
            group.filled += 1
        self.held += 1
        if group.filled < len(group.slots):
            return Added("held", group)
        parts = tuple(group.parts[s].pop(0) for s in group.slots)
        self.held -= len(parts)
        group.filled = sum(1 for held in group.parts.values() if held)
        if any(group.parts.values()):
            group.since = now  # a second set of this lineage starts its own wait
        else:
            del self.groups[gid]
        return Added("complete", group, parts)

    def expire(self, now: float) -> list[Group]:
        """Remove and return the groups incomplete for ``wait_s`` or longer."""
        gone = [gid for gid, g in self.groups.items() if now - g.since >= self.wait_s]
        return [self._remove(gid) for gid in gone]

    def take(self, moved: Callable[[Group], bool]) -> list[Group]:
        """Remove and return the groups ``moved`` says this node no longer keeps (their owner changed)."""
        return [self._remove(gid) for gid, g in list(self.groups.items()) if moved(g)]

    def drain(self) -> Iterator[Packet]:
        """Remove every group, yielding its packets (a stop saves them)."""
        for gid in list(self.groups):
            yield from self._remove(gid).packets()

    def counts(self) -> dict[str, int]:
        """Groups waiting and packets they hold, per kind."""
        out = {"groups": len(self.groups), "packets": self.held}
        for g in self.groups.values():
            out[f"{g.kind}_groups"] = out.get(f"{g.kind}_groups", 0) + 1
        return out

    def _remove(self, gid: GroupId) -> Group:
        group = self.groups.pop(gid)
        self.held -= sum(len(v) for v in group.parts.values())
        return group


def _is_slot(group: Group, slot: str) -> bool:
    if group.kind == MERGE:  # slots "0".."n-1": no search through thousands of fragments
        return slot.isdigit() and int(slot) < len(group.slots)
    return slot in group.slots


def _made_from(parts: Sequence[Packet], seed: str, kind: str) -> tuple[str, list[Hop], int, float]:
    """Id, trail, ttl and creation time of the packet a group of ``parts`` makes: the same id wherever it is made."""
    first = parts[0]
    ship, container, box, _ = first.id.split(":")
    digest = hashlib.blake2b("|".join([kind, seed, *sorted(p.id for p in parts)]).encode(), digest_size=6).hexdigest()
    hops = max((int(b) for b in (p.id.split(":")[2] for p in parts) if b.isdigit()), default=0)
    trail = sorted({h for p in parts for h in p.trail}, key=lambda h: h.at)
    return f"{ship}:{container}:{hops}:{digest}", trail, min(p.ttl for p in parts), min(p.created for p in parts)


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in (FRAGMENT, GATHERED)}


def joined(seed: str, join: Sequence[str], parts: Sequence[Packet]) -> Packet:
    """The packet a complete join makes: its data ``{state: data}`` (``join``'s states, in order)."""
    pid, trail, ttl, created = _made_from(parts, seed, JOIN)
    meta = _clean_meta(parts[0].meta)
    # Each part's full tag and legacy header too: a seed written for the original Pumpkin is run once per part
    # (see splitmerge), and sees each as it came.
    meta[GATHERED] = {"kind": JOIN, "seed": seed, "states": list(join), "tags": [str(p.tag) for p in parts]}
    headers = [p.meta.get("legacy_header") if p.meta else None for p in parts]
    if any(headers):
        meta[GATHERED]["headers"] = headers
    data = {state: p.data for state, p in zip(join, parts, strict=True)}
    return Packet(pid, parts[0].tag, data, trail, ttl, created, meta)


def merged(seed: str, parts: Sequence[Packet]) -> Packet:
    """The packet a complete merge makes: its data the fragments' results, in fragment order."""
    pid, trail, ttl, created = _made_from(parts, seed, MERGE)
    marks = [fragment_of(p) for p in parts]
    meta = _clean_meta(parts[0].meta)
    meta[GATHERED] = {
        "kind": MERGE,
        "seed": seed,
        "of": marks[0].of if marks[0] else "",
        "labels": [m.no if m else str(i + 1) for i, m in enumerate(marks)],
        "last": [m.last if m else False for m in marks],
        "states": [str(p.tag) for p in parts],
    }
    return Packet(pid, parts[0].tag, [p.data for p in parts], trail, ttl, created, meta)


def without_marks(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` for a packet made from a gathered one or a merge: no fragment or gathered mark."""
    if FRAGMENT in meta or GATHERED in meta:
        return _clean_meta(meta)
    return meta
