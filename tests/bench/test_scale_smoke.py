"""bench/scale.py still runs: a tiny size prints its JSON line with sane figures (needs root, like the bench)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import CI, netns_unavailable_reason

ROOT = Path(__file__).resolve().parent.parent.parent
N = 3


def require_bench() -> None:
    """Skip without root, iproute2 or nftables; under CI=true that is a failure instead."""
    reason = netns_unavailable_reason() or (None if shutil.which("nft") else "needs nftables ('nft') for counters")
    if reason:
        if CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


def test_scale_bench_prints_sane_figures() -> None:
    require_bench()
    # Idle for 3 s first: in their first seconds together daemons still greet and ping (7-8.5 beacons a second
    # in a window 0.5 s after discovery, before and after the daemons' ticks; 6 once settled).
    cmd = [sys.executable, str(ROOT / "bench" / "scale.py"), "--sizes", str(N), "--idle-s", "3", "--window-s", "2"]
    r = subprocess.run([*cmd, "--deadline-s", "20"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith('{"benchmark": "scale"')]
    assert len(lines) == 1, r.stdout
    result = json.loads(lines[0])
    (size,) = result["sizes"]
    assert size["n"] == N and size["all_saw_all"] and size["still_all_alive"] == N, size
    assert 0 < size["discovery_from_first_launch_s"] < 20
    assert size["discovery_from_last_launch_s"] <= size["discovery_from_first_launch_s"]
    base = result["baseline"]
    assert 0 < base["python_bare"] < base["python_asyncio_zmq_zeroconf"] < base["daemon_web_off_rss_mb"] < 500
    # The page was opened (its server is made at the first connection), so it costs what a user sees it cost.
    assert base["daemon_web_on_page_status"] == [200, 200], base
    assert base["daemon_web_off_rss_mb"] * 0.9 < base["daemon_web_on_rss_mb"] < 500, base  # a daemon, its page opened
    assert base["daemon_web_off_rss_mb"] * 0.8 < size["rss_mb_median"] <= size["rss_mb_max"] < 500
    assert 0 <= size["cpu_pct_per_daemon_median"] < 100
    # One beacon per daemon per heartbeat (0.5 s), give or take one at the window's edges.
    assert abs(size["traffic"]["beacons"]["pkts_per_s"] - N / result["heartbeat_s"]) <= 1.5, size["traffic"]
    assert size["log_events"] == {"evasive": 0, "expired": 0, "back": 0, "errors": 0}


def test_forty_daemons_on_one_host_pace_their_beacons_and_are_quiet_at_idle() -> None:
    """Real daemons: past ~10 on a LAN, beacons are paced to ~20 a second in all (40 unpaced would send 80), and
    40 on one address hold 78 connections each from it, past the inbox's per-address limit (64) that once made
    them redial each other for ever (40,000-80,000 TCP packets a second at idle); each one's loop wakes a few
    times a second."""
    require_bench()
    n = 40
    cmd = [sys.executable, str(ROOT / "bench" / "scale.py"), "--sizes", str(n), "--idle-s", "2", "--window-s", "4"]
    r = subprocess.run([*cmd, "--deadline-s", "120"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(next(line for line in r.stdout.splitlines() if line.startswith('{"benchmark": "scale"')))
    (size,) = result["sizes"]
    assert size["all_saw_all"] and size["still_all_alive"] == n, size
    assert 12 <= size["traffic"]["beacons"]["pkts_per_s"] <= 28, size["traffic"]  # paced: ~20, not 80
    assert size["traffic"]["zmqtcp"]["pkts_per_s"] < 50, size["traffic"]  # idle: no PINGs, no redialling
    # Its periodic work on one grid of ticks: ~2.7 wake-ups a second (~16 when each timer woke the loop itself).
    assert size["wakeups_per_s_median"] < 6, size
    assert size["log_events"] == {"evasive": 0, "expired": 0, "back": 0, "errors": 0}
