"""Logs for machines (issue 15): ``--log-format json`` on a real ``pmk``, and a flood of seed failures folded into a
count that is always said, even when the daemon stops before the minute is over."""

from __future__ import annotations

import json
import signal

from tests.helpers import wait_until

SEEDS = """
from pumpkin import Seed


class Make(Seed):
    emits = "N:NUM"

    def run(self):
        yield from range(30)


class Pick(Seed):
    consumes = "N:NUM"
    emits = "N:OUT"

    def run(self, n):
        return {n}  # a set cannot travel: every packet fails (bad-data)
"""


def test_json_logs_carry_the_failures_fields_and_the_folded_count_at_a_stop(pmk, tmp_path):
    (tmp_path / "seeds.py").write_text(SEEDS)
    p = pmk(
        "--seed", str(tmp_path / "seeds.py"), "--log-format", "json", "--limits.log_lines_per_minute", "3",
        "--endpoint.type", "zmq.IPC", "--discovery.enable", "false", "--http.enable", "false",
    )  # fmt: skip
    p.wait_for('"message":"Seed loaded: Pick', stream="err")

    def lines() -> list[dict]:
        return [json.loads(line) for line in list(p.err)]  # every line is one JSON object

    failures = wait_until(
        lambda: (found := [r for r in lines() if r.get("kind") == "bad-data"]) and len(found) >= 3 and found,
        15,
        what="three failure lines",
    )
    first = failures[0]
    assert first["level"] == "WARNING" and first["logger"] == "pumpkin.failed" and first["seed"] == "Pick"
    assert first["packet"].count(":") == 3 and first["state"] == "default:N:NUM" and first["file"].endswith(".pkt")
    assert "emitted data that cannot travel" in first["message"] and first["time"][10] == "T"
    loaded = next(r for r in lines() if r["message"].startswith("Seed loaded: Make"))
    assert loaded["seed"] == "Make" and loaded["level"] == "INFO"
    assert p.stop(signal.SIGTERM) == 0
    records = lines()
    assert sum(r.get("kind") == "bad-data" and "folded" not in r for r in records) == 3  # the rest were folded ...
    (summary,) = [r for r in records if "folded" in r]  # ... and said as the daemon stopped, in one line
    assert summary["folded"] == 27 and summary["seed"] == "Pick" and summary["kind"] == "bad-data"
    assert summary["message"].startswith("… 27 more like this in the last ") and summary["level"] == "WARNING"
    assert records.index(summary) < next(i for i, r in enumerate(records) if r["message"].endswith("stopped"))
