"""Fan-out example, part 3: the same NUMBER packets also reach this seed, which writes with a decorator."""

from pumpkin import seed


@seed(consumes="Int:NUMBER")
def parity(n):
    """Print whether each number is even or odd."""
    print(f"parity: {n} is {'even' if n % 2 == 0 else 'odd'}")
