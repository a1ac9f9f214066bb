#!/usr/bin/env python3
"""Waiting packets in memory and spilled to disk: time per packet parked and taken, and the memory it costs.

Parks N packets in one waiting queue (a seed with no room), then takes them all back in order, in a fresh
process per mode so that RSS figures are the waiting room's alone:

- **memory** (the baseline): ``routing.waiting_max_packets`` = N, no spool: every packet waits in memory.
- **spool**: ``waiting_max_packets`` = 10,000 (the default) and the spool at its default quota: past the first
  10,000 every packet is written to ``spool/`` (a spill) and read back when taken (a read-back).

Each packet is a dict ``{"i", "pad"}`` with a pad of ``--size`` characters (a string of its own) and a trail of
two hops, like a packet two seeds into a chain. RSS grown is VmRSS after parking minus before; peak is VmHWM's growth.

    .venv/bin/python bench/spool.py [--packets 200000] [--size 100] [--memory 10000] [--repeat 3]

With ``--repeat``, each mode runs that many times (alternating) and every figure is the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(mode: str, n: int, size: int, memory: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from pumpkin import tags
    from pumpkin.packet import Hop, Packet
    from pumpkin.spool import Spool, SpoolQueue
    from pumpkin.waiting import Entry, WaitingRoom

    tag = tags.parse("Pad:SLOW")
    trail = [Hop("make", "node-a", "default:Pad:MADE", 1.0), Hop("step", "node-b", str(tag), 2.0)]
    rest = "x" * max(0, size - 8)  # and 8 digits of the packet's number: a string of its own per packet
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "spool":
            room = WaitingRoom(memory, 600.0, Spool(Path(tmp) / "spool", 1 << 30))
        else:
            room = WaitingRoom(n, 600.0)
        made = [Packet(f"5eed0000:c0ffee00:2:{i:x}", tag, {"i": i, "pad": f"{i:08d}{rest}"}, []) for i in range(1000)]
        del made  # warm the allocator and the imports, outside the figures
        rss0, hwm0 = status_kb("VmRSS"), status_kb("VmHWM")
        park_s = [0.0, 0.0]  # (in memory, spilled)
        for i in range(n):
            p = Packet(f"5eed0000:c0ffee00:2:{i:x}", tag, {"i": i, "pad": f"{i:08d}{rest}"}, list(trail), 62, 1000.0)
            t = time.perf_counter()
            room.park(p, 0.0, "slow")
            park_s[room.in_memory < len(room)] += time.perf_counter() - t
        rss1, hwm1 = status_kb("VmRSS"), status_kb("VmHWM")
        spool_bytes = room.spool.used_bytes if room.spool is not None else 0
        kept = min(n, memory if mode == "spool" else n)
        spilled = n - kept
        # Reading back happens inside take (memory freed is filled again from disk): time it where it happens.
        read_s, reader = [0.0], SpoolQueue.read

        def timed_read(self: SpoolQueue, limit: int, until: float | None = None) -> list[Entry]:
            t = time.perf_counter()
            try:
                return reader(self, limit, until)
            finally:
                read_s[0] += time.perf_counter() - t

        SpoolQueue.read = timed_read  # type: ignore[method-assign]
        t = time.perf_counter()
        for i in range(n):  # one at a time, as the router hands a seed with room its waiting packets
            batch = room.take(tag, "slow", 1)
            assert batch and batch[0].data["i"] == i
        take_s = time.perf_counter() - t
        assert len(room) == 0 and (room.spool is None or room.spool.used_bytes == 0)
    return {
        "park_memory_us": park_s[0] / kept * 1e6,
        "spill_us": park_s[1] / spilled * 1e6 if spilled else 0.0,
        "take_us": take_s / n * 1e6,
        "read_back_us": read_s[0] / spilled * 1e6 if spilled else 0.0,
        "rss_grown_mb": (rss1 - rss0) / 1024,
        "peak_grown_mb": (hwm1 - hwm0) / 1024,
        "spool_mb": spool_bytes / (1 << 20),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100, help="characters of pad per packet")
    ap.add_argument("--memory", type=int, default=10_000, help="waiting_max_packets in the spool mode")
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode; figures are medians")
    ap.add_argument("--child", choices=("memory", "spool"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.packets, args.size, args.memory)))
        return
    runs: dict[str, list[dict[str, float]]] = {"memory": [], "spool": []}
    for _ in range(args.repeat):
        for mode in runs:
            cmd = [sys.executable, __file__, "--child", mode, "--packets", str(args.packets), "--size", str(args.size)]
            out = subprocess.run([*cmd, "--memory", str(args.memory)], capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    m, s = results["memory"], results["spool"]
    print(
        f"{args.packets:,} packets waiting ({args.size} B pad); spool mode keeps {args.memory:,} in memory; "
        f"median of {args.repeat}"
    )
    print(f"{'':28}{'all in memory':>16}{'spool':>16}")
    print(f"{'park, in memory (us/pkt)':28}{m['park_memory_us']:>16.2f}{s['park_memory_us']:>16.2f}")
    print(f"{'park, spilled (us/pkt)':28}{'':>16}{s['spill_us']:>16.2f}")
    print(f"{'take, all (us/pkt)':28}{m['take_us']:>16.2f}{s['take_us']:>16.2f}")
    print(f"{'of which read back (us/pkt)':28}{'':>16}{s['read_back_us']:>16.2f}")
    print(f"{'RSS grown (MB)':28}{m['rss_grown_mb']:>16.1f}{s['rss_grown_mb']:>16.1f}")
    print(f"{'peak RSS grown (MB)':28}{m['peak_grown_mb']:>16.1f}{s['peak_grown_mb']:>16.1f}")
    print(f"{'spool on disk (MB)':28}{'':>16}{s['spool_mb']:>16.1f}")
    print(json.dumps({"packets": args.packets, "size": args.size, "memory": args.memory, "results": results}))


if __name__ == "__main__":
    main()
