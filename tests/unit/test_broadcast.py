"""The original Pumpkin's BROADCAST_BIT: a legacy packet whose header asks for it reaches every replica once."""

from __future__ import annotations

from pumpkin.packet import Packet
from pumpkin.router import LEGACY_BROADCAST_BIT
from tests.unit.fakenet import Net, T, spec

TRACER_AUX = 56  # the original's examples/system/tracer.pkt: FORCE, BROADCAST and TRACER bits


def network(tmp_path):
    """A injects TRACE; ``tracer`` (TRACE -> TRACED) runs on B, C and E; ``collect`` (TRACED ->) on D."""
    net = Net(tmp_path)
    a = net.add("A")
    replicas = [net.add(n) for n in "BCE"]
    for r in replicas:
        r.add_seed(spec("tracer", ("TRACE",), ("TRACED",)))
    d = net.add("D")
    d.add_seed(spec("collect", ("TRACED",)))
    net.meet(a, *replicas, d)
    return net, a, replicas, d


def inject(a, aux: int) -> Packet:
    packet = Packet(a.router.ids.root(), T("TRACE"), "who is there?", [], 64, meta={"legacy_header": {"aux": aux}})
    a.router.admit(packet)
    return packet


def test_a_broadcast_packet_runs_once_on_every_replica_and_each_result_arrives(tmp_path):
    net, a, replicas, d = network(tmp_path)
    inject(a, TRACER_AUX)
    net.scheduler.run_for(0.05)
    got = {r.id: r.runners["tracer"].got for r in replicas}
    assert {n: len(p) for n, p in got.items()} == {"B": 1, "C": 1, "E": 1}
    copies = [p for ps in got.values() for p in ps]
    assert len({p.id for p in copies}) == 3  # their results must not be taken for duplicates of each other
    assert all(p.meta["legacy_header"]["aux"] == TRACER_AUX & ~LEGACY_BROADCAST_BIT for p in copies)  # once only
    for r in replicas:
        r.finish("tracer")
    net.scheduler.run_for(0.05)
    assert len(d.runners["collect"].got) == 3
    d.finish("collect", lambda data: [])
    net.scheduler.run_for(0.05)
    assert sum(sum(n.mesh.inflight_counts().values()) for n in [a, *replicas]) == 0  # every copy acknowledged


def test_without_the_bit_one_replica_runs_it(tmp_path):
    net, a, replicas, d = network(tmp_path)
    inject(a, TRACER_AUX & ~LEGACY_BROADCAST_BIT)
    net.scheduler.run_for(0.05)
    assert sum(len(r.runners["tracer"].got) for r in replicas) == 1
