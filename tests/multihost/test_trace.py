"""``pmk trace`` follows a packet and its lineage across three namespace hosts (issue 15): A injects, a seed on B
doubles, a seed on C takes the result out; a second packet fails on B. Asked on A, the trace names each step's
node and seed, and where each packet is now or why it failed."""

from __future__ import annotations

import json

from tests.helpers import wait_until
from tests.multihost.conftest import FAST

DOUBLE = """
from pumpkin import Seed


class Double(Seed):
    consumes = "Num:NUM"
    emits = "Num:TWICE"

    def run(self, n):
        return 2 * int(n)  # a word raises ValueError: that packet fails here
"""

SINK = """
from pumpkin import Seed


class Show(Seed):
    consumes = "Num:TWICE"

    def run(self, n):
        print("twice:", n, flush=True)
"""


def test_trace_follows_a_packet_across_three_hosts(hosts, tmp_path):
    (tmp_path / "double.py").write_text(DOUBLE)
    (tmp_path / "show.py").write_text(SINK)
    b = hosts.pmk("B", "--seed", str(tmp_path / "double.py"), *FAST)
    c = hosts.pmk("C", "--seed", str(tmp_path / "show.py"), *FAST)
    (tmp_path / "none").mkdir()
    a = hosts.pmk("A", "--taskdir", str(tmp_path / "none"), *FAST)
    for p, seed in ((a, "Double"), (a, "Show"), (b, "Show")):
        p.wait_for(f"Discovered new peer seed: {seed}", 20, stream="err")

    good, _ = hosts.client("A", "inject", "NUM", "21", "--workdir", str(a.workdir)).split()
    c.wait_for("twice: 42", 20)
    bad, _ = hosts.client("A", "inject", "NUM", "twenty", "--workdir", str(a.workdir)).split()
    wait_until(lambda: b.stderr_has("invalid literal"), 20, what="the word to fail on B")

    def traced(pid: str, last: str) -> dict:
        """``pmk trace --json`` on A, once its newest event is ``last`` (C notes "done" just after the print)."""
        return wait_until(
            lambda: (
                (t := json.loads(hosts.client("A", "trace", pid, "--json", "--wait", "5", "--workdir", wd)))
                and t["events"]
                and t["events"][-1]["event"] == last
                and t
            ),
            30,
            what=f"the trace of {pid} to end in {last}",
        )

    wd = str(a.workdir)
    trace = traced(good, "done")
    steps = [(e["node"], e["event"], e.get("seed", ""), e.get("peer", "")) for e in trace["events"]]
    a_id, b_id, c_id = "nodeA2", "nodeB0", "nodeC1"
    assert steps == [
        (a_id, "in", "pmk-inject", ""),
        (a_id, "sent", "Double", b_id),
        (b_id, "ran", "Double", ""),
        (b_id, "made", "Double", ""),
        (b_id, "sent", "Show", c_id),
        (c_id, "done", "Show", ""),
    ], steps
    ran = next(e for e in trace["events"] if e["event"] == "ran")
    made = next(e for e in trace["events"] if e["event"] == "made")
    assert ran["packet"] == good and made["parent"] == good and 0 < ran["s"] < 5
    assert made["state"] == "default:Num:TWICE" and trace["silent"] == [] and sorted(trace["asked"]) == [b_id, c_id]
    assert trace["events"][-1]["packet"] == made["packet"]
    # In words, as a person reads it.
    text = hosts.client("A", "trace", good, "--workdir", str(a.workdir))
    assert f"sent     {good} to {b_id} for Double" in text
    assert f"done: Show on {c_id} took it out of the network" in text.split("Where each packet is now:")[1]

    # The packet that failed: where, why (the kind; the reason is B's to show), and the file B keeps it in.
    failed = traced(bad, "failed")
    last = failed["events"][-1]
    assert (last["node"], last["event"], last["seed"], last["kind"]) == (b_id, "failed", "Double", "seed-error")
    assert (b.workdir / "failed" / last["file"]).exists() and "reason" not in last
    text = hosts.client("A", "trace", bad, "--workdir", str(a.workdir))
    assert f"{bad}  failed on {b_id} (seed-error), kept in its failed/ as {last['file']}" in text
    # On B itself the trace also says why, and pmk failed lists it; pmk replay takes it back once fixed.
    local = json.loads(hosts.client("B", "trace", bad, "--json", "--workdir", str(b.workdir)))
    mine = next(e for e in local["events"] if e["event"] == "failed")
    assert "ValueError: invalid literal for int() with base 10: 'twenty'" in mine["reason"]
    listed = hosts.client("B", "failed", "--workdir", str(b.workdir))
    assert f"seed-error       Double       {bad}" in listed
