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

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import PmkSeed, legacy, tags
from .errors import TagError
from .gather import FRAGMENT, GATHERED, JOIN, MERGE, gathered_of
from .PmkShared import LAST_PKT, MORE_PKT

if TYPE_CHECKING:
    from .packet import Packet
    from .runner import Emission
    from .seed import SeedSpec


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


def takes_each(run: Callable[..., Any], n: int) -> bool:
    """True when a legacy seed's bound ``run`` takes the packet and ``n`` values (one per state of its join)."""
    try:
        inspect.signature(run).bind(None, *([None] * n))
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): call it the joined way, as before
        return True
    return True


def join_parts(packet: Packet, gathered: dict[str, Any]) -> list[Packet]:
    """The parts a joined ``packet`` was made of, each with its own tag, legacy header and data (its id, trail
    and lineage are the joined packet's: what a seed dispatches from any of them continues the join)."""
    from .packet import Packet

    states, data = gathered.get("states", []), packet.data if isinstance(packet.data, dict) else {}
    tags_, headers = gathered.get("tags") or [], gathered.get("headers") or []
    meta = {k: v for k, v in packet.meta.items() if k not in (GATHERED, "legacy_header")}
    carried = packet.meta.get("legacy_header")
    parts = []
    for i, state in enumerate(states):
        try:
            tag = tags.parse(tags_[i]) if i < len(tags_) else packet.tag._replace(state=state)
        except (TagError, TypeError):  # a mark made by hand or damaged: the joined packet's tag, as before
            tag = packet.tag
        # (A join made by an older peer names no headers: the first part's, in the joined packet's meta, for all.)
        header = headers[i] if i < len(headers) else (None if "headers" in gathered else carried)
        part_meta = {**meta, "legacy_header": header} if isinstance(header, dict) else meta
        parts.append(Packet(packet.id, tag, data.get(state), packet.trail, packet.ttl, packet.created, part_meta))
    return parts


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
    env: legacy.LegacyEnv | None,
) -> None:
    """Run ``instance`` on ``packet`` when ``special`` says it is not simply ``run``; emissions go to ``emit``.
    A legacy seed dispatches as in ``run`` (see ``legacy.running``); in ``split``, what it dispatches made by
    ``fragment_pkt`` is a fragment (``PmkSeed.Seed.dispatch``)."""
    from .runner import _emission

    if not spec.legacy:
        for e in modern_emissions(instance, arity, packet, splits):
            emit(e)
        return
    env = env or legacy.LegacyEnv.scratch()

    def plain(state: str, data: Any, **kw: Any) -> None:
        emit(_emission(state, data, **kw))

    gathered = gathered_of(packet)
    if gathered is not None and gathered["kind"] == JOIN:
        data = packet.data if isinstance(packet.data, dict) else {}
        values = [legacy.run_argument(data.get(state)) for state in gathered.get("states", [])]
        if takes_each(instance.run, len(values)):
            view = legacy.view_of(packet, spec.name, env)
            with legacy.running(instance, view, packet, plain):
                instance.run(view, *values)
            return
        # ``run(self, pkt, data)``: written for the original, which called it once per packet and left the
        # waiting to the seed (tracula keeps a barrier per ship). It gets each part in turn, as it came (its
        # tag, header and data), in the manifest's order: pre_run, then run, as for any packet.
        for part in join_parts(packet, gathered):
            view = legacy.view_of(part, spec.name, env)
            with legacy.running(instance, view, part, plain):
                if instance.pre_run(view, (part.data,)):
                    instance.run(view, legacy.run_argument(part.data))
        return
    if gathered is not None and gathered["kind"] == MERGE:
        labels, lasts, states = gathered.get("labels", []), gathered.get("last", []), gathered.get("states", [])
        results = packet.data if isinstance(packet.data, list) else []
        for i, result in enumerate(results):
            view = legacy.view_of(packet, spec.name, env)
            header = view[0]
            header["fragment"] = str(labels[i]) if i < len(labels) else str(i + 1)
            header["e"] = LAST_PKT if (lasts[i] if i < len(lasts) else i == len(results) - 1) else MORE_PKT
            entry = {**view[-2], "data": result}
            if i < len(states) and isinstance(states[i], str):
                entry["stag"] = states[i]
            # The original's merge saw its fragment's output before the last entry: get_pkt_data reads it there.
            view.insert(len(view) - 1, entry)
            with legacy.running(instance, view, packet, plain):
                instance.merge(view, legacy.run_argument(result))
        return
    view = legacy.view_of(packet, spec.name, env)
    arg = legacy.run_argument(packet.data)
    with legacy.running(instance, view, packet, plain, splitting=True):
        if not instance.pre_run(view, (packet.data,)):
            return
        split_done = instance.split(view, arg)
    if not split_done:
        with legacy.running(instance, view, packet, plain):
            instance.run(view, arg)
