"""Beacons and peer messages (``messages``): whatever arrives, MessageError or a valid message, never a crash."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pumpkin import messages
from pumpkin.messages import (
    ACK,
    BEACON_MAGIC,
    BYE,
    HELLO,
    KINDS,
    MAX_BEACON_BYTES,
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_PEERS_PER_HELLO,
    MAX_SEEDS_PER_HELLO,
    PING,
    QUERY,
    MessageError,
    Origin,
)
from tests.fuzz.strategies import deep, dumps, json_floats, json_values, loaded, mutated, only, utf8_text

ORIGIN_KEYS = ("v", "id", "tcp", "ipc", "host", "dg", "inc", "bye", "direct")

endpoints = st.none() | st.builds(lambda s, rest: s + rest, st.sampled_from(["tcp://", "ipc://"]), utf8_text)
origins = st.builds(
    Origin,
    id=st.text(min_size=1, max_size=16),  # the cap itself has a test of its own
    tcp=st.none() | utf8_text.map(lambda r: "tcp://" + r),
    ipc=st.none() | utf8_text.map(lambda r: "ipc://" + r),
    host=utf8_text,
    digest=utf8_text,
    bye=st.booleans(),
    inc=st.integers(0, 2**64 - 1),
    direct=st.booleans(),
).filter(lambda o: o.tcp is not None or o.ipc is not None)


def beacon_body(o: Origin) -> dict[str, Any]:
    return {**o.fields(), "bye": o.bye, "direct": o.direct}


def check_origin(o: Origin) -> None:
    """What ``origin_from`` promises of every origin it lets through."""
    assert isinstance(o.id, str) and 0 < len(o.id) <= MAX_ID_CHARS
    assert o.tcp is None or (isinstance(o.tcp, str) and o.tcp.startswith("tcp://") and len(o.tcp) < 512)
    assert o.ipc is None or (isinstance(o.ipc, str) and o.ipc.startswith("ipc://") and len(o.ipc) < 512)
    assert o.tcp is not None or o.ipc is not None
    assert isinstance(o.host, str) and isinstance(o.digest, str)
    assert type(o.inc) is int and o.inc >= 0
    assert isinstance(o.bye, bool) and isinstance(o.direct, bool)


# -- beacons ---------------------------------------------------------------------------------------------------


@given(st.binary(max_size=MAX_BEACON_BYTES + 64) | st.binary(max_size=200).map(lambda b: BEACON_MAGIC + b))
@example(b"PMKB" + b"[" * 600 + b"]" * 400)
def test_any_datagram_is_a_beacon_or_a_message_error(data: bytes) -> None:
    origin = only(MessageError, messages.decode_beacon, data)
    if origin is not None:
        check_origin(origin)


@given(mutated(origins.map(beacon_body), ORIGIN_KEYS))
@example({"v": 1, "id": "n", "tcp": "tcp://h:1", "host": "h", "dg": "", "inc": deep(500)})
def test_a_beacon_with_one_field_broken_is_a_message_error_or_valid(body: Any) -> None:
    origin = only(MessageError, messages.decode_beacon, BEACON_MAGIC + dumps(body))
    if origin is not None:
        check_origin(origin)
        again = only(MessageError, messages.encode_beacon, origin)  # too long only when keys were added
        assert again is None or messages.decode_beacon(again) == origin


@given(origins)
def test_beacons_round_trip(origin: Origin) -> None:
    size = len(BEACON_MAGIC + orjson.dumps(beacon_body(origin)))
    data = only(MessageError, messages.encode_beacon, origin)
    if data is None:
        assert size > MAX_BEACON_BYTES
        return
    assert len(data) <= MAX_BEACON_BYTES
    assert messages.decode_beacon(data) == origin


@given(origins, st.integers(0, MAX_BEACON_BYTES + 2))
def test_a_beacon_is_accepted_exactly_up_to_its_size_cap(origin: Origin, pad: int) -> None:
    data = BEACON_MAGIC + orjson.dumps(beacon_body(origin))
    padded = data[:-1] + b" " * pad + b"}"
    decoded = only(MessageError, messages.decode_beacon, padded)
    assert (decoded is not None) == (len(padded) <= MAX_BEACON_BYTES)
    if decoded is not None:
        assert decoded == origin


# -- peer messages -------------------------------------------------------------------------------------------

pairs = st.lists(st.tuples(utf8_text, utf8_text).map(list), max_size=5)
BODIES: dict[bytes, st.SearchStrategy[dict[str, Any]]] = {
    HELLO: st.fixed_dictionaries(
        {
            "seeds": st.lists(
                st.fixed_dictionaries({"name": utf8_text}, optional={"workers": st.integers(1, 8)}),
                max_size=3,
            ),
            "peers": st.lists(st.tuples(utf8_text, endpoints, endpoints, utf8_text).map(list), max_size=3),
            "reply": st.booleans(),
            "found_by": st.sampled_from(["broadcast", "mdns", "supernode", "gossip"]),
        }
    ),
    PING: st.fixed_dictionaries(
        {"load": st.dictionaries(utf8_text, st.integers(0, 2**63) | json_floats, max_size=4), "echo": st.booleans()}
    ),
    BYE: st.just({}),
    ACK: st.fixed_dictionaries({"acks": pairs, "held": pairs, "unknown": pairs}),
    QUERY: st.fixed_dictionaries({"ask": pairs}),
}
KIND_KEYS = ("seeds", "peers", "reply", "found_by", "load", "echo", "acks", "held", "unknown", "ask", "name")


def check_message(msg: messages.Message) -> None:
    """What ``decode`` promises of every message it lets through, kind by kind."""
    assert msg.kind in KINDS
    check_origin(msg.origin)
    body = msg.body
    if msg.kind == HELLO:
        assert isinstance(body["seeds"], list) and len(body["seeds"]) <= MAX_SEEDS_PER_HELLO
        assert all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in body["seeds"])
        assert isinstance(body.get("peers", []), list) and len(body.get("peers", [])) <= MAX_PEERS_PER_HELLO
    elif msg.kind == PING:
        assert all(isinstance(v, (int, float)) for v in body.get("load", {}).values())
    elif msg.kind in (ACK, QUERY):
        for key in ("acks", "held", "unknown") if msg.kind == ACK else ("ask",):
            assert all(len(a) == 2 and all(isinstance(x, str) for x in a) for a in body.get(key, []))


@st.composite
def messages_of_a_kind(draw: st.DrawFn) -> tuple[bytes, Origin, dict[str, Any]]:
    kind = draw(st.sampled_from(KINDS))
    return kind, dataclasses.replace(draw(origins), bye=False, direct=False), draw(BODIES[kind])


@given(
    st.lists(st.binary(max_size=40), max_size=4) | st.tuples(st.sampled_from(KINDS), st.binary(max_size=200)).map(list)
)
def test_any_frames_are_a_message_or_a_message_error(frames: list[bytes]) -> None:
    msg = only(MessageError, messages.decode, frames)
    if msg is not None:
        check_message(msg)


def _broken(kind: bytes) -> st.SearchStrategy[tuple[bytes, Any]]:
    valid = origins.flatmap(lambda o: BODIES[kind].map(lambda b: {**o.fields(), **b}))
    return st.tuples(st.just(kind), mutated(valid, ORIGIN_KEYS + KIND_KEYS))


BASE = {"v": 1, "id": "n", "tcp": "tcp://h:1", "host": "h", "dg": "", "seeds": []}


@given(st.sampled_from(KINDS).flatmap(_broken))
@example((HELLO, {**BASE, "v": deep(1000)}))
@example((HELLO, {**BASE, "tcp": deep(1000)}))
@example((HELLO, {**BASE, "inc": deep(1000)}))
def test_a_message_with_one_field_broken_is_a_message_error_or_valid(sample: tuple[bytes, Any]) -> None:
    kind, body = sample
    msg = only(MessageError, messages.decode, [kind, dumps(body)])
    if msg is not None:
        check_message(msg)


@given(messages_of_a_kind())
def test_messages_round_trip(sample: tuple[bytes, Origin, dict[str, Any]]) -> None:
    kind, origin, body = sample
    msg = messages.decode(messages.encode(kind, origin, **body))
    assert (msg.kind, msg.origin, msg.body) == (kind, origin, {**origin.fields(), **body})


@settings(max_examples=30)
@given(origins, st.integers(-2, 2))
def test_a_message_is_accepted_exactly_up_to_its_size_cap(origin: Origin, over: int) -> None:
    kind, raw = messages.encode(BYE, origin)
    padded = raw[:-1] + b" " * (MAX_MESSAGE_BYTES + over - len(raw)) + b"}"
    msg = only(MessageError, messages.decode, [kind, padded])
    assert (msg is not None) == (len(padded) <= MAX_MESSAGE_BYTES)


@given(origins, st.integers(-3, 3), st.booleans())
def test_a_hello_lists_at_most_its_cap_of_seeds_and_peers(origin: Origin, over: int, peers: bool) -> None:
    cap = MAX_PEERS_PER_HELLO if peers else MAX_SEEDS_PER_HELLO
    n = cap + over
    body = {"seeds": [], "peers": [["p", "tcp://h:1", None, "h"]] * n} if peers else {"seeds": [{"name": "s"}] * n}
    msg = only(MessageError, messages.decode, messages.encode(HELLO, origin, **body))
    assert (msg is not None) == (n <= cap)


@given(st.integers(MAX_ID_CHARS - 2, MAX_ID_CHARS + 2), st.integers(500, 520), st.sampled_from(["tcp", "ipc"]))
def test_ids_and_endpoints_are_accepted_exactly_up_to_their_caps(id_chars: int, url_chars: int, which: str) -> None:
    body = {"v": 1, "id": "n" * id_chars, "tcp": None, "ipc": None, "host": "h", "dg": ""}
    body[which] = f"{which}://" + "x" * (url_chars - len(which) - 3)
    origin = only(MessageError, messages.origin_from, body)
    assert (origin is not None) == (id_chars <= MAX_ID_CHARS and url_chars < 512)


@given(json_values | mutated(origins.map(beacon_body), ORIGIN_KEYS))
def test_origin_from_any_value_is_an_origin_or_a_message_error(value: Any) -> None:
    ok, body = loaded(value)
    origin = only(MessageError, messages.origin_from, body) if ok else None
    if origin is not None:
        check_origin(origin)
