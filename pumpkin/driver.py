"""The shell around a mesh: does what the mesh asks (``actions``) with the links, timers and clock it is given.

The daemon drives its mesh with the ZeroMQ transport, the asyncio loop and ``time.monotonic``; the simulator
(``simnet``) with its virtual wire, event queue and clock. Either way the driver takes the mesh's actions as soon
as the mesh has any (``wake``), in order, so a packet leaves in the turn it was routed in, as the transport's
batching expects. Actions that come while it runs (a refused send routed elsewhere) are taken in the same run,
after those before them. What the links or the timers say back goes to the mesh as events: a timer that fires
(``Mesh.on_timer``) and a send they refuse (``Mesh.on_unsent``), each with the time read from the clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .actions import Action, CancelTimer, Connect, Disconnect, Send, SendBeacon, SendKind, SetTimer

if TYPE_CHECKING:
    from .mesh import Mesh
    from .messages import Origin

log = logging.getLogger(__name__)


class Timer(Protocol):
    """A scheduled call that can be called off (asyncio's ``Handle``)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs callbacks soon or later (the event loop, or the simulator's event queue)."""

    def call_soon(self, callback: Callable[[], object]) -> Timer: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer: ...


class Links(Protocol):
    """One outbound link per peer (the transport): each send says whether the link took the message."""

    def connect(self, node: str, endpoint: str) -> None: ...

    def disconnect(self, node: str) -> object: ...

    def send(self, node: str, frames: list[bytes]) -> bool: ...

    def send_packet(self, node: str, frames: list[bytes]) -> bool: ...

    def send_control(self, node: str, frames: list[bytes]) -> bool: ...


def no_beacons(address: str) -> None:
    """``beacon_to`` for a shell that sends no UDP beacons (the simulator's, for now)."""


def log_error(what: str, error: BaseException) -> None:
    """The default ``report``: log the crash with its traceback."""
    log.error("%s crashed", what, exc_info=error)


class MeshDriver:
    """Runs one mesh's actions; ``mesh``: builds the mesh around the driver's ``wake`` (neither is half-wired)."""

    def __init__(
        self,
        *,
        links: Links,
        scheduler: Scheduler,
        clock: Callable[[], float],
        mesh: Callable[[Callable[[], None]], Mesh],
        beacon_to: Callable[[str], None] = no_beacons,
        report: Callable[[str, BaseException], None] = log_error,
    ) -> None:
        """``beacon_to(address)``: one UDP beacon to a host; ``report(what, error)``: an action crashed (logged and
        counted by the daemon's supervisor; the actions after it are still done)."""
        self.links = links
        self.scheduler = scheduler
        self.clock = clock
        self.beacon_to = beacon_to
        self.report = report
        self.timers: dict[str, Timer] = {}
        self.halted = False
        self._running = False
        self.mesh = mesh(self.wake)

    def wake(self) -> None:
        """The mesh has actions: do them all, in order (at once; not again while already at it)."""
        if self._running or self.halted:
            return
        self._running = True
        try:
            while actions := self.mesh.take_actions():
                for action in actions:
                    try:
                        self.do(action)
                    except Exception as exc:  # noqa: BLE001 - one bad action must not lose the ones after it
                        self.report(f"mesh action {type(action).__name__}", exc)
        finally:
            self._running = False

    def do(self, action: Action) -> None:
        """Do one action."""
        if type(action) is Send:
            links, node, frames = self.links, action.node, action.frames
            kind = action.kind
            if kind is SendKind.PACKET:
                ok = links.send_packet(node, frames)
            elif kind is SendKind.MESSAGE:
                ok = links.send(node, frames)
            else:
                ok = links.send_control(node, frames)
            if not ok:
                self.mesh.on_unsent(action, self.clock())
        elif type(action) is SetTimer:
            self._cancel(action.name)
            name = action.name
            delay = action.at - self.clock()
            fire = lambda: self._fire(name)  # noqa: E731 - the simulator's scheduler passes no arguments
            self.timers[name] = self.scheduler.call_soon(fire) if delay <= 0 else self.scheduler.call_later(delay, fire)
        elif type(action) is CancelTimer:
            self._cancel(action.name)
        elif type(action) is Connect:
            self.links.connect(action.node, action.endpoint)
        elif type(action) is Disconnect:
            self.links.disconnect(action.node)
        elif type(action) is SendBeacon:
            self.beacon_to(action.address)
        else:
            raise TypeError(f"not a mesh action: {action!r}")

    def _cancel(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, name: str) -> None:
        self.timers.pop(name, None)
        if not self.halted:
            self.mesh.on_timer(name, self.clock())

    def on_origin(self, origin: Origin, via: str) -> None:
        """Discovery heard of ``origin`` (``discovery``'s callback): the mesh hears it with the time now."""
        self.mesh.on_origin(origin, via, self.clock())

    def halt(self) -> None:
        """Do nothing more: every timer is cancelled and later actions are left undone (a simulated crash)."""
        self.halted = True
        for name in list(self.timers):
            self._cancel(name)
