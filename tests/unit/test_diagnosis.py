"""pmk doctor's verdicts from made-up facts, its probe and echo datagrams, and what the daemon records of discovery."""

from __future__ import annotations

import pytest

from pumpkin import diagnosis, messages
from pumpkin.diagnosis import FAIL, OK, SKIP, WARN
from pumpkin.hearing import MAX_NODES, Hearing
from pumpkin.messages import MessageError, Origin

IFACE = {"name": "eth0", "address": "10.77.0.11", "broadcast": "10.77.0.255", "network": "10.77.0.0/24"}
NFT_BEACONS = """table ip pmkblock {
\tchain in {
\t\ttype filter hook input priority filter; policy accept;
\t\tudp dport 7700 drop
\t}
}
table inet filter {
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\tip daddr { 10.77.0.255, 10.78.0.255 } drop
\t\tudp dport { 53, 5353 } counter packets 3 bytes 180 reject
\t\ttcp dport 7890-7910 drop
\t\ttcp dport 22 drop
\t\toifname "eth0" drop
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t}
}
"""
IPTABLES = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 7700 -j DROP
-A INPUT -d 224.0.0.0/4 -j DROP
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""


def daemon(**more):
    return {
        "node": "nodeA",
        "incarnation": 7,
        "interfaces": [IFACE],
        "endpoints": ["tcp://0.0.0.0:7900"],
        "timing": {"heartbeat_s": 0.5},
        "discovery": {"bcport": 7700, "broadcast": True, "beacons": True, "mdns": True},
        **more,
    }


def peer(node, address, **more):
    return {"id": node, "state": "alive", "tcp": f"tcp://{address}:7900", "known_s": 60.0, **more}


def test_firewall_rules_that_drop_pumpkins_ports_are_named():
    facts = {"daemon": daemon(), "firewall": {"nft": NFT_BEACONS, "iptables": IPTABLES}}
    found = {f["rule"]: f["blocks"] for f in diagnosis.firewall_findings(facts)}
    assert found["udp dport 7700 drop"] == ["beacons (udp 7700)"]
    assert found["ip daddr { 10.77.0.255, 10.78.0.255 } drop"] == ["broadcast"]
    assert found["udp dport { 53, 5353 } counter packets 3 bytes 180 reject"] == ["mDNS (udp 5353)"]
    assert found["tcp dport 7890-7910 drop"] == ["the data port (tcp 7900)"]
    assert found['oifname "eth0" drop'] == ["everything"]
    assert "tcp dport 22 drop" not in found  # not ours
    assert found["-A INPUT -p udp -m udp --dport 7700 -j DROP"] == ["beacons (udp 7700)"]
    assert found["-A INPUT -d 224.0.0.0/4 -j DROP"] == ["multicast"]
    assert found["policy drop"] == ["policy"] and found["policy DROP"] == ["policy"]
    check = diagnosis.firewall_check(facts)
    assert check.status == FAIL and "beacons (udp 7700)" in check.summary and check.fix


def test_firewall_policy_drop_alone_is_a_warning_and_unreadable_rules_a_skip():
    policy = "table inet f {\n chain input {\n  type filter hook input priority 0; policy drop;\n }\n}\n"
    check = diagnosis.firewall_check({"daemon": daemon(), "firewall": {"nft": policy, "iptables": None}})
    assert check.status == WARN and "tcp 7900" in check.fix
    check = diagnosis.firewall_check(
        {"firewall": {"nft": None, "iptables": None, "error": "nft: Operation not permitted"}}
    )
    assert check.status == SKIP and "root" in check.fix
    assert diagnosis.firewall_check({"daemon": daemon(), "firewall": {"nft": "", "iptables": None}}).status == OK


def test_broadcast_names_peers_that_miss_our_broadcasts_and_those_that_answer_nothing():
    facts = {
        "daemon": daemon(
            peers=[
                peer("b", "10.77.0.12", broadcast_s=0.1),
                peer("c", "10.77.0.13", broadcast_s=0.2),
                peer("nodeD", "10.78.0.14"),
            ]
        ),  # fmt: skip
        "probe": {
            "listening": True,
            "own_back": True,
            "sent": [{"to": "10.77.0.255", "kind": "broadcast"}, {"to": "10.77.0.12", "kind": "unicast"}],
            "echoes": [{"id": "b", "kind": "unicast", "from": "10.77.0.12"}],
        },
    }
    check = diagnosis.broadcast_check(facts)
    assert check.status == FAIL
    assert "b did not hear this host's broadcast probe but answered one sent to them alone" in check.summary
    assert "c answered no probe to UDP port 7700" in check.summary
    assert "nodeD" not in check.summary  # another subnet: not expected to hear our broadcasts
    facts["probe"]["echoes"] += [{"id": "b", "kind": "broadcast"}, {"id": "c", "kind": "broadcast"}]
    assert diagnosis.broadcast_check(facts).status == OK


def test_a_peer_whose_beacons_stopped_is_named_but_not_one_met_before_its_first_beacon():
    probe = {
        "listening": True,
        "own_back": True,
        "sent": [{"to": "10.77.0.255", "kind": "broadcast"}],
        "echoes": [{"id": "b", "kind": "broadcast"}, {"id": "c", "kind": "broadcast"}],
    }
    just_met = peer("b", "10.77.0.12", known_s=0.2)  # it greeted us; its first beacon is a heartbeat away
    gone_quiet = peer("c", "10.77.0.13", broadcast_s=30.0)
    check = diagnosis.broadcast_check({"daemon": daemon(peers=[just_met, gone_quiet]), "probe": probe})
    assert check.status == FAIL and check.summary == "no broadcast beacon from c arrives here"
    settled = peer("b", "10.77.0.12", known_s=3.0)  # 4 heartbeats and a half second later: still nothing
    check = diagnosis.broadcast_check({"daemon": daemon(peers=[settled]), "probe": probe})
    assert check.status == FAIL and check.summary == "no broadcast beacon from b arrives here"


def test_hearing_one_way_is_a_warning_after_a_peer_settles():
    new = peer("nodeB", "10.77.0.12", known_s=0.5, asks_pings_s=0.1)
    old = peer("c", "10.77.0.13", asks_pings_s=0.2, broadcast_s=30.0)
    check = diagnosis.hearing_check({"daemon": daemon(peers=[new, old])})
    assert check.status == WARN
    assert "c does not hear this node's beacons" in check.summary and "broadcasts of c" in check.summary
    assert "nodeB" not in check.summary  # just met: it asks for PINGs until our first beacon reaches it


def test_mdns_waits_for_registrations_before_it_names_a_missing_record():
    def facts(registration, *peers, found=("nodeA",)):
        d = daemon(peers=list(peers))
        d["discovery"] = {**d["discovery"], "mdns_registration": registration}
        return {"daemon": d, "mdns": {"found": list(found)}}

    # Just started: our own record still probing, a peer met a second ago not answering yet. Not a failure.
    check = diagnosis.multicast_check(facts("pending", peer("b", "10.77.0.12", known_s=1.0), found=()))
    assert check.status == OK
    assert "own record (nodeA) is still being registered" in check.summary
    assert "b met less than 5 s ago" in check.summary
    # Registered, and the peer known long enough: both missing records are named.
    check = diagnosis.multicast_check(facts("registered", peer("b", "10.77.0.12", known_s=6.0), found=()))
    assert check.status == FAIL
    assert "own mDNS record (nodeA) did not answer" in check.summary
    assert "b run pmk on this subnet but did not answer an mDNS query" in check.summary
    # A young peer does not hide an old one's missing record; a failed registration is a failure.
    check = diagnosis.multicast_check(
        facts("registered", peer("b", "10.77.0.12", known_s=1.0), peer("c", "10.77.0.13", known_s=9.0))
    )
    assert check.status == FAIL and "c run pmk" in check.summary and "b met less than" in check.details[0]
    check = diagnosis.multicast_check(facts("failed: NonUniqueNameException"))
    assert check.status == FAIL and "could not register its mDNS record (failed: NonUniqueName" in check.summary
    assert diagnosis.multicast_check(facts("registered", peer("b", "10.77.0.12"), found=("nodeA", "b"))).status == OK


def test_clock_skew_is_a_warning_naming_the_peer_and_its_offset():
    facts = {
        "daemon": daemon(peers=[peer("b", "10.77.0.12")], hearing={"nodes": {"b": {"offset_s": 0.01}}}),
        "probe": {"echoes": [{"id": "c", "kind": "broadcast", "offset_s": -42.25}]},
    }
    check = diagnosis.clock_check(facts)
    assert check.status == WARN and "c -42.2 s" in check.summary and "b " not in check.summary
    assert "NTP" in check.fix
    facts["probe"]["echoes"][0]["offset_s"] = 0.2
    assert diagnosis.clock_check(facts).status == OK


def test_duplicate_ids_fail_from_the_daemon_a_probe_or_a_copied_workdir():
    dup = {"endpoint": "tcp://10.77.0.13:7900", "incarnation": 5, "via": "broadcast", "age_s": 0.2}
    check = diagnosis.node_id_check({"daemon": daemon(hearing={"duplicates": [dup]})})
    assert check.status == FAIL and check.summary.startswith("nodeA: another daemon at tcp://10.77.0.13:7900")
    check = diagnosis.node_id_check({"workdir": {"node_id": "n1", "same_id": ["/x/node3"]}})
    assert check.status == FAIL and "/x/node3" in check.summary
    echo = {"id": "nodeA", "from": "10.77.0.9", "kind": "broadcast", "incarnation": 9}
    assert diagnosis.node_id_check({"daemon": daemon(), "probe": {"echoes": [echo]}}).status == FAIL
    echo["incarnation"] = 7  # our own daemon answering
    assert diagnosis.node_id_check({"daemon": daemon(), "probe": {"echoes": [echo]}}).status == OK


def test_workdir_and_exit_status():
    wd = {"path": "/w", "exists": True, "pending": 3, "failed": {"seed-error": 2}, "journal_batches": 1}
    check = diagnosis.workdir_check({"workdir": wd})
    assert check.status == WARN
    assert "3 packet(s) in pending/" in check.summary and "2 packet(s) failed (seed-error 2)" in check.summary
    assert "/w/pending/" in check.fix
    assert diagnosis.workdir_check({"workdir": {"path": "/nope", "exists": False, "explicit": True}}).status == FAIL
    checks = diagnosis.diagnose({})
    assert [c.name for c in checks][:3] == ["daemon", "interfaces", "broadcast"]
    assert all(c.fix for c in checks if c.status != OK)
    assert diagnosis.exit_status(checks) == (1 if any(c.status == FAIL for c in checks) else 0)


def test_probe_and_echo_datagrams():
    probe = messages.encode_probe("abc-1")
    assert len(probe) >= messages.PROBE_MIN_BYTES and messages.decode_probe(probe) == "abc-1"
    echo = messages.encode_echo("n" * 128, 5, "abc-1")
    assert len(echo) <= len(probe)  # answering never amplifies
    got = messages.decode_echo(echo)
    assert (got.node, got.inc, got.nonce) == ("n" * 100, 5, "abc-1") and got.wall > 0
    for bad in (b"PMKD{}", b"PMKD" + b"[]".ljust(300), b'PMKD{"nonce": 5}'.ljust(300)):
        with pytest.raises(MessageError):
            messages.decode_probe(bad)
    with pytest.raises(MessageError):
        messages.decode_echo(b'PMKE{"v": 1, "id": "x", "nonce": "a", "t": "soon"}')


def test_beacons_carry_the_wall_clock_and_older_ones_still_decode():
    me = Origin("a", "tcp://10.0.0.1:1", None, "h", wall=1234.5)
    assert messages.decode_beacon(messages.encode_beacon(me)).wall == 1234.5
    assert messages.decode_beacon(b'PMKB{"v":1,"id":"x","tcp":"tcp://a:1","host":"","dg":""}').wall == 0.0
    with pytest.raises(MessageError, match="t must be"):
        messages.decode_beacon(b'PMKB{"v":1,"id":"x","tcp":"tcp://a:1","host":"","dg":"","t":-1}')


def test_hearing_records_ways_offsets_own_echoes_and_duplicates():
    now = [100.0]
    me = Origin("a", "tcp://10.0.0.1:1", None, "h", inc=7)
    h = Hearing(lambda: me, clock=lambda: now[0], wall=lambda: 5000.0)
    h.heard(Origin("b", "tcp://10.0.0.2:1", None, "h", inc=3, wall=5030.0), "broadcast")
    now[0] = 101.0
    h.heard(Origin("b", "tcp://10.0.0.2:1", None, "h", inc=3, direct=True), "broadcast")
    h.heard(Origin("a", "tcp://10.0.0.1:1", None, "h", inc=7), "broadcast")  # our own beacon, back
    h.heard(Origin("a", "tcp://10.0.0.3:1", None, "h", inc=9), "mdns")  # another daemon with our id
    facts = h.facts()
    assert facts["nodes"]["b"] == {
        "heard_for_s": 1.0,
        "ways": {"broadcast": 1.0, "direct": 0.0},
        "offset_s": 30.0,
        "endpoint": "tcp://10.0.0.2:1",
    }
    assert facts["own"] == {"broadcast": 0.0}
    assert facts["duplicates"] == [{"endpoint": "tcp://10.0.0.3:1", "incarnation": 9, "via": "mdns", "age_s": 0.0}]
    for n in range(MAX_NODES + 10):
        h.heard(Origin(f"x{n}", "tcp://10.0.0.9:1", None, "h"), "broadcast")
    assert len(h.nodes) == MAX_NODES and "b" not in h.nodes  # the oldest news went first
