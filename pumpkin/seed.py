"""The seed author's API: declare the states a seed consumes and emits, and how it transforms data.

A seed is a class with a manifest in class attributes and a ``run`` method::

    from pumpkin import Seed

    class Greet(Seed):
        \"\"\"Turn a name into a greeting.\"\"\"
        consumes = "String:UNGREETED"      # group:type:STATE, type:STATE or STATE; "A|B" for alternatives
        emits = "String:GREETING"

        def run(self, name):               # run(self, data) or run(self, data, packet)
            return f"Hello {name}"          # emitted in the one declared output state

The same seed as a function::

    from pumpkin import seed

    @seed(consumes="String:UNGREETED", emits="String:GREETING")
    def greet(name):
        return f"Hello {name}"

What ``run`` returns is emitted: ``None`` emits nothing, a value is emitted in the seed's only output state,
``Emit(value, "STATE")`` picks one of several declared outputs, and a generator (``yield``) emits zero,
one or many packets. A seed that consumes nothing is an *injector*: its ``run(self)`` is called once at
start, or every ``every_s`` seconds. A seed that emits nothing is an *extractor* (a sink).

A seed instance keeps its attributes across packets; ``workers = N`` runs N instances side by side (each
handles one packet at a time), which is how a slow seed is given replicas. ``inline = True`` runs a
consuming seed's one instance on the daemon's event loop instead of a thread: no hand-over between threads,
so a quick seed (microseconds of pure Python per packet) moves data several times faster, but while it runs
nothing else on that daemon does, so never mark a seed inline that blocks, sleeps or computes for long.
``processes = N`` runs N instances in N worker processes instead of threads, for a seed that computes in
Python: threads share one interpreter lock, processes use as many cores (see ``procpool``).
``on_load()`` runs once before the first packet and ``on_unload()`` at shutdown. An injector that says
``durable = True`` has each packet it makes written to the node's intake journal (fsynced) before it is
routed, with the guarantee of the rx folder and ``pmk inject``: nothing it made is lost by a crash after.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from .tags import StateTag

#: What seed code may raise that fails only what the seed was doing (a packet, an instance, a file): any
#: exception, and ``sys.exit()`` or a KeyboardInterrupt raised by the seed itself, which would otherwise end a
#: worker thread silently or stop the daemon's event loop. (Ctrl-C reaches the daemon as a signal handler, not
#: as a KeyboardInterrupt in seed code.)
SEED_FAULTS: tuple[type[BaseException], ...] = (Exception, SystemExit, KeyboardInterrupt)


class Emit(NamedTuple):
    """One packet to emit: ``data`` in ``state`` (a declared output; None means the only one)."""

    data: Any
    state: str | None = None


class Seed:
    """Base class of modern seeds; see the module documentation for an example."""

    consumes: ClassVar[str | Sequence[str]] = ()
    emits: ClassVar[str | Sequence[str]] = ()
    workers: ClassVar[int] = 1
    processes: ClassVar[int] = 0
    inline: ClassVar[bool] = False
    durable: ClassVar[bool] = False
    every_s: ClassVar[float | None] = None
    auto_load: ClassVar[bool] = True
    name: ClassVar[str] = ""

    #: Set by the daemon before on_load: the id of the node this instance runs on.
    node_id: str = ""
    #: Set by the daemon before on_load: a logger named after the seed.
    log: logging.Logger = logging.getLogger("pumpkin.seed")

    def on_load(self) -> None:
        """Called once per instance before it handles any packet."""

    def on_unload(self) -> None:
        """Called once per instance when the daemon stops."""

    def run(self, *args: Any) -> Any:
        """Transform one input (``run(self, data)``), or produce data (injectors: ``run(self)``)."""
        raise NotImplementedError(f"seed {type(self).__name__} does not define run()")


def seed(
    *,
    consumes: str | Sequence[str] = (),
    emits: str | Sequence[str] = (),
    workers: int = 1,
    processes: int = 0,
    inline: bool = False,
    durable: bool = False,
    every_s: float | None = None,
    name: str | None = None,
    auto_load: bool = True,
) -> Callable[[Callable[..., Any]], type[Seed]]:
    """Turn a plain function into a seed class (see the module documentation)."""

    def wrap(func: Callable[..., Any]) -> type[Seed]:
        takes_packet = len(inspect.signature(func).parameters) >= 2

        def run(self: Seed, *args: Any) -> Any:
            return func(*args) if takes_packet else func(*args[:1])

        attrs: dict[str, Any] = {
            "consumes": consumes,
            "emits": emits,
            "workers": workers,
            "processes": processes,
            "inline": inline,
            "durable": durable,
            "every_s": every_s,
            "auto_load": auto_load,
            "name": name or func.__name__,
            "run": run,
            "__doc__": func.__doc__,
            "__module__": func.__module__,
            "__wrapped__": func,
        }
        # A function seed with one parameter still wants the packet out of the way.
        attrs["_run_arity"] = 1 if not takes_packet else 2
        return type(func.__name__, (Seed,), attrs)

    return wrap


#: States ``SeedSpec.output_for`` remembers its answer for, per seed.
MAX_REMEMBERED_STATES = 256


@dataclass(frozen=True)
class SeedSpec:
    """A loaded seed: what it consumes and emits, and how to make instances of it."""

    name: str
    inputs: tuple[StateTag, ...]
    outputs: tuple[StateTag, ...]
    factory: type
    path: Path | None
    legacy: bool
    workers: int = 1
    every_s: float | None = None
    inline: bool = False
    processes: int = 0  # > 0: run in that many worker processes (then ``workers`` equals it)
    durable: bool = False  # an injector whose packets are journaled before they are routed
    description: str = ""
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)
    #: AND-joins among the inputs (``consumes = "A&B"``): the seed runs once per lineage with all of a join's states.
    joins: tuple[tuple[StateTag, ...], ...] = ()
    #: ``output_for``'s answers by the state asked (every emission asks; the outputs never change).
    _outputs_by_state: dict[str, StateTag | None] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def is_injector(self) -> bool:
        """True when the seed consumes nothing and so produces data by itself."""
        return not self.inputs

    @property
    def is_extractor(self) -> bool:
        """True when the seed emits nothing (a sink)."""
        return not self.outputs

    def output_for(self, state: str | None) -> StateTag | None:
        """The declared output a seed meant by ``state`` (None: the only one), or None if undeclared."""
        if state is None:
            return self.outputs[0] if len(self.outputs) == 1 else None
        known = self._outputs_by_state
        if state in known:
            return known[state]
        found = next((t for t in self.outputs if state in (str(t), t.state, f"{t.type}:{t.state}")), None)
        if len(known) < MAX_REMEMBERED_STATES:  # a seed emitting ever new undeclared states is not remembered
            known[state] = found
        return found

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description, as sent to peers and shown by ``pmk graph``."""
        return {
            "name": self.name,
            "inputs": [str(t) for t in self.inputs],
            "outputs": [str(t) for t in self.outputs],
            "workers": self.workers,
            "legacy": self.legacy,
            "description": self.description,
            **({"joins": [[str(t) for t in join] for join in self.joins]} if self.joins else {}),
        }


def run_arity(cls: type) -> int:
    """How many arguments a modern seed's ``run`` takes besides self (0, 1 or 2)."""
    fixed = getattr(cls, "_run_arity", None)
    if fixed is not None:
        return int(fixed)
    run: Callable[..., Any] = cls.run  # type: ignore[attr-defined]  # any seed class has one
    params = list(inspect.signature(run).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return min(2, len([p for p in params if p.default is p.empty or p.kind is p.POSITIONAL_OR_KEYWORD]))
