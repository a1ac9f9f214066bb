"""Benchmark transform 1: counts the hop in the data and passes it on."""

import os

from pumpkin import Seed


class Step1(Seed):
    consumes = "Bench:RAW"
    emits = "Bench:ONE"
    inline = os.environ.get("BENCH_INLINE", "1") == "1"  # quick: run on the loop (see pumpkin.seed)

    def run(self, data):
        data["hops"] = data.get("hops", 0) + 1
        return data
