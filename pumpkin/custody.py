"""Custody: who answers for a packet until it is safe somewhere else. Pure bookkeeping, no I/O, no clock.

A node that accepts a packet (from a peer, the rx folder, ``pmk inject``) answers for it until everything made
from it is *safe*: acknowledged by the peer it was sent to, written durably (a tx result file, ``failed/``,
``pending/``), or consumed by a seed that emitted nothing. A ``Custody`` token travels with the packet and
with every packet a seed makes from it on this node; it counts the packets of its kind held here (queued,
running, waiting, in flight to a peer, being written) and calls its ``release`` when that count drops to
zero: then the sender gets its ACK (or the intake journal lets go of the entry). So an ACK means "safe
downstream", never "in memory here", and a node that dies with packets in hand loses nothing: their
senders still hold them and send them again.

Sending side: ``InFlight`` keeps the packets sent to one peer and not yet acknowledged, with a timer
each. Timers are paced by the acknowledgement times observed for that peer and seed (``RttEstimator``, RFC
6298's smoothed estimate and variance) and back off exponentially while they fire. When one fires, the peer
is asked about the packet (a QUERY, ids only): ``Received`` on the receiving side answers ACK (done with
it, the first ACK was lost), HELD (still working on it) or unknown (it never arrived: then the packet itself
is sent again). A packet that arrives twice is answered the same way, so everything is idempotent by id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .packet import Packet

#: RFC 6298's initial retransmission timeout, used before any acknowledgement time was seen.
RTO_INITIAL_S = 1.0
#: Floor of the retransmission timeout: ACKs are batched per turn of the loop and a seed takes its time.
RTO_MIN_S = 0.2
#: Ceiling, also of the backed-off timeout: a QUERY is small, and a link that was stalled and dialled again
#: (see ``transport``) lost what it held, which only the next QUERY finds out.
RTO_MAX_S = 3.0
#: RFC 6298's gains for the smoothed round trip and its variance, and the variance's weight in the timeout.
RTT_ALPHA = 1 / 8
RTT_BETA = 1 / 4
RTT_K = 4
#: Sends of and questions about a packet that may go unanswered (no ACK, no HELD) before it goes to another
#: replica. With the timeout doubling each time that is about 30 timeouts' worth (6 s at the 0.2 s floor): a TCP
#: stream stalled by packet loss recovers within that, and sending its packets elsewhere meanwhile only makes
#: them run twice once it does. A peer that is gone falls silent and is handled as evasive much sooner.
UNANSWERED_MAX = 5
#: Packets a receiver remembers having taken (for telling duplicates), past those it still holds.
RECEIVED_WINDOW = 100_000

Key = tuple[str, str]  # (packet id, seed name)


def _nothing() -> None:
    return None


class Custody:
    """The count of packets held on this node that stand for one accepted packet; ``release`` at zero.

    Starts at 1: the caller holds it while routing the first packets, then ``settle``s. Released once;
    later changes are ignored (e.g. a packet saved to pending/ at a clean stop that a seed then finishes).
    """

    __slots__ = ("count", "release", "released")

    def __init__(self, release: Callable[[], None]) -> None:
        self.count = 1
        self.release = release
        self.released = False

    def add(self, delta: int) -> None:
        """``delta`` more (or fewer) packets of this custody are held here."""
        if self.released:
            return
        self.count += delta
        if self.count <= 0:
            self.released = True
            self.release()

    def settle(self) -> None:
        """The caller's own hold ends (after routing): released now when nothing else holds it."""
        self.add(-1)

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        # A packet pickled to a worker process (processes = N) leaves its custody behind: it stays on the loop.
        return (_nothing, ())


def hold(packet: Packet, delta: int) -> None:
    """``delta`` more (or fewer) copies of ``packet`` are held on this node (a no-op for untracked packets)."""
    custody = packet.custody
    if custody is not None:
        custody.add(delta)


class RttEstimator:
    """Smoothed acknowledgement time and its variance (RFC 6298 section 2), giving the retransmission timeout.

    A timer that fires doubles the timeout (section 5.5) until an ACK of a packet sent once measures anew:
    under Karn's rule a packet sent again measures nothing, so without this a peer whose queue grew slower
    than our first samples said would have every packet asked about again.
    """

    __slots__ = ("srtt", "rttvar", "backoff", "_backed_off_at", "rto")

    def __init__(self) -> None:
        self.srtt = 0.0
        self.rttvar = 0.0
        self.backoff = 1
        self._backed_off_at = -1e18
        #: ``rto``: seconds to wait for an ACK before asking again, kept up to date by ``sample`` and ``timed_out``
        #: (read for every packet sent, changed far less often).
        self._update()

    def sample(self, rtt: float) -> None:
        """Take one measured time from sending a packet to its ACK (never of a packet sent again: Karn)."""
        self.backoff = 1
        if self.srtt == 0.0:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - RTT_BETA) * self.rttvar + RTT_BETA * abs(self.srtt - rtt)
            self.srtt = (1 - RTT_ALPHA) * self.srtt + RTT_ALPHA * rtt
        self._update()

    def timed_out(self, now: float) -> None:
        """A timer fired: double the timeout, once per timeout's length (many packets time out together)."""
        if now - self._backed_off_at >= self.rto:
            self._backed_off_at = now
            self.backoff = min(self.backoff * 2, 64)
            self._update()

    def _update(self) -> None:
        self.rto: float
        base = RTO_INITIAL_S if self.srtt == 0.0 else max(RTO_MIN_S, self.srtt + RTT_K * self.rttvar)
        self.rto = min(RTO_MAX_S, base * self.backoff)


@dataclass(slots=True)
class Flight:
    """One packet sent to a peer for one seed, not yet acknowledged."""

    packet: Packet
    seed: str
    sent_at: float  # the first send: ACK times are measured from it, only for packets sent once, never asked about
    due: float  # when to ask about it
    sends: int = 1
    asked: int = 0  # QUERYs about it so far
    unanswered: int = 1  # sends and QUERYs since the peer last said anything about this packet


class InFlight:
    """The packets sent to one peer and not yet acknowledged, oldest first, with their timers."""

    def __init__(self) -> None:
        # Plain dicts (in insertion order; a flight moves to the back by being put in again): an OrderedDict or
        # a Counter costs ~0.5-1 us to make, and every peer of a big LAN gets one.
        self.flights: dict[Key, Flight] = {}
        self.per_seed: dict[str, int] = {}
        self.rtt: dict[str, RttEstimator] = {}

    def __len__(self) -> int:
        return len(self.flights)

    def __contains__(self, key: Key) -> bool:
        return key in self.flights

    def rto(self, seed: str) -> float:
        """The current retransmission timeout for packets sent for ``seed``."""
        est = self.rtt.get(seed)
        return est.rto if est is not None else RTO_INITIAL_S

    def add(self, packet: Packet, seed: str, now: float) -> bool:
        """Record a first send of ``packet`` for ``seed``; False (nothing changed) when it is in flight already."""
        key = (packet.id, seed)
        if key in self.flights:
            return False
        self.flights[key] = Flight(packet, seed, now, now + self.rto(seed))
        self.per_seed[seed] = self.per_seed.get(seed, 0) + 1
        return True

    def ack(self, key: Key, now: float) -> Flight | None:
        """The peer is done with ``key``: forget it; returns its flight (None when it was not in flight)."""
        acked = self.ack_all((key,), now)
        return acked[0] if acked else None

    def ack_all(self, keys: Iterable[Sequence[str]], now: float) -> list[Flight]:
        """The peer is done with every (packet id, seed) of ``keys`` (one ACK message): forget them; the flights
        that were in flight. The ACK time is measured once per seed, on the last of them sent once: one
        sample per round trip, as TCP times one segment per window (a sample per packet cost ~1 us each, and
        the packets of one ACK tell the same round trip)."""
        flights, timed = [], {}
        pop, count_out = self.flights.pop, self._count_out
        for pid, seed in keys:
            flight = pop((pid, seed), None)
            if flight is None:
                continue
            count_out(seed)
            flights.append(flight)
            if flight.sends == 1 and not flight.asked:
                timed[seed] = flight.sent_at
        for seed, sent_at in timed.items():
            self._estimator(seed).sample(now - sent_at)
        return flights

    def _estimator(self, seed: str) -> RttEstimator:
        est = self.rtt.get(seed)
        if est is None:  # (not setdefault: that made an estimator per packet only to drop it)
            est = self.rtt[seed] = RttEstimator()
        return est

    def held(self, key: Key, now: float) -> None:
        """The peer still holds ``key`` (a duplicate it is working on): ask again later, backing off."""
        flight = self.flights.get(key)
        if flight is None:
            return
        flight.unanswered = 0
        flight.due = now + self._backoff(flight)
        self.flights[key] = self.flights.pop(key)  # to the back

    def due(self, now: float) -> list[Flight]:
        """Flights whose timer has fired, oldest first (a flight sent again moves to the back: see ``resent``).

        Flights are kept in the order of their timers as long as the timeout does not shrink; one that does
        at worst fires a little late.
        """
        out = []
        for flight in self.flights.values():
            if flight.due > now:
                break
            out.append(flight)
        return out

    def queried(self, flight: Flight, now: float) -> None:
        """The peer was asked about ``flight`` (its timer fired): back off its timer, and the timeout of its seed."""
        self._estimator(flight.seed).timed_out(now)
        flight.asked += 1
        flight.unanswered += 1
        flight.due = now + self._backoff(flight)
        key = (flight.packet.id, flight.seed)
        self.flights[key] = self.flights.pop(key)  # to the back

    def resent(self, flight: Flight, now: float) -> None:
        """``flight`` was sent again (the peer said it never got it)."""
        flight.sends += 1
        flight.unanswered = 1
        flight.due = now + self._backoff(flight)
        key = (flight.packet.id, flight.seed)
        self.flights[key] = self.flights.pop(key)  # to the back

    def get(self, key: Key) -> Flight | None:
        """The flight of ``key``, if in flight."""
        return self.flights.get(key)

    def remove(self, flight: Flight) -> None:
        """Take ``flight`` out (it goes to another replica)."""
        if self.flights.pop((flight.packet.id, flight.seed), None) is not None:
            self._count_out(flight.seed)

    def take_all(self) -> list[Flight]:
        """Remove and return every flight, oldest first (the peer is gone)."""
        flights = list(self.flights.values())
        self.flights.clear()
        self.per_seed.clear()
        return flights

    def next_due(self) -> float | None:
        """When the earliest timer fires (None: nothing in flight)."""
        for flight in self.flights.values():
            return flight.due
        return None

    def _backoff(self, flight: Flight) -> float:
        return self.rto(flight.seed)  # backed off already (RttEstimator.timed_out) while timers fire

    def _count_out(self, seed: str) -> None:
        left = self.per_seed[seed] - 1
        if left > 0:
            self.per_seed[seed] = left
        else:
            del self.per_seed[seed]


class Received:
    """What a receiver knows of the packets peers sent it: which it still holds, which it took before.

    A packet seen again is a duplicate: while its custody is held here the answer is HELD, after it was
    released the answer is ACK (its ACK was lost, or the sender asks again).
    """

    def __init__(self, window: int = RECEIVED_WINDOW) -> None:
        self.window = window
        self.holding: dict[Key, Custody] = {}
        self._seen: OrderedDict[Key, None] = OrderedDict()

    def seen(self, key: Key) -> bool:
        """True when ``key`` was taken before (in the window, or still held)."""
        return key in self._seen or key in self.holding

    def take(self, key: Key, custody: Custody) -> None:
        """Remember ``key`` as taken and held under ``custody`` until that is released (``done``)."""
        self.holding[key] = custody
        self._seen[key] = None
        if len(self._seen) > self.window:
            self._seen.popitem(last=False)

    def note(self, key: Key) -> None:
        """Remember ``key`` as taken, with nothing to answer for (a packet nobody asked us to acknowledge)."""
        self._seen[key] = None
        if len(self._seen) > self.window:
            self._seen.popitem(last=False)

    def done(self, key: Key) -> None:
        """``key``'s custody was released: a duplicate of it is now answered with an ACK."""
        self.holding.pop(key, None)

    def is_held(self, key: Key) -> bool:
        """True while this node still answers for ``key``."""
        return key in self.holding
