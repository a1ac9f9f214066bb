"""Live example, part 2: a transformation."""

from pumpkin import seed


@seed(consumes="Int:TICK", emits="Int:SQUARE")
def square(n):
    """Square each tick."""
    return n * n
