"""Live example, part 4: a quiet sink (an extractor that keeps a count instead of printing)."""

from pumpkin import Seed


class Tally(Seed):
    """Count what arrives; say so every 100 packets."""

    name = "tally"
    consumes = "String:CHECKED"

    def on_load(self):
        self.count = 0

    def run(self, text):
        self.count += 1
        if self.count % 100 == 0:
            self.log.info("tally: %d checked", self.count)
