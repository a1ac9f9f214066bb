"""Running a seed in worker processes, for seeds that compute in Python (``processes = N``).

Threads share one interpreter lock, so a seed that computes in pure Python gets one core per daemon however
many ``workers`` it has. ``processes = N`` runs N instances in N worker processes instead. Each worker is
started with 'spawn' (a clean interpreter: no copy of the daemon's sockets or threads), imports the seed's
file, makes one instance and calls its ``on_load``; ``on_unload`` runs when the worker exits. A packet goes
to a free worker and its emissions come back through the pool's pipes (pickled between local processes;
nothing pickled ever goes on the network). A worker that dies breaks its pool: the packets the pool held at
that moment (at most two per process) fail with the reason, kept in failed/, and the runner makes a new pool.
Before the first packet, the runner asks a worker whether it could make its instance (``load_error``): when
not, the seed cannot run and the daemon disables it; a later worker that cannot fails each packet it gets.

The functions here run in the worker processes; ``SeedRunner`` drives the pool from the daemon's loop.
"""

from __future__ import annotations

import atexit
import time
import traceback
from pathlib import Path
from typing import Any

from .errors import SeedStartError
from .packet import Packet
from .runner import Emission, raised, ready_instance
from .seed import SEED_FAULTS, run_arity
from .splitmerge import modern_emissions, splits

_instance: Any = None
_name = ""
_arity = 1
_splits = False
_load_error = ""  # why this process has no instance: one line naming the seed
_load_traceback = ""


def init_worker(path: str, group: str, name: str, node_id: str) -> None:
    """Pool initializer: load the seed ``name`` from ``path`` and make this process's instance."""
    global _instance, _name, _arity, _splits, _load_error, _load_traceback
    from . import loader  # here, not at import: the daemon side needs none of it

    _name = name
    try:
        specs = loader.load_file(Path(path), group, explicit=True)
        spec = next(s for s in specs if s.name == name)
        instance = ready_instance(spec, node_id)
    except SeedStartError as exc:  # reported to the probe (load_error) and for every packet this worker is given
        _load_error, _load_traceback = str(exc), exc.traceback
        return
    except Exception as exc:  # noqa: BLE001 - the file changed since the daemon loaded it, or cannot be read
        _load_error = f"seed {name}: cannot be loaded in a worker process: {type(exc).__name__}: {exc}"
        _load_traceback = traceback.format_exc()
        return
    atexit.register(instance.on_unload)
    _arity = run_arity(spec.factory)
    _splits = splits(spec.factory)
    _instance = instance


def load_error() -> tuple[str, str]:
    """Why this process could not make its instance, and the traceback; ("", "") when it could."""
    return _load_error, _load_traceback


def run_packet(packet: Packet) -> tuple[list[Emission], str, str, float]:
    """Run this process's instance on ``packet``: (emissions, error, traceback, seconds)."""
    if _instance is None:
        return [], f"{_load_error}; this worker process cannot run it", _load_traceback, 0.0
    started = time.perf_counter()
    try:
        emissions = list(modern_emissions(_instance, _arity, packet, _splits))
    except SEED_FAULTS as exc:  # a seed's bug (even sys.exit()) fails its packet, not the worker
        return [], raised(_name, exc), traceback.format_exc(), 0.0
    return emissions, "", "", time.perf_counter() - started
