"""A network of meshes and routers without sockets or threads: virtual time, a wire that can lose or hold
messages, and seed runners the test drives by hand. The custody, retransmission and incarnation logic runs
here exactly as in the daemon; only the I/O is fake. Time, the event queue and the wire are pumpkin.sim's."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pumpkin import messages, tags
from pumpkin import packet as codec
from pumpkin.automaton import Automaton, SeedInfo
from pumpkin.failed import FailedStore
from pumpkin.mesh import Mesh
from pumpkin.messages import Origin
from pumpkin.packet import IdMaker, Packet
from pumpkin.peers import PeerTable
from pumpkin.router import Remotes, Router
from pumpkin.runner import Emission, Outcome
from pumpkin.seed import SeedSpec
from pumpkin.sim.clock import Clock, Scheduler
from pumpkin.sim.history import History, Record
from pumpkin.sim.links import Fixed, Link
from pumpkin.sim.wire import Wire
from pumpkin.waiting import WaitingRoom

T = tags.parse
HEARTBEAT_S = 0.5
START_S = 1000.0  # virtual time starts well past 0, as a monotonic clock does

__all__ = ["Clock", "Scheduler"]


class FakeRunner:
    """A seed runner whose packets wait in ``got`` until the test finishes them (``finish``)."""

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


class FakeOutputs:
    """The router's ``Outputs``, off until a test sets a hook: ``on_extracted`` (a tx folder), ``journal``."""

    def __init__(self) -> None:
        self.on_extracted: Callable[[Packet, str], None] | None = None
        self.journal: Callable[[list[Packet], Callable[[], None] | None], None] | None = None

    @property
    def durable(self) -> bool:
        return self.journal is not None

    def made(self, packet: Packet) -> None:
        pass

    def extracted(self, packet: Packet, seed: str) -> None:
        if self.on_extracted is not None:
            self.on_extracted(packet, seed)

    def done_before(self, seed: str, packet: Packet) -> bool:
        return False

    def make_durable(self, batch: list[Packet], then: Callable[[], None] | None) -> None:
        assert self.journal is not None
        self.journal(batch, then)


def spec(name: str, ins: tuple[str, ...] = (), outs: tuple[str, ...] = (), workers: int = 1) -> SeedSpec:
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
    runners: dict[str, FakeRunner] = field(default_factory=dict)

    def origin(self) -> Origin:
        return Origin(self.id, f"tcp://{self.id}:{self.inc % 65536}", None, f"host-{self.id}", "dg", inc=self.inc)

    def add_seed(self, s: SeedSpec) -> FakeRunner:
        runner = FakeRunner(s)
        self.runners[s.name] = runner
        self.router.local[s.name] = runner  # type: ignore[assignment]
        self.router.automaton.add(self.id, SeedInfo(s.name, s.inputs, s.outputs))
        self.router.replan()
        return runner

    def finish(self, seed: str, emit: Callable[[Any], list[Any]] = lambda data: [data], n: int | None = None) -> int:
        """Run ``seed`` on up to ``n`` of the packets it holds, emitting ``emit(data)``; returns how many ran."""
        runner = self.runners[seed]
        todo, runner.got = runner.got[:n], runner.got[n:] if n is not None else []
        for packet in todo:
            outcome = Outcome(runner, packet, [Emission(None, d) for d in emit(packet.data)])  # type: ignore[arg-type]
            self.router.on_outcome(outcome)
        return len(todo)

    def inject(self, state: str, data: Any, custody: Any = None) -> Packet:
        packet = Packet(self.router.ids.root(), T(state), data, [], 64)
        packet.custody = custody
        self.router.admit(packet)
        if custody is not None:
            custody.settle()
        return packet


class Net:
    """Nodes joined by a wire with a fixed latency; ``drop`` decides which messages are lost."""

    def __init__(self, tmp: Path, latency_s: float = 0.001) -> None:
        self.tmp = tmp
        self.clock = Clock(START_S)
        self.scheduler = Scheduler(self.clock)
        self.history = History()
        self.wire = Wire(self.scheduler, random.Random(0), self.history, Link(Fixed(latency_s)))
        self.nodes: dict[str, Node] = {}
        self.links: dict[str, Links] = {}
        self.drop: Callable[[str, str, list[bytes]], bool] = lambda src, dst, frames: False
        self.sent: list[tuple[str, str, bytes]] = []  # (src, dst, kind) of every message put on the wire

    def add(self, node_id: str, inc: int = 1) -> Node:
        """A node (a fresh incarnation when ``node_id`` existed: the old one's memory is gone)."""
        automaton = Automaton()
        outputs = FakeOutputs()

        def make_router(remotes: Remotes) -> Router:
            return Router(
                node_id,
                automaton,
                IdMaker(f"{abs(hash(node_id)) % 16**8:08x}"),
                FailedStore(self.tmp / node_id / str(inc) / "failed"),
                WaitingRoom(1000, 600.0),
                remotes=remotes,
                outputs=outputs,
                clock=self.clock,
            )

        peers = PeerTable(3 * HEARTBEAT_S, 10 * HEARTBEAT_S, clock=self.clock)
        links = self.links[node_id] = Links(self, node_id)
        holder: dict[str, Node] = {}

        def learn(node: str, endpoint: str, seeds: list[SeedInfo], via: str) -> bool:
            links.connect(node, endpoint)
            peer, _ = peers.heard(node, endpoint, via)
            peer.seeds = list(seeds)
            changed = automaton.sync_node(node, seeds)
            if changed:
                holder["node"].router.replan()
            return changed

        def forget(node: str) -> None:
            peers.leave(node)
            automaton.remove_node(node)
            links.disconnect(node)
            holder["node"].router.replan()

        mesh = Mesh(
            node_id=node_id,
            host=f"host-{node_id}",
            me=lambda: holder["node"].origin(),
            local_seeds=lambda: [r.spec.summary() for r in holder["node"].runners.values()],
            local_load=dict,
            transport=links,
            router=make_router,
            peers=peers,
            learn=learn,
            forget=forget,
            heartbeat_s=HEARTBEAT_S,
            scheduler=self.scheduler,
            clock=self.clock,
        )
        node = holder["node"] = Node(self, node_id, inc, mesh.router, mesh, peers, outputs)  # type: ignore[arg-type]
        self.nodes[node_id] = node
        return node

    def introduce(self, a: Node, b: Node) -> None:
        """``a`` hears of ``b`` (as by a beacon)."""
        a.mesh.on_origin(b.origin(), "broadcast")

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
        node.mesh._stopped = True
        for timer in (node.mesh._beat, node.mesh._tick):
            if timer is not None:
                timer.cancel()
        self.links.pop(node_id, None)

    def deliver(self, src: str, dst: str, frames: list[bytes]) -> None:
        first = bytes(frames[0])
        self.sent.append((src, dst, first))
        kind = first.decode() if first in messages.KINDS else "packets"
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
                node.mesh.handle(frames)
                return
            batch = codec.split_batch(frames)
            for one in batch:
                packet, to, sender = codec.decode_addressed(one)
                node.mesh.on_packet(packet, to, sender, alone=len(batch) == 1)

        self.wire.send(src, dst, kind, {}, arrive)


class Links:
    """The transport seam: messages go on the wire to the node the link points at."""

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
        target = self.net.nodes.get(node)
        if target is not None and target.origin().tcp == endpoint:
            self.net.deliver(self.owner, node, frames)  # a link to an old endpoint reaches nobody
        return True

    send = _send
    send_packet = _send
    send_control = _send
