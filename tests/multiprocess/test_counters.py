"""One source of counters (issue 15, item 7): what ``pmk stats`` prints, what the page's API serves, and what
``/metrics`` exports agree, on a real ``pmk`` whose seeds fail in every way a seed can."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import pumpkin
from pumpkin import metrics
from tests.conftest import PMK, ROOT
from tests.helpers import wait_until
from tests.web.conftest import api, web_url

#: An injector that makes three numbers; a seed that passes 1 on, emits data that cannot travel for 2 (a set)
#: and a state it does not declare for 3; a sink; an injector whose run raises.
SEEDS = """
from pumpkin import Emit, Seed


class Make(Seed):
    emits = "N:NUM"

    def run(self):
        yield 1
        yield 2
        yield 3


class Pick(Seed):
    consumes = "N:NUM"
    emits = "N:OUT"

    def run(self, n):
        if n == 2:
            return {n}
        if n == 3:
            return Emit(n, "NOPE")
        return n


class Sink(Seed):
    consumes = "N:OUT"

    def run(self, n):
        print("sink got", n, flush=True)


class Boom(Seed):
    emits = "N:NEVER"

    def run(self):
        raise RuntimeError("no source today")
"""


def stats(sandbox, workdir: Path) -> dict[str, Any]:
    """``pmk stats``, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        sandbox.wrap([*PMK, "stats", "--workdir", str(workdir)]), capture_output=True, text=True, timeout=20, env=env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def failing_daemon(pmk, tmp_path: Path) -> Any:
    seeds = tmp_path / "seeds.py"
    seeds.write_text(SEEDS)
    p = pmk("--endpoint.type", "zmq.IPC", "--seed", str(seeds), "--http.port", "0")
    p.wait_for("sink got 1")
    return p


def settled(sandbox, p) -> dict[str, Any]:
    """``pmk stats`` once all three failures are kept and the daemon is quiet."""
    return wait_until(
        lambda: (s := stats(sandbox, p.workdir)) and sum(s["failed"].values()) == 3 and s,
        15,
        what="three failures",
    )


def test_stats_count_every_failure_of_a_seed_and_an_injector_makes_what_it_processed(pmk, sandbox, tmp_path):
    p = failing_daemon(pmk, tmp_path)
    s = settled(sandbox, p)
    seeds = s["seeds"]
    # Item 7: bad data and an undeclared state failed Pick's packets, so they are Pick's failures ...
    assert seeds["Pick"]["processed"] == 3 and seeds["Pick"]["emitted"] == 1
    assert seeds["Pick"]["failures"] == 2 and seeds["Pick"]["failed"] == {"bad-data": 1, "undeclared-state": 1}
    # ... an injector that raised is counted under failed too, and kept in failed/ with its traceback ...
    assert seeds["Boom"]["failures"] == 1 and seeds["Boom"]["failed"] == {"seed-error": 1}
    assert s["failed"] == {"bad-data": 1, "undeclared-state": 1, "seed-error": 1}
    notes = [f.read_text() for f in (p.workdir / "failed").glob("*.error")]
    boom = next(n for n in notes if "no source today" in n)
    assert "seed Boom raised RuntimeError: no source today" in boom and "Traceback" in boom
    # ... and an injector's processed is what it made, not one more.
    assert seeds["Make"]["processed"] == seeds["Make"]["emitted"] == 3 and seeds["Make"]["runs"] == 1
    assert seeds["Boom"]["processed"] == 0 and seeds["Boom"]["runs"] == 1
    assert seeds["Sink"]["processed"] == 1 and seeds["Sink"]["failures"] == 0
    # Every failure that names a seed is one of that seed's, and the other way round.
    named = sum(sum(c["failed"].values()) for c in seeds.values())
    assert named == sum(s["failed"].values()) == s["router"]["failed"]


def test_the_page_shows_the_counters_pmk_stats_prints(pmk, sandbox, tmp_path):
    p = failing_daemon(pmk, tmp_path)
    s = settled(sandbox, p)
    status, page = api(sandbox, web_url(p) + "api/v1/counters")
    assert status == 200
    for name, c in s["seeds"].items():
        shown = page["seeds"][name]
        for key in ("runs", "processed", "emitted", "failures", "failed", "pending", "workers"):
            assert shown[key] == c[key], (name, key)
    assert page["failed"] == s["failed"] and page["failed_total"] == 3
    assert page["router"] == s["router"]


# -- /metrics ------------------------------------------------------------------------------------------------


def scrape(sandbox, url: str, token: str | None = None) -> tuple[int, str, str]:
    """GET ``url`` from inside the sandbox: (status, Content-Type, body text)."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1])\n"
        "if len(sys.argv) > 2: req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=10)\n"
        "except urllib.error.HTTPError as e:\n"
        "    r = e\n"
        "print(r.status); print(r.headers.get('Content-Type')); sys.stdout.write(r.read().decode())\n"
    )
    out = subprocess.run(
        sandbox.wrap([sys.executable, "-c", script, url, *([token] if token else [])]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    status, content_type, body = out.stdout.split("\n", 2)
    return int(status), content_type, body


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, parsed with Prometheus's own parser: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(got: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in got, f"{name}{labels} not in /metrics"
    return got[key]


def test_metrics_are_what_pmk_stats_prints(pmk, sandbox, tmp_path):
    p = failing_daemon(pmk, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parked = subprocess.run(
        sandbox.wrap([*PMK, "inject", "NOBODY", "7", "--workdir", str(p.workdir)]), capture_output=True, env=env
    )
    assert parked.returncode == 0
    s = wait_until(lambda: (s := settled(sandbox, p)) and s["waiting"] and s, 15, what="the packet to wait")
    status, content_type, text = scrape(sandbox, web_url(p) + "metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    got = samples(text)

    assert value(got, "pumpkin_node_info", node=s["node"], group="default", version=pumpkin.__version__) == 1
    for seed, c in s["seeds"].items():
        for key in ("runs", "processed", "emitted", "failures", "busy_s"):
            assert value(got, f"pumpkin_seeds_{key}_total", seed=seed) == c[key], (seed, key)
        for key in ("pending", "workers"):
            assert value(got, f"pumpkin_seeds_{key}", seed=seed) == c[key], (seed, key)
        for kind, n in c["failed"].items():
            assert value(got, "pumpkin_seeds_failed_total", seed=seed, kind=kind) == n
        # The run-time histogram counts every run, and its sum is the seed's busy time.
        assert value(got, "pumpkin_seed_run_seconds_count", seed=seed) == c["runs"]
        assert value(got, "pumpkin_seed_run_seconds_bucket", seed=seed, le="+Inf") == c["runs"]
        assert abs(value(got, "pumpkin_seed_run_seconds_sum", seed=seed) - c["busy_s"]) < 1e-5
    assert value(got, "pumpkin_seeds_failed_total", seed="Pick", kind="bad-data") == 1
    for kind, n in s["failed"].items():
        assert value(got, "pumpkin_failed_total", kind=kind) == n
    for key, n in s["router"].items():
        assert value(got, f"pumpkin_router_{key}_total") == n, key
    (state,) = s["waiting"]
    assert value(got, "pumpkin_waiting_packets", state=state) == s["waiting"][state] == 1
    assert value(got, "pumpkin_waiting_packets_all") == 1
    assert value(got, "pumpkin_journal_unfinished") == s["journal"]["unfinished"]
    assert value(got, "pumpkin_bad_inbound_total") == s["bad_inbound"]
    # Every other number pmk stats prints is there too, under the name its key path gives, with the same value
    # (but those that move by themselves: uptime, open files, connections, discovery beacons).
    moving = ("pumpkin_uptime_s", "pumpkin_limits_open_files", "pumpkin_limits_connections", "pumpkin_discovery")
    for name, (_gauge, labels, rows) in metrics.flatten(s).items():
        if name.startswith(moving):
            continue
        for values, n in rows:
            key = {**dict(zip(labels, values, strict=True))}
            sample = name if _gauge else f"{name}_total"
            assert value(got, sample, **key) == n, (sample, key)


def test_metrics_show_per_peer_inflight_and_rtt_and_need_only_what_the_api_needs(pmk, sandbox, tmp_path):
    (tmp_path / "make.py").write_text(SEEDS.split("class Pick")[0])
    (tmp_path / "pick.py").write_text("from pumpkin import Emit, Seed\n\n\nclass Pick" + SEEDS.split("class Pick")[1])
    token = "metrics-secret"
    a = pmk("--seed", str(tmp_path / "make.py"), "--http.port", "0", "--http.token", token)
    b = pmk("--seed", str(tmp_path / "pick.py"), "--http.port", "0")
    b.wait_for("sink got 1", 30)
    b_id = next(line.split("UID: ")[1] for line in b.err if "Node assigned UID:" in line)
    url = web_url(a) + "metrics"

    def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """A scrape once B acknowledged all three packets (the first ACK gives the RTT; others may follow)."""
        got = samples(scrape(sandbox, url)[2])
        rtt = ("pumpkin_peer_rtt_seconds", frozenset({("peer", b_id), ("seed", "Pick")}))
        inflight = got.get(("pumpkin_peer_inflight_packets", frozenset({("peer", b_id)})))
        sent = got.get(("pumpkin_router_remote_total", frozenset()))
        return got if rtt in got and inflight == 0 and sent == 3 else {}

    got = wait_until(settled, 15, what="an RTT to B and nothing in flight")
    assert 0 < value(got, "pumpkin_peer_rtt_seconds", peer=b_id, seed="Pick") < 5
    assert value(got, "pumpkin_peer_rto_seconds", peer=b_id, seed="Pick") > 0
    assert value(got, "pumpkin_peer_inflight_packets", peer=b_id) == 0  # every packet acknowledged
    assert value(got, "pumpkin_seeds_emitted_total", seed="Make") == 3
    # The same guard as every GET: no token needed (nothing in it is data, a reason or a path), a wrong one
    # refused, a foreign Host refused.
    text = scrape(sandbox, url)[2]
    assert str(tmp_path) not in text and token not in text and "no source today" not in text
    assert scrape(sandbox, url, token)[0] == 200
    assert scrape(sandbox, url, "wrong")[0] == 401
