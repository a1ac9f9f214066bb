"""Peers, as the daemon sees them: HELLO exchange, heartbeats, liveness, incarnations, and packets sent with custody.

- Discovery (any of ``discovery``'s ways, or a static peer list) reports origins; an unknown origin,
  or one whose seeds digest changed, gets a HELLO asking for one back. HELLOs carry the sender's seeds
  and the peers it knows, so what one daemon learns (e.g. from a unicast beacon only it heard) spreads.
- Every origin carries its node's *incarnation* (see ``messages``). A node id heard with a newer one is a
  restarted peer: what its predecessor had not acknowledged is re-routed at once, its link is closed (with
  whatever was queued on it) and a new one opened to the new endpoint before anything else is sent. News of
  an older incarnation (a cached mDNS record, a late BYE) is ignored.
- Any message from a peer, or its broadcast beacon, counts as hearing from it. Every ``heartbeat_s`` a
  peer gets a PING only when it needs one: when we do not hear its beacons (the PING then says ``echo``,
  asking it to ping us back, since it has no other way to show us it lives), when it asked us so, or
  when our load changed or is not zero (routing reads it). Peers that hear each other's beacons, as on
  a LAN, thus exchange no PINGs while idle: N daemons send N beacons per heartbeat, not N^2 PINGs.
  A silent peer turns evasive (no new packets go to it, and the packets it has not acknowledged are
  re-routed to other replicas), then expires (its seeds leave the automaton). A BYE removes it at once.
- A packet sent to a peer is addressed to one seed and stays in that peer's ``InFlight`` table until the
  peer ACKs it, which it does once the packet is safe (see ``custody``: its seed finished and what it made
  is acknowledged downstream or durable). Unanswered after a timeout paced by the observed ACK times, the
  peer is asked about it (a QUERY, ids only, one message for every packet due): the answer is ACK (done: the
  first ACK was lost), HELD (still working on it) or unknown (never arrived: the packet is sent again). So a
  lost ACK or packet costs one more round trip, never a stuck window. A packet the peer does not answer
  for ``UNANSWERED_MAX`` times goes to another replica where one has room.
- The number of packets in flight to a replica, over its workers, is that replica's load for routing,
  and its flow-control window: at most ``CREDIT_PER_WORKER`` unacknowledged packets per worker of the
  replica. A replica at its window takes nothing more until ACKs come back (the router keeps the packets
  waiting for that seed and ``kick``s them on as ACKs arrive), so a fast sender never buries a slow one.

Membership (see ``membership``): in a keyed network an origin heard by discovery counts only with a valid
certificate for its key, the first key proven for a node id holds it (another is refused and logged), a beacon
not newer than the last one of the same daemon run is a replay, and a message on the inbox counts only when the
CurveZMQ key that sent it is bound to the node id it claims; a key joins with a HELLO carrying its certificate.

The mesh reads time from the ``clock`` and sets timers through the ``Scheduler`` it is given (the event
loop in the daemon), and sends through ``Links`` (the transport): tests drive it with fakes of both.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from . import messages
from .automaton import Automaton, SeedInfo
from .custody import UNANSWERED_MAX, Custody, Flight, InFlight, Key, Received, hold
from .errors import PacketError, TagError
from .membership import Membership
from .messages import ACK, BYE, HELLO, MAX_KEYS_PER_QUERY, PING, QUERY, Message, MessageError, Origin
from .packet import Packet, encode
from .peers import Liveness, PeerTable
from .router import Remotes
from .runner import SeedRunner

log = logging.getLogger(__name__)

HELLO_RETRY_S = 1.0
#: Ways of finding peers that every daemon on the LAN shares: a peer found this way needs no gossip.
LAN_WIDE = frozenset({"broadcast", "mdns", "local"})
#: Ways of hearing of a node that carry no proof of membership, even in a keyed network (mDNS records are not
#: sealed: zeroconf answers anyone who asks, and anyone can answer).
UNSEALED = frozenset({"mdns"})
MAX_INFLIGHT_PER_PEER = 50_000
#: A peer acknowledges a packet only once what it made is safe further on (see ``custody``), so the window must
#: cover the whole rest of the chain's round trip: 1000 held back a 4-daemon chain (bench/chain.py, 0.29-0.34
#: of raw; 2000: 0.37, 4000: 0.35-0.41, in one sitting).
CREDIT_PER_WORKER = 2000
#: A peer whose broadcast beacon came within this many heartbeats needs no PING for liveness: a beacon
#: can come just after our heartbeat, and one lost datagram should cost a PING, not an evasive peer.
BEACON_FRESH_HEARTBEATS = 2
#: How often retransmission timers are looked at while anything is in flight (none are set when idle).
RETRANSMIT_TICK_S = 0.05
#: Every this many heartbeats a node that knows peers its LAN may not hear (found by a unicast beacon, a static
#: address or gossip) tells every peer what it knows again: two of them that lost each other (a long partition
#: across subnets) then find each other again even where nobody is new to the one in the middle.
GOSSIP_HEARTBEATS = 10
#: An origin we said HELLO to and never heard from again is forgotten (its link closed) after this long.
HELLO_GIVE_UP_S = 10.0
#: Origins at most that we greet without having heard back from: news of more is ignored (and counted), so a
#: flood of made-up origins cannot make us open links without end.
MAX_UNANSWERED_ORIGINS = 256

Learn = Callable[[str, str, list[SeedInfo], str], bool]
#: ``report(what, error)``: a timer callback crashed (the daemon's supervisor logs and counts it).
ReportError = Callable[[str, BaseException], None]


def log_error(what: str, error: BaseException) -> None:
    """The default ``ReportError`` for a mesh used on its own: log the crash with its traceback."""
    log.error("%s crashed", what, exc_info=error)


class Timer(Protocol):
    """A scheduled call that can be called off (asyncio's ``TimerHandle``)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs callbacks soon or later (the event loop)."""

    def call_soon(self, callback: Callable[[], object]) -> object: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer: ...


class Links(Protocol):
    """The transport's side of the mesh: one outbound link per peer."""

    @property
    def links(self) -> Mapping[str, object]: ...

    def connect(self, node: str, endpoint: str) -> None: ...

    def disconnect(self, node: str) -> list[list[bytes]]: ...

    def send(self, node: str, frames: list[bytes]) -> bool: ...

    def send_packet(self, node: str, frames: list[bytes]) -> bool: ...

    def send_control(self, node: str, frames: list[bytes]) -> bool: ...


class Routing(Protocol):
    """The router, as the mesh uses it: packets from peers go in, packets peers did not take go round again."""

    automaton: Automaton

    def route(self, packet: Packet) -> None: ...

    def deliver_to(self, seed: str, packet: Packet, exclude: str = "") -> None: ...

    def local_room(self, seed: str) -> SeedRunner | None: ...

    def submit_local(self, runner: SeedRunner, packet: Packet, now: bool = False) -> None: ...

    def replan(self, force: bool = False) -> None: ...

    def kick(self, seed: str) -> None: ...

    def fail(self, packet: Packet, kind: str, reason: str, detail: str = "", seed: str = "") -> None: ...


@dataclass
class Remote:
    """What this node knows of one other node beyond liveness and seeds (``peers.Peer``), for one incarnation."""

    node: str
    inc: int = 0
    origin: Origin | None = None
    found_via: str = ""
    workers: dict[str, int] = field(default_factory=dict)  # its seeds' worker counts, from its HELLO
    reported: dict[str, float] = field(default_factory=dict)  # its seeds' load, from its PINGs
    done_reported: dict[str, int] = field(default_factory=dict)  # its seeds' counts, from its PINGs
    hello_sent: float = -1e9
    since: float = 0.0  # when this node first heard of it
    beacon_seq: tuple[int, int] = (0, 0)  # (incarnation, seq) of its newest beacon: older ones are replays
    beacon_at: float = -1e9  # when its beacon (broadcast or direct) was last heard
    broadcast_at: float = -1e9  # when its broadcast beacon was last heard
    direct_at: float = -1e9  # when it last sent a beacon to us alone: it does not hear our broadcasts
    echo_at: float = -1e9  # when it last asked for our PINGs
    load_sent: dict[str, float] = field(default_factory=dict)  # the non-zero load it last got from us
    done_sent: dict[str, int] = field(default_factory=dict)  # the counts it last got from us
    inflight: InFlight = field(default_factory=InFlight)


class Mesh:
    """The peer protocol of one daemon; lives on its event loop."""

    def __init__(
        self,
        *,
        node_id: str,
        host: str,
        me: Callable[[], Origin],
        local_seeds: Callable[[], list[dict[str, Any]]],
        local_load: Callable[[], dict[str, float]],
        transport: Links,
        router: Callable[[Remotes], Routing],
        peers: PeerTable,
        learn: Learn,
        forget: Callable[[str], None],
        heartbeat_s: float,
        scheduler: Scheduler,
        clock: Callable[[], float] = time.monotonic,
        static_peers: tuple[str, ...] = (),
        local_done: Callable[[], dict[str, int]] = dict,
        beacon_to: Callable[[str], None] | None = None,
        membership: Membership | None = None,
        report: ReportError = log_error,
    ) -> None:
        """``router``: makes the router that sends to peers through this mesh (the two call each other, so the mesh
        builds it: neither is ever half-wired); ``local_done``: packets each local seed has handled so far (sent in
        PINGs, for network-wide rates); ``beacon_to(address)``: send one UDP beacon to a host (to peers that do not
        hear our broadcasts); ``report(what, error)``: a timer callback crashed (logged and counted; the timer is
        armed again all the same, so heartbeats and retransmits never stop silently)."""
        self.node_id = node_id
        self.host = host
        self.me = me
        self.local_seeds = local_seeds
        self.local_load = local_load
        self.local_done = local_done
        self.transport = transport
        self.peers = peers
        self.learn = learn
        self.forget = forget
        self.heartbeat_s = heartbeat_s
        self.scheduler = scheduler
        self.clock = clock
        self.static_peers = static_peers
        self.beacon_to = beacon_to
        self.membership = membership
        self.report = report
        self.keyed = membership is not None and membership.keyed
        self.remotes: dict[str, Remote] = {}
        self.received = Received()
        self._announce_pending = False
        self._acks: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
        self._ack_flush_scheduled = False
        self._beat: Timer | None = None
        self._beats = 0
        self._tick: Timer | None = None
        self._stopped = False
        #: False once the daemon stops: packets from peers are left with their senders (who still hold them).
        self.accepting = True
        self._waiters: dict[Key, set[str]] = {}  # other senders of a packet held here, answered when it is safe
        self.counters: Counter[str] = Counter()
        self._rejects_logged: set[str] = set()
        self.router = router(self)  # last: the router may ask this mesh about peers at once

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start heartbeats (and hellos to static peers)."""
        self._beat = self.scheduler.call_later(0.0, self._heartbeat)

    def stop(self) -> None:
        """Stop the timers, send the ACKs that are due, and say goodbye to every peer."""
        self._stopped = True
        for timer in (self._beat, self._tick):
            if timer is not None:
                timer.cancel()
        self._flush_acks()
        bye = messages.encode(BYE, self.me())
        for node in list(self.peers.peers):
            self.transport.send_control(node, bye)

    def take_inflight(self) -> list[Packet]:
        """Remove and return every packet no peer has acknowledged yet (a clean stop saves them).

        Each stays held (see ``custody``) until the caller lets go of it, once it is safe on disk.
        """
        out = [f.packet for r in self.remotes.values() for f in r.inflight.take_all()]
        return out

    def inflight_counts(self) -> dict[str, int]:
        """Unacknowledged packets per peer."""
        return {n: len(r.inflight) for n, r in self.remotes.items() if len(r.inflight)}

    # -- discovery -------------------------------------------------------------------------------

    def on_origin(self, origin: Origin, via: str) -> None:
        """A discovery mechanism heard of ``origin``."""
        if origin.id == self.node_id:
            self._same_id(origin, via)
            return
        if self.keyed and not self._certified(origin, f"{via} news of {origin.id}"):
            return
        if self.keyed and via in UNSEALED:
            # Anyone can replay a member's record (its key and certificate are public) with another endpoint or
            # incarnation: it only tells of a member we do not know yet, whom we greet over CurveZMQ, which only
            # the key's holder can answer. It never re-points, restarts or revives one we know.
            if origin.id in self.remotes or origin.id in self.peers.peers:
                self.counters["unsealed_news_ignored"] += 1
                return
            origin = replace(origin, inc=0, bye=False)
        if origin.seq:
            remote = self.remotes.get(origin.id)
            if remote is not None and (origin.inc, origin.seq) <= remote.beacon_seq:
                self.counters["replayed"] += 1
                return
        if self._stale(origin):
            return
        if origin.seq:
            self._remote(origin.id, origin.inc).beacon_seq = (origin.inc, origin.seq)
        if origin.bye:
            self._drop(origin.id, "said goodbye")
            return
        peer = self.peers.peers.get(origin.id)
        if peer is not None and origin.digest and peer.seeds_digest == origin.digest:
            self._heard(origin.id, "direct" if origin.direct else via)
            return
        if origin.id not in self.remotes and self._unanswered() >= MAX_UNANSWERED_ORIGINS:
            self.counters["origins_ignored"] += 1
            return
        self._send_hello(origin, reply=True, via=via)

    def _unanswered(self) -> int:
        """Origins greeted that are not peers (yet)."""
        return len(self.remotes) - sum(1 for n in self.remotes if n in self.peers.peers)

    def _give_up_on_silent_origins(self, now: float) -> None:
        """Close the links to origins that never answered our HELLO (made up, gone, or not for us)."""
        for node, remote in list(self.remotes.items()):
            if node not in self.peers.peers and not len(remote.inflight) and now - remote.hello_sent > HELLO_GIVE_UP_S:
                del self.remotes[node]
                self.transport.disconnect(node)
                self.counters["origins_given_up"] += 1

    def _certified(self, origin: Origin, what: str) -> bool:
        """In a keyed network: True when ``origin`` carries a valid certificate for its key and that key holds its
        id here (the first key proven for an id holds it for this daemon's life)."""
        assert self.membership is not None
        if not self.membership.valid_cert(origin.id, origin.pk, origin.cert):
            self._reject(what, "no valid certificate for its key (not a member of this network)")
            return False
        if not self.membership.bind(origin.id, origin.pk):
            self._reject(what, f"node id {origin.id} is held by another key: refused (an impostor, or a new key)")
            return False
        return True

    def member(self, sender: str) -> str | None:
        """The node id bound to CurveZMQ key ``sender`` (None: not a member we know). Open network: None."""
        return self.membership.holders.get(sender) if self.membership is not None else None

    def _sent_by_member(self, msg: Message, sender: str) -> bool:
        """In a keyed network: True when ``sender`` (the key the message came with) holds the id it claims; a HELLO
        may bind its key by its certificate."""
        holder = self.member(sender)
        if holder == msg.origin.id:
            return True
        what = f"{msg.kind.decode()} claiming {msg.origin.id}"
        if holder is None and msg.kind == HELLO and msg.origin.pk == sender:
            return self._certified(msg.origin, what)
        self.counters["not_members"] += 1
        self._reject(what, "sent with a key that does not hold that id" if holder else "sent by a key of no member")
        return False

    def _same_id(self, origin: Origin, via: str) -> None:
        me = self.me()
        ours = origin.inc == me.inc if origin.inc else (origin.tcp, origin.ipc) == (me.tcp, me.ipc)
        if ours or "same-id" in self._rejects_logged:
            return  # our own beacon heard back, or gossip about us
        self._rejects_logged.add("same-id")
        log.error(
            "another node uses this node's id %s (at %s, found by %s): give each daemon its own "
            "working directory or --node-id",
            origin.id,
            origin.tcp or origin.ipc,
            via,
        )

    def _stale(self, origin: Origin) -> bool:
        """True when ``origin`` speaks for an older incarnation than the one we know (ignore it). A newer one
        means the peer restarted: the old one is dropped (its unacknowledged packets re-routed) first."""
        remote = self.remotes.get(origin.id)
        if remote is None or not origin.inc:
            return False
        if not remote.inc:
            remote.inc = origin.inc
            return False
        if origin.inc < remote.inc:
            self.counters["stale"] += 1
            return True
        if origin.inc > remote.inc:
            self.counters["restarts"] += 1
            self._drop(origin.id, "restarted (a new incarnation)", known=True)
        return False

    def _remote(self, node: str, inc: int = 0) -> Remote:
        remote = self.remotes.get(node)
        if remote is None:
            remote = self.remotes[node] = Remote(node, inc, since=self.clock())
        return remote

    def _send_hello(self, origin: Origin, reply: bool, via: str = "", force: bool = False) -> None:
        endpoint = origin.endpoint_for(self.host)
        if endpoint is None:
            return
        remote = self._remote(origin.id, origin.inc)
        now = self.clock()
        if not force and now - remote.hello_sent < HELLO_RETRY_S:
            return
        remote.hello_sent = now
        if via and not remote.found_via:
            remote.found_via = via
        if remote.origin is None or origin.inc >= remote.origin.inc:
            remote.origin = origin
        self.transport.connect(origin.id, endpoint)
        # Through the backlog: a new link is not connected yet, and mDNS reports a peer only once.
        self.transport.send(origin.id, self._hello_frames(reply, remote.found_via))
        if via and origin.id not in self.peers.peers:
            log.debug("heard of %s by %s; said hello at %s", origin.id, via, endpoint)

    def _hello_frames(self, reply: bool, found_by: str = "") -> list[bytes]:
        known = [
            [p.node_id, *self._addresses(p.node_id)] for p in self.peers.peers.values() if p.state is Liveness.ALIVE
        ]
        return messages.encode(HELLO, self.me(), seeds=self.local_seeds(), peers=known, reply=reply, found_by=found_by)

    def _addresses(self, node: str) -> list[Any]:
        remote = self.remotes.get(node)
        o = remote.origin if remote is not None else None
        if o is None:
            return [None, None, ""]
        return [o.tcp, o.ipc, o.host, o.pk, o.cert] if self.keyed else [o.tcp, o.ipc, o.host]

    def announce(self) -> None:
        """Our seeds changed: tell every peer at once (beacons carry the new digest too)."""
        frames = self._hello_frames(reply=False)
        for node in list(self.peers.peers):
            self.transport.send_control(node, frames)

    # -- messages --------------------------------------------------------------------------------

    def handle(self, frames: list[bytes], sender: str = "") -> None:
        """A HELLO, PING, BYE, ACK or QUERY from the inbox; ``sender``: the CurveZMQ key it came with (keyed)."""
        try:
            msg = messages.decode(frames)
        except MessageError as exc:
            self._reject("peer message", str(exc))
            return
        if msg.origin.id == self.node_id:
            return
        if self.keyed and not self._sent_by_member(msg, sender):
            return
        if self._stale(msg.origin):
            return
        try:
            if msg.kind == HELLO:
                self._on_hello(msg)
            elif msg.kind == PING:
                self._on_ping(msg)
            elif msg.kind == BYE:
                self._drop(msg.origin.id, "said goodbye")
            elif msg.kind == ACK:
                self._on_ack(msg)
            elif msg.kind == QUERY:
                self._on_query(msg)
        except (MessageError, TagError, KeyError, TypeError, ValueError) as exc:
            self._reject(f"{msg.kind.decode()} from {msg.origin.id}", str(exc))

    def _on_hello(self, msg: Message) -> None:
        o = msg.origin
        endpoint = o.endpoint_for(self.host)
        if endpoint is None:
            raise MessageError("no endpoint this node can reach")
        summaries = msg.body["seeds"]
        seeds = [SeedInfo.from_summary(s) for s in summaries]
        new = o.id not in self.peers.peers
        remote = self._remote(o.id, o.inc)
        remote.origin = o
        remote.inc = remote.inc or o.inc
        remote.workers = {str(s["name"]): max(1, int(s.get("workers", 1))) for s in summaries}
        # How we first heard of it (a beacon, mDNS, gossip, a static address), else its own HELLO.
        self.learn(o.id, endpoint, seeds, remote.found_via or "hello")
        peer = self.peers.peers[o.id]
        peer.seeds_digest = o.digest
        peer.addresses = [a for a in (o.tcp, o.ipc) if a]
        if msg.body.get("reply"):
            self._send_hello(o, reply=False, force=True)
        for entry in msg.body.get("peers", []):
            if isinstance(entry, list) and len(entry) in (4, 6) and entry[0] not in self.peers.peers:
                try:
                    gossip = messages.origin_from(
                        {
                            "v": messages.VERSION,
                            "id": entry[0],
                            "tcp": entry[1],
                            "ipc": entry[2],
                            "host": entry[3] or "",
                            "dg": "",
                            "pk": entry[4] if len(entry) == 6 else "",
                            "cert": entry[5] if len(entry) == 6 else "",
                        }
                    )
                except MessageError:
                    continue
                self.on_origin(gossip, "gossip")
        found_by = {remote.found_via, str(msg.body.get("found_by", ""))}
        if new and not found_by & LAN_WIDE:
            # Pass on what we learnt: the others may not hear this peer themselves (a unicast beacon, a
            # static peer). Once per heartbeat at most, so that a crowd arriving at once is one message each.
            self._announce_pending = True

    def _on_ping(self, msg: Message) -> None:
        o = msg.origin
        peer = self.peers.peers.get(o.id)
        if peer is None:
            self._send_hello(o, reply=True, via="ping")
            return
        remote = self._remote(o.id, o.inc)
        self._heard(o.id, "ping")
        # dict(): a body that is not an object raises TypeError/ValueError, which ``handle`` reports as a reject.
        remote.reported = {str(k): float(v) for k, v in dict(msg.body.get("load", {})).items()}
        peer.load = remote.reported
        if "done" in msg.body:
            remote.done_reported = {str(k): int(v) for k, v in dict(msg.body["done"]).items()}
        if msg.body.get("echo"):
            now = self.clock()
            newly = now - remote.echo_at > self._fresh_s
            remote.echo_at = now
            if newly:  # answer at once: it stopped hearing our beacons and may soon take us for evasive
                self._ping(o.id, now, self.local_load(), {})
        if peer.seeds_digest != o.digest:
            self._send_hello(o, reply=True)

    def _heard(self, node: str, via: str) -> None:
        """Any sign of life from a known peer; one that comes back gets the packets that waited for it."""
        if node not in self.peers.peers:
            return
        if via in LAN_WIDE:
            remote = self._remote(node)
            if remote.found_via not in LAN_WIDE:
                # First heard of by gossip (or a PING), now by the LAN itself: no need to gossip about it every
                # GOSSIP_HEARTBEATS (a HELLO with our whole peer list to every peer: the bulk of idle traffic).
                remote.found_via = via
        if via in ("broadcast", "direct"):
            remote = self._remote(node)
            remote.beacon_at = self.clock()
            if via == "direct":
                remote.direct_at = remote.beacon_at
            else:
                remote.broadcast_at = remote.beacon_at
        _, revived = self.peers.heard(node, "", via)
        if revived:
            log.info("Peer %s is back", node)
            self.router.replan(force=True)

    def _on_ack(self, msg: Message) -> None:
        remote = self.remotes.get(msg.origin.id)
        self._heard(msg.origin.id, "ack")
        if remote is None:
            return
        now = self.clock()
        freed: set[str] = set()
        for pid, seed in msg.body.get("acks", []):
            flight = remote.inflight.ack((pid, seed), now)
            if flight is not None:
                hold(flight.packet, -1)
                freed.add(seed)
        for pid, seed in msg.body.get("held", []):
            remote.inflight.held((pid, seed), now)
        for pid, seed in msg.body.get("unknown", []):
            flight = remote.inflight.get((pid, seed))
            if flight is not None:
                self._send_again(remote, flight, now)
        for seed in freed:
            self.router.kick(seed)

    def _send_again(self, remote: Remote, flight: Flight, now: float) -> None:
        """Send a packet the peer says it never got."""
        try:
            frames = encode(flight.packet, to=flight.seed, sender=self.node_id)
        except PacketError:  # it was encoded once already
            return
        if self.transport.send_packet(remote.node, frames):
            remote.inflight.resent(flight, now)
            self.counters["resent"] += 1

    def _on_query(self, msg: Message) -> None:
        """A peer asks what became of packets it sent us: done, held, or never seen."""
        sender = msg.origin.id
        self._heard(sender, "query")
        acks: list[list[str]] = []
        held: list[list[str]] = []
        unknown: list[list[str]] = []
        for pid, seed in msg.body.get("ask", []):
            key = (pid, seed)
            if self.received.is_held(key):
                self._waiters.setdefault(key, set()).add(sender)
                held.append([pid, seed])
            elif self.received.seen(key):
                acks.append([pid, seed])
            else:
                unknown.append([pid, seed])
        self.counters["queries_answered"] += 1
        self.transport.send(sender, messages.encode(ACK, self.me(), acks=acks, held=held, unknown=unknown))

    def _reject(self, what: str, why: str) -> None:
        self.counters["rejected"] += 1
        key = why.split(":")[0]
        (log.warning if key not in self._rejects_logged else log.debug)("ignored %s: %s", what, why)
        self._rejects_logged.add(key)

    # -- packets out -----------------------------------------------------------------------------

    def send_packet(self, node: str, seed: str, packet: Packet) -> bool:
        """Send ``packet`` for ``seed`` to ``node`` and hold it until acknowledged; False if that cannot be now."""
        if not self.has_room(node, seed):
            return False
        try:
            frames = encode(packet, to=seed, sender=self.node_id)
        except PacketError as exc:
            self.router.fail(packet, "bad-data", str(exc))
            return True  # handled: kept with its reason
        if not self.transport.send_packet(node, frames):
            return False
        if self._remote(node).inflight.add(packet, seed, self.clock()):
            hold(packet, 1)  # in our custody until the peer acknowledges it
        self.counters["sent"] += 1
        self._arm_retransmit()
        return True

    def has_room(self, node: str, seed: str) -> bool:
        """True when ``node`` is alive and its replica of ``seed`` has room in its flow-control window."""
        peer = self.peers.peers.get(node)
        if peer is None or peer.state is not Liveness.ALIVE:
            return False
        remote = self._remote(node)
        inflight = remote.inflight
        if inflight.per_seed.get(seed, 0) >= CREDIT_PER_WORKER * remote.workers.get(seed, 1):
            return False
        return len(inflight) < MAX_INFLIGHT_PER_PEER

    def load_of(self, node: str, seed: str) -> float:
        """Queued packets per worker at ``node``'s replica of ``seed``, as far as this node knows."""
        remote = self.remotes.get(node)
        if remote is None:
            return 0.0
        ours = remote.inflight.per_seed.get(seed, 0)
        return max(ours / remote.workers.get(seed, 1), remote.reported.get(seed, 0.0))

    def _arm_retransmit(self) -> None:
        if self._tick is None and not self._stopped:
            self._tick = self.scheduler.call_later(RETRANSMIT_TICK_S, self._retransmit)

    def _retransmit(self) -> None:
        """The retransmit timer: a crash in one round is reported and the timer armed again."""
        self._tick = None
        try:
            busy = self.retransmit()
        except Exception as exc:  # noqa: BLE001 - unacknowledged packets must still be asked about later
            self.counters["retransmit_errors"] += 1
            self.report("mesh retransmit", exc)
            busy = True
        if busy:
            self._arm_retransmit()

    def retransmit(self) -> bool:
        """Ask peers about packets whose ACK is overdue; hand on those a peer never answers for. True while any
        packet is still in flight (the timer stays armed)."""
        now = self.clock()
        busy = False
        for node, remote in list(self.remotes.items()):
            if not len(remote.inflight):
                continue
            busy = True
            peer = self.peers.peers.get(node)
            if peer is None:
                continue
            ask: list[list[str]] = []
            for flight in remote.inflight.due(now):
                if flight.unanswered >= UNANSWERED_MAX and self._elsewhere(flight, node):
                    remote.inflight.remove(flight)
                    self.counters["rerouted"] += 1
                    self.router.deliver_to(flight.seed, flight.packet, exclude=node)
                    hold(flight.packet, -1)
                    continue
                remote.inflight.queried(flight, now)
                ask.append([flight.packet.id, flight.seed])
            for start in range(0, len(ask), MAX_KEYS_PER_QUERY):
                self.transport.send(
                    node, messages.encode(QUERY, self.me(), ask=ask[start : start + MAX_KEYS_PER_QUERY])
                )
                self.counters["queries"] += 1
        return busy

    def _elsewhere(self, flight: Flight, node: str, room: bool = True) -> bool:
        """True when another replica of the flight's seed could take it now (``room``), or is there at all."""
        nodes = self.router.automaton.consumers(flight.packet.tag).get(flight.seed, [])
        for other in nodes:
            if other == node:
                continue
            if other == self.node_id:
                if not room or self.router.local_room(flight.seed) is not None:
                    return True
            elif self.has_room(other, flight.seed) if room else self._alive(other):
                return True
        return False

    def _alive(self, node: str) -> bool:
        peer = self.peers.peers.get(node)
        return peer is not None and peer.state is Liveness.ALIVE

    def _reroute(self, node: str, evasive: bool = False) -> int:
        """Route again what ``node`` has not acknowledged. For an ``evasive`` peer (silent, perhaps only behind a
        lossy link) only what another replica can take: the rest would wait here for it and be sent again."""
        remote = self.remotes.get(node)
        if remote is None:
            return 0
        if evasive:
            flights = [f for f in list(remote.inflight.flights.values()) if self._elsewhere(f, node, room=False)]
            for flight in flights:
                remote.inflight.remove(flight)
        else:
            flights = remote.inflight.take_all()
        for flight in flights:
            self.router.deliver_to(flight.seed, flight.packet, exclude=node)
            hold(flight.packet, -1)  # after routing it again, so its custody never dips to 0 on the way
        self.counters["rerouted"] += len(flights)
        return len(flights)

    def _drop(self, node: str, why: str, known: bool | None = None) -> None:
        known = node in self.peers.peers if known is None else known
        moved = self._reroute(node)
        self.remotes.pop(node, None)
        if known:
            log.info("Peer %s %s%s", node, why, f"; re-routing {moved} unacknowledged packet(s)" if moved else "")
            self.forget(node)
        else:
            self.transport.disconnect(node)

    # -- packets in ------------------------------------------------------------------------------

    def on_packet(self, packet: Packet, to: str | None, sender: str | None, alone: bool = False) -> None:
        """A packet from a peer: answer a duplicate, else take custody of it and hand it to its seed.
        ``alone``: it came in a message of its own, so nothing else is waiting to be batched with it."""
        if not self.accepting:
            self.counters["refused_stopping"] += 1
            return
        key: Key = (packet.id, to or "")
        if self.received.seen(key):
            self.counters["duplicates"] += 1
            if sender and to:
                if self.received.is_held(key):
                    self._waiters.setdefault(key, set()).add(sender)
                    self._queue_answer(sender, key, held=True)
                else:
                    self._queue_answer(sender, key)
            return
        custody: Custody | None = None
        if sender and to:
            custody = packet.custody = Custody(lambda: self._released(sender, key))
            self.received.take(key, custody)
        else:
            self.received.note(key)
        self.counters["received"] += 1
        if sender:
            self._heard(sender, "packet")
        # Straight to the local seed only while it is in the automaton here (not disabled, not unloaded).
        runner = self.router.local_room(to) if to and self.router.automaton.runs_on(to, self.node_id) else None
        if runner is not None:
            self.router.submit_local(runner, packet, now=alone)
        elif to is not None and self.router.automaton.knows(to):
            self.router.deliver_to(to, packet)
        else:
            self.router.route(packet)
        if custody is not None:
            custody.settle()

    def _released(self, sender: str, key: Key) -> None:
        """Everything made of a packet from ``sender`` is safe: acknowledge it."""
        self.received.done(key)
        self._queue_answer(sender, key)
        for other in self._waiters.pop(key, ()):
            if other != sender:
                self._queue_answer(other, key)

    def _queue_answer(self, sender: str, key: Key, held: bool = False) -> None:
        acks, helds = self._acks.setdefault(sender, ([], []))
        (helds if held else acks).append([key[0], key[1]])
        if not self._ack_flush_scheduled:
            self._ack_flush_scheduled = True
            self.scheduler.call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_flush_scheduled = False
        answers, self._acks = self._acks, {}
        for sender, (acks, helds) in answers.items():
            body: dict[str, Any] = {"acks": acks}
            if helds:
                body["held"] = helds
            # Through the backlog (not dropped when the socket is full). Should it still not leave (no link
            # to a sender we forgot), the sender asks again after its timeout and gets the answer then.
            if not self.transport.send(sender, messages.encode(ACK, self.me(), **body)):
                self.counters["answers_unsent"] += 1

    # -- heartbeats ------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """The heartbeat timer: a crash in one heartbeat is reported and the next one still comes."""
        try:
            self.heartbeat()
        except Exception as exc:  # noqa: BLE001 - heartbeats must outlive a bug in one of them
            self.counters["heartbeat_errors"] += 1
            self.report("mesh heartbeat", exc)
        if not self._stopped:
            self._beat = self.scheduler.call_later(self.heartbeat_s, self._heartbeat)

    def heartbeat(self) -> None:
        """PING the peers that need it, update liveness (re-route for evasive peers, forget expired ones)."""
        self._beats += 1
        if not self._announce_pending and self._beats % GOSSIP_HEARTBEATS == 0:
            self._announce_pending = any(
                r.found_via and r.found_via not in LAN_WIDE for n, r in self.remotes.items() if n in self.peers.peers
            )
        if self._announce_pending:
            self._announce_pending = False
            self.announce()
        now, load, done = self.clock(), self.local_load(), self.local_done()
        frames: dict[bool, list[bytes]] = {}
        for node in list(self.peers.peers):
            self._ping(node, now, load, frames, only_if_needed=True, done=done)
        evasive, expired = self.peers.sweep()
        for peer in evasive:
            moved = self._reroute(peer.node_id, evasive=True)
            log.warning(
                "Peer %s is evasive (silent for %.1f s)%s",
                peer.node_id,
                self.peers.evasive_s,
                f"; re-routing {moved} unacknowledged packet(s)" if moved else "",
            )
        for peer in expired:
            self._drop(peer.node_id, f"expired (silent for {self.peers.expired_s:g} s)", known=True)
        self._give_up_on_silent_origins(now)
        self._hello_static_peers()

    @property
    def _fresh_s(self) -> float:
        return BEACON_FRESH_HEARTBEATS * self.heartbeat_s

    def _ping(
        self,
        node: str,
        now: float,
        load: dict[str, float],
        frames: dict[bool, list[bytes]],
        only_if_needed: bool = False,
        done: dict[str, int] | None = None,
    ) -> None:
        """PING ``node`` (with ``only_if_needed``: only when it needs one, see the module docstring);
        ``frames`` caches the two encodings of this heartbeat's PING. ``done`` (the local seeds' counts) goes
        along, and a change in it is reason enough to ping: peers' pages show the whole network's rates."""
        remote = self._remote(node)
        deaf = now - remote.beacon_at > self._fresh_s  # we need its PINGs to know it lives
        # (Not deaf in its first moments: its broadcasts may simply not have come yet.)
        settled = now - remote.since > self._fresh_s
        # Ask for its PINGs and direct beacons while we hear no beacon of it, and, once settled, for as long as
        # its broadcasts do not reach us: its direct beacons then keep us from taking it for gone, and asking only
        # while deaf would stop them, let us turn deaf, and ask again, every other heartbeat.
        echo = deaf or (settled and now - remote.broadcast_at > self._fresh_s)
        busy = {k: v for k, v in load.items() if v}
        done = self.local_done() if done is None else done
        asked = now - remote.echo_at <= self._fresh_s
        # It beacons us directly and we do not hear its broadcasts: another subnet, where it does not hear ours either.
        unheard = now - remote.direct_at <= self._fresh_s < now - remote.broadcast_at
        if (asked or (deaf and settled) or unheard) and only_if_needed:
            # It does not hear our broadcasts (it said so, or beacons us directly), or likely not (we do not hear
            # its own: another subnet). Its request for PINGs comes over TCP, which a lossy link can stall.
            self._beacon_directly(remote)
        if only_if_needed:
            moved = done != remote.done_sent
            if not (echo or asked or busy or moved or busy != remote.load_sent):
                return
        if echo not in frames:
            frames[echo] = messages.encode(PING, self.me(), load=load, echo=echo, done=done)
        if self.transport.send_control(node, frames[echo]):
            remote.load_sent = busy
            remote.done_sent = done
            self.counters["pings"] += 1

    def _beacon_directly(self, remote: Remote) -> None:
        """A UDP beacon to a peer that does not hear our broadcasts: unlike a PING it never waits behind
        a TCP stream stalled by packet loss, so the peer does not take us for gone while that lasts."""
        tcp = remote.origin.tcp if remote.origin is not None else None
        if self.beacon_to is None or not tcp:
            return
        host = tcp.removeprefix("tcp://").rsplit(":", 1)[0]
        if host:
            self.beacon_to(host)
            self.counters["direct_beacons"] += 1

    def done_of(self, node: str) -> dict[str, int]:
        """How many packets each of ``node``'s seeds has handled, as its last PING said ({} before one)."""
        remote = self.remotes.get(node)
        return remote.done_reported if remote is not None else {}

    def _hello_static_peers(self) -> None:
        known = {a for p in self.peers.peers.values() for a in [p.endpoint, *p.addresses]}
        for endpoint in self.static_peers:
            key = f"static:{endpoint}"
            if endpoint in known:
                self.transport.disconnect(key)
                continue
            if self.keyed:
                # Its key is not known yet, and CurveZMQ needs it to connect: a sealed beacon to its host asks it to
                # greet us (it learns our key from the beacon), and its HELLO brings its own.
                host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0]
                if self.beacon_to is not None and host:
                    self.beacon_to(host)
                continue
            if key not in self.transport.links:
                self.transport.connect(key, endpoint)
                self.transport.send(key, self._hello_frames(reply=True))
