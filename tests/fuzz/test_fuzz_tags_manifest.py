"""State tags (``tags``) and seed manifests (``manifest``): TagError or ManifestError, or what was declared."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from pumpkin import manifest, tags
from pumpkin.errors import ManifestError, TagError
from pumpkin.tags import StateTag
from tests.fuzz.strategies import any_text, deep, dumps, json_values, loaded, mutated, nasty, only, utf8_text
from tests.fuzz.test_fuzz_packet import parts, state_tags

GROUP = "g"
MANIFEST_KEYS = ("object_name", "object_poi", "auto-load", "parameters", "return", "name", "type", "state")

tag_texts = st.one_of(
    state_tags.map(str),
    st.builds(lambda t, s: f"{t}:{s}", parts, parts),
    parts,
    st.lists(parts | st.sampled_from(["", " ", "*", "a b", "\n", "é", "\ud800"]), min_size=1, max_size=5).map(":".join),
    any_text,
)


def check_tag(tag: StateTag) -> None:
    assert all(part and part == part.strip() for part in tag)
    assert tags.parse(str(tag), "other") == tag


@given(tag_texts | json_values | nasty, st.sampled_from([GROUP, "", "a b", "x:y"]))
@example(deep(1000), GROUP)
def test_any_text_is_a_tag_or_a_tag_error(text: Any, group: str) -> None:
    ok, value = loaded(text) if not isinstance(text, str) else (True, text)
    if not ok:
        return
    tag = only(TagError, tags.parse, value, group)
    if tag is not None:
        check_tag(tag)
    for alternative in only(TagError, tags.parse_alternatives, value, group) or []:
        check_tag(alternative)


@given(state_tags, st.sampled_from(["full", "type", "state"]))
def test_tags_round_trip_through_their_text(tag: StateTag, form: str) -> None:
    if form == "full":
        assert tags.parse(str(tag), "other") == tag
    elif form == "type":
        assert tags.parse(f" {tag.type}:{tag.state} ", tag.group) == tag
    else:
        assert tags.parse(tag.state, tag.group) == StateTag(tag.group, tags.ANY_TYPE, tag.state)


@given(st.lists(state_tags, min_size=1, max_size=4))
def test_alternatives_round_trip(alternatives: list[StateTag]) -> None:
    unique = list(dict.fromkeys(alternatives))
    assert tags.parse_alternatives("|".join(map(str, alternatives)), "other") == unique


# -- legacy ###START-CONF manifests ----------------------------------------------------------------------------


def source_with(block: str, before: str = "", after: str = "") -> str:
    lines = block.split("\n")
    return before + "###START-CONF\n" + "".join(f"##{line}\n" for line in lines) + "##END-CONF\n" + after


entries = st.fixed_dictionaries(
    {"name": utf8_text, "type": parts, "state": parts},
    optional={"description": utf8_text},
)
manifests = st.fixed_dictionaries(
    {"object_name": st.text(min_size=1, max_size=20), "parameters": st.lists(entries, max_size=3)},
    optional={"return": st.lists(entries, max_size=3), "auto-load": st.booleans(), "object_poi": json_values},
)


def check_manifest(found: manifest.LegacyManifest | None) -> None:
    if found is None:
        return
    assert isinstance(found.name, str) and found.name
    assert isinstance(found.auto_load, bool)
    for tag in (*found.inputs, *found.outputs):
        check_tag(tag)
    assert isinstance(only((), lambda: found.description), str)  # under Python's own recursion limit


@given(any_text | st.builds(source_with, any_text, any_text, any_text))
@example(source_with("[" * 100_000 + "]" * 100_000))
@example(source_with('{"object_name": "x", "n": ' + "9" * 5000 + "}"))
def test_any_source_has_a_manifest_none_or_a_manifest_error(source: str) -> None:
    check_manifest(only(ManifestError, manifest.parse_legacy, source, GROUP))


def _block(doc: Any, indent: bool) -> str:
    text = dumps(doc).decode("utf-8", "surrogatepass")
    return json.dumps(json.loads(text), indent=1, ensure_ascii=False) if indent and loaded(doc)[0] else text


@given(json_values | mutated(manifests, MANIFEST_KEYS), st.booleans())
@example({"object_name": "x", "parameters": [{"name": deep(900), "type": "T"}]}, False)
@example({"object_name": "x", "auto-load": deep(900)}, False)
@example({"object_name": "x", "parameters": [{"name": "n", "state": "S", "description": deep(900)}]}, False)
def test_a_manifest_with_one_part_broken_is_a_manifest_or_a_manifest_error(doc: Any, indent: bool) -> None:
    check_manifest(only(ManifestError, manifest.parse_legacy, source_with(_block(doc, indent), "import x\n"), GROUP))


@given(manifests, st.booleans())
@example({"object_name": "\x85", "parameters": [{"name": "\u2028", "type": "T", "state": "S"}]}, False)
def test_a_manifest_declares_its_name_and_tags(doc: dict[str, Any], indent: bool) -> None:
    found = manifest.parse_legacy(source_with(_block(doc, indent), "from pumpkin import *\n", "class x: pass\n"), GROUP)
    assert found is not None
    assert found.name == doc["object_name"]
    assert found.auto_load == doc.get("auto-load", True)
    for key, declared in (("parameters", found.inputs), ("return", found.outputs)):
        expected = [StateTag(GROUP, e["type"], e["state"]) for e in doc.get(key, [])]
        assert list(declared) == list(dict.fromkeys(expected))


@given(tag_texts | st.lists(tag_texts, max_size=3) | json_values)
@example(5)
@example(None)
def test_declared_consumes_and_emits_are_tags_or_a_manifest_error(value: Any) -> None:
    for tag in only(ManifestError, manifest.parse_declared, value, GROUP, "consumes") or []:
        check_tag(tag)
