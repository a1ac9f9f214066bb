"""Benchmark transform 1: counts the hop in the data and passes it on."""

from pumpkin import Seed


class Step1(Seed):
    consumes = "Bench:RAW"
    emits = "Bench:ONE"

    def run(self, data):
        data["hops"] = data.get("hops", 0) + 1
        return data
