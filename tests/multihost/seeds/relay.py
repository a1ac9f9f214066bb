"""Test transform for the fault scenarios: passes each number on, marked with the node that handled it.

FAULT_WORKERS worker threads (default 2), FAULT_WORK_S seconds of work per packet (default 0).
"""

import os
import time

from pumpkin import Seed

WORK_S = float(os.environ.get("FAULT_WORK_S", "0"))


class Relay(Seed):
    consumes = "Fault:RAW"
    emits = "Fault:DONE"
    workers = int(os.environ.get("FAULT_WORKERS", "2"))

    def run(self, item):
        if WORK_S:
            time.sleep(WORK_S)
        return {"n": item["n"], "by": self.node_id}
