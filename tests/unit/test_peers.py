from pumpkin.peers import Liveness, PeerTable


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_alive_evasive_expired_and_revival():
    clock = Clock()
    table = PeerTable(evasive_s=1.5, expired_s=5.0, clock=clock)
    peer, new = table.heard("b", "tcp://b:1", "broadcast")
    assert new and peer.state is Liveness.ALIVE
    clock.now = 1.0
    assert table.sweep() == ([], [])
    clock.now = 2.0
    evasive, expired = table.sweep()
    assert [p.node_id for p in evasive] == ["b"] and not expired
    assert table.sweep() == ([], [])  # reported once
    _, revived = table.heard("b", "", "ping")
    assert revived and table.peers["b"].state is Liveness.ALIVE and table.peers["b"].endpoint == "tcp://b:1"
    clock.now = 7.5
    evasive, expired = table.sweep()
    assert [p.node_id for p in expired] == ["b"] and "b" not in table.peers


def test_goodbye_removes_at_once_and_summaries():
    clock = Clock()
    table = PeerTable(1.0, 2.0, clock=clock)
    table.heard("b", "tcp://b:1", "mdns")
    clock.now = 0.5
    (s,) = table.summaries()
    assert (s["id"], s["state"], s["via"], s["last_heard_s_ago"]) == ("b", "alive", "mdns", 0.5)
    assert table.leave("b") is not None and table.summaries() == []
