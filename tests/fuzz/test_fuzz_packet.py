"""Packet frames, batches, file documents and legacy ``.pkt`` arrays (``packet``): PacketError or a packet that
can travel on, never a crash."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pumpkin import packet as codec
from pumpkin import tags
from pumpkin.errors import PacketError
from pumpkin.packet import MAGIC, MAX_HEADER_BYTES, Hop, IdMaker, Packet
from pumpkin.tags import StateTag
from tests.fuzz.strategies import (
    deep,
    dumps,
    json_floats,
    json_ints,
    json_values,
    loaded,
    mutated,
    nasty,
    only,
    utf8_text,
)

GROUP = "g"
HEADER_KEYS = ("id", "tag", "ttl", "created", "trail", "enc", "meta", "to", "from")
DOCUMENT_KEYS = ("id", "state", "data", "data_base64", "ttl", "created", "trail", "meta")
LEGACY_KEYS = ("stag", "data", "ttl", "code", "box", "ship", "container")

parts = st.text(st.sampled_from("abcXYZ019_.-"), min_size=1, max_size=8)
state_tags = st.builds(StateTag, parts, parts | st.just(tags.ANY_TYPE), parts)
id_parts = st.text(st.characters(codec="utf-8", exclude_characters=":"), max_size=8)
packet_ids = st.lists(id_parts, min_size=4, max_size=4).map(":".join)
hops = st.builds(Hop, utf8_text, utf8_text, utf8_text, json_floats)
packets = st.builds(
    Packet,
    id=packet_ids,
    tag=state_tags,
    data=json_values | st.binary(max_size=64),
    trail=st.lists(hops, max_size=2),
    ttl=json_ints,
    created=json_floats,
    meta=st.dictionaries(utf8_text, json_values, max_size=2),
)


SAMPLE = Packet("a:b:0:1", StateTag("g", "T", "S"), {"k": [1, 2]}, [Hop("s", "n", "g:T:S", 1.5)], 9, 1.0)


def ids() -> IdMaker:
    return IdMaker("fuzz")


def check_travels(p: Packet) -> None:
    """A packet a parser let through can be sent on, and written to the journal, spool or failed/ (all orjson)."""
    assert isinstance(p.id, str) and isinstance(p.tag, StateTag)
    assert tags.parse(str(p.tag)) == p.tag
    assert isinstance(p.ttl, int) and isinstance(p.created, float) and isinstance(p.meta, dict)
    assert all(isinstance(h, Hop) and all(isinstance(x, str) for x in h[:3]) for h in p.trail)
    frames = codec.encode(p, to="seed", sender="node")  # never raises, not even PacketError
    again, to, sender = codec.decode_addressed(frames)
    assert (again, to, sender) == (p, "seed", "node")
    orjson.dumps({"entry": "e", "packets": [codec.to_document(p)]})  # as deep as a journal record nests it


# -- wire frames -----------------------------------------------------------------------------------------------


@given(
    st.lists(st.binary(max_size=40), max_size=5)
    | st.tuples(st.just(MAGIC), st.binary(max_size=200), st.binary(max_size=40)).map(list)
)
def test_any_frames_are_a_packet_or_a_packet_error(frames: list[bytes]) -> None:
    decoded = only(PacketError, codec.decode_addressed, frames)
    if decoded is not None:
        check_travels(decoded[0])


def _header(p: Packet) -> dict[str, Any]:
    header: dict[str, Any] = orjson.loads(codec.encode(p, to="s", sender="n")[1])
    return header


@st.composite
def broken_frames(draw: st.DrawFn) -> list[bytes]:
    """A valid packet's frames with one part of its header, or its payload, broken."""
    p = draw(packets)
    frames = codec.encode(p)
    if draw(st.booleans()):
        frames[1] = dumps(draw(mutated(st.just(_header(p)), HEADER_KEYS)))
    else:
        frames[1] = frames[1].replace(b'"enc":"b"', b'"enc":"j"')
        frames[2] = dumps(draw(nasty | mutated(st.just(p.data))))
    return frames


HEADER = {"id": "a:b:0:1", "tag": "g:t:S", "ttl": 3, "created": 1.0, "trail": [], "enc": "j"}


@given(broken_frames())
@example([MAGIC, dumps({**HEADER, "id": deep(1000)}), b"1"])
@example([MAGIC, dumps({**HEADER, "tag": deep(1000)}), b"1"])
@example([MAGIC, dumps({**HEADER, "enc": deep(1000)}), b"1"])
@example([MAGIC, dumps({**HEADER, "trail": [[deep(1000), "n", "t", 1]]}), b"1"])
@example([MAGIC, dumps(HEADER), dumps(deep(300))])
@example([MAGIC, dumps({**HEADER, "meta": {"k": deep(300)}}), b"1"])
def test_frames_with_one_part_broken_are_a_packet_error_or_a_packet_that_travels(frames: list[bytes]) -> None:
    decoded = only(PacketError, codec.decode_addressed, frames)
    if decoded is not None:
        check_travels(decoded[0])


@given(packets, st.none() | utf8_text, st.none() | utf8_text)
def test_packets_round_trip_on_the_wire(p: Packet, to: str | None, sender: str | None) -> None:
    assert codec.decode_addressed(codec.encode(p, to, sender)) == (p, to, sender)


@settings(max_examples=50)
@given(packets, st.integers(-2, 2))
def test_a_header_is_accepted_exactly_up_to_its_size_cap(p: Packet, over: int) -> None:
    magic, header, payload = codec.encode(p)
    padded = header[:-1] + b" " * (MAX_HEADER_BYTES + over - len(header)) + b"}"
    decoded = only(PacketError, codec.decode_addressed, [magic, padded, payload])
    assert (decoded is not None) == (len(padded) <= MAX_HEADER_BYTES)


@given(
    st.lists(st.sampled_from([codec.encode(SAMPLE), codec.encode(SAMPLE, "s", "n")]), min_size=1, max_size=4).map(
        lambda groups: [f for g in groups for f in g]
    )
    | st.lists(st.sampled_from([MAGIC, b"", b"x", b"{}", b"PMK2"]), max_size=10)
)
def test_split_batch_only_ever_cuts_a_message_into_whole_packets(frames: list[bytes]) -> None:
    groups = codec.split_batch(frames)
    assert [f for g in groups for f in g] == frames
    if len(groups) > 1:
        assert all(len(g) == 3 and g[0] == MAGIC for g in groups)
    elif len(frames) > 3 and len(frames) % 3 == 0 and all(frames[i] == MAGIC for i in range(0, len(frames), 3)):
        raise AssertionError("a clean batch came back whole")


@given(
    st.lists(st.sampled_from([codec.encode(SAMPLE), codec.encode(SAMPLE, "s", "n")]), min_size=1, max_size=4).map(
        lambda groups: codec.pack_batch([f for g in groups for f in g])
    )
    | st.binary(max_size=64).map(lambda tail: codec.PACKED + tail)
)
def test_a_packed_batch_splits_into_whole_packets_or_stays_whole(frame: bytes) -> None:
    groups = codec.split_batch([frame])
    if groups == [[frame]]:
        assert only(PacketError, codec.decode_addressed, [frame]) is None
    else:
        assert codec.pack_batch([f for g in groups for f in g]) == frame
        assert all(len(g) == 3 and g[0] == MAGIC for g in groups)


# -- file documents --------------------------------------------------------------------------------------------


@given(json_values | mutated(packets.map(codec.to_document), DOCUMENT_KEYS))
@example({"state": deep(1000), "data": 1})
@example({"state": "S", "data": deep(300)})
@example({"state": "S", "data": 1, "meta": {"k": deep(300)}})
@example({"state": "S", "data": 1, "trail": [[deep(1000), "n", "t", 1]]})
def test_any_document_is_a_packet_error_or_a_packet_that_travels(doc: Any) -> None:
    ok, value = loaded(doc)
    p = only(PacketError, codec.from_document, value, GROUP, ids()) if ok else None
    if p is not None:
        check_travels(p)


@given(packets)
def test_packets_round_trip_through_their_file_form(p: Packet) -> None:
    doc = orjson.loads(orjson.dumps(codec.to_document(p)))
    assert codec.from_document(doc, GROUP, ids()) == p
    if isinstance(p.data, bytes):
        assert doc["data_base64"] == base64.b64encode(p.data).decode()


# -- legacy .pkt arrays ----------------------------------------------------------------------------------------

legacy_tags = st.builds(lambda t, s: f"{t}:{s}", parts, parts) | state_tags.map(str)
legacy_arrays = st.tuples(
    st.fixed_dictionaries(
        {"box": st.just("0"), "e": st.just("E"), "ship": parts, "container": parts},
        optional={"ttl": st.integers(1, codec.MAX_TTL_HOPS), "code": utf8_text},
    ),
    st.fixed_dictionaries({"stag": legacy_tags, "data": json_values, "exstate": st.just("0001"), "func": utf8_text}),
    st.booleans(),
).map(lambda t: [t[0], {}, t[1]] if t[2] else [t[0], t[1]])


@given(json_values | mutated(legacy_arrays, LEGACY_KEYS))
@example([{"ttl": "99999999999999999999"}, {}, {"stag": "String:S", "data": 1}])
@example([{"ttl": 1e300}, {}, {"stag": "String:S", "data": 1}])
@example([{"ttl": deep(1000)}, {}, {"stag": "String:S", "data": 1}])
@example([{}, {}, {"stag": deep(1000), "data": 1}])
def test_any_legacy_array_is_a_packet_error_or_a_packet_that_travels(obj: Any) -> None:
    ok, value = loaded(obj)
    p = only(PacketError, codec.from_legacy, value, GROUP, ids()) if ok else None
    if p is not None:
        assert p.ttl >= 1
        check_travels(p)


@given(legacy_arrays)
def test_a_legacy_array_keeps_its_state_data_and_header(obj: list[Any]) -> None:
    p = codec.from_legacy(obj, GROUP, ids())
    # A tag written type:STATE is in group public, as the original read it; the header's ttl (the original's
    # re-send timer) stays in the header, the packet's hops are the default.
    assert p.tag == tags.parse(obj[-1]["stag"], codec.LEGACY_GROUP)
    assert p.data == obj[-1]["data"]
    assert p.ttl == codec.DEFAULT_TTL_HOPS
    assert p.meta["legacy_header"] == {k: v for k, v in obj[0].items() if k != "code"}
