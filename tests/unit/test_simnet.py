"""Pumpkin's reliability scenarios on simulated nodes running real seeds: virtual time, deterministic, seconds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from pumpkin import simrun
from pumpkin.mesh import GREET_ALL_UP_TO
from pumpkin.messages import HELLO
from pumpkin.sim.check import check, invariant
from pumpkin.simnet import CHECKERS, exactly_once

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds" / "helloworld"
N = 60


def pipeline(**extra: object) -> dict:
    """Names injected at A, greeted on B and D (two replicas), extracted on C."""
    scenario = {
        "seed": 3,
        "duration": 30,
        "link": {"latency": 0.002, "jitter": 0.002},
        "nodes": {"A": [], "B": [SEEDS / "greet.py"], "D": [SEEDS / "greet.py"], "C": [SEEDS / "extract.py"]},
        "inject": [{"node": "A", "state": "UNGREETED", "data": "n{i}", "count": N, "rate": 20}],
    }
    scenario.update(extra)
    return scenario


def outputs(result: simrun.Result) -> list[str]:
    return sorted(r.data["data"] for r in result.history.notes("sink"))


def assert_exactly_once(result: simrun.Result) -> None:
    assert result.violations == []
    assert outputs(result) == sorted(f"Hello n{i}" for i in range(N))


def test_a_clean_run_delivers_every_name_once_and_only_to_consumers():
    assert_exactly_once(simrun.run(pipeline()))


def test_a_peer_restarted_on_a_new_endpoint_mid_stream():
    faults = [
        {"at": 0.8, "crash": "B"},
        {"at": 1.0, "restart": "B"},
        {"at": 1.5, "crash": "D"},
        {"at": 2, "restart": "D"},
    ]
    result = simrun.run(pipeline(faults=faults))
    assert_exactly_once(result)
    assert [r.node for r in result.history.of("restart", "crash")] == ["B", "D"]


def test_lost_acks_under_20_percent_loss():
    result = simrun.run(pipeline(link={"latency": 0.002, "loss": 0.2}))
    assert_exactly_once(result)
    lost = [r for r in result.history.of("drop") if r.msg == "PMKA"]
    assert lost, "the scenario lost no ACK"


def test_a_sink_crash_and_restart():
    result = simrun.run(pipeline(faults=[{"at": 1.0, "crash": "C"}, {"at": 3.0, "restart": "C"}]))
    assert_exactly_once(result)


def test_a_sink_without_its_tx_folder_takes_duplicates_and_the_checker_says_so():
    """What the tx folder is for: a restarted sink that forgot its results runs a retransmitted packet again."""
    found = []
    for seed in range(1, 6):
        s = pipeline(
            tx=False,
            link={"latency": 0.002, "loss": 0.2},
            faults=[{"at": 1.0, "crash": "C"}, {"at": 1.01, "restart": "C"}],
        )
        found += simrun.run(s, seed).violations
    assert any("times" in v.what for v in found)


def test_both_replicas_of_the_transform_down_for_a_while():
    faults = [
        {"at": 1.0, "crash": "B"},
        {"at": 1.0, "crash": "D"},
        {"at": 4.0, "restart": "B"},
        {"at": 5.0, "restart": "D"},
    ]
    assert_exactly_once(simrun.run(pipeline(faults=faults)))


def test_a_partition_and_heal():
    faults = [{"at": 0.5, "partition": [["A", "B", "D"], ["C"]]}, {"at": 3.0, "heal": True}]
    assert_exactly_once(simrun.run(pipeline(faults=faults)))


def test_a_run_is_the_same_bit_for_bit_under_one_seed():
    s = pipeline(
        link={"latency": 0.002, "jitter": 0.01, "loss": 0.1},
        faults=[{"at": 1, "crash": "B"}, {"at": 2, "restart": "B"}],
    )
    assert simrun.run(s, 7).history.to_jsonl() == simrun.run(s, 7).history.to_jsonl()


SWARM_SEEDS = range(16)


@pytest.mark.parametrize("seed", SWARM_SEEDS)
def test_the_swarm_finds_no_failure(seed):
    assert simrun.run(pipeline(duration=20), seed, faults=True).violations == []


def test_the_swarm_draws_every_kind_of_fault():
    """Crashes and restarts (of any node, the injecting one too), partitions, loss bursts and skewed clocks."""
    drawn = [fault for seed in SWARM_SEEDS for fault in simrun.run(pipeline(duration=1), seed, faults=True).faults]
    for kind in ("loss", "partition", "crash A", "crash", "restart", "clock of"):
        assert any(kind in fault for fault in drawn), (kind, drawn)


def test_skewed_clocks_run_the_pipeline_and_keep_peers_alive(tmp_path):
    clocks = {"B": {"offset": 50, "rate": 1.05}, "C": {"offset": -20, "rate": 0.95}}
    seen: dict[str, dict[str, str]] = {}
    ahead: list[float] = []

    def look(r: simrun.Run) -> None:
        seen.update({n: states(r, n) for n in "ABCD"})
        ahead.append(r.net.nodes["B"].driver.clock() - r.net.clock.now)

    result = run_probed(pipeline(duration=10, clocks=clocks), {5: look}, tmp_path)
    assert_exactly_once(result)
    assert all(set(seen[n].values()) == {"alive"} and len(seen[n]) == 3 for n in "ABCD"), seen
    assert 50 < ahead[0] < 51  # 50 s ahead, and 5% of the 6 s since it started


def test_user_invariants_and_the_routing_checker():
    result = simrun.run(pipeline())
    never_greets_twice = invariant("no double hello", lambda r: "Hello Hello" not in str(r.data))
    assert check(result.history, [never_greets_twice]) == []
    runs = result.history.notes("run")
    assert {r.data["seed"] for r in runs} == {"greet", "extract"}
    assert all(r.data["state"].endswith("UNGREETED") for r in runs if r.data["seed"] == "greet")


def test_the_checker_catches_a_missing_delivery():
    result = simrun.run(pipeline())
    history = type(result.history)([r for r in result.history if not (r.kind == "note" and r.msg in ("sink", "tx"))])
    assert exactly_once(history)


def test_the_example_scenarios_pass(capsys):
    from pumpkin.cli import main

    for path in sorted((ROOT / "examples" / "sim").glob("*.yaml")):
        assert main(["sim", str(path)]) == 0, path
    assert "checkers: all passed" in capsys.readouterr().out


def test_a_legacy_injector_seed_runs_in_the_simulation():
    s = pipeline(nodes={"A": [SEEDS / "inject.py"], "B": [SEEDS / "greet.py"], "C": [SEEDS / "extract.py"]})
    s["inject"] = [{"node": "A", "seed": "inject", "count": 3, "rate": 2}]
    assert outputs(simrun.run(s)) == ["Hello World"] * 3


def test_checkers_are_exported():
    assert exactly_once in CHECKERS


# --- discovery: real beacons on the simulated wire ---------------------------------------------------------------


def run_probed(scenario: dict, probes: dict[float, Callable[[simrun.Run], object]], tmp: Path) -> simrun.Result:
    """Run ``scenario``, calling each probe at its scenario time with the run (to look at the nodes then)."""
    r = simrun.Run(scenario, int(scenario["seed"]), tmp)
    for t, probe in probes.items():
        r.at(t, lambda probe=probe: probe(r))
    r.run(float(scenario["duration"]))
    return simrun.Result(r.seed, r.net.history, check(r.net.history, CHECKERS))


def states(r: simrun.Run, node: str) -> dict[str, str]:
    """What ``node`` thinks of its peers: id -> alive / evasive."""
    return {p.node_id: p.state.value for p in r.net.nodes[node].peers.peers.values()}


def two_subnets(**extra: object) -> dict:
    """A injects on lan1, B extracts on lan1, C (the only greeter) alone on lan2."""
    scenario = {
        "seed": 5,
        "duration": 10,
        "nodes": {"A": [], "B": [SEEDS / "extract.py"], "C": [SEEDS / "greet.py"]},
        "subnets": {"lan1": ["A", "B"], "lan2": ["C"]},
        "inject": [{"node": "A", "state": "UNGREETED", "data": "n{i}", "count": N, "rate": 20, "at": 1}],
    }
    scenario.update(extra)
    return scenario


def test_a_node_on_another_subnet_is_found_only_through_a_static_peer_and_gossip(tmp_path):
    seen: dict[str, object] = {}

    def look(r: simrun.Run) -> None:
        seen["C"] = states(r, "C")
        nodes = r.net.nodes
        seen["found"] = {nodes["C"].peers.entries["A"].found_via, nodes["A"].peers.entries["C"].found_via}

    result = run_probed(two_subnets(peers={"C": ["B"]}), {0.5: look}, tmp_path)
    assert_exactly_once(result)
    assert seen["C"] == {"A": "alive", "B": "alive"}
    assert "gossip" in seen["found"]  # neither hears the other's beacons: B told one of the other
    beacons_to_c = [r for r in result.history.of("deliver") if r.node == "C" and r.msg == "beacon"]
    assert {r.peer for r in beacons_to_c} <= {"A", "B"}  # only direct beacons, once they knew each other
    lan1 = [r for r in result.history.of("send") if r.msg == "beacon" and r.node == "A" and not r.peer]
    assert lan1 and all(r.data["subnet"] == "lan1" for r in lan1)


def test_without_the_static_peer_the_other_subnet_is_never_found(tmp_path):
    seen: dict[str, object] = {}
    result = run_probed(two_subnets(), {5: lambda r: seen.update(C=states(r, "C"), A=states(r, "A"))}, tmp_path)
    assert seen == {"C": {}, "A": {"B": "alive"}}
    assert any("reached no sink" in v.what for v in result.violations)


def test_a_partition_that_hides_beacons_makes_peers_evasive_then_expired_and_heal_brings_them_back(tmp_path):
    scenario = pipeline(
        duration=14,
        faults=[{"at": 1, "partition": [["A", "B", "D"], ["C"]]}, {"at": 8, "heal": True}],
    )
    seen: dict[float, dict[str, dict[str, str]]] = {}

    def at(t: float) -> tuple[float, Callable[[simrun.Run], object]]:
        return t, lambda r: seen.__setitem__(t, {n: states(r, n) for n in ("A", "C")})

    result = run_probed(scenario, dict(map(at, (0.9, 3.2, 7.5, 10))), tmp_path)
    assert_exactly_once(result)
    assert seen[0.9]["C"] == {"A": "alive", "B": "alive", "D": "alive"}
    assert seen[3.2]["C"] == {"A": "evasive", "B": "evasive", "D": "evasive"}  # silent for 1.5 s: evasive
    assert seen[3.2]["A"]["C"] == "evasive" and seen[3.2]["A"]["B"] == "alive"
    assert seen[7.5]["C"] == {} and "C" not in seen[7.5]["A"]  # silent for 5 s: expired, forgotten
    assert seen[10]["C"] == {"A": "alive", "B": "alive", "D": "alive"}  # healed: beacons find them again
    assert seen[10]["A"]["C"] == "alive"
    lost = [r for r in result.history.of("drop") if r.msg == "beacon" and r.why == "partition"]
    assert {r.node for r in lost} == {"A", "B", "C", "D"}


def test_lost_beacons_are_counted_and_peers_stay_alive_under_moderate_loss(tmp_path):
    # Every half second from 2 s to 14 s, what each node thinks of the other three: 25 x 12 looks.
    seen: list[dict[str, dict[str, str]]] = []
    scenario = pipeline(duration=15, link={"latency": 0.002, "loss": 0.2})
    probes = {t / 2: (lambda r: seen.append({n: states(r, n) for n in "ABCD"})) for t in range(4, 29)}
    result = run_probed(scenario, probes, tmp_path)
    assert_exactly_once(result)
    looks = [state for s in seen for peers in s.values() for state in peers.values()]
    assert all(len(peers) == 3 for s in seen for peers in s.values()), seen  # nobody ever forgotten
    # With a fifth of every beacon and PING lost, three in a row go missing now and then: a peer may be evasive
    # for a moment (its unacknowledged packets move), never for long.
    assert looks.count("alive") >= 0.97 * len(looks), looks
    assert any(r.msg == "beacon" and r.why == "loss" for r in result.history.of("drop"))


# --- durable state: the journal and the tx folder outlive a crash -------------------------------------------------


def busy_source(**extra: object) -> dict:
    """A streams 600 names at 200 a second, so that some are always on their way when A crashes."""
    return pipeline(inject=[{"node": "A", "state": "UNGREETED", "data": "n{i}", "count": 600, "rate": 200}], **extra)


#: Both greeters go down, so that what A accepts waits in its memory; then A crashes with it, and comes back.
STRANDED = [
    {"at": 0.5, "crash": "B"},
    {"at": 0.5, "crash": "D"},
    {"at": 1.0, "crash": "A"},
    {"at": 1.5, "restart": "B"},
    {"at": 1.5, "restart": "D"},
]


def test_the_injecting_node_crashes_and_its_journal_brings_back_what_it_had_accepted():
    result = simrun.run(busy_source(faults=[*STRANDED, {"at": 2.0, "restart": "A"}]))
    assert result.violations == []
    accepted = {r.data["data"] for r in result.history.notes("inject")}
    assert 350 < len(accepted) < 600  # nothing was offered while A was down
    assert sorted(r.data["data"] for r in result.history.notes("tx")) == sorted(f"Hello {n}" for n in accepted)
    resumed = [i for r in result.history.notes("resume") for i in r.data["ids"]]
    assert len(resumed) >= 90  # the 100 accepted while no greeter ran, less those the journal had not committed
    assert all(r.node == "A" for r in result.history.notes("resume"))


def test_without_the_journal_a_crash_of_the_injecting_node_loses_what_it_had_accepted(tmp_path):
    """What the journal is for: the same crash with A's disk wiped loses accepted packets, and the checker says so."""
    r = simrun.Run(busy_source(faults=STRANDED), 3, tmp_path)
    r.at(2.0, lambda: (r.net.disk("A").journal.clear(), r.restart("A")))
    r.run(30)
    violations = check(r.net.history, CHECKERS)
    assert violations and all("reached no sink" in v.what for v in violations)


def test_a_sink_crash_may_run_its_seed_again_but_writes_each_result_once():
    runs_again = 0
    for seed in range(4):
        result = simrun.run(busy_source(faults=[{"at": 1.0, "crash": "C"}, {"at": 1.5, "restart": "C"}]), seed)
        assert result.violations == []
        sinks = Counter(r.data["id"] for r in result.history.notes("sink"))
        written = Counter(r.data["id"] for r in result.history.notes("tx"))
        assert set(written.values()) == {1} and len(written) == 600
        runs_again += sum(n - 1 for n in sinks.values())
    assert 0 < runs_again <= 4 * 64  # results not yet durable at the crash: run again, at most TX_AHEAD_MAX each


# --- a crowded subnet paces its beacons -------------------------------------------------------------------------


def crowd(nodes: int, **extra: object) -> dict:
    """``nodes`` nodes on one subnet: A injects, C extracts, the rest greet."""
    layout: dict[str, list[Path]] = {"A": [], "C": [SEEDS / "extract.py"]}
    layout.update({f"G{i}": [SEEDS / "greet.py"] for i in range(nodes - 2)})
    scenario = {
        "seed": 11,
        "duration": 30,
        "nodes": layout,
        "inject": [{"node": "A", "state": "UNGREETED", "data": "n{i}", "count": N, "rate": 20}],
    }
    scenario.update(extra)
    return scenario


def test_a_crowded_subnet_paces_its_beacons_and_stretches_liveness_windows_to_match(tmp_path):
    # 60 nodes beaconing every heartbeat would send 120 beacons a second, each heard by 59: paced, about 20.
    seen: dict[float, dict[str, str]] = {}
    probes = {t: (lambda r, t=t: seen.__setitem__(t, states(r, "A"))) for t in (14.0, 20.5, 25.0)}
    result = run_probed(crowd(60, faults=[{"at": 15, "crash": "G7"}]), probes, tmp_path)
    assert_exactly_once(result)
    beacons = [r for r in result.history.of("send") if r.msg == "beacon" and not r.peer]
    t0 = beacons[0].t + simrun.SETTLE_S  # scenario time 0 (the first beacon goes at once)
    sent = [r for r in beacons if t0 + 5 <= r.t < t0 + 15]
    assert 15 <= len(sent) / 10 <= 26  # per virtual second, all 60 nodes together
    assert set(seen[14.0].values()) == {"alive"} and len(seen[14.0]) == 59  # nobody taken for gone meanwhile
    # G7's beacons were 3 s apart: evasive after 1.5 s x 6 of silence, not 1.5 s; expired after 30 s, not 5 s.
    assert seen[20.5]["G7"] == "alive" and seen[25.0]["G7"] == "evasive"


def test_on_a_crowded_subnet_peers_are_learnt_from_beacons_and_greeted_only_when_sent_to(tmp_path):
    # 60 nodes greeting each other would exchange 60 x 59 HELLOs, nearly all between greeters that never send each
    # other a packet. Past the first few peers, a peer's seeds come with its beacon and a HELLO goes just before
    # the first thing sent to it.
    n = 60
    seen: dict[str, dict[str, str]] = {}
    probes = {14.0: lambda r: seen.update({node: states(r, node) for node in ("A", "C", "G5")})}
    result = run_probed(crowd(n), probes, tmp_path)
    assert_exactly_once(result)
    for node, peers in seen.items():  # everyone still knows everyone, alive
        assert len(peers) == n - 1 and set(peers.values()) == {"alive"}, (node, peers)
    hellos = [r for r in result.history.of("send") if r.msg == HELLO.decode()]
    assert len(hellos) < n * (n - 1) / 2, len(hellos)  # 3,550 when everyone greets everyone
    # Each greets the first few it hears (and they answer); past them, two greeters never greet each other, nor
    # send each other anything else (a PING with its seeds' counts would open the link all the same).
    between_greeters = {
        frozenset((r.node, r.peer))
        for r in result.history.of("send")
        if r.peer and r.msg != "beacon" and {r.node[0], r.peer[0]} == {"G"}
    }
    assert len(between_greeters) <= n * GREET_ALL_UP_TO, len(between_greeters)
    # A sends packets to greeters it mostly never greeted on hearing them: each got A's HELLO first.
    first_hello: dict[str, float] = {}
    for r in hellos:
        if r.node == "A":
            first_hello.setdefault(r.peer, r.t)
    first_packet: dict[str, float] = {}
    for r in result.history.of("send"):
        if r.node == "A" and r.msg == "packets":
            first_packet.setdefault(r.peer, r.t)
    assert len(first_packet) > GREET_ALL_UP_TO  # spread over more greeters than A greeted on hearing them
    assert all(first_hello.get(peer, float("inf")) <= t for peer, t in first_packet.items())


SHOUT = """from pumpkin import Seed


class Shout(Seed):
    consumes = "String:LOUD"

    def run(self, text):
        print(text.upper())
"""


def test_on_a_crowded_subnet_a_seed_change_reaches_everyone_by_one_beacon_not_a_hello_each(tmp_path):
    # G5 loads a new seed at 10 s. Greeting all 59 peers would open a link to each of those it learnt from
    # their beacons and never sent anything; they learn it from one beacon sent at once instead.
    n = 40
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "shout.py").write_text(SHOUT)
    knew: dict[str, bool] = {}

    def change(r: simrun.Run) -> None:
        node = r.net.nodes["G5"]
        node.load_seeds([tmp_path / "seeds" / "shout.py"])
        node.mesh.announce()

    probes = {
        10.0: change,
        10.5: lambda r: knew.update(
            {
                name: "G5" in node.router.automaton.nodes_of("Shout")
                for name, node in r.net.nodes.items()
                if name != "G5"
            }
        ),
    }
    result = run_probed(crowd(n), probes, tmp_path)
    assert_exactly_once(result)
    assert len(knew) == n - 1 and all(knew.values()), [name for name, k in knew.items() if not k]
    t0 = next(r.t for r in result.history.of("note") if r.msg == "seeds" and r.data.get("seed") == "Shout")
    hellos = {r.peer for r in result.history.of("send") if r.node == "G5" and r.msg == HELLO.decode() and r.t >= t0}
    assert len(hellos) <= 2 * GREET_ALL_UP_TO, len(hellos)  # those it has links with, not all 39
    beacons = [r for r in result.history.of("send") if r.node == "G5" and r.msg == "beacon" and not r.peer]
    assert any(t0 <= r.t < t0 + 0.01 for r in beacons)  # one went at once


def test_seeds_that_split_and_merge_run_in_the_simulation_as_in_the_daemon():
    # As tests/multiprocess/test_joins.py on real daemons: fragments run on either replica, merged once.
    joinseeds = ROOT / "tests" / "joinseeds"
    scenario = {
        "seed": 1,
        "duration": 10,
        "nodes": {
            "A": [joinseeds / "modern.py"],
            "B": [joinseeds / "modern.py"],
            "C": [joinseeds / "splitter.py"],
            "D": [joinseeds / "splitter.py", joinseeds / "collector.py"],
        },
        "inject": [
            {"node": "A", "state": "Text:SENTENCE", "data": "the quick brown fox", "count": 1},
            {"node": "C", "state": "Text:RAW", "data": "hello", "count": 1},
        ],
    }
    result = simrun.run(scenario)
    assert result.violations == []  # a fragment's result merged by its splitter is no misrouted packet
    printed = [line for r in result.history.notes("printed") for line in r.data["text"].splitlines()]
    assert printed.count("SHOW: [3, 5, 5, 3]") == 1 and printed.count("MERGED: HELLO") == 1, printed
    fragment_runs = {line.split()[1] for line in printed if line.startswith("RUN ")}
    assert fragment_runs == {"C", "D"}  # the legacy splitter's fragments ran on both replicas


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_crowded_subnet_loses_nothing_when_greeters_learnt_from_beacons_restart_or_are_cut_off(seed):
    # The peers A sends to past its first few were learnt from their beacons, never greeted on hearing: a restart
    # (a new incarnation on a new endpoint), a partition and lossy links must not lose or double a packet there.
    scenario = crowd(
        30,
        seed=seed,
        duration=40,
        link={"latency": 0.002, "jitter": 0.002, "loss": 0.05},
        inject=[{"node": "A", "state": "UNGREETED", "data": "n{i}", "count": N, "rate": 10}],
        faults=[
            {"at": 2, "restart": "G20"},
            {"at": 3, "crash": "G25"},
            {"at": 4, "partition": [["G21", "G22"], ["A", "C", *(f"G{i}" for i in range(20))]]},
            {"at": 6, "heal": True},
        ],
    )
    result = simrun.run(scenario)
    assert_exactly_once(result)
    learnt = [r for r in result.history.of("send") if r.node == "A" and r.msg == "packets"]
    assert len({r.peer for r in learnt}) > GREET_ALL_UP_TO  # A's packets went past the peers it greeted on hearing


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_node_that_hears_no_broadcasts_is_greeted_all_the_same_on_a_crowded_subnet(seed):
    # A hears nobody's beacons (inbound broadcasts blocked), and sends straight to the one sink, C. Past its first
    # few peers C learns A from A's beacon and would never greet it; A's beacons say it hears nobody, so C does.
    scenario = crowd(
        40,
        seed=seed,
        duration=30,
        deaf=["A"],
        inject=[{"node": "A", "state": "GREETING", "data": "n{i}", "count": 20, "rate": 5}],
    )
    result = simrun.run(scenario)
    assert result.violations == []
    assert len(result.history.notes("sink")) == 20
    dropped = [r for r in result.history.of("drop") if r.why == "deaf"]
    assert dropped and {r.peer for r in dropped} == {"A"}
