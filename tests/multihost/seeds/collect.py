"""Test extractor: prints what arrives, one line each."""

from pumpkin import Seed


class Collect(Seed):
    consumes = "Num:DONE"

    def run(self, item):
        print(f"got {item['n']} by {item['by']}")
