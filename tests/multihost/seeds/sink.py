"""Test extractor for the fault scenarios: prints ``sink <n> <transform node>`` for every input it runs on."""

from pumpkin import Seed


class Sink(Seed):
    consumes = "Fault:DONE"

    def run(self, item):
        print(f"sink {item['n']} {item['by']}", flush=True)
