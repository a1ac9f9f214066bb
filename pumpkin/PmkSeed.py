"""Compatibility with seeds written for the original Pumpkin.

Such a seed keeps its manifest in ``##`` comment lines between ``###START-CONF`` and ``##END-CONF`` and
looks like this (Python 3 syntax)::

    from pumpkin import *

    class greet(PmkSeed.Seed):
        def __init__(self, context, poi=None):
            PmkSeed.Seed.__init__(self, context, poi)

        def run(self, pkt, name):
            self.dispatch(pkt, "Hello " + str(name), "GREETING")

``run`` receives the packet (a list ``[header, {}, entry]`` as in the original) and the data as plain
positional values; ``dispatch`` and ``fork_dispatch`` emit data in one of the manifest's return states.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pumpkin.legacy")

#: Called as emit(state, data, forked) by the daemon's seed runner.
EmitFn = Callable[[str, Any, bool], None]


class LegacyPacket(list):  # type: ignore[type-arg]
    """What a legacy seed's ``run`` receives: the original's ``[header, {}, entry]`` list, plus a way back."""

    def __init__(self, items: list[Any], emit: EmitFn) -> None:
        super().__init__(items)
        self.emit = emit


class Seed:
    """Base class of legacy seeds (the original ``PmkSeed.Seed``)."""

    def __init__(self, context: Any = None, poi: Any = None) -> None:
        self.context = context
        self.poi = poi
        self.conf: dict[str, Any] | None = getattr(context, "conf", None)

    def on_load(self) -> None:
        """Called once before the first packet."""

    def on_unload(self) -> None:
        """Called once at shutdown."""

    def run(self, pkt: Any, *data: Any) -> None:
        """Transform ``data`` and dispatch the result."""

    def dispatch(self, pkt: Any, msg: Any, state: str, *rest: Any) -> None:
        """Emit ``msg`` in ``state`` (one of the manifest's return states), continuing ``pkt``."""
        self._emit(pkt, msg, state, False)

    def fork_dispatch(self, pkt: Any, msg: Any, state: str, *rest: Any) -> None:
        """Emit ``msg`` in ``state`` as a new branch of ``pkt``'s lineage."""
        self._emit(pkt, msg, state, True)

    def _emit(self, pkt: Any, msg: Any, state: str, forked: bool) -> None:
        emit = getattr(pkt, "emit", None) or getattr(self.context, "emit", None)
        if emit is None:
            raise RuntimeError(f"seed {self.getname()}: dispatch() needs the packet run() received")
        emit(state, msg, forked)

    def getname(self) -> str:
        """The seed's name (its class name)."""
        return type(self).__name__

    def getpoi(self) -> Any:
        """The seed's point of interest, as given in the manifest's object_poi."""
        return self.poi

    def setconf(self, jconf: dict[str, Any]) -> None:
        """Set the parsed manifest."""
        self.conf = jconf

    def hasInputs(self) -> bool:  # noqa: N802 - the original's name
        """True when the manifest lists parameters."""
        return bool(self.conf and self.conf.get("parameters"))
