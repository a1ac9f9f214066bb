"""``pmk failed``, ``pmk replay`` and ``pmk pending`` on a real ``pmk`` (issue 15, item 5): kept failures are
listed and taken back once fixed; packets left waiting are shown, said at start-up, and cleared to failed/."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import PMK, ROOT
from tests.helpers import wait_until

PICKY = """
from pathlib import Path

from pumpkin import Seed


class Picky(Seed):
    consumes = "Num:NUM"

    def run(self, n):
        if not Path(__file__).with_name("fixed").exists():
            raise ValueError(f"cannot take {n} yet")
        print("took", n, flush=True)
"""


def pmk_client(sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(sandbox.wrap([*PMK, *args]), capture_output=True, text=True, timeout=30, env=env)


def ok(sandbox, *args: str) -> str:
    r = pmk_client(sandbox, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_failed_packet_is_listed_and_replayed_once_its_seed_is_fixed(pmk, sandbox, tmp_path):
    (tmp_path / "picky.py").write_text(PICKY)
    p = pmk("--seed", str(tmp_path / "picky.py"), "--endpoint.type", "zmq.IPC", "--discovery.enable", "false")
    p.wait_for("Seed loaded: Picky", stream="err")
    wd = str(p.workdir)
    pid, _ = ok(sandbox, "inject", "NUM", "7", "--workdir", wd).split()
    p.wait_for("cannot take 7 yet", stream="err")
    listed = ok(sandbox, "failed", "--workdir", wd)
    assert listed.startswith(f"1 failed packet(s) kept in {p.workdir / 'failed'}, newest first")
    row = listed.splitlines()[1]
    assert f"seed-error       Picky        {pid}" in row and "seed Picky raised ValueError: cannot take 7 yet" in row

    (tmp_path / "fixed").touch()
    new_id, state, *rest = ok(sandbox, "replay", pid, "--workdir", wd).split()
    assert state == "default:*:NUM" and " ".join(rest) == f"(replay of {pid})"
    assert new_id != pid and new_id.rsplit(":", 2)[0] == pid.rsplit(":", 2)[0]  # a new id, in the same lineage
    p.wait_for("took 7")
    assert not list((p.workdir / "failed").iterdir())  # it left failed/ once accepted again
    assert ok(sandbox, "failed", "--workdir", wd).startswith("0 failed packet(s)")
    events = ok(sandbox, "trace", pid, "--workdir", wd)
    assert f"in       {new_id} in default:*:NUM (by pmk-replay, replay of {pid})" in events
    assert f"done     {new_id} by Picky" in events

    again = pmk_client(sandbox, "replay", pid, "--workdir", wd)
    assert again.returncode == 1 and f"no packet {pid} is kept in" in again.stderr


def test_waiting_packets_are_shown_said_at_start_up_and_cleared_to_failed(pmk, sandbox, tmp_path):
    args = ("--endpoint.type", "zmq.IPC", "--discovery.enable", "false")
    wd = tmp_path / "node"
    p = pmk(*args, workdir=wd)
    p.wait_for("Greeting: Hello World")
    ids = [ok(sandbox, "inject", "NOBODY", str(n), "--workdir", str(wd)).split()[0] for n in range(3)]
    shown = ok(sandbox, "pending", "--workdir", str(wd))
    assert shown.startswith("3 packet(s) waiting in the running daemon (a stop saves them to pending/)")
    assert "  default:*:NOBODY: 3" in shown and all(i in shown for i in ids)
    p.stop()
    assert p.stderr_has("Saved 3 packet(s) still on their way to")

    at_rest = ok(sandbox, "pending", "--workdir", str(wd))  # no daemon: what pending/ holds
    assert at_rest.startswith("3 packet(s) saved in pending/") and all(i in at_rest for i in ids)

    p = pmk(*args, workdir=wd)
    p.wait_for("Greeting: Hello World")
    resumed = next(line for line in p.err if "Resumed 3 packet(s)" in line)
    assert f"'pmk pending --workdir {wd}' lists them" in resumed
    assert f"'pmk pending --clear --workdir {wd}' moves them to failed/" in resumed
    cleared = ok(sandbox, "pending", "--clear", "--workdir", str(wd))
    assert cleared.startswith(f"Moved 3 waiting packet(s) to {wd / 'failed'}")
    wait_until(lambda: ok(sandbox, "failed", "--workdir", str(wd)).startswith("3 failed"), 10, what="3 kept")
    rows = ok(sandbox, "failed", "--workdir", str(wd)).splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["cleared"] * 3 and all(any(i in r for r in rows) for i in ids)
    assert ok(sandbox, "pending", "--workdir", str(wd)).startswith("0 packet(s) waiting")
    p.stop()
    assert not p.stderr_has("Saved 3 packet(s)")

    # At rest too: what a stop saved is moved to failed/, and the next start resumes nothing.
    p = pmk(*args, workdir=wd)
    p.wait_for("Greeting: Hello World")
    ok(sandbox, "inject", "NOBODY", "9", "--workdir", str(wd))
    p.stop()
    assert ok(sandbox, "pending", "--clear", "--workdir", str(wd)).startswith("Moved 1 packet(s) from ")
    assert not list(Path(wd / "pending").glob("*.jsonl"))
    p = pmk(*args, workdir=wd)
    p.wait_for("Greeting: Hello World")
    assert not p.stderr_has("Resumed")
    assert ok(sandbox, "failed", "--workdir", str(wd)).startswith("4 failed")
