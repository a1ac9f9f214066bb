"""Test transformer: marks each packet with the node that handled it."""

import time

from pumpkin import Seed


class Work(Seed):
    consumes = "Num:RAW"
    emits = "Num:DONE"
    workers = 2

    def run(self, item):
        time.sleep(0.005)
        return {**item, "by": self.node_id}
