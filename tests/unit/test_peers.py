from pumpkin.peers import Liveness, PeerTable


def test_alive_evasive_expired_and_revival():
    table = PeerTable(evasive_s=1.5, expired_s=5.0)
    peer, new = table.heard("b", "tcp://b:1", "broadcast", now=0.0)
    assert new and peer.state is Liveness.ALIVE
    assert table.sweep(now=1.0) == ([], [])
    evasive, expired = table.sweep(now=2.0)
    assert [p.node_id for p in evasive] == ["b"] and not expired
    assert table.sweep(now=2.0) == ([], [])  # reported once
    _, revived = table.heard("b", "", "ping", now=2.5)
    assert revived and table.peers["b"].state is Liveness.ALIVE and table.peers["b"].endpoint == "tcp://b:1"
    evasive, expired = table.sweep(now=7.5)
    assert [p.node_id for p in expired] == ["b"] and expired[0].state is Liveness.EXPIRED
    table.leave("b")  # the mesh drops it once what was in flight to it is routed again
    assert table.get("b") is None


def test_one_entry_per_node_greeted_first_then_a_peer():
    table = PeerTable(1.0, 2.0)
    greeted = table.entry("b", now=0.0, inc=7)  # heard of, said HELLO: not a peer yet
    assert table.peers == {} and table.peer("b") is None and table.summaries(0.0, 100.0) == []
    assert table.sweep(now=10.0) == ([], [])  # liveness is for peers only
    peer, new = table.heard("b", "tcp://b:1", "mdns", now=1.0)  # its HELLO came
    assert peer is greeted and new and peer.inc == 7 and table.peer("b") is peer


def test_greeted_count_follows_the_entries():
    table = PeerTable(1.0, 2.0)
    table.entry("b", now=0.0)
    table.entry("c", now=0.0)
    table.entry("b", now=0.1)  # the same entry
    assert table.greeted == 2
    table.heard("b", "tcp://b:1", "broadcast", now=0.2)  # b's HELLO: a peer now
    table.heard("d", "tcp://d:1", "hello", now=0.2)  # a HELLO first: never counted as greeted
    assert table.greeted == 1
    table.leave("c")
    table.leave("b")
    assert table.greeted == 0 and len(table) == 1


def test_goodbye_removes_at_once_and_summaries():
    table = PeerTable(1.0, 2.0)
    table.heard("b", "tcp://b:1", "mdns", now=0.0)
    (s,) = table.summaries(now=0.5, now_wall=100.5)
    assert (s["id"], s["state"], s["via"], s["last_heard_s_ago"], s["last_heard"]) == ("b", "alive", "mdns", 0.5, 100)
    assert table.leave("b") is not None and table.summaries(0.5, 100.5) == [] and len(table) == 0


def test_a_paced_peer_may_be_silent_as_much_longer_as_its_beacons_are_apart():
    table = PeerTable(evasive_s=1.5, expired_s=5.0)
    paced, _ = table.heard("b", "tcp://b:1", "broadcast", now=0.0)
    paced.stretch = 4.0  # its beacons come every 2 s, not every 0.5 s heartbeat
    table.heard("c", "tcp://c:1", "broadcast", now=0.0)
    evasive, _ = table.sweep(now=2.0)
    assert [p.node_id for p in evasive] == ["c"]
    evasive, expired = table.sweep(now=6.0)
    assert [p.node_id for p in evasive] == ["b"] and [p.node_id for p in expired] == ["c"]
    table.leave("c")
    assert table.sweep(now=19.9) == ([], []) and [p.node_id for p in table.sweep(now=20.0)[1]] == ["b"]
