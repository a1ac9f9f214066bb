"""The beacon decisions shared by the daemon's socket and the simulator: what is sent, what a heard datagram means."""

from __future__ import annotations

from pumpkin.beacons import Beacons, seeds_digest
from pumpkin.messages import Origin


def me() -> Origin:
    return Origin("a", "tcp://10.0.0.1:7900", "ipc:///tmp/a", "host-a", "d1", inc=7)


def test_a_beacon_heard_becomes_news_of_its_sender_with_how_it_came():
    heard: list[tuple[Origin, str]] = []
    sender = Beacons(me, lambda o, via: None)
    receiver = Beacons(me, lambda o, via: heard.append((o, via)), unicast_hosts={"10.0.0.9"})
    first, second = sender.datagram(), sender.datagram(direct=True)
    receiver.on_datagram(first, "10.0.0.1")
    receiver.on_datagram(second, "10.0.0.9")
    assert [(o.id, o.tcp, o.inc, o.seq, o.direct, via) for o, via in heard] == [
        ("a", "tcp://10.0.0.1:7900", 7, 1, False, "broadcast"),
        ("a", "tcp://10.0.0.1:7900", 7, 2, True, "supernode"),
    ]
    assert receiver.received == 2 and receiver.rejected == 0


def test_anything_else_is_counted_and_never_raised():
    heard: list[Origin] = []
    receiver = Beacons(me, lambda o, via: heard.append(o))
    for junk in (b"", b"PMKB{", b"PMKB" + b"x" * 2000, b"HELLO"):
        receiver.on_datagram(junk, "10.0.0.2")
    assert heard == [] and receiver.rejected == 4


def test_the_digest_changes_with_the_seeds():
    assert seeds_digest([{"name": "greet"}]) == seeds_digest([{"name": "greet"}])
    assert seeds_digest([{"name": "greet"}]) != seeds_digest([{"name": "extract"}])
