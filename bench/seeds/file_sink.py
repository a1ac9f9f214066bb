"""Benchmark extractor for files: records when the file arrived, its size and the sha256 Pumpkin checked."""

import json
import os
import time
from pathlib import Path

from pumpkin import Seed


class FileSink(Seed):
    consumes = "Bench:RELAYED"

    def run(self, blob):
        at = time.monotonic()
        result = {"arrived": at, "size": blob.path.stat().st_size, "sha256": blob.sha256, "path": str(blob.path)}
        ctl = Path(os.environ["BENCH_DIR"])
        (ctl / "result.tmp").write_text(json.dumps(result))
        os.replace(ctl / "result.tmp", ctl / "result.json")
