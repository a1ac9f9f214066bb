"""One source of counters (issue 15, item 7): what ``pmk stats`` prints, what the page's API serves, and what
``/metrics`` exports agree, on a real ``pmk`` whose seeds fail in every way a seed can."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

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
