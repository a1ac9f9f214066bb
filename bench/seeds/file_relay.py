"""Benchmark transform for files: passes the file it received on to the next seed, as it is."""

from pumpkin import Seed


class FileRelay(Seed):
    consumes = "Bench:FILE"
    emits = "Bench:RELAYED"

    def run(self, blob):
        return blob
