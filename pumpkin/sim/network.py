"""A network of user-written nodes on the simulated wire, with faults on a schedule.

    net = Network(seed=7, link=Link(Uniform(0.001, 0.01), loss=0.1))
    net.build(complete(["a", "b", "c"]), Gossiper)
    net.at(2.0, net.partition, ["a"], ["b", "c"])
    net.at(5.0, net.heal)
    net.run(10.0)
    violations = check(net.history, [everyone_heard])

Everything random (latencies, losses, the nodes' own choices through ``self.random``) comes from one
``random.Random(seed)``: the same scenario under the same seed gives the same history, byte for byte.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pumpkin.sim.clock import Clock, Handle, Scheduler
from pumpkin.sim.history import History, Record
from pumpkin.sim.links import Link
from pumpkin.sim.node import Node, SimError
from pumpkin.sim.wire import Wire

NodeFactory = Callable[[], Node]


def body(msg: object) -> dict[str, Any]:
    """A message as plain data for the history."""
    if dataclasses.is_dataclass(msg) and not isinstance(msg, type):
        return dataclasses.asdict(msg)
    return {"repr": repr(msg)}


class Network:
    """Nodes, the wire between them, and the virtual clock; ``run`` plays it forward."""

    def __init__(self, seed: int = 0, link: Link | None = None, *, record_bodies: bool = True) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.scheduler = Scheduler(self.clock)
        self.history = History()
        self.wire = Wire(self.scheduler, self.rng, self.history, link)
        self.nodes: dict[str, Node] = {}
        self.factories: dict[str, NodeFactory] = {}
        self.neighbours: dict[str, tuple[str, ...]] | None = None  # None: anyone may send to anyone
        self.record_bodies = record_bodies
        self.disks: dict[str, dict[str, Any]] = {}  # node -> what it stored durably (outlives its crashes)
        self._timers: dict[tuple[str, str], Handle] = {}

    # -- building --------------------------------------------------------------------------------------------------

    def add(self, node_id: str, factory: NodeFactory, neighbours: Iterable[str] = ()) -> Node:
        """Start a node made by ``factory`` (a Node subclass, or a function returning a fresh node)."""
        if node_id in self.factories:
            raise SimError(f"two nodes called {node_id!r}")
        self.factories[node_id] = factory
        if self.neighbours is not None or neighbours:
            self.neighbours = self.neighbours or {}
            self.neighbours[node_id] = tuple(neighbours)
        return self._start(node_id)

    def build(self, topology: Mapping[str, Iterable[str]], factory: NodeFactory) -> None:
        """Add every node of ``topology``, each made by ``factory``; only neighbours can reach each other."""
        self.neighbours = self.neighbours or {}
        for node_id, near in topology.items():
            self.neighbours[node_id] = tuple(near)
            self.factories[node_id] = factory
        for node_id in topology:
            self._start(node_id)

    def set_link(self, a: str, b: str, link: Link, both_ways: bool = True) -> None:
        self.wire.set_link(a, b, link, both_ways)

    def _start(self, node_id: str) -> Node:
        node = self.factories[node_id]()
        if not isinstance(node, Node):
            raise SimError(f"the factory of {node_id!r} made a {type(node).__name__}, not a pumpkin.sim.Node")
        node.id = node_id
        node._net = self
        if self.neighbours is not None:
            node.neighbours = self.neighbours.get(node_id, ())
        self.nodes[node_id] = node
        node.on_start()
        return node

    # -- faults ----------------------------------------------------------------------------------------------------

    def at(self, when_s: float, action: Callable[..., object], *args: Any) -> None:
        """Do ``action(*args)`` at virtual time ``when_s`` (a fault schedule: crash, restart, partition, heal...)."""
        self.scheduler.call_at(when_s, lambda: action(*args))

    def crash(self, node_id: str) -> None:
        """The node stops: its timers never fire, messages to it are dropped, its memory is gone (its ``disk``
        stays)."""
        if node_id in self.wire.down:
            return
        self.wire.down.add(node_id)
        for key in [k for k in self._timers if k[0] == node_id]:
            self._timers.pop(key).cancel()
        self.history.add(Record(self.clock.now, "crash", node_id))

    def restart(self, node_id: str) -> None:
        """A crashed node comes back as a fresh instance (``on_start`` runs again)."""
        if node_id not in self.wire.down:
            return
        self.wire.down.discard(node_id)
        self.history.add(Record(self.clock.now, "restart", node_id))
        self._start(node_id)

    def partition(self, *groups: Iterable[str]) -> None:
        self.wire.partition(*groups)

    def heal(self) -> None:
        self.wire.heal()

    def set_loss(self, loss: float) -> None:
        """Change the loss of the default link from now on (a loss burst, and its end)."""
        self.wire.default = dataclasses.replace(self.wire.default, loss=loss)

    # -- what nodes call -------------------------------------------------------------------------------------------

    def send(self, src: str, dst: str, msg: object) -> None:
        kind = type(msg).__name__
        data = body(msg) if self.record_bodies else {}
        if self.neighbours is not None and dst not in self.neighbours.get(src, ()):
            now = self.clock.now
            self.history.add(Record(now, "send", src, dst, kind, 0, data=data))
            self.history.add(Record(now, "drop", src, dst, kind, 0, "no link"))
            return

        def arrive() -> None:
            self.nodes[dst].dispatch(msg, src)

        if dst not in self.factories:
            raise SimError(f"{src!r} sent {kind} to {dst!r}, which is not in the network")
        self.wire.send(src, dst, kind, data, arrive)

    def set_timer(self, node: Node, delay_s: float, name: str) -> None:
        key = (node.id, name)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.history.add(Record(self.clock.now, "timer", node.id, msg=name))
            node.on_timer(name)

        self._timers[key] = self.scheduler.call_later(delay_s, fire)

    def cancel_timer(self, node: Node, name: str) -> None:
        handle = self._timers.pop((node.id, name), None)
        if handle is not None:
            handle.cancel()

    def note(self, node_id: str, name: str, data: dict[str, Any]) -> None:
        self.history.add(Record(self.clock.now, "note", node_id, msg=name, data=data))

    # -- running ---------------------------------------------------------------------------------------------------

    def run(self, until_s: float) -> History:
        """Play the network forward to virtual time ``until_s``; returns the history so far."""
        self.scheduler.run(until_s)
        return self.history
