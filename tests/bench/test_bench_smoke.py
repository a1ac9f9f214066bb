"""Each benchmark runs briefly and prints sane figures, so that they do not rot (speed is not judged here).

The figures themselves are for bench/README.md; these tests only check that every benchmark still runs end
to end and reports what it promises (a table and one JSON line, every figure positive and finite).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.netns import CI, require_netns

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def json_line(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON line in:\n{out.stdout}"
    return json.loads(lines[-1])


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and value > 0 and math.isfinite(value)


def test_chain_benchmark_reports_pumpkin_next_to_its_baselines():
    out = run_bench(
        "bench/chain.py",
        "--packets", "400",
        "--latency-packets", "60",
        "--sizes", "100",
        "--transports", "ipc",
        "--only", "chain,latency,inprocess",
        "--threaded",
        "--dispatch",
        "--minimal",
    )  # fmt: skip
    results = json_line(out)["results"]
    for row in ("raw_fair_ipc_100", "raw_promise_ipc_100", "raw_minimal_ipc_100", "asyncio_plain_100"):
        assert positive(results[row]["pps"]), results[row]
    assert positive(results["asyncio_packets_100"]["pps"]), results
    chains = ("chain_ipc_100_inline", "chain_ipc_100_threaded", "chain_ipc_100_dispatch seeds")
    for row in chains:  # CPU is read in 10 ms clock ticks: 400 packets of the raw chain may take none
        cpu = (results[row]["cpu_us"], results[row]["raw_cpu_us"])
        assert all(isinstance(c, float) and math.isfinite(c) and c >= 0 for c in cpu), results[row]
    for row in (*chains, "inprocess_100_inline"):
        r = results[row]
        assert all(positive(r[k]) for k in ("pumpkin_pps", "ratio")), r
        # abs_tol: the bench rounds the ratio to 3 decimals, which is more than 1% of a ratio below 0.05.
        expected = r["pumpkin_pps"] / (r.get("raw_pps") or r["asyncio_pps"])
        assert math.isclose(r["ratio"], expected, rel_tol=0.01, abs_tol=0.0005), r
    for row in chains:  # the chain next to the raw one that keeps the same delivery promise
        promised = results["raw_promise_ipc_100"]["pps"]
        r = results[row]
        assert math.isclose(r["ratio_promise"], r["pumpkin_pps"] / promised, rel_tol=0.01, abs_tol=0.0005), r
    lat = results["latency_ipc_inline"]
    assert all(positive(v) for v in lat.values()) and lat["pumpkin_p99_us"] >= lat["pumpkin_p50_us"], lat
    assert "Pumpkin 4 daemons, ipc, inline" in out.stdout and "per-hop latency" in out.stdout
    assert "fair raw pyzmq, ipc" in out.stdout and "minimal raw (1 msg/packet)" in out.stdout
    assert "fair raw + promise, ipc" in out.stdout
    # Zenoh is installed for the benchmark only (bench/.venv-peers): its rows run, or say clearly why not.
    if "zenoh_100" in results:
        assert positive(results["zenoh_100"]["pps"]) and positive(results["latency_zenoh"]["p50_us"]), results
        assert positive(results["chain_ipc_100_inline"]["ratio_zenoh"]), results
    else:
        assert "Zenoh rows skipped: " in out.stdout, out.stdout


def test_rx_benchmark_counts_files_end_to_end():
    out = run_bench("bench/rx_ingest.py", "--files", "60", "--runs", "1", "--settle", "0.1")
    results = json_line(out)["results"]
    assert all(positive(results[k]) for k in ("end_to_end_files_per_s", "intake_files_per_s", "ratio")), results
    assert positive(results["baseline_files_per_s"]), results
    assert "files/s end to end" in out.stdout and "median of 1" in out.stdout


def test_spool_benchmark_times_spills_and_read_backs():
    out = run_bench("bench/spool.py", "--packets", "3000", "--memory", "1000")
    results = json_line(out)["results"]
    memory, spool = results["memory"], results["spool"]
    assert all(positive(memory[k]) for k in ("park_memory_us", "take_us")), memory
    assert all(positive(spool[k]) for k in ("park_memory_us", "spill_us", "take_us", "read_back_us", "spool_mb")), spool
    assert all(r[k] >= 0 for r in (memory, spool) for k in ("rss_grown_mb", "peak_grown_mb")), results
    assert "median of 1" in out.stdout and "of which read back" in out.stdout


def test_mesh_cost_benchmark_times_a_packet_through_router_and_mesh():
    out = run_bench("bench/mesh_cost.py", "--packets", "2000", "--repeat", "2")
    assert positive(json_line(out)["us_per_packet"]) and "us per packet" in out.stdout


def test_sim_benchmark_reports_virtual_and_wall_time():
    out = run_bench("bench/sim.py", "--nodes", "50", "--messages", "2000", "--repeat", "1")
    results = json_line(out)["results"]
    assert all(positive(results[k]) for k in ("wall_s", "sim_s", "ratio", "events_per_s")), results
    assert results["sent"] == 2000 and results["everyone_heard"] == 1, results
    assert "virtual / wall" in out.stdout and "median of 1" in out.stdout


def test_discovery_benchmark_times_a_new_and_a_killed_peer():
    require_netns()
    out = run_bench("bench/discovery.py", "--runs", "1", timeout_s=240)
    results = json_line(out)["results"]
    for mode in ("broadcast", "mdns"):
        r = results[mode]
        assert all(positive(v) for v in r.values()), r
        assert r["evasive_s"] < r["expired_s"], r


def test_reliability_benchmark_counts_loss_and_duplicates_with_and_without_loss():
    require_netns()
    if not shutil.which("nft"):
        if CI:
            pytest.fail("CI=true but needs nftables ('nft') for the lossy runs")
        pytest.skip("needs nftables ('nft') for the lossy runs")
    out = run_bench("bench/reliability.py", "--packets", "200", "--repeat", "1", "--deadline", "60", timeout_s=240)
    result = json_line(out)
    assert result["benchmark"] == "reliability" and result["packets"] == 200, result
    results = result["results"]
    clean = results["no_loss"]
    assert positive(clean["seconds_median"]) and positive(clean["pkt_per_s_median"]), clean
    for mode in ("no_loss", "loss"):
        (run,) = results[mode]["runs"]
        assert all(isinstance(run[k], int) and run[k] >= 0 for k in ("lost", "duplicated", "failed", "resent")), run
    # A lossy run that does not finish within the deadline is reported as such (seconds null), not as a crash.
    ratio = results["ratio_loss_to_no_loss"]
    assert ratio is None or positive(ratio), results
    assert "no_loss #1" in out.stdout and "loss #1" in out.stdout


def test_files_benchmark_moves_a_file_through_two_hops_next_to_a_local_copy():
    out = run_bench("bench/files.py", "--size-mb", "8")
    results = json_line(out)
    assert results["sha256_ok"] is True, results
    assert all(positive(results[k]) for k in ("copy_s", "pumpkin_s", "ratio")), results
    assert set(results["peak_rss_mb"]) == {"source", "relay", "sink"}, results
    assert "local copy + fsync" in out.stdout and "peak RSS MB" in out.stdout


def test_profile_benchmark_names_the_costs_of_each_daemon():
    # py-spy comes with the test extras (scripts/test.sh installs them); a bare laptop venv may lack it.
    spies = [ROOT / "bench" / ".venv-peers" / "bin" / "py-spy", Path(sys.executable).parent / "py-spy"]
    if not any(s.exists() for s in spies) and not shutil.which("py-spy"):
        if CI:
            pytest.fail("py-spy is missing: the test extras install it (scripts/setup.sh test)")
        pytest.skip("py-spy is not installed (scripts/setup.sh test installs it)")
    out = run_bench("bench/profile_chain.py", "--packets", "30000", "--seconds", "1", "--top", "5")
    results = json_line(out)["results"]
    assert set(results) == {"source", "step1", "step2", "sink"}, results
    assert all(r["samples"] and r["self"] for r in results.values()), results
    assert "the loop thread's costs" in out.stdout


def test_simnet_benchmark_runs_pumpkin_nodes_with_discovery_and_checks_every_packet():
    """bench/simnet.py at a small size: 30 Pumpkin nodes on two subnets (a static peer between them), 600 packets."""
    out = run_bench("bench/simnet.py", "--nodes", "30", "--packets", "600", "--rate", "300", "--subnet", "15")
    r = json_line(out)["results"]
    assert r["accepted"] == 600 and r["delivered"] == 600 and r["violations"] == 0, r
    assert all(positive(r[k]) for k in ("wall_s", "cpu_s", "sim_s", "ratio", "ratio_cpu", "events", "messages")), r
    # Every node beacons from its start to the end of the run, each on its own phase: every 0.5 s at first, then,
    # hearing 15 on its subnet, every 15 / LAN_BEACONS_PER_S = 0.75 s (the LAN's 20 beacons a second in all).
    assert abs(r["beacon_broadcasts"] - 30 * r["sim_s"] / 0.75) <= 30, r
    assert "virtual / wall" in out.stdout and "15 per subnet" in out.stdout
