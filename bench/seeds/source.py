"""Benchmark injector: waits for the harness's go file, then emits BENCH_N packets.

Throughput mode emits as fast as the daemon takes them; latency mode emits one, then waits for the sink's
acknowledgement (a PUSH to ipc://BENCH_DIR/ack) before the next, so exactly one packet is in the chain.
"""

import os
import time
from pathlib import Path

import zmq

from pumpkin import Seed


class Source(Seed):
    emits = "Bench:RAW"

    def run(self):
        n, size, mode = int(os.environ["BENCH_N"]), int(os.environ["BENCH_SIZE"]), os.environ["BENCH_MODE"]
        ctl = Path(os.environ["BENCH_DIR"])
        while not (ctl / "go").exists():
            time.sleep(0.005)
        pad = "x" * size
        if mode == "throughput":
            for i in range(n):
                yield {"i": i, "t": time.monotonic(), "pad": pad}
            return
        ctx = zmq.Context.instance()
        acks = ctx.socket(zmq.PULL)
        acks.bind(f"ipc://{ctl / 'ack'}")
        try:
            for i in range(n):
                yield {"i": i, "t": time.monotonic(), "pad": pad}
                if not acks.poll(10_000):
                    raise TimeoutError(f"packet {i} did not reach the sink within 10 s")
                acks.recv()
        finally:
            acks.close(linger=0)
