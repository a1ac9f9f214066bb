#!/usr/bin/env python3
"""What Pumpkin's delivery promise costs: the chain of issue 10 with no loss, and with random loss on every link.

    sudo .venv/bin/python bench/reliability.py [--packets 10000] [--loss 20] [--repeat 3] [--work-ms 0]

Four namespace hosts (tests/multihost/lan.py): a numbered source on A, one transform replicated on B and C,
a sink on D (the other subnet, behind a router) writing every result to tx/ (tests/multihost/faults.py). Each
repeat runs the chain twice, back to back: on a clean network, then with ``--loss`` percent of the frames each
switch delivers to a host dropped at random (nftables; so every host-to-host path, across the router too, loses
that much each way) from once the chain has found itself until the daemons stop. A run's time is from the
source's go until every number has run in the sink's seed and has its tx file. Each run also counts the numbers
lost (not at the sink when the chain stopped; ``pending``: what the daemons saved to pending/ as they stopped)
and duplicated (in the sink seed's inputs and in tx/), what went to failed/, packets still unacknowledged
(in flight) 5 s after the last delivery, packets re-sent after a peer went silent, and duplicates the sink's daemon
dropped.

Prints a row per run, the medians, and one JSON line. The figures to watch: the no-loss rate (packets/s, the
chain's throughput: what stronger guarantees cost) and the loss/no-loss time ratio (the issue's target: 3 x).
Needs root (it builds its own namespaces and deletes them); no packet leaves the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import wait_until  # noqa: E402
from tests.multihost.faults import FaultChain, Outcome  # noqa: E402
from tests.multihost.lan import Lan  # noqa: E402

ACK_GRACE_S = 5.0


def one_run(lan: Lan, tmp: Path, packets: int, loss: int, work_s: float, deadline_s: float) -> dict[str, Any]:
    """One run of the chain; its figures."""
    chain = FaultChain(lan, tmp, packets, work_s=work_s)
    try:
        chain.up()  # on a clean network: the runs time the stream, not finding peers (see bench/README.md)
        if loss:
            lan.lossy(loss)
        chain.go()
        elapsed = chain.wait_delivered(deadline_s)
        if elapsed is not None:  # a moment for the last acknowledgements, so that "unacked" counts lost ones
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not chain.unacknowledged(), ACK_GRACE_S, interval_s=0.5)
        out = chain.finish(elapsed)
    finally:
        chain.close()
        lan.reset()
    return figures(out)


def figures(out: Outcome) -> dict[str, Any]:
    stats = out.stats
    return {
        "seconds": round(out.elapsed_s, 3) if out.elapsed_s is not None else None,
        "pkt_per_s": round(out.count / out.elapsed_s) if out.elapsed_s else None,
        "lost": len(set(out.lost_inputs) | set(out.lost_tx)),
        "duplicated": sum(out.duplicated_inputs.values()) + sum(len(f) - 1 for f in out.duplicated_tx.values()),
        "failed": out.failed_count(),
        "pending": sum(out.pending.values()),
        "unacked": sum(sum(s.get("inflight", {}).values()) for s in stats.values()),
        "resent": sum(s.get("mesh", {}).get("rerouted", 0) for s in stats.values()),
        "dropped_duplicates": stats.get("D", {}).get("mesh", {}).get("duplicates", 0),
    }


COLUMNS = [
    ("seconds", "seconds", 10),
    ("pkt_per_s", "pkt/s", 7),
    ("lost", "lost", 6),
    ("duplicated", "dup", 5),
    ("failed", "failed", 7),
    ("pending", "pending", 8),
    ("unacked", "unacked", 8),
    ("resent", "resent", 7),
    ("dropped_duplicates", "dropped dup", 11),
]


def _cell(value: Any) -> str:
    if value is None:
        return "unfinished"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def median(runs: list[dict[str, Any]], key: str, unfinished: float) -> float | None:
    """The median of ``key`` over ``runs``, an unfinished run counting as ``unfinished`` (None when that wins)."""
    value = statistics.median(unfinished if r[key] is None else r[key] for r in runs)
    return None if value == unfinished else value


def commit() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=10_000, help="numbered packets per run")
    ap.add_argument("--loss", type=int, default=20, help="percent of frames each switch drops in the lossy runs")
    ap.add_argument("--repeat", type=int, default=3, help="pairs of runs (no loss, loss); medians are printed")
    ap.add_argument("--work-ms", type=float, default=0.0, help="the transform's time per packet (2 workers each)")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds a run may take before it counts unfinished")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        sys.exit("bench/reliability.py needs root, iproute2 and nftables (it builds network namespaces)")
    modes = {"no_loss": 0, "loss": args.loss}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    print(f"{'run':<14}", *(f"{title:>{width}}" for _, title, width in COLUMNS))
    lan = Lan().up()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.repeat):
                for mode, loss in modes.items():
                    r = one_run(lan, Path(tmp) / f"{mode}{i}", args.packets, loss, args.work_ms / 1000, args.deadline)
                    runs[mode].append(r)
                    cells = [f"{_cell(r[key]):>{width}}" for key, _, width in COLUMNS]
                    print(f"{mode + ' #' + str(i + 1):<14}", *cells, flush=True)
    finally:
        lan.down()
    results: dict[str, Any] = {}
    for mode in modes:
        results[mode] = {
            "seconds_median": median(runs[mode], "seconds", math.inf),
            "pkt_per_s_median": median(runs[mode], "pkt_per_s", 0),
            "lost": sum(r["lost"] for r in runs[mode]),
            "duplicated": sum(r["duplicated"] for r in runs[mode]),
            "failed": sum(r["failed"] for r in runs[mode]),
            "runs": runs[mode],
        }
    clean, lossy = results["no_loss"]["seconds_median"], results["loss"]["seconds_median"]
    ratio = round(lossy / clean, 2) if clean and lossy else None
    results["ratio_loss_to_no_loss"] = ratio
    pps = results["no_loss"]["pkt_per_s_median"]
    print(
        f"\nmedians of {args.repeat}, {args.packets} packets: no loss {clean} s ({pps} pkt/s), {args.loss}% loss "
        f"{lossy} s: ratio {ratio if ratio is not None else 'unfinished'} (target 3); "
        f"lost {results['no_loss']['lost']} / {results['loss']['lost']}, "
        f"duplicated {results['no_loss']['duplicated']} / {results['loss']['duplicated']} (no loss / loss, all runs)"
    )
    print(
        json.dumps(
            {
                "benchmark": "reliability",
                "commit": commit(),
                "packets": args.packets,
                "loss_percent": args.loss,
                "work_ms": args.work_ms,
                "repeat": args.repeat,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
