"""Pumpkin itself in the simulator: the real Mesh and Router of each node on pumpkin.sim's wire and virtual clock,
running real seed code (modern and original-format) synchronously, with a history of every packet event and
checkers over it. Only the I/O is simulated; custody, retransmission, incarnations and routing are the daemon's.

Discovery is the daemon's too, for nodes added ``live``: each sends a UDP beacon (``beacons.Beacons``, as
``discovery.BeaconDiscovery`` does) every heartbeat as one broadcast to every node of its subnet (``Net.subnet``),
which each receiver may lose (the link's loss) or not hear (a partition), and which each turns into
``mesh.on_origin`` by the same code as the daemon; the mesh's heartbeats run, so peers that stop hearing each other
turn evasive and expire, and a static peer (``static_peers``) or gossip reaches a node on another subnet. A
broadcast reaches its whole subnet after one latency draw; a sender does not hear its own.

History notes written here (``Record.kind == "note"``, ``msg``): ``seeds`` (a node's seeds and their inputs),
``inject`` (a packet entering the network), ``run`` (a seed ran on a packet), ``sink`` (an extractor took a
packet), ``ack`` (an ACK frame went on the wire); the wire itself writes ``send``, ``deliver`` and ``drop``
(a beacon broadcast is one ``send`` of kind ``beacon`` with no receiver, and one ``drop`` per receiver that lost it).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import random
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import legacy, messages, splitmerge, tags
from . import packet as codec
from .actions import BROADCAST
from .automaton import Automaton, SeedInfo
from .beacons import Beacons, seeds_digest
from .custody import hold
from .driver import MeshDriver, no_beacons
from .failed import FailedStore
from .gather import fragment_of, gathered_of
from .journal import Entry
from .loader import load
from .membership import Membership
from .mesh import Mesh
from .messages import MessageError, Origin, decode_beacon
from .packet import IdMaker, Packet
from .peers import PeerTable
from .router import Remotes, Router
from .runner import Emission, Outcome, iter_results, raised, ready_instance, run_modern
from .seed import SEED_FAULTS, SeedSpec, run_arity
from .sim.check import Violation
from .sim.clock import Clock, Scheduler, SkewedClock, SkewedScheduler
from .sim.history import History, Record
from .sim.links import Fixed, Link
from .sim.wire import Wire
from .simdisk import TX_WRITE_S, Disk, SimJournal
from .waiting import WaitingRoom

log = logging.getLogger(__name__)

T = tags.parse
HEARTBEAT_S = 0.5
START_S = 1000.0  # virtual time starts well past 0, as a monotonic clock does
STATIC_PORT = 7900  # a node others name as a static peer listens on a fixed port, as ``--endpoint.tcp_port`` gives
BEACON = "beacon"
#: Results an extractor may have run beyond those durable in its tx folder (the daemon's ``TX_AHEAD_MAX``).
TX_AHEAD_MAX = 64
DEFAULT_SUBNET = "lan"
RUN_S = 0.001  # a seed run's virtual duration unless the scenario says otherwise
ACK = b"PMKA"


class FakeRunner:
    """A seed runner whose packets wait in ``got`` until the test finishes them (``Node.finish``)."""

    def __init__(self, spec: SeedSpec) -> None:
        self.spec = spec
        self.pending = 0
        self.processed = 0
        self.got: list[Packet] = []
        self.throttled = False

    def submit(self, packet: Packet, now: bool = False) -> None:
        self.pending += 1
        self.got.append(packet)

    def outcome_done(self, outcome: Outcome) -> None:
        if outcome.packet is not None:
            self.pending -= 1
        self.processed += 1

    def throttle(self, on: bool) -> None:
        self.throttled = on

    def take_queued(self) -> list[Packet]:
        taken, self.got = self.got, []
        self.pending -= len(taken)
        return taken


class SimRunner(FakeRunner):
    """Runs a real seed's code on its packets one at a time, each run taking ``run_s`` of virtual time."""

    def __init__(self, node: Node, spec: SeedSpec, run_s: float) -> None:
        super().__init__(spec)
        self.node = node
        self.run_s = run_s
        self.queue: deque[Packet] = deque()
        self.busy = False
        self.env = legacy.LegacyEnv(node.net.tmp / node.id / "legacy", node_id=node.id) if spec.legacy else None
        self.instance = ready_instance(spec, node.id, env=self.env, emit=self._outside)
        self.arity = 0 if spec.legacy else run_arity(spec.factory)
        self.splits = splitmerge.splits(spec.factory)  # it splits packets: fragments and merges run as in the daemon
        self.unsettled = 0  # runs whose tx result is not durable yet
        self.unsettled_max = 0  # TX_AHEAD_MAX for an extractor whose results go to a tx folder

    def settled(self) -> None:
        """One result became durable: its place among the unsettled runs is free."""
        self.unsettled -= 1
        self._pump()

    def submit(self, packet: Packet, now: bool = False) -> None:
        self.pending += 1
        self.queue.append(packet)
        self._pump()

    def take_queued(self) -> list[Packet]:
        taken = list(self.queue)
        self.queue.clear()
        self.pending -= len(taken)
        return taken

    def throttle(self, on: bool) -> None:
        self.throttled = on
        self._pump()

    def _pump(self) -> None:
        if self.busy or not self.queue or self.throttled or not self.node.alive:
            return
        if self.unsettled_max and self.unsettled >= self.unsettled_max:
            return  # settled() pumps again
        self.busy = True
        packet = self.queue.popleft()
        self.node.net.scheduler.call_later(self.run_s, lambda: self._finish(packet))

    def _finish(self, packet: Packet | None) -> None:
        if not self.node.alive:
            return
        self.busy = False
        self.node.router.on_outcome(self.invoke(packet))
        self._pump()

    def invoke(self, packet: Packet | None) -> Outcome:
        """Run the seed on ``packet`` (None: an injector's run) now, as the daemon's runner does."""
        outcome = Outcome(self, packet)  # type: ignore[arg-type]
        net = self.node.net
        if packet is not None:
            # Fragments' results come back to the seed that split them (gathered, or one by one), in a state that
            # seed need not consume.
            mark = fragment_of(packet)
            merge = gathered_of(packet) is not None or (mark is not None and mark.result and mark.by == self.spec.name)
            net.note("run", self.node.id, seed=self.spec.name, state=str(packet.tag), id=packet.id, merge=merge)
            if self.spec.is_extractor:
                net.note("sink", self.node.id, seed=self.spec.name, id=packet.id, data=packet.data)
        printed = io.StringIO()  # what a seed prints (the hello world's extractor) goes in the history
        try:
            with contextlib.redirect_stdout(printed):
                self._call(packet, outcome)
        except SEED_FAULTS as exc:  # a seed's bug fails its packet, as in the daemon
            outcome.emissions = []
            outcome.error = raised(self.spec.name, exc)
        if printed.getvalue():
            net.note("printed", self.node.id, seed=self.spec.name, text=printed.getvalue())
        outcome.seconds = self.run_s
        return outcome

    def _call(self, packet: Packet | None, outcome: Outcome) -> None:
        if packet is not None and splitmerge.special(packet, self.splits):  # a split, a merge or an AND-join
            collect = outcome.emissions.append
            splitmerge.invoke(self.spec, self.instance, packet, self.arity, self.splits, collect, self.env)
        elif self.spec.legacy:
            assert self.env is not None

            def emit(state: str, data: Any, **kw: Any) -> None:
                outcome.emissions.append(Emission(state, data, **kw))

            legacy.invoke(self.instance, self.spec, self.env, packet, emit)
        else:
            outcome.emissions.extend(iter_results(run_modern(self.instance, self.arity, packet)))

    def _outside(self, state: str, data: Any, **kw: Any) -> None:
        """A legacy seed dispatched outside ``run``: a new packet, as an injection."""
        self.node.router.on_outcome(Outcome(self, None, [Emission(state, data, **kw)]))  # type: ignore[arg-type]


class FakeOutputs:
    """The router's ``Outputs``, off until a test sets a hook: ``on_extracted`` (a tx folder), ``journal``."""

    def __init__(self) -> None:
        self.on_extracted: Callable[[Packet, str], None] | None = None
        self.journal: Callable[[list[Packet], Callable[[], None] | None], None] | None = None
        self.tx: set[tuple[str, str]] | None = None  # a tx folder: (seed, packet id) written, kept across lives

    @property
    def durable(self) -> bool:
        return self.journal is not None

    def made(self, packet: Packet) -> None:
        pass

    def extracted(self, packet: Packet, seed: str) -> None:
        if self.on_extracted is not None:
            self.on_extracted(packet, seed)  # a live node writes its tx file (durable a while later)
        elif self.tx is not None:
            self.tx.add((seed, packet.id))

    def done_before(self, seed: str, packet: Packet) -> bool:
        return self.tx is not None and (seed, packet.id) in self.tx

    def make_durable(self, batch: list[Packet], then: Callable[[], None] | None) -> None:
        assert self.journal is not None
        self.journal(batch, then)


def spec(name: str, ins: tuple[str, ...] = (), outs: tuple[str, ...] = (), workers: int = 1) -> SeedSpec:
    """A seed's spec with no code behind it (for ``FakeRunner``)."""
    return SeedSpec(name, tuple(map(T, ins)), tuple(map(T, outs)), object, Path(name), False, workers)


@dataclass
class Node:
    """One daemon's protocol objects."""

    net: Net
    id: str
    inc: int
    router: Router
    mesh: Mesh
    peers: PeerTable
    outputs: FakeOutputs
    driver: MeshDriver
    runners: dict[str, FakeRunner] = field(default_factory=dict)
    alive: bool = True
    port: int = 0
    summaries: list[dict[str, Any]] = field(default_factory=list)  # its seeds, as its beacons say them
    digest: str = seeds_digest([])  # ... and their digest
    beacons: Beacons | None = None  # a live node's beacon discovery
    journal: SimJournal | None = None  # a live node's intake journal, on its disk
    timers: Any = None  # the scheduler on this node's own clock (the net's unless skewed)

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.id}:{self.port}"

    def origin(self) -> Origin:
        return Origin(self.id, self.endpoint, None, f"host-{self.id}", self.digest, inc=self.inc, seeds=self.summaries)

    def _attach(self, runner: FakeRunner) -> FakeRunner:
        s = runner.spec
        self.runners[s.name] = runner
        self.router.local[s.name] = runner  # type: ignore[assignment]
        self.router.automaton.add(self.id, SeedInfo(s.name, s.inputs, s.outputs, s.joins))
        self.summaries = [r.spec.summary() for r in self.runners.values()]
        self.digest = seeds_digest(self.summaries)
        self.router.replan()
        tx = s.is_extractor and self.outputs.tx is not None
        self.net.note("seeds", self.id, seed=s.name, inputs=[str(t) for t in s.inputs], tx=tx)
        return runner

    def add_seed(self, s: SeedSpec) -> FakeRunner:
        """A seed the test runs by hand (``finish``)."""
        return self._attach(FakeRunner(s))

    def load_seed(self, s: SeedSpec, run_s: float = RUN_S) -> SimRunner:
        """A real seed whose code runs, each run taking ``run_s`` of virtual time."""
        runner = SimRunner(self, s, run_s)
        if s.is_extractor and self.net.tx:
            self.outputs.tx = self.net.disk(self.id).tx
            if self.journal is not None:  # live: results are durable TX_WRITE_S after the run, as the daemon's
                self.outputs.on_extracted = self.write_tx
                runner.unsettled_max = TX_AHEAD_MAX
        self._attach(runner)
        return runner

    def load_seeds(self, paths: Iterable[Path], run_s: float = RUN_S) -> list[SimRunner]:
        """The seeds in these files and folders, loaded by pumpkin.loader as the daemon loads them."""
        files: list[Path] = []
        for p in paths:
            files += sorted(p.glob("*.py")) if p.is_dir() else [p]
        report = load(files, "default", explicit=True)
        for path, why in report.errors:
            log.warning("%s: %s", path, why)
        return [self.load_seed(s, run_s) for s in report.seeds]

    def finish(self, seed: str, emit: Callable[[Any], list[Any]] = lambda data: [data], n: int | None = None) -> int:
        """Run ``seed`` on up to ``n`` of the packets it holds, emitting ``emit(data)``; returns how many ran."""
        runner = self.runners[seed]
        todo, runner.got = runner.got[:n], runner.got[n:] if n is not None else []
        for packet in todo:
            outcome = Outcome(runner, packet, [Emission(None, d) for d in emit(packet.data)])  # type: ignore[arg-type]
            self.router.on_outcome(outcome)
        return len(todo)

    def inject(self, state: str, data: Any, custody: Any = None) -> Packet:
        """A packet entering the network here in ``state``."""
        packet = Packet(self.router.ids.root(), T(state), data, [], 64)
        packet.custody = custody
        self.net.note("inject", self.id, id=packet.id, state=state, data=data)
        self.router.admit(packet)
        if custody is not None:
            custody.settle()
        return packet

    def accept(self, state: str, data: Any) -> Packet:
        """A packet offered here from outside, as ``pmk inject``: accepted (the ``inject`` note) once its journal
        entry is committed, then routed; a crash before that loses it, unaccepted."""
        assert self.journal is not None, "accept needs a live node (its journal)"
        packet = Packet(self.router.ids.root(), T(state), data, [], 64)

        def accepted(entry: Entry) -> None:
            self.net.note("inject", self.id, id=packet.id, state=state, data=data)
            self._admit(entry, [packet], fresh=True)

        self.journal.submit([packet], accepted)
        return packet

    def _admit(self, entry: Entry, batch: list[Packet], fresh: bool) -> None:
        """Route a journal entry's packets, each lineage's custody telling the journal when it is done here
        (``Daemon._admit``)."""
        assert self.journal is not None
        self.router.admit_lineages(batch, functools.partial(self.journal.release, entry), fresh)

    def make_durable(self, batch: list[Packet], then: Callable[[], None] | None) -> None:
        """The router's ``Outputs.make_durable``: journal ``batch``, then route it (``Daemon._make_durable``)."""
        assert self.journal is not None

        def journaled(entry: Entry) -> None:
            self._admit(entry, batch, fresh=False)
            if then is not None:
                then()

        self.journal.submit(batch, journaled)

    def resume(self) -> int:
        """Route again what the journal holds unfinished from earlier lives (a daemon's start); how many."""
        assert self.journal is not None
        entries = [e for e in self.journal.recover() if e.packets]
        for entry in entries:
            self.net.note("resume", self.id, ids=[p.id for p in entry.packets])
            self._admit(entry, entry.packets, fresh=False)
        return sum(len(e.packets) for e in entries)

    def write_tx(self, packet: Packet, seed: str) -> None:
        """An extractor's result file: durable ``TX_WRITE_S`` later (a crash first loses it); until then the
        packet is held (its sender gets no ACK), as ``Daemon._to_tx`` does."""
        hold(packet, 1)
        runner = self.runners.get(seed)
        if isinstance(runner, SimRunner):
            runner.unsettled += 1
        tx = self.outputs.tx
        assert tx is not None

        def written() -> None:
            if not self.alive:
                return  # the write never completed
            tx.add((seed, packet.id))
            self.net.note("tx", self.id, seed=seed, id=packet.id, data=packet.data)
            hold(packet, -1)
            if isinstance(runner, SimRunner):
                runner.settled()

        self.net.scheduler.call_later(TX_WRITE_S, written)

    def run_injector(self, seed: str) -> None:
        """Run an injector seed once; what it emits enters the network."""
        runner = self.runners[seed]
        assert isinstance(runner, SimRunner)
        outcome = runner.invoke(None)
        for e in outcome.emissions:
            self.net.note("inject", self.id, seed=seed, state=e.state or "", data=e.data)
        self.router.on_outcome(outcome)


class Net:
    """Nodes joined by a wire (``link``: the default link); ``drop`` decides which messages a test loses."""

    def __init__(
        self,
        tmp: Path,
        latency_s: float = 0.001,
        seed: int = 0,
        link: Link | None = None,
        history: History | None = None,
    ) -> None:
        self.tmp = tmp
        self.seed = seed
        self.clock = Clock(START_S)
        self.scheduler = Scheduler(self.clock)
        self.history = history if history is not None else History()
        self.wire = Wire(self.scheduler, random.Random(seed), self.history, link or Link(Fixed(latency_s)))
        self.nodes: dict[str, Node] = {}
        self.endpoints: dict[str, str] = {}  # endpoint -> the live node listening there
        self.subnet: dict[str, str] = {}  # node -> its broadcast domain (absent: DEFAULT_SUBNET)
        self.skew: dict[str, tuple[float, float]] = {}  # node -> its clock's (offset s, rate); absent: (0, 1)
        #: Nodes that hear no broadcast beacon (inbound broadcasts blocked, as by a host firewall): they are heard,
        #: and their links work.
        self.deaf: set[str] = set()
        self.fixed_ports: set[str] = set()  # nodes listening on STATIC_PORT (others named them as static peers)
        self._members: dict[str, list[str]] | None = None  # subnet -> live nodes with beacons, in order of adding
        self.links: dict[str, Links] = {}
        self.incs: Counter[str] = Counter()
        self.tx = True  # extractors write a tx folder, which a restart keeps (as the daemon's does)
        self.disks: dict[str, Disk] = {}  # node -> what it made durable (outlives its crashes)
        self.drop: Callable[[str, str, list[bytes]], bool] = lambda src, dst, frames: False
        self._decoded: tuple[bytes, Origin | MessageError] | None = None  # the beacon broadcast last decoded

    def disk(self, node_id: str) -> Disk:
        """``node_id``'s disk (the same for each of its incarnations)."""
        disk = self.disks.get(node_id)
        if disk is None:
            disk = self.disks[node_id] = Disk()
        return disk

    def note(self, name: str, node: str, **data: Any) -> None:
        self.history.add(Record(self.clock.now, "note", node, msg=name, data=data))

    def add(
        self, node_id: str, inc: int | None = None, *, live: bool = False, static_peers: Iterable[str] = ()
    ) -> Node:
        """A node (a fresh incarnation when ``node_id`` existed: the old one's memory is gone). ``live``: it
        beacons and runs its heartbeats, as a started daemon does; ``static_peers``: endpoints it greets."""
        inc = inc if inc is not None else self.incs[node_id] + 1
        self.incs[node_id] = max(self.incs[node_id], inc)
        automaton = Automaton()
        outputs = FakeOutputs()
        # A node's clock may be skewed (``Net.skew``): its mesh, peer table and router read it, its timers run on it.
        offset_s, rate = self.skew.get(node_id, (0.0, 1.0))
        clock: Callable[[], float] = (
            self.clock if (offset_s, rate) == (0.0, 1.0) else SkewedClock(self.clock, offset_s, rate)
        )
        timers = self.scheduler if rate == 1.0 else SkewedScheduler(self.scheduler, rate)
        ids = IdMaker(f"{zlib.crc32(node_id.encode()):08x}", seed=zlib.crc32(f"{self.seed}|{node_id}|{inc}".encode()))

        def make_router(remotes: Remotes) -> Router:
            return Router(
                node_id,
                automaton,
                ids,
                FailedStore(self.tmp / node_id / str(inc) / "failed"),
                WaitingRoom(1000, 600.0),
                remotes=remotes,
                outputs=outputs,  # type: ignore[arg-type]
                clock=clock,
            )

        peers = PeerTable(3 * HEARTBEAT_S, 10 * HEARTBEAT_S)
        links = self.links[node_id] = Links(self, node_id)
        holder: dict[str, Node] = {}

        def make_mesh(wake: Callable[[], None]) -> Mesh:
            return Mesh(
                node_id=node_id,
                host=f"host-{node_id}",
                me=lambda: holder["node"].origin(),
                local_seeds=lambda: [r.spec.summary() for r in holder["node"].runners.values()],
                local_load=dict,
                # As the daemon's: what each local seed handled, sent in PINGs for the pages' network-wide rates.
                local_done=lambda: {n: holder["node"].router.tally.of(n).processed for n in holder["node"].runners},
                router=make_router,
                peers=peers,
                heartbeat_s=HEARTBEAT_S,
                static_peers=tuple(static_peers),
                wake=wake,
            )

        port = STATIC_PORT if node_id in self.fixed_ports else inc % 65536
        driver = MeshDriver(
            links=links,
            scheduler=timers,
            clock=clock,
            mesh=make_mesh,
            beacon_to=(lambda host: self.beacon_to(node_id, host)) if live else no_beacons,
        )
        mesh = driver.mesh
        node = Node(self, node_id, inc, mesh.router, mesh, peers, outputs, driver, port=port, timers=timers)  # type: ignore[arg-type]
        holder["node"] = node
        self.nodes[node_id] = node
        self.endpoints[node.endpoint] = node_id
        if live:
            node.journal = SimJournal(self.disk(node_id), "default", ids, self.scheduler, lambda: node.alive)
            outputs.journal = node.make_durable
            node.beacons = Beacons(node.origin, driver.on_origin, decode=self._decode_beacon, wall=clock)
            self._members = None
            mesh.start(clock())
            # Daemons start at different moments: each beacons on a phase of its own.
            timers.call_later(self.wire.rng.uniform(0, HEARTBEAT_S), lambda: self._beacon(node))
        return node

    # -- discovery --------------------------------------------------------------------------------------------------

    def _beacon(self, node: Node) -> None:
        """The node's beacon loop (``BeaconDiscovery``'s): a broadcast every heartbeat while it lives (less
        often on a crowded subnet, see ``Beacons.pace``)."""
        if not node.alive:
            return
        assert node.beacons is not None
        gap = node.beacons.pace(HEARTBEAT_S)  # the daemon's pacing: a crowded subnet beacons less often
        self.broadcast(node)
        node.timers.call_later(gap, lambda: self._beacon(node))

    def members(self, subnet: str) -> list[str]:
        """The live nodes with beacons in ``subnet``."""
        if self._members is None:
            self._members = {}
            for n in self.nodes.values():
                if n.beacons is not None:
                    self._members.setdefault(self.subnet.get(n.id, DEFAULT_SUBNET), []).append(n.id)
        return self._members.get(subnet, [])

    def broadcast(self, node: Node) -> None:
        """One beacon from ``node`` to every other node of its subnet that the partition lets hear it."""
        assert node.beacons is not None
        data = node.beacons.datagram()
        src, wire, history = node.id, self.wire, self.history
        subnet = self.subnet.get(src, DEFAULT_SUBNET)
        mid = next(wire._ids)
        wire.sent += 1
        history.add(Record(self.clock.now, "send", src, "", BEACON, mid, data={"subnet": subnet}))

        def land() -> None:
            now, rng, links, default = self.clock.now, wire.rng, wire.links, wire.default
            for dst in self.members(subnet):
                if dst == src:
                    continue
                why = ""
                if dst in self.deaf:
                    why = "deaf"
                elif wire.cut(src, dst):
                    why = "partition"
                else:
                    loss = links.get((src, dst), default).loss
                    if loss and rng.random() < loss:
                        why = "loss"
                if why:
                    history.add(Record(now, "drop", src, dst, BEACON, mid, why))
                    continue
                wire.delivered += 1
                beacons = self.nodes[dst].beacons
                assert beacons is not None
                beacons.on_datagram(data, src)

        self.scheduler.call_later(wire.default.latency.sample(wire.rng), land)

    def _decode_beacon(self, data: bytes, membership: Membership | None) -> Origin:
        """``messages.decode_beacon``, once per broadcast: its receivers (all in one open network, so all decode
        alike) each get their own copy of the result, as each would have decoded its own."""
        if membership is not None:
            return decode_beacon(data, membership)
        last = self._decoded
        if last is None or last[0] is not data:
            try:
                last = self._decoded = (data, decode_beacon(data))
            except MessageError as exc:
                last = self._decoded = (data, exc)
        if isinstance(last[1], MessageError):
            raise last[1]
        origin = object.__new__(Origin)
        origin.__dict__.update(last[1].__dict__)  # a fresh Origin: what one receiver does with it is its own
        return origin

    def beacon_to(self, src: str, host: str) -> None:
        """A beacon from ``src`` to the node at ``host`` alone (``Mesh``'s ``beacon_to``): a unicast datagram;
        to ``BROADCAST``, one to its whole subnet now."""
        node = self.nodes.get(src)
        if node is None or node.beacons is None:
            return
        if host == BROADCAST:
            self.broadcast(node)
            return
        data = node.beacons.datagram(direct=True)

        def arrive() -> None:
            target = self.nodes.get(host)
            if target is not None and target.beacons is not None:
                target.beacons.on_datagram(data, src)

        self.wire.send(src, host, BEACON, {}, arrive)

    def introduce(self, a: Node, b: Node) -> None:
        """``a`` hears of ``b`` (as by a beacon)."""
        a.driver.on_origin(b.origin(), "broadcast")

    def meet(self, *nodes: Node) -> None:
        """Every node hears of every other, and their HELLOs are exchanged."""
        for a in nodes:
            for b in nodes:
                if a is not b:
                    self.introduce(a, b)
        self.scheduler.run_for(0.05)

    def kill(self, node_id: str) -> None:
        """The node dies: nothing reaches it, it sends nothing, its timers never fire."""
        node = self.nodes.pop(node_id)
        node.alive = False
        node.driver.halt()
        self.endpoints.pop(node.endpoint, None)
        self._members = None
        self.links.pop(node_id, None)
        self.history.add(Record(self.clock.now, "crash", node_id))

    def deliver(self, src: str, dst: str, frames: list[bytes]) -> None:
        first = bytes(frames[0])
        kind = first.decode() if first in messages.KINDS else "packets"
        if first == ACK:
            self.note("ack", src, to=dst)
        if self.drop(src, dst, frames):
            now = self.clock.now
            self.history.add(Record(now, "send", src, dst, kind))
            self.history.add(Record(now, "drop", src, dst, kind, why="dropped by the test"))
            return

        def arrive() -> None:
            node = self.nodes.get(dst)
            if node is None:
                return
            if first in messages.KINDS:
                node.mesh.handle(frames, "", node.driver.clock())
                return
            batch = codec.split_batch(frames)
            for one in batch:
                packet, to, sender = codec.decode_addressed(one)
                node.mesh.on_packet(packet, to, sender, node.driver.clock(), alone=len(batch) == 1)

        self.wire.send(src, dst, kind, {}, arrive, fifo=True)  # a ZeroMQ link is a TCP stream: in order


class Links:
    """A simulated node's links (its ``MeshDriver`` sends through them): messages go on the wire to the node the
    link points at; ``log`` records every connect, disconnect and send."""

    def __init__(self, net: Net, owner: str) -> None:
        self.net = net
        self.owner = owner
        self.links: dict[str, str] = {}  # node -> endpoint
        self.log: list[tuple[str, str, str]] = []  # ("connect" | "disconnect" | kind, node, endpoint)

    def connect(self, node: str, endpoint: str) -> None:
        if self.links.get(node) != endpoint:
            self.links[node] = endpoint
            self.log.append(("connect", node, endpoint))

    def disconnect(self, node: str) -> list[list[bytes]]:
        if self.links.pop(node, None) is not None:
            self.log.append(("disconnect", node, ""))
        return []

    def _send(self, node: str, frames: list[bytes]) -> bool:
        endpoint = self.links.get(node)
        if endpoint is None:
            return False
        self.log.append((bytes(frames[0]).decode(), node, endpoint))
        target = self.net.endpoints.get(endpoint)
        if target is not None:
            self.net.deliver(self.owner, target, frames)  # a link to an old endpoint reaches nobody
        return True

    send = _send
    send_packet = _send
    send_control = _send


# --- checkers over a history -------------------------------------------------------------------------------------


def exactly_once(history: History) -> list[Violation]:
    """Every accepted packet's lineage reached a sink, and no sink took the same packet twice.

    A sink with a tx folder *takes* a packet when its result file is durable (the ``tx`` note): its seed may run
    again on a packet whose result a crash of its node lost, as the daemon's may, but no file is written twice.
    A sink without one takes a packet each time its seed runs on it (the ``sink`` note)."""
    found: list[Violation] = []
    durable = {(r.node, r.data["seed"]) for r in history.notes("seeds") if r.data.get("tx")}
    takes = [r for r in history.notes("sink") if (r.node, r.data["seed"]) not in durable] + history.notes("tx")
    taken = Counter((r.node, r.data["seed"], r.data["id"]) for r in takes)
    for (node, seed, pid), n in sorted(taken.items()):
        if n > 1:
            first = next(r for r in takes if r.data["id"] == pid)
            found.append(Violation("exactly-once", first.t, f"{seed} on {node} took {pid} {n} times"))
    reached = {_lineage(r.data["id"]) for r in takes}
    for r in history.notes("inject"):
        if "id" in r.data and _lineage(r.data["id"]) not in reached:
            found.append(Violation("exactly-once", r.t, f"injected {r.data['id']} reached no sink"))
    return found


def routed_to_consumers(history: History) -> list[Violation]:
    """No packet ran in a seed that does not consume its state (a fragment's result, merged by the seed that split
    it, aside)."""
    inputs = {(r.node, r.data["seed"]): set(r.data["inputs"]) for r in history.notes("seeds")}
    found = []
    for r in history.notes("run"):
        if r.data.get("merge"):
            continue
        accepts = inputs.get((r.node, r.data["seed"]), set())
        if not any(_matches(r.data["state"], i) for i in accepts):
            found.append(Violation("routed-to-consumer", r.t, f"{r.data['seed']} on {r.node} ran on {r.data['state']}"))
    return found


CHECKERS = (exactly_once, routed_to_consumers)


def _lineage(pid: str) -> str:
    return pid.partition(":")[2].partition(":")[0]


def _matches(state: str, accepted: str) -> bool:
    return tags.parse(accepted).matches(tags.parse(state))
