"""Compatibility with seeds written for the original Pumpkin: its ``PmkSeed.Seed``, method for method.

Such a seed keeps its manifest in ``##`` comment lines between ``###START-CONF`` and ``##END-CONF`` and
looks like this (Python 3 syntax)::

    from pumpkin import *

    class greet(PmkSeed.Seed):
        def __init__(self, context, poi=None):
            PmkSeed.Seed.__init__(self, context, poi)
            self.wd = context.getWorkingDir()      # the context works in __init__

        def run(self, pkt, name):
            self.dispatch(pkt, "Hello " + name, "GREETING")

``run`` receives the packet (the original's list ``[header, {}, ..., entry, next_hop]``) and the data (text
that also indexes as the original's list of ``|,|``-separated inputs: see ``legacy.LegacyText``);
``dispatch`` and ``fork_dispatch`` emit data in one of the manifest's return states. Dispatching a state the
manifest does not declare raises ``UndeclaredState`` and fails the whole input: nothing it dispatched goes out.
A packet made by ``fragment_pkt`` and dispatched in ``split`` is a fragment: the framework runs it on any replica
and calls ``merge`` once every fragment's result is there (see ``splitmerge``).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from typing import Any

from . import legacy
from .errors import PumpkinError
from .legacy_files import FileHelpers
from .PmkShared import BROADCAST_BIT, LAST_PKT, MORE_PKT, TRACK_BIT

log = logging.getLogger("pumpkin.legacy")

#: Kept for seeds that look themselves up as the original registered them (class name -> class / instance).
plugins: list[type] = []
hplugins: dict[str, type] = {}
iplugins: dict[str, Any] = {}

LegacyPacket = legacy.LegacyPacket


class UndeclaredState(PumpkinError):
    """A legacy seed dispatched data in a state its manifest does not return."""


class Seed(FileHelpers):
    """Base class of legacy seeds (the original ``PmkSeed.Seed``)."""

    def __init__(self, context: Any = None, poi: Any = "Unset") -> None:
        self.context = context
        self.name = type(self).__name__
        self.poi = poi
        self.conf: dict[str, Any] | None = getattr(context, "conf", None)
        env = getattr(context, "env", None)
        self.logger = legacy.seed_logger(self.name, env) if env is not None else logging.getLogger(self.name)
        self._pmk_tls = threading.local()
        self._lock_telemetrics = threading.Lock()
        self._state_counter: dict[str, int] = {}
        self.flight_pkts: dict[str, Any] = {}
        self.in_flight_pkts: dict[str, Any] = {}
        self._forecast = {"npkts": 0, "msize": 0, "pexec": 0}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        plugins.append(cls)
        hplugins[cls.__name__] = cls

    # -- lifecycle -------------------------------------------------------------------------------

    def on_load(self) -> None:
        """Called once before the first packet."""

    def on_unload(self) -> None:
        """Called once at shutdown."""

    def pre_load(self, jconf: dict[str, Any]) -> None:
        """Take the parsed manifest (the daemon calls it before ``on_load``)."""
        self.conf = jconf
        self.conf["enabled"] = True

    def post_load(self) -> None:
        """Called after ``on_load`` by the original; nothing to do."""

    def pre_run(self, pkt: Any, *args: Any) -> bool:
        """Called before ``run``; a false answer skips the packet (it is then done, nothing emitted)."""
        return True

    def run(self, pkt: Any, *data: Any) -> None:
        """Transform ``data`` and dispatch the result."""

    def rawrun(self) -> None:
        """Run as an injector does: ``run`` with a fresh packet (the daemon calls it for seeds without inputs)."""
        self.run(legacy.view_of(None, self.get_name(), self._env()))

    def split(self, pkt: Any, *args: Any) -> bool:
        """Dispatch fragments of ``pkt`` (made by ``fragment_pkt``) and return True; False: run it whole."""
        return False

    def merge(self, pkt: Any, *args: Any) -> None:
        """Called once per fragment's result, in fragment order, once all are there; dispatch the merged data."""

    # -- emitting --------------------------------------------------------------------------------

    def dispatch(
        self, dpkt: Any, msg: Any, tag: str, type: str | None = None, fragment: bool = False, dispatch: bool = True
    ) -> Any:
        """Emit ``msg`` in state ``tag`` (of type ``type``, default the manifest's first return type), continuing
        ``dpkt``; the packet as sent, or None when this seed is the packet's ``stop_func`` (nothing is sent).

        Raises UndeclaredState, and fails the whole input, when the manifest does not return that state."""
        # Its last element is replaced below: the rest is copied deeply. (A list is copied as one: copy.copy
        # costs ten times more.)
        kind = dpkt.__class__  # (``type`` is a parameter here)
        pkt = kind(dpkt) if kind in _LISTS else copy.copy(dpkt)
        for i in range(len(pkt) - 1):
            pkt[i] = _deep_copy(pkt[i])
        header = pkt[0]
        aux = _int(header.get("aux", 0))
        if aux & TRACK_BIT:
            self.track({"ship_id": header.get("ship"), "stag": tag, "host": pkt[-1].get("ep"), "data": msg})
        if fragment:
            header["fragment"] = str(_int(header.get("fragment", 0)) + 1)
            dpkt[0]["fragment"] = header["fragment"]
        stag, otype = self._out_tag(tag, type)
        if isinstance(msg, str):
            msg = str(msg)  # a LegacyText travels as the plain text
        entry = {
            "stag": stag,
            "func": f"{self.get_name()}.run",
            "exstate": "0001",
            "data": msg,
            "ep": dpkt[-1].get("ep", "local") if pkt and isinstance(dpkt[-1], dict) else "local",
        }
        pkt[-1] = entry
        header.update(state="TRANSIT", c_tag=stag, t_state=tag, t_otype=otype, last_func=self.get_name())
        self.inc_state_counter(f"OUT:{self.get_name()}:{stag}")
        if header.get("stop_func") == self.get_name():
            log.debug("Stop function reached [%s]", self.get_name())
            return None
        if dispatch:
            self._emit(pkt, msg, stag)
        return pkt

    def fork_dispatch(self, pkt: Any, msg: Any, state: str) -> None:
        """Emit ``msg`` in ``state`` as the start of a new lineage (a new container)."""
        self.dispatch(self.duplicate_pkt_new_container(pkt), msg, state)

    def broadcast(self, pkt: Any, msg: Any, state: str) -> None:
        """As the original: ``fork_dispatch`` (its broadcast bit was computed and never set)."""
        _ = _int(pkt[0].get("aux", 0)) | BROADCAST_BIT
        self.fork_dispatch(pkt, msg, state)

    def re_dispatch(self, pkt: Any) -> Any:
        """Route the packet ``run`` received again, in its own state, to whichever replica takes it."""
        pkt[0]["state"] = "REDISPATCH"
        run = legacy.current(self)
        if run is None:
            raise RuntimeError(f"seed {self.get_name()}: re_dispatch() works during run() only")
        run.emit(run.input_tag, self.get_pkt_data(pkt), header=legacy.carried_header(pkt[0], run.own_ship), again=True)
        return pkt

    def _emit(self, pkt: Any, msg: Any, stag: str) -> None:
        header = pkt[0]
        run = legacy.current(self)
        if run is not None and run.splitting and _int(header.get("fragment", 0)) > 0:
            # A fragment: it goes in the state of the packet split, to any replica of this seed (see splitmerge).
            last = _int(header.get("e", LAST_PKT)) == LAST_PKT
            run.emit(
                stag, msg, header=legacy.carried_header(header, run.own_ship), fragment=(str(header["fragment"]), last)
            )
            return
        declared = self._declared(stag)
        if run is None:
            emit = getattr(self.context, "emit", None)
            if emit is None:
                raise RuntimeError(f"seed {self.get_name()}: dispatch() outside run() has nowhere to go")
            if declared is None:
                raise UndeclaredState(self._undeclared(stag))
            emit(declared, msg, forked=True, header=legacy.carried_header(header, self._env().ship))
            return
        forked = header.get("container") != run.container
        run.emit(declared or stag, msg, forked=forked, header=legacy.carried_header(header, run.own_ship))
        if declared is None:
            raise UndeclaredState(self._undeclared(stag))

    def _out_tag(self, tag: str, type: str | None) -> tuple[str, str]:
        """The full tag and the type ``dispatch(..., tag, type)`` sends in; remembered per instance (the
        manifest and the group do not change while a seed runs)."""
        known = legacy.own(self, "_pmk_out_tags", dict)
        hit = known.get((tag, type))
        if hit is None:
            otype = type or self._first_return_type()
            stag = f"{self.get_group()}:{otype}:{tag}"
            if type is None:  # the first return's type, or else the one the manifest gives this state
                stag = self._declared(stag, any_type=True) or stag
                otype = stag.split(":")[1]
            hit = known[(tag, type)] = (stag, otype)
        return hit  # type: ignore[no-any-return]

    def _declared(self, stag: str, any_type: bool = False) -> str | None:
        spec = getattr(self.context, "spec", None)
        if spec is None:
            return stag
        # Remembered per seed instance: a seed's manifest does not change while it runs, and every dispatch asks.
        known = legacy.own(self, "_pmk_declared", dict)
        key = (stag, any_type)
        if key not in known:
            known[key] = self._declared_in(spec, stag, any_type)
        return known[key]  # type: ignore[no-any-return]

    @staticmethod
    def _declared_in(spec: Any, stag: str, any_type: bool) -> str | None:
        group, otype, state = stag.split(":", 2)
        same = [o for o in spec.outputs if o.group == group and o.state == state]
        for out in same:
            if otype in (out.type, "*") or out.type == "*":
                return str(out)
        return str(same[0]) if any_type and same else None

    def _undeclared(self, stag: str) -> str:
        spec = getattr(self.context, "spec", None)
        declared = ", ".join(str(t) for t in spec.outputs) if spec is not None else "?"
        return f"seed {self.get_name()} dispatched {stag}, which its manifest does not return (it returns: {declared})"

    def _first_return_type(self) -> str:
        returns = (self.conf or {}).get("return") or []
        first = returns[0] if returns and isinstance(returns[0], dict) else {}
        return str(first.get("type", "*"))

    def error(self, pkt: Any, msg: Any = None, type: str = "ERROR", tag: str = "ERROR") -> None:
        """Mark ``pkt`` as failed in the header (the original kept it in its shelve); nothing is sent."""
        self._mark(pkt, msg, type, tag, "ERROR")

    def finalize(self, pkt: Any, msg: Any = None, type: str = "END", tag: str = "END") -> None:
        """Mark ``pkt`` as done in the header; nothing is sent."""
        if _int(pkt[0].get("aux", 0)) & TRACK_BIT:
            self.track({"ship_id": self.get_ship_id(pkt), "stag": tag, "host": pkt[-1].get("ep")})
        self._mark(pkt, msg, type, tag, "DONE")

    def _mark(self, pkt: Any, msg: Any, otype: str, tag: str, state: str) -> None:
        stag = f"{self.get_group()}:{otype}:{tag}"
        pkt[-1] = {"stag": stag, "func": f"{self.get_name()}.run", "exstate": "0001", "data": msg, "ep": "local"}
        pkt[0].update(state=state, c_tag=stag, t_state=tag, t_otype=otype, last_func=self.get_name())

    def ack_pkt(self, pkt: Any) -> None:
        """Nothing to do: the framework acknowledges every packet once its seed has finished with it."""

    def pack_ok(self, pkt: Any) -> None:
        """Nothing to do (see ``ack_pkt``)."""

    def add_flight_pkt(self, pkt: Any) -> None:
        """Nothing to do: unacknowledged packets are re-sent by the framework (see ``ack_pkt``)."""

    def track(self, data: Any) -> None:
        """Record ``data`` for monitoring (a log line in the seed's log)."""
        self.context.get_mx().put(data)

    # -- packet helpers --------------------------------------------------------------------------

    def get_pkt_id(self, pkt: Any) -> str:
        """``ship:container:box:fragment`` (``:M`` appended for a packet in state MERGE)."""
        h = pkt[0]
        pid = f"{h['ship']}:{h['container']}:{h['box']}:{h['fragment']}"
        return pid + ":M" if h.get("state") == "MERGE" else pid

    def get_ship_id(self, pkt: Any) -> str:
        """The packet's ship (the daemon run that injected its lineage)."""
        return str(pkt[0]["ship"])

    def get_cont_id(self, pkt: Any) -> str:
        """The packet's container (its lineage)."""
        return str(pkt[0]["container"])

    def get_state(self, pkt: Any) -> str:
        """The header's state field."""
        return str(pkt[0]["state"])

    def get_last_stag(self, pkt: Any) -> str:
        """The STATE part of the packet's current tag."""
        return str(pkt[-1]["stag"].split(":")[-1])

    def get_pkt_data(self, pkt: Any) -> Any:
        """The packet's data."""
        return pkt[-2]["data"]

    def set_pkt_data(self, pkt: Any, data: Any) -> Any:
        """Replace the packet's data; the packet."""
        pkt[-2]["data"] = data
        return pkt

    def get_new_box(self) -> str:
        """A new random box id."""
        return os.urandom(4).hex()

    def get_new_container(self) -> str:
        """A new random container (lineage) id."""
        return os.urandom(4).hex()

    def duplicate_pkt_new_container(self, pkt: Any, shallow: bool = False) -> Any:
        """A copy of ``pkt`` in a new container: dispatching it starts a new lineage."""
        lpkt = copy.copy(pkt) if shallow else _deep_copy(pkt)
        if shallow:
            lpkt[0] = dict(lpkt[0])
        lpkt[0]["container"] = self.get_new_container()
        return lpkt

    def _blankpacket(self) -> Any:
        """A fresh header and graph placeholder, as the original's ``_blankpacket``."""
        header = {**legacy.BLANK_HEADER, "ship": self._env().ship, "container": self.get_new_container()}
        return legacy.LegacyPacket([header, {}])

    def is_final(self, pkt: Any) -> bool:
        """True when this seed is the packet's ``stop_func``."""
        return bool(pkt[0].get("stop_func") == self.get_name())

    def is_duplicate(self, pkt: Any) -> bool:
        """False: the framework drops duplicates before a seed sees them."""
        return False

    # The original's fragment marks, in the header: the framework sets them on a fragment and on what merge gets.
    def is_fragment(self, pkt: Any) -> bool:
        """True when the header's fragment number is above 0."""
        return _int(pkt[0].get("fragment", 0)) > 0

    def get_fragment_id(self, pkt: Any) -> int:
        """The header's fragment number."""
        return _int(pkt[0].get("fragment", 0))

    get_pkt_fragment_no = get_fragment_id

    def fragment_pkt(self, pkt: Any, frag_no: int) -> Any:
        """A copy of ``pkt`` marked as fragment ``frag_no`` with more to come."""
        lpkt = _deep_copy(pkt)
        lpkt[0].update(fragment=str(frag_no), e=MORE_PKT)
        return lpkt

    def last_fragment_pkt(self, pkt: Any, frag_no: int) -> Any:
        """A copy of ``pkt`` marked as the last fragment, ``frag_no``."""
        lpkt = _deep_copy(pkt)
        lpkt[0].update(fragment=str(frag_no), e=LAST_PKT)
        return lpkt

    def clean_header(self, pkt: Any) -> Any:
        """Mark ``pkt`` whole again (fragment 0, last)."""
        pkt[0].update(fragment="0", e=LAST_PKT)
        return pkt

    def is_last_fragment(self, pkt: Any) -> bool:
        """True when the header marks the last fragment."""
        return _int(pkt[0].get("e", LAST_PKT)) == LAST_PKT

    def merge_pkt(self, pkt: Any) -> None:
        """Mark ``pkt`` for merging (header state MERGE)."""
        pkt[0]["state"] = "MERGE"

    # -- names, manifest, counters ---------------------------------------------------------------

    def get_name(self) -> str:
        """The seed's name (its class name)."""
        return type(self).__name__

    getname = get_name

    def get_fullname(self) -> str:
        """``group:name``."""
        return f"{self.get_group()}:{self.get_name()}"

    def get_group(self) -> str:
        """The manifest's group, else the node's, else ``public``."""
        conf = self.conf or {}
        if isinstance(conf.get("group"), str) and conf["group"]:
            return str(conf["group"])
        group = self.context.get_group() if self.context is not None else ""
        return str(group) if group else legacy.PUBLIC_GROUP

    def getpoi(self) -> Any:
        """The seed's point of interest, as given in the manifest's object_poi."""
        return self.poi

    def get_conf(self) -> dict[str, Any] | None:
        """The parsed manifest."""
        return self.conf

    def set_conf(self, jconf: dict[str, Any]) -> None:
        """Set the parsed manifest."""
        self.conf = jconf

    setconf = set_conf

    def hasInputs(self) -> bool:  # noqa: N802 - the original's name
        """True when the manifest lists parameters."""
        return bool(self.conf and self.conf.get("parameters"))

    def is_non_local(self) -> bool:
        """The manifest's ``non-local`` flag."""
        return bool((self.conf or {}).get("non-local") is True)

    def is_remoting(self) -> bool:
        """The manifest's ``remoting`` flag."""
        return bool((self.conf or {}).get("remoting") is True)

    def is_enabled(self) -> bool:
        """The manifest's ``enabled`` flag (set by ``pre_load``)."""
        return bool((self.conf or {}).get("enabled") is True)

    def enable(self) -> None:
        """Set ``enabled`` in the manifest (the daemon's page switches seeds on and off)."""
        if self.conf is not None and "enabled" in self.conf:
            self.conf["enabled"] = True

    def disable(self) -> None:
        """Clear ``enabled`` in the manifest."""
        if self.conf is not None and "enabled" in self.conf:
            self.conf["enabled"] = False

    def get_in_tag_list(self) -> list[str]:
        """The tags the seed consumes (``group:type:STATE``)."""
        spec = getattr(self.context, "spec", None)
        return [str(t) for t in spec.inputs] if spec is not None and spec.inputs else ["NONE:NONE"]

    def get_out_tag_list(self) -> list[str]:
        """The tags the seed returns."""
        spec = getattr(self.context, "spec", None)
        return [str(t) for t in spec.outputs] if spec is not None and spec.outputs else ["NONE:NONE"]

    def inc_state_counter(self, state: str) -> None:
        """Count one packet in or out under ``state``."""
        with self._lock_telemetrics:
            self._state_counter[state] = self._state_counter.get(state, 0) + 1

    def get_state_counters(self) -> dict[str, int]:
        """The counts by ``IN:``/``OUT:`` tag."""
        return self._state_counter

    def get_all_counters(self) -> tuple[int, int]:
        """(packets in, packets out)."""
        c = self._state_counter
        return sum(v for k, v in c.items() if "IN" in k), sum(v for k, v in c.items() if "OUT" in k)

    def get_forecast(self) -> tuple[int, float, float]:
        """The original's load forecast (queued packets, mean size, predicted seconds); zeros here."""
        f = self._forecast
        return int(f["npkts"]), float(f["msize"]), float(f["pexec"])

    def get_stat(self) -> str:
        """The node's statistics (``context.get_stat()``)."""
        return str(self.context.get_stat())

    def _env(self) -> legacy.LegacyEnv:
        env = getattr(self.context, "env", None)
        return env if env is not None else legacy.LegacyEnv.scratch()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


_ATOMS = frozenset({str, int, float, bool, bytes, type(None)})
_LISTS = frozenset({list, legacy.LegacyPacket})


def _deep_copy(value: Any) -> Any:
    """``copy.deepcopy(value)``, about 10 times faster for what a legacy packet holds (dicts, lists and JSON
    scalars: a dispatch copied its input packet with deepcopy in 18 of its 24 us here); anything else, and a
    structure that refers to itself, goes to ``copy.deepcopy``."""
    try:
        return _copied(value)
    except RecursionError:
        return copy.deepcopy(value)


def _copied(value: Any) -> Any:
    kind = type(value)
    if kind in _ATOMS:
        return value
    # (Atoms inline: most of a packet's values are, and a call per value was most of the cost.)
    if kind is dict:
        if _ATOMS.issuperset(map(type, value.values())):  # (in C: a header's values are all atoms)
            return dict(value)
        return {k: v if type(v) in _ATOMS else _copied(v) for k, v in value.items()}
    if kind is list:
        if _ATOMS.issuperset(map(type, value)):
            return list(value)
        return [v if type(v) in _ATOMS else _copied(v) for v in value]
    if kind is legacy.LegacyPacket:
        return legacy.LegacyPacket(_copied(v) for v in value)
    return copy.deepcopy(value)
