"""Benchmark injector for files: waits for the harness's go file, then hands over BENCH_FILE as a File."""

import os
import time
from pathlib import Path

from pumpkin import File, Seed


class FileSource(Seed):
    emits = "Bench:FILE"

    def run(self):
        ctl = Path(os.environ["BENCH_DIR"])
        while not (ctl / "go").exists():
            time.sleep(0.005)
        (ctl / "started").write_text(repr(time.monotonic()))
        return File(os.environ["BENCH_FILE"])
