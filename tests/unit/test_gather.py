"""Joins and merges: the pure bookkeeping (fake clock), the declarations, and the routing across replicas on the
fake network of tests/unit/fakenet.py (real meshes and routers, virtual time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pumpkin import gather, manifest, tags
from pumpkin.automaton import Automaton, SeedInfo
from pumpkin.custody import Custody
from pumpkin.errors import ManifestError
from pumpkin.gather import Gatherer, fragment_of, gathered_of, lineage_of, owner
from pumpkin.packet import Packet
from pumpkin.runner import Emission, Outcome
from pumpkin.seed import SeedSpec
from tests.unit.fakenet import FakeRunner, Net, Node

T = tags.parse


def pkt(pid: str, state: str = "A", data: object = None, meta: dict | None = None) -> Packet:
    return Packet(pid, T(state), data, [], 64, 1.0, meta or {})


# -- declarations -------------------------------------------------------------------------------------------


def test_consumes_with_an_and_declares_each_state_and_the_join():
    assert tags.parse_alternatives("String:A&B|C", "g") == [T("g:String:A"), T("g:String:B"), T("g:String:C")]
    assert tags.parse_joins("String:A&B|C", "g") == [(T("g:String:A"), T("g:String:B"))]
    assert tags.parse_joins("A|B", "g") == []
    assert manifest.declared_joins(["A&B&C"], "g") == ((T("g:*:A"), T("g:*:B"), T("g:*:C")),)


def test_legacy_manifest_accepts_and_states_in_parameters_and_returns():
    source = """
###START-CONF
##{"object_name": "tracula",
## "parameters": [{"name": "in", "type": "Composite", "state": "MRI_RAW&DTI_RAW"}],
## "return": [{"name": "out", "type": "Composite", "state": "DTI_PREPROC1&DTI_PREPROC2"}]}
##END-CONF
"""
    m = manifest.parse_legacy(source, "g")
    assert m is not None
    assert m.inputs == (T("g:Composite:MRI_RAW"), T("g:Composite:DTI_RAW"))
    assert m.joins == ((T("g:Composite:MRI_RAW"), T("g:Composite:DTI_RAW")),)
    assert m.outputs == (T("g:Composite:DTI_PREPROC1"), T("g:Composite:DTI_PREPROC2"))


def test_a_bad_part_of_a_join_is_a_manifest_error():
    with pytest.raises(ManifestError, match="consumes"):
        manifest.declared_joins("A&b@d", "g")


def test_the_automaton_marks_join_edges_and_peers_learn_joins():
    a = Automaton("g")
    join = (T("g:*:A"), T("g:*:B"))
    info = SeedInfo("both", join, (T("g:*:C"),), (join,))
    a.add("n1", info)
    links = a.node_link()["links"]
    assert {lk["source"]: lk.get("join") for lk in links} == {
        "g:*:A": ["g:*:A", "g:*:B"],
        "g:*:B": ["g:*:A", "g:*:B"],
    }
    summary = SeedSpec("both", join, (T("g:*:C"),), object, None, False, joins=(join,)).summary()
    assert SeedInfo.from_summary(summary) == info
    with pytest.raises(TypeError):
        SeedInfo.from_summary({**summary, "joins": "AB"})


# -- bookkeeping --------------------------------------------------------------------------------------------


def test_a_join_completes_when_every_state_of_a_lineage_is_there():
    g = Gatherer(wait_s=10.0)
    assert g.add("join", "s", "L1", ("A", "B"), "A", pkt("x:L1:0:1"), now=0.0).status == "held"
    assert g.add("join", "s", "L2", ("A", "B"), "B", pkt("x:L2:0:2", "B"), now=0.0).status == "held"
    done = g.add("join", "s", "L1", ("A", "B"), "B", pkt("x:L1:0:3", "B"), now=1.0)
    assert done.status == "complete"
    assert [p.id for p in done.parts] == ["x:L1:0:1", "x:L1:0:3"]
    assert len(g) == 1 and g.counts()["groups"] == 1


def test_a_second_packet_in_one_state_waits_for_its_own_partner_and_a_resend_is_a_duplicate():
    g = Gatherer(wait_s=10.0)
    g.add("join", "s", "L", ("A", "B"), "A", pkt("x:L:0:1"), now=0.0)
    assert g.add("join", "s", "L", ("A", "B"), "A", pkt("x:L:0:1"), now=0.0).status == "duplicate"
    g.add("join", "s", "L", ("A", "B"), "A", pkt("x:L:0:2"), now=0.0)
    assert g.add("join", "s", "L", ("A", "B"), "B", pkt("x:L:0:3", "B"), now=5.0).status == "complete"
    assert len(g) == 1  # x:L:0:2 waits on, its wait started again at 5.0
    assert g.expire(14.9) == []
    [expired] = g.expire(15.0)
    assert expired.missing() == ["B"] and [p.id for p in expired.packets()] == ["x:L:0:2"]
    assert len(g) == 0


def test_a_merge_needs_every_fragment_index_and_refuses_others():
    g = Gatherer(wait_s=10.0)
    for i in (2, 0):
        assert g.add("merge", "s", "P", 3, str(i), pkt(f"x:L:1:{i}"), now=0.0).status == "held"
    assert g.add("merge", "s", "P", 3, "7", pkt("x:L:1:7"), now=0.0).status == "invalid"
    done = g.add("merge", "s", "P", 3, "1", pkt("x:L:1:1"), now=0.0)
    assert [p.id for p in done.parts] == ["x:L:1:0", "x:L:1:1", "x:L:1:2"]


def test_a_full_gatherer_refuses_and_drain_empties_it():
    g = Gatherer(wait_s=10.0, max_parts=2)
    g.add("join", "s", "L1", ("A", "B"), "A", pkt("x:L1:0:1"), now=0.0)
    g.add("join", "s", "L2", ("A", "B"), "A", pkt("x:L2:0:1"), now=0.0)
    assert g.add("join", "s", "L3", ("A", "B"), "A", pkt("x:L3:0:1"), now=0.0).status == "full"
    assert sorted(p.id for p in g.drain()) == ["x:L1:0:1", "x:L2:0:1"]
    assert len(g) == 0 and not g.groups


def test_owner_is_the_same_for_any_order_and_only_a_leaver_moves_keys():
    nodes = ["a", "b", "c", "d"]
    keys = [f"lineage-{i}" for i in range(200)]
    first = {k: owner(k, nodes) for k in keys}
    assert all(owner(k, list(reversed(nodes))) == first[k] for k in keys)
    assert len(set(first.values())) == 4  # spread over every replica
    without_c = {k: owner(k, ["a", "b", "d"]) for k in keys}
    assert all(without_c[k] == first[k] for k in keys if first[k] != "c")


def test_lineage_is_named_then_legacy_ship_then_container():
    assert lineage_of(pkt("s:cont:0:1")) == "cont"
    assert lineage_of(pkt("s:cont:0:1", meta={"legacy_header": {"ship": "patient_X"}})) == "ship:patient_X"
    assert lineage_of(pkt("s:cont:0:1", meta={"lineage": "p7", "legacy_header": {"ship": "X"}})) == "p7"


def test_malformed_marks_from_the_network_make_ordinary_packets():
    for bad in ({"by": "s", "of": "p", "i": 3, "n": 3}, {"by": 1}, "x", {"by": "s", "of": "p", "i": True, "n": 2}):
        assert fragment_of(pkt("s:c:0:1", meta={"fragment": bad})) is None
    assert gathered_of(pkt("s:c:0:1", meta={"gathered": {"kind": "other", "seed": "s"}})) is None


def test_the_packet_a_group_makes_has_one_id_wherever_it_is_made():
    a, b = pkt("s:c:2:1", "A", 1), pkt("s:c:3:2", "B", 2)
    j1 = gather.joined("both", ("A", "B"), [a, b])
    j2 = gather.joined("both", ("A", "B"), [a, b])
    assert j1.id == j2.id and j1.id.startswith("s:c:3:")
    assert j1.data == {"A": 1, "B": 2} and gathered_of(j1) == {
        "kind": "join",
        "seed": "both",
        "states": ["A", "B"],
        "tags": ["default:*:A", "default:*:B"],  # (and "headers": each part's legacy header, when one has one)
    }


# -- routing across replicas (fake network, virtual time) ---------------------------------------------------


JOIN = (T("A"), T("B"))


def add_seed(node: Node, s: SeedSpec) -> FakeRunner:
    runner = FakeRunner(s)
    node.runners[s.name] = runner
    node.router.local[s.name] = runner  # type: ignore[assignment]
    node.router.automaton.add(node.id, SeedInfo(s.name, s.inputs, s.outputs, s.joins))
    node.router.replan()
    return runner


def both_spec() -> SeedSpec:
    return SeedSpec("both", JOIN, (T("C"),), object, Path("both"), False, joins=(JOIN,))


def run(node: Node, seed: str, emissions: list[Emission]) -> None:
    runner = node.runners[seed]
    packet = runner.got.pop(0)
    node.router.on_outcome(Outcome(runner, packet, emissions))  # type: ignore[arg-type]


def three_replicas(tmp_path: Path, s: SeedSpec) -> tuple[Net, list[Node]]:
    net = Net(tmp_path)
    nodes = [net.add(n) for n in ("n1", "n2", "n3")]
    for n in nodes:
        add_seed(n, s)
    net.meet(*nodes)
    return net, nodes


def test_parts_injected_on_different_nodes_join_on_one_replica_and_are_acked_after(tmp_path):
    net, nodes = three_replicas(tmp_path, both_spec())
    released: list[str] = []
    for i in range(20):
        for node, state in ((nodes[0], "A"), (nodes[1], "B")):
            custody = Custody(lambda s=state, i=i: released.append(f"{s}{i}"))
            packet = Packet(node.router.ids.root(), T(state), f"{state}{i}", [], 64, 1.0, {"lineage": f"L{i}"})
            packet.custody = custody
            node.router.admit(packet)
            custody.settle()
    net.scheduler.run_for(0.5)
    got = {n.id: [p.data for p in n.runners["both"].got] for n in nodes}
    assert sum(len(v) for v in got.values()) == 20  # one run per lineage
    assert all(len(v) > 0 for v in got.values())  # spread over the replicas
    assert sorted(d["A"] for v in got.values() for d in v) == sorted(f"A{i}" for i in range(20))
    assert all(d["B"] == "B" + d["A"][1:] for v in got.values() for d in v)
    assert released == []  # held until the join has run
    for n in nodes:
        while n.runners["both"].got:
            run(n, "both", [])
    net.scheduler.run_for(1.0)
    assert len(released) == 40


def test_a_missing_partner_fails_after_the_wait_with_its_reason(tmp_path):
    net, nodes = three_replicas(tmp_path, both_spec())
    released = []
    custody = Custody(lambda: released.append(1))
    packet = Packet(nodes[0].router.ids.root(), T("A"), "alone", [], 64, 1.0, {"lineage": "Lx"})
    packet.custody = custody
    nodes[0].router.admit(packet)
    custody.settle()
    net.scheduler.run_for(0.2)
    keeper = next(n for n in nodes if n.router.gather.held)
    keeper.router.expire()
    assert keeper.router.gather.held == 1
    net.clock.now += 600.0
    keeper.router.expire()
    net.scheduler.run_for(1.0)
    assert keeper.router.counters["join_timeouts"] == 1
    assert keeper.router.failed.counts["join-timeout"] == 1
    [reason] = [e["reason"] for e in keeper.router.failed.recent]
    assert "waited 600 s for B of lineage Lx" in reason and "routing.join_wait_s" in reason
    keeper.router.failed.sync()
    assert released == [1]  # kept in failed/: its sender lets go


def split_spec() -> SeedSpec:
    return SeedSpec("proc", (T("RAW"),), (T("DONE"),), object, Path("proc"), False)


def test_fragments_run_on_every_replica_and_merge_once_all_results_are_back(tmp_path):
    net, nodes = three_replicas(tmp_path, split_spec())
    add_seed(nodes[0], SeedSpec("sink", (T("DONE"),), (), object, Path("sink"), False))
    nodes[0].mesh.announce()
    net.scheduler.run_for(0.1)
    released = []
    custody = Custody(lambda: released.append(1))
    packet = Packet(nodes[0].router.ids.root(), T("RAW"), "abcdef", [], 64, 1.0, {})
    packet.custody = custody
    nodes[0].router.admit(packet)
    custody.settle()
    net.scheduler.run_for(0.1)
    splitter = next(n for n in nodes if n.runners["proc"].got)
    run(splitter, "proc", [Emission(None, ch, fragment=("", False)) for ch in "abcdef"])
    net.scheduler.run_for(0.2)
    fragments = {n.id: [p for p in n.runners["proc"].got] for n in nodes}
    assert sum(len(v) for v in fragments.values()) == 6 and all(fragments.values())
    assert all(fragment_of(p) is not None for v in fragments.values() for p in v)
    for n in nodes:
        for _ in fragments[n.id]:
            frag = n.runners["proc"].got[0]
            run(n, "proc", [Emission(None, frag.data.upper())])
            net.scheduler.run_for(0.05)
    net.scheduler.run_for(0.2)
    merges = [(n, p) for n in nodes for p in n.runners["proc"].got]
    assert len(merges) == 1
    merger, merged = merges[0]
    assert merged.data == list("ABCDEF") and gathered_of(merged)["kind"] == "merge"
    assert released == []
    run(merger, "proc", [Emission(None, "".join(merged.data))])
    net.scheduler.run_for(0.2)
    assert [p.data for p in nodes[0].runners["sink"].got] == ["ABCDEF"]
    assert nodes[0].runners["sink"].got[0].meta == {}  # a whole packet again
    run(nodes[0], "sink", [])
    net.scheduler.run_for(1.0)
    assert released == [1]  # every fragment's custody chain ends with the merge's output


def test_a_waiting_part_moves_to_its_new_owner_when_a_replica_comes(tmp_path):
    net = Net(tmp_path)
    n1 = net.add("n1")
    add_seed(n1, both_spec())
    lineage = next(f"L{i}" for i in range(100) if owner(f"L{i}", ["n1", "n2"]) == "n2")
    n1.router.admit(Packet(n1.router.ids.root(), T("A"), "a", [], 64, 1.0, {"lineage": lineage}))
    assert n1.router.gather.held == 1
    n2 = net.add("n2")
    add_seed(n2, both_spec())
    net.meet(n1, n2)
    net.scheduler.run_for(0.2)
    assert n1.router.gather.held == 0 and n2.router.gather.held == 1
    n2.router.admit(Packet(n2.router.ids.root(), T("B"), "b", [], 64, 1.0, {"lineage": lineage}))
    assert [p.data for p in n2.runners["both"].got] == [{"A": "a", "B": "b"}]


def test_a_missing_fragment_result_fails_the_others_after_the_wait(tmp_path):
    net = Net(tmp_path)
    n1 = net.add("n1")
    add_seed(n1, split_spec())
    n1.router.admit(Packet(n1.router.ids.root(), T("RAW"), "ab", [], 64, 1.0, {}))
    run(n1, "proc", [Emission(None, ch, fragment=("", False)) for ch in "ab"])
    run(n1, "proc", [Emission(None, "A")])  # the second fragment's run never ends
    assert n1.router.gather.held == 1
    net.clock.now += 600.0
    n1.router.expire()
    assert n1.router.failed.counts["merge-timeout"] == 1
    [reason] = [e["reason"] for e in n1.router.failed.recent]
    assert "for the results of 1 of the 2 fragments" in reason and "(fragments 2)" in reason
