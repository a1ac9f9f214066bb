"""Replica example, part 2: a slow seed run as 4 workers; each keeps its own count across packets."""

import threading
import time

from pumpkin import Seed


class Slow(Seed):
    """Take 0.5 s per job; four workers share the queue, so 8 jobs take about 1 s, not 4."""

    consumes = "Job:TODO"
    emits = "Job:DONE"
    workers = 4

    def on_load(self):
        self.handled = 0

    def run(self, job):
        time.sleep(0.5)
        self.handled += 1
        return {**job, "worker": threading.current_thread().name, "handled_by_this_worker": self.handled}
