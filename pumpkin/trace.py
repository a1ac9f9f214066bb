"""Tracing packets (provenance): a bounded ring of recent packet events per daemon, and the peer messages that
ask other daemons what they know of a lineage.

Each daemon notes, in memory only, what happened to packets here (``PacketEvents``, the last ``EVENTS_MAX``):

=========== ==========================================================================================
``in``      a packet entered the network here (``pmk inject``, the rx folder, the page, a replay)
``made``    seed ``seed`` made ``packet`` from ``parent`` (an injector: no parent) in ``state``
``ran``     seed ``seed`` ran ``packet`` here, for ``s`` seconds (``kind`` set: it failed doing so)
``done``    an extractor (``seed``) ran ``packet``: its end
``sent``    ``packet`` was sent to ``peer`` for its seed ``seed``
``waiting`` ``packet`` waits here in ``state`` (for ``seed``, or for any consumer)
``failed``  ``packet`` failed here (``kind``), kept in failed/ as ``file``
=========== ==========================================================================================

A lineage is a packet id's first two parts (``ship:container``, see ``packet.IdMaker``): every packet made from
a packet shares its lineage, but a legacy fork starts a new one, which ``lineage_events`` follows through its
``made`` event. ``pmk trace ID`` asks the local daemon (control protocol), which asks every peer with a TRACE
message over the peer protocol; each answers with its events of those lineages (TRACE_ANSWER). No data and no
failure reason travel: ids, seeds, states, times, kinds of failure and file names. Both messages go through the
inbox like file chunks (``inbound``): in a keyed network one from a key no member's HELLO bound is not read.

Wire (two frames each, like the other peer messages)::

    b"PMKT" TRACE         {"id": asker, "q": query number, "lineages": [lineage, ...]}
    b"PMKU" TRACE_ANSWER  {"id": answerer, "q": query number, "events": [event object, ...]}
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson

log = logging.getLogger(__name__)

TRACE = b"PMKT"
TRACE_ANSWER = b"PMKU"
KINDS = (TRACE, TRACE_ANSWER)
EVENTS_MAX = 10000  # events kept per daemon (~200 bytes each): the last few thousand packet hops
LINEAGES_MAX = 64  # lineages one TRACE may ask about
ANSWER_EVENTS_MAX = 5000  # events one answer carries (the newest)
MAX_TRACE_BYTES = 4 << 20
FIELDS = ("at", "event", "packet", "parent", "seed", "state", "s", "peer", "kind", "file")
EVENT_NAMES = ("in", "made", "ran", "done", "sent", "waiting", "failed")

Event = tuple[float, str, str, str, str, object, float, str, str, str]  # the state as given (a StateTag): str() later


def lineage(packet_id: str) -> str:
    """The lineage a packet id belongs to: its ``ship:container`` (the whole id when it is not of that form)."""
    parts = packet_id.split(":")
    return f"{parts[0]}:{parts[1]}" if len(parts) == 4 else packet_id


class PacketEvents:
    """The last ``size`` packet events of this daemon, oldest first; ``note`` is cheap (one tuple appended; the
    router appends ``Event`` tuples to ``ring`` itself where it notes one per run)."""

    def __init__(self, size: int = EVENTS_MAX, clock: Callable[[], float] = time.time) -> None:
        self.ring: deque[Event] = deque(maxlen=size)
        self.clock = clock

    def note(
        self,
        event: str,
        packet: str,
        parent: str = "",
        seed: str = "",
        state: object = "",
        seconds: float = 0.0,
        peer: str = "",
        kind: str = "",
        file: str = "",
        at: float = 0.0,
    ) -> None:
        """Remember one event, now (or ``at``)."""
        self.ring.append((at or self.clock(), event, packet, parent, seed, state, seconds, peer, kind, file))

    def lineage_events(self, lineages: Iterable[str]) -> tuple[list[dict[str, Any]], set[str]]:
        """The events of ``lineages`` (and of lineages forked from them here), as objects; and every lineage
        they reached."""
        wanted = set(lineages)
        picked: list[Event] = []
        grew = True
        while grew:  # a fork made here may show up before or after its parent's other events
            grew = False
            picked = []
            for e in self.ring:
                mine = lineage(e[2]) in wanted
                if not mine and e[3] and lineage(e[3]) in wanted:
                    wanted.add(lineage(e[2]))  # a fork: the child's new lineage is this one's too
                    grew = mine = True
                if mine:
                    picked.append(e)
        return [as_object(e) for e in picked], wanted


def as_object(e: Event) -> dict[str, Any]:
    """An event as JSON: the empty fields left out."""
    out = {k: v for k, v in zip(FIELDS, e, strict=True) if v not in ("", 0.0) or k == "at"}
    if "state" in out:
        out["state"] = str(out["state"])
    return out


def valid_events(raw: Any, node: str) -> list[dict[str, Any]]:
    """The well-formed events of an answer (untrusted input), each with ``node`` set to the answerer."""
    out: list[dict[str, Any]] = []
    if not isinstance(raw, list):
        return out
    for e in raw[:ANSWER_EVENTS_MAX]:
        if not isinstance(e, dict) or e.get("event") not in EVENT_NAMES:
            continue
        at, seconds = e.get("at"), e.get("s", 0.0)
        if not isinstance(at, int | float) or not isinstance(seconds, int | float) or isinstance(at, bool):
            continue
        clean: dict[str, Any] = {"at": float(at), "event": e["event"], "node": node}
        for key in ("packet", "parent", "seed", "state", "peer", "kind", "file"):
            value = e.get(key, "")
            if isinstance(value, str) and value:
                clean[key] = value[:200]
        if seconds:
            clean["s"] = float(seconds)
        if "packet" in clean:
            out.append(clean)
    return out


class Tracer:
    """Answers peers' TRACE messages from this node's events, and collects the answers to its own questions.

    ``send(node, frames)``: to a peer's inbox (False when there is no link); ``peers()``: the peers to ask;
    ``answered(query)``: called on the loop when an answer to ``query`` arrived.
    """

    def __init__(
        self,
        node_id: str,
        events: PacketEvents,
        send: Callable[[str, list[bytes]], bool],
        peers: Callable[[], list[str]],
        answered: Callable[[int], None] = lambda q: None,
    ) -> None:
        self.node_id = node_id
        self.events = events
        self.send = send
        self.peers = peers
        self.answered = answered
        self.counters = {"asked": 0, "answered": 0, "refused": 0, "bad": 0}
        self._next = 0
        self.queries: dict[int, dict[str, list[dict[str, Any]] | None]] = {}  # query -> node -> events (None: no word)

    def ask(self, lineages: list[str]) -> int:
        """Ask every peer about ``lineages``; the query's number (its answers fill ``queries[number]``)."""
        self._next += 1
        self.counters["asked"] += 1
        q = self._next
        waiting: dict[str, list[dict[str, Any]] | None] = {}
        frames = [TRACE, orjson.dumps({"id": self.node_id, "q": q, "lineages": lineages[:LINEAGES_MAX]})]
        for node in self.peers():
            if self.send(node, frames):
                waiting[node] = None
        self.queries[q] = waiting
        return q

    def unanswered(self, q: int) -> list[str]:
        """The peers asked in query ``q`` that have not answered yet."""
        return [n for n, got in self.queries.get(q, {}).items() if got is None]

    def finish(self, q: int) -> dict[str, list[dict[str, Any]] | None]:
        """What each peer asked in ``q`` said (None: no answer), forgetting the query."""
        return self.queries.pop(q, {})

    def handle(self, frames: list[bytes], member: str | None, keyed: bool) -> None:
        """A TRACE or TRACE_ANSWER from the inbox; ``member``: the node its key belongs to (keyed network)."""
        if keyed and member is None:
            self.counters["refused"] += 1  # not a member: not read at all
            return
        try:
            if len(frames) != 2 or len(frames[1]) > MAX_TRACE_BYTES:
                raise ValueError("not a trace message")
            body = orjson.loads(bytes(frames[1]))
            sender, q = body["id"], body["q"]
            if not isinstance(sender, str) or type(q) is not int:
                raise ValueError("bad id or q")
        except (ValueError, KeyError, TypeError):
            self.counters["bad"] += 1
            return
        if keyed and sender != member:
            self.counters["refused"] += 1  # a member speaking for another
            return
        if bytes(frames[0]) == TRACE:
            asked = body.get("lineages")
            if not isinstance(asked, list) or not all(isinstance(x, str) for x in asked):
                self.counters["bad"] += 1
                return
            events, _ = self.events.lineage_events(asked[:LINEAGES_MAX])
            self.counters["answered"] += 1
            answer = [TRACE_ANSWER, orjson.dumps({"id": self.node_id, "q": q, "events": events[-ANSWER_EVENTS_MAX:]})]
            self.send(sender, answer)
            return
        waiting = self.queries.get(q)
        if waiting is None or sender not in waiting:
            return  # an answer to a question we did not ask of it, or too late
        waiting[sender] = valid_events(body.get("events"), sender)
        self.answered(q)
