"""Rumour spreading by push gossip, and a checker that every node ends up with the rumour.

One node starts with a rumour. Every ``ROUND_S`` each node that has it tells a neighbour chosen at random, and it
keeps doing so for ``ROUNDS`` rounds after learning it (so a lost message, or a partition that heals in time, costs
only time). ``everyone_heard`` fails when some node never heard it by the end of the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from pumpkin.sim.check import Checker, Violation
from pumpkin.sim.history import History
from pumpkin.sim.links import Link, LogNormal
from pumpkin.sim.network import Network
from pumpkin.sim.node import Node, handles
from pumpkin.sim.swarm import Scenario
from pumpkin.sim.topology import random_graph

ROUND_S = 0.1
ROUNDS = 40
LATENCY = LogNormal(0.005, 0.5)


@dataclass
class Rumour:
    text: str


class Gossiper(Node):
    """Pushes the rumour to a random neighbour each round, for ``rounds`` rounds after hearing it."""

    rounds = ROUNDS

    def __init__(self) -> None:
        self.rumour: str | None = None
        self.left = 0

    def on_start(self) -> None:
        if self.id == "n0":
            self.hear("the cake is a lie")

    def hear(self, text: str) -> None:
        if self.rumour is None:
            self.rumour = text
            self.left = self.rounds
            self.record("heard", text=text)
            self.set_timer(ROUND_S, "round")

    @handles("Rumour")
    def rumour_in(self, msg: Rumour, sender: str) -> None:
        self.hear(msg.text)

    def on_timer(self, name: str) -> None:
        if self.rumour is not None and self.left > 0 and self.neighbours:
            self.left -= 1
            self.send(self.neighbours[self.random.randrange(len(self.neighbours))], Rumour(self.rumour))
            self.set_timer(ROUND_S, "round")


def everyone_heard(history: History) -> list[Violation]:
    """Every node that ever ran (sent, received or started) heard the rumour by the end."""
    nodes = {r.node for r in history if r.kind in ("send", "deliver", "timer", "note")}
    nodes |= {r.peer for r in history if r.kind == "send"}
    heard = {r.node for r in history.notes("heard")}
    end = history.records[-1].t if history.records else 0.0
    return [Violation("everyone_heard", end, f"{n} never heard the rumour") for n in sorted(nodes - heard)]


CHECKERS: list[Checker] = [everyone_heard]


def build(net: Network, nodes: int = 20, degree: int = 4) -> None:
    names = [f"n{i}" for i in range(nodes)]
    net.build(random_graph(names, degree, net.rng), Gossiper)


def run(seed: int, loss: float = 0.0, partition: tuple[float, float] | None = None, nodes: int = 20) -> Network:
    """One run; ``partition`` = (from, until) cuts the network in two halves for that window."""
    net = Network(seed, Link(LATENCY, loss=loss))
    build(net, nodes)
    if partition is not None:
        names = sorted(net.nodes)
        net.at(partition[0], net.partition, names[: nodes // 2], names[nodes // 2 :])
        net.at(partition[1], net.heal)
    net.run(ROUND_S * ROUNDS * 2)
    return net


def _build(net: Network) -> None:
    build(net)


SCENARIO = Scenario(_build, CHECKERS, duration_s=ROUND_S * ROUNDS * 2, link=Link(LATENCY))
