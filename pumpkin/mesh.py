"""Peers, as the daemon sees them: HELLO exchange, heartbeats, liveness, and packets sent with custody.

- Discovery (any of ``discovery``'s ways, or a static peer list) reports origins; an unknown origin,
  or one whose seeds digest changed, gets a HELLO asking for one back. HELLOs carry the sender's seeds
  and the peers it knows, so what one daemon learns (e.g. from a unicast beacon only it heard) spreads.
- Any message from a peer, or its broadcast beacon, counts as hearing from it. Every ``heartbeat_s`` a
  peer gets a PING only when it needs one: when we do not hear its beacons (the PING then says ``echo``,
  asking it to ping us back, since it has no other way to show us it lives), when it asked us so, or
  when our load changed or is not zero (routing reads it). Peers that hear each other's beacons, as on
  a LAN, thus exchange no PINGs while idle: N daemons send N beacons per heartbeat, not N^2 PINGs.
  A silent peer turns evasive (no new packets go to it, and the packets it has not acknowledged are
  re-routed to other replicas), then expires (its seeds leave the automaton). A BYE removes it at once.
- A packet sent to a peer is addressed to one seed and stays in this node's ``inflight`` table until the
  peer ACKs it (its seed finished with it, or the peer took it into its own waiting room). Unacknowledged
  packets of a peer that goes silent are re-routed, so a killed peer loses nothing; a packet that turns
  out to be processed twice yields children with the same ids (see ``packet``), and the receiver drops
  the duplicate.
- The number of packets in flight to a replica, over its workers, is that replica's load for routing,
  and its flow-control window: at most ``CREDIT_PER_WORKER`` unacknowledged packets per worker of the
  replica. A replica at its window takes nothing more until ACKs come back (the router keeps the packets
  waiting for that seed and ``kick``s them on as ACKs arrive), so a fast sender never buries a slow one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from . import messages
from .automaton import SeedInfo
from .errors import PacketError, TagError
from .failed import FailedStore
from .messages import ACK, BYE, HELLO, PING, Message, MessageError, Origin
from .packet import Packet, encode
from .peers import Liveness, PeerTable
from .router import Router
from .transport import Transport

log = logging.getLogger(__name__)

HELLO_RETRY_S = 1.0
#: Ways of finding peers that every daemon on the LAN shares: a peer found this way needs no gossip.
LAN_WIDE = frozenset({"broadcast", "mdns", "local"})
DEDUPE_WINDOW = 100_000
MAX_INFLIGHT_PER_PEER = 50_000
CREDIT_PER_WORKER = 1000
#: A peer whose broadcast beacon came within this many heartbeats needs no PING for liveness: a beacon
#: can come just after our heartbeat, and one lost datagram should cost a PING, not an evasive peer.
BEACON_FRESH_HEARTBEATS = 2

Learn = Callable[[str, str, list[SeedInfo], str], bool]


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
        transport: Transport,
        router: Router,
        peers: PeerTable,
        failed: FailedStore,
        learn: Learn,
        forget: Callable[[str], None],
        heartbeat_s: float,
        static_peers: tuple[str, ...] = (),
        local_done: Callable[[], dict[str, int]] = dict,
    ) -> None:
        """``local_done``: packets each local seed has handled so far (sent in PINGs, for network-wide rates)."""
        self.node_id = node_id
        self.host = host
        self.me = me
        self.local_seeds = local_seeds
        self.local_load = local_load
        self.local_done = local_done
        self._done_sent: dict[str, dict[str, int]] = {}  # the counts each peer last got from us
        self._done_reported: dict[str, dict[str, int]] = {}  # each peer's own seeds' counts, from its PINGs
        self.transport = transport
        self.router = router
        self.peers = peers
        self.failed = failed
        self.learn = learn
        self.forget = forget
        self.heartbeat_s = heartbeat_s
        self.static_peers = static_peers
        self.inflight: dict[str, OrderedDict[tuple[str, str], Packet]] = {}
        self._inflight_per_seed: Counter[tuple[str, str]] = Counter()
        self.custody: dict[tuple[str, str], str] = {}
        self._recent: OrderedDict[tuple[str, str | None], None] = OrderedDict()
        self._workers: dict[str, dict[str, int]] = {}
        self._reported: dict[str, dict[str, float]] = {}
        self._hello_sent: dict[str, float] = {}
        self._beacon_at: dict[str, float] = {}  # when each peer's broadcast beacon was last heard
        self._echo_at: dict[str, float] = {}  # when each peer last asked for our PINGs
        self._load_sent: dict[str, dict[str, float]] = {}  # the non-zero load each peer last got from us
        self._origins: dict[str, Origin] = {}
        self._found_via: dict[str, str] = {}
        self._announce_pending = False
        self._acks: dict[str, list[list[str]]] = {}
        self._ack_flush_scheduled = False
        self.counters: Counter[str] = Counter()
        self._rejects_logged: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        router.send_remote = self.send_packet
        router.remote_load = self.load_of
        router.remote_room = self.has_room
        router.on_finished = self._finished

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start heartbeats (and hellos to static peers)."""
        self._task = asyncio.create_task(self._heartbeat_loop(), name="heartbeats")

    async def stop(self) -> None:
        """Acknowledge what this node took custody of, and say goodbye to every peer."""
        if self._task is not None:
            self._task.cancel()
        self._flush_acks()
        bye = messages.encode(BYE, self.me())
        for node in list(self.peers.peers):
            self.transport.send_control(node, bye)

    def acknowledge_all(self) -> None:
        """Tell senders we hold everything they sent us (it is saved to disk at shutdown)."""
        for key, sender in list(self.custody.items()):
            self._queue_ack(sender, key)
        self.custody.clear()
        self._flush_acks()

    # -- discovery -------------------------------------------------------------------------------

    def on_origin(self, origin: Origin, via: str) -> None:
        """A discovery mechanism heard of ``origin``."""
        if origin.id == self.node_id:
            me = self.me()
            if (origin.tcp, origin.ipc) != (me.tcp, me.ipc) and "same-id" not in self._rejects_logged:
                self._rejects_logged.add("same-id")
                log.error(
                    "another node uses this node's id %s (at %s, found by %s): give each daemon its own "
                    "working directory or --node-id",
                    origin.id,
                    origin.tcp or origin.ipc,
                    via,
                )
            return
        if origin.bye:
            self._drop(origin.id, "said goodbye")
            return
        peer = self.peers.peers.get(origin.id)
        if peer is not None and origin.digest and peer.seeds_digest == origin.digest:
            self._heard(origin.id, via)
            return
        self._send_hello(origin, reply=True, via=via)

    def _send_hello(self, origin: Origin, reply: bool, via: str = "", force: bool = False) -> None:
        endpoint = origin.endpoint_for(self.host)
        if endpoint is None:
            return
        now = time.monotonic()
        if not force and now - self._hello_sent.get(origin.id, -1e9) < HELLO_RETRY_S:
            return
        self._hello_sent[origin.id] = now
        if via:
            self._found_via.setdefault(origin.id, via)
        self.transport.connect(origin.id, endpoint)
        # Through the backlog: a new link is not connected yet, and mDNS reports a peer only once.
        self.transport.send(origin.id, self._hello_frames(reply, self._found_via.get(origin.id, "")))
        if via and origin.id not in self.peers.peers:
            log.debug("heard of %s by %s; said hello at %s", origin.id, via, endpoint)

    def _hello_frames(self, reply: bool, found_by: str = "") -> list[bytes]:
        known = [
            [p.node_id, *self._addresses(p.node_id)] for p in self.peers.peers.values() if p.state is Liveness.ALIVE
        ]
        return messages.encode(HELLO, self.me(), seeds=self.local_seeds(), peers=known, reply=reply, found_by=found_by)

    def _addresses(self, node: str) -> list[Any]:
        o = self._origins.get(node)
        return [o.tcp, o.ipc, o.host] if o else [None, None, ""]

    def announce(self) -> None:
        """Our seeds changed: tell every peer at once (beacons carry the new digest too)."""
        frames = self._hello_frames(reply=False)
        for node in list(self.peers.peers):
            self.transport.send_control(node, frames)

    # -- messages --------------------------------------------------------------------------------

    def handle(self, frames: list[bytes]) -> None:
        """A HELLO, PING, BYE or ACK from the inbox."""
        try:
            msg = messages.decode(frames)
        except MessageError as exc:
            self._reject("peer message", str(exc))
            return
        if msg.origin.id == self.node_id:
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
        self._origins[o.id] = o
        self.learn(o.id, endpoint, seeds, "hello")
        peer = self.peers.peers[o.id]
        peer.seeds_digest = o.digest
        peer.addresses = [a for a in (o.tcp, o.ipc) if a]
        self._workers[o.id] = {str(s["name"]): max(1, int(s.get("workers", 1))) for s in summaries}
        if msg.body.get("reply"):
            self._send_hello(o, reply=False, force=True)
        for entry in msg.body.get("peers", []):
            if isinstance(entry, list) and len(entry) == 4 and entry[0] not in self.peers.peers:
                try:
                    gossip = messages.origin_from(
                        {
                            "v": messages.VERSION,
                            "id": entry[0],
                            "tcp": entry[1],
                            "ipc": entry[2],
                            "host": entry[3] or "",
                            "dg": "",
                        }
                    )
                except MessageError:
                    continue
                self.on_origin(gossip, "gossip")
        found_by = {self._found_via.get(o.id, ""), str(msg.body.get("found_by", ""))}
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
        self._heard(o.id, "ping")
        # dict(): a body that is not an object raises TypeError/ValueError, which ``handle`` reports as a reject.
        self._reported[o.id] = {str(k): float(v) for k, v in dict(msg.body.get("load", {})).items()}
        if "done" in msg.body:
            self._done_reported[o.id] = {str(k): int(v) for k, v in dict(msg.body["done"]).items()}
        if msg.body.get("echo"):
            now = time.monotonic()
            newly = now - self._echo_at.get(o.id, -1e9) > self._fresh_s
            self._echo_at[o.id] = now
            if newly:  # answer at once: it stopped hearing our beacons and may soon take us for evasive
                self._ping(o.id, now, self.local_load(), {})
        if peer.seeds_digest != o.digest:
            self._send_hello(o, reply=True)

    def _heard(self, node: str, via: str) -> None:
        """Any sign of life from a known peer; one that comes back gets the packets that waited for it."""
        if node not in self.peers.peers:
            return
        if via == "broadcast":
            self._beacon_at[node] = time.monotonic()
        _, revived = self.peers.heard(node, "", via)
        if revived:
            log.info("Peer %s is back", node)
            self.router.replan(force=True)

    def _on_ack(self, msg: Message) -> None:
        table = self.inflight.get(msg.origin.id)
        if not table:
            return
        freed: set[str] = set()
        for pid, seed in msg.body["acks"]:
            acked = table.pop((pid, seed), None)
            if acked is not None:
                self._inflight_per_seed[(msg.origin.id, seed)] -= 1
                self.router.hold(acked, -1)
                freed.add(seed)
        self._heard(msg.origin.id, "ack")
        for seed in freed:
            self.router.kick(seed)

    def _reject(self, what: str, why: str) -> None:
        self.counters["rejected"] += 1
        key = why.split(":")[0]
        (log.warning if key not in self._rejects_logged else log.debug)("ignored %s: %s", what, why)
        self._rejects_logged.add(key)

    # -- packets ---------------------------------------------------------------------------------

    def send_packet(self, node: str, seed: str, packet: Packet) -> bool:
        """Send ``packet`` for ``seed`` to ``node`` and keep it until acknowledged; False if that cannot be now."""
        if not self.has_room(node, seed):
            return False
        table = self.inflight.setdefault(node, OrderedDict())
        try:
            frames = encode(packet, to=seed, sender=self.node_id)
        except PacketError as exc:
            self.failed.keep(packet, "bad-data", str(exc))
            return True  # handled: kept with its reason
        if not self.transport.send_packet(node, frames):
            return False
        key = (packet.id, seed)
        if key not in table:
            self._inflight_per_seed[(node, seed)] += 1
            self.router.hold(packet, 1)  # in our custody until the peer acknowledges it
        table[key] = packet
        self.counters["sent"] += 1
        return True

    def on_packet(self, packet: Packet, to: str | None, sender: str | None, alone: bool = False) -> None:
        """A packet from a peer: drop it if already seen, else hand it to its seed and ack when done.
        ``alone``: it came in a message of its own, so nothing else is waiting to be batched with it."""
        key = (packet.id, to)
        if key in self._recent:
            self.counters["duplicates"] += 1
            if sender and to:
                self._queue_ack(sender, (packet.id, to))
            return
        self._recent[key] = None
        if len(self._recent) > DEDUPE_WINDOW:
            self._recent.popitem(last=False)
        self.counters["received"] += 1
        # Straight to the local seed only while it is in the automaton here (not disabled, not unloaded).
        runner = self.router.local_room(to) if to and self.router.automaton.runs_on(to, self.node_id) else None
        if sender:
            self._heard(sender, "packet")
        if runner is not None:
            if sender:
                self.custody[(packet.id, to)] = sender  # type: ignore[index]
            self.router.hold(packet, 1)  # the router lets go of it when the seed has finished
            runner.submit(packet, now=alone)
            return
        if to is not None and self.router.automaton.knows(to):
            self.router.deliver_to(to, packet)
        else:
            self.router.route(packet)
        if sender and to:
            self._queue_ack(sender, (packet.id, to))  # parked or passed on: it is ours now

    def _finished(self, packet: Packet, seed: str) -> None:
        sender = self.custody.pop((packet.id, seed), None)
        if sender is not None:
            self._queue_ack(sender, (packet.id, seed))

    def _queue_ack(self, sender: str, key: tuple[str, str]) -> None:
        self._acks.setdefault(sender, []).append([key[0], key[1]])
        if not self._ack_flush_scheduled:
            self._ack_flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_flush_scheduled = False
        acks, self._acks = self._acks, {}
        for sender, items in acks.items():
            # Through the backlog (not dropped when the socket is full): a lost ACK would inflate the
            # sender's idea of our load and make it re-route packets we already processed.
            self.transport.send(sender, messages.encode(ACK, self.me(), acks=items))

    def has_room(self, node: str, seed: str) -> bool:
        """True when ``node`` is alive and its replica of ``seed`` has room in its flow-control window."""
        peer = self.peers.peers.get(node)
        if peer is None or peer.state is not Liveness.ALIVE:
            return False
        window = CREDIT_PER_WORKER * self._workers.get(node, {}).get(seed, 1)
        if self._inflight_per_seed.get((node, seed), 0) >= window:
            return False
        table = self.inflight.get(node)
        return table is None or len(table) < MAX_INFLIGHT_PER_PEER

    def load_of(self, node: str, seed: str) -> float:
        """Queued packets per worker at ``node``'s replica of ``seed``, as far as this node knows."""
        ours = self._inflight_per_seed.get((node, seed), 0)
        reported = self._reported.get(node, {}).get(seed, 0.0)
        return max(ours / self._workers.get(node, {}).get(seed, 1), reported)

    def _reroute(self, node: str) -> int:
        table = self.inflight.pop(node, None)
        if not table:
            return 0
        for _, seed in table:
            self._inflight_per_seed.pop((node, seed), None)
        for (_, seed), packet in table.items():
            self.router.deliver_to(seed, packet, exclude=node)
            self.router.hold(packet, -1)
        self.counters["rerouted"] += len(table)
        return len(table)

    def _drop(self, node: str, why: str, known: bool | None = None) -> None:
        known = node in self.peers.peers if known is None else known
        moved = self._reroute(node)
        self._found_via.pop(node, None)
        self._workers.pop(node, None)
        self._reported.pop(node, None)
        self._origins.pop(node, None)
        for table in (self._beacon_at, self._echo_at, self._load_sent, self._done_sent, self._done_reported):
            table.pop(node, None)
        if known:
            log.info("Peer %s %s%s", node, why, f"; re-routing {moved} unacknowledged packet(s)" if moved else "")
            self.forget(node)

    # -- heartbeats ------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            if self._announce_pending:
                self._announce_pending = False
                self.announce()
            now, load, done = time.monotonic(), self.local_load(), self.local_done()
            frames: dict[bool, list[bytes]] = {}
            for node in list(self.peers.peers):
                self._ping(node, now, load, frames, only_if_needed=True, done=done)
            evasive, expired = self.peers.sweep()
            for peer in evasive:
                moved = self._reroute(peer.node_id)
                log.warning(
                    "Peer %s is evasive (silent for %.1f s)%s",
                    peer.node_id,
                    self.peers.evasive_s,
                    f"; re-routing {moved} unacknowledged packet(s)" if moved else "",
                )
            for peer in expired:
                self._drop(peer.node_id, f"expired (silent for {self.peers.expired_s:g} s)", known=True)
            self._hello_static_peers()
            await asyncio.sleep(self.heartbeat_s)

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
        deaf = now - self._beacon_at.get(node, -1e9) > self._fresh_s  # we need its PINGs to know it lives
        busy = {k: v for k, v in load.items() if v}
        done = self.local_done() if done is None else done
        if only_if_needed:
            asked = now - self._echo_at.get(node, -1e9) <= self._fresh_s
            moved = done != self._done_sent.get(node, {})
            if not (deaf or asked or busy or moved or busy != self._load_sent.get(node, {})):
                return
        if deaf not in frames:
            frames[deaf] = messages.encode(PING, self.me(), load=load, echo=deaf, done=done)
        if self.transport.send_control(node, frames[deaf]):
            self._load_sent[node] = busy
            self._done_sent[node] = done
            self.counters["pings"] += 1

    def done_of(self, node: str) -> dict[str, int]:
        """How many packets each of ``node``'s seeds has handled, as its last PING said ({} before one)."""
        return self._done_reported.get(node, {})

    def _hello_static_peers(self) -> None:
        known = {a for p in self.peers.peers.values() for a in [p.endpoint, *p.addresses]}
        for endpoint in self.static_peers:
            key = f"static:{endpoint}"
            if endpoint in known:
                self.transport.disconnect(key)
                continue
            if key not in self.transport.links:
                self.transport.connect(key, endpoint)
                self.transport.send(key, self._hello_frames(reply=True))
