"""Replica example, part 1: an injector that emits 8 jobs."""

from pumpkin import Seed


class Jobs(Seed):
    """Emit 8 jobs once at start."""

    emits = "Job:TODO"

    def run(self):
        for i in range(8):
            yield {"job": i}
