#!/usr/bin/env python3
"""Files per second through the rx folder, end to end: drop N packet files, count the results in tx/.

Each run starts a fresh ``pmk`` with the hello world's greet and extract seeds, ``--rx`` and ``--tx``
(inside a throwaway network namespace when run as root, like scripts/hello.sh), waits until it watches
its folder, then renames N prepared files into the folder at once and times until N result files exist
in tx/extract (and, separately, until every file has left the folder: the intake rate). Prints each run
and the median of the runs, next to a baseline run in the same invocation: a plain Python loop that does
the file-system work a file needs at the least (list the folder, read and parse each file, write a result
file, move the input to done/), with no daemon, no journal and no fsync; the ratio is Pumpkin's end-to-end
rate over the baseline's.

    .venv/bin/python bench/rx_ingest.py [--files 2000] [--runs 3] [--settle 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "seeds" / "helloworld"


def pmk_command() -> list[str]:
    script = Path(sys.executable).with_name("pmk")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "pumpkin"]
    if os.geteuid() == 0 and shutil.which("ip"):
        return [str(ROOT / "scripts" / "sandbox.sh"), *cmd]
    return cmd


def count(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def one_run(n: int, settle_s: float, base: Path) -> tuple[float, float]:
    rx, tx, staging, wd = base / "rx", base / "tx", base / "staging", base / "node"
    staging.mkdir(parents=True)
    for i in range(n):
        (staging / f"f{i:05d}.json").write_text(json.dumps({"state": "UNGREETED", "data": f"n{i}"}))
    log = open(base / "pmk.log", "w")  # noqa: SIM115 - the daemon writes it until the finally below
    proc = subprocess.Popen(
        [
            *pmk_command(),
            "--endpoint.type",
            "zmq.IPC",
            "--workdir",
            str(wd),
            "--rx",
            str(rx),
            "--tx",
            str(tx),
            "--rx.settle_s",
            str(settle_s),
            "--seed",
            str(HELLO / "greet.py"),
            "--seed",
            str(HELLO / "extract.py"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while "Watching rx folder" not in (base / "pmk.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pmk did not start:\n{(base / 'pmk.log').read_text()}")
            time.sleep(0.05)
        names = sorted(os.listdir(staging))
        start = time.perf_counter()
        for name in names:
            os.rename(staging / name, rx / name)
        intake = None
        deadline = time.monotonic() + 300
        while count(tx / "extract") < n:
            if intake is None and count(rx / "done") >= n:
                intake = time.perf_counter() - start
            if time.monotonic() > deadline:
                raise SystemExit(f"only {count(tx / 'extract')} of {n} results after 300 s")
            time.sleep(0.02)
        total = time.perf_counter() - start
        if intake is None:
            while count(rx / "done") < n:
                time.sleep(0.02)
            intake = time.perf_counter() - start
        return n / total, n / intake
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def baseline_run(n: int, base: Path) -> float:
    """Files per second for the least file-system work per file: read, parse, write a result, move to done/."""
    rx, tx, done = base / "rx", base / "tx", base / "rx" / "done"
    for folder in (rx, tx, done):
        folder.mkdir(parents=True)
    for i in range(n):
        (rx / f"f{i:05d}.json").write_text(json.dumps({"state": "UNGREETED", "data": f"n{i}"}))
    start = time.perf_counter()
    for entry in list(os.scandir(rx)):
        if not entry.is_file():
            continue
        doc = json.loads(Path(entry.path).read_bytes())
        (tx / entry.name).write_text(json.dumps({"state": "GREETING", "data": f"Hello {doc['data']}"}))
        os.rename(entry.path, done / entry.name)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=0.5, help="rx.settle_s (default 0.5, the default of the key)")
    args = ap.parse_args()
    ends, intakes, bases = [], [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pmk-bench-") as tmp:
            bases.append(baseline_run(args.files, Path(tmp) / "baseline"))
            end, intake = one_run(args.files, args.settle, Path(tmp))
        ends.append(end)
        intakes.append(intake)
        print(
            f"run {run + 1}: {end:8.0f} files/s end to end (into tx/), {intake:8.0f} files/s out of rx/; "
            f"baseline {bases[-1]:8.0f} files/s"
        )
    ratio = statistics.median(e / b for e, b in zip(ends, bases, strict=True))
    print(
        f"median of {args.runs}: {statistics.median(ends):.0f} files/s end to end, "
        f"{statistics.median(intakes):.0f} files/s intake ({args.files} files, rx.settle_s={args.settle:g}); "
        f"baseline {statistics.median(bases):.0f} files/s; ratio {ratio:.3f}"
    )
    result = {
        "end_to_end_files_per_s": round(statistics.median(ends)),
        "intake_files_per_s": round(statistics.median(intakes)),
        "baseline_files_per_s": round(statistics.median(bases)),
        "ratio": round(ratio, 3),
        "runs": [
            {"end_to_end": round(e), "intake": round(i), "baseline": round(b)}
            for e, i, b in zip(ends, intakes, bases, strict=True)
        ],
    }
    print(json.dumps({"benchmark": "rx_ingest", "files": args.files, "settle_s": args.settle, "results": result}))


if __name__ == "__main__":
    main()
