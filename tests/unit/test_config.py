from pathlib import Path

import pytest

from pumpkin import config
from pumpkin.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_template_documents_every_key_with_its_default():
    assert (ROOT / "pumpkin-template.cfg").read_text() == config.render_template()


def test_template_loads_to_the_defaults():
    assert config.load(ROOT / "pumpkin-template.cfg", env={}) == config.load(env={})


def test_precedence_defaults_file_env_flags(tmp_path):
    f = tmp_path / "p.cfg"
    f.write_text("[endpoint]\ntype = zmq.IPC\n[node]\ngroup = fromfile\n")
    assert config.load(env={}).endpoint.type == "zmq.TCP"
    assert config.load(f, env={}).endpoint.type == "zmq.IPC"
    assert config.load(f, env={"PUMPKIN_NODE_GROUP": "fromenv"}).node.group == "fromenv"
    assert (
        config.load(f, env={"PUMPKIN_NODE_GROUP": "fromenv"}, flags={"node.group": "fromflag"}).node.group == "fromflag"
    )


def test_the_lans_beacon_rate_is_a_key_and_zero_turns_pacing_off():
    assert config.load(env={}).discovery.lan_beacons_per_s == 20.0
    assert config.load(env={}, flags={"discovery.lan_beacons_per_s": "0"}).discovery.lan_beacons_per_s == 0.0
    with pytest.raises(ConfigError, match="lan_beacons_per_s"):
        config.load(env={}, flags={"discovery.lan_beacons_per_s": "-5"})


@pytest.mark.parametrize(
    "flags,msg",
    [
        ({"endpoint.type": "zmq.UDP"}, "endpoint.type: 'zmq.UDP' is not one of zmq.IPC, zmq.TCP"),
        ({"endpoint.tcp_port": "x"}, "endpoint.tcp_port: 'x' is not a valid int"),
        ({"routing.waiting_expiry_s": "-1"}, "routing.waiting_expiry_s: -1.0 is below the minimum"),
        ({"node.debug": "maybe"}, "node.debug"),
        ({"endpoint.endpoints": "udp://x"}, "not a tcp:// or ipc:// URL"),
    ],
)
def test_bad_values_name_the_key(flags, msg):
    with pytest.raises(ConfigError, match=msg.replace(".", r"\.").replace("(", r"\(")):
        config.load(env={}, flags=flags)


def test_unknown_keys_in_a_file_are_refused(tmp_path):
    f = tmp_path / "p.cfg"
    f.write_text("[node]\ncolour = red\n")
    with pytest.raises(ConfigError, match="unknown key node.colour"):
        config.load(f, env={})


def test_rx_and_tx_keys_with_aliases_and_checks(tmp_path):
    c = config.load(env={}, flags={"rx.dir": str(tmp_path / "in"), "tx.dir": str(tmp_path / "out")})
    assert c.rx.dir == tmp_path / "in" and c.rx.processed == "move" and c.rx.settle_s == 0.5
    assert ".*" in c.rx.ignore and c.tx.form == "document"
    assert config.ALIASES["rx"] == "rx.dir" and config.ALIASES["tx"] == "tx.dir"
    (tmp_path / "file").write_text("")
    for flags, msg in [
        ({"rx.dir": str(tmp_path / "file")}, "config key rx.dir: .* is not a folder"),
        ({"rx.dir": str(tmp_path), "tx.dir": str(tmp_path)}, "config key tx.dir: .* also the rx"),
        ({"rx.settle_s": "-1"}, "config key rx.settle_s: -1.0 is below the minimum"),
        ({"rx.processed": "keep"}, "config key rx.processed: 'keep' is not one of move, remove"),
        ({"tx.form": "xml"}, "config key tx.form"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            config.load(env={}, flags=flags)


def test_daemons_with_the_same_id_get_separate_socket_folders(tmp_path):
    from pumpkin.workdir import claim

    a = claim(tmp_path / "a", "twin")
    b = claim(tmp_path / "b", "twin")
    try:
        assert a.node_id == b.node_id == "twin"
        assert a.runtime != b.runtime
        assert len(str(a.runtime / "control")) < 100  # ipc:// paths must stay short
    finally:
        a.release()
        b.release()
