"""One malloc arena for a daemon process (glibc).

glibc gives each thread that allocates its own arena. A threaded seed's outputs are allocated on its worker
thread and freed on the event loop's thread, and glibc trims the freed memory of a thread's arena back to the
kernel: with 1 MB payloads every hop paid page faults for memory it had a moment before. Measured with
``bench/chain.py --threaded --sizes 1000000`` (4 daemons, medians of 3): threaded seeds moved 0.57-0.68 of the
fair raw chain at 4,400-4,700 us of CPU per packet, and 0.85 at 3,720 us with one arena, as inline seeds do
(0.86-0.97). Seeds' threads run Python, which holds the GIL while it allocates: one arena costs them no
contention worth measuring.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

#: mallopt's parameter for the number of arenas (glibc's malloc.h).
M_ARENA_MAX = -8


def one_arena() -> bool:
    """Ask glibc for one malloc arena, before threads start; False where that cannot be asked (not glibc) or
    when ``MALLOC_ARENA_MAX`` in the environment already says how many."""
    if "MALLOC_ARENA_MAX" in os.environ:
        log.debug("malloc: MALLOC_ARENA_MAX=%s from the environment", os.environ["MALLOC_ARENA_MAX"])
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError) as exc:  # no C library to ask, or one without mallopt (macOS)
        log.debug("malloc: cannot ask for one arena here (%s)", exc)
        return False
    done = bool(mallopt(M_ARENA_MAX, 1))
    log.debug("malloc: one arena %s", "set" if done else "not supported here")
    return done
