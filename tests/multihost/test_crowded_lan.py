"""A crowded LAN on real hosts: past its first peers a daemon learns the others from their beacons, and greets
one only when it first sends it packets; nothing is lost on the way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pumpkin.mesh import GREET_ALL_UP_TO
from tests.helpers import wait_until
from tests.multihost.conftest import FAST, SEEDS, Hosts, collected, running
from tests.multihost.lan import Lan
from tests.netns import require_netns

WORKERS = GREET_ALL_UP_TO + 3  # more than a daemon greets on hearing them
# mDNS off: a peer found by mDNS first is greeted, as every peer was before; this test is about beacons.
QUIET = [*FAST, "--discovery.mdns", "false"]


@pytest.fixture
def crowd(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hosts]:
    """A (the source and sink) and ``WORKERS`` more hosts on one switch."""
    require_netns()
    lan = Lan(hosts={"A": ("X", 11), **{f"W{i}": ("X", 20 + i) for i in range(WORKERS)}}).up()
    try:
        with running(lan, tmp_path, request) as hosts:
            yield hosts
    finally:
        lan.down()


def test_packets_reach_workers_learnt_from_beacons_once_each(crowd: Hosts) -> None:
    count = 400
    workers = [crowd.pmk(f"W{i}", "--seed", str(SEEDS / "work.py"), *QUIET) for i in range(WORKERS)]
    for w in workers:
        w.wait_for("Seed loaded: Work", stream="err")

    def settled(i: int) -> bool:  # it knows more peers than it greets on hearing them: A will be learnt, not greeted
        peers = json.loads(crowd.client(f"W{i}", "peers", "--json", "--workdir", str(workers[i].workdir)))  # type: ignore[attr-defined]
        return len(peers) >= GREET_ALL_UP_TO

    # (Started together, a worker may not know its first peers yet when A comes: it then greets A as one of them,
    # and A learns it from its HELLO. A CI run on a fresh clone, every module compiled at each start, saw it once.)
    wait_until(lambda: all(settled(i) for i in range(WORKERS)), 60, what="every worker to know its first peers")
    env = {"STREAM_COUNT": str(count), "STREAM_GAP_S": "0.005"}
    a = crowd.pmk("A", "--seed", str(SEEDS / "stream.py"), "--seed", str(SEEDS / "collect.py"), *QUIET, env=env)

    wait_until(lambda: len(collected(a)) == count, 90, what=f"all {count} packets back at A")
    seen = collected(a)
    assert sorted(seen) == list(range(count))  # none lost
    assert all(len(by) == 1 for by in seen.values()), "a packet arrived twice"
    stats = {
        p: json.loads(crowd.client(host, "stats", "--workdir", str(p.workdir)))  # type: ignore[attr-defined]
        for host, p in [("A", a), *((f"W{i}", w) for i, w in enumerate(workers))]
    }
    # A greeted the first peers it heard; the others it learnt from their beacons, and still sent them work.
    assert stats[a]["mesh"].get("learnt_from_beacons", 0) >= WORKERS - GREET_ALL_UP_TO, stats[a]["mesh"]
    learnt_by_a = stats[a]["mesh"]["learnt_from_beacons"]
    handled_by = {by for v in seen.values() for by in v}
    assert len(handled_by) > GREET_ALL_UP_TO, handled_by  # work went past the peers A greeted on hearing them
    # Every worker knows every other daemon, alive, though it greeted at most the first few it heard.
    for i, w in enumerate(workers):
        peers = json.loads(crowd.client(f"W{i}", "peers", "--json", "--workdir", str(w.workdir)))  # type: ignore[attr-defined]
        assert len(peers) == WORKERS and {p["state"] for p in peers} == {"alive"}, peers
        assert stats[w]["mesh"].get("learnt_from_beacons", 0) >= 1, stats[w]["mesh"]
    print(f"\n{count} packets over {len(handled_by)} workers; A learnt {learnt_by_a} of them from beacons")
