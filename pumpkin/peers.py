"""The peer table: one ``Peer`` per other node this node knows of, holding everything known about it.

Pure bookkeeping, with the time passed in. An entry starts when this node first hears of the node (discovery,
gossip, its HELLO) and greets it: it is then *greeted* and not yet a peer. Once its HELLO comes it is a peer
(at once, on a crowded LAN, when its beacon carried its seeds: see ``mesh.GREET_ALL_UP_TO``),
*alive* while heard from within ``evasive_s``, *evasive* until ``expired_s`` (both times its ``stretch``: a peer on a
crowded LAN beacons less often, see ``beacons.pace``), then *expired* (the mesh drops it,
its seeds leave the automaton). A peer that says goodbye, or comes back as a new incarnation, is dropped at once.
Dropping a node removes its one entry: liveness, seeds, incarnation, beacons and the packets in flight to it go
together (see ``mesh``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .automaton import SeedInfo
from .custody import InFlight

if TYPE_CHECKING:
    from .messages import Origin

NEVER = -1e9  # "long ago": a time before any event


class Liveness(StrEnum):
    """Where a node stands: greeted (not a peer yet), or a peer heard from recently (alive) or not (evasive)."""

    GREETED = "greeted"
    ALIVE = "alive"
    EVASIVE = "evasive"
    EXPIRED = "expired"


@dataclass(eq=False, slots=True)
class Peer:
    """One other node, for one incarnation of it: how to reach it, what it runs, liveness, and our traffic to it."""

    node_id: str
    inc: int = 0  # its incarnation (see ``messages``): 0 until one is heard
    since: float = 0.0  # when this node first heard of it
    state: Liveness = Liveness.GREETED
    endpoint: str = ""  # where our link to it points
    addresses: list[str] = field(default_factory=list)  # its tcp:// and ipc:// endpoints, from its HELLO
    origin: Origin | None = None  # its newest origin (endpoints, host, keys), as heard
    via: str = ""  # how it became a peer: broadcast, mdns, local, static, gossip, hello ...
    found_via: str = ""  # how this node first heard of it ("" when its own HELLO came first)
    found_us: str = ""  # how it heard of this node, as its HELLO says ("broadcast", "mdns", "local", ...)
    last_heard: float = NEVER
    seeds: list[SeedInfo] = field(default_factory=list)
    seeds_digest: str = ""
    workers: dict[str, int] = field(default_factory=dict)  # its seeds' worker counts, from its HELLO
    load: dict[str, float] = field(default_factory=dict)  # its seeds' queued packets per worker, from its PINGs
    done_reported: dict[str, int] = field(default_factory=dict)  # its seeds' counts, from its PINGs
    hello_sent: float = NEVER
    hello_heard: bool = False  # its HELLO came (else it was learnt from its beacon: see ``mesh.GREET_ALL_UP_TO``)
    beacon_seq: tuple[int, int] = (0, 0)  # (incarnation, seq) of its newest beacon: older ones are replays
    beacon_at: float = NEVER  # when its beacon (broadcast or direct) was last heard
    broadcast_at: float = NEVER  # when its broadcast beacon was last heard
    direct_at: float = NEVER  # when it last sent a beacon to us alone: it does not hear our broadcasts
    stretch: float = 1.0  # its broadcast beacons come every ``stretch`` heartbeats (paced on a crowded LAN)
    fed_at: float = NEVER  # when it last sent us a packet: our load is news to it (routing reads it)
    done_at: float = NEVER  # when it last got our seeds' counts from us
    echo_at: float = NEVER  # when it last asked for our PINGs
    load_sent: dict[str, float] = field(default_factory=dict)  # the non-zero load it last got from us
    done_sent: dict[str, int] = field(default_factory=dict)  # the counts it last got from us
    ping_unsent: bool = False  # our last PING to it could not be sent: the next heartbeat sends one
    #: It left packets unanswered until they went elsewhere, and has answered nothing we sent it since (a data
    #: port unreachable from here, while its beacons and messages reach us): one packet at a time goes to it.
    unanswering: bool = False
    inflight: InFlight = field(default_factory=InFlight)  # packets sent to it, not acknowledged yet

    @property
    def handshaken(self) -> bool:
        """True once a HELLO went either way (else it was learnt from its beacon: see ``mesh.GREET_ALL_UP_TO``)."""
        return self.hello_heard or self.hello_sent > NEVER

    @property
    def known(self) -> bool:
        """True once it is a peer (its HELLO came), not only greeted."""
        return self.state is not Liveness.GREETED

    def summary(self, now_wall: float, now: float) -> dict[str, Any]:
        """JSON-ready description for ``pmk peers`` and the web page."""
        return {
            "id": self.node_id,
            "endpoint": self.endpoint,
            "addresses": self.addresses,
            "state": self.state.value,
            "seeds": [s.name for s in self.seeds],
            "via": self.via,
            "last_heard_s_ago": round(now - self.last_heard, 3),
            "last_heard": round(now_wall - (now - self.last_heard), 3),
            "load": self.load,
            "answering": not self.unanswering,
        }


class PeerTable:
    """Every node this node knows of, one entry each; ``peers`` are those that are peers (not only greeted)."""

    def __init__(self, evasive_s: float, expired_s: float) -> None:
        self.evasive_s = evasive_s
        self.expired_s = expired_s
        self.entries: dict[str, Peer] = {}
        self.greeted = 0  # entries not peers yet (kept as entries change: counting them is O(N) per origin heard)
        self.stretch = 1.0  # a new entry's stretch until its own beacon says: the pace of the LAN's beacons
        #: No peer turns evasive or expires before this (a lower bound): sweeps until then have nothing to do.
        #: At 1,000 peers a pass over every one, every heartbeat, was a tenth of a simulated LAN's time.
        self._next_sweep = NEVER

    @property
    def peers(self) -> dict[str, Peer]:
        """The peers (alive or evasive), by node id: a new dict, for readers; the mesh uses ``peer``."""
        return {n: p for n, p in self.entries.items() if p.state is not Liveness.GREETED}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, node_id: str) -> Peer | None:
        """The entry of ``node_id``, greeted or peer."""
        return self.entries.get(node_id)

    def peer(self, node_id: str) -> Peer | None:
        """The entry of ``node_id`` when it is a peer (not only greeted)."""
        peer = self.entries.get(node_id)
        return peer if peer is not None and peer.state is not Liveness.GREETED else None

    def entry(self, node_id: str, now: float, inc: int = 0) -> Peer:
        """The entry of ``node_id``, made (greeted, of incarnation ``inc``) when there is none."""
        peer = self.entries.get(node_id)
        if peer is None:
            peer = self.entries[node_id] = Peer(node_id, inc, since=now, stretch=self.stretch)
            self.greeted += 1
        return peer

    def heard(self, node_id: str, endpoint: str, via: str, now: float) -> tuple[Peer, bool]:
        """A sign of life of ``node_id`` as a peer; returns it and whether it is new (or back from evasive)."""
        peer = self.entry(node_id, now)
        fresh = peer.state is not Liveness.ALIVE
        if peer.state is Liveness.GREETED:
            peer.via = via
            self.greeted -= 1
        peer.last_heard = now
        peer.state = Liveness.ALIVE
        due = now + self.evasive_s * peer.stretch
        if due < self._next_sweep:
            self._next_sweep = due
        if endpoint:
            peer.endpoint = endpoint
        return peer, fresh

    def pace(self, peer: Peer, stretch: float) -> None:
        """``peer``'s broadcast beacons come every ``stretch`` heartbeats (as its newest one says); so do those of
        the LAN (a new entry starts with it)."""
        self.stretch = peer.stretch = stretch
        if peer.state is not Liveness.GREETED:
            due = peer.last_heard + self.evasive_s * stretch
            if due < self._next_sweep:
                self._next_sweep = due

    def leave(self, node_id: str) -> Peer | None:
        """Forget ``node_id``: its one entry goes; returns it if there was one."""
        peer = self.entries.pop(node_id, None)
        if peer is not None and peer.state is Liveness.GREETED:
            self.greeted -= 1
        return peer

    def sweep(self, now: float) -> tuple[list[Peer], list[Peer]]:
        """Update liveness; returns (newly evasive, expired). Expired peers are marked, not removed: the caller
        drops them (``leave``) once it has re-routed what was in flight to them."""
        evasive: list[Peer] = []
        expired: list[Peer] = []
        if now < self._next_sweep:
            return evasive, expired
        greeted, alive = Liveness.GREETED, Liveness.ALIVE
        stretch = 0.0  # the windows' stretch computed for (most peers share the LAN's: computed once per sweep)
        evasive_after = expired_after = 0.0
        next_sweep = float("inf")
        for peer in self.entries.values():
            state = peer.state
            if state is greeted:
                continue
            # A paced peer (see ``beacons.pace``) may be silent longer: its windows stretch as its beacons do.
            if peer.stretch != stretch:
                stretch = peer.stretch
                evasive_after, expired_after = self.evasive_s * stretch, self.expired_s * stretch
            silent = now - peer.last_heard
            if silent < evasive_after:
                if peer.last_heard + evasive_after < next_sweep:
                    next_sweep = peer.last_heard + evasive_after
                continue
            if silent >= expired_after:
                peer.state = Liveness.EXPIRED
                expired.append(peer)
                continue
            if state is alive:
                peer.state = Liveness.EVASIVE
                evasive.append(peer)
            if peer.last_heard + expired_after < next_sweep:
                next_sweep = peer.last_heard + expired_after
        self._next_sweep = next_sweep
        return evasive, expired

    def summaries(self, now: float, now_wall: float) -> list[dict[str, Any]]:
        """Every peer, JSON-ready, sorted by id (``now``: the monotonic time its ``last_heard`` is measured on)."""
        return [p.summary(now_wall, now) for _, p in sorted(self.entries.items()) if p.known]
