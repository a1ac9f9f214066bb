"""Running seeds written for the original Pumpkin: their context, working directory, packet view and ``run``.

The context (``LegacyContext``) is what such a seed's constructor receives; it works in ``__init__``.
Its working directory (``getWorkingDir()``, with a trailing ``/`` as the original's) is ``work/`` in the
node's working directory, with ``logs/`` (one log file per seed), ``tx/`` (``getFileDir()``) and a copy of
every file and folder of the taskdirs that is not Python (data, binaries, ``nltk_data``), as the original
copied them at start.

``run(self, pkt, data)`` receives the packet as the original's list ``[header, {}, ..., entry, next_hop]``
and the data as ``LegacyText`` when it is text: the string itself, which also indexes like the original's
list of ``|,|``-separated inputs (``data[0]``, ``data[1]``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsIndex, overload

from .gather import FRAGMENT, fragment_of
from .packet import Packet
from .PmkShared import LAST_PKT, MORE_PKT
from .seed import SeedSpec

log = logging.getLogger("pumpkin.legacy")

#: The group of a legacy packet file's tag written ``type:STATE``, and of a manifest-less seed's
#: ``get_group()`` when the node has none: the original's default.
PUBLIC_GROUP = "public"
#: What the original's ``_stage_run`` split a packet's text on to make the seed's several inputs.
INPUT_SEPARATOR = "|,|"
#: Header fields of the original's fresh packets (``_blankpacket``), the defaults of every view.
BLANK_HEADER: dict[str, Any] = {
    "box": "0",
    "fragment": "0",
    "e": 0,
    "state": "NEW",
    "c_tag": "NONE:NONE",
    "ttl": "D",
    "aux": 0,
    "t_state": "None",
    "t_otype": "None",
    "stop_func": "None",
    "last_contact": "None",
    "last_func": "None",
    "last_timestamp": 0,
}
#: A whole packet's fragment fields (see ``fragment_fields``).
WHOLE: Mapping[str, Any] = {"fragment": "0", "e": LAST_PKT}
#: Header fields that name a packet (from its id) or its momentary state: made anew at each hop, never carried.
ID_FIELDS = ("ship", "container", "box", "fragment", "state")

#: Called as emit(state, data, forked=, header=, again=) with what a legacy seed dispatched.
EmitFn = Callable[..., None]


@dataclass(frozen=True)
class LegacyEnv:
    """What legacy seeds on one node share: where they work, the node's group and id, and its counters."""

    root: Path  # the legacy working directory (getWorkingDir)
    group: str = "default"
    node_id: str = ""
    ship: str = ""  # the daemon run's exec context
    debug: bool = False
    taskdirs: tuple[Path, ...] = ()
    rx: Path | None = None
    stats: Callable[[], Mapping[str, tuple[int, int]]] = field(default=lambda: {}, compare=False)

    @staticmethod
    def scratch(node_id: str = "", group: str = "default") -> LegacyEnv:
        """An environment in a new temporary folder (``pmk seeds check``, tests)."""
        return LegacyEnv(Path(tempfile.mkdtemp(prefix="pumpkin-legacy-")), group, node_id)


def prepare_workdir(root: Path, taskdirs: tuple[Path, ...] | list[Path]) -> list[str]:
    """Make ``root`` with ``logs/`` and ``tx/``, and copy into it the taskdirs' entries that are not Python;
    an entry already there with the same size and mtime is kept. The problems met, one line each."""
    problems: list[str] = []
    for sub in ("", "logs", "tx"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for taskdir in taskdirs:
        if not taskdir.is_dir():
            continue
        for src in sorted(taskdir.iterdir()):
            if src.suffix in (".py", ".pyc") or src.name == "__pycache__" or src.name.startswith("."):
                continue
            try:
                _copy_entry(src, root / src.name)
            except OSError as exc:
                problems.append(f"{src}: not copied to the working directory: {exc}")
    return problems


def _copy_entry(src: Path, dst: Path) -> None:
    if src.is_symlink() or not src.is_dir():
        if src.is_symlink() or not src.is_file():
            return  # links and special files stay out: the working directory holds copies only
        st = src.stat()
        if dst.is_file() and (dst.stat().st_size, int(dst.stat().st_mtime)) == (st.st_size, int(st.st_mtime)):
            return
        shutil.copy2(src, dst)
        return
    dst.mkdir(exist_ok=True)
    for child in src.iterdir():
        _copy_entry(child, dst / child.name)


class Tracker:
    """Where ``Seed.track`` puts what it tracks (the original's monitoring queue): a log line each."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger

    def put(self, item: Any, *args: Any) -> None:
        """Record ``item`` (the original sent it to RabbitMQ)."""
        self._log.info("track: %s", json.dumps(item, default=str))


class LegacyContext:
    """The ``context`` a legacy seed's constructor receives (the original's ``MainContext``, for seeds)."""

    def __init__(self, spec: SeedSpec, env: LegacyEnv) -> None:
        self.conf = spec.manifest
        self.spec = spec
        self.env = env
        self.node_id = env.node_id
        self.working_dir = str(env.root).rstrip("/") + "/"
        self.file_dir = self.working_dir + "tx/"
        self.endpoints: list[tuple[str, str, str, int]] = []
        self._mx = Tracker(logging.getLogger(f"pumpkin.seed.{spec.name}"))
        self.emit: EmitFn | None = None  # where a dispatch outside run() goes (set by the seed's runner)

    # -- places --
    def getWorkingDir(self) -> str:  # noqa: N802 - the original's names
        """The seeds' working directory, ending in '/'."""
        return self.working_dir

    def getFileDir(self) -> str:  # noqa: N802
        """The folder for files handed to other hosts (``tx/`` in the working directory), ending in '/'."""
        return self.file_dir

    def getTaskDir(self) -> str:  # noqa: N802
        """The (first) folder seeds were loaded from."""
        return str(self.env.taskdirs[0]) if self.env.taskdirs else ""

    def hasRx(self) -> str | None:  # noqa: N802
        """The rx drop folder, or None when the node has none."""
        return str(self.env.rx) if self.env.rx else None

    # -- identity --
    def getUuid(self) -> str:  # noqa: N802
        """The node's id."""
        return self.env.node_id

    def getExecContext(self) -> str:  # noqa: N802
        """This daemon run's id (the ``ship`` of the packets it injects)."""
        return self.env.ship

    def get_group(self) -> str:
        """The node's group (``--group``)."""
        return self.env.group

    def get_local_ip(self) -> str:
        """This host's address as others reach it (best effort; 127.0.0.1 when there is no route)."""
        return _local_ip()

    def get_public_ip(self) -> str:
        """The original asked a STUN server; here the same as ``get_local_ip``: nothing leaves to ask."""
        return _local_ip()

    def getEndpoints(self) -> list[tuple[str, str, str, int]]:  # noqa: N802
        """The original's endpoint list; empty: the daemon's transport is not the seeds' business."""
        return self.endpoints

    # -- modes (the original's command-line switches) --
    def is_debug(self) -> bool:
        """True when the node logs at debug level."""
        return self.env.debug

    def with_acks(self) -> bool:
        """False: acknowledgements are made by the framework for every packet, never by seeds."""
        return False

    def with_shelve(self) -> bool:
        """False: the node's journal keeps packets, not a shelve seeds write to."""
        return False

    def is_speedy(self) -> bool:
        """False: the original's ``--gonzales`` mode does not exist (its run() argument is covered, see run)."""
        return False

    def is_ghost(self) -> bool:
        """False."""
        return False

    def isSupernode(self) -> bool:  # noqa: N802
        """False: there are no supernodes."""
        return False

    def singleSeed(self) -> bool:  # noqa: N802
        """False."""
        return False

    def with_broadcast(self) -> bool:
        """True: nodes discover each other."""
        return True

    def get_cores(self) -> int:
        """The number of CPUs."""
        return os.cpu_count() or 1

    # -- what the node does --
    def get_stat(self) -> str:
        """The node's statistics as the original's JSON text: host, per-seed counters, totals."""
        counters = self.env.stats()
        seeds = {
            name: {"enabled": True, "stags": {"IN": n_in, "OUT": n_out}, "npkts": 0, "msize": 0, "pexec": 0}
            for name, (n_in, n_out) in counters.items()
        }
        total_in = sum(v[0] for v in counters.values())
        total_out = sum(v[1] for v in counters.values())
        return json.dumps(
            [
                {"host_id": self.env.node_id, "timestamp": time.time(), "ip": _local_ip()},
                seeds,
                {"total_in": total_in, "total_out": total_out},
                {"rx_size": "0", "tx_size": "0", "total_pexec": "0"},
            ]
        )

    def get_mx(self) -> Tracker:
        """Where ``Seed.track`` puts what it tracks."""
        return self._mx


def _local_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it only picks the outgoing address
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class LegacyText(str):
    """A packet's text as a legacy seed's ``run`` gets it: the string itself (``"Hello " + data``,
    ``re.search(p, data)``, ``data.split(",")``) that also indexes like the original's list of inputs:
    ``data[0]``, ``data[1]`` are the parts between ``|,|`` separators. Slices are the string's."""

    parts: list[str]

    def __new__(cls, text: str) -> LegacyText:
        obj = super().__new__(cls, text)
        obj.parts = text.split(INPUT_SEPARATOR) if text else []
        return obj

    @overload
    def __getitem__(self, key: SupportsIndex) -> str: ...
    @overload
    def __getitem__(self, key: slice) -> str: ...
    def __getitem__(self, key: SupportsIndex | slice) -> str:
        if isinstance(key, slice):
            return str.__getitem__(self, key)
        return self.parts[key]


def run_argument(data: Any) -> Any:
    """What a legacy seed's ``run`` receives for ``data`` (see ``LegacyText``); other data as it is."""
    if isinstance(data, str):
        return LegacyText(data)
    if data is None:
        return []
    return data


class LegacyPacket(list):  # type: ignore[type-arg]
    """The original's packet list ``[header, {}, ..., entry, next_hop]`` (plain JSON values only)."""


def view_of(packet: Packet | None, seed: str, env: LegacyEnv) -> LegacyPacket:
    """The legacy list for ``packet`` as seed ``seed`` sees it; a fresh one (``rawrun``) for an injector."""
    if packet is None:
        header = {**BLANK_HEADER, "ship": env.ship, "container": os.urandom(4).hex()}
        return LegacyPacket([header, {}, {"stag": "RAW", "exstate": "0001", "ep": "local"}])
    ship, container, box, _ = packet.id.split(":")  # the fourth part is a digest, not a fragment number
    meta = packet.meta
    carried = meta.get("legacy_header") if meta else None
    # (Updated in place rather than spread into a literal: the same keys in the same order, at half the cost.)
    header = dict(BLANK_HEADER)
    if isinstance(carried, dict):
        header.update(carried)
        named = carried.get("ship")
        if isinstance(named, str) and named:
            ship = named  # a ship the packet was given (a .pkt's "patient_X"), as the original kept it on every hop
    header["ship"], header["container"], header["box"] = ship, container, box
    header.update(fragment_fields(packet) if meta and FRAGMENT in meta else WHOLE)
    header["state"] = "PROCESSING"
    stag = str(packet.tag)
    last = packet.trail[-1].seed if packet.trail else ""
    entry = {"stag": stag, "data": packet.data, "exstate": "0001", "func": last, "ep": "local"}
    next_hop = {"func": seed, "stag": stag, "exstate": "0000", "ep": env.node_id}
    return LegacyPacket([header, {}, entry, next_hop])


def fragment_fields(packet: Packet) -> dict[str, Any]:
    """The header fields ``fragment`` and ``e`` of ``packet``'s view, from the framework's fragment mark (see
    ``gather``): the label ``fragment_pkt`` gave it and whether it is the last; ``"0"`` and last when whole."""
    mark = fragment_of(packet)
    if mark is None:
        return dict(WHOLE)
    return {"fragment": mark.no, "e": LAST_PKT if mark.last else MORE_PKT}


def carried_header(header: Mapping[str, Any], own_ship: str) -> dict[str, Any]:
    """The header fields that travel on with a dispatched packet (see ``ID_FIELDS``). Its ``ship`` travels only
    when it is not ``own_ship``, the one its id gives (the run's packet's, or this daemon's for a new one): a
    ship the packet was given stays with it, and names its lineage (``gather.lineage_of``)."""
    carried = dict(header)  # (copied whole and the few left out deleted: a filtering loop cost twice as much)
    for name in _NOT_CARRIED:
        carried.pop(name, None)
    if carried.get("ship") == own_ship:
        del carried["ship"]
    return carried


#: ``ID_FIELDS`` but the fragment label, which a dispatched packet keeps, and the ship (see ``carried_header``).
_NOT_CARRIED = tuple(f for f in ID_FIELDS if f not in ("fragment", "ship"))


@dataclass
class RunState:
    """The invocation a seed instance is in, on this thread: where its dispatches go."""

    emit: EmitFn
    container: str
    input_tag: str
    splitting: bool = False  # in ``split``: a dispatched packet made by ``fragment_pkt`` is a fragment
    own_ship: str = ""  # the ship the packet's id gives (see ``carried_header``)


def own(instance: Any, name: str, make: Callable[[], Any]) -> Any:
    """``instance``'s own attribute ``name``, made by ``make`` the first time it is asked for (setdefault: two
    threads asking at once get the same one). Per-instance state the framework keeps on a legacy seed."""
    found = instance.__dict__.get(name)
    return found if found is not None else instance.__dict__.setdefault(name, make())


def current(instance: Any) -> RunState | None:
    """The invocation ``instance`` is running on this thread, or None (a dispatch from another thread)."""
    tls = instance.__dict__.get("_pmk_tls")
    return getattr(tls, "run", None) if tls is not None else None


class running:  # noqa: N801 - used as a function: ``with running(...):``
    """While in the block, what ``instance`` dispatches on this thread goes to ``emit`` (see ``RunState``).

    A class rather than a generator-based context manager: it wraps every legacy seed's run (a third of the cost).
    """

    __slots__ = ("_tls", "_run")

    def __init__(
        self, instance: Any, view: LegacyPacket, packet: Packet | None, emit: EmitFn, splitting: bool = False
    ) -> None:
        self._tls = own(instance, "_pmk_tls", threading.local)
        own_ship = packet.id.split(":", 1)[0] if packet is not None else view[0]["ship"]
        self._run = RunState(emit, view[0]["container"], str(packet.tag) if packet else "", splitting, own_ship)

    def __enter__(self) -> None:
        self._tls.run = self._run

    def __exit__(self, *exc: object) -> None:
        self._tls.run = None


def invoke(instance: Any, spec: SeedSpec, env: LegacyEnv, packet: Packet | None, emit: EmitFn) -> None:
    """Run a legacy seed on ``packet`` (None: an injector's ``rawrun``) as the original's ``_stage_run`` did:
    ``pre_run(pkt, (data,))`` first, then ``run(pkt, data)``; dispatches go to ``emit``."""
    view = view_of(packet, spec.name, env)
    with running(instance, view, packet, emit):
        if packet is None:
            instance.run(view)
            return
        arg = run_argument(packet.data)
        if instance.pre_run(view, (packet.data,)):
            instance.run(view, arg)


def seed_logger(name: str, env: LegacyEnv) -> logging.Logger:
    """The seed's ``self.logger``: named after it, also writing ``logs/<name>.log`` in the working directory."""
    logger = logging.getLogger(f"pumpkin.seed.{name}")
    path = str(env.root / "logs" / f"{name}.log")
    if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
        try:
            (env.root / "logs").mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path)
        except OSError as exc:
            log.warning("seed %s: cannot write its log file %s: %s", name, path, exc)
        else:
            handler.setFormatter(logging.Formatter("%(levelname)s-%(name)s:%(asctime)s:%(message)s", "%H:%M:%S"))
            logger.addHandler(handler)
    if env.debug:
        logger.setLevel(logging.DEBUG)
    return logger
