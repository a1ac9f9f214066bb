"""Peers, as the daemon sees them: HELLO exchange, heartbeats, liveness, incarnations, and packets sent with custody.

- Discovery (any of ``discovery``'s ways, or a static peer list) reports origins; an unknown origin,
  or one whose seeds digest changed, gets a HELLO asking for one back. HELLOs carry the sender's seeds
  and the peers it knows, so what one daemon learns (e.g. from a unicast beacon only it heard) spreads.
  On a crowded LAN (past ``GREET_ALL_UP_TO`` peers) a broadcast beacon that carries its sender's seeds makes
  the sender a peer at once, with no HELLO and no link: both come with the first thing sent to it (the HELLO
  first, asking for one back, so that it can answer even if it does not hear our beacons).
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
  for ``UNANSWERED_MAX`` times goes to another replica where one has room, and the peer gets one packet at a
  time until it answers something again (``Peer.unanswering``: it is heard, but what we send does not reach it).
- The number of packets in flight to a replica, over its workers, is that replica's load for routing,
  and its flow-control window: at most ``CREDIT_PER_WORKER`` unacknowledged packets per worker of the
  replica. A replica at its window takes nothing more until ACKs come back (the router keeps the packets
  waiting for that seed and ``kick``s them on as ACKs arrive), so a fast sender never buries a slow one.

Membership (see ``membership``): in a keyed network an origin heard by discovery counts only with a valid
certificate for its key, the first key proven for a node id holds it (another is refused and logged), a beacon
not newer than the last one of the same daemon run is a replay, and a message on the inbox counts only when the
CurveZMQ key that sent it is bound to the node id it claims; a key joins with a HELLO carrying its certificate.

Sans-I/O (as h11 and h2 are cut): the mesh opens no socket, sets no timer and reads no clock. Every event method
takes the time (``on_origin``, ``handle``, ``on_packet``, ``on_timer``, ``on_unsent``, ``learn``, ``start``, and
``send_packet`` from the router) and leaves what is to be done in an outbox of ``actions`` (``Send``, ``Connect``,
``Disconnect``, ``SetTimer``, ``CancelTimer``, ``SendBeacon``), in order, taken by ``take_actions``; ``wake`` tells
the shell there are some. The daemon's ``driver`` does them on the transport and the loop, the simulator's on its
wire and virtual clock; a unit test feeds events with the times it likes and reads the actions. What the links say
back is an event too: a send they refused (``on_unsent``) is routed elsewhere (a packet sent for the first time) or
asked about at its timeout like one lost on the way (a packet sent again), and a refused PING is sent again at the
next heartbeat. The router (``Routing``) is called directly, and still reads a clock of its own.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from . import messages
from .actions import BROADCAST, SOON, Action, CancelTimer, Connect, Disconnect, Send, SendBeacon, SendKind, SetTimer
from .automaton import Automaton, SeedInfo
from .beacons import seeds_digest
from .custody import UNANSWERED_MAX, Custody, Flight, Key, Received, hold
from .errors import PacketError, TagError
from .membership import Membership
from .messages import ACK, BYE, HELLO, MAX_KEYS_PER_QUERY, PING, QUERY, Message, MessageError, Origin
from .packet import Packet, encode
from .peers import NEVER, Liveness, Peer, PeerTable
from .router import Remotes
from .runner import SeedRunner
from .ticks import Ticks

log = logging.getLogger(__name__)

HELLO_RETRY_S = 1.0
#: Ways of finding peers that every daemon on the LAN shares: a peer found this way needs no gossip.
LAN_WIDE = frozenset({"broadcast", "mdns", "local"})
#: Beacons that come every beat of their sender, as broadcasts do (a unicast one came from off our LAN, sent to
#: us as its supernode: it counts for liveness as a broadcast, not for gossip).
BEACONED = frozenset({"broadcast", "unicast"})
LOCAL_ONLY = frozenset({"local"})
NONE: frozenset[str] = frozenset()
#: Ways of hearing of a node that say it is not on our LAN (or may not be): it gets all our gossip.
ELSEWHERE = frozenset({"static", "supernode", "direct", "unicast"})
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
#: A peer that sent us a packet within this many heartbeats is told our load (see ``_ping``).
FEEDER_HEARTBEATS = 10
#: Our seeds' counts go to a peer on a PING of their own at most every this many heartbeats.
DONE_HEARTBEATS = 4
#: An origin we said HELLO to and never heard from again is forgotten (its link closed) after this long.
HELLO_GIVE_UP_S = 10.0
#: Peers this node greets as soon as it hears of them, whatever they run. Past them (a crowded LAN, where beacons
#: are paced too, see ``beacons``) a peer whose broadcast beacon carries its seeds is learnt from the beacon and
#: greeted only when this node first sends it something: N daemons greeting each other is N^2 HELLOs and links,
#: most between daemons that never exchange a packet (999,000 of a 1,000-node LAN's 1.41 M messages).
GREET_ALL_UP_TO = 10
#: A beacon with at least this seq comes from a daemon that has had two gaps between beacons to hear its LAN: if
#: it says it hears under half of it, it is greeted (see ``_deaf``).
DEAF_AFTER_SEQ = 3
#: Heartbeats look at quiet peers of a crowded LAN in this many slices at most, one slice a beat (see ``heartbeat``):
#: never more than half the heartbeats between two of their beacons (``BEACON_FRESH_HEARTBEATS`` x the stretch).
QUIET_SLICES_MAX = 16
#: Seed summaries learnt from beacons, kept parsed by digest (most of a LAN's daemons run the same few seeds).
BEACON_SEEDS_CACHE = 256
#: Origins at most that we greet without having heard back from: news of more is ignored (and counted), so a
#: flood of made-up origins cannot make us open links without end.
MAX_UNANSWERED_ORIGINS = 256

#: Names of the mesh's timers (see ``SetTimer``): heartbeats; the look at unacknowledged packets; the ACKs of a turn.
HEARTBEAT = "heartbeat"
RETRANSMIT = "retransmit"
ACKS = "acks"

#: ``report(what, error)``: a timer's work crashed (the daemon's supervisor logs and counts it).
ReportError = Callable[[str, BaseException], None]


def _nothing() -> None:
    return None


def log_error(what: str, error: BaseException) -> None:
    """The default ``ReportError`` for a mesh used on its own: log the crash with its traceback."""
    log.error("%s crashed", what, exc_info=error)


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
        router: Callable[[Remotes], Routing],
        peers: PeerTable,
        heartbeat_s: float,
        static_peers: tuple[str, ...] = (),
        local_done: Callable[[], dict[str, int]] = dict,
        membership: Membership | None = None,
        report: ReportError = log_error,
        wake: Callable[[], None] = _nothing,
        one_lan: bool = True,
        ticks: Ticks | None = None,
    ) -> None:
        """``router``: makes the router that sends to peers through this mesh (the two call each other, so the mesh
        builds it: neither is ever half-wired); ``local_done``: packets each local seed has handled so far (sent in
        PINGs, for network-wide rates); ``report(what, error)``: a timer's work crashed (logged and counted; the
        timer is set again all the same, so heartbeats and retransmits never stop silently); ``wake()``: the outbox
        got its first action (the shell takes them, now or soon; a unit test leaves it out and reads them);
        ``one_lan``: this node broadcasts on one network only, so a peer heard by broadcast (or mDNS) hears every
        other peer heard that way itself, and our HELLOs to it leave those out; ``ticks``: heartbeats fall on
        these (see ``ticks``), none: each one a heartbeat after the last (as the simulator's nodes do)."""
        self.node_id = node_id
        self.host = host
        self.me = me
        self.local_seeds = local_seeds
        self.local_load = local_load
        self.local_done = local_done
        self.peers = peers
        self.heartbeat_s = heartbeat_s
        self.static_peers = static_peers
        self.membership = membership
        self.report = report
        self.keyed = membership is not None and membership.keyed
        self.one_lan = one_lan
        self.ticks = ticks
        self._beat_at = 0.0  # the time of the last heartbeat
        # The nodes we sent packets to that may not have acknowledged them all (a dict: in order, so that a
        # simulated run is the same under one seed, whatever the process's hash seed).
        self._flying: dict[str, None] = {}
        #: The entries that neither we nor they heard of by broadcast: the only candidates for gossip to a peer
        #: on our LAN (see ``_hello_frames``), which a big LAN's HELLOs would scan every entry for otherwise.
        self._unbroadcast: dict[str, Peer] = {}
        #: The entries first heard of in a way their LAN does not share (gossip, a static address, a unicast
        #: beacon...): while one is a peer, every ``GOSSIP_HEARTBEATS`` we tell every peer what we know.
        self._far: dict[str, Peer] = {}
        self.received = Received()
        self._announce_pending = False
        self._acks: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
        self._beats = 0
        self._stopped = False
        self._wake = wake
        self._outbox: list[Action] = []
        self._timers: dict[str, float] = {}  # name -> when it is set to fire
        #: The links this node asked for (node -> endpoint): a static peer's link is opened once.
        self.links: dict[str, str] = {}
        #: False once the daemon stops: packets from peers are left with their senders (who still hold them).
        self.accepting = True
        self._waiters: dict[Key, set[str]] = {}  # other senders of a packet held here, answered when it is safe
        self.counters: Counter[str] = Counter()
        self._rejects_logged: set[str] = set()
        #: Peers the heartbeat looks at every beat (see ``heartbeat``): new ones, and those it last found needing
        #: a PING, or that sent us packets since; on a crowded LAN the others are looked at a slice per beat.
        self._active: dict[str, Peer] = {}
        #: digest -> the seed summaries said with it, parsed (their workers too); ``BEACON_SEEDS_CACHE`` at most
        self._beacon_seeds: dict[str, tuple[list[Any], dict[SeedInfo, int]]] = {}
        self.router = router(self)  # last: the router may ask this mesh about peers at once

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Start heartbeats (the first, with hellos to static peers, at once)."""
        self._set_timer(HEARTBEAT, now)

    def stop(self) -> None:
        """Stop the timers, send the ACKs that are due, and say goodbye to every peer."""
        self._stopped = True
        for name in list(self._timers):
            if name != ACKS:
                del self._timers[name]
                self._do(CancelTimer(name))
        self._flush_acks()
        bye = messages.encode(BYE, self.me())
        for node in list(self.peers.peers):
            if node in self.links:  # (one learnt from its beacon, never sent to, hears our goodbye beacon)
                self._do(Send(node, bye, SendKind.CONTROL))

    # -- the outbox and the shell's events -------------------------------------------------------

    def take_actions(self) -> list[Action]:
        """What is to be done now, in order (the outbox is emptied)."""
        actions = self._outbox
        if actions:
            self._outbox = []
        return actions

    def _do(self, action: Action) -> None:
        if type(action) is Send and action.node not in self.links:
            self._link(action.node)
        self._outbox.append(action)
        if len(self._outbox) == 1:
            self._wake()

    def _link(self, node: str) -> None:
        """Open the link to a peer learnt from its beacon, at the first thing we send it (see ``GREET_ALL_UP_TO``)."""
        peer = self.peers.entries.get(node)
        if peer is not None and peer.endpoint:
            self._connect(node, peer.endpoint)

    def _set_timer(self, name: str, at: float) -> None:
        self._timers[name] = at
        self._do(SetTimer(name, at))

    def on_timer(self, name: str, now: float) -> None:
        """Timer ``name`` fired. A crash in its work is reported and counted, and the timer set again all the same:
        heartbeats and questions about unacknowledged packets never stop silently."""
        if self._timers.pop(name, None) is None:
            return  # cancelled after the shell had fired it
        if name == ACKS:
            self._flush_acks()
        elif name == HEARTBEAT:
            try:
                self.heartbeat(now)
            except Exception as exc:  # noqa: BLE001 - heartbeats must outlive a bug in one of them
                self.counters["heartbeat_errors"] += 1
                self.report("mesh heartbeat", exc)
            if not self._stopped:
                beat = self.heartbeat_s
                self._set_timer(HEARTBEAT, self.ticks.after(now, beat) if self.ticks else now + beat)
        elif name == RETRANSMIT:
            try:
                busy = self.retransmit(now)
            except Exception as exc:  # noqa: BLE001 - unacknowledged packets must still be asked about later
                self.counters["retransmit_errors"] += 1
                self.report("mesh retransmit", exc)
                busy = True
            if busy:
                self._arm_retransmit(now)

    def on_unsent(self, send: Send, now: float) -> None:
        """The shell could not send ``send`` (no link, or the link's backlog is full). A packet sent for the first
        time goes to another replica or waits for its seed, as if the peer had had no room; a packet sent again
        stays in flight and is asked about at its timeout, like one lost on the way. A PING is sent again at the
        next heartbeat, so that the peer learns the load it carried."""
        self.counters["unsent"] += 1
        if send.kind is SendKind.PACKET:
            peer = self.peers.get(send.node)
            for key in send.keys:
                flight = peer.inflight.get(key) if peer is not None else None
                if peer is None or flight is None or flight.sends > 1 or flight.asked:
                    continue
                peer.inflight.remove(flight)
                self.counters["sent"] -= 1
                self.counters["unsent_packets"] += 1
                self.router.deliver_to(flight.seed, flight.packet, exclude=send.node)
                hold(flight.packet, -1)  # after routing it again, so its custody never dips to 0 on the way
            return
        kind = bytes(send.frames[0])
        if kind == PING:
            self.counters["pings"] -= 1
            peer = self.peers.get(send.node)
            if peer is not None:
                peer.ping_unsent = True
                self._active[send.node] = peer
        elif kind == ACK:
            self.counters["answers_unsent"] += 1

    def take_inflight(self) -> list[Packet]:
        """Remove and return every packet no peer has acknowledged yet (a clean stop saves them).

        Each stays held (see ``custody``) until the caller lets go of it, once it is safe on disk.
        """
        out = [f.packet for r in self.peers.entries.values() for f in r.inflight.take_all()]
        return out

    def inflight_counts(self) -> dict[str, int]:
        """Unacknowledged packets per peer."""
        return {n: len(r.inflight) for n, r in self.peers.entries.items() if len(r.inflight)}

    def rtt_estimates(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Per peer and seed, the smoothed time from send to ACK and the retransmission timeout, in seconds
        (only where an ACK was measured)."""
        return {
            n: {seed: (e.srtt, e.rto) for seed, e in r.inflight.rtt.items() if e.srtt}
            for n, r in self.peers.entries.items()
            if r.inflight.rtt
        }

    # -- discovery -------------------------------------------------------------------------------

    def on_origin(self, origin: Origin, via: str, now: float) -> None:
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
            if origin.id in self.peers.entries:
                self.counters["unsealed_news_ignored"] += 1
                return
            origin = replace(origin, inc=0, bye=False)
        if origin.seq:
            remote = self.peers.get(origin.id)
            if remote is not None and (origin.inc, origin.seq) <= remote.beacon_seq:
                self.counters["replayed"] += 1
                return
        if self._stale(origin):
            return
        if origin.seq:
            entry = self.peers.entry(origin.id, now, origin.inc)
            entry.beacon_seq = (origin.inc, origin.seq)
            # Heard even while it is only greeted: once its HELLO comes, it is not taken for one we cannot hear.
            if origin.direct:
                entry.beacon_at = entry.direct_at = now
            elif via in BEACONED:
                entry.beacon_at = entry.broadcast_at = now
            if not origin.direct:  # its broadcasts' pace: how long its silence may last
                # (All of a LAN's beacons are paced alike: new entries start with this one's pace.)
                self.peers.pace(entry, max(1.0, origin.every / self.heartbeat_s))
        if origin.bye:
            self._drop(origin.id, "said goodbye")
            return
        peer = self.peers.peer(origin.id)
        if peer is not None and origin.digest and peer.seeds_digest == origin.digest:
            self._heard(origin.id, "direct" if origin.direct else via, now)
            if not peer.handshaken and self._deaf(origin):
                self._send_hello(origin, now, reply=True)
            return
        if self._learnt_from_beacon(origin, via, now):
            return
        if origin.id not in self.peers.entries and self._unanswered() >= MAX_UNANSWERED_ORIGINS:
            self.counters["origins_ignored"] += 1
            return
        self._send_hello(origin, now, reply=True, via=via)

    def _learnt_from_beacon(self, origin: Origin, via: str, now: float) -> bool:
        """On a crowded LAN (``GREET_ALL_UP_TO``): take a peer's seeds from its broadcast beacon, without a HELLO
        or a link (both come when we first send it something); True when done. A peer we greeted, or that greeted
        us, is greeted again when its seeds change, as before; so is one whose beacon carries no seeds."""
        if origin.seeds is None or via != "broadcast" or origin.direct:
            return False
        peer = self.peers.get(origin.id)  # (its beacon made an entry already: a greeted one, for one new to us)
        if peer is not None and peer.handshaken:
            return False
        if (peer is None or not peer.known) and len(self.peers.entries) - (peer is not None) < GREET_ALL_UP_TO:
            return False
        if self._deaf(origin):
            return False
        endpoint = origin.endpoint_for(self.host)
        if endpoint is None:
            return False
        said, parsed = self._beacon_seeds.get(origin.digest, (None, None))
        if parsed is None or said != origin.seeds:  # (a digest is only what the beacon claims)
            try:
                if seeds_digest(origin.seeds) != origin.digest:
                    raise ValueError("they do not match its seeds digest")
                parsed = {SeedInfo.from_summary(s): max(1, int(s.get("workers", 1))) for s in origin.seeds}
            except (KeyError, TagError, TypeError, ValueError) as exc:
                self._reject(f"beacon of {origin.id}", f"its seeds: {exc}")
                return False
            if len(self._beacon_seeds) >= BEACON_SEEDS_CACHE:
                self._beacon_seeds.clear()
            self._beacon_seeds[origin.digest] = (origin.seeds, parsed)
        peer = self.peers.entry(origin.id, now, origin.inc)
        peer.found_via = peer.found_via or via
        workers = {info.name: n for info, n in parsed.items()}
        # (``_stale`` let it through: its incarnation is not older than the one we hold.)
        self._adopt(peer, origin, endpoint, list(parsed), workers, via, now, connect=False)
        self._index(peer)
        self.counters["learnt_from_beacons"] += 1
        return True

    def _adopt(
        self,
        peer: Peer,
        origin: Origin,
        endpoint: str,
        seeds: list[SeedInfo],
        workers: dict[str, int],
        via: str,
        now: float,
        connect: bool = True,
    ) -> None:
        """Take what ``origin`` says of itself (in its HELLO, or a beacon carrying its seeds) as what ``peer`` is
        now: where it is, what it runs, with how many workers."""
        peer.origin = origin
        peer.inc = peer.inc or origin.inc
        peer.workers = workers
        self.learn(origin.id, endpoint, seeds, via, now, connect)
        peer.seeds_digest = origin.digest
        peer.addresses = [a for a in (origin.tcp, origin.ipc) if a]

    def _deaf(self, origin: Origin) -> bool:
        """True when ``origin``'s beacon says it hears under half the daemons we know of, though it has beaconed long
        enough to have heard them (``DEAF_AFTER_SEQ``): inbound broadcasts blocked (a host firewall), or another
        subnet. It cannot learn its peers from their beacons: it is greeted, as every peer was before.

        What it hears is counted over its last two gaps between beacons, and a newcomer beacons every heartbeat
        until it hears a crowd: on a LAN whose beacons come every few heartbeats (paced, see ``beacons``) it has
        not heard them all yet, deaf or not. So it is judged once it has beaconed for ``DEAF_AFTER_SEQ`` of the
        LAN's beacon periods (its slowest peer's pace): greeting every newcomer from every daemon of a crowded LAN
        is what learning peers from beacons avoids."""
        if origin.seq < DEAF_AFTER_SEQ or not 0 <= origin.hears < len(self.peers.entries) // 2:
            return False
        pace = max((p.stretch for p in self.peers.entries.values()), default=1.0)  # (rare: a candidate only)
        return origin.seq >= DEAF_AFTER_SEQ * math.ceil(pace)

    def _unanswered(self) -> int:
        """Origins greeted that are not peers (yet)."""
        return self.peers.greeted

    def _give_up_on_silent_origins(self, now: float) -> None:
        """Close the links to origins that never answered our HELLO (made up, gone, or not for us)."""
        if not self.peers.greeted:
            return
        for node, remote in list(self.peers.entries.items()):
            if not remote.known and not len(remote.inflight) and now - remote.hello_sent > HELLO_GIVE_UP_S:
                self.peers.leave(node)
                self._unindex(node)
                self._disconnect(node)
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
        remote = self.peers.get(origin.id)
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

    def _send_hello(self, origin: Origin, now: float, reply: bool, via: str = "", force: bool = False) -> None:
        endpoint = origin.endpoint_for(self.host)
        if endpoint is None or self._stopped:  # (after our goodbye, a HELLO would make us a peer again)
            return
        remote = self.peers.entry(origin.id, now, origin.inc)
        if not force and now - remote.hello_sent < HELLO_RETRY_S:
            return
        remote.hello_sent = now
        if via and not remote.found_via:
            remote.found_via = via
            self._index(remote)
        if remote.origin is None or origin.inc >= remote.origin.inc:
            remote.origin = origin
        self._connect(origin.id, endpoint)
        # Through the backlog: a new link is not connected yet, and mDNS reports a peer only once.
        self._do(Send(origin.id, self._hello_frames(reply, remote.found_via, to=remote), SendKind.MESSAGE))
        if via and not remote.known:
            log.debug("heard of %s by %s; said hello at %s", origin.id, via, endpoint)

    def _hello_frames(self, reply: bool, found_by: str = "", to: Peer | None = None) -> list[bytes]:
        """Our HELLO, listing the peers alive (gossip) but those ``to`` hears of by itself (``_heard_alike``)."""
        alike = self._heard_alike(to)
        candidates = self._unbroadcast.values() if "broadcast" in alike else self.peers.entries.values()
        known = [
            [p.node_id, *self._addresses(p.node_id)]
            for p in candidates
            # (We heard of it that way, or it heard of us that way: either way, it is where ``to`` hears it.)
            if p.state is Liveness.ALIVE and p.found_via not in alike and p.found_us not in alike
        ]
        return messages.encode(HELLO, self.me(), seeds=self.local_seeds(), peers=known, reply=reply, found_by=found_by)

    def _index(self, peer: Peer) -> None:
        """Keep ``_unbroadcast`` and ``_far`` up to date after ``peer``'s ways of hearing changed."""
        node, current = peer.node_id, self.peers.entries.get(peer.node_id) is peer
        if "broadcast" in (peer.found_via, peer.found_us):
            self._unbroadcast.pop(node, None)
        elif current:
            self._unbroadcast[node] = peer
        if peer.found_via and peer.found_via not in LAN_WIDE and current:
            self._far[node] = peer
        else:
            self._far.pop(node, None)

    def _unindex(self, node: str) -> None:
        self._unbroadcast.pop(node, None)
        self._far.pop(node, None)

    def _heard_alike(self, to: Peer | None) -> frozenset[str]:
        """The ways of hearing of peers that ``to`` shares with us, so that gossip to it leaves out the peers we
        heard of those ways: listing them is N entries in each of N HELLOs, for each of N nodes, the bulk of a
        big LAN's discovery work. The host's cards when it is on our host; broadcast (or mDNS) when it is on our
        LAN (we heard it, or it heard us, that way) and we are on one network only; and, until it has been known
        long enough to tell, every LAN-wide way for a peer we know of by hearsay (gossip): most are on our LAN,
        and the periodic gossip (``GOSSIP_HEARTBEATS``) lists them all to one that turns out not to be."""
        if to is None:
            return NONE
        ways = {to.found_via, to.found_us}
        if "local" in ways:
            return LOCAL_ONLY
        if not self.one_lan:
            return NONE
        for way in ("broadcast", "mdns"):
            if way in ways:
                return frozenset({way})
        if ways & ELSEWHERE or to.direct_at > NEVER:
            return NONE
        settled = self._beat_at - to.since > self._fresh_s * self.peers.stretch
        return NONE if settled else LAN_WIDE

    def _addresses(self, node: str) -> list[Any]:
        remote = self.peers.get(node)
        o = remote.origin if remote is not None else None
        if o is None:
            return [None, None, ""]
        return [o.tcp, o.ipc, o.host, o.pk, o.cert] if self.keyed else [o.tcp, o.ipc, o.host]

    def announce(self, gossip: bool = False) -> None:
        """Our seeds changed (``gossip``: no, we learnt of peers the others may not hear): tell every peer at once
        (beacons carry the new digest too).

        Each gets a HELLO, but on a crowded LAN (``GREET_ALL_UP_TO``) a peer learnt from its beacon that we
        never sent anything: a HELLO would open a link to each of them (a thousand, on a LAN of a thousand).
        For a change of seeds they hear a beacon sent at once instead, out of its pace: it carries our new
        seeds, or, when they do not fit in it, makes them greet us. Gossip reaches them from the peers they
        greeted (each passes on what it learnt the same way)."""
        frames: dict[frozenset[str], list[bytes]] = {}  # by what the peer hears of by itself (``_heard_alike``)
        crowded = len(self.peers.entries) >= GREET_ALL_UP_TO
        by_beacon = 0
        for peer in [p for p in self.peers.entries.values() if p.known]:
            if crowded and self._hears_our_beacons_only(peer):
                by_beacon += 1
                continue
            alike = self._heard_alike(peer)
            if alike not in frames:
                frames[alike] = self._hello_frames(reply=False, to=peer)
            self._do(Send(peer.node_id, frames[alike], SendKind.CONTROL))
        if by_beacon and not gossip:
            self.counters["announced_by_beacon"] += by_beacon
            self._do(SendBeacon(BROADCAST))

    def _hears_our_beacons_only(self, peer: Peer) -> bool:
        """A peer learnt from its broadcast beacon, with no link to it and no HELLO either way: it knows of us
        from our beacons alone (see ``_learnt_from_beacon``)."""
        return peer.found_via == "broadcast" and peer.node_id not in self.links and not peer.handshaken

    # -- messages --------------------------------------------------------------------------------

    def handle(self, frames: list[bytes], sender: str, now: float) -> None:
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
                self._on_hello(msg, now)
            elif msg.kind == PING:
                self._on_ping(msg, now)
            elif msg.kind == BYE:
                self._drop(msg.origin.id, "said goodbye")
            elif msg.kind == ACK:
                self._on_ack(msg, now)
            elif msg.kind == QUERY:
                self._on_query(msg, now)
        except (MessageError, TagError, KeyError, TypeError, ValueError) as exc:
            self._reject(f"{msg.kind.decode()} from {msg.origin.id}", str(exc))

    def _on_hello(self, msg: Message, now: float) -> None:
        o = msg.origin
        endpoint = o.endpoint_for(self.host)
        if endpoint is None:
            raise MessageError("no endpoint this node can reach")
        summaries = msg.body["seeds"]
        seeds = [SeedInfo.from_summary(s) for s in summaries]
        peer = self.peers.entry(o.id, now, o.inc)
        new = not peer.known
        peer.hello_heard = True
        workers = {str(s["name"]): max(1, int(s.get("workers", 1))) for s in summaries}
        peer.found_us = peer.found_us or str(msg.body.get("found_by", ""))
        if msg.body.get("reply"):
            # Before its seeds are learnt: learning them sends it the packets that waited for them, and on the one
            # link our HELLO must come first, or it may route what it makes of them before it knows our seeds
            # (an output meant for one of ours went only to its other consumers).
            self._send_hello(o, now, reply=False, force=True)
        # How we first heard of it (a beacon, mDNS, gossip, a static address), else its own HELLO.
        self._adopt(peer, o, endpoint, seeds, workers, peer.found_via or "hello", now)
        self._index(peer)
        for entry in msg.body.get("peers", []):
            if isinstance(entry, list) and len(entry) in (4, 6) and self.peers.peer(entry[0]) is None:
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
                self.on_origin(gossip, "gossip", now)
        found_by = {peer.found_via, peer.found_us}
        if new and not found_by & LAN_WIDE:
            # Pass on what we learnt: the others may not hear this peer themselves (a unicast beacon, a
            # static peer). Once per heartbeat at most, so that a crowd arriving at once is one message each.
            self._announce_pending = True

    def _on_ping(self, msg: Message, now: float) -> None:
        o = msg.origin
        peer = self.peers.peer(o.id)
        if peer is None:
            self._send_hello(o, now, reply=True, via="ping")
            return
        remote = peer
        self._heard(o.id, "ping", now)
        # dict(): a body that is not an object raises TypeError/ValueError, which ``handle`` reports as a reject.
        peer.load = {str(k): float(v) for k, v in dict(msg.body.get("load", {})).items()}
        if "done" in msg.body:
            remote.done_reported = {str(k): int(v) for k, v in dict(msg.body["done"]).items()}
        if msg.body.get("echo"):
            newly = now - remote.echo_at > self._fresh_s
            remote.echo_at = now
            self._active[o.id] = remote
            if newly:  # answer at once: it stopped hearing our beacons and may soon take us for evasive
                self._ping(o.id, now, self.local_load(), {})
        if peer.seeds_digest != o.digest:
            self._send_hello(o, now, reply=True)

    def _heard(self, node: str, via: str, now: float) -> None:
        """Any sign of life from a known peer; one that comes back gets the packets that waited for it."""
        remote = self.peers.peer(node)
        if remote is None:
            return
        if via in LAN_WIDE and remote.found_via not in LAN_WIDE:
            # First heard of by gossip (or a PING), now by the LAN itself: no need to gossip about it every
            # GOSSIP_HEARTBEATS (a HELLO with our whole peer list to every peer: the bulk of idle traffic).
            remote.found_via = via
            self._index(remote)
        if via == "packet":
            remote.fed_at = now
            self._active[node] = remote  # it is told our load every heartbeat for a while (see ``_ping``)
        elif via in BEACONED:
            remote.beacon_at = remote.broadcast_at = now
        elif via == "direct":
            remote.beacon_at = remote.direct_at = now
        _, revived = self.peers.heard(node, "", via, now)
        if revived:
            log.info("Peer %s is back", node)
            self.router.replan(force=True)

    def _on_ack(self, msg: Message, now: float) -> None:
        remote = self.peers.get(msg.origin.id)
        self._heard(msg.origin.id, "ack", now)
        if remote is None:
            return
        if remote.unanswering:  # what we send reaches it again
            remote.unanswering = False
            log.info("Peer %s answers again", remote.node_id)
        freed: set[str] = set()
        for acked in remote.inflight.ack_all(msg.body.get("acks", []), now):
            hold(acked.packet, -1)
            freed.add(acked.seed)
        for pid, seed in msg.body.get("held", []):
            remote.inflight.held((pid, seed), now)
        for pid, seed in msg.body.get("unknown", []):
            flight = remote.inflight.get((pid, seed))
            if flight is not None:
                self._send_again(remote, flight, now)
        for seed in freed:
            self.router.kick(seed)

    def _send_again(self, remote: Peer, flight: Flight, now: float) -> None:
        """Send a packet the peer says it never got."""
        try:
            frames = encode(flight.packet, to=flight.seed, sender=self.node_id)
        except PacketError:  # it was encoded once already
            return
        remote.inflight.resent(flight, now)
        self.counters["resent"] += 1
        self._do(Send(remote.node_id, frames, SendKind.PACKET, ((flight.packet.id, flight.seed),)))

    def _on_query(self, msg: Message, now: float) -> None:
        """A peer asks what became of packets it sent us: done, held, or never seen."""
        sender = msg.origin.id
        self._heard(sender, "query", now)
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
        self._do(Send(sender, messages.encode(ACK, self.me(), acks=acks, held=held, unknown=unknown), SendKind.MESSAGE))

    def _reject(self, what: str, why: str) -> None:
        self.counters["rejected"] += 1
        key = why.split(":")[0]
        (log.warning if key not in self._rejects_logged else log.debug)("ignored %s: %s", what, why)
        self._rejects_logged.add(key)

    # -- packets out -----------------------------------------------------------------------------

    def send_packet(self, node: str, seed: str, packet: Packet, now: float) -> bool:
        """Send ``packet`` for ``seed`` to ``node`` and hold it until acknowledged; False when the peer has no room
        (see ``has_room``), or when the packet cannot be encoded (it is then failed, with the reason)."""
        if not self.has_room(node, seed):
            return False
        try:
            frames = encode(packet, to=seed, sender=self.node_id)
        except PacketError as exc:
            self.router.fail(packet, "bad-data", str(exc))
            return True  # handled: kept with its reason
        remote = self.peers.entries[node]  # there: has_room said so
        if not remote.handshaken and remote.origin is not None:
            # Learnt from its beacon: our HELLO goes first, on the same link, so that it knows where to answer
            # even when it does not hear our beacons, and its answer shows the data path works.
            self._send_hello(remote.origin, now, reply=True)
        if remote.inflight.add(packet, seed, now):
            hold(packet, 1)  # in our custody until the peer acknowledges it
        self._flying[node] = None
        self.counters["sent"] += 1
        if RETRANSMIT not in self._timers:
            self._arm_retransmit(now)
        # In flight before it goes: a shell that refuses it says so at once (``on_unsent``), which routes it again.
        self._do(Send(node, frames, SendKind.PACKET, ((packet.id, seed),)))
        return True

    def has_room(self, node: str, seed: str) -> bool:
        """True when ``node`` is alive and its replica of ``seed`` has room in its flow-control window."""
        peer = self.peers.entries.get(node)  # (not only greeted: a greeted node is not alive)
        if peer is None or peer.state is not Liveness.ALIVE:
            return False
        inflight = peer.inflight
        if inflight.per_seed.get(seed, 0) >= CREDIT_PER_WORKER * peer.workers.get(seed, 1):
            return False
        return len(inflight) < (1 if peer.unanswering else MAX_INFLIGHT_PER_PEER)

    def load_of(self, node: str, seed: str) -> float:
        """Queued packets per worker at ``node``'s replica of ``seed``, as far as this node knows."""
        remote = self.peers.get(node)
        if remote is None:
            return 0.0
        ours = remote.inflight.per_seed.get(seed, 0)
        return max(ours / remote.workers.get(seed, 1), remote.load.get(seed, 0.0))

    def _arm_retransmit(self, now: float) -> None:
        if RETRANSMIT not in self._timers and not self._stopped:
            self._set_timer(RETRANSMIT, now + RETRANSMIT_TICK_S)

    def retransmit(self, now: float) -> bool:
        """Ask peers about packets whose ACK is overdue; hand on those a peer never answers for. True while any
        packet is still in flight (the timer stays set)."""
        busy = False
        for node in list(self._flying):
            remote = self.peers.entries.get(node)
            if remote is None or not len(remote.inflight):
                del self._flying[node]
                continue
            busy = True
            if not remote.known:
                continue
            ask: list[list[str]] = []
            for flight in remote.inflight.due(now):
                if flight.unanswered >= UNANSWERED_MAX and self._elsewhere(flight, node):
                    remote.inflight.remove(flight)
                    self.counters["rerouted"] += 1
                    if not remote.unanswering:
                        remote.unanswering = True
                        log.warning(
                            "Peer %s answered nothing about packets sent to it (their copies go to other replicas);"
                            " one packet at a time goes to it until it answers (is its data port reachable from"
                            " here? pmk doctor checks)",
                            node,
                        )
                    self.router.deliver_to(flight.seed, flight.packet, exclude=node)
                    hold(flight.packet, -1)
                    continue
                remote.inflight.queried(flight, now)
                ask.append([flight.packet.id, flight.seed])
            for start in range(0, len(ask), MAX_KEYS_PER_QUERY):
                query = messages.encode(QUERY, self.me(), ask=ask[start : start + MAX_KEYS_PER_QUERY])
                self._do(Send(node, query, SendKind.MESSAGE))
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
        peer = self.peers.peer(node)
        return peer is not None and peer.state is Liveness.ALIVE

    def _reroute(self, node: str, evasive: bool = False) -> int:
        """Route again what ``node`` has not acknowledged. For an ``evasive`` peer (silent, perhaps only behind a
        lossy link) only what another replica can take: the rest would wait here for it and be sent again."""
        remote = self.peers.get(node)
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
        """Forget ``node``: what it has not acknowledged is routed again, its one entry goes, and with it (when it
        was a peer) its seeds; its link is closed."""
        known = self.peers.peer(node) is not None if known is None else known
        moved = self._reroute(node)
        self.peers.leave(node)
        self._unindex(node)
        self._active.pop(node, None)
        if known:
            log.info("Peer %s %s%s", node, why, f"; re-routing {moved} unacknowledged packet(s)" if moved else "")
            gone = self.router.automaton.remove_node(node)
            if gone:
                log.info(
                    "Peer %s left; its seeds are gone from the automaton: %s",
                    node,
                    ", ".join(gone),
                    extra={"peer": node},
                )
        self._disconnect(node)
        if known:
            self.router.replan()

    def learn(
        self, node: str, endpoint: str, seeds: list[SeedInfo], via: str, now: float, connect: bool = True
    ) -> bool:
        """Reach ``node`` at ``endpoint`` and route to its ``seeds`` (the one door for remote seeds); True when
        the automaton changed. ``connect=False``: its link opens at the first thing sent to it."""
        if node == self.node_id:
            return False
        if connect:
            self._connect(node, endpoint)
        peer, revived = self.peers.heard(node, endpoint, via, now)
        before = {s.name for s in peer.seeds}  # (what this door put in the automaton for it last time)
        peer.seeds = list(seeds)
        self._active[node] = peer
        automaton = self.router.automaton
        changed = automaton.sync_node(node, seeds)
        for info in seeds:
            if info.name not in before:
                log.info(
                    "Discovered new peer seed: %s at %s (node %s)",
                    info.name,
                    endpoint,
                    node,
                    extra={"peer": node, "seed": info.name},
                )
        if changed or revived:
            self.router.replan(force=revived)
        return changed

    def forget(self, node: str) -> None:
        """Stop routing to ``node`` (as when it expires): what it has not acknowledged is routed again."""
        if self.peers.get(node) is not None:
            self._drop(node, "forgotten", known=self.peers.peer(node) is not None)

    def _connect(self, node: str, endpoint: str) -> None:
        self.links[node] = endpoint
        self._do(Connect(node, endpoint))

    def _disconnect(self, node: str) -> None:
        self.links.pop(node, None)
        self._do(Disconnect(node))

    # -- packets in ------------------------------------------------------------------------------

    def on_packet(
        self, packet: Packet, to: str | None, sender: str | None, now: float, alone: bool = False, heard: bool = True
    ) -> None:
        """A packet from a peer: answer a duplicate, else take custody of it and hand it to its seed.
        ``alone``: it came in a message of its own, so nothing else is waiting to be batched with it; ``heard``:
        False when an earlier packet of the same message told already that ``sender`` is alive."""
        if not self.accepting:
            self.counters["refused_stopping"] += 1
            return
        if sender and heard:  # (a duplicate too is a sign of life)
            self._heard(sender, "packet", now)
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
        if ACKS not in self._timers:
            self._set_timer(ACKS, SOON)  # the ACKs of this turn leave together

    def _flush_acks(self) -> None:
        answers, self._acks = self._acks, {}
        for sender, (acks, helds) in answers.items():
            body: dict[str, Any] = {"acks": acks}
            if helds:
                body["held"] = helds
            # Through the backlog (not dropped when the socket is full). Should it still not leave (no link
            # to a sender we forgot: ``on_unsent``), the sender asks again after its timeout and gets the answer then.
            self._do(Send(sender, messages.encode(ACK, self.me(), **body), SendKind.MESSAGE))

    # -- heartbeats ------------------------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """PING the peers that need it, update liveness (re-route for evasive peers, forget expired ones)."""
        self._beats += 1
        self._beat_at = now
        if not self._announce_pending and self._beats % GOSSIP_HEARTBEATS == 0:
            self._announce_pending = any(r.known for r in self._far.values())
        if self._announce_pending:
            self._announce_pending = False
            self.announce(gossip=True)
        load, done = self.local_load(), self.local_done()
        frames: dict[tuple[bool, bool], list[bytes]] = {}
        fresh_s, feeder_s, done_s = (
            self._fresh_s,
            FEEDER_HEARTBEATS * self.heartbeat_s,
            DONE_HEARTBEATS * self.heartbeat_s,
        )
        greeted = Liveness.GREETED
        stretch, fresh, done_within = 0.0, 0.0, 0.0  # for the last stretch seen (most peers share the LAN's)
        due = []
        active, links = self._active, self.links
        for node, peer in self._to_look_at().items():
            if peer.state is greeted:
                continue
            if peer.stretch != stretch:
                stretch = peer.stretch
                fresh, done_within = fresh_s * stretch, done_s * stretch
            if (
                now - peer.beacon_at <= fresh
                and now - peer.broadcast_at <= fresh
                and now - peer.echo_at > fresh_s
                and now - peer.fed_at > feeder_s
                and not peer.load_sent
                and not peer.ping_unsent
                and (now - peer.done_at < done_within or peer.done_sent == done or node not in links)
            ):
                # Nothing ``_ping`` would send (its conditions, all false, in a few comparisons): most peers, most
                # heartbeats, on a LAN whose beacons are heard.
                active.pop(node, None)
                continue
            active[node] = peer
            due.append(node)
        for node in due:
            self._ping(node, now, load, frames, only_if_needed=True, done=done)
        evasive, expired = self.peers.sweep(now)
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

    def _to_look_at(self) -> dict[str, Peer]:
        """The peers this heartbeat looks at: every one on a LAN whose beacons come every beat; on a crowded one,
        whose beacons come every ``stretch`` beats (so do its peers' windows), the active ones and a slice of the
        rest, a different slice each beat (one in ``QUIET_SLICES_MAX`` at most): a quiet peer's beacons going
        stale is then seen a few beats later, within windows stretched by far more. At 1,000 peers the pass
        over every one, every beat, was a fifth of a simulated LAN's time."""
        entries = self.peers.entries
        slices = min(QUIET_SLICES_MAX, int(self.peers.stretch * BEACON_FRESH_HEARTBEATS / 2))
        if slices <= 1 or len(entries) <= GREET_ALL_UP_TO:
            return entries
        look = {p.node_id: p for p in list(entries.values())[self._beats % slices :: slices]}
        look.update((n, p) for n, p in self._active.items() if entries.get(n) is p)
        return look

    @property
    def _fresh_s(self) -> float:
        return BEACON_FRESH_HEARTBEATS * self.heartbeat_s

    def _ping(
        self,
        node: str,
        now: float,
        load: dict[str, float],
        frames: dict[tuple[bool, bool], list[bytes]],
        only_if_needed: bool = False,
        done: dict[str, int] | None = None,
    ) -> None:
        """PING ``node`` (with ``only_if_needed``: only when it needs one, see the module docstring);
        ``frames`` caches the two encodings of this heartbeat's PING. ``done`` (the local seeds' counts) goes
        along, and a change in it is reason enough to ping: peers' pages show the whole network's rates."""
        remote = self.peers.entry(node, now)
        fresh = self._fresh_s * remote.stretch  # its broadcasts' freshness (a paced peer's come less often)
        deaf = now - remote.beacon_at > fresh  # we need its PINGs to know it lives
        # (Not deaf in its first moments: its broadcasts may simply not have come yet.)
        settled = now - remote.since > fresh
        # Ask for its PINGs and direct beacons while we hear no beacon of it, and, once settled, for as long as
        # its broadcasts do not reach us: its direct beacons then keep us from taking it for gone, and asking only
        # while deaf would stop them, let us turn deaf, and ask again, every other heartbeat.
        echo = deaf or (settled and now - remote.broadcast_at > fresh)
        busy = {k: v for k, v in load.items() if v}
        done = self.local_done() if done is None else done
        asked = now - remote.echo_at <= self._fresh_s
        # It beacons us directly and we do not hear its broadcasts: another subnet, where it does not hear ours either.
        unheard = now - remote.direct_at <= self._fresh_s and fresh < now - remote.broadcast_at
        if (asked or (deaf and settled) or unheard) and only_if_needed:
            # It does not hear our broadcasts (it said so, or beacons us directly), or likely not (we do not hear
            # its own: another subnet). Its request for PINGs comes over TCP, which a lossy link can stall.
            self._beacon_directly(remote)
        # Our load is news only to a peer that sends us packets (routing reads it): to others, a PING each
        # heartbeat while busy would be N^2 PINGs on a busy network of N. They get one with no load once.
        feeds = not only_if_needed or now - remote.fed_at <= FEEDER_HEARTBEATS * self.heartbeat_s
        shown = busy if feeds else {}
        if only_if_needed:
            # Counts (the pages' network-wide rates) go with any PING, and on their own every DONE_HEARTBEATS
            # at most (stretched on a crowded LAN as beacons are).
            # (Not to a peer learnt from its beacon that we have no link to: on a crowded LAN, N^2 links for them.)
            due = now - remote.done_at >= DONE_HEARTBEATS * self.heartbeat_s * remote.stretch and node in self.links
            moved = due and done != remote.done_sent
            if not (echo or asked or shown or moved or shown != remote.load_sent or remote.ping_unsent):
                return
        key = (echo, feeds)
        if key not in frames:
            frames[key] = messages.encode(PING, self.me(), load=load if feeds else {}, echo=echo, done=done)
        # Recorded before it goes: a shell that refuses it says so at once (``on_unsent``), which undoes this.
        remote.load_sent = shown
        remote.done_sent = done
        remote.done_at = now
        remote.ping_unsent = False
        self.counters["pings"] += 1
        self._do(Send(node, frames[key], SendKind.CONTROL))

    def _beacon_directly(self, remote: Peer) -> None:
        """A UDP beacon to a peer that does not hear our broadcasts: unlike a PING it never waits behind
        a TCP stream stalled by packet loss, so the peer does not take us for gone while that lasts."""
        tcp = remote.origin.tcp if remote.origin is not None else None
        if not tcp:
            return
        host = tcp.removeprefix("tcp://").rsplit(":", 1)[0]
        if host:
            self._do(SendBeacon(host))
            self.counters["direct_beacons"] += 1

    def done_of(self, node: str) -> dict[str, int]:
        """How many packets each of ``node``'s seeds has handled, as its last PING said ({} before one)."""
        remote = self.peers.get(node)
        return remote.done_reported if remote is not None else {}

    def _hello_static_peers(self) -> None:
        if not self.static_peers:
            return
        known = {a for p in self.peers.entries.values() if p.known for a in [p.endpoint, *p.addresses]}
        for endpoint in self.static_peers:
            key = f"static:{endpoint}"
            if endpoint in known:
                if key in self.links:
                    self._disconnect(key)
                continue
            if self.keyed:
                # Its key is not known yet, and CurveZMQ needs it to connect: a sealed beacon to its host asks it to
                # greet us (it learns our key from the beacon), and its HELLO brings its own.
                host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0]
                if host:
                    self._do(SendBeacon(host))
                continue
            if key not in self.links:
                self._connect(key, endpoint)
                self._do(Send(key, self._hello_frames(reply=True, found_by="static"), SendKind.MESSAGE))
