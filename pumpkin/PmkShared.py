"""Names the original Pumpkin's ``PmkShared`` gave seeds: the ``aux`` bits, its port numbers and helpers.

``from pumpkin import *`` brings these (see ``pumpkin/__init__.py``), as the original's star import did.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger("pumpkin.legacy")

#: Bits of a legacy header's ``aux`` field, as the original numbered them.
TIMING_BIT = 0b1
TRACK_BIT = 0b10
ACK_BIT = 0b100
TRACER_BIT = 0b1000
BROADCAST_BIT = 0b10000
FORCE_BIT = 0b100000

#: The original's fixed ports; kept as names only (nothing here listens on them).
UDP_BROADCAST_PORT = 7700
TFTP_FILE_SERVER_PORT = 7800
UDP_BROADCAST_RATE = 15
RZV_SERVER_PORT = 7101
ZMQ_ENDPOINT_PORT = 7900
ZMQ_PUB_PORT = 7901
HTTP_BUFFER_SIZE = 1024
LOG_LEVEL = logging.NOTSET
SUPERNODES = ["127.0.0.1"]

#: The original's marks for split packets (``e`` in the header).
MORE_PKT = 1
LAST_PKT = 0

DIR_MODE = 0o775


def _ensure_dir(f: str) -> None:
    """Make the folder ``f`` (and its parents), mode 775, as the original did."""
    d = os.path.dirname(f if f.endswith("/") else f + "/")
    if d and not os.path.exists(d):
        os.makedirs(d, mode=DIR_MODE, exist_ok=True)
        os.chmod(d, DIR_MODE)


def get_cpu_util() -> float:
    """The machine's CPU use in percent (0 where it cannot be read), from the load average."""
    try:
        return min(100.0, 100.0 * os.getloadavg()[0] / (os.cpu_count() or 1))
    except OSError:
        return 0.0


class SThread(threading.Thread):
    """A thread with a stop flag, as the original's ``SThread``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True
        self._stop_flag = threading.Event()

    def stop(self) -> None:
        """Ask the thread to stop (it checks ``stopped()``)."""
        self._stop_flag.set()

    def stopped(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stop_flag.is_set()
