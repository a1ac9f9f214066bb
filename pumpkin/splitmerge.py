"""Split, merge and AND-joins as seed code sees them: which of a seed's methods runs for a packet, and with what.

A seed that defines ``split`` has it called first on each packet that is not a fragment:

- modern: ``split(self, data)`` returns the fragments' data (a list or any iterable), or None to run the packet
  whole; each fragment is run by ``run`` on any replica; once every fragment's result is on one replica,
  ``merge(self, results)`` gets the results in fragment order and what it returns is emitted as ``run``'s is.
  A fragment's result is what its ``run`` emitted: the one value, None for nothing, a list for several.
- legacy (the original Pumpkin's): ``split(self, pkt, data)`` dispatches packets made by ``fragment_pkt`` and
  ``last_fragment_pkt`` and returns True (False: ``run`` is called on the packet too); each fragment is run by
  ``run`` on any replica and what it dispatches goes to the merge; ``merge(self, pkt, data)`` is then called once
  per fragment, in the order they were dispatched, the last one last (``is_last_fragment`` true), and dispatches
  the merged data. Unlike the original, the framework counts the fragments: ``merge`` runs only once all are there.

A seed consuming an AND-join ``A&B`` runs once per lineage: a modern ``run(self, data)`` gets ``{"A": a, "B": b}``;
a legacy ``run(self, pkt, a, b)`` gets one value per state, in the manifest's order. See ``gather`` for how the
framework collects them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import PmkSeed
from .gather import FRAGMENT, JOIN, MERGE, fragment_of, gathered_of

if TYPE_CHECKING:
    from .packet import Packet
    from .runner import Emission
    from .seed import SeedSpec

#: The original's header ``e`` values: more fragments follow, or this is the last (and any whole packet).
MORE_PKT = 1
LAST_PKT = 0

#: emit(state, data, forked) as a legacy packet's ``emit`` is called (see PmkSeed.LegacyPacket).
LegacyEmit = Callable[[str, Any, bool], None]


def splits(cls: type) -> bool:
    """True when seed class ``cls`` defines its own ``split``."""
    if issubclass(cls, PmkSeed.Seed):
        return getattr(cls, "split", None) is not getattr(PmkSeed.Seed, "split", None)
    return callable(getattr(cls, "split", None))


def special(packet: Packet, splits: bool) -> bool:
    """True when ``packet`` is not simply ``run``: a split is tried, a merge or a join runs (see ``invoke``)."""
    meta = packet.meta
    if not meta:
        return splits
    if gathered_of(packet) is not None:
        return True
    return splits and FRAGMENT not in meta


def legacy_fields(packet: Packet) -> dict[str, Any]:
    """The header fields ``fragment`` and ``e`` of a legacy seed's view of ``packet`` (the original's meaning)."""
    mark = fragment_of(packet)
    if mark is None:
        return {"fragment": "0", "e": LAST_PKT}
    return {"fragment": mark.no, "e": LAST_PKT if mark.last else MORE_PKT}


# -- seed methods (PmkSeed.Seed delegates here) ----------------------------------------------------------------


class FragmentEmit:
    """The ``emit`` of a packet made by ``fragment_pkt``: dispatching it inside ``split`` makes a fragment."""

    def __init__(self, base: Any, label: str, last: bool) -> None:
        self.base, self.label, self.last = base, label, last

    def __call__(self, state: str, data: Any, forked: bool = False) -> None:
        fragment = getattr(self.base, "fragment", None)
        if fragment is not None:
            fragment(state, data, self.label, self.last)
        elif self.base is not None:
            self.base(state, data, forked)  # outside split: an ordinary dispatch, as in the original
        else:
            raise RuntimeError("dispatch() needs a packet made from the one run() or split() received")


def fragment_view(pkt: Any, frag_no: Any, last: bool) -> PmkSeed.LegacyPacket:
    """A copy of legacy packet ``pkt`` marked as fragment ``frag_no`` (the last one: ``last``)."""
    items = copy.deepcopy(list(pkt))
    if items and isinstance(items[0], dict):
        items[0]["fragment"] = str(frag_no)
        items[0]["e"] = LAST_PKT if last else MORE_PKT
    return PmkSeed.LegacyPacket(items, FragmentEmit(getattr(pkt, "emit", None), str(frag_no), last))


def header_int(pkt: Any, key: str) -> int:
    """An integer field of a legacy packet's header (0 when absent or not a number)."""
    try:
        return int(pkt[0][key])
    except (LookupError, TypeError, ValueError):
        return 0


# -- running -------------------------------------------------------------------------------------------------


class _SplitEmit:
    """The ``emit`` of the packet ``split`` gets: plain dispatches go out, fragment dispatches are collected."""

    def __init__(self, plain: LegacyEmit) -> None:
        self.plain = plain
        self.fragments: list[tuple[str, Any, str, bool]] = []

    def __call__(self, state: str, data: Any, forked: bool = False) -> None:
        self.plain(state, data, forked)

    def fragment(self, state: str, data: Any, label: str, last: bool) -> None:
        self.fragments.append((state, data, label, last))


def modern_emissions(instance: Any, arity: int, packet: Packet, splits: bool) -> Iterator[Emission]:
    """What a modern seed makes of ``packet``: its split's fragments, its merge's or its run's emissions."""
    from .runner import _emission, iter_results, run_modern

    gathered = gathered_of(packet)
    if gathered is not None and gathered["kind"] == MERGE:
        merge = getattr(instance, "merge", None)
        yield from iter_results(merge(packet.data) if merge is not None else packet.data)
        return
    if splits and gathered is None and FRAGMENT not in packet.meta:
        parts = instance.split(packet.data)
        if parts is not None:
            for data in parts:
                yield _emission(None, data, fragment=("", False))
            return
    yield from iter_results(run_modern(instance, arity, packet))


def invoke(
    spec: SeedSpec,
    instance: Any,
    packet: Packet,
    arity: int,
    splits: bool,
    emit: Callable[[Emission], None],
    legacy_args: Callable[[Any], tuple[Any, ...]],
) -> None:
    """Run ``instance`` on ``packet`` when ``special`` says it is not simply ``run``; emissions go to ``emit``."""
    from .runner import _emission, legacy_view

    if not spec.legacy:
        for e in modern_emissions(instance, arity, packet, splits):
            emit(e)
        return

    def plain(state: str, data: Any, forked: bool = False) -> None:
        emit(_emission(state, data, forked))

    gathered = gathered_of(packet)
    if gathered is not None and gathered["kind"] == JOIN:
        data = packet.data if isinstance(packet.data, dict) else {}
        values = [data.get(state) for state in gathered.get("states", [])]
        instance.run(legacy_view(packet, plain), *values)
        return
    if gathered is not None and gathered["kind"] == MERGE:
        labels, lasts, states = gathered.get("labels", []), gathered.get("last", []), gathered.get("states", [])
        results = packet.data if isinstance(packet.data, list) else []
        for i, result in enumerate(results):
            view = legacy_view(packet, plain)
            header = view[0]
            header["fragment"] = str(labels[i]) if i < len(labels) else str(i + 1)
            header["e"] = LAST_PKT if (lasts[i] if i < len(lasts) else i == len(results) - 1) else MORE_PKT
            entry = {**view[-1], "data": result}
            if i < len(states) and isinstance(states[i], str):
                entry["stag"] = ":".join(states[i].split(":")[1:])
            # The original's merge saw its fragment's output before the last entry: get_pkt_data reads it there.
            view[-1:] = [dict(entry), entry]
            instance.merge(view, *legacy_args(result))
        return
    collector = _SplitEmit(plain)
    split_done = instance.split(legacy_view(packet, collector), *legacy_args(packet.data))
    for state, data, label, last in collector.fragments:
        emit(_emission(state, data, False, fragment=(label, last)))
    if not split_done:
        instance.run(legacy_view(packet, plain), *legacy_args(packet.data))
