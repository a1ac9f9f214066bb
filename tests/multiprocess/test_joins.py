"""Joins and split/merge on real ``pmk`` processes of one host, with seeds in the original's format
(tests/joinseeds) and in the modern API."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import PMK, ROOT
from tests.helpers import wait_until

SEEDS = ROOT / "tests" / "joinseeds"
WAIT = ["--routing.join_wait_s", "2"]


def client(sandbox, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(sandbox.wrap([*PMK, *args]), capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def peers_of(sandbox, p) -> int:
    p.wait_for("Node endpoint", stream="err")
    return len(json.loads(client(sandbox, "peers", "--json", "--workdir", str(p.workdir))))


def two_daemons(pmk, sandbox, seed: str) -> tuple[object, object]:
    """Daemons a and b on one host, each running ``seed`` (from tests/joinseeds), once they know each other."""
    a = pmk("--seed", str(SEEDS / seed), *WAIT, "--node-id", "a")
    b = pmk("--seed", str(SEEDS / seed), *WAIT, "--node-id", "b")
    wait_until(lambda: peers_of(sandbox, a) == 1 and peers_of(sandbox, b) == 1, 15, what="the two daemons to meet")
    return a, b


def test_split_fragments_run_on_both_replicas_and_merge_once(pmk, sandbox):
    a = pmk("--seed", str(SEEDS / "splitter.py"), "--seed", str(SEEDS / "collector.py"), "--node-id", "a")
    b = pmk("--seed", str(SEEDS / "splitter.py"), "--node-id", "b")
    wait_until(lambda: peers_of(sandbox, a) == 1 and peers_of(sandbox, b) == 1, 15, what="the two daemons to meet")
    for text in ("abcdefgh", "pumpkin"):
        client(sandbox, "inject", "Text:RAW", text, "--string", "--workdir", str(a.workdir))
        a.wait_for(f"MERGED: {text.upper()}")
    runs = [line for p in (a, b) for line in p.out if line.startswith("RUN ")]
    assert len(runs) == len("abcdefgh") + len("pumpkin")  # each fragment ran once
    assert {line.split()[1] for line in runs} == {"a", "b"}  # on both replicas
    assert a.count("MERGED:") == 2
    stats = json.loads(client(sandbox, "stats", "--workdir", str(a.workdir)))
    assert not stats["failed"]


def test_and_join_runs_once_per_lineage_and_a_missing_partner_fails_after_the_wait(pmk, sandbox):
    a, b = two_daemons(pmk, sandbox, "joiner.py")
    client(sandbox, "inject", "--file", str(SEEDS / "left.pkt"), "--workdir", str(a.workdir))
    client(sandbox, "inject", "--file", str(SEEDS / "right.pkt"), "--workdir", str(b.workdir))
    wait_until(lambda: a.count("JOINED:") + b.count("JOINED:") == 1, 15, what="the join to run")
    assert a.stdout_has("JOINED: L+R") or b.stdout_has("JOINED: L+R")

    client(sandbox, "inject", "--file", str(SEEDS / "lonely.pkt"), "--workdir", str(a.workdir))

    def timed_out() -> list[str]:
        errors = [e.read_text() for p in (a, b) for e in (p.workdir / "failed").glob("*.error")]
        return [e for e in errors if "never came" in e]

    [reason] = wait_until(timed_out, 15, what="the lonely LEFT to fail")
    assert "waited 2 s for RIGHT of lineage ship:patient_Y to join LEFT" in reason
    counts = [json.loads(client(sandbox, "stats", "--workdir", str(p.workdir)))["failed"] for p in (a, b)]
    assert sum(c.get("join-timeout", 0) for c in counts) == 1
    assert a.count("JOINED:") + b.count("JOINED:") == 1


def test_a_join_seed_written_for_the_original_gets_each_part_in_turn_on_one_replica(pmk, sandbox):
    a, b = two_daemons(pmk, sandbox, "barrier.py")
    client(sandbox, "inject", "--file", str(SEEDS / "left.pkt"), "--workdir", str(a.workdir))
    client(sandbox, "inject", "--file", str(SEEDS / "right.pkt"), "--workdir", str(b.workdir))
    wait_until(lambda: a.count("BARRIER:") + b.count("BARRIER:") == 1, 15, what="the barrier to open")
    keeper = a if a.count("BARRIER:") else b
    # run(self, pkt, data) once per part, in the manifest's order, each with its own state and data, and the
    # ship the .pkt files gave (the original's seeds named their results after it)
    assert [line for line in keeper.out if line.startswith("HALF:")] == [
        "HALF: patient_X LEFT L",
        "HALF: patient_X RIGHT R",
    ]
    assert keeper.stdout_has("BARRIER: patient_X L+R")
    assert (a if keeper is b else b).count("HALF:") == 0
    stats = [json.loads(client(sandbox, "stats", "--workdir", str(p.workdir))) for p in (a, b)]
    assert not any(s["failed"] for s in stats)


def test_modern_split_merge_and_join(pmk, sandbox):
    a, b = two_daemons(pmk, sandbox, "modern.py")
    client(sandbox, "inject", "Text:SENTENCE", "the quick brown fox", "--string", "--workdir", str(a.workdir))
    wait_until(lambda: a.count("SHOW: [3, 5, 5, 3]") + b.count("SHOW: [3, 5, 5, 3]") == 1, 15, what="the merge")
    for p, doc in ((a, {"state": "Text:QUESTION", "data": "6x7?"}), (b, {"state": "Text:ANSWER", "data": "42"})):
        f = p.workdir / "part.json"
        f.write_text(json.dumps({**doc, "meta": {"lineage": "q1"}}))
        client(sandbox, "inject", "--file", str(f), "--workdir", str(p.workdir))
    wait_until(lambda: a.count("SHOW: 6x7? 42") + b.count("SHOW: 6x7? 42") == 1, 15, what="the join")
