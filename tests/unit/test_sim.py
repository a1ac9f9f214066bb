"""pumpkin.sim: the engine (time, links, faults, history), the algorithms API, its examples, swarm and timeline."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from pumpkin.sim import (
    Fixed,
    History,
    Link,
    LogNormal,
    Network,
    Node,
    Normal,
    SimError,
    Uniform,
    check,
    handles,
    invariant,
    timeline,
)
from pumpkin.sim import swarm as sw
from pumpkin.sim.examples import election, gossip, register

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Ping:
    n: int


class Echo(Node):
    """Answers each Ping with the next number; ``a`` starts, and pings once a second by timer too."""

    def __init__(self) -> None:
        self.got: list[int] = []

    def on_start(self) -> None:
        if self.id == "a":
            self.set_timer(1.0, "tick")

    def on_timer(self, name: str) -> None:
        self.send("b", Ping(0))
        self.set_timer(1.0, "tick")

    @handles("Ping")
    def ping(self, msg: Ping, sender: str) -> None:
        self.got.append(msg.n)
        if msg.n < 3:
            self.send(sender, Ping(msg.n + 1))


class ByName(Node):
    def __init__(self) -> None:
        self.got: list[tuple[int, str]] = []

    def on_Ping(self, msg: Ping, sender: str) -> None:  # noqa: N802 (handlers may be named after the message type)
        self.got.append((msg.n, sender))


def pair(seed: int = 1, link: Link | None = None) -> Network:
    net = Network(seed, link or Link(Fixed(0.01)))
    net.add("a", Echo)
    net.add("b", Echo)
    return net


def test_messages_and_timers_run_on_virtual_time_and_are_recorded():
    net = pair()
    net.run(1.5)
    a, b = net.nodes["a"], net.nodes["b"]
    assert (a.got, b.got) == ([1, 3], [0, 2])  # type: ignore[attr-defined]
    kinds = [(r.kind, r.node, r.msg) for r in net.history]
    assert kinds[:3] == [("timer", "a", "tick"), ("send", "a", "Ping"), ("deliver", "b", "Ping")]
    deliveries = net.history.of("deliver")
    assert [round(r.t, 6) for r in deliveries] == [1.01, 1.02, 1.03, 1.04]
    assert net.history.of("send")[0].data == {"n": 0}


def test_a_handler_is_found_by_its_name_too_and_a_missing_one_is_an_error():
    net = Network(0)
    receiver = net.add("r", ByName)
    net.add("s", Echo)
    net.send("s", "r", Ping(5))
    net.send("r", "s", "not a ping")
    with pytest.raises(SimError, match="Echo 's' has no handler for str from 'r'"):
        net.run(1.0)
    assert receiver.got == [(5, "s")]  # type: ignore[attr-defined]


def test_the_same_seed_gives_the_same_history_byte_for_byte_and_another_seed_differs():
    def run(seed: int) -> str:
        return register.run(seed, loss=0.1).history.to_jsonl()

    assert run(3) == run(3)
    assert run(3) != run(4)
    assert len(run(3).splitlines()) > 500


def test_a_history_survives_json_lines(tmp_path):
    history = register.run(1, loss=0.1).history
    history.write(tmp_path / "h.jsonl")
    again = History.read(tmp_path / "h.jsonl")
    assert again.to_jsonl() == history.to_jsonl()
    assert {r.why for r in again.of("drop")} == {"loss"}


@pytest.mark.parametrize(
    "latency, low, high",
    [(Fixed(0.2), 0.2, 0.2), (Uniform(0.1, 0.3), 0.1, 0.3), (Normal(0.2, 0.05), 0.0, 1.0), (LogNormal(0.2, 0.3), 0, 2)],
)
def test_latencies_follow_their_distribution(latency, low, high):
    rng = random.Random(0)
    samples = [latency.sample(rng) for _ in range(2000)]
    assert low <= min(samples) and max(samples) <= high
    assert sum(samples) / len(samples) == pytest.approx(0.2, rel=0.1)


def test_loss_duplication_and_reordering_happen_at_their_rates():
    rng = random.Random(0)
    lossy = [Link(Fixed(0.01), loss=0.2).fate(rng) for _ in range(5000)]
    assert sum(1 for f in lossy if not f) / 5000 == pytest.approx(0.2, abs=0.02)
    dup = [Link(Fixed(0.01), duplicate=0.1).fate(rng) for _ in range(5000)]
    assert sum(1 for f in dup if len(f) == 2) / 5000 == pytest.approx(0.1, abs=0.015)
    late = [Link(Fixed(0.01), reorder=0.3, reorder_delay=Fixed(1.0)).fate(rng)[0] for _ in range(5000)]
    assert sum(1 for d in late if d > 1) / 5000 == pytest.approx(0.3, abs=0.02)


def test_reordered_messages_are_overtaken():
    net = Network(2, Link(Uniform(0.001, 0.002), reorder=0.5, reorder_delay=Fixed(0.1)))
    receiver = net.add("r", ByName)
    net.add("s", Echo)
    for n in range(20):
        net.send("s", "r", Ping(n))
    net.run(1.0)
    got = [n for n, _ in receiver.got]  # type: ignore[attr-defined]
    assert sorted(got) == list(range(20)) and got != list(range(20))


def test_a_partition_drops_messages_across_it_until_it_heals():
    net = pair()
    net.at(1.5, net.partition, ["a"], ["b"])
    net.at(3.5, net.heal)
    net.run(4.5)
    drops = net.history.of("drop")
    assert [(round(r.t, 2), r.why) for r in drops] == [(2.0, "partition"), (3.0, "partition")]
    assert [r.kind for r in net.history.of("partition", "heal")] == ["partition", "heal"]
    assert round(net.history.of("deliver")[-1].t, 2) == 4.04  # after the heal, the ping-pong runs again


def test_a_crashed_node_loses_its_timers_and_messages_and_restarts_fresh():
    net = pair()
    net.at(1.035, net.crash, "a")  # a has had Ping(1); Ping(3) is on its way
    net.at(2.5, net.restart, "a")
    net.run(3.5)
    why = [(r.node, r.peer, r.why) for r in net.history.of("drop")]
    assert why == [("b", "a", "receiver down")]
    assert [r.t for r in net.history.of("timer")] == [1.0, 3.5]  # 2.0 and 3.0 died with the crash; 3.5 is new
    assert net.nodes["a"].got == []  # type: ignore[attr-defined]  # a fresh instance: the Ping(1) it had is gone


def test_a_topology_limits_who_can_talk():
    net = Network(0)
    net.build({"a": ["b"], "b": ["a"], "c": []}, ByName)
    net.send("a", "c", Ping(1))
    net.send("a", "b", Ping(2))
    net.run(1.0)
    assert net.nodes["b"].got == [(2, "a")] and net.nodes["c"].got == []  # type: ignore[attr-defined]
    assert [r.why for r in net.history.of("drop")] == ["no link"]


def test_user_invariants_are_checkers():
    net = pair(link=Link(Fixed(0.01), loss=0.5))
    net.run(5.0)
    no_loss = invariant("no loss", lambda r: r.kind != "drop")
    found = check(net.history, [no_loss])
    assert found and all(v.checker == "no loss" and "drop" in v.what for v in found)
    assert check(pair().run(5.0), [no_loss]) == []


# -- the replicated register --------------------------------------------------------------------------------------


def test_the_register_is_never_stale_without_loss_and_the_checker_catches_loss():
    seeds = range(20)
    clean = [check(register.run(s).history, register.CHECKERS) for s in seeds]
    assert clean == [[]] * 20
    lossy = [check(register.run(s, loss=0.1).history, register.CHECKERS) for s in seeds]
    caught = [v for vs in lossy for v in vs]
    assert sum(1 for vs in lossy if vs) >= 5
    assert all(v.checker == "stale_reads" and "had been acknowledged" in v.what for v in caught)


def test_every_stale_read_follows_a_lost_copy_to_the_replica_that_answered():
    found = 0
    for seed in range(10):
        net = register.run(seed, loss=0.1)
        drops = net.history.of("drop")
        for violation in check(net.history, register.CHECKERS):
            replica = re.search(r"from (r\d)", violation.what).group(1)  # type: ignore[union-attr]
            assert any(r.msg == "Replicate" and r.peer == replica and r.t < violation.t for r in drops)
            found += 1
    assert found >= 5


# -- gossip --------------------------------------------------------------------------------------------------------


def test_gossip_reaches_everyone_through_loss_and_a_partition_that_heals():
    for seed in range(5):
        net = gossip.run(seed, loss=0.2, partition=(0.05, 1.5))
        assert net.history.of("partition") and net.history.of("heal")
        assert check(net.history, gossip.CHECKERS) == []
        assert len(net.history.notes("heard")) == 20


def test_gossip_fails_its_checker_when_the_partition_never_heals():
    net = gossip.run(0, loss=0.2, partition=(0.05, 100.0))
    found = check(net.history, gossip.CHECKERS)
    assert len(found) >= 5 and all("never heard the rumour" in v.what for v in found)


def test_raft_election_keeps_one_leader_per_term_across_a_partition_and_elects_on_the_majority_side():
    for seed in range(10):
        net = election.run(seed, election.Raft, partition_until=1.5)
        assert check(net.history, election.CHECKERS) == []
        before_heal = [r for r in net.history.notes("leader") if r.t < 1.5]
        assert before_heal and {r.node for r in before_heal} <= {"n2", "n3", "n4"}  # the side with 3 of 5


def test_the_naive_election_has_two_leaders_in_one_term_under_a_partition_and_the_checker_says_so():
    failed = [
        seed for seed in range(10) if election.one_leader_per_term(election.run(seed, election.Naive, 1.5).history)
    ]
    assert len(failed) >= 8
    found = election.one_leader_per_term(election.run(failed[0], election.Naive, 1.5).history)
    assert "has leaders" in found[0].what
    assert not election.one_leader_per_term(election.run(failed[0], election.Naive).history)  # no partition: fine


def test_the_election_swarm_passes_for_raft_and_fails_for_the_naive_one():
    options = sw.Options(0.05, faults=True)
    assert sw.swarm(election.SCENARIO, range(30), options) == []
    assert sw.swarm(election.NAIVE, range(100), options)


def test_a_nodes_disk_outlives_its_crash_and_nothing_else_does():
    class Keeper(Node):
        def on_start(self) -> None:
            self.disk["starts"] = self.disk.get("starts", 0) + 1
            self.memory = self.disk["starts"]

    net = Network(1)
    net.add("a", Keeper)
    net.at(1.0, net.crash, "a")
    net.at(2.0, net.restart, "a")
    net.run(3.0)
    assert net.nodes["a"].disk == {"starts": 2} and net.nodes["a"].memory == 2


# -- swarm --------------------------------------------------------------------------------------------------------


def test_a_swarm_finds_failing_seeds_and_the_replay_command_reproduces_one_exactly(tmp_path):
    options = sw.Options(loss=0.05)
    failed = sw.swarm(register.SCENARIO, range(200), options)
    assert 10 <= len(failed) < 200
    first = failed[0]
    command = sw.replay_command("pumpkin.sim.examples.register", first.seed, options)
    assert command.startswith(f"python -m pumpkin.sim replay pumpkin.sim.examples.register --seed {first.seed} ")
    args = command.split()[1:]
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert done.returncode == 1, done.stderr
    assert "stale_reads" in done.stdout
    assert (tmp_path / f"seed{first.seed}.jsonl").read_text() == first.net.history.to_jsonl()
    assert "<svg" in (tmp_path / f"seed{first.seed}.html").read_text()


def test_swarm_faults_come_from_the_seed(tmp_path):
    options = sw.Options(faults=True)
    a = sw.run_one(gossip.SCENARIO, 11, options)
    b = sw.run_one(gossip.SCENARIO, 11, options)
    assert a.faults == b.faults and a.faults and a.net.history.to_jsonl() == b.net.history.to_jsonl()
    kinds = {tuple(sw.run_one(gossip.SCENARIO, s, options).faults[1:]) for s in range(10)}
    assert len(kinds) == 10


def test_the_command_line_swarm_reports_each_failing_seed_with_its_replay():
    done = subprocess.run(
        [sys.executable, "-m", "pumpkin.sim", "swarm", "pumpkin.sim.examples.register", "--seeds=20", "--loss=0.1"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    lines = done.stdout.splitlines()
    failing = [line for line in lines if line.startswith("seed ")]
    replays = [line for line in lines if line.strip().startswith("replay: python -m pumpkin.sim replay")]
    assert done.returncode == 1 and failing and len(failing) == len(replays)
    assert lines[-1] == f"{len(failing)} of 20 seeds failed"


def test_an_unknown_scenario_is_explained():
    with pytest.raises(SimError, match="found no Scenario called 'SCENARIO' in module pumpkin.sim.check"):
        sw.load("pumpkin.sim.check")


# -- timeline -------------------------------------------------------------------------------------------------------


def test_the_timeline_has_a_lane_per_node_an_arrow_per_delivery_and_marks_losses():
    net = pair(link=Link(Fixed(0.01), loss=0.3), seed=4)
    net.run(4.0)
    page = timeline.render(net.history, "ping")
    names = re.findall(r'<text class="name"[^>]*>([^<]+)</text>', page)
    assert names == ["a", "b"]
    assert page.count('<line class="lane"') == 2
    assert page.count('<line class="arrow deliver"') == len(net.history.of("deliver")) > 0
    assert page.count('<line class="arrow lost"') == len(net.history.of("drop")) > 0
    assert "Ping lost: loss" in page
    assert page.count('class="timer"') == len(net.history.of("timer"))
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Simulating an algorithm") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))]
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("readme_example")  # dataclasses look their module up in sys.modules
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "README.md", "exec"), module.__dict__)
    history = History.read(tmp_path / "run.jsonl")
    assert {r.why for r in history.of("drop")} <= {"loss", "partition"} and history.notes("got")
    assert "nothing lost" in capsys.readouterr().out


@pytest.mark.parametrize("fifo", [True, False])
def test_a_stream_link_keeps_its_order_under_jitter_and_a_datagram_one_does_not(fifo: bool) -> None:
    from pumpkin.sim.clock import Clock, Scheduler
    from pumpkin.sim.wire import Wire

    scheduler = Scheduler(Clock(0.0))
    wire = Wire(scheduler, random.Random(7), History(), Link(latency=Uniform(0.0, 0.01)))
    arrived: list[int] = []
    for i in range(200):
        wire.send("a", "b", "m", {}, lambda i=i: arrived.append(i), fifo=fifo)
        scheduler.run_for(0.001)  # one every millisecond, with up to 10 ms of jitter each
    scheduler.run_for(1.0)
    assert sorted(arrived) == list(range(200))
    assert (arrived == sorted(arrived)) is fifo
