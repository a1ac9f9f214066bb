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

from . import splitmerge

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

    # -- split and merge (the framework's side: pumpkin/splitmerge.py) ------------------------------------------

    def split(self, pkt: Any, *data: Any) -> bool:
        """Dispatch fragments of ``pkt`` (made by ``fragment_pkt``) and return True; False: run it whole."""
        return False

    def merge(self, pkt: Any, *data: Any) -> None:
        """Called once per fragment's result, in fragment order, once all are there; dispatch the merged data."""

    def fragment_pkt(self, pkt: Any, frag_no: Any) -> Any:
        """A copy of ``pkt`` as fragment ``frag_no``: dispatched inside ``split``, it is a fragment."""
        return splitmerge.fragment_view(pkt, frag_no, last=False)

    def last_fragment_pkt(self, pkt: Any, frag_no: Any) -> Any:
        """A copy of ``pkt`` as the last fragment, ``frag_no``."""
        return splitmerge.fragment_view(pkt, frag_no, last=True)

    def is_fragment(self, pkt: Any) -> bool:
        """True when ``pkt`` is a fragment."""
        return splitmerge.header_int(pkt, "fragment") > 0

    def is_last_fragment(self, pkt: Any) -> bool:
        """True for the last fragment (and for a packet that is not a fragment, as in the original)."""
        return splitmerge.header_int(pkt, "e") == splitmerge.LAST_PKT

    def get_fragment_id(self, pkt: Any) -> int:
        """The fragment number ``fragment_pkt`` gave ``pkt`` (0: not a fragment)."""
        return splitmerge.header_int(pkt, "fragment")

    get_pkt_fragment_no = get_fragment_id

    def clean_header(self, pkt: Any) -> Any:
        """Mark ``pkt`` as a whole packet again (what ``merge`` dispatches)."""
        pkt[0]["fragment"] = "0"
        pkt[0]["e"] = splitmerge.LAST_PKT
        return pkt

    def get_pkt_data(self, pkt: Any) -> Any:
        """The data of ``pkt``: in ``merge``, its fragment's result."""
        entry = pkt[-2] if len(pkt) > 3 else pkt[-1]
        return entry.get("data")

    def set_pkt_data(self, pkt: Any, data: Any) -> Any:
        """Set the data of ``pkt``; returns it."""
        (pkt[-2] if len(pkt) > 3 else pkt[-1])["data"] = data
        return pkt
