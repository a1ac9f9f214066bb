"""``python -m pumpkin`` is ``pmk``."""

import sys

from .cli import main

sys.exit(main())
