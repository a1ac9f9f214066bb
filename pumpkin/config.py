"""Configuration: every key with its type, default and meaning, loaded once and passed down frozen.

Precedence, lowest first: the defaults below < the ``-c FILE`` (INI, sections as below) < environment
variables ``PUMPKIN_<SECTION>_<KEY>`` (e.g. ``PUMPKIN_ENDPOINT_TYPE=zmq.IPC``) < command-line flags
(``--endpoint.type zmq.IPC``; the original's short names such as ``--taskdir`` are aliases).
``pumpkin-template.cfg`` is rendered from ``KEYS`` and a test keeps the two equal.
"""

from __future__ import annotations

import configparser
import os
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dropfile import DEFAULT_IGNORE
from .errors import ConfigError

ENDPOINT_TYPES = ("zmq.IPC", "zmq.TCP")
MAX_PORT = 65535


@dataclass(frozen=True)
class Key:
    """One configuration key."""

    section: str
    name: str
    kind: str  # str, int, float, bool, path, paths, choice
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def dotted(self) -> str:
        """``section.name``, as used in flags and error messages."""
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        """The environment variable that sets this key."""
        return f"PUMPKIN_{self.section}_{self.name}".upper().replace("-", "_").replace(".", "_")


KEYS: tuple[Key, ...] = (
    Key("node", "group", "str", "default", "Group of this node: the group part of tags written without one."),
    Key("node", "id", "str", "", "Node id. Empty: made once and kept in the working directory."),
    Key(
        "node",
        "workdir",
        "path",
        None,
        "Working directory (node id, failed/ area, control socket). Empty: the first free one of "
        "~/.pumpkin/nodes/node0, node1, ...",
    ),
    Key(
        "node",
        "taskdir",
        "paths",
        [],
        "Folders (comma-separated) whose seeds are loaded. Empty: the packaged hello-world seeds.",
    ),
    Key(
        "node",
        "seed",
        "paths",
        [],
        "Seed files (comma-separated) to load instead of the taskdir; auto-load is ignored.",
    ),
    Key("node", "debug", "bool", False, "Log at debug level."),
    Key(
        "node",
        "log_format",
        "choice",
        "text",
        "How log lines are written: text (local time, level, message) or json (one object per line: time, level, "
        "logger, message, and fields such as seed, packet, peer where a line has them).",
        choices=("text", "json"),
    ),
    Key(
        "endpoint",
        "type",
        "choice",
        "zmq.TCP",
        "How peers reach this node: zmq.IPC (one host) or zmq.TCP.",
        choices=ENDPOINT_TYPES,
    ),
    Key(
        "endpoint",
        "endpoints",
        "str",
        "",
        "Explicit ZeroMQ URLs to bind for data, comma-separated (e.g. tcp://*:7900). Empty: chosen from type.",
    ),
    Key("endpoint", "tcp_host", "str", "*", "Address to bind for zmq.TCP ('*' means every interface)."),
    Key("endpoint", "tcp_port", "int", 0, "Port to bind for zmq.TCP; 0 picks a free one.", minimum=0, maximum=MAX_PORT),
    Key(
        "routing",
        "waiting_max_packets",
        "int",
        10000,
        "Packets waiting for a consumer (or for a busy seed) kept in memory, across all states; past this they "
        "spill to the spool folder on disk (routing.spool_max_bytes).",
        minimum=1,
    ),
    Key(
        "routing",
        "spool_max_bytes",
        "int",
        1 << 30,
        "Disk quota in bytes of WORKDIR/spool/, where waiting packets that do not fit in memory spill (emptied at "
        "start); past it they go to failed/. 0: no spilling, what does not fit in memory goes to failed/.",
        minimum=0,
    ),
    Key(
        "routing",
        "waiting_expiry_s",
        "float",
        600.0,
        "Seconds a packet may wait for a consumer before it goes to failed/.",
        minimum=0.001,
    ),
    Key(
        "routing",
        "seed_queue_max",
        "int",
        10000,
        "Packets queued per local seed; past this they wait in the state queue instead.",
        minimum=1,
    ),
    Key("routing", "ttl_hops", "int", 64, "Hops a packet may make before it goes to failed/ (stops loops).", minimum=1),
    Key(
        "routing",
        "join_wait_s",
        "float",
        600.0,
        "Seconds the packets of an AND-join (a seed consuming A&B) wait for their partners of the same lineage, and "
        "the results of a split packet's fragments for the rest, before they go to failed/ with the reason.",
        minimum=0.001,
    ),
    # -- [limits]: bounds on what peers and input can make a daemon hold (README: "Limits") --
    Key(
        "limits",
        "message_max_bytes",
        "int",
        256 << 20,
        "Largest message taken from peers, all its frames together; the rest of a larger one is dropped unread "
        "(counted in pmk stats) and a frame over this makes ZeroMQ drop the connection.",
        minimum=1024,
    ),
    Key(
        "limits",
        "failed_max_bytes",
        "int",
        1 << 30,
        "Disk quota in bytes of WORKDIR/failed/; once it is used up, further failures are counted and logged but "
        "not kept (until files there are removed). 0: nothing is kept.",
        minimum=0,
    ),
    Key(
        "limits",
        "inbound_connections_max",
        "int",
        4096,
        "TCP connections to the data port held at once (at most half the open-files limit); past it new ones are "
        "closed at once, counted.",
        minimum=1,
    ),
    Key(
        "limits",
        "inbound_per_address_max",
        "int",
        64,
        "TCP connections to the data port held at once from one address; past it new ones are closed, counted.",
        minimum=1,
    ),
    Key(
        "limits",
        "log_lines_per_minute",
        "int",
        10,
        "Log lines of one kind (logger, level and message) written per minute; the rest are folded into one line "
        "saying how many. 0: no folding.",
        minimum=0,
    ),
    Key(
        "discovery",
        "enable",
        "bool",
        True,
        "Find peers by themselves (broadcast, mDNS, same-host folder). false: only discovery.peers are used.",
    ),
    Key("discovery", "broadcast", "bool", True, "Send and hear UDP broadcast beacons."),
    Key("discovery", "mdns", "bool", True, "Register and browse the zeroconf/mDNS service _pumpkin._tcp.local."),
    Key(
        "discovery", "local", "bool", True, "Find daemons on this host (and network namespace) through a shared folder."
    ),
    Key(
        "discovery",
        "bcport",
        "int",
        7700,
        "UDP port of beacons (shared by the daemons of a host).",
        minimum=1,
        maximum=MAX_PORT,
    ),
    Key(
        "discovery",
        "interface",
        "str",
        "",
        "Use only this network interface for discovery. Empty: every one but loopback.",
    ),
    Key(
        "discovery",
        "advertise",
        "str",
        "",
        "Address announced to peers (containers, NAT). Empty: the first address of the chosen interfaces.",
    ),
    Key(
        "discovery",
        "peers",
        "str",
        "",
        "Static peers: tcp:// endpoints (comma-separated) greeted directly, for networks where nothing else reaches.",
    ),
    Key("discovery", "heartbeat_s", "float", 0.5, "Seconds between heartbeats (and beacons).", minimum=0.01),
    Key(
        "discovery",
        "evasive_s",
        "float",
        1.5,
        "Seconds of silence after which a peer is evasive: no new packets go to it, its unacknowledged ones move.",
        minimum=0.02,
    ),
    Key(
        "discovery",
        "lan_beacons_per_s",
        "float",
        20.0,
        "Broadcast beacons a second on one LAN, all daemons together: on a LAN of more than this x heartbeat_s "
        "daemons each beacons less often, and its peers' liveness windows stretch as much (a higher rate finds "
        "idle dead peers sooner, for more idle CPU). 0: never pace.",
        minimum=0.0,
    ),
    Key(
        "discovery",
        "expired_s",
        "float",
        5.0,
        "Seconds of silence after which a peer and its seeds are forgotten.",
        minimum=0.03,
    ),
    Key(
        "supernodes",
        "hosts",
        "str",
        "",
        "Hosts (comma-separated, host or host:port) that get unicast beacons, so discovery crosses subnets.",
    ),
    # -- the rx drop folder and the tx folder (README: "The rx folder") --
    Key(
        "rx",
        "dir",
        "path",
        None,
        "Drop folder: packet files put here are injected once each, then moved to its done/ (or failed/ with a "
        "reason). Empty: no drop folder.",
    ),
    Key(
        "rx",
        "processed",
        "choice",
        "move",
        "What happens to a file once its packets are accepted: 'move' it to done/ or 'remove' it.",
        choices=("move", "remove"),
    ),
    Key(
        "rx",
        "settle_s",
        "float",
        0.5,
        "Seconds a file's size and mtime must stay the same before it is read (writers: write a temporary name "
        "such as x.tmp, then rename).",
        minimum=0.0,
    ),
    Key(
        "rx",
        "poll_interval_s",
        "float",
        1.0,
        "Seconds between rescans of the drop folder (file events make pick-up immediate where available).",
        minimum=0.01,
    ),
    Key(
        "rx",
        "max_file_bytes",
        "int",
        64 << 20,
        "Largest file read; a larger one goes to failed/ (a file's packets are held in memory).",
        minimum=1,
    ),
    Key(
        "rx",
        "ignore",
        "str",
        ",".join(DEFAULT_IGNORE),
        "Name patterns (comma-separated globs) never read: files still being written.",
    ),
    Key(
        "tx",
        "dir",
        "path",
        None,
        "Result folder: every packet reaching an extractor here is also written as a file, once. Empty: none.",
    ),
    Key(
        "tx",
        "form",
        "choice",
        "document",
        "What a result file holds: the packet 'document' (droppable into another rx folder) or the 'data' alone.",
        choices=("document", "data"),
    ),
    # -- [http]: the live web page and its JSON API (pumpkin/web.py) --
    Key("http", "enable", "bool", True, "Serve the live web page and the JSON API."),
    Key(
        "http",
        "host",
        "str",
        "127.0.0.1",
        "Address the page and API listen on; 127.0.0.1 keeps them on this machine, 0.0.0.0 opens them to the LAN.",
    ),
    Key(
        "http",
        "port",
        "int",
        7780,
        "Port of the page and API; when it is taken, the next free one of the following 9, then any; 0 picks any.",
        minimum=0,
        maximum=MAX_PORT,
    ),
    Key(
        "http",
        "token",
        "str",
        "",
        "Secret that POST requests (inject, enable/disable a seed) must carry as 'Authorization: Bearer TOKEN'. "
        "Empty: the API is read-only.",
    ),
    Key(
        "http",
        "allowed_hosts",
        "str",
        "",
        "Other names (comma-separated) the page may be reached by, as the browser's Host header gives them: a "
        "name matches with any port, name:port with that port only; '*' accepts any. The listen address, "
        "localhost and (for 0.0.0.0) this machine's addresses and host name always work.",
    ),
    Key(
        "network",
        "key_file",
        "path",
        None,
        "The network key file (made by 'pmk network create'; mode 600): only daemons with the same key see each "
        "other, and their traffic is encrypted. Empty: an open network, which anyone on the LAN can join.",
    ),
)

ALIASES: dict[str, str] = {
    "taskdir": "node.taskdir",
    "seed": "node.seed",
    "group": "node.group",
    "debug": "node.debug",
    "log-format": "node.log_format",
    "workdir": "node.workdir",
    "endpoints": "endpoint.endpoints",
    "bcport": "discovery.bcport",
    "interface": "discovery.interface",
    "advertise": "discovery.advertise",
    "peers": "discovery.peers",
    "supernodes": "supernodes.hosts",
    "rx": "rx.dir",
    "tx": "tx.dir",
    "network-key": "network.key_file",
}


@dataclass(frozen=True)
class NodeConfig:
    """[node]"""

    group: str
    id: str
    workdir: Path | None
    taskdir: tuple[Path, ...]
    seed: tuple[Path, ...]
    debug: bool
    log_format: str = "text"


@dataclass(frozen=True)
class EndpointConfig:
    """[endpoint]"""

    type: str
    endpoints: tuple[str, ...]
    tcp_host: str
    tcp_port: int


@dataclass(frozen=True)
class RoutingConfig:
    """[routing]"""

    waiting_max_packets: int
    spool_max_bytes: int
    waiting_expiry_s: float
    seed_queue_max: int
    ttl_hops: int
    join_wait_s: float = 600.0


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]"""

    message_max_bytes: int
    failed_max_bytes: int
    inbound_connections_max: int
    inbound_per_address_max: int
    log_lines_per_minute: int


@dataclass(frozen=True)
class DiscoveryConfig:
    """[discovery] and [supernodes]"""

    enable: bool
    broadcast: bool
    mdns: bool
    local: bool
    bcport: int
    interface: str
    advertise: str
    peers: tuple[str, ...]
    heartbeat_s: float
    evasive_s: float
    expired_s: float
    supernodes: tuple[tuple[str, int], ...]
    lan_beacons_per_s: float = 20.0


@dataclass(frozen=True)
class NetworkConfig:
    """[network]"""

    key_file: Path | None


@dataclass(frozen=True)
class HttpConfig:
    """[http]"""

    enable: bool
    host: str
    port: int
    token: str
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class RxConfig:
    """[rx]"""

    dir: Path | None
    processed: str
    settle_s: float
    poll_interval_s: float
    max_file_bytes: int
    ignore: tuple[str, ...]


@dataclass(frozen=True)
class TxConfig:
    """[tx]"""

    dir: Path | None
    form: str


@dataclass(frozen=True)
class Config:
    """The whole configuration of one daemon."""

    node: NodeConfig
    endpoint: EndpointConfig
    routing: RoutingConfig
    limits: LimitsConfig
    discovery: DiscoveryConfig
    rx: RxConfig
    tx: TxConfig
    http: HttpConfig
    network: NetworkConfig = NetworkConfig(None)


#: Linux's limits on a file name and a whole path (NAME_MAX, PATH_MAX): longer ones fail at the first use.
NAME_MAX_BYTES, PATH_MAX_BYTES = 255, 4095


def _path(key: Key, text: str) -> Path:
    """``text`` as a path (``~`` expanded), refused when no file system here could hold it."""
    path = Path(text).expanduser()
    encoded = os.fsencode(path)
    if len(encoded) > PATH_MAX_BYTES or any(len(os.fsencode(part)) > NAME_MAX_BYTES for part in path.parts):
        raise ConfigError(f"config key {key.dotted}: {reprlib.repr(text)} is longer than a path or file name may be")
    return path


def _convert(key: Key, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if key.kind == "str":
            text.encode()  # a ValueError for a lone surrogate (an undecodable byte in the environment or argv)
            return text
        if key.kind == "int":
            value: Any = int(text)
        elif key.kind == "float":
            value = float(text)
            if value != value:
                raise ValueError  # NaN: it compares false with everything, the minimum below included
        elif key.kind == "bool":
            lowered = text.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("1", "true", "yes", "on")
        elif key.kind in ("path", "paths") and "\0" in text:
            raise ValueError  # no file name holds one: os functions raise ValueError on it later
        elif key.kind == "path":
            return _path(key, text) if text else None
        elif key.kind == "paths":
            return [_path(key, p.strip()) for p in text.split(",") if p.strip()]
        elif key.kind == "choice":
            if text not in key.choices:
                raise ConfigError(f"config key {key.dotted}: {text!r} is not one of {', '.join(key.choices)}")
            return text
        else:  # pragma: no cover - a programming error in KEYS
            raise AssertionError(key.kind)
    except ValueError:
        raise ConfigError(f"config key {key.dotted}: {reprlib.repr(text)} is not a valid {key.kind}") from None
    except RuntimeError as exc:  # Path.expanduser(): ~user of a user that does not exist, or no home at all
        raise ConfigError(f"config key {key.dotted}: {text!r}: {exc}") from None
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"config key {key.dotted}: {value} is below the minimum {key.minimum:g}")
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"config key {key.dotted}: {value} is above the maximum {key.maximum:g}")
    return value


def load(
    file: Path | None = None, env: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None
) -> Config:
    """Build the configuration from defaults, ``file``, ``env`` and ``flags`` (dotted key -> value)."""
    env = os.environ if env is None else env
    by_name = {k.dotted: k for k in KEYS}
    values: dict[str, Any] = {k.dotted: k.default for k in KEYS}
    if file is not None:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(file, encoding="utf-8") as fh:
                parser.read_file(fh)
        except (OSError, configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file}: {exc}".splitlines()[0]) from None
        for section in parser.sections():
            for name, raw in parser.items(section):
                dotted = f"{section}.{name}"
                if dotted not in by_name:
                    raise ConfigError(f"config file {file}: unknown key {dotted} (see pumpkin-template.cfg)")
                values[dotted] = _convert(by_name[dotted], raw)
    for key in KEYS:
        if key.env in env:
            values[key.dotted] = _convert(key, env[key.env])
    for dotted, raw in (flags or {}).items():
        if raw is None:
            continue
        if dotted not in by_name:
            raise ConfigError(f"unknown config key {dotted}")
        values[dotted] = _convert(by_name[dotted], raw)
    return _build(values)


def _port(text: str) -> bool:
    """True when ``text`` is a port number peers can be reached at, 1 to 65535."""
    return len(text) <= 5 and text.isascii() and text.isdigit() and 0 < int(text) <= MAX_PORT


def _build(v: dict[str, Any]) -> Config:
    endpoints = tuple(e.strip() for e in v["endpoint.endpoints"].split(",") if e.strip())
    for url in endpoints:
        if not url.startswith(("tcp://", "ipc://")):
            raise ConfigError(f"config key endpoint.endpoints: {url!r} is not a tcp:// or ipc:// URL")
    peers = tuple(e.strip() for e in v["discovery.peers"].split(",") if e.strip())
    for url in peers:
        if not url.startswith("tcp://") or ":" not in url[6:] or not _port(url.rsplit(":", 1)[-1]):
            raise ConfigError(f"config key discovery.peers: {url!r} is not a tcp://HOST:PORT endpoint")
    supernodes = []
    for item in (h.strip() for h in v["supernodes.hosts"].split(",")):
        if not item:
            continue
        host, _, port = item.partition(":")
        if port and not _port(port):
            raise ConfigError(f"config key supernodes.hosts: {item!r} is not host or host:port")
        supernodes.append((host, int(port) if port else v["discovery.bcport"]))
    hb, ev, ex = v["discovery.heartbeat_s"], v["discovery.evasive_s"], v["discovery.expired_s"]
    if not hb < ev < ex:
        raise ConfigError(
            f"config key discovery.evasive_s: need heartbeat_s < evasive_s < expired_s (got {hb:g}, {ev:g}, {ex:g})"
        )
    rx = RxConfig(
        v["rx.dir"],
        v["rx.processed"],
        v["rx.settle_s"],
        v["rx.poll_interval_s"],
        v["rx.max_file_bytes"],
        tuple(p.strip() for p in v["rx.ignore"].split(",") if p.strip()),
    )
    tx = TxConfig(v["tx.dir"], v["tx.form"])
    if rx.dir is not None and rx.dir.exists() and not rx.dir.is_dir():
        raise ConfigError(f"config key rx.dir: {rx.dir} is not a folder")
    if rx.dir is not None and tx.dir is not None and rx.dir.resolve() == tx.dir.resolve():
        raise ConfigError(f"config key tx.dir: {tx.dir} is also the rx folder; results would be injected again")
    return Config(
        node=NodeConfig(
            v["node.group"],
            v["node.id"],
            v["node.workdir"],
            tuple(v["node.taskdir"]),
            tuple(v["node.seed"]),
            v["node.debug"],
            v["node.log_format"],
        ),
        endpoint=EndpointConfig(v["endpoint.type"], endpoints, v["endpoint.tcp_host"], v["endpoint.tcp_port"]),
        routing=RoutingConfig(
            v["routing.waiting_max_packets"],
            v["routing.spool_max_bytes"],
            v["routing.waiting_expiry_s"],
            v["routing.seed_queue_max"],
            v["routing.ttl_hops"],
            v["routing.join_wait_s"],
        ),
        limits=LimitsConfig(
            v["limits.message_max_bytes"],
            v["limits.failed_max_bytes"],
            v["limits.inbound_connections_max"],
            v["limits.inbound_per_address_max"],
            v["limits.log_lines_per_minute"],
        ),
        discovery=DiscoveryConfig(
            v["discovery.enable"],
            v["discovery.broadcast"],
            v["discovery.mdns"],
            v["discovery.local"],
            v["discovery.bcport"],
            v["discovery.interface"],
            v["discovery.advertise"],
            peers,
            hb,
            ev,
            ex,
            tuple(supernodes),
            v["discovery.lan_beacons_per_s"],
        ),
        rx=rx,
        tx=tx,
        http=HttpConfig(
            v["http.enable"],
            v["http.host"],
            v["http.port"],
            v["http.token"],
            tuple(h.strip() for h in v["http.allowed_hosts"].split(",") if h.strip()),
        ),
        network=NetworkConfig(v["network.key_file"]),
    )


def _render_default(key: Key) -> str:
    if key.default is None or key.default == []:
        return ""
    if isinstance(key.default, bool):
        return "true" if key.default else "false"
    return str(key.default)


def render_template() -> str:
    """The text of ``pumpkin-template.cfg``: every key, its default and what it means."""
    out = [
        "# Pumpkin configuration: every key with its default. Use with `pmk -c FILE`.",
        "# Precedence: defaults < this file < PUMPKIN_<SECTION>_<KEY> environment variables < flags",
        "# (--section.key VALUE). Generated from pumpkin/config.py; tests keep the two equal.",
        "",
    ]
    section = None
    for key in KEYS:
        if key.section != section:
            if section is not None:
                out.append("")
            out.append(f"[{key.section}]")
            section = key.section
        out.append(f"# {key.help} (env {key.env})")
        out.append(f"{key.name} = {_render_default(key)}".rstrip())
    return "\n".join(out) + "\n"
