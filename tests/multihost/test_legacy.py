"""Pipelines in the original Pumpkin's format split over two (network-namespace) hosts."""

from __future__ import annotations

from tests.multihost.conftest import FAST
from tests.multiprocess.test_legacy import LEGACY
from tests.multiprocess.test_rx import drop


def test_pkt_loads_run_on_the_host_that_has_the_seed(hosts, tmp_path):
    rx = tmp_path / "rx"
    b = hosts.pmk("B", "--taskdir", str(LEGACY / "jobs" / "work"), *FAST)
    a = hosts.pmk("A", "--taskdir", str(LEGACY / "jobs" / "report"), "--rx", str(rx), "--rx.settle_s", "0.1", *FAST)
    a.wait_for("Watching rx folder", stream="err")
    for i in (1, 2, 3):
        drop(rx, f"job_{i}.pkt", (LEGACY / "jobs" / f"job_{i}.pkt").read_text())
    for i, ttl in ((1, "600"), (2, "600"), (3, "D")):
        a.wait_for(f"report: job{i} slept 0.{i} of 0.{i} s (ttl {ttl}) on nodeB", 30)
    assert b.proc.poll() is None


def test_filters_on_one_host_collectors_on_the_other(hosts):
    b = hosts.pmk("B", "--taskdir", str(LEGACY / "tweets" / "filters"), *FAST)
    a = hosts.pmk("A", "--taskdir", str(LEGACY / "tweets" / "source"), *FAST)
    a.wait_for("collected ENGLISH: the weather is nice", 30)
    a.wait_for("collected ENGLISH: is it going to rain on the park today?", 30)
    a.wait_for("collected QUESTION: is it going to rain on the park today?", 30)
    assert not a.stdout_has("het weer") and b.proc.poll() is None
