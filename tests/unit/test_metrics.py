"""The pure parts of ``/metrics``: naming ``pmk stats`` key paths, the run-time histogram, and a lazy import."""

from __future__ import annotations

import subprocess
import sys

from pumpkin import metrics
from pumpkin.counters import LATENCY_BUCKETS_S, SeedCounters, SeedTally


def test_key_paths_become_names_and_tables_of_names_become_labels():
    stats = {
        "ok": True,
        "node": "n1",
        "uptime_s": 3.5,
        "router": {"emitted": 4, "seed_errors": 1},
        "failed": {"bad-data": 2},
        "seeds": {"Pick": {"processed": 3, "pending": 1, "failed": {"bad-data": 2}}},
        "discovery": {"BeaconDiscovery": {"sent": 7, "rejected": 0}},
        "tasks": {"running": ["inbox", "journal"], "crashes": {"inbox": 1}},
        "network": {"keyed": True, "fingerprint": "ab:cd"},
        "waiting": {"default:*:NOBODY": 1},
    }
    flat = metrics.flatten(stats)
    assert flat["pumpkin_uptime_s"] == (True, (), [((), 3.5)])
    assert flat["pumpkin_router_emitted"] == (False, (), [((), 4.0)])
    assert flat["pumpkin_failed"] == (False, ("kind",), [(("bad-data",), 2.0)])
    assert flat["pumpkin_seeds_processed"] == (False, ("seed",), [(("Pick",), 3.0)])
    assert flat["pumpkin_seeds_pending"] == (True, ("seed",), [(("Pick",), 1.0)])
    assert flat["pumpkin_seeds_failed"] == (False, ("seed", "kind"), [(("Pick", "bad-data"), 2.0)])
    # An entry of a labelled table has fixed keys again: sent and rejected are names, not labels.
    assert flat["pumpkin_discovery_sent"] == (False, ("discovery",), [(("BeaconDiscovery",), 7.0)])
    assert flat["pumpkin_tasks_running"] == (True, ("task",), [(("inbox",), 1.0), (("journal",), 1.0)])
    assert flat["pumpkin_tasks_crashes"] == (False, ("task",), [(("inbox",), 1.0)])
    assert flat["pumpkin_network_keyed"] == (True, (), [((), 1.0)])
    # Text is left out; waiting has a family of its own (the fullest states only).
    assert not [n for n in flat if "fingerprint" in n or "waiting" in n or n in ("pumpkin_ok", "pumpkin_node")]


def test_a_run_is_counted_in_the_first_bucket_that_holds_it():
    c = SeedCounters()
    for seconds in (0.0, 0.001, 0.0011, 100.0):
        c.ran(seconds)
    c.untimed()  # a packet whose file never came: a run, not timed
    buckets = dict(c.cumulative())
    assert buckets[LATENCY_BUCKETS_S[0]] == 1  # 0 s
    assert buckets[0.001] == 2 and buckets[0.0025] == 3  # le is "at most"
    assert buckets[LATENCY_BUCKETS_S[-1]] == 3 and buckets[float("inf")] == 4 and c.runs == c.processed == 5
    assert c.busy_s == 0.0 + 0.001 + 0.0011 + 100.0


def test_an_injector_processes_what_it_makes_and_a_consumer_what_it_takes():
    t = SeedTally()
    make = t.of("make", injector=True)
    make.ran(0.01)  # one run of the injector ...
    make.made += 3  # ... that made three packets, which went on
    make.emitted += 3
    pick = t.of("pick", injector=False)
    pick.ran(0.002)
    t.of("pick").failed["bad-data"] += 1
    assert make.view() == {
        "runs": 1, "processed": 3, "emitted": 3, "failures": 0, "failed": {}, "busy_s": 0.01,
    }  # fmt: skip
    assert pick.view()["processed"] == 1 and pick.failures == 1 and t.of("pick") is pick


def test_a_daemon_that_is_never_scraped_never_imports_prometheus_client():
    code = (
        "import sys, pumpkin.cli, pumpkin.daemon, pumpkin.web, pumpkin.query\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
