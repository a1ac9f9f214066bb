"""Leader election with terms (Raft's, section 5.2), and a checker that no term ever has two leaders.

Each node waits a random election timeout; hearing nothing from a leader, it starts a term of its own (one
higher), votes for itself and asks everyone for votes. A node grants one vote per term, to the first candidate
that asks, and keeps its current term and vote on its ``disk`` so a crash cannot make it vote twice. A candidate
with votes from a majority of *all* nodes leads its term and sends heartbeats; anyone who hears of a higher
term steps down to it.

``Naive`` counts a majority of the nodes that answered it instead ("the silent ones must be down"): on the small
side of a partition it leads a term while the big side elects another leader for the same term, and
``one_leader_per_term`` reports it.

    python -m pumpkin.sim swarm pumpkin.sim.examples.election --seeds 100 --faults          # none fail
    python -m pumpkin.sim swarm pumpkin.sim.examples.election:NAIVE --seeds 100 --faults    # some do
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pumpkin.sim.check import Checker, Violation
from pumpkin.sim.history import History
from pumpkin.sim.links import Link, Uniform
from pumpkin.sim.network import Network
from pumpkin.sim.node import Node, handles
from pumpkin.sim.swarm import Scenario

NODES = 5
ELECTION_S = (0.15, 0.3)  # Raft's suggested 150-300 ms: a random timeout keeps candidates from colliding forever
HEARTBEAT_S = 0.05
ANSWER_S = 0.1  # how long Naive waits for answers before it counts them
LATENCY = Uniform(0.002, 0.01)


@dataclass
class RequestVote:
    term: int


@dataclass
class Vote:
    term: int
    granted: bool


@dataclass
class Heartbeat:
    term: int


class Raft(Node):
    """One node of a Raft-style election: follower, candidate or leader of its current term."""

    def on_start(self) -> None:
        self.role = "follower"
        self.votes: set[str] = set()
        self.answered: set[str] = set()
        self.wait()

    # Term and vote: kept on the disk (Raft's persistent state), so a restart remembers them.
    @property
    def term(self) -> int:
        return int(self.disk.get("term", 0))

    @property
    def voted_for(self) -> str | None:
        return self.disk.get("voted_for")

    def keep(self, term: int, voted_for: str | None) -> None:
        self.disk["term"], self.disk["voted_for"] = term, voted_for

    @property
    def others(self) -> list[str]:
        return [n for n in self.net.factories if n != self.id]

    def wait(self) -> None:
        self.set_timer(self.random.uniform(*ELECTION_S), "election")

    def on_timer(self, name: str) -> None:
        if name == "election" and self.role != "leader":
            self.stand()
        elif name == "heartbeat" and self.role == "leader":
            for n in self.others:
                self.send(n, Heartbeat(self.term))
            self.set_timer(HEARTBEAT_S, "heartbeat")
        elif name == "count" and self.role == "candidate":
            self.count()

    def stand(self) -> None:
        self.role = "candidate"
        self.keep(self.term + 1, self.id)
        self.votes, self.answered = {self.id}, {self.id}
        self.record("candidate", term=self.term)
        for n in self.others:
            self.send(n, RequestVote(self.term))
        self.wait()

    def majority(self) -> bool:
        return len(self.votes) > (len(self.others) + 1) // 2

    def count(self) -> None:
        """Only Naive counts on a timer."""

    def lead(self) -> None:
        self.role = "leader"
        self.record("leader", term=self.term)
        self.cancel_timer("election")
        self.on_timer("heartbeat")

    def follow(self, term: int) -> None:
        """A higher term exists: step down to it (no vote cast in it yet)."""
        if term > self.term:
            self.keep(term, None)
        if self.role != "follower":
            self.role = "follower"
            self.cancel_timer("heartbeat")

    @handles("RequestVote")
    def on_request(self, msg: RequestVote, sender: str) -> None:
        if msg.term > self.term:
            self.follow(msg.term)
        granted = msg.term == self.term and self.voted_for in (None, sender)
        if granted:
            self.keep(self.term, sender)
            self.wait()
        self.send(sender, Vote(self.term, granted))

    @handles("Vote")
    def on_vote(self, msg: Vote, sender: str) -> None:
        if msg.term > self.term:
            self.follow(msg.term)
            self.wait()
            return
        if self.role != "candidate" or msg.term != self.term:
            return
        self.answered.add(sender)
        if msg.granted:
            self.votes.add(sender)
            if self.majority():
                self.lead()

    @handles("Heartbeat")
    def on_heartbeat(self, msg: Heartbeat, sender: str) -> None:
        if msg.term >= self.term:
            self.follow(msg.term)
            self.wait()


class Naive(Raft):
    """Wins with a majority of the nodes that answered within ``ANSWER_S``: wrong under a partition."""

    def stand(self) -> None:
        super().stand()
        self.set_timer(ANSWER_S, "count")

    def majority(self) -> bool:
        return False  # decided by count(), once the answers are in

    def count(self) -> None:
        if len(self.votes) > len(self.answered) // 2 and len(self.answered) > 1:
            self.lead()


def one_leader_per_term(history: History) -> list[Violation]:
    """No term has two different leaders (Raft's Election Safety)."""
    leaders: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for r in history.notes("leader"):
        leaders[r.data["term"]].append((r.t, r.node))
    found = []
    for term, won in sorted(leaders.items()):
        names = sorted({n for _, n in won})
        if len(names) > 1:
            found.append(Violation("one_leader_per_term", won[-1][0], f"term {term} has leaders {', '.join(names)}"))
    return found


def some_leader(history: History) -> list[Violation]:
    """Somebody led at some point (the election makes progress at all)."""
    if history.notes("leader"):
        return []
    end = history.records[-1].t if history.records else 0.0
    return [Violation("some_leader", end, "nobody was ever elected")]


CHECKERS: list[Checker] = [one_leader_per_term, some_leader]


def build(net: Network, kind: type[Raft] = Raft, nodes: int = NODES) -> None:
    for i in range(nodes):
        net.add(f"n{i}", kind)


def run(seed: int, kind: type[Raft] = Raft, partition_until: float | None = None, duration_s: float = 3.0) -> Network:
    """One run of five ``kind`` nodes; ``partition_until``: split 2 | 3 from the start until then."""
    net = Network(seed, Link(LATENCY))
    build(net, kind)
    if partition_until is not None:
        net.partition(["n0", "n1"], ["n2", "n3", "n4"])
        net.at(partition_until, net.heal)
    net.run(duration_s)
    return net


SCENARIO = Scenario(build, CHECKERS, duration_s=3.0, link=Link(LATENCY))
NAIVE = Scenario(lambda net: build(net, Naive), CHECKERS, duration_s=3.0, link=Link(LATENCY))
