"""A packet's data is written to JSON once per hop: the text it arrived with, or the text its seed's output was
checked with, is what is sent; never once a seed may have changed the data in place."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pumpkin import loader, tags
from pumpkin import packet as codec
from pumpkin.packet import IdMaker, Packet
from pumpkin.runner import SeedRunner, _emission, ready_instance

SHOUT = """
from pumpkin import Seed


class Shout(Seed):
    consumes = "Text:IN"
    emits = "Text:OUT"

    def run(self, data):
        data["said"] = data["said"].upper()  # in place, and the same object emitted
        return data
"""


def arrived(data: object) -> Packet:
    return codec.decode(codec.encode(Packet(IdMaker("5eed0000").root(), tags.parse("Text:IN"), data)))


def test_a_packet_passed_on_sends_the_text_it_came_with():
    got = arrived({"said": "hi", "n": [1, 2.5]})
    text = got.json_text()
    assert text == b'{"said":"hi","n":[1,2.5]}'
    assert codec.encode(got, to="shout", sender="nodeB")[2] is text  # not written again


def test_data_replaced_or_handed_to_a_seed_is_written_anew():
    got = arrived({"said": "hi"})
    got.data = {"said": "bye"}  # another object: the kept text is not its data's
    assert codec.encode(got)[2] == b'{"said":"bye"}'
    got = arrived({"said": "hi"})
    got.forget_wire()
    got.data["said"] = "changed in place"
    assert codec.encode(got)[2] == b'{"said":"changed in place"}'
    assert codec.encode(arrived(b"\x00raw"))[2] == b"\x00raw"  # bytes travel as they are, no text kept


def test_a_seed_that_changes_its_input_in_place_never_lets_the_old_text_out(tmp_path: Path):
    (tmp_path / "shout.py").write_text(SHOUT)
    spec = loader.load_file(tmp_path / "shout.py", "default", explicit=True)[0]
    loop = asyncio.new_event_loop()
    try:
        runner = SeedRunner(spec, "nodeA", loop, lambda outcome: None)
        packet = arrived({"said": "hi"})
        outcome = runner._invoke(ready_instance(spec, "nodeA"), packet)
    finally:
        loop.close()
    assert outcome.error == ""
    assert packet.json_text() is None  # its data changed under it: the text it came with is stale
    assert codec.encode(packet)[2] == b'{"said":"HI"}'
    (emission,) = outcome.emissions
    assert emission.wire is not None and emission.wire[1] == b'{"said":"HI"}' and emission.wire[0] is emission.data


def test_an_emission_keeps_the_text_it_was_checked_with_for_its_own_data_only():
    e = _emission("OUT", {"a": 1})
    assert e.wire is not None and e.wire[1] == b'{"a":1}'
    child = Packet("s:c:1:d", tags.parse("Text:OUT"), {"a": 2}, wire=e.wire)  # other data than the text's
    assert child.json_text() is None and codec.encode(child)[2] == b'{"a":2}'
    assert _emission("OUT", b"raw").wire is None and _emission("OUT", {1, 2}).error
