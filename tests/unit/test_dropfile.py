"""Reading rx files as packets: the original's .pkt, documents, JSON lines and raw files (pure)."""

import json
from pathlib import Path

import orjson
import pytest

from pumpkin import dropfile, tags
from pumpkin import packet as codec
from pumpkin.errors import PacketError
from pumpkin.packet import IdMaker

ROOT = Path(__file__).resolve().parents[2]
IDS = IdMaker("5eed0000")


def test_the_hello_world_data_pkt_reads_as_mars_in_the_default_group_it_names():
    obj = json.loads((ROOT / "seeds/helloworld/data.pkt").read_text())
    p = codec.from_legacy(obj, "lab", IDS)
    assert str(p.tag) == "default:String:UNGREETED" and p.data == "Mars"
    assert p.meta["legacy_header"] == {"box": "0", "e": "E", "ship": "c466f181", "container": "98ea09ac"}
    assert p.id.startswith("5eed0000:") and p.lineage != "98ea09ac"  # a drop is a new injection
    assert p.ttl == codec.DEFAULT_TTL_HOPS


def test_a_legacy_tag_without_a_group_is_public_as_the_original_read_it():
    p = codec.from_legacy([{}, {}, {"stag": "String:UNGREETED", "data": "Mars"}], "lab", IDS)
    assert str(p.tag) == "public:String:UNGREETED"


@pytest.mark.parametrize("ttl", ["D", "600", 30, "soon", 0, -5, 99999999999999999999, 1e300])
def test_a_legacy_ttl_is_the_original_resend_timer_kept_and_never_refused(ttl):
    p = codec.from_legacy([{"ttl": ttl}, {}, {"stag": "String:X", "data": 1}], "default", IDS)
    assert p.ttl == codec.DEFAULT_TTL_HOPS
    kept = p.meta["legacy_header"]["ttl"]
    assert kept == ttl or kept == str(ttl)
    orjson.dumps(p.meta)  # what the journal and the wire will write


def test_legacy_two_entries_full_tags_header_ttl_and_code():
    header = {"ship": "a", "ttl": "7", "code": "import os; os.system('rm -rf /')", "state": "X"}
    p = codec.from_legacy([header, {"stag": "g2:Number:COUNT", "data": [1, 2]}], "default", IDS)
    assert str(p.tag) == "g2:Number:COUNT" and p.data == [1, 2] and p.ttl == codec.DEFAULT_TTL_HOPS
    assert "code" not in p.meta["legacy_header"] and p.meta["legacy_header"]["state"] == "X"
    assert p.meta["legacy_header"]["ttl"] == "7"
    parsed = dropfile.parse_document(
        json.dumps([header, {}, {"stag": "String:A", "data": 1}]).encode(), "c.pkt", "default", IDS
    )
    assert parsed.notes == ["ignored the legacy header field 'code': Pumpkin never runs code from a packet"]
    assert parsed.packets[0].meta["rx"] == {"file": "c.pkt"}


@pytest.mark.parametrize(
    "obj,msg",
    [
        ([], "JSON array"),
        ([{"box": "0"}, {}], "no entry with a 'stag'"),
        ([{}, {"stag": "a:b:c:d", "data": 1}], "'stag'"),
        ([{}, {"stag": "String:X"}], "has no 'data'"),
    ],
)
def test_legacy_errors_say_what_is_wrong(obj, msg):
    with pytest.raises(PacketError, match=msg):
        codec.from_legacy(obj, "default", IDS)


def test_documents_get_new_ids_and_say_where_they_came_from():
    raw = b'{"id": "aaaa:bbbb:3:9", "state": "UNGREETED", "data": "Mars", "meta": {"k": 1}}'
    (p,) = dropfile.parse_document(raw, "mars.json", "default", IDS).packets
    assert str(p.tag) == "default:*:UNGREETED" and p.data == "Mars"
    assert p.lineage != "bbbb" and p.meta == {"k": 1, "rx": {"file": "mars.json", "id": "aaaa:bbbb:3:9"}}
    (b,) = dropfile.parse_document(b'{"state": "BLOB", "data_base64": "AP8="}', "b.json", "default", IDS).packets
    assert b.data == b"\x00\xff"


@pytest.mark.parametrize(
    "raw,msg",
    [
        (b"", "the file is empty"),
        (b"  \n", "the file is empty"),
        (b'{"state": "X", "data": ', "not valid JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\xff", "binary, not JSON text; raw files go in a sub-folder"),
        (b'"just a string"', "not str"),
        (b'{"data": 1}', "no 'state'"),
        (b'{"state": "X", "data": 1, "ttl": 0}', "leaves no hops"),
    ],
)
def test_bad_documents_are_explained(raw, msg):
    with pytest.raises(PacketError, match=msg):
        dropfile.parse_document(raw, "f.json", "default", IDS)


def test_json_lines_are_all_or_nothing_and_name_the_line():
    lines = [b'{"state": "A", "data": 1}\n', b"\n", b'[{}, {"stag": "String:B", "data": 2}]\n']
    parsed = dropfile.parse_lines(lines, "x.jsonl", "default", IDS)
    assert [(p.tag.state, p.data, p.meta["rx"]["line"]) for p in parsed.packets] == [("A", 1, 1), ("B", 2, 3)]
    with pytest.raises(PacketError, match=r"^line 2: not valid JSON .* nothing from this file was injected$"):
        dropfile.parse_lines([b'{"state": "A", "data": 1}\n', b"{oops\n"], "x.jsonl", "default", IDS)
    with pytest.raises(PacketError, match="has no packets"):
        dropfile.parse_lines([b"\n"], "x.jsonl", "default", IDS)


def test_raw_files_take_their_state_from_the_folder():
    state = dropfile.state_of_folder("UNGREETED", "lab")
    p = dropfile.raw_packet(state, b"\x00bytes", "UNGREETED/photo.jpg", IDS)
    assert p.tag == tags.StateTag("lab", "*", "UNGREETED") and p.data == b"\x00bytes"
    assert p.meta == {"rx": {"file": "UNGREETED/photo.jpg"}}
    assert dropfile.state_of_folder("Image:PHOTO", "lab") == tags.StateTag("lab", "Image", "PHOTO")
    with pytest.raises(PacketError, match="the folder name is not a state"):
        dropfile.state_of_folder("two words", "lab")


@pytest.mark.parametrize(
    "name,skip",
    [
        ("mars.json", False),
        ("photo.jpg", False),
        (".mars.json", True),
        ("mars.json.tmp", True),
        ("mars.json.part", True),
        ("mars.json~", True),
        ("~lock.mars", True),
        (".swp", True),
        ("a.tmp.json", False),
    ],
)
def test_names_writers_use_while_writing_are_ignored(name, skip):
    assert dropfile.ignored(name) is skip
    assert dropfile.is_lines("A.JSONL") and dropfile.is_lines("b.ndjson") and not dropfile.is_lines("c.json")


# Numbers no later step can carry are the file's own error, found where it is read (issue 11): an int past
# 64 bits made the journal's commit fail for every file of its batch, for ever.
@pytest.mark.parametrize("ttl", [1e20, "99999999999999999999", -1, 7.5, float("nan"), float("inf"), True, [7]])
def test_legacy_ttl_of_any_value_is_kept_where_json_can_carry_it(ttl):
    p = codec.from_legacy([{"ttl": ttl}, {"stag": "String:X", "data": 1}], "default", IDS)
    assert p.ttl == codec.DEFAULT_TTL_HOPS
    orjson.dumps(p.meta)


def test_the_issue_11_legacy_file_is_accepted_with_its_ttl_as_text():
    raw = b'[{"ttl": 99999999999999999999}, {}, {"stag": "String:UNGREETED", "data": "Mars"}]'
    (p,) = dropfile.parse_document(raw, "huge.pkt", "default", IDS).packets
    assert p.meta["legacy_header"]["ttl"] in ("1e+20", 1e20)
    orjson.dumps(p.meta)


@pytest.mark.parametrize(
    "raw,msg",
    [
        (b'{"state": "X", "data": 1, "ttl": 1000001}', "more than the 1000000 hops"),
        (b'{"state": "X", "data": 1, "ttl": 18446744073709551615}', "more than the 1000000 hops"),
        (b'{"state": "X", "data": 1, "ttl": 99999999999999999999}', "'ttl' must be an integer"),
        (b'{"state": "X", "data": 1, "ttl": true}', "'ttl' must be an integer"),
        (b'{"state": "X", "data": 1, "created": "now"}', "'created' a number"),
        (b'{"state": "X", "data": 1, "trail": [["s", "n", "t", "inf"]]}', "trail times must be finite"),
        (b'{"state": "X", "data": 1, "trail": [["s", "n", "t", "1e999"]]}', "trail times must be finite"),
    ],
)
def test_document_numbers_out_of_range_are_that_files_error(raw, msg):
    with pytest.raises(PacketError, match=msg):
        dropfile.parse_document(raw, "f.json", "default", IDS)


@pytest.mark.parametrize(
    "extra,msg",
    [
        ({"ttl": 1 << 64}, "does not fit in 64 bits"),
        ({"ttl": -(1 << 63) - 1}, "does not fit in 64 bits"),
        ({"created": float("inf")}, "not a finite number"),
        ({"created": float("nan")}, "not a finite number"),
        ({"created": 10**400}, "'created' is out of range"),
        ({"created": False}, "'created' a number"),
        ({"trail": [["s", "n", "t", float("nan")]]}, "trail times must be finite"),
    ],
)
def test_documents_built_in_python_are_held_to_what_json_can_carry(extra, msg):
    # Documents that did not come through orjson (whose reader makes none of these) are checked all the same.
    with pytest.raises(PacketError, match=msg):
        codec.from_document({"state": "X", "data": 1, **extra}, "default", IDS)


def test_every_packet_a_file_gives_can_be_written_as_json():
    raw = b'[{"ttl": "9", "n": 18446744073709551615, "f": 1e308}, {}, {"stag": "String:A", "data": [1e-300]}]'
    (p,) = dropfile.parse_document(raw, "ok.pkt", "default", IDS).packets
    assert p.ttl == codec.DEFAULT_TTL_HOPS
    assert json.loads(orjson.dumps(codec.to_document(p)))["meta"]["legacy_header"]["f"] == 1e308
