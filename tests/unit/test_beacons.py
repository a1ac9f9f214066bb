"""The beacon decisions shared by the daemon's socket and the simulator: what is sent, what a heard datagram means."""

from __future__ import annotations

import orjson

from pumpkin.beacons import LAN_BEACONS_PER_S, MAX_PACED_S, Beacons, seeds_digest
from pumpkin.messages import BEACON_MAGIC, Origin


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


def test_a_small_lan_beacons_every_heartbeat_and_a_crowd_paces_itself():
    beacons = Beacons(me, lambda o, via: None)
    assert beacons.pace(0.5) == 0.5 and beacons.every == 0.0  # alone: every heartbeat, nothing announced
    for i in range(79):  # 80 daemons on the LAN, ourselves included
        other = Origin(f"n{i}", "tcp://10.0.0.2:7900", None, "h", "d")
        beacons.on_datagram(Beacons(lambda o=other: o, lambda o, via: None).datagram(), "10.0.0.2")
    assert beacons.pace(0.5) == 80 / LAN_BEACONS_PER_S  # 4 s: the LAN's beacons come to 20 a second in all
    heard: list[Origin] = []
    Beacons(me, lambda o, via: heard.append(o)).on_datagram(beacons.datagram(), "10.0.0.1")
    assert heard[0].every == 4.0  # announced: its receivers stretch its liveness windows by as much
    assert heard[0].hears == 79  # and how many it hears: one hearing few is greeted all the same (see mesh)
    assert beacons.datagram(direct=True) and beacons.pace(0.5) == 4.0  # the gap before still counts
    Beacons(me, lambda o, via: heard.append(o)).on_datagram(beacons.datagram(), "10.0.0.1")
    assert heard[-1].hears == 79  # heard in the last two gaps, not only the last
    assert beacons.pace(0.5) == 0.5  # two gaps without hearing anyone: back to every heartbeat


def test_the_pace_has_a_ceiling_and_a_bad_one_is_rejected():
    beacons = Beacons(me, lambda o, via: None)
    beacons._heard = {f"n{i}" for i in range(5000)}
    assert beacons.pace(0.5) == MAX_PACED_S
    heard: list[Origin] = []
    receiver = Beacons(me, lambda o, via: heard.append(o))
    for bad in (-1, 1e9, "2"):
        body = orjson.dumps({**me().fields(), "seq": 1, "bi": bad})
        receiver.on_datagram(BEACON_MAGIC + body, "10.0.0.3")
    assert heard == [] and receiver.rejected == 3


def test_a_beacon_from_off_our_networks_was_sent_to_us_alone_and_is_heard_unicast():
    heard: list[str] = []
    receiver = Beacons(me, lambda o, via: heard.append(via), on_lan=lambda host: host.startswith("10.0.0."))
    sender = Beacons(lambda: Origin("d", "tcp://10.1.0.4:7900", None, "host-d", "d1"), lambda o, via: None)
    receiver.on_datagram(sender.datagram(), "10.1.0.4")  # its supernode beacons: from another subnet
    receiver.on_datagram(sender.datagram(), "10.0.0.4")
    assert heard == ["unicast", "broadcast"]
    assert receiver.pace(0.5) == 0.5 and len(receiver._heard_before) == 1  # only LAN beacons make the crowd


def test_the_lans_rate_is_a_setting_and_zero_never_paces():
    def crowd_of_80(beacons: Beacons) -> float:
        for i in range(79):
            other = Origin(f"n{i}", "tcp://10.0.0.2:7900", None, "h", "d")
            beacons.on_datagram(Beacons(lambda o=other: o, lambda o, via: None).datagram(), "10.0.0.2")
        return beacons.pace(0.5)

    assert crowd_of_80(Beacons(me, lambda o, via: None, lan_beacons_per_s=40.0)) == 2.0  # 80 / 40 a second
    assert crowd_of_80(Beacons(me, lambda o, via: None, lan_beacons_per_s=0.0)) == 0.5  # off: every heartbeat
