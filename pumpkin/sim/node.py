"""The node a user subclasses to write a distributed algorithm: one handler per message type.

    @dataclass
    class Ping:
        n: int

    class Echo(Node):
        @handles("Ping")
        def ping(self, msg: Ping, sender: str) -> None:
            self.send(sender, Ping(msg.n + 1))

A handler is found by the ``@handles`` decorator or by name: a method ``on_Ping(self, msg, sender)``. Messages are
any objects; a message's type is its class name, and dataclasses are written out field by field in the history.
Nodes never read a real clock or a global random generator: ``self.now`` and ``self.random`` are the simulation's.
A restart starts a fresh instance: only what the node kept in ``self.disk`` survives a crash.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pumpkin.errors import PumpkinError

if TYPE_CHECKING:
    from pumpkin.sim.network import Network

F = TypeVar("F", bound=Callable[..., Any])
HANDLES_ATTR = "_sim_handles"


class SimError(PumpkinError):
    """A simulated algorithm was wired wrongly (not a fault of the simulated network)."""


def handles(*types: str) -> Callable[[F], F]:
    """Mark a method as the handler of messages of these types (class names)."""

    def mark(method: F) -> F:
        setattr(method, HANDLES_ATTR, types)
        return method

    return mark


class Node:
    """A simulated process. Override ``on_start``, ``on_timer`` and message handlers; the rest is given."""

    id: str = ""
    neighbours: tuple[str, ...] = ()
    _net: Network | None = None
    _handlers: dict[str, str] = {}  # message type -> method name, per subclass

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for name, member in vars(klass).items():
                for kind in getattr(member, HANDLES_ATTR, ()):
                    table[kind] = name
        cls._handlers = table

    # -- what a node may call --------------------------------------------------------------------------------------

    @property
    def net(self) -> Network:
        if self._net is None:
            raise SimError(f"{type(self).__name__} is not in a network yet (add it with Network.add)")
        return self._net

    @property
    def now(self) -> float:
        """Virtual seconds."""
        return self.net.clock.now

    @property
    def random(self) -> random.Random:
        """The simulation's one random generator: a node's choices replay with the seed."""
        return self.net.rng

    @property
    def disk(self) -> dict[str, Any]:
        """This node's stable storage: what it puts here survives its crashes and restarts (as if fsynced at once),
        while everything else it holds is lost (e.g. Raft's current term and vote)."""
        return self.net.disks.setdefault(self.id, {})

    def send(self, to: str, msg: object) -> None:
        self.net.send(self.id, to, msg)

    def set_timer(self, delay_s: float, name: str) -> None:
        """Call ``on_timer(name)`` after ``delay_s`` virtual seconds; a timer of the same name is replaced."""
        self.net.set_timer(self, delay_s, name)

    def cancel_timer(self, name: str) -> None:
        self.net.cancel_timer(self, name)

    def record(self, name: str, **data: Any) -> None:
        """Write a ``note`` in the history, for checkers (e.g. a client's operation and its result)."""
        self.net.note(self.id, name, data)

    # -- what a node overrides -------------------------------------------------------------------------------------

    def on_start(self) -> None:
        """Called when the node starts, and again on each restart (on a fresh instance: state is lost)."""

    def on_timer(self, name: str) -> None:
        """A timer set with ``set_timer`` fired."""

    def on_message(self, msg: object, sender: str) -> None:
        """A message of a type with no handler arrived."""
        raise SimError(f"{type(self).__name__} {self.id!r} has no handler for {type(msg).__name__} from {sender!r}")

    def dispatch(self, msg: object, sender: str) -> None:
        kind = type(msg).__name__
        name = self._handlers.get(kind) or ("on_" + kind if hasattr(self, "on_" + kind) else None)
        if name is None:
            self.on_message(msg, sender)
        else:
            getattr(self, name)(msg, sender)
