"""Files in the rx folder (``dropfile``): any bytes are packets that travel, or PacketError naming the bad part."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from pumpkin import dropfile, tags
from pumpkin import packet as codec
from pumpkin.errors import PacketError
from pumpkin.packet import IdMaker
from tests.fuzz.strategies import any_text, deep, dumps, json_values, mutated, only, utf8_text
from tests.fuzz.test_fuzz_packet import DOCUMENT_KEYS, LEGACY_KEYS, check_travels, legacy_arrays, state_tags

GROUP = "g"
REL = "rx-file.json"

documents = st.fixed_dictionaries({"state": state_tags.map(str), "data": json_values})
simple_documents = st.fixed_dictionaries(
    {"state": st.sampled_from(["UNGREETED", "String:UNGREETED", "g:String:GREETED"]), "data": json_values},
    optional={"ttl": st.integers(1, 99), "meta": st.dictionaries(utf8_text, json_values, max_size=2)},
)
broken = mutated(documents | simple_documents, DOCUMENT_KEYS) | mutated(legacy_arrays, LEGACY_KEYS)


def ids() -> IdMaker:
    return IdMaker("fuzz")


def check_parsed(parsed: dropfile.Parsed, lines: bool = False) -> None:
    assert parsed.packets
    for p in parsed.packets:
        assert p.ttl >= 1
        assert p.meta["rx"]["file"] == REL and (("line" in p.meta["rx"]) == lines)
        check_travels(p)


@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"[" + b) | st.just(b"\xff{}"))
def test_any_bytes_are_a_packet_or_a_packet_error(raw: bytes) -> None:
    parsed = only(PacketError, dropfile.parse_document, raw, REL, GROUP, ids())
    if parsed is not None:
        check_parsed(parsed)


@given(json_values | broken)
@example({"state": deep(1000), "data": 1})
@example({"state": "S", "data": deep(300)})
@example({"state": "S", "data": 1, "ttl": deep(1000)})
@example([{"ttl": 1e300}, {}, {"stag": "String:S", "data": 1}])
def test_a_document_with_one_part_broken_is_a_packet_or_a_packet_error(doc: Any) -> None:
    parsed = only(PacketError, dropfile.parse_document, dumps(doc), REL, GROUP, ids())
    if parsed is not None:
        check_parsed(parsed)


@given(documents | simple_documents | legacy_arrays)
def test_a_valid_document_is_one_packet_in_its_state(doc: Any) -> None:
    parsed = dropfile.parse_document(orjson.dumps(doc), REL, GROUP, ids())
    (p,) = parsed.packets
    entry = doc[-1] if isinstance(doc, list) else doc
    if isinstance(doc, list):  # an original .pkt array: a type:STATE tag is in group public
        assert p.tag == tags.parse(entry["stag"], codec.LEGACY_GROUP)
    else:
        assert p.tag == tags.parse(entry["state"], GROUP)
    assert p.data == entry["data"]
    check_parsed(parsed)


lines_of = st.lists(
    st.one_of(
        (documents | simple_documents | legacy_arrays).map(orjson.dumps),
        broken.map(dumps),
        st.sampled_from([b"", b"   ", b"\t", b"{", b"\xff"]),
    ),
    max_size=4,
).map(lambda lines: [line + b"\n" for line in lines])


@given(lines_of)
def test_json_lines_are_all_packets_or_an_error_naming_the_first_bad_line(lines: list[bytes]) -> None:
    parsed = only(PacketError, dropfile.parse_lines, lines, REL, GROUP, ids())
    alone = [
        only(PacketError, dropfile.parse_document, line, REL, GROUP, ids()) if line.strip() else None for line in lines
    ]
    bad = [n for n, (line, one) in enumerate(zip(lines, alone, strict=True), 1) if line.strip() and one is None]
    if parsed is not None:
        assert not bad
        assert len(parsed.packets) == sum(1 for line in lines if line.strip())
        assert [p.meta["rx"]["line"] for p in parsed.packets] == [n for n, x in enumerate(lines, 1) if x.strip()]
        check_parsed(parsed, lines=True)
        return
    try:
        dropfile.parse_lines(lines, REL, GROUP, ids())
    except PacketError as exc:
        if bad:
            assert str(exc).startswith(f"line {bad[0]}: ")
        else:
            assert "has no packets" in str(exc)


@given(any_text, st.sampled_from([GROUP, "", "a b"]))
@example("done", GROUP)
@example("String:UNGREETED", GROUP)
def test_any_folder_name_is_a_state_or_a_packet_error(folder: str, group: str) -> None:
    state = only(PacketError, dropfile.state_of_folder, folder, group)
    if state is not None:
        assert tags.parse(str(state)) == state


@given(any_text, st.lists(any_text | st.sampled_from(dropfile.DEFAULT_IGNORE + ("[", "[!", "[]]", "\\")), max_size=4))
def test_any_name_and_ignore_patterns_give_a_yes_or_no(name: str, patterns: list[str]) -> None:
    assert only((), dropfile.ignored, name, patterns) in (True, False)
    assert only((), dropfile.is_lines, name) in (True, False)
