"""The peer table: who else is in the network, how to reach them, what they run, and whether they are alive.

Pure bookkeeping driven by an injected clock. A peer is *alive* while heard from within ``evasive_s``,
*evasive* until ``expired_s``, then *expired* (the daemon forgets it and its seeds). A peer that says
goodbye leaves at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .automaton import SeedInfo


class Liveness(StrEnum):
    """How recently a peer was heard from."""

    ALIVE = "alive"
    EVASIVE = "evasive"
    EXPIRED = "expired"


@dataclass
class Peer:
    """One other node."""

    node_id: str
    endpoint: str
    seeds: list[SeedInfo] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    seeds_digest: str = ""
    via: str = ""  # how it was found: broadcast, mdns, static, hello
    first_heard: float = 0.0
    last_heard: float = 0.0
    state: Liveness = Liveness.ALIVE
    load: dict[str, float] = field(default_factory=dict)  # seed name -> queued packets per worker

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
        }


class PeerTable:
    """Known peers and their liveness."""

    def __init__(self, evasive_s: float, expired_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.evasive_s = evasive_s
        self.expired_s = expired_s
        self.clock = clock
        self.peers: dict[str, Peer] = {}

    def heard(self, node_id: str, endpoint: str, via: str) -> tuple[Peer, bool]:
        """Record that ``node_id`` was heard; returns the peer and whether it is new (or back from evasive)."""
        now = self.clock()
        peer = self.peers.get(node_id)
        if peer is None:
            peer = Peer(node_id, endpoint, via=via, first_heard=now, last_heard=now)
            self.peers[node_id] = peer
            return peer, True
        revived = peer.state is not Liveness.ALIVE
        peer.last_heard = now
        peer.state = Liveness.ALIVE
        if endpoint:
            peer.endpoint = endpoint
        return peer, revived

    def leave(self, node_id: str) -> Peer | None:
        """Forget ``node_id`` at once (it said goodbye); returns it if it was known."""
        return self.peers.pop(node_id, None)

    def sweep(self) -> tuple[list[Peer], list[Peer]]:
        """Update liveness; returns (newly evasive, expired). Expired peers are removed."""
        now = self.clock()
        evasive, expired = [], []
        for peer in list(self.peers.values()):
            silent = now - peer.last_heard
            if silent >= self.expired_s:
                peer.state = Liveness.EXPIRED
                expired.append(self.peers.pop(peer.node_id))
            elif silent >= self.evasive_s and peer.state is Liveness.ALIVE:
                peer.state = Liveness.EVASIVE
                evasive.append(peer)
        return evasive, expired

    def summaries(self) -> list[dict[str, Any]]:
        """Every known peer, JSON-ready, sorted by id."""
        now, wall = self.clock(), time.time()
        return [self.peers[k].summary(wall, now) for k in sorted(self.peers)]
