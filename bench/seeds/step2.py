"""Benchmark transform 2: counts the hop in the data and passes it on."""

from pumpkin import Seed


class Step2(Seed):
    consumes = "Bench:ONE"
    emits = "Bench:TWO"

    def run(self, data):
        data["hops"] = data.get("hops", 0) + 1
        return data
