"""Membership proofs: network keys, node keys, certificates, sealed beacons, and what the mesh accepts."""

from __future__ import annotations

import os
import stat

import pytest

from pumpkin import messages
from pumpkin.errors import ConfigError
from pumpkin.membership import Membership, NetworkKey, NodeKeys
from pumpkin.messages import HELLO, PING, MessageError, Origin, decode_beacon, encode_beacon
from tests.unit.fakenet import Net


def member(tmp_path, network: NetworkKey | None, name: str = "a") -> Membership:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return Membership(network, NodeKeys.load_or_create(folder))


def origin_of(m: Membership, node: str, inc: int = 1, seq: int = 1) -> Origin:
    pk = m.public if m.keyed else ""
    return Origin(node, "tcp://10.0.0.1:7000", "ipc:///x", "h", "dg", inc=inc, pk=pk, cert=m.cert(node, pk), seq=seq)


def test_a_network_key_round_trips_and_a_readable_key_file_is_refused(tmp_path):
    key = NetworkKey.create()
    path = tmp_path / "lab.key"
    path.write_text(key.text())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        NetworkKey.load(path)
    path.chmod(0o600)
    assert NetworkKey.load(path).fingerprint == key.fingerprint
    assert NetworkKey.parse(key.text().splitlines()[1]).fingerprint == key.fingerprint  # the key line alone
    with pytest.raises(ConfigError, match="not a Pumpkin network key"):
        NetworkKey.parse("hello\nworld\n")


def test_node_keys_are_made_once_private_and_stable(tmp_path):
    first = NodeKeys.load_or_create(tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / "node.key").st_mode)
    assert mode == 0o600 and NodeKeys.load_or_create(tmp_path) == first


def test_a_certificate_binds_an_id_to_a_key_and_only_the_first_key_holds_an_id(tmp_path):
    key = NetworkKey.create()
    a, b = member(tmp_path, key, "a"), member(tmp_path, key, "b")
    cert = a.cert("nodeA", a.public)
    assert b.valid_cert("nodeA", a.public, cert)
    assert not b.valid_cert("nodeB", a.public, cert)  # not for another id
    assert not b.valid_cert("nodeA", b.public, cert)  # not for another key
    stranger = member(tmp_path, NetworkKey.create(), "s")
    assert not b.valid_cert("nodeA", stranger.public, stranger.cert("nodeA", stranger.public))
    assert b.bind("nodeA", a.public) and b.bind("nodeA", a.public)
    assert not b.bind("nodeA", stranger.public) and b.key_of("nodeA") == a.public.encode()


def test_sealed_beacons_open_only_for_members_of_the_same_network(tmp_path):
    key = NetworkKey.create()
    a, b = member(tmp_path, key, "a"), member(tmp_path, key, "b")
    datagram = encode_beacon(origin_of(a, "nodeA"), a)
    assert datagram.startswith(b"PMKS")
    got = decode_beacon(datagram, b)
    assert (got.id, got.pk, got.seq) == ("nodeA", a.public, 1)
    tampered = datagram[:-3] + b"9}"
    with pytest.raises(MessageError, match="seal"):
        decode_beacon(tampered, b)
    with pytest.raises(MessageError, match="seal"):
        decode_beacon(datagram, member(tmp_path, NetworkKey.create(), "other"))
    with pytest.raises(MessageError, match="keyed network"):
        decode_beacon(datagram, member(tmp_path, None, "open"))
    open_one = member(tmp_path, None, "open")
    with pytest.raises(MessageError, match="unsealed"):
        decode_beacon(encode_beacon(origin_of(open_one, "nodeO"), open_one), b)
    forged = Origin("nodeA", "tcp://6.6.6.6:1", None, "h", "dg", inc=1, pk=b.public, cert="0" * 32, seq=2)
    with pytest.raises(MessageError, match="certificate"):
        decode_beacon(encode_beacon(forged, b), b)  # sealed by a member, but the id is not bound to that key


def keyed_net(tmp_path):
    key = NetworkKey.create()
    net = Net(tmp_path)
    a = net.add("A")
    m = member(tmp_path, key, "A")
    a.mesh.membership, a.mesh.keyed = m, True
    return net, a, key


def test_news_of_a_node_without_a_valid_certificate_is_ignored_and_replayed_beacons_too(tmp_path):
    net, a, key = keyed_net(tmp_path)
    b = member(tmp_path, key, "B")
    stranger = member(tmp_path, NetworkKey.create(), "S")
    a.mesh.on_origin(origin_of(stranger, "nodeS"), "broadcast", net.clock.now)
    assert a.mesh.peers.get("nodeS") is None and a.mesh.counters["rejected"] == 1
    a.mesh.on_origin(origin_of(b, "nodeB", seq=5), "broadcast", net.clock.now)
    assert a.mesh.peers.entries["nodeB"].beacon_seq == (1, 5) and a.mesh.membership.key_of("nodeB")
    hello_sent = a.mesh.peers.entries["nodeB"].hello_sent
    a.mesh.on_origin(origin_of(b, "nodeB", seq=5), "broadcast", net.clock.now)  # the same beacon again
    a.mesh.on_origin(origin_of(b, "nodeB", seq=4), "broadcast", net.clock.now)  # an older one
    assert a.mesh.counters["replayed"] == 2 and a.mesh.peers.entries["nodeB"].hello_sent == hello_sent
    impostor = member(tmp_path, key, "I")  # a member, claiming B's id with its own key
    a.mesh.on_origin(origin_of(impostor, "nodeB", seq=9), "broadcast", net.clock.now)
    assert a.mesh.membership.key_of("nodeB") == b.public.encode()


def test_a_message_counts_only_from_the_key_that_holds_its_id_and_a_hello_binds_a_key(tmp_path):
    net, a, key = keyed_net(tmp_path)
    b = member(tmp_path, key, "B")
    ob = origin_of(b, "nodeB")
    ping = messages.encode(PING, ob, load={})
    a.mesh.handle(ping, b.public, net.clock.now)  # not bound yet: a PING cannot bind a key
    assert a.mesh.counters["not_members"] == 1
    a.mesh.handle(messages.encode(HELLO, ob, seeds=[], peers=[], reply=False), b.public, net.clock.now)
    assert a.mesh.member(b.public) == "nodeB" and "nodeB" in a.peers.peers
    stranger = member(tmp_path, None, "S")
    a.mesh.handle(ping, stranger.public, net.clock.now)  # B's PING, sent with another key: refused
    assert a.mesh.counters["not_members"] == 2
    forged_hello = messages.encode(HELLO, ob, seeds=[], peers=[], reply=False)
    a.mesh.handle(forged_hello, stranger.public, net.clock.now)  # a HELLO whose pk is not the sending key
    assert a.mesh.counters["not_members"] == 3


def test_an_mdns_record_only_introduces_a_member_and_never_re_points_or_restarts_a_known_one(tmp_path):
    net, a, key = keyed_net(tmp_path)
    b = member(tmp_path, key, "B")
    a.mesh.on_origin(
        origin_of(b, "nodeB", inc=3, seq=1), "broadcast", net.clock.now
    )  # a sealed beacon: B at its endpoint
    log = net.links["A"].log
    seen = len(log)

    def connected() -> list[tuple[str, str]]:
        return [(node, endpoint) for what, node, endpoint in log[seen:] if what == "connect"]

    # A stranger replays B's record (key and certificate are public) with its own endpoint and a newer
    # incarnation, which would have dropped B as restarted and pointed B's link at the stranger.
    replay = origin_of(b, "nodeB", inc=99, seq=0)
    replay.tcp = "tcp://10.0.0.66:6666"
    a.mesh.on_origin(replay, "mdns", net.clock.now)
    assert connected() == [] and a.mesh.peers.entries["nodeB"].inc == 3
    assert a.mesh.counters["unsealed_news_ignored"] == 1 and a.mesh.counters["restarts"] == 0
    # A member not known yet is greeted where the record says, with no incarnation taken from it.
    c = member(tmp_path, key, "C")
    a.mesh.on_origin(origin_of(c, "nodeC", inc=10**12, seq=0), "mdns", net.clock.now)
    assert connected() == [("nodeC", "tcp://10.0.0.1:7000")] and a.mesh.peers.entries["nodeC"].inc == 0
