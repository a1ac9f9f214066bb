import pytest

from pumpkin import packet as codec
from pumpkin import tags
from pumpkin.errors import PacketError
from pumpkin.packet import Hop, IdMaker, Packet

GOLDEN = [
    b"PMK1",
    b'{"id":"c466f181:98ea09ac:1:2a","tag":"default:String:GREETING","ttl":63,"created":1763776000.5,'
    b'"trail":[["greet","nodeA","default:String:GREETING",1763776001.25]],"enc":"j","meta":{"k":1}}',
    b'"Hello World"',
]


def sample() -> Packet:
    return Packet(
        "c466f181:98ea09ac:1:2a",
        tags.parse("String:GREETING"),
        "Hello World",
        [Hop("greet", "nodeA", "default:String:GREETING", 1763776001.25)],
        63,
        1763776000.5,
        {"k": 1},
    )


def test_encoding_matches_the_golden_bytes():
    assert codec.encode(sample()) == GOLDEN


def test_golden_bytes_decode_to_the_packet():
    assert codec.decode(GOLDEN) == sample()


def test_a_well_formed_header_with_meta_is_read_on_the_fast_path(monkeypatch):
    # The field-by-field reader is for headers msgspec refuses; every packet of an original-format seed has meta,
    # and once all of them went that way (orjson refused msgspec's Raw), at about a fifth of a sink's CPU.
    def slow(raw):
        raise AssertionError(f"slow path taken for {raw[:60]!r}")

    monkeypatch.setattr(codec, "_header_slowly", slow)
    assert codec.decode(GOLDEN).meta == {"k": 1}
    legacy = sample()
    legacy.meta = {"legacy_header": {"fragment": "0", "e": 0, "ttl": "D", "last_func": "Step1", "big": 2**70}}
    assert codec.decode(codec.encode(legacy, to="step2", sender="nodeB")) == legacy


def test_bytes_travel_raw():
    p = sample()
    p.data = b"\x00\xffbinary"
    frames = codec.encode(p)
    assert frames[2] == b"\x00\xffbinary" and b'"enc":"b"' in frames[1]
    assert codec.decode(frames).data == b"\x00\xffbinary"


@pytest.mark.parametrize(
    "frames,msg",
    [
        ([b"PMK1", b"{}"], "3 frames"),
        ([b"XXXX", GOLDEN[1], GOLDEN[2]], "bad magic"),
        ([b"PMK1", b"not json", b"1"], "header is not JSON"),
        ([b"PMK1", b"[1]", b"1"], "not a JSON object"),
        ([b"PMK1", GOLDEN[1].replace(b'"ttl":63,', b""), GOLDEN[2]], "lacks the key 'ttl'"),
        ([b"PMK1", GOLDEN[1].replace(b'default:String:GREETING","ttl', b'GREETING","ttl'), GOLDEN[2]], "not a full"),
        ([b"PMK1", GOLDEN[1], b"{not json"], "payload is not JSON"),
        ([b"PMK1", GOLDEN[1].replace(b'"enc":"j"', b'"enc":"p"'), GOLDEN[2]], "unknown payload encoding"),
    ],
)
def test_malformed_frames_raise_packet_error(frames, msg):
    with pytest.raises(PacketError, match=msg):
        codec.decode(frames)


def test_ids_are_unique_and_keep_the_lineage():
    ids = IdMaker("aaaa0000")
    root = ids.root()
    child = ids.child(root, "greet", 0)
    ship, container, box, _ = child.split(":")
    assert ship == "aaaa0000" and container == root.split(":")[1] and box == "1"
    assert len({ids.root() for _ in range(1000)}) == 1000
    # Made again elsewhere (a failover), the same output of the same seed gets the same id.
    assert IdMaker("bbbb1111").child(root, "greet", 0) == child
    assert len({ids.child(root, s, i) for s in ("greet", "shout") for i in range(3)}) == 6


def test_addressed_packets_carry_their_seed():
    frames = codec.encode(sample(), to="extract", sender="nodeB")
    assert codec.decode_addressed(frames) == (sample(), "extract", "nodeB")
    assert codec.decode_addressed(GOLDEN) == (sample(), None, None)


def test_document_form_round_trip_and_errors():
    ids = IdMaker()
    p = sample()
    assert codec.from_document(codec.to_document(p), "default", ids) == p
    p.data = b"\x01\x02"
    assert codec.from_document(codec.to_document(p), "default", ids).data == b"\x01\x02"
    made = codec.from_document({"state": "UNGREETED", "data": "Mars"}, "lab", ids)
    assert str(made.tag) == "lab:*:UNGREETED" and made.data == "Mars" and made.id.startswith(ids.ship)
    for bad, msg in [
        ([], "JSON object"),
        ({"data": 1}, "no 'state'"),
        ({"state": "X"}, "neither"),
        ({"state": "X", "data_base64": "!!"}, "base64"),
        ({"state": "a:b:c:d", "data": 1}, "state tag"),
    ]:
        with pytest.raises(PacketError, match=msg):
            codec.from_document(bad, "default", ids)


def test_check_data_rejects_what_cannot_travel():
    codec.check_data({"a": [1, 2.5, None, "x"]})
    codec.check_data(b"raw")
    with pytest.raises(PacketError, match="neither JSON-serialisable nor bytes"):
        codec.check_data({"a": object()})


def test_a_batch_message_splits_into_its_packets_and_anything_else_stays_whole():
    a = codec.encode(Packet("s:c:0:1", tags.parse("x:T:A"), 1), to="seed", sender="n1")
    b = codec.encode(Packet("s:c:0:2", tags.parse("x:T:A"), b"\x00raw"))
    groups = codec.split_batch(a + b)
    assert groups == [a, b]
    assert [codec.decode(g).data for g in groups] == [1, b"\x00raw"]
    assert codec.split_batch(a) == [a]
    assert codec.split_batch([*a, b"stray"]) == [[*a, b"stray"]]  # not groups of 3: decode will say why
    odd = [*a, b"XXXX", b"{}", b"1"]
    assert codec.split_batch(odd) == [odd]
    with pytest.raises(PacketError, match="3 frames"):
        codec.decode(odd)


def test_a_packed_batch_is_one_frame_that_splits_into_its_packets():
    a = codec.encode(Packet("s:c:0:1", tags.parse("x:T:A"), {"n": 1}), to="seed", sender="n1")
    b = codec.encode(Packet("s:c:0:2", tags.parse("x:T:A"), b"\x00raw"))
    packed = codec.pack_batch(a + b)
    assert packed.startswith(codec.PACKED)
    groups = codec.split_batch([packed])
    assert groups == [a, b]
    assert [codec.decode(g).data for g in groups] == [{"n": 1}, b"\x00raw"]
    for broken in (packed[:-1], packed + b"x", packed[:6], codec.PACKED):
        assert codec.split_batch([broken]) == [[broken]]  # kept whole: decode says what is wrong
        with pytest.raises(PacketError, match="packed batch"):
            codec.decode([broken])
