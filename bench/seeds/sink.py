"""Benchmark extractor: counts packets and writes BENCH_DIR/result.json when all BENCH_N arrived.

The result holds the monotonic send time of the first packet, the arrival time of the last, and (latency
mode) each packet's end-to-end latency; CLOCK_MONOTONIC is one clock for every process on the host.
"""

import json
import os
import time
from pathlib import Path

import zmq

from pumpkin import Seed


class Sink(Seed):
    consumes = "Bench:TWO"
    inline = os.environ.get("BENCH_INLINE", "1") == "1"  # quick: run on the loop (see pumpkin.seed)

    def on_load(self):
        self.n, self.mode = int(os.environ["BENCH_N"]), os.environ["BENCH_MODE"]
        self.ctl = Path(os.environ["BENCH_DIR"])
        self.count, self.first, self.latencies = 0, None, []
        self.ack = None

    def run(self, data):
        now = time.monotonic()
        if self.first is None:
            self.first = data["t"]
        self.count += 1
        if self.mode == "latency":
            self.latencies.append(now - data["t"])
            if self.ack is None:
                self.ack = zmq.Context.instance().socket(zmq.PUSH)
                self.ack.connect(f"ipc://{self.ctl / 'ack'}")
            self.ack.send(b"k")
        if self.count == self.n:
            result = {
                "n": self.n,
                "first_sent": self.first,
                "last_arrived": now,
                "latencies": self.latencies,
                "hops": data.get("hops"),
            }
            tmp = self.ctl / "result.tmp"
            tmp.write_text(json.dumps(result))
            tmp.rename(self.ctl / "result.json")
