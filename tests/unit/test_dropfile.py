"""Reading rx files as packets: the original's .pkt, documents, JSON lines and raw files (pure)."""

import json
from pathlib import Path

import pytest

from pumpkin import dropfile, tags
from pumpkin import packet as codec
from pumpkin.errors import PacketError
from pumpkin.packet import IdMaker

ROOT = Path(__file__).resolve().parents[2]
IDS = IdMaker("5eed0000")


def test_the_hello_world_data_pkt_reads_as_mars_in_the_node_group():
    obj = json.loads((ROOT / "seeds/helloworld/data.pkt").read_text())
    p = codec.from_legacy(obj, "lab", IDS)
    assert str(p.tag) == "lab:String:UNGREETED" and p.data == "Mars"
    assert p.meta["legacy_header"] == {"box": "0", "e": "E", "ship": "c466f181", "container": "98ea09ac"}
    assert p.id.startswith("5eed0000:") and p.lineage != "98ea09ac"  # a drop is a new injection
    assert p.ttl == codec.DEFAULT_TTL_HOPS


def test_legacy_two_entries_full_tags_header_ttl_and_code():
    header = {"ship": "a", "ttl": "7", "code": "import os; os.system('rm -rf /')", "state": "X"}
    p = codec.from_legacy([header, {"stag": "g2:Number:COUNT", "data": [1, 2]}], "default", IDS)
    assert str(p.tag) == "g2:Number:COUNT" and p.data == [1, 2] and p.ttl == 7
    assert "code" not in p.meta["legacy_header"] and p.meta["legacy_header"]["state"] == "X"
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
        ([{"ttl": "soon"}, {"stag": "String:X", "data": 1}], "not a number of hops"),
        ([{"ttl": 0}, {"stag": "String:X", "data": 1}], "leaves no hops"),
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
