import pytest

from pumpkin import messages
from pumpkin.messages import HELLO, PING, MessageError, Origin

ME = Origin("nodeA", "tcp://10.0.0.1:5000", "ipc:///tmp/a/data", "host1", "abc")


def test_beacon_round_trip_and_endpoint_choice():
    o = messages.decode_beacon(messages.encode_beacon(ME))
    assert (o.id, o.tcp, o.ipc, o.host, o.digest, o.bye) == ("nodeA", ME.tcp, ME.ipc, "host1", "abc", False)
    assert o.endpoint_for("host1") == ME.ipc
    assert o.endpoint_for("host2") == ME.tcp


def test_a_beacon_carries_its_seeds_when_they_fit_in_one_frame_and_says_only_who_and_where_otherwise():
    from dataclasses import replace

    seeds = [{"name": "greet", "inputs": ["UNGREETED"], "outputs": ["GREETED"], "workers": 2}]
    data = messages.encode_beacon(replace(ME, seeds=seeds))
    assert messages.decode_beacon(data).seeds == seeds
    many = [{"name": f"seed{i}", "inputs": [f"STATE{i}"], "outputs": []} for i in range(40)]
    data = messages.encode_beacon(replace(ME, seeds=many))
    assert len(data) <= messages.MAX_BEACON_BYTES <= 1472  # one Ethernet frame: never fragmented
    back = messages.decode_beacon(data)
    assert back.seeds is None and (back.id, back.digest) == ("nodeA", "abc")  # its HELLO will say them
    assert messages.decode_beacon(messages.encode_beacon(ME)).seeds is None  # nothing said: not "no seeds"
    assert messages.decode_beacon(messages.encode_beacon(replace(ME, hears=7))).hears == 7
    assert messages.decode_beacon(messages.encode_beacon(ME)).hears == -1  # not said (an older node)


@pytest.mark.parametrize(
    "data,msg",
    [
        (b"PMKB" + b'{"v":1,"id":"x","tcp":"tcp://a:1","host":"","dg":"","sd":{"a":1}}', "sd must be a list"),
        (b"PMKB" + b'{"v":1,"id":"x","tcp":"tcp://a:1","host":"","dg":"","sd":["greet"]}', "sd must be a list"),
        (b"PMKB" + b'{"v":1,"id":"x","tcp":"tcp://a:1","host":"","dg":"","hn":-2}', "hn must be a count"),
        (b"PMKB" + b'{"v":1,"id":"x","tcp":"tcp://a:1","host":"","dg":"","hn":"many"}', "hn must be a count"),
        (b"garbage", "bad magic"),
        (b"PMKB{not json", "not JSON"),
        (b"PMKB" + b"x" * 2000, "exceeds"),
        (b'PMKB{"v":99,"id":"x","tcp":"tcp://a:1","host":"","dg":""}', "protocol version 99"),
        (b'PMKB{"v":1,"id":"","tcp":"tcp://a:1","host":"","dg":""}', "no valid node id"),
        (b'PMKB{"v":1,"id":"x","host":"","dg":""}', "no endpoint"),
        (b'PMKB{"v":1,"id":"x","tcp":"http://a","host":"","dg":""}', "not a tcp:// URL"),
    ],
)
def test_bad_beacons_say_why(data, msg):
    with pytest.raises(MessageError, match=msg):
        messages.decode_beacon(data)


def test_messages_round_trip_and_validation():
    m = messages.decode(messages.encode(HELLO, ME, seeds=[{"name": "greet"}], peers=[], reply=True))
    assert m.kind == HELLO and m.origin.id == "nodeA" and m.body["reply"] is True
    assert messages.decode(messages.encode(PING, ME, load={"greet": 2})).body["load"] == {"greet": 2}
    for frames, msg in [
        ([b"PMKH"], "not a peer message"),
        ([b"PMKX", b"{}"], "not a peer message"),
        (messages.encode(HELLO, ME, seeds="x"), "'seeds' list"),
        (messages.encode(HELLO, ME, seeds=[{"name": str(i)} for i in range(1001)]), "more than 1000"),
        (messages.encode(PING, ME, load={"a": "lots"}), "'load'"),
        (messages.encode(messages.ACK, ME, acks=[["only-one"]]), "'acks'"),
        (messages.encode(messages.ACK, ME, acks=[["p1", "greet"]], held=[["p2", 7]]), "'held'"),
        (messages.encode(messages.ACK, ME, unknown={"p1": "greet"}), "'unknown'"),
        (messages.encode(messages.QUERY, ME, ask=[["p1", ["greet"]]]), "'ask'"),
    ]:
        with pytest.raises(MessageError, match=msg):
            messages.decode(frames)
    ack = messages.decode(messages.encode(messages.ACK, ME, acks=[["p1", "greet"]], held=[], unknown=[]))
    assert ack.body["acks"] == [["p1", "greet"]]
