import networkx as nx

from pumpkin import tags
from pumpkin.automaton import Automaton, SeedInfo

T = tags.parse
INJECT = SeedInfo("inject", (), (T("String:UNGREETED"),))
GREET = SeedInfo("greet", (T("String:UNGREETED"),), (T("String:GREETING"),))
EXTRACT = SeedInfo("extract", (T("String:GREETING"),), ())


def hello() -> Automaton:
    a = Automaton()
    for info in (INJECT, GREET, EXTRACT):
        a.add("A", info)
    return a


def test_states_are_nodes_and_seeds_are_edges_with_pseudo_states():
    a = hello()
    assert set(map(str, a.states())) == {
        "default:Seed:INJECTION",
        "default:String:UNGREETED",
        "default:String:GREETING",
        "default:Seed:EXTRACTION",
    }
    assert nx.has_path(a.graph, tags.injection(), tags.extraction())
    assert a.downstream(T("String:UNGREETED")) == {T("String:GREETING"), tags.extraction()}


def test_consumers_and_replicas():
    a = hello()
    assert a.consumers(T("String:UNGREETED")) == {"greet": ["A"]}
    assert a.consumers(T("UNGREETED")) == {"greet": ["A"]}  # wildcard type matches
    assert a.consumers(T("Bytes:UNGREETED")) == {}
    assert a.add("B", GREET) is True
    assert a.add("B", GREET) is False
    assert a.consumers(T("String:UNGREETED")) == {"greet": ["A", "B"]}


def test_removal_is_incremental_and_bumps_the_version():
    a = hello()
    a.add("B", GREET)
    v = a.version
    assert a.remove("A", "greet")
    assert a.version > v
    assert a.consumers(T("String:UNGREETED")) == {"greet": ["B"]}
    assert a.remove_node("B") == ["greet"]
    assert a.consumers(T("String:UNGREETED")) == {}
    assert T("String:UNGREETED") in a.graph  # inject still emits it
    assert not a.graph.has_edge(T("String:UNGREETED"), T("String:GREETING"))


def test_sync_node_replaces_a_nodes_seeds():
    a = hello()
    a.sync_node("B", [GREET])
    assert a.sync_node("B", [EXTRACT]) is True
    assert a.nodes_of("greet") == ["A"] and a.nodes_of("extract") == ["A", "B"]


def test_node_link_form_is_plain_json():
    data = hello().node_link()
    assert {n["id"] for n in data["nodes"]} >= {"default:String:GREETING"}
    link = next(e for e in data["links"] if e["seed"] == "greet")
    assert link["source"] == "default:String:UNGREETED" and link["nodes"] == ["A"]


def test_an_edges_nodes_follow_the_seeds_joins_and_leaves_in_both_forms():
    a = hello()
    a.add("B", GREET)
    a.add("C", GREET)
    a.remove("A", "greet")
    edge = (T("String:UNGREETED"), T("String:GREETING"), "greet")
    link = next(e for e in a.node_link()["links"] if e["seed"] == "greet")
    assert link["nodes"] == ["B", "C"] and a.graph.edges[edge]["nodes"] == ["B", "C"]
    snapshot = a.graph
    a.add("D", GREET)
    assert snapshot.edges[edge]["nodes"] == ["B", "C"]  # a copy for analysis does not change under its reader
    assert next(e for e in a.node_link()["links"] if e["seed"] == "greet")["nodes"] == ["B", "C", "D"]
