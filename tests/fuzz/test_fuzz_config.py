"""Configuration from a file, the environment and flags (``config``): ConfigError, or values the daemon can use."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from pumpkin import config
from pumpkin.config import KEYS, Config, Key
from pumpkin.errors import ConfigError
from tests.fuzz.strategies import any_text, only

BY_NAME = {k.dotted: k for k in KEYS}
PORTS = ("endpoint.tcp_port", "discovery.bcport", "http.port")

#: Strings that break one kind of key or another.
NASTY_VALUES = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "-1",
    "0",
    "-0",
    "65535",
    "65536",
    "99999999999999999999",
    "9" * 5000,
    "1_0",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads it
    "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() says no
    "0x10",
    " 5 ",
    "true",
    "yes",
    "maybe",
    "",
    "~",
    "~nosuchuser-pmk/x",
    "a\0b",
    "\udcff",  # an undecodable byte in an environment variable or argv
    "zmq.IPC",
    "*",
    "tcp://h:5",
    "tcp://h:0",
    "tcp://h:99999999",
    "tcp://h:abc",
    "tcp://:5",
    "tcp://[::1]:5",
    "ipc:///tmp/x",
    "udp://x",
    "h:99999",
    "h:-5",
    "h:",
    ":5",
    "h:5,h2:6",
    ",,,",
]
values = st.sampled_from(NASTY_VALUES) | any_text
keys = st.sampled_from(KEYS)


def check_config(c: Config) -> None:
    """What every loaded configuration promises, key by key."""
    for key in KEYS:
        section, name = key.section, key.name
        if key.dotted == "supernodes.hosts":
            continue
        value = getattr(getattr(c, "discovery" if section == "supernodes" else section), name)
        if key.kind == "int":
            assert type(value) is int
            assert key.minimum is None or value >= key.minimum
        elif key.kind == "float":
            assert type(value) is float and not math.isnan(value)
            assert key.minimum is None or value >= key.minimum
        elif key.kind == "bool":
            assert type(value) is bool
        elif key.kind == "choice":
            assert value in key.choices
        elif key.kind == "path":
            assert value is None or (isinstance(value, Path) and "\0" not in str(value))
        elif key.kind == "paths":
            assert all(isinstance(p, Path) and "\0" not in str(p) for p in value)
        if key.kind == "str" or key.dotted in ("endpoint.endpoints", "discovery.peers", "rx.ignore"):
            for text in value if isinstance(value, tuple) else (value,):
                text.encode("utf-8")  # it goes into beacons, URLs and headers: lone surrogates cannot
    for dotted in PORTS:
        key = BY_NAME[dotted]
        assert 0 <= getattr(getattr(c, key.section), key.name) <= 65535
    assert all(isinstance(h, str) and 0 < port <= 65535 for h, port in c.discovery.supernodes)
    for url in c.discovery.peers:
        port = url.rsplit(":", 1)[1]
        assert url.startswith("tcp://") and port.isascii() and port.isdigit() and 0 < int(port) <= 65535
    assert c.discovery.heartbeat_s < c.discovery.evasive_s < c.discovery.expired_s


def load(file: Path | None = None, env: dict[str, str] | None = None, flags: dict[str, Any] | None = None) -> None:
    c = only(ConfigError, config.load, file, env or {}, flags)
    if c is not None:
        check_config(c)


@given(keys, values, st.sampled_from(["env", "flag", "file"]))
@example(BY_NAME["rx.dir"], "~nosuchuser-pmk/x", "flag")
@example(BY_NAME["routing.waiting_expiry_s"], "nan", "env")
@example(BY_NAME["discovery.bcport"], "99999999999999999999", "flag")
@example(BY_NAME["supernodes.hosts"], "h:99999", "flag")
@example(BY_NAME["discovery.peers"], "tcp://h:99999999", "flag")
@example(BY_NAME["node.id"], "\udcff", "env")
def test_any_value_of_any_key_is_a_config_error_or_usable(tmp_path: Path, key: Key, value: str, where: str) -> None:
    if where == "env":
        load(env={key.env: value})
    elif where == "flag":
        load(flags={key.dotted: value})
    else:
        file = tmp_path / "fuzz.cfg"
        file.write_bytes(f"[{key.section}]\n{key.name} = {value}\n".encode("utf-8", "surrogatepass"))
        load(file)


@given(keys, values, st.sampled_from(["rx.dir", "tx.dir"]))
@example(BY_NAME["rx.dir"], "/tmp/a\0b", "tx.dir")
def test_two_broken_keys_are_a_config_error_or_usable(key: Key, value: str, other: str) -> None:
    load(flags={key.dotted: value, other: "/nonexistent/pmk-fuzz"})


line = st.one_of(
    st.sampled_from(["[node]", "[rx]", "[http]", "[DEFAULT]", "[nosuch]", "[", "]", "=", ":", "  continued", "#", ""]),
    st.builds(lambda k, v: f"{k.name} = {v}", keys, values),
    st.builds(lambda k, v: f"{k.name}: {v}", keys, values),
    st.builds(lambda k: f"{k.name}", keys),
    any_text,
)


@given(st.lists(line, max_size=6).map("\n".join).map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary())
@example(b"\xff[node]\n")
@example(b"[node]\nid = a\n[node]\n")
@example(b"[node]\nid = a\nid = b\n")
def test_any_file_is_a_config_error_or_usable(tmp_path: Path, text: bytes) -> None:
    file = tmp_path / "fuzz.cfg"
    file.write_bytes(text)
    load(file)


valid_values: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(st.characters(codec="utf-8", exclude_characters="\r\n\\,%;#"), max_size=10).map(str.strip),
    "int": st.integers(1, 65535),
    "float": st.floats(0.01, 1e6),
    "bool": st.booleans(),
    "path": st.text(st.characters(codec="utf-8", exclude_characters="\0\r\n~,;#"), min_size=1, max_size=10)
    .map(lambda t: Path("/nonexistent", t.strip() or "x"))
    # "0\x0c/" stripped is itself, but as a Path it ends in "\x0c": whitespace that reading a value strips.
    .filter(lambda p: str(p) == str(p).strip()),
}
# Keys whose text is parsed further (lists, names): their own tests check them.
TEXT_KEYS = (
    "endpoint.endpoints",
    "discovery.peers",
    "supernodes.hosts",
    "rx.ignore",
    "node.group",
    "http.allowed_hosts",
)
SIMPLE_KEYS = [
    k
    for k in KEYS
    if k.kind in valid_values
    and k.dotted not in TEXT_KEYS
    and not k.dotted.startswith(("discovery.heartbeat", "tx."))
    and k.dotted not in ("discovery.evasive_s", "discovery.expired_s")
]


@st.composite
def settings_of(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(SIMPLE_KEYS), unique=True, max_size=6))
    return {k.dotted: draw(_valid(k)) for k in chosen}


def _valid(key: Key) -> st.SearchStrategy[Any]:
    """``valid_values`` of the key's kind, from its minimum up where that is above 1 (limits.message_max_bytes)."""
    if key.kind == "int" and key.minimum is not None and key.minimum > 1:
        return st.integers(int(key.minimum), max(65535, int(key.minimum)))
    return valid_values[key.kind]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@given(settings_of(), st.sampled_from(["env", "flag", "file"]))
def test_valid_values_come_back_from_every_source(tmp_path: Path, chosen: dict[str, Any], where: str) -> None:
    file = None
    if where == "file":
        file = tmp_path / "fuzz.cfg"
        sections: dict[str, list[str]] = {}
        for dotted, value in chosen.items():
            sections.setdefault(BY_NAME[dotted].section, []).append(f"{BY_NAME[dotted].name} = {_text(value)}")
        file.write_text("".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items()))
    env = {BY_NAME[d].env: _text(v) for d, v in chosen.items()} if where == "env" else {}
    flags = {d: _text(v) for d, v in chosen.items()} if where == "flag" else None
    c = config.load(file, env, flags)
    check_config(c)
    for dotted, value in chosen.items():
        key = BY_NAME[dotted]
        assert getattr(getattr(c, key.section), key.name) == value
