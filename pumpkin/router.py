"""Deciding where each packet goes, and turning what seeds emit into new packets.

Policy: a packet in state S goes to every distinct seed that consumes S (one copy each). Among a seed's
replicas (the nodes it runs on) it goes to the least loaded, ties broken round robin: a local replica
that drains faster has less queued and so takes more, but equal replicas share evenly. Past ``SCAN_ALL``
replicas, the least loaded of the next ``CHOICES`` in round-robin order (the "power of d choices": load
spreads almost as evenly, and the cost per packet no longer grows with the replicas). Within one node,
a seed's worker instances share one queue (see ``runner``). A packet whose state has no consumer waits
in the ``WaitingRoom`` (bounded, with an expiry) and is routed again whenever the automaton changes; a
packet that cannot wait (queue full, expired, out of hops) goes to the failed/ area with its reason.

Flow control: a replica has room while its queue (local) or its unacknowledged packets (remote, see
``mesh``) are under a bound; a packet for a seed with no room anywhere waits for that seed, and ``kick``
hands such packets on, oldest first, as soon as a replica has room again. A local seed whose outputs pile
up (``THROTTLE_HIGH`` waiting in one of its output states, for a busy seed or for any consumer at all) is
throttled: it takes no new input (an injector makes no new packets) until the pile is under
``THROTTLE_LOW``, for as long as that takes. So a fast producer slows down to the pace of the slowest seed
after it, across daemons (a peer holds back its ACKs until what it made is safe, see ``custody``), and
waits while a state has no consumer at all, instead of filling memory or failing packets. Only where the
seed lies on a cycle of the automaton (seeds waiting for each other) is a throttle under which nothing moves
for ``THROTTLE_STUCK_S`` lifted, and the log names the cycle's seeds.

Custody: every packet is held (``custody.hold``) while it is queued for or run by a local seed, waits here,
is in flight to a peer, or is being written to failed/ or the tx folder; what a seed makes from a packet
inherits its custody. So the one that sent or accepted the packet hears it is safe only once all of that
is over. Two kinds of emission are made durable here instead (``Outputs.make_durable``: the intake journal) before
they are routed: those of a seed on a cycle of the automaton, whose custody would otherwise chain around
the cycle and, under load, fill every flow-control window on it with packets waiting for each other; and
those of an injector that declares ``durable = True``.

Joins and merges (see ``gather``): a packet that is part of an AND-join, or the result of a fragment, goes to
the one replica that owns its group (rendezvous hashing of its lineage, or of the split packet's id, over the
seed's replicas) and waits there, held, until the group is complete; the packet the group makes then runs on
that replica. A fragment goes to any replica of the seed that split it, never to other consumers of its state.
When the replicas change, groups whose owner is now another node move there (``replan``); a group incomplete
for ``routing.join_wait_s`` goes to failed/ with the reason.

All methods run on the event loop; nothing here blocks.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from .automaton import Automaton
from .counters import SeedTally
from .custody import Custody, hold
from .failed import FailedStore
from .gather import (
    FRAGMENT,
    GATHERED,
    JOIN,
    LINEAGE,
    MERGE,
    Gatherer,
    Group,
    fragment_mark,
    fragment_of,
    gathered_of,
    joined,
    lineage_of,
    merged,
    names_ship,
    owner,
    without_marks,
)
from .packet import Hop, IdMaker, Packet
from .runner import Emission, Outcome, SeedRunner
from .seed import SeedSpec
from .tags import StateTag
from .trace import PacketEvents
from .waiting import WaitingRoom

log = logging.getLogger(__name__)

THROTTLE_HIGH = 1000  # packets waiting for a busy seed, in one state, that pause the seed producing them
THROTTLE_LOW = 250
# A throttle that sees none of the piled packets handed on for this long is not helping (seeds in a cycle, on one
# daemon or across several, waiting for each other): it is lifted, and the seed is not throttled again for a while.
THROTTLE_STUCK_S = 2.0
THROTTLE_COOLDOWN_S = 10.0


class Remotes(Protocol):
    """The router's view of other nodes' replicas (the mesh): flow control, load, and sending with custody."""

    def send_packet(self, node: str, seed: str, packet: Packet, now: float) -> bool:
        """Hand ``packet`` for ``seed`` to ``node`` (``now``: the time, this router's clock); False when that
        cannot be now (no room in its window)."""
        ...

    def load_of(self, node: str, seed: str) -> float:
        """How busy that replica is believed to be (queued packets per worker)."""
        ...

    def has_room(self, node: str, seed: str) -> bool:
        """True when that replica can take another packet now."""
        ...


class Outputs(Protocol):
    """Where packets leave the router other than by routing: the daemon's file payloads, journal and tx folder."""

    #: True when ``make_durable`` journals; False (no journal): emissions are routed with their input's custody.
    durable: bool

    def made(self, packet: Packet) -> None:
        """A local seed made ``packet``; called before it is routed (file payloads: see ``filemover``)."""
        ...

    def extracted(self, packet: Packet, seed: str) -> None:
        """Extractor ``seed`` finished with ``packet`` (the tx folder writes its result; it may ``hold`` it)."""
        ...

    def done_before(self, seed: str, packet: Packet) -> bool:
        """True when extractor ``seed`` finished with ``packet`` in an earlier life of this node, durably: the
        packet is a duplicate, answered without a rerun."""
        ...

    def make_durable(self, batch: list[Packet], then: Callable[[], None] | None) -> None:
        """Journal ``batch`` (fsynced), route it with the journal's custody, then call ``then``."""
        ...


class NoOutputs:
    """``Outputs`` for a router with no journal, tx folder or file payloads (a unit test, a simulated node)."""

    durable = False

    def made(self, packet: Packet) -> None:
        """Nothing to do."""

    def extracted(self, packet: Packet, seed: str) -> None:
        """Nothing to write."""

    def done_before(self, seed: str, packet: Packet) -> bool:
        """Nothing is remembered across lives."""
        return False

    def make_durable(self, batch: list[Packet], then: Callable[[], None] | None) -> None:
        """Never called: ``durable`` is False."""
        raise AssertionError("NoOutputs cannot make packets durable")


#: Up to this many replicas, each packet's choice looks at the load of every one.
SCAN_ALL = 8
#: Past ``SCAN_ALL``: how many replicas (the next in round-robin order) a packet's choice looks at.
CHOICES = 4


def pick_replica(nodes: Sequence[str], load: Callable[[str], float], turn: int) -> str:
    """The least loaded of ``nodes``; among equals, the one ``turn`` points at (round robin)."""
    loads = [load(n) for n in nodes]
    low = min(loads)
    tied = [n for n, v in zip(nodes, loads, strict=True) if v == low]
    return tied[turn % len(tied)]


def replica_order(nodes: Sequence[str], load: Callable[[str], float], turn: int) -> Iterator[str]:
    """The replicas to try for one packet, best first, each once (the caller stops at the first that takes it):
    up to ``SCAN_ALL`` of them by ``pick_replica`` among those left; past it, the ``CHOICES`` from ``turn``'s
    window by load, then the others in round-robin order, so a full window costs one look at each replica."""
    n = len(nodes)
    if n <= SCAN_ALL:
        left = list(nodes)
        while left:
            node = left[0] if len(left) == 1 else pick_replica(left, load, turn)
            yield node
            left.remove(node)
        return
    start = turn % n  # windows slide by one a packet: equal replicas take turns, one each
    window = [nodes[(start + i) % n] for i in range(CHOICES)]
    loads = {node: load(node) for node in window}
    yield from sorted(window, key=loads.__getitem__)  # stable: equal loads keep round-robin order
    for i in range(CHOICES, n):
        yield nodes[(start + i) % n]


class Router:
    """Routes packets to local seed runners, to peers, or to the waiting room."""

    def __init__(
        self,
        node_id: str,
        automaton: Automaton,
        ids: IdMaker,
        failed: FailedStore,
        waiting: WaitingRoom,
        *,
        remotes: Remotes,
        outputs: Outputs,
        seed_queue_max: int = 10000,
        ttl_hops: int = 64,
        clock: Callable[[], float] = time.monotonic,
        join_wait_s: float = 600.0,
        events: PacketEvents | None = None,
    ) -> None:
        """``remotes``: the other nodes' replicas (the mesh); ``outputs``: where finished packets go besides;
        ``events``: where what happens to packets here is noted, for ``pmk trace``."""
        self.node_id = node_id
        self.automaton = automaton
        self.remotes = remotes
        self.outputs = outputs
        self.ids = ids
        self.failed = failed
        self.waiting = waiting
        self.seed_queue_max = seed_queue_max
        self.ttl_hops = ttl_hops
        self.clock = clock
        self.gather = Gatherer(join_wait_s)
        self.local: dict[str, SeedRunner] = {}
        self.counters: Counter[str] = Counter()
        self.delivered: Counter[tuple[str, str]] = Counter()  # (seed, node) -> packets handed to that replica
        self.tally = SeedTally()  # what each local seed did: the one source of its counters (see counters)
        self.events = events if events is not None else PacketEvents()
        # Events of every run and packet made are appended as tuples (trace.Event) on this hot path: a method
        # call per event would cost as much again.
        self._event = self.events.ring.append
        self._cyclic: dict[str, bool] = {}
        self._cyclic_version = -1
        self._turns: dict[str, itertools.count[int]] = {}
        self._throttled: dict[str, SeedRunner] = {}
        self._throttle_progress: dict[str, tuple[float, int]] = {}  # seed -> (when, piled packets handed on by then)
        self._no_throttle_until: dict[str, float] = {}
        self._seen_version = -1

    # -- entry points ----------------------------------------------------------------------------

    def route(self, packet: Packet) -> None:
        """Send ``packet`` on to every seed that consumes its state, or park it."""
        if packet.ttl <= 0:
            self.fail(packet, "ttl", f"packet {packet.id} in {packet.tag} ran out of hops (a loop in the automaton?)")
            return
        meta = packet.meta
        if meta and (FRAGMENT in meta or GATHERED in meta) and self._route_marked(packet):
            return
        consumers = self.automaton.consumers(packet.tag)
        if not consumers:
            self._park(packet)
            return
        first = True
        for name, nodes in consumers.items():
            copy_ = packet if first else _fork(packet)
            first = False
            if len(nodes) > 1 and _broadcast(copy_):
                self._broadcast(name, nodes, copy_)
            else:
                self._deliver(name, nodes, copy_)

    def _broadcast(self, name: str, nodes: list[str], packet: Packet) -> None:
        """A legacy packet whose header ``aux`` has the original's BROADCAST_BIT: a copy to every replica of
        ``name`` (each with an id of its own, so their results stay apart), the bit cleared, as the original did."""
        header = {**packet.meta["legacy_header"]}
        header["aux"] = int(header["aux"]) & ~LEGACY_BROADCAST_BIT
        self.counters["broadcast"] += 1
        for node in sorted(nodes):
            copy_ = _fork(packet)  # never the packet itself: its id may be what its intake is tracked by
            copy_.id = self.ids.child(packet.id, f"broadcast:{name}@{node}", 0)
            copy_.meta = {**copy_.meta, "legacy_header": header}
            self._deliver(name, [node], copy_)

    def replan(self, force: bool = False) -> None:
        """Route again the waiting packets whose state has a consumer now (after automaton or peer changes)."""
        if self.automaton.version == self._seen_version and not force:
            return
        self._seen_version = self.automaton.version
        for packet, seed in self.waiting.hand_out(lambda tag: bool(self.automaton.consumers(tag))):
            self.counters["released"] += 1
            self._resume(packet, seed)
        if self.gather.groups:
            self._rehome()
        self._check_throttles()

    def deliver_to(self, seed: str, packet: Packet, exclude: str = "") -> None:
        """Send ``packet`` to a replica of ``seed`` only (not other consumers of its state), avoiding ``exclude``."""
        nodes = [n for n in self._replicas(seed, packet.tag) if n != exclude]
        if nodes:
            self._deliver(seed, nodes, packet)
        else:
            self._park(packet, seed=seed)

    def _resume(self, packet: Packet, seed: str | None) -> None:
        if seed is None:
            self.route(packet)
        else:
            self.deliver_to(seed, packet)
        hold(packet, -1)  # after routing it again, so the count never dips to 0 on the way

    def expire(self, limit: int | None = None) -> bool:
        """Fail the waiting packets whose time is up, at most ``limit`` of them (and lift throttles that are not
        helping); True when the limit was reached, so more may be due (each costs a failed/ item: a sweep of a
        mass expiry is done in parts, with the loop's other work in between)."""
        self.check_stuck_throttles()
        for group in self.gather.expire(self.clock()):
            self._fail_group(group)
        if self.gather.groups:
            self._rehome()  # replicas seen differently by the sender (a few heartbeats after a change)
        expired = self.waiting.expire(self.clock(), limit)
        for packet in expired:
            self.fail(
                packet,
                "expired",
                f"packet {packet.id} waited {self.waiting.expiry_s:g} s for a seed consuming {packet.tag}; none came",
            )
            hold(packet, -1)
        self._check_throttles()
        return limit is not None and len(expired) >= limit

    def clear_waiting(self, why: str) -> int:
        """Move every waiting packet to failed/ (kind ``cleared``, saying ``why``), where it can be replayed; how
        many."""
        cleared = 0
        for batch in self.waiting.drain():
            for packet, seed in batch:
                for_ = f" for {seed}" if seed else ""
                self.fail(packet, "cleared", f"packet {packet.id} waiting in {packet.tag}{for_} was cleared by {why}")
                hold(packet, -1)  # the hold it took to wait
                cleared += 1
        self._check_throttles()
        return cleared

    def kick(self, seed: str) -> None:
        """A replica of ``seed`` has room again: hand it the packets that wait for it, oldest first."""
        for tag in self.waiting.tags_for(seed):
            nodes = self._replicas(seed, tag)
            # At most one pass over what waits now: a packet that cannot be sent after all waits again at
            # the back, and must not be taken a second time here.
            for _ in range(self.waiting.waiting_for(tag, seed)):
                if not self._has_room(seed, nodes):
                    break
                for packet in self.waiting.take(tag, seed, 1):
                    self._resume(packet, seed)
        if self._throttled:
            self._check_throttles()

    def local_room(self, seed: str) -> SeedRunner | None:
        """The local runner of ``seed`` when it can queue another packet (under ``seed_queue_max``), else None."""
        runner = self.local.get(seed)
        return runner if runner is not None and runner.pending < self.seed_queue_max else None

    def submit_local(self, runner: SeedRunner, packet: Packet, now: bool = False) -> None:
        """Queue ``packet`` for a local seed (with room: see ``local_room``), held until the seed has finished.
        A packet an extractor finished durably before (``done_before``) is not run again."""
        spec = runner.spec
        if spec.is_extractor and self.outputs.done_before(spec.name, packet):
            self.counters["done_before"] += 1
            return
        part = self._part(spec.name, packet)
        if part is not None:
            self._gather(spec.name, packet, part)
            return
        hold(packet, 1)
        self.delivered[spec.name, self.node_id] += 1
        runner.submit(packet, now=now)

    def _has_room(self, seed: str, nodes: Sequence[str]) -> bool:
        for node in nodes:  # a loop, not any(): this runs for every packet handed on by kick
            if self.local_room(seed) is not None if node == self.node_id else self.remotes.has_room(node, seed):
                return True
        return False

    def _throttle_if_piling(self, runner: SeedRunner) -> None:
        name = runner.spec.name
        if not len(self.waiting) or name in self._throttled:
            return
        if any(self.waiting.in_state(tag) >= THROTTLE_HIGH for tag in runner.spec.outputs):
            now = self.clock()
            if now < self._no_throttle_until.get(name, 0.0):
                return
            self._throttled[name] = runner
            self._throttle_progress[name] = (now, self._handed_on(runner))
            runner.throttle(True)
            self.counters["throttled"] += 1

    def _handed_on(self, runner: SeedRunner) -> int:
        return sum(self.waiting.taken[tag] for tag in runner.spec.outputs)

    def _check_throttles(self) -> None:
        for name, runner in list(self._throttled.items()):
            if all(self.waiting.in_state(tag) < THROTTLE_LOW for tag in runner.spec.outputs):
                self._release_throttle(name, runner)

    def _release_throttle(self, name: str, runner: SeedRunner) -> None:
        del self._throttled[name], self._throttle_progress[name]
        runner.throttle(False)

    def check_stuck_throttles(self) -> None:
        """Lift a throttle under which none of the piled packets moved for THROTTLE_STUCK_S, where the seed lies
        on a cycle of the automaton (call periodically). Elsewhere a throttle holds as long as the pile does."""
        now = self.clock()
        for name, runner in list(self._throttled.items()):
            since, handed_on = self._throttle_progress[name]
            moved = self._handed_on(runner)
            if moved > handed_on:
                self._throttle_progress[name] = (now, moved)
                continue
            if now - since < THROTTLE_STUCK_S:
                continue
            cycle = self.automaton.cycle_through(name)
            if not cycle:
                self._throttle_progress[name] = (now, moved)
                continue
            self._release_throttle(name, runner)
            self._no_throttle_until[name] = now + THROTTLE_COOLDOWN_S
            self.counters["throttle_stuck"] += 1
            log.warning(
                "seed %s was throttled while its outputs waited, and none of them moved for %g s: it lies on a cycle "
                "of seeds waiting for each other (%s); it runs unthrottled for %g s",
                name,
                THROTTLE_STUCK_S,
                " -> ".join([*cycle, cycle[0]]),
                THROTTLE_COOLDOWN_S,
            )

    def on_outcome(self, outcome: Outcome) -> None:
        """Turn a finished seed invocation into new packets (runs on the loop)."""
        runner = outcome.runner
        runner.outcome_done(outcome)
        spec = runner.spec
        parent = outcome.packet
        counted = self.tally.of(spec.name, spec.is_injector)
        now = time.time()
        if outcome.streamed:
            counted.made += len(outcome.emissions)  # an injector's packet, posted as it was made
        elif outcome.unclaimed:
            counted.untimed()
        else:
            counted.ran(outcome.seconds)
            if parent is None:
                counted.made += len(outcome.emissions)
            else:
                ran = "done" if spec.is_extractor and not outcome.error else "ran"
                kind = outcome.kind if outcome.error else ""
                self._event((now, ran, parent.id, "", spec.name, parent.tag, outcome.seconds, "", kind, ""))
        if outcome.error:
            self.counters["seed_errors"] += 1
            if parent is not None:
                self.fail(
                    parent,
                    outcome.kind,
                    f"{outcome.error} while processing {parent.id} in {parent.tag}",
                    outcome.traceback,
                    seed=spec.name,
                )
                self._finished(parent, spec.name)
            else:  # an injector's run: no packet to keep, but the failure is kept and counted all the same
                self.counters["failed"] += 1
                counted.failed[outcome.kind] += 1
                self.failed.keep_note(outcome.kind, f"{outcome.error} (injector run)", outcome.traceback, spec.name)
            return
        if parent is not None and spec.is_extractor:
            self.counters["extracted"] += 1
            self.outputs.extracted(parent, spec.name)
        if parent is not None and self._refused(spec, parent, outcome.emissions):
            return
        durable: list[Packet] | None = None
        if self.outputs.durable and (spec.durable if parent is None else self._on_cycle(spec.name)):
            durable = []
        # (Most parents carry no meta: nothing to clean, no ship named.)
        base_meta = without_marks(parent.meta) if parent is not None and parent.meta else {}
        parent_names_ship = parent is not None and bool(parent.meta) and names_ship(parent)
        # A fragment this seed split: what its run makes is one result, for the merge (see gather).
        mark = fragment_of(parent) if parent is not None and parent.meta and FRAGMENT in parent.meta else None
        if mark is not None and (mark.result or mark.by != spec.name):
            mark = None
        results: list[Packet] | None = [] if mark is not None else None
        emissions = outcome.emissions
        fragments = (
            0
            if len(emissions) == 1 and emissions[0].fragment is None
            else sum(e.fragment is not None for e in emissions)
        )
        split_index = 0
        for index, emission in enumerate(outcome.emissions):
            tag = parent.tag if emission.again and parent is not None else spec.output_for(emission.state)
            if emission.fragment is not None and parent is not None:
                tag = parent.tag  # a fragment goes to a replica of this seed, in the state of what it splits
            if parent is not None:
                pid = self.ids.child(parent.id, spec.name, index, fork=emission.forked)
            else:
                pid = self.ids.root()
            trail = [*parent.trail] if parent is not None else []
            meta = dict(base_meta)
            if emission.header is not None:
                meta["legacy_header"] = emission.header
            child = Packet(
                pid,
                tag or StateTag(self.automaton.group, "?", str(emission.state)),
                emission.data,
                trail,
                (parent.ttl - 1) if parent is not None else self.ttl_hops,
                parent.created if parent is not None else now,
                meta,
                parent.custody if parent is not None else None,
            )
            if parent is not None and (
                emission.forked or (emission.header is not None and (parent_names_ship or "ship" in emission.header))
            ):
                # Joins match parts by lineage (gather.lineage_of): a fork (a new container), or a legacy header
                # that no longer names the injected ship, keeps its parent's, so parts forked apart still meet.
                # (Nothing else can change it: a child has its parent's container and meta. A header an
                # original-format seed dispatches never names a ship, so most of them skip this.)
                lineage = lineage_of(parent)
                if lineage_of(child) != lineage:
                    child.meta[LINEAGE] = lineage
            origin = parent.id if parent is not None else ""
            self._event((now, "made", child.id, origin, spec.name, child.tag, 0.0, "", "", ""))
            if tag is None:
                declared = ", ".join(str(t) for t in spec.outputs) or "nothing (it is an extractor)"
                wanted = emission.state if emission.state is not None else "its only output"
                self.fail(
                    child,
                    "undeclared-state",
                    f"seed {spec.name} emitted state {wanted!r}, which it does not declare (declared: {declared})",
                    seed=spec.name,
                )
                continue
            child.trail.append(Hop(spec.name, self.node_id, str(tag), now))
            if emission.error:
                self.fail(
                    child,
                    "bad-data",
                    f"seed {spec.name} emitted data that cannot travel: {emission.error}",
                    seed=spec.name,
                )
                continue
            if emission.fragment is not None and parent is not None:
                label, last = emission.fragment
                child.meta[FRAGMENT] = fragment_mark(
                    spec.name,
                    parent.id,
                    split_index,
                    fragments,
                    label or str(split_index + 1),
                    last or split_index == fragments - 1,
                )
                split_index += 1
                self.counters["fragments"] += 1
            elif results is not None:
                results.append(child)
                continue
            self.counters["emitted"] += 1
            counted.emitted += 1
            if durable is None:
                self.outputs.made(child)
                self.route(child)
            else:
                child.custody = None
                durable.append(child)
        if results is not None and mark is not None and parent is not None:
            result = self._fragment_result(spec.name, spec.outputs, parent, mark, results, base_meta, now)
            self.events.note("made", result.id, parent.id, spec.name, result.tag)
            self.counters["emitted"] += 1
            counted.emitted += 1
            if durable is None:
                self.route(result)
            else:
                result.custody = None
                durable.append(result)
        if durable:
            if parent is None:
                self.outputs.make_durable(durable, None)
            else:
                hold(parent, 1)  # released once its children are in the journal
                self.outputs.make_durable(durable, lambda: hold(parent, -1))
        # (Nothing waits: no output piles up, and nothing to hand this seed's room to.)
        if len(self.waiting) and outcome.emissions and spec.outputs:
            self._throttle_if_piling(runner)
        if parent is not None:
            self._finished(parent, spec.name)
            if len(self.waiting) or self._throttled:
                self.kick(spec.name)

    def _refused(self, spec: SeedSpec, parent: Packet, emissions: list[Emission]) -> bool:
        """Fail ``parent`` whole, letting none of its emissions out, when any of them is in an undeclared
        state or holds data that cannot travel; True when it did."""
        for emission in emissions:
            if emission.again or emission.fragment is not None:
                continue  # in the input's own state: a re_dispatch, a fragment of a split
            if spec.output_for(emission.state) is None:
                declared = ", ".join(str(t) for t in spec.outputs) or "nothing (it is an extractor)"
                wanted = emission.state if emission.state is not None else "its only output"
                kind = "undeclared-state"
                why = f"seed {spec.name} emitted state {wanted!r}, which it does not declare (declared: {declared})"
            elif emission.error:
                kind, why = "bad-data", f"seed {spec.name} emitted data that cannot travel: {emission.error}"
            else:
                continue
            self.fail(parent, kind, f"{why}; none of its {len(emissions)} emission(s) was sent", seed=spec.name)
            self._finished(parent, spec.name)
            self.kick(spec.name)
            return True
        return False

    def _on_cycle(self, seed: str) -> bool:
        if self._cyclic_version != self.automaton.version:
            self._cyclic.clear()
            self._cyclic_version = self.automaton.version
        cyclic = self._cyclic.get(seed)
        if cyclic is None:
            cyclic = self._cyclic[seed] = bool(self.automaton.cycle_through(seed))
        return cyclic

    def _finished(self, packet: Packet, seed: str) -> None:
        hold(packet, -1)

    def inject(self, tag: StateTag, data: Any, meta: dict[str, Any] | None = None, via: str = "inject") -> Packet:
        """Make a new packet (a new lineage) from outside the network and route it."""
        now = time.time()
        packet = Packet(
            self.ids.root(), tag, data, [Hop(via, self.node_id, str(tag), now)], self.ttl_hops, now, meta or {}
        )
        self.admit(packet)
        return packet

    def admit_lineages(self, batch: list[Packet], release: Callable[[str], None], fresh: bool = True) -> None:
        """Route ``batch`` (``fresh``: new injections, else packets routed again) with one custody per lineage;
        ``release(lineage)`` once everything made of that lineage here is safe (a journal entry's packets)."""
        custodies: dict[str, Custody] = {}
        for packet in batch:
            lineage = packet.lineage
            custody = custodies.get(lineage)
            if custody is None:
                custody = custodies[lineage] = Custody(functools.partial(release, lineage))
            packet.custody = custody
            if fresh:
                self.admit(packet)
            else:
                self.route(packet)
        for custody in custodies.values():
            custody.settle()

    def admit(self, packet: Packet) -> None:
        """Route a packet made outside the network (a file, a command), counted as injected."""
        self.counters["injected"] += 1
        via = packet.trail[-1].seed if packet.trail else ""  # the door it came in by (see Daemon.accept)
        self.events.note("in", packet.id, packet.meta.get("replay_of", "") if packet.meta else "", via, packet.tag)
        self.route(packet)

    # -- internals -------------------------------------------------------------------------------

    def _deliver(self, name: str, nodes: list[str], packet: Packet) -> None:
        if len(nodes) == 1:  # most packets: no turn to take, no replica to choose, no group's owner to find
            if not self._hand(name, nodes[0], packet):
                self._park(packet, seed=name)
            return
        turns = self._turns.get(name)
        if turns is None:
            turns = self._turns[name] = itertools.count()
        turn = next(turns)
        candidates: Sequence[str] = nodes
        part = self._part(name, packet)
        if part is not None:
            # Every part of a group goes to the group's one owner, whatever the load elsewhere.
            candidates = [owner(part[0], candidates)]
            if candidates[0] == self.node_id and name in self.local:
                self.counters["local"] += 1
                self.submit_local(self.local[name], packet)
                return
        for node in replica_order(candidates, lambda n: self._load(n, name), turn):
            if self._hand(name, node, packet):
                return
        self._park(packet, seed=name)

    def _hand(self, name: str, node: str, packet: Packet) -> bool:
        """Give ``packet`` to seed ``name`` on ``node``: here, to its runner when it has room; elsewhere, to the
        link to that peer when it takes it. False when it could not."""
        if node == self.node_id:
            runner = self.local_room(name)
            if runner is None:
                return False
            self.counters["local"] += 1
            self.submit_local(runner, packet)
            return True
        at = self.events.clock()  # before it goes: the peer may run it before the send returns
        if not self.remotes.send_packet(node, name, packet, self.clock()):
            return False
        self.counters["remote"] += 1
        self.delivered[name, node] += 1
        self.events.note("sent", packet.id, "", name, packet.tag, peer=node, at=at)
        return True

    # -- joins, fragments and merges (see gather) ------------------------------------------------

    def _replicas(self, seed: str, tag: StateTag) -> list[str]:
        """The nodes to send ``seed`` a packet in ``tag``: those consuming it there, or (a fragment's result,
        addressed to the seed that split it, in a state it does not consume) every node the seed runs on."""
        return self.automaton.consumers(tag).get(seed) or self.automaton.nodes_of(seed)

    def _route_marked(self, packet: Packet) -> bool:
        """Route a fragment, a fragment's result or a gathered packet to its one seed; False: an ordinary packet."""
        gathered = gathered_of(packet)
        if gathered is not None:
            self.deliver_to(gathered["seed"], packet)
            return True
        mark = fragment_of(packet)
        if mark is None:
            return False
        self.deliver_to(mark.by, packet)
        return True

    def _part(self, name: str, packet: Packet) -> tuple[str, str, str, tuple[str, ...] | int, str] | None:
        """(owner key, kind, group key, slots, slot) when ``packet`` is a part of a group of seed ``name``."""
        meta = packet.meta
        if meta and (FRAGMENT in meta or GATHERED in meta):
            mark = fragment_of(packet)
            if mark is None or not mark.result or mark.by != name or GATHERED in meta:
                return None
            return mark.of, MERGE, mark.of, mark.n, str(mark.i)
        info = self.automaton.info(name)
        if info is None or not info.joins:
            return None
        join = info.join_of(packet.tag)
        if join is None:
            return None
        lineage = lineage_of(packet)
        slot = next(t.state for t in join if t.matches(packet.tag))
        states = tuple(t.state for t in join)
        return lineage, JOIN, f"{'&'.join(states)}|{lineage}", states, slot

    def _gather(self, seed: str, packet: Packet, part: tuple[str, str, str, tuple[str, ...] | int, str]) -> None:
        """Keep ``packet`` in its group; run the group's packet once it is complete."""
        _, kind, key, slots, slot = part
        added = self.gather.add(kind, seed, key, slots, slot, packet, self.clock())
        if added.status == "duplicate":
            self.counters["gather_duplicates"] += 1
            return
        if added.status in ("full", "invalid"):
            why = (
                f"{self.gather.max_parts} packets already wait for their partners here"
                if added.status == "full"
                else f"it is not one of the {kind}'s parts (slot {slot!r})"
            )
            self.fail(packet, f"{kind}-refused", f"packet {packet.id} could not wait for its {kind} in {seed}: {why}")
            return
        hold(packet, 1)  # until the group has run (or failed): its sender gets no ACK before
        self.counters[f"{kind}_parts"] += 1
        if added.status != "complete" or added.group is None:
            return
        parts = list(added.parts)
        made = joined(seed, added.group.slots, parts) if kind == JOIN else merged(seed, parts)

        def release() -> None:
            for p in parts:
                hold(p, -1)

        made.custody = Custody(release)
        self.counters[f"{kind}s"] += 1
        runner = self.local.get(seed)
        if runner is not None and self.automaton.runs_on(seed, self.node_id):
            self.submit_local(runner, made)
        else:
            self.deliver_to(seed, made)
        made.custody.settle()

    def _fragment_result(
        self,
        seed: str,
        outputs: Sequence[StateTag],
        parent: Packet,
        mark: Any,
        made: list[Packet],
        meta: dict[str, Any],
        now: float,
    ) -> Packet:
        """The one packet a fragment's run makes for the merge: what it emitted (one value, None, or a list)."""
        data = made[0].data if len(made) == 1 else [p.data for p in made] if made else None
        tag = made[0].tag if made else (outputs[0] if outputs else parent.tag)
        result = Packet(
            self.ids.child(parent.id, seed, 0),
            tag,
            data,
            [*parent.trail, Hop(seed, self.node_id, str(tag), now)],
            parent.ttl - 1,
            parent.created,
            dict(meta),
            parent.custody,
        )
        result.meta[FRAGMENT] = fragment_mark(mark.by, mark.of, mark.i, mark.n, mark.no, mark.last, result=True)
        return result

    def _fail_group(self, group: Group) -> None:
        """A group incomplete for join_wait_s: each of its packets goes to failed/ with the reason."""
        missing = group.missing()
        if group.kind == JOIN:
            have = ", ".join(s for s in group.slots if s not in missing) or "nothing"
            reason = (
                f"seed {group.seed} waited {self.gather.wait_s:g} s for {' and '.join(missing)} of lineage "
                f"{group.key.partition('|')[2]} to join {have}; it never came (routing.join_wait_s)"
            )
        else:
            shown = ", ".join(str(int(m) + 1) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
            reason = (
                f"seed {group.seed} waited {self.gather.wait_s:g} s for the results of {len(missing)} of the "
                f"{len(group.slots)} fragments of {group.key} (fragments {shown}); "
                "they never came (routing.join_wait_s)"
            )
        self.counters[f"{group.kind}_timeouts"] += 1
        log.warning("%s", reason)
        for packet in group.packets():
            self.fail(packet, f"{group.kind}-timeout", reason, seed=group.seed)
            hold(packet, -1)

    def _rehome(self) -> None:
        """Send the groups whose owner is now another replica there (the replicas changed)."""

        def moved(group: Group) -> bool:
            packets = group.packets()
            if not packets:
                return False
            nodes = self._replicas(group.seed, packets[0].tag)
            key = group.key if group.kind == MERGE else group.key.partition("|")[2]
            return bool(nodes) and owner(key, nodes) != self.node_id

        for group in self.gather.take(moved):
            self.counters["gather_moved"] += len(group.packets())
            for packet in group.packets():
                self.deliver_to(group.seed, packet)
                hold(packet, -1)

    def _load(self, node: str, name: str) -> float:
        if node == self.node_id:
            runner = self.local.get(name)
            return runner.pending / runner.spec.workers if runner else float("inf")
        return self.remotes.load_of(node, name)

    def _park(self, packet: Packet, seed: str | None = None) -> None:
        if self.waiting.park(packet, self.clock(), seed):
            self.counters["parked"] += 1
            self.events.note("waiting", packet.id, "", seed or "", packet.tag)
            hold(packet, 1)
            log.debug("packet %s waits in %s (for %s)", packet.id, packet.tag, seed or "any consumer")
            return
        self.fail(
            packet,
            "waiting-full",
            f"packet {packet.id} could not wait for a consumer of {packet.tag}: {self.waiting.why_full()}",
        )

    def fail(self, packet: Packet, kind: str, reason: str, detail: str = "", seed: str = "") -> None:
        """Keep ``packet`` in failed/ with its reason; it stays held until the kept files are durable."""
        self.counters["failed"] += 1
        if seed:
            self.tally.of(seed).failed[kind] += 1
        hold(packet, 1)
        kept = self.failed.keep(packet, kind, reason, detail, seed=seed, then=lambda: hold(packet, -1))
        self.events.note("failed", packet.id, "", seed, packet.tag, kind=kind, file=kept.name)


#: The original Pumpkin's BROADCAST_BIT (PmkShared), in a legacy header's ``aux``: to every replica, once.
LEGACY_BROADCAST_BIT = 0b10000


def _broadcast(packet: Packet) -> bool:
    """True when ``packet``'s legacy header asks for every replica (see LEGACY_BROADCAST_BIT)."""
    header = packet.meta.get("legacy_header") if packet.meta else None
    aux = header.get("aux") if isinstance(header, dict) else None
    return type(aux) is int and bool(aux & LEGACY_BROADCAST_BIT)


def _fork(packet: Packet) -> Packet:
    """A copy for a second consumer: seeds may change their input in place without affecting each other."""
    return Packet(
        packet.id,
        packet.tag,
        copy.deepcopy(packet.data),
        list(packet.trail),
        packet.ttl,
        packet.created,
        dict(packet.meta),
        packet.custody,
    )
