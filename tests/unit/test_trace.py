"""The packet-event ring and the TRACE messages, pure: lineages, forks, bounds, and who may ask."""

from __future__ import annotations

import orjson

from pumpkin.trace import TRACE, TRACE_ANSWER, PacketEvents, Tracer, lineage, valid_events


def test_a_lineage_is_followed_through_its_forks_and_the_ring_is_bounded():
    ev = PacketEvents(size=5, clock=lambda: 1.0)
    ev.note("in", "s:aaaa:0:1", seed="pmk-inject", state="A")
    ev.note("made", "s:bbbb:1:f", "s:aaaa:0:1", seed="fork")  # a fork: a new container, its parent in aaaa
    ev.note("ran", "s:bbbb:1:f", seed="next", seconds=0.5)
    ev.note("ran", "s:cccc:0:1", seed="other")
    found, lineages = ev.lineage_events([lineage("s:aaaa:0:1")])
    assert [e["event"] for e in found] == ["in", "made", "ran"] and lineages == {"s:aaaa", "s:bbbb"}
    assert found[2] == {"at": 1.0, "event": "ran", "packet": "s:bbbb:1:f", "seed": "next", "s": 0.5}
    for n in range(5):
        ev.note("ran", f"s:dddd:0:{n}")
    assert ev.lineage_events(["s:aaaa"])[0] == []  # the oldest are gone: a ring of 5


def test_answers_from_peers_are_checked_field_by_field():
    raw = [
        {"at": 2.0, "event": "ran", "packet": "s:a:0:1", "seed": "x" * 500, "s": 0.1, "data": "not kept"},
        {"at": "soon", "event": "ran", "packet": "s:a:0:1"},
        {"at": 1.0, "event": "exploded", "packet": "s:a:0:1"},
        {"at": 1.0, "event": "made"},
        "junk",
    ]
    assert valid_events(raw, "b") == [
        {"at": 2.0, "event": "ran", "node": "b", "packet": "s:a:0:1", "seed": "x" * 200, "s": 0.1}
    ]
    assert valid_events({"not": "a list"}, "b") == []


def tracer(node: str, sent: list[tuple[str, list[bytes]]], events: PacketEvents | None = None) -> Tracer:
    return Tracer(node, events or PacketEvents(), lambda n, f: sent.append((n, f)) or True, lambda: ["b", "c"])


def test_a_question_is_answered_with_what_this_node_knows_and_answers_fill_the_query():
    sent_a: list[tuple[str, list[bytes]]] = []
    sent_b: list[tuple[str, list[bytes]]] = []
    a = tracer("a", sent_a)
    events_b = PacketEvents(clock=lambda: 5.0)
    events_b.note("done", "s:aaaa:1:9", seed="sink")
    b = tracer("b", sent_b, events_b)
    q = a.ask(["s:aaaa"])
    assert [n for n, _ in sent_a] == ["b", "c"] and a.unanswered(q) == ["b", "c"]
    b.handle(sent_a[0][1], None, keyed=False)
    ((to, answer),) = sent_b
    assert to == "a" and answer[0] == TRACE_ANSWER
    a.handle(answer, None, keyed=False)
    assert a.unanswered(q) == ["c"]
    assert a.finish(q) == {"b": [{"at": 5.0, "event": "done", "node": "b", "packet": "s:aaaa:1:9", "seed": "sink"}],
                           "c": None}  # fmt: skip


def test_in_a_keyed_network_only_members_may_ask_each_for_itself():
    sent: list[tuple[str, list[bytes]]] = []
    b = tracer("b", sent)
    ask = [TRACE, orjson.dumps({"id": "a", "q": 1, "lineages": ["s:aaaa"]})]
    b.handle(ask, None, keyed=True)  # a key no member's HELLO bound
    b.handle(ask, "c", keyed=True)  # member c speaking as a
    assert sent == [] and b.counters["refused"] == 2
    b.handle(ask, "a", keyed=True)
    assert [n for n, _ in sent] == ["a"]
    b.handle([TRACE, b"{not json"], "a", keyed=True)
    assert b.counters["bad"] == 1
