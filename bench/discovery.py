"""Discovery figures on network-namespace hosts, with default settings.

    sudo .venv/bin/python bench/discovery.py [--runs 5]

For broadcast-only and mDNS-only discovery: the time from starting a daemon (B, running greet) until the
first packet is routed to it (A, holding a waiting "World", prints the greeting), and the time until A
notices B was killed with kill -9 (B turns evasive: no more packets go to it) and forgets it (expired).
Prints a table and JSON. Needs root (it builds its own namespaces and deletes them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.multihost.lan import Lan  # noqa: E402

PMK = [sys.executable, "-m", "pumpkin"]
HELLO = ROOT / "seeds" / "helloworld"


class Proc:
    """A pmk process whose output lines are time-stamped as they arrive."""

    def __init__(self, cmd: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:  # type: ignore[union-attr]
            self.lines.append((time.monotonic(), line.rstrip()))

    def when(self, text: str, timeout_s: float = 30.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if text in line:
                    return t
            time.sleep(0.005)
        raise TimeoutError(f"{text!r} not seen in {timeout_s} s")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


def trial(lan: Lan, mode: str, tmp: Path, i: int) -> dict[str, float]:
    off = {"broadcast": ["--discovery.mdns", "false"], "mdns": ["--discovery.broadcast", "false"]}[mode]
    a = Proc(
        lan.wrap(
            "A",
            [
                *PMK,
                "--workdir",
                str(tmp / f"a{i}"),
                "--node-id",
                f"A{i}",
                *off,
                "--seed",
                str(HELLO / "inject.py"),
                "--seed",
                str(HELLO / "extract.py"),
            ],
        )
    )
    b = None
    try:
        a.when("Seed loaded: extract")
        time.sleep(0.5)  # let A settle (its own mDNS registration) so B's start is what is measured
        t0 = time.monotonic()
        b = Proc(
            lan.wrap(
                "B",
                [*PMK, "--workdir", str(tmp / f"b{i}"), "--node-id", f"B{i}", *off, "--seed", str(HELLO / "greet.py")],
            )
        )
        routed = a.when("Greeting: Hello World") - t0
        b_ready = b.when("Seed loaded: greet") - t0
        time.sleep(1.0)
        b.p.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        evasive = a.when(f"Peer B{i} is evasive") - t_kill
        expired = a.when(f"Peer B{i} expired") - t_kill
        return {"first_routed_s": routed, "b_process_ready_s": b_ready, "evasive_s": evasive, "expired_s": expired}
    finally:
        for p in (a, b):
            if p:
                p.stop()
        lan.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lan = Lan().up()
    results: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in ("broadcast", "mdns"):
                runs = [trial(lan, mode, Path(tmp), i) for i in range(args.runs)]
                results[mode] = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    finally:
        lan.down()
    print(
        f"{'mode':<10} {'B start -> first packet routed':>31} {'(B process ready)':>18} "
        f"{'kill -> evasive':>16} {'kill -> expired':>16}   medians of {args.runs}"
    )
    for mode, r in results.items():
        print(
            f"{mode:<10} {r['first_routed_s']:>29.3f} s {r['b_process_ready_s']:>16.3f} s "
            f"{r['evasive_s']:>14.3f} s {r['expired_s']:>14.3f} s"
        )
    print(json.dumps({"benchmark": "discovery", "runs": args.runs, "results": results}))


if __name__ == "__main__":
    main()
