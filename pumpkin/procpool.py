"""Running a seed in worker processes, for seeds that compute in Python (``processes = N``).

Threads share one interpreter lock, so a seed that computes in pure Python gets one core per daemon however
many ``workers`` it has. ``processes = N`` runs N instances in N worker processes instead. Each worker is
started with 'spawn' (a clean interpreter: no copy of the daemon's sockets or threads), imports the seed's
file, makes one instance and calls its ``on_load``; ``on_unload`` runs when the worker exits. A packet goes
to a free worker and its emissions come back through the pool's pipes (pickled between local processes;
nothing pickled ever goes on the network). A worker that dies breaks its pool: the packets the pool held at
that moment (at most two per process) fail with the reason, kept in failed/, and the runner makes a new pool.

The functions here run in the worker processes; ``SeedRunner`` drives the pool from the daemon's loop.
"""

from __future__ import annotations

import atexit
import time
import traceback
from pathlib import Path
from typing import Any

from .packet import Packet
from .runner import Emission, instantiate, iter_results, raised, run_modern
from .seed import run_arity

_instance: Any = None
_name = ""
_arity = 1
_load_error = ""


def init_worker(path: str, group: str, name: str, node_id: str) -> None:
    """Pool initializer: load the seed ``name`` from ``path`` and make this process's instance."""
    global _instance, _name, _arity, _load_error
    from . import loader  # here, not at import: the daemon side needs none of it

    _name = name
    try:
        specs = loader.load_file(Path(path), group, explicit=True)
        spec = next(s for s in specs if s.name == name)
        instance = instantiate(spec, node_id)
        instance.on_load()
    except Exception as exc:  # noqa: BLE001 - reported for every packet this worker is given
        _load_error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return
    atexit.register(instance.on_unload)
    _arity = run_arity(spec.factory)
    _instance = instance


def run_packet(packet: Packet) -> tuple[list[Emission], str, str, float]:
    """Run this process's instance on ``packet``: (emissions, error, traceback, seconds)."""
    if _instance is None:
        return [], f"seed {_name} could not load in its worker process: {_load_error.splitlines()[0]}", _load_error, 0.0
    started = time.perf_counter()
    try:
        emissions = list(iter_results(run_modern(_instance, _arity, packet)))
    except Exception as exc:  # noqa: BLE001 - a seed's bug fails its packet, not the worker
        return [], raised(_name, exc), traceback.format_exc(), 0.0
    return emissions, "", "", time.perf_counter() - started
