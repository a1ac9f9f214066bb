"""Test injector: emits STREAM_COUNT numbered packets, one every STREAM_GAP_S seconds."""

import os
import time

from pumpkin import Seed


class Stream(Seed):
    emits = "Num:RAW"

    def run(self):
        count = int(os.environ.get("STREAM_COUNT", "100"))
        gap = float(os.environ.get("STREAM_GAP_S", "0.01"))
        wait = float(os.environ.get("STREAM_START_AFTER_S", "0"))
        time.sleep(wait)
        for n in range(count):
            yield {"n": n}
            time.sleep(gap)
