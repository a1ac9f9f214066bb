"""Live example, part 1: a never-ending source, so the web page has something moving to show."""

from pumpkin import Seed


class Ticker(Seed):
    """Emit 1, 2, 3, ... five times a second."""

    name = "ticker"
    emits = "Int:TICK"
    every_s = 0.2

    def on_load(self):
        self.n = 0

    def run(self):
        self.n += 1
        return self.n
