"""Joins and split/merge between two namespace hosts, with seeds in the original's format (tests/joinseeds)."""

from __future__ import annotations

import json

from tests.conftest import ROOT
from tests.helpers import wait_until
from tests.multihost.conftest import FAST

SEEDS = ROOT / "tests" / "joinseeds"
WAIT = ["--routing.join_wait_s", "3"]


def test_split_merge_and_an_and_join_across_two_hosts(hosts):
    joiner, splitter = ("--seed", str(SEEDS / "joiner.py")), ("--seed", str(SEEDS / "splitter.py"))
    a = hosts.pmk("A", *splitter, *joiner, "--seed", str(SEEDS / "collector.py"), *WAIT, *FAST)
    b = hosts.pmk("B", *splitter, *joiner, *WAIT, *FAST)
    both = ((a, "A"), (b, "B"))
    for p, _ in both:
        p.wait_for("Node endpoint", stream="err")

    def met() -> bool:
        return all(json.loads(hosts.client(h, "peers", "--json", "--workdir", str(p.workdir))) for p, h in both)

    wait_until(met, 15, what="the two hosts to meet")
    hosts.client("A", "inject", "Text:RAW", "abcdefghij", "--string", "--workdir", str(a.workdir))
    a.wait_for("MERGED: ABCDEFGHIJ", 20)
    runs = [line.split()[1] for p in (a, b) for line in p.out if line.startswith("RUN ")]
    assert len(runs) == 10 and set(runs) == {"nodeA0", "nodeB1"}  # fragments ran on both hosts, each once

    hosts.client("A", "inject", "--file", str(SEEDS / "left.pkt"), "--workdir", str(a.workdir))
    hosts.client("B", "inject", "--file", str(SEEDS / "right.pkt"), "--workdir", str(b.workdir))
    wait_until(lambda: a.count("JOINED: L+R") + b.count("JOINED: L+R") == 1, 20, what="the join of L and R")

    hosts.client("B", "inject", "--file", str(SEEDS / "lonely.pkt"), "--workdir", str(b.workdir))

    def timed_out() -> list[str]:
        errors = [e.read_text() for p, _ in both for e in (p.workdir / "failed").glob("*.error")]
        return [e for e in errors if "never came" in e]

    [reason] = wait_until(timed_out, 20, what="the lonely LEFT to fail after the wait")
    assert "waited 3 s for RIGHT of lineage ship:patient_Y" in reason
    assert a.count("JOINED:") + b.count("JOINED:") == 1
