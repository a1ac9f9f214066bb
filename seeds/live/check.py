"""Live example, part 3: a seed that fails now and then, so the page's failure display has work to do."""

from pumpkin import Seed


class Check(Seed):
    """Pass squares on as text; refuse multiples of 169 (13²) (a failure kept in failed/ with its reason)."""

    name = "check"
    consumes = "Int:SQUARE"
    emits = "String:CHECKED"

    def run(self, n):
        if n % 169 == 0:
            raise ValueError(f"{n} is a multiple of 169")
        return f"{n} is fine"
