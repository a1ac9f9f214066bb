"""Test injector for the fault scenarios: FAULT_COUNT numbered packets {"n": 0, 1, ...}.

It waits for the file FAULT_GO (when set), so that a test starts the stream once the whole chain is up, then
emits as fast as flow control lets it and prints ``source done N``.
"""

import os
import time

from pumpkin import Seed

GO_WAIT_S = 300.0  # bounded, so that a daemon stopped before the go still stops


class Numbered(Seed):
    emits = "Fault:RAW"

    def run(self):
        count = int(os.environ.get("FAULT_COUNT", "100"))
        go = os.environ.get("FAULT_GO", "")
        deadline = time.monotonic() + GO_WAIT_S
        while go and not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
        for n in range(count):
            yield {"n": n}
        print(f"source done {count}", flush=True)
