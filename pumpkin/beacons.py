"""The decisions of beacon discovery, without a socket: the datagram this node sends, and what a heard one means.

``discovery.BeaconDiscovery`` wraps this in a UDP socket and a timer; the simulator (``simnet``) calls the same
object with datagrams on its virtual wire, so both decide alike what a beacon says and what is rejected.
Anything heard is untrusted: a datagram that is not a valid beacon of this node's network is counted in
``rejected`` and logged (the first of each kind loudly, the rest quietly), never raised.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from typing import Any

import orjson

from .membership import Membership
from .messages import MessageError, Origin, decode_beacon, encode_beacon, wall_clock

log = logging.getLogger("pumpkin.discovery")

#: All the daemons of one LAN together send about this many broadcast beacons a second, at most: past
#: ``LAN_BEACONS_PER_S`` x heartbeat daemons, each beacons less often than every heartbeat (RTCP's rule, RFC 3550
#: 6.2: the control traffic of a group stays the same however many join it). Without it every daemon hears
#: N beacons per heartbeat: N^2 wake-ups on the LAN, most of an idle crowd's CPU.
LAN_BEACONS_PER_S = 20.0
#: ... but no daemon waits longer than this between two beacons (its peers' liveness windows stretch with it).
MAX_PACED_S = 30.0

OnOrigin = Callable[[Origin, str], None]
Decode = Callable[[bytes, "Membership | None"], Origin]


def seeds_digest(summaries: list[dict[str, Any]]) -> str:
    """What beacons say of a node's seeds: equal digests, equal seeds (a peer with a new digest is greeted again)."""
    return hashlib.sha1(orjson.dumps(summaries)).hexdigest()[:12]


class Rejects:
    """Counts bad input and logs the first of each kind loudly, the rest quietly."""

    def __init__(self) -> None:
        self.rejected = 0
        self._seen: set[str] = set()

    def reject(self, what: str, why: str) -> None:
        self.rejected += 1
        key = why.split(":")[0]
        (log.warning if key not in self._seen else log.debug)("ignored %s: %s", what, why)
        self._seen.add(key)


class Beacons(Rejects):
    """One node's beacons: ``datagram()`` is what it sends, ``on_datagram(data, host)`` what it makes of one heard."""

    def __init__(
        self,
        beacon: Callable[[], Origin],
        on_origin: OnOrigin,
        membership: Membership | None = None,
        unicast_hosts: Collection[str] = (),
        decode: Decode = decode_beacon,
        wall: Callable[[], float] = wall_clock,
        on_lan: Callable[[str], bool] = lambda host: True,
        lan_beacons_per_s: float = LAN_BEACONS_PER_S,
    ) -> None:
        """``beacon()``: this node's origin now; ``on_origin(origin, via)``: a valid beacon was heard (the mesh);
        ``membership``: seal ours and accept only members' (None: an open network); ``unicast_hosts``: the
        supernodes we beacon to, whose beacons count as found ``via`` "supernode" rather than "broadcast";
        ``decode``: ``messages.decode_beacon``, or one that remembers (a simulator decodes a broadcast once);
        ``wall()``: the wall clock announced in each beacon (``messages.wall_clock``; a simulator's virtual one);
        ``on_lan(host)``: True when ``host`` is on one of our broadcast networks (a beacon from elsewhere came to
        us alone, unicast: it is heard "unicast", and its sender is no LAN peer to leave out of gossip);
        ``lan_beacons_per_s``: the LAN's beacons a second in all that ``pace`` keeps to (0: never pace)."""
        Rejects.__init__(self)
        self._beacon = beacon
        self._on_origin = on_origin
        self.membership = membership
        self.unicast_hosts = frozenset(unicast_hosts)
        self._decode = decode
        self._wall = wall
        self._on_lan = on_lan
        self.lan_beacons_per_s = lan_beacons_per_s
        self._seq = 0
        self.received = 0
        self.every = 0.0  # the gap to our next beacon, as ours announce it (``pace``); 0: one heartbeat
        self.hears = 0  # daemons whose broadcasts came in our last two gaps, as ours announce it (``pace``)
        self._heard: set[str] = set()  # nodes whose broadcast beacons came since our last beacon
        self._heard_before: set[str] = set()  # ... and in the gap before that

    def datagram(self, bye: bool = False, direct: bool = False) -> bytes:
        """The next beacon (``bye``: this node is leaving; ``direct``: sent to one peer that does not hear our
        broadcasts); each carries a higher ``seq``, so a replayed one is told from a new one."""
        origin = self._beacon()
        origin.bye = bye
        origin.direct = direct
        self._seq += 1
        origin.seq = self._seq
        origin.wall = round(self._wall(), 6)  # peers compare it with their clocks (pmk doctor)
        origin.every = 0.0 if direct else self.every
        origin.hears = self.hears
        if origin.pk and origin.tcp:
            origin.ipc = None  # a path on our host is no stranger's business: it travels in the encrypted HELLO
        return encode_beacon(origin, self.membership)

    def on_datagram(self, data: bytes, host: str) -> None:
        """A datagram from ``host`` on the beacon port: a valid beacon goes to ``on_origin``, anything else is
        counted and logged."""
        self.received += 1
        try:
            origin = self._decode(data, self.membership)
        except MessageError as exc:
            self.reject(f"datagram from {host}", str(exc))
            return
        via = "supernode" if host in self.unicast_hosts else "broadcast" if self._on_lan(host) else "unicast"
        if via == "broadcast" and not origin.direct:
            self._heard.add(origin.id)
        self._on_origin(origin, via)

    def pace(self, heartbeat_s: float) -> float:
        """The gap to our next broadcast beacon, called once per beacon, before ``datagram()``: one heartbeat
        while the LAN is small, else long enough that the beacons of every daemon heard in the last two gaps,
        ours included, come to ``lan_beacons_per_s`` (at most ``MAX_PACED_S``). The beacon announces it, so
        its receivers know how long its silence may last."""
        self.hears = len(self._heard | self._heard_before)
        crowd = self.hears + 1
        self._heard_before, self._heard = self._heard, set()
        gap = min(MAX_PACED_S, crowd / self.lan_beacons_per_s) if self.lan_beacons_per_s > 0 else 0.0
        self.every = round(gap, 3) if gap > heartbeat_s else 0.0
        return self.every or heartbeat_s
