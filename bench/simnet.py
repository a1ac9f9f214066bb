"""Pumpkin itself at scale in the simulator: 1,000 simulated Pumpkin nodes finding each other by their beacons and
moving 100,000 packets, timed.

    .venv/bin/python bench/simnet.py [--nodes 1000] [--packets 100000] [--subnet 1000] [--repeat 1]

Every node is a real Mesh and Router (``pumpkin.simnet``) with the daemon's discovery (a beacon per node per
heartbeat, 0.5 s, to every node of its subnet; liveness; HELLOs), its intake journal and tx folder on a simulated
disk. The hello world's seeds: one node in a hundred injects (``pmk inject``, journaled), one in a hundred
extracts (tx folder on), the rest greet. ``--subnet`` nodes share a broadcast domain; with several subnets,
each node names the first node of the previous subnet as a static peer, and gossip does the rest. The history is
kept and checked (exactly once, routed to consumers). Prints a table and one JSON line: wall seconds, virtual
seconds, their ratio (virtual / wall), events, messages and beacons. Baseline in the same run: as many bare
``heapq`` pushes, pops and calls as the run fired events, the floor any Python event simulator stands on.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import bare_heap  # noqa: E402  (bench/sim.py: this script's folder is on sys.path)

from pumpkin import simrun  # noqa: E402

SEEDS = ROOT / "seeds" / "helloworld"


def scenario(
    nodes: int, packets: int, subnet: int, rate: float, seed: int, duration_s: float | None = None
) -> dict[str, Any]:
    """The hello world over ``nodes`` nodes: 1% inject, 1% extract, the rest greet."""
    edge = max(1, nodes // 100)
    names = [f"N{i}" for i in range(nodes)]
    sources, sinks = names[:edge], names[edge : 2 * edge]
    layout: dict[str, list[Path]] = {n: [] for n in sources}
    layout.update({n: [SEEDS / "extract.py"] for n in sinks})
    layout.update({n: [SEEDS / "greet.py"] for n in names[2 * edge :]})
    per_source = packets // len(sources)
    injections = [
        {"node": n, "state": "UNGREETED", "data": "n{i}", "count": per_source, "rate": rate / len(sources)}
        for n in sources
    ]
    # Subnets cut across the roles (node i is on subnet i % count), so that each one has sources, sinks and greeters.
    count = max(1, -(-nodes // subnet))
    subnets = {f"lan{k}": names[k::count] for k in range(count)}
    peers = {names[k]: [names[k - 1]] for k in range(1, count)} if count > 1 else {}
    duration = duration_s if duration_s is not None else per_source / (rate / len(sources)) + 5.0
    return {
        "seed": seed,
        "duration": duration,
        "run_s": 0.0005,
        "link": {"latency": 0.001, "jitter": 0.001},
        "nodes": layout,
        "subnets": subnets,
        "peers": peers,
        "inject": injections,
    }


def one(
    nodes: int, packets: int, subnet: int, rate: float, seed: int, profile: Path | None, duration_s: float | None
) -> dict[str, float]:
    s = scenario(nodes, packets, subnet, rate, seed, duration_s)
    # The run before this one left its objects as garbage in cycles (~4 GB at 1,000 nodes): collected now, so
    # that this run does not pay for it (with --repeat 3 the later runs took 67 s where a first one took 51).
    gc.collect()
    if profile is not None:
        import cProfile

        prof = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
        prof.enable()
    result = simrun.run(s)
    if profile is not None:
        prof.disable()
        prof.dump_stats(profile)
    h = result.history
    sim_s = simrun.SETTLE_S + float(s["duration"])
    tx = len(h.notes("tx"))
    beacons = sum(1 for r in h.of("send") if r.msg == "beacon" and not r.peer)
    return {
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "sim_s": sim_s,
        "ratio": sim_s / result.wall_s,
        "ratio_cpu": sim_s / result.cpu_s,
        "accepted": len(h.notes("inject")),
        "delivered": tx,
        "violations": len(result.violations),
        "messages": sum(1 for r in h.of("send") if r.msg != "beacon"),
        "beacon_broadcasts": beacons,
        "events": result.events,
        "records": len(h),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--subnet", type=int, default=0, help="nodes per broadcast domain (default: all on one)")
    ap.add_argument("--rate", type=float, default=10_000.0, help="packets offered per virtual second, in all")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", type=Path, help="write a cProfile (CPU time) of the first run here")
    ap.add_argument("--duration", type=float, help="virtual seconds after discovery (default: until all delivered)")
    args = ap.parse_args()
    subnet = args.subnet or args.nodes
    runs = [
        one(args.nodes, args.packets, subnet, args.rate, seed, args.profile if seed == 0 else None, args.duration)
        for seed in range(args.repeat)
    ]
    r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    print("wall of each run (s): " + ", ".join(f"{run['wall_s']:.1f}" for run in runs))
    # The runs' objects are garbage in cycles by now: freed here, not inside the baseline's timing (where the
    # collector's passes over the 1,000-node run's ~4 GB made the bare heap take 31 s instead of ~5).
    gc.collect()
    cpu0 = time.process_time()
    floor = bare_heap(int(r["events"]))
    floor_cpu = time.process_time() - cpu0
    print(f"{args.nodes:,} Pumpkin nodes ({subnet:,} per subnet), {args.packets:,} packets; median of {args.repeat}")
    print(f"{'accepted / delivered':28}{r['accepted']:>12,.0f} / {r['delivered']:,.0f}")
    print(f"{'checker violations':28}{r['violations']:>12,.0f}")
    print(f"{'messages (beacons aside)':28}{r['messages']:>12,.0f}")
    print(f"{'beacon broadcasts':28}{r['beacon_broadcasts']:>12,.0f}")
    print(f"{'events fired':28}{r['events']:>12,.0f}")
    print(f"{'wall (s)':28}{r['wall_s']:>12.2f}")
    print(f"{'virtual (s)':28}{r['sim_s']:>12.2f}")
    print(f"{'CPU of this process (s)':28}{r['cpu_s']:>12.2f}")
    print(f"{'virtual / wall':28}{r['ratio']:>12.3f}")
    print(f"{'virtual / CPU':28}{r['ratio_cpu']:>12.3f}")
    print(f"{'bare heapq, same events (s)':28}{floor:>12.3f} (CPU {floor_cpu:.3f})")
    out = {
        "nodes": args.nodes,
        "packets": args.packets,
        "subnet": subnet,
        "results": r,
        "wall_s_each": [round(run["wall_s"], 2) for run in runs],
        "bare_heap_s": floor,
        "bare_heap_cpu_s": floor_cpu,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
