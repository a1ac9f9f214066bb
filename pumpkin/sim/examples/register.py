"""A replicated register behind a round-robin gateway, and a checker that catches stale reads.

Clients write and read through one gateway, which numbers each write (its version) and forwards every request to
the next replica in turn. A replica applies a write, passes it on to the other replicas without waiting, and
acknowledges it ``SETTLE_S`` later, trusting the network to have delivered the copies by then. That holds while
no message is lost: when a copy is lost, a later read served by that replica returns an older value than a write
that had already completed, and ``stale_reads`` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pumpkin.sim.check import Checker, Violation
from pumpkin.sim.history import History
from pumpkin.sim.links import Link, Uniform
from pumpkin.sim.network import Network
from pumpkin.sim.node import Node, handles
from pumpkin.sim.swarm import Scenario

SETTLE_S = 0.05  # longer than the longest latency below: without loss every copy has arrived by then
LATENCY = Uniform(0.001, 0.01)
CLIENT_TIMEOUT_S = 0.5
THINK_S = 0.02


@dataclass
class Write:
    client: str
    req: int
    value: str
    version: int = 0


@dataclass
class Read:
    client: str
    req: int


@dataclass
class Replicate:
    value: str
    version: int


@dataclass
class WriteOk:
    req: int
    version: int


@dataclass
class ReadOk:
    req: int
    value: str
    version: int


class Gateway(Node):
    """Numbers writes and forwards each request to the next replica, round robin."""

    def __init__(self, replicas: list[str]) -> None:
        self.replicas = replicas
        self.turn = 0
        self.version = 0

    def next_replica(self) -> str:
        replica = self.replicas[self.turn % len(self.replicas)]
        self.turn += 1
        return replica

    @handles("Write")
    def write(self, msg: Write, sender: str) -> None:
        self.version += 1
        self.send(self.next_replica(), Write(msg.client, msg.req, msg.value, self.version))

    @handles("Read")
    def read(self, msg: Read, sender: str) -> None:
        self.send(self.next_replica(), msg)


class Replica(Node):
    """Holds the value with the highest version it has seen; copies writes to the others without waiting."""

    def __init__(self, replicas: list[str]) -> None:
        self.others = replicas
        self.value, self.version = "", 0
        self.acks: dict[str, tuple[str, WriteOk]] = {}  # timer name -> (client, its acknowledgement)

    def apply(self, value: str, version: int) -> None:
        if version > self.version:  # copies may arrive late, twice, or out of order
            self.value, self.version = value, version

    @handles("Write")
    def write(self, msg: Write, sender: str) -> None:
        self.apply(msg.value, msg.version)
        for other in self.others:
            if other != self.id:
                self.send(other, Replicate(msg.value, msg.version))
        name = f"ack {msg.client} {msg.req}"
        self.acks[name] = (msg.client, WriteOk(msg.req, msg.version))
        self.set_timer(SETTLE_S, name)

    @handles("Replicate")
    def replicate(self, msg: Replicate, sender: str) -> None:
        self.apply(msg.value, msg.version)

    @handles("Read")
    def read(self, msg: Read, sender: str) -> None:
        self.send(msg.client, ReadOk(msg.req, self.value, self.version))

    def on_timer(self, name: str) -> None:
        client, ok = self.acks.pop(name)
        self.send(client, ok)


class Client(Node):
    """Writes and reads in turn (chosen at random), one request at a time; gives up on one after a timeout."""

    def __init__(self, gateway: str, ops: int) -> None:
        self.gateway = gateway
        self.ops = ops
        self.req = 0
        self.waiting: str | None = None

    def on_start(self) -> None:
        self.set_timer(THINK_S, "next")

    def on_timer(self, name: str) -> None:
        if name == "timeout" and self.waiting is not None:
            self.record("fail", req=self.req, op=self.waiting)
            self.waiting = None
        if self.req >= self.ops:
            return
        self.req += 1
        if self.random.random() < 0.5:
            value = f"{self.id}.{self.req}"
            self.waiting = "write"
            self.record("invoke", req=self.req, op="write", value=value)
            self.send(self.gateway, Write(self.id, self.req, value))
        else:
            self.waiting = "read"
            self.record("invoke", req=self.req, op="read")
            self.send(self.gateway, Read(self.id, self.req))
        self.set_timer(CLIENT_TIMEOUT_S, "timeout")

    def done(self, req: int) -> bool:
        if req != self.req or self.waiting is None:
            return False  # a late or duplicated answer to a request given up on
        self.waiting = None
        self.cancel_timer("timeout")
        self.set_timer(THINK_S, "next")
        return True

    @handles("WriteOk")
    def write_ok(self, msg: WriteOk, sender: str) -> None:
        if self.done(msg.req):
            self.record("ok", req=msg.req, op="write", version=msg.version)

    @handles("ReadOk")
    def read_ok(self, msg: ReadOk, sender: str) -> None:
        if self.done(msg.req):
            self.record("ok", req=msg.req, op="read", value=msg.value, version=msg.version, source=sender)


def stale_reads(history: History) -> list[Violation]:
    """Linearizability, lite: a read returns the latest write completed before it began, or a newer one."""
    latest = 0  # the highest version of a completed write so far
    floor: dict[tuple[str, int], int] = {}  # (client, req) of a read -> ``latest`` when it began
    found = []
    for r in history:
        if r.kind != "note":
            continue
        key = (r.node, r.data["req"])
        if r.msg == "invoke" and r.data["op"] == "read":
            floor[key] = latest
        elif r.msg == "ok" and r.data["op"] == "write":
            latest = max(latest, r.data["version"])
        elif r.msg == "ok" and r.data["op"] == "read" and r.data["version"] < floor[key]:
            found.append(
                Violation(
                    "stale_reads",
                    r.t,
                    f"{r.node} read version {r.data['version']} ({r.data['value']!r}) from {r.data['source']}"
                    f" after version {floor[key]} had been acknowledged",
                )
            )
    return found


CHECKERS: list[Checker] = [stale_reads]
REPLICAS = ["r1", "r2", "r3"]


def build(net: Network, clients: int = 2, ops: int = 30) -> None:
    """The scenario: a gateway, three replicas and ``clients`` clients; every link with ``LATENCY``."""
    net.add("gateway", lambda: Gateway(REPLICAS))
    for r in REPLICAS:
        net.add(r, lambda: Replica(REPLICAS))
    for i in range(1, clients + 1):
        net.add(f"c{i}", lambda: Client("gateway", ops))


def run(seed: int, loss: float = 0.0, duration_s: float = 10.0) -> Network:
    """One run of the scenario with ``loss`` on every link."""
    net = Network(seed, Link(LATENCY, loss=loss))
    build(net)
    net.run(duration_s)
    return net


def _build(net: Network) -> None:
    build(net)


SCENARIO = Scenario(_build, CHECKERS, duration_s=10.0, link=Link(LATENCY))
