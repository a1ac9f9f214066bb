"""Fan-out example, part 2: every NUMBER also goes here (a second, different consumer of the same state)."""

from pumpkin import Seed


class Square(Seed):
    """Print the square of each number."""

    consumes = "Int:NUMBER"

    def run(self, n):
        print(f"square: {n} -> {n * n}")
