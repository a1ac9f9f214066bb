"""The peer protocol: UDP beacons, and the messages peers exchange over ZeroMQ besides packets.

Beacon (one UDP datagram, at most ``MAX_BEACON_BYTES``)::

    b"PMKB" + JSON {"v": 1, "id": node id, "tcp": "tcp://10.77.0.11:41234" | null,
                    "ipc": "ipc:///tmp/..." | null, "host": host key, "dg": seeds digest,
                    "inc": incarnation, "bye": false, "direct": false, "t": sender's wall clock (s)}

In a keyed network (see ``membership``) a beacon is instead ``b"PMKS" + seal (16 bytes) + JSON``, the seal an
HMAC of the JSON under the network's beacon key, and the JSON adds ``"pk"`` (the node's CurveZMQ public key),
``"cert"`` (its certificate binding id and key) and ``"seq"`` (a counter per daemon run: a beacon not newer than
the last one heard from that node is a replay). ``host`` is then an HMAC of the host, and ``ipc`` is left out
(it travels in the encrypted HELLO). Open and keyed nodes ignore each other's beacons.

``direct`` marks a beacon sent to one peer's address rather than broadcast: the sender does not hear the
receiver's broadcasts (another subnet), so the receiver answers in kind (see ``mesh``).

``t`` (added later; absent from older nodes) is the sender's wall clock when it sent the beacon (``Origin.wall``,
set by the sender just before), so that a receiver can tell a peer's clock is off (``pmk doctor``). Receivers
ignore fields they do not know, so older nodes take such beacons as before.

``inc`` tells one run of a node from the next (the daemon's start time in nanoseconds): a node id heard
with a newer incarnation is a restarted peer, whose predecessor's memory, endpoint and unacknowledged
packets are gone. An older one is stale news (a cached mDNS record) and is ignored. 0: not known.

``sd`` (added later) is the sender's seed summaries, as its HELLO lists them, when they fit in the datagram
(``MAX_BEACON_BYTES``: one Ethernet frame); a beacon without it says only who and where. On a crowded LAN a node
learns a peer's seeds from it and greets the peer only when it first sends it something (see ``mesh``); else
what a node can do travels in a HELLO. ``hn`` (added with it) is how many daemons' broadcasts the sender heard in
its last two gaps between beacons: one that hears far fewer than its LAN holds is greeted all the same. Over ZeroMQ
(to the peer's inbox, next to packets) every message is two frames, ``[kind, JSON body]``, and every
body carries the sender's ``id``, ``tcp``, ``ipc``, ``host`` and ``dg`` as in the beacon, plus::

    b"PMKH" HELLO  {"seeds": [seed summaries], "peers": [[id, tcp, ipc, host], ...], "reply": bool,
                    "found_by": how the sender found the receiver ("broadcast", "mdns", "supernode", ...)}
    b"PMKP" PING   {"load": {seed name: queued packets per worker},          (the heartbeat, sent only
                    "echo": bool: the sender does not hear the receiver's      when needed, see mesh)
                    beacons, so the receiver should PING it every heartbeat}
    b"PMKY" BYE    {}                                                         (leaving now)
    b"PMKA" ACK    {"acks": [[packet id, seed name], ...],                     (done with these: they are
                    "held": [[packet id, seed name], ...],                     safe; still working on these;
                    "unknown": [[packet id, seed name], ...]}                  never got these)
    b"PMKQ" QUERY  {"ask": [[packet id, seed name], ...]}                     (what of these? answered by
                                                                               an ACK listing each of them)

``pmk doctor`` asks the daemons that hear it to answer, by UDP to the beacon port::

    b"PMKD" PROBE  JSON {"nonce": str, "t": wall clock}, padded with spaces to at least PROBE_MIN_BYTES
    b"PMKE" ECHO   JSON {"v": 1, "id": node id, "inc": incarnation, "nonce": the probe's, "t": wall clock}

sent back to the probe's source address. A probe is at least as large as its echo, so answering amplifies nothing.

Everything here is untrusted input: ``decode_*`` raise MessageError for anything malformed, oversized or
of another protocol version, and the caller counts and logs it.
"""

from __future__ import annotations

import math
import os
import reprlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import PumpkinError
from .membership import SEAL_BYTES, Membership

VERSION = 1
BEACON_MAGIC = b"PMKB"
SEALED_BEACON_MAGIC = b"PMKS"
HELLO = b"PMKH"
PING = b"PMKP"
BYE = b"PMKY"
ACK = b"PMKA"
QUERY = b"PMKQ"
KINDS = (HELLO, PING, BYE, ACK, QUERY)
PROBE_MAGIC = b"PMKD"
ECHO_MAGIC = b"PMKE"
PROBE_MIN_BYTES = 256
#: For tests only: shifts the wall clock this node announces in beacons and echoes by this many seconds, to fake a
#: host whose clock is off (``pmk doctor``'s clock check). Never set in production.
TEST_CLOCK_OFFSET_ENV = "PUMPKIN_TEST_CLOCK_OFFSET_S"
#: One UDP datagram in one Ethernet frame (1500 - IP and UDP headers): a beacon is never fragmented.
MAX_BEACON_BYTES = 1472
MAX_MESSAGE_BYTES = 4 << 20
MAX_ID_CHARS = 128
MAX_BEACON_EVERY_S = 60.0  # the longest gap between two beacons a sender may announce
MAX_SEEDS_PER_HELLO = 1000
MAX_HEARD = 1_000_000  # the most daemons a beacon may say its sender hears
MAX_PEERS_PER_HELLO = 1000
#: Packets asked about in one QUERY (a sender asks again about whatever an answer did not cover).
MAX_KEYS_PER_QUERY = 5000


def _test_clock_offset_s() -> float:
    try:
        return float(os.environ.get(TEST_CLOCK_OFFSET_ENV, "") or 0.0)
    except ValueError:
        return 0.0


_CLOCK_OFFSET_S = _test_clock_offset_s()


def wall_clock() -> float:
    """The wall clock this node announces (``time.time()``, shifted in tests by ``TEST_CLOCK_OFFSET_ENV``)."""
    return time.time() + _CLOCK_OFFSET_S


class MessageError(PumpkinError):
    """A beacon or peer message is malformed, oversized or of another version."""


@dataclass
class Origin:
    """Who sent a beacon or message, and how to reach them."""

    id: str
    tcp: str | None
    ipc: str | None
    host: str
    digest: str = ""
    bye: bool = False
    inc: int = 0
    direct: bool = False  # a beacon sent to this node alone, not broadcast
    pk: str = ""  # CurveZMQ public key (Z85), in a keyed network
    cert: str = ""  # the certificate binding id and pk (see membership)
    seq: int = 0  # beacons only: grows with every beacon of a daemon run
    wall: float = 0.0  # beacons only: the sender's wall clock when it sent it (0: not said)
    every: float = 0.0  # beacons only: seconds until the sender's next one (0: not said, one heartbeat)
    seeds: list[Any] | None = None  # beacons only: the sender's seed summaries (None: not said, or did not fit)
    hears: int = -1  # beacons only: how many daemons' broadcasts the sender heard lately (-1: not said)

    def endpoint_for(self, my_host: str) -> str | None:
        """ipc:// when the sender shares this host (and network namespace), tcp:// otherwise."""
        if self.ipc and self.host == my_host:
            return self.ipc
        return self.tcp

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": VERSION,
            "id": self.id,
            "tcp": self.tcp,
            "ipc": self.ipc,
            "host": self.host,
            "dg": self.digest,
            "inc": self.inc,
        }
        if self.pk:
            out["pk"], out["cert"] = self.pk, self.cert
        return out


@dataclass
class Message:
    """A decoded peer message."""

    kind: bytes
    origin: Origin
    body: dict[str, Any] = field(default_factory=dict)


def origin_from(body: Any) -> Origin:
    """The origin fields of a beacon or message body; MessageError when any is missing or malformed."""
    if not isinstance(body, dict):
        raise MessageError("body is not a JSON object")
    if body.get("v") != VERSION:
        raise MessageError(f"protocol version {reprlib.repr(body.get('v'))}, this node speaks {VERSION}")
    get = body.get  # (not a generator over the names: every beacon and message comes through here)
    node, tcp, ipc, host, dg = get("id"), get("tcp"), get("ipc"), get("host"), get("dg")
    if not isinstance(node, str) or not node or len(node) > MAX_ID_CHARS:
        raise MessageError("no valid node id")
    for name, url, scheme in (("tcp", tcp, "tcp://"), ("ipc", ipc, "ipc://")):
        if url is not None and not (isinstance(url, str) and url.startswith(scheme) and len(url) < 512):
            raise MessageError(f"{name} endpoint {reprlib.repr(url)} is not a {scheme} URL")
    if tcp is None and ipc is None:
        raise MessageError("no endpoint to reach the sender")
    if not isinstance(host, str) or not isinstance(dg, str):
        raise MessageError("host and dg must be strings")
    inc, seq = body.get("inc", 0), body.get("seq", 0)
    if type(inc) is not int or inc < 0 or type(seq) is not int or seq < 0:
        raise MessageError("incarnation and seq must be non-negative integers")
    pk, cert = body.get("pk", ""), body.get("cert", "")
    if not isinstance(pk, str) or not isinstance(cert, str) or len(pk) > 40 or len(cert) > 64:
        raise MessageError("pk and cert must be short strings")
    bye, direct = bool(body.get("bye", False)), bool(body.get("direct", False))
    every = body.get("bi", 0)
    if type(every) not in (int, float) or not 0 <= every <= MAX_BEACON_EVERY_S:
        raise MessageError(f"bi must be a number of seconds from 0 to {MAX_BEACON_EVERY_S:g}")
    seeds = body.get("sd")
    if seeds is not None and not (
        type(seeds) is list and len(seeds) <= MAX_SEEDS_PER_HELLO and all(type(s) is dict for s in seeds)
    ):
        raise MessageError("sd must be a list of seed summaries (objects)")
    hears = body.get("hn", -1)
    if type(hears) is not int or not -1 <= hears <= MAX_HEARD:
        raise MessageError(f"hn must be a count of daemons from 0 to {MAX_HEARD}")
    wall = _wall(body.get("t", 0))
    return Origin(node, tcp, ipc, host, dg, bye, inc, direct, pk, cert, seq, wall, float(every), seeds, hears)


def _wall(value: Any) -> float:
    """A wall-clock time as sent (seconds since the epoch, 0: none); MessageError for anything else."""
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise MessageError("t must be a non-negative number of seconds")
    return float(value)


def encode_beacon(origin: Origin, membership: Membership | None = None) -> bytes:
    """The datagram announcing ``origin`` (sealed in a keyed network)."""
    fields = {**origin.fields(), "bye": origin.bye, "direct": origin.direct, "seq": origin.seq}
    if origin.wall:
        fields["t"] = origin.wall
    if origin.every:
        fields["bi"] = origin.every
    if origin.hears >= 0:
        fields["hn"] = origin.hears
    if origin.seeds is not None:
        with_seeds = orjson.dumps({**fields, "sd": origin.seeds})
        # Past one frame a beacon says who and where only: its seeds then travel in its HELLO.
        room = MAX_BEACON_BYTES - len(SEALED_BEACON_MAGIC) - (SEAL_BYTES if membership is not None else 0)
        body = with_seeds if len(with_seeds) <= room else orjson.dumps(fields)
    else:
        body = orjson.dumps(fields)
    if membership is not None and membership.keyed:
        data = SEALED_BEACON_MAGIC + membership.seal(body) + body
    else:
        data = BEACON_MAGIC + body
    if len(data) > MAX_BEACON_BYTES:
        raise MessageError(f"beacon of {len(data)} bytes exceeds {MAX_BEACON_BYTES}")
    return data


def decode_beacon(data: bytes, membership: Membership | None = None) -> Origin:
    """The origin announced by a datagram; MessageError when it is not a valid beacon of this node's network
    (sealed by a member, its certificate valid, in a keyed one; unsealed in an open one)."""
    if len(data) > MAX_BEACON_BYTES:
        raise MessageError(f"beacon of {len(data)} bytes exceeds {MAX_BEACON_BYTES}")
    keyed = membership is not None and membership.keyed
    if data.startswith(SEALED_BEACON_MAGIC):
        if not keyed:
            raise MessageError("a beacon of a keyed network (this node has no network key)")
        assert membership is not None
        seal, body = data[4 : 4 + SEAL_BYTES], data[4 + SEAL_BYTES :]
        if not membership.sealed(body, seal):
            raise MessageError("beacon seal does not match (not a member of this network)")
    elif data.startswith(BEACON_MAGIC):
        if keyed:
            raise MessageError("an unsealed beacon (an open network's, or a stranger's)")
        body = data[len(BEACON_MAGIC) :]
    else:
        raise MessageError("not a Pumpkin beacon (bad magic)")
    try:
        origin = origin_from(orjson.loads(body))
    except orjson.JSONDecodeError:
        raise MessageError("beacon body is not JSON") from None
    if keyed:
        assert membership is not None
        if not membership.valid_cert(origin.id, origin.pk, origin.cert):
            raise MessageError(f"beacon of {origin.id} has no valid certificate for its key")
    return origin


def encode(kind: bytes, origin: Origin, **body: Any) -> list[bytes]:
    """The frames of a peer message."""
    return [kind, orjson.dumps({**origin.fields(), **body})]


def decode(frames: list[bytes]) -> Message:
    """A peer message from its frames; MessageError says what is wrong."""
    if len(frames) != 2 or bytes(frames[0]) not in KINDS:
        raise MessageError("not a peer message (expected [kind, body])")
    kind, raw = bytes(frames[0]), bytes(frames[1])
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MessageError("message body is not JSON") from None
    origin = origin_from(body)
    if kind == HELLO:
        seeds, peers = body.get("seeds"), body.get("peers", [])
        if not isinstance(seeds, list) or not isinstance(peers, list):
            raise MessageError("HELLO needs a 'seeds' list")
        if len(seeds) > MAX_SEEDS_PER_HELLO or len(peers) > MAX_PEERS_PER_HELLO:
            raise MessageError(f"HELLO lists more than {MAX_SEEDS_PER_HELLO} seeds or peers")
        if not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in seeds):
            raise MessageError("HELLO seeds must be objects with a 'name'")
    elif kind == PING:
        load = body.get("load", {})
        if not isinstance(load, dict) or not all(isinstance(v, (int, float)) for v in load.values()):
            raise MessageError("PING 'load' must map seed names to numbers")
    elif kind in (ACK, QUERY):
        for key in ("acks", "held", "unknown") if kind == ACK else ("ask",):
            if not _packet_keys(body.get(key, [])):
                raise MessageError(f"ACK '{key}' must be a list of [packet id, seed]")
    return Message(kind, origin, body)


def _packet_keys(keys: Any) -> bool:
    """``keys`` is a list of [packet id, seed] string pairs (a plain loop: every ACK of a busy node passes here)."""
    if type(keys) is not list:
        return False
    for key in keys:
        if type(key) is not list or len(key) != 2 or type(key[0]) is not str or type(key[1]) is not str:
            return False
    return True


@dataclass(frozen=True)
class Echo:
    """A daemon's answer to ``pmk doctor``'s probe."""

    node: str
    inc: int
    nonce: str
    wall: float


def encode_probe(nonce: str) -> bytes:
    """``pmk doctor``'s probe datagram (padded: never smaller than the echo it asks for)."""
    data = PROBE_MAGIC + orjson.dumps({"nonce": nonce, "t": round(wall_clock(), 6)})
    return data.ljust(PROBE_MIN_BYTES, b" ")


def decode_probe(data: bytes) -> str:
    """The nonce of a probe datagram; MessageError when it is not one (or too small to answer)."""
    if not data.startswith(PROBE_MAGIC) or not PROBE_MIN_BYTES <= len(data) <= MAX_BEACON_BYTES:
        raise MessageError("not a probe of the right size")
    try:
        nonce = orjson.loads(data[len(PROBE_MAGIC) :].rstrip(b" ")).get("nonce")
    except (orjson.JSONDecodeError, AttributeError):
        raise MessageError("probe body is not a JSON object") from None
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        raise MessageError("probe nonce must be a short string")
    return nonce


def encode_echo(node: str, inc: int, nonce: str) -> bytes:
    """A daemon's answer to a probe; the id is cut to 100 characters, so that it never outgrows the probe."""
    body = {"v": VERSION, "id": node[:100], "inc": inc, "nonce": nonce, "t": round(wall_clock(), 6)}
    return ECHO_MAGIC + orjson.dumps(body)


def decode_echo(data: bytes) -> Echo:
    """An echo datagram; MessageError when it is not one."""
    if not data.startswith(ECHO_MAGIC) or len(data) > MAX_BEACON_BYTES:
        raise MessageError("not an echo")
    try:
        body = orjson.loads(data[len(ECHO_MAGIC) :])
    except orjson.JSONDecodeError:
        raise MessageError("echo body is not JSON") from None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise MessageError("echo of another protocol version")
    node, inc, nonce = body.get("id"), body.get("inc", 0), body.get("nonce")
    if not isinstance(node, str) or not node or not isinstance(nonce, str) or type(inc) is not int:
        raise MessageError("echo needs an id, a nonce and an incarnation")
    return Echo(node, inc, nonce, _wall(body.get("t", 0)))
