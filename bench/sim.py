"""The simulator at scale: 1,000 simulated nodes gossiping 100,000 messages.

    .venv/bin/python bench/sim.py [--nodes 1000] [--messages 100000] [--repeat 3]

pumpkin.sim's gossip example on a random graph (degree 8), lognormal latency (median 5 ms) and 1% loss: each node
that hears the rumour pushes it to a random neighbour every 0.1 virtual seconds for messages/nodes rounds. The
history is kept (every send, delivery, drop and timer), as a user's run would. Prints a table and one JSON line:
wall seconds, virtual seconds, their ratio (virtual / wall: how much faster than real time), events per second,
and whether everyone heard (the example's checker). Baseline in the same run: the same number of pushes and pops
on a bare heapq, the floor any event-driven simulator in Python stands on.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pumpkin.sim import Link, LogNormal, Network, check  # noqa: E402
from pumpkin.sim.examples import gossip  # noqa: E402
from pumpkin.sim.topology import random_graph  # noqa: E402


def one(nodes: int, messages: int, seed: int) -> dict[str, float]:
    rounds = max(1, messages // nodes)

    class Pusher(gossip.Gossiper):
        pass

    Pusher.rounds = rounds
    net = Network(seed, Link(LogNormal(0.005, 0.5), loss=0.01))
    names = [f"n{i}" for i in range(nodes)]
    start = time.perf_counter()
    net.build(random_graph(names, 8, net.rng), Pusher)
    net.run(gossip.ROUND_S * rounds * 3)
    wall = time.perf_counter() - start
    sim = net.history.records[-1].t
    ok = not check(net.history, gossip.CHECKERS)
    return {
        "wall_s": wall,
        "sim_s": sim,
        "ratio": sim / wall,
        "sent": net.wire.sent,
        "delivered": net.wire.delivered,
        "events": net.scheduler.fired,
        "events_per_s": net.scheduler.fired / wall,
        "records": len(net.history),
        "everyone_heard": float(ok),
    }


def bare_heap(n: int) -> float:
    """Seconds for ``n`` heap pushes and pops of (time, seq, callback) and a call each: the floor."""
    queue: list[tuple[float, int, object]] = []
    start = time.perf_counter()
    for i in range(n):
        heapq.heappush(queue, ((i * 7919) % 1000 / 1000, i, int))
    while queue:
        _, _, callback = heapq.heappop(queue)
        callback()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = [one(args.nodes, args.messages, seed) for seed in range(args.repeat)]
    r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
    gc.collect()  # the runs' garbage is freed here, not inside the baseline's timing
    floor = bare_heap(int(r["events"]))
    print(f"{args.nodes:,} nodes gossiping, {args.messages:,} messages; median of {args.repeat}")
    print(f"{'sent / delivered':28}{r['sent']:>12,.0f} / {r['delivered']:,.0f}")
    print(f"{'events fired':28}{r['events']:>12,.0f}")
    print(f"{'history records':28}{r['records']:>12,.0f}")
    print(f"{'wall (s)':28}{r['wall_s']:>12.2f}")
    print(f"{'virtual (s)':28}{r['sim_s']:>12.2f}")
    print(f"{'virtual / wall':28}{r['ratio']:>12.2f}")
    print(f"{'events per wall second':28}{r['events_per_s']:>12,.0f}")
    print(f"{'bare heapq, same events (s)':28}{floor:>12.3f}")
    print(f"{'everyone heard':28}{'yes' if r['everyone_heard'] == 1 else 'NO':>12}")
    print(json.dumps({"nodes": args.nodes, "messages": args.messages, "results": r, "bare_heap_s": floor}))


if __name__ == "__main__":
    main()
