"""Custody, ACKs, retransmission, duplicates and incarnations, on a fake network with virtual time."""

from __future__ import annotations

import pytest

from pumpkin.custody import RTO_INITIAL_S, RTO_MIN_S, Custody, InFlight, Received, RttEstimator
from pumpkin.packet import Packet
from tests.unit.fakenet import Net, Node, T, spec


def released() -> tuple[Custody, list[str]]:
    log: list[str] = []
    return Custody(lambda: log.append("released")), log


def chain(tmp_path, replicas: str = "B") -> tuple[Net, Node, dict[str, Node], Node]:
    """A injects RAW; ``work`` (RAW -> DONE) runs on each of ``replicas``; ``sink`` (DONE ->) runs on D."""
    net = Net(tmp_path)
    a = net.add("A")
    workers = {r: net.add(r) for r in replicas}
    for w in workers.values():
        w.add_seed(spec("work", ("RAW",), ("DONE",)))
    d = net.add("D")
    d.add_seed(spec("sink", ("DONE",)))
    net.meet(a, *workers.values(), d)
    return net, a, workers, d


def inflight(node: Node) -> int:
    return sum(node.mesh.inflight_counts().values())


def test_an_ack_means_safe_downstream_not_in_memory_here(tmp_path):
    net, a, w, d = chain(tmp_path)
    custody, log = released()
    a.inject("RAW", 1, custody)
    net.scheduler.run_for(0.01)
    assert len(w["B"].runners["work"].got) == 1 and inflight(a) == 1
    w["B"].finish("work")
    net.scheduler.run_for(0.01)
    # B's seed is done, but what it made is only in flight to D: B still answers for A's packet.
    assert inflight(w["B"]) == 1 and inflight(a) == 1 and log == []
    d.finish("sink", lambda data: [])
    net.scheduler.run_for(0.01)
    assert (inflight(w["B"]), inflight(a), log) == (0, 0, ["released"])


def test_a_lost_ack_costs_one_question_and_no_rerun(tmp_path):
    net, a, w, d = chain(tmp_path)
    dropped: list[str] = []

    def drop(src: str, dst: str, frames: list[bytes]) -> bool:
        if (src, dst, bytes(frames[0])) == ("D", "B", b"PMKA") and not dropped:
            dropped.append("ack")
            return True
        return False

    net.drop = drop
    a.inject("RAW", 1)
    net.scheduler.run_for(0.01)
    w["B"].finish("work")
    net.scheduler.run_for(0.01)
    d.finish("sink", lambda data: [])
    net.scheduler.run_for(0.5)
    assert dropped == ["ack"] and inflight(w["B"]) == 1  # the ACK was lost: B still holds the child
    net.scheduler.run_for(RTO_INITIAL_S + 0.1)
    assert inflight(w["B"]) == 0 and inflight(a) == 0
    assert w["B"].mesh.counters["queries"] == 1 and d.mesh.counters["queries_answered"] == 1
    assert w["B"].mesh.counters["resent"] == 0  # D answered "done": nothing to send again
    assert d.runners["sink"].processed == 1


def test_a_packet_still_being_worked_on_is_answered_held_and_asked_about_less_often(tmp_path):
    net, a, w, d = chain(tmp_path)
    a.inject("RAW", 1)
    net.scheduler.run_for(RTO_INITIAL_S + 0.1)  # B holds it, unfinished, past A's timeout
    assert a.mesh.counters["queries"] == 1 and w["B"].mesh.counters["queries_answered"] == 1
    flight = next(iter(a.mesh.peers.entries["B"].inflight.flights.values()))
    assert flight.unanswered == 0  # B said HELD: alive and working, no reason to look elsewhere
    net.scheduler.run_for(RTO_INITIAL_S)
    assert a.mesh.counters["queries"] == 1  # backed off: the next question comes later
    assert a.mesh.counters["resent"] == 0
    assert len(w["B"].runners["work"].got) == 1
    w["B"].finish("work")
    d.finish("sink", lambda data: [])
    net.scheduler.run_for(0.01)
    d.finish("sink", lambda data: [])
    net.scheduler.run_for(0.05)
    assert inflight(a) == 0


def test_a_packet_nobody_answers_for_goes_to_another_replica(tmp_path):
    net, a, w, d = chain(tmp_path, replicas="BC")
    net.drop = lambda src, dst, frames: dst == "B"  # B hears nothing more (its link is broken one way)
    packet = a.inject("RAW", 1)
    net.scheduler.run_for(0.01)
    first = "B" if "B" in a.mesh.inflight_counts() else "C"
    if first == "C":  # round robin picked C: nothing to show; send the next one, which goes to B
        w["C"].finish("work")
        packet = a.inject("RAW", 2)
        net.scheduler.run_for(0.01)
    assert a.mesh.inflight_counts().get("B") == 1
    net.scheduler.run_for(RTO_INITIAL_S * 3)  # sent, asked about once: no answer, but that may be a slow link
    assert a.mesh.counters["rerouted"] == 0
    net.scheduler.run_for(RTO_INITIAL_S * 30)  # asked about again and again, never an answer
    assert a.mesh.counters["rerouted"] == 1
    assert [p.id for p in w["C"].runners["work"].got] == [packet.id]


def test_a_restarted_peer_is_a_new_incarnation_its_predecessors_packets_move_at_once(tmp_path):
    net, a, w, d = chain(tmp_path, replicas="BC")
    for n in range(4):
        a.inject("RAW", n)
    net.scheduler.run_for(0.01)
    held_by_b = a.mesh.inflight_counts()["B"]
    assert held_by_b == 2
    net.kill("B")
    b2 = net.add("B", inc=2)  # same id, new process, new endpoint
    b2.add_seed(spec("work", ("RAW",), ("DONE",)))
    net.introduce(a, b2)  # its first beacon
    # At once, not after evasive_s: B's two packets went to C, the only other replica.
    assert a.mesh.counters["restarts"] == 1 and a.mesh.inflight_counts() == {"C": 4}
    net.scheduler.run_for(0.01)
    assert len(w["C"].runners["work"].got) == 4
    log = [entry for entry in net.links["A"].log if entry[1] == "B"]
    reconnect = log.index(("disconnect", "B", ""))
    assert log[reconnect + 1] == ("connect", "B", b2.origin().tcp)
    assert log[reconnect + 2][0] == "PMKH"  # a HELLO to the new endpoint before anything else
    net.scheduler.run_for(0.05)
    assert a.peers.peers["B"].endpoint == b2.origin().tcp


def test_a_restarted_peer_that_is_the_only_replica_gets_its_predecessors_packets(tmp_path):
    net, a, w, d = chain(tmp_path)
    for n in range(3):
        a.inject("RAW", n)
    net.scheduler.run_for(0.01)
    net.kill("B")
    b2 = net.add("B", inc=2)
    b2.add_seed(spec("work", ("RAW",), ("DONE",)))
    net.introduce(b2, a)  # this time A hears of it first by its HELLO
    net.scheduler.run_for(0.05)
    assert len(b2.runners["work"].got) == 3 and a.mesh.inflight_counts() == {"B": 3}


def test_news_of_an_older_incarnation_is_ignored(tmp_path):
    net, a, w, d = chain(tmp_path)
    old = w["B"].origin()
    net.kill("B")
    b2 = net.add("B", inc=2)
    b2.add_seed(spec("work", ("RAW",), ("DONE",)))
    net.meet(a, b2)
    a.mesh.on_origin(old, "mdns", net.clock.now)  # a cached record of the old process
    net.scheduler.run_for(0.05)
    assert a.mesh.counters["stale"] == 1 and a.mesh.counters["restarts"] == 1
    assert a.peers.peers["B"].endpoint == b2.origin().tcp
    bye = type(old)(old.id, old.tcp, old.ipc, old.host, old.digest, True, old.inc)
    a.mesh.on_origin(bye, "broadcast", net.clock.now)  # a late goodbye of the old one
    assert "B" in a.peers.peers


def test_unacknowledged_packets_are_handed_over_at_a_clean_stop(tmp_path):
    net, a, w, d = chain(tmp_path)
    custody, log = released()
    a.inject("RAW", 1, custody)
    net.scheduler.run_for(0.01)
    taken = a.mesh.take_inflight()
    assert [p.data for p in taken] == [1] and inflight(a) == 0 and log == []
    taken[0].custody.add(-1)  # the daemon saved it to pending/: safe
    assert log == ["released"]


def test_an_extractors_custody_waits_for_the_tx_file(tmp_path):
    net, a, w, d = chain(tmp_path)
    writes: list[Packet] = []
    d.outputs.on_extracted = lambda packet, seed: (packet.custody.add(1), writes.append(packet))
    a.inject("RAW", 1)
    net.scheduler.run_for(0.01)
    w["B"].finish("work")
    net.scheduler.run_for(0.01)
    d.finish("sink", lambda data: [])
    net.scheduler.run_for(0.01)
    assert inflight(w["B"]) == 1  # the result file is not durable yet: no ACK
    writes[0].custody.add(-1)
    net.scheduler.run_for(0.01)
    assert inflight(w["B"]) == 0 and inflight(a) == 0


def test_rto_follows_the_measured_ack_times_and_ignores_packets_asked_about():
    est = RttEstimator()
    assert est.rto == RTO_INITIAL_S
    for _ in range(20):
        est.sample(0.010)
    assert est.rto == RTO_MIN_S  # 10 ms ACK times: the floor
    for _ in range(50):
        est.sample(0.5)
    assert 0.5 <= est.rto < 0.8
    table = InFlight()
    p = Packet("s:c:0:1", T("RAW"), 1)
    table.add(p, "work", now=0.0)
    [flight] = table.due(now=1.0)
    table.queried(flight, now=1.0)
    assert flight.due == pytest.approx(1.0 + 2 * RTO_INITIAL_S)  # backed off
    table.ack((p.id, "work"), now=1.5)
    assert table.rtt["work"].srtt == 0.0  # Karn: an ACK of a packet asked about measures nothing...
    assert table.rto("work") == 2 * RTO_INITIAL_S  # ... and the timeout stays backed off until one does
    q = Packet("s:c:0:2", T("RAW"), 2)
    table.add(q, "work", now=2.0)
    table.ack((q.id, "work"), now=2.5)
    assert table.rto("work") == pytest.approx(max(RTO_MIN_S, 0.5 + 4 * 0.25))


def test_custody_is_released_once():
    custody, log = released()
    custody.add(1)
    custody.settle()
    assert log == []
    custody.add(-1)
    custody.add(1)
    custody.add(-1)
    assert log == ["released"]


def test_received_tells_held_from_done():
    seen = Received(window=2)
    custody, _ = released()
    seen.take(("p1", "s"), custody)
    assert seen.seen(("p1", "s")) and seen.is_held(("p1", "s"))
    seen.done(("p1", "s"))
    assert seen.seen(("p1", "s")) and not seen.is_held(("p1", "s"))
    seen.note(("p2", "s"))
    seen.note(("p3", "s"))
    assert not seen.seen(("p1", "s"))  # out of the window


def test_a_seed_on_a_cycle_has_its_emissions_journaled_so_custody_does_not_chain_around_it(tmp_path):
    net = Net(tmp_path)
    a, b = net.add("A"), net.add("B")
    a.add_seed(spec("there", ("PING",), ("PONG",)))
    b.add_seed(spec("back", ("PONG",), ("PING",)))
    journaled: list[Packet] = []

    def make_durable(packets: list[Packet], then) -> None:  # the daemon journals them, then routes them
        journaled.extend(packets)
        if then is not None:
            then()

    b.outputs.journal = make_durable
    net.meet(a, b)
    custody, log = released()
    a.inject("PING", 1, custody)
    a.finish("there")
    net.scheduler.run_for(0.01)
    b.finish("back")  # its output goes round the cycle: to the journal instead of into A's custody chain
    net.scheduler.run_for(0.01)
    assert [p.data for p in journaled] == [1] and journaled[0].custody is None
    assert inflight(a) == 0 and log == ["released"]


def test_a_packet_the_peer_never_got_is_sent_again(tmp_path):
    net, a, w, d = chain(tmp_path)
    lost: list[str] = []

    def drop(src: str, dst: str, frames: list[bytes]) -> bool:
        if bytes(frames[0]) == b"PMK1" and dst == "B" and not lost:
            lost.append("packet")  # the link broke with it in a socket buffer
            return True
        return False

    net.drop = drop
    a.inject("RAW", 1)
    net.scheduler.run_for(RTO_INITIAL_S + 0.1)
    assert lost == ["packet"] and a.mesh.counters["resent"] == 1
    assert [p.data for p in w["B"].runners["work"].got] == [1]
