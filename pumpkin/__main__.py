"""``python -m pumpkin`` is ``pmk``."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a worker process (processes = N) imports the parent's main module
    sys.exit(main())
