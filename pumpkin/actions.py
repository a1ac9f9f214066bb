"""What the mesh asks its shell to do: the actions it returns, and the events that tell it how they went.

The mesh (``mesh``) opens no socket, sets no timer and reads no clock: each of its event methods takes the time
and leaves what is to be done in its outbox, as these values, in the order they are to be done; the shell takes
them (``Mesh.take_actions``) and does them. A daemon's shell (``driver``) runs them on the ZeroMQ transport and
the asyncio loop, the simulator's (``simnet``) on its virtual wire and clock, a unit test just reads them.

Feedback goes back as events, never as return values: a timer that fires is ``Mesh.on_timer(name, now)``; a
``Send`` the transport could not take (no link, or its backlog full) is ``Mesh.on_unsent(send, now)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: A ``SetTimer`` due at this time fires as soon as the shell gets to it (the next turn of the loop): every
#: clock reads later than this.
SOON = 0.0


class SendKind(StrEnum):
    """How a ``Send`` travels: it decides what a full link does with it."""

    PACKET = "packet"  # a packet: batched with the others of this turn; refused when the link's backlog is full
    MESSAGE = "message"  # a protocol message that must not be lost on the way (HELLO, ACK, QUERY): backlogged
    CONTROL = "control"  # now or never (PING, BYE): not worth a backlog


@dataclass(slots=True)
class Send:
    """Send ``frames`` to ``node`` over its link; ``keys``: the (packet id, seed) of the packet it carries.

    Not frozen, but never changed: one is made per packet, and a frozen dataclass's ``__init__`` (a setattr call per
    field) took 4 times as long here (2.4 against 0.6 us, timeit).
    """

    node: str
    frames: list[bytes]
    kind: SendKind
    keys: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Connect:
    """Open (or re-point) the link to ``node`` at ``endpoint``; a link to the same endpoint stays as it is."""

    node: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the link to ``node`` at once, dropping what is queued on it (its sender still holds every packet)."""

    node: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call ``Mesh.on_timer(name, now)`` at time ``at`` (the mesh's clock), replacing a timer of that name."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """The timer ``name`` is not to fire."""

    name: str


#: ``SendBeacon``'s address for a beacon to every broadcast address now, out of its pace.
BROADCAST = ""


@dataclass(frozen=True, slots=True)
class SendBeacon:
    """Send one UDP beacon to the host at ``address`` (a peer that does not hear our broadcasts), or, to
    ``BROADCAST``, to the whole LAN at once (our seeds changed and the LAN learns them from beacons)."""

    address: str


Action = Send | Connect | Disconnect | SetTimer | CancelTimer | SendBeacon
