"""Fan-out example, part 1: an injector that emits the numbers 1 to 5."""

from pumpkin import Seed


class Numbers(Seed):
    """Emit the numbers 1..5 once at start."""

    emits = "Int:NUMBER"

    def run(self):
        yield from range(1, 6)
