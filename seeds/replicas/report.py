"""Replica example, part 3: print each finished job and which worker did it."""

from pumpkin import Seed


class Report(Seed):
    """Print finished jobs."""

    consumes = "Job:DONE"

    def run(self, job):
        print(f"done: job {job['job']} by {job['worker']}")
