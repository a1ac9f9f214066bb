"""Who belongs to a network: the network key, each node's key pair, and the proofs that bind them.

Trust model. A *keyed* network is the set of daemons started with the same network key (``pmk network create``
makes one: 32 random bytes in a small text file). Whoever holds the key is a member, and every member is trusted
alike (as with a Wi-Fi passphrase, or a Zenoh/NATS shared credential); there are no roles. From the key each
daemon derives, with HMAC-SHA256 under a separate label each:

- a *certificate* for its node key pair (CurveZMQ, kept in the working directory, mode 0600): HMAC over the node
  id and the public key. It binds the id to that key: a member presenting another key for a known id is refused.
- a *beacon key*: every UDP beacon is sealed with an HMAC (16 bytes) over its body, which carries a counter that
  grows with each beacon of a daemon run (replays of older beacons are dropped).
- a *host key*: beacons name the daemon's host and network namespace only as an HMAC of it, so that members can
  tell which peers share a host (ipc://) and strangers learn nothing from it.

Every ZeroMQ connection between members is CurveZMQ (encrypted, authenticated): a daemon connects to a peer only
with that peer's certified public key as the server key, and accepts messages on its inbox only from client keys
bound to a member id by a valid certificate (see ``mesh``). A daemon without a key is in an *open* network: it
says so loudly at start; its beacons carry no seal, and open and keyed daemons ignore each other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import zmq

from .errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE_HEADER = "pumpkin-network-key-v1"
NODE_KEY_FILE = "node.key"
SEAL_BYTES = 16
CERT_HEX = 32


class NetworkKey:
    """The secret every member of a keyed network holds."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ConfigError("a network key must hold at least 16 bytes of secret")
        self._secret = secret

    @classmethod
    def create(cls) -> NetworkKey:
        """A new random key."""
        return cls(os.urandom(32))

    def text(self) -> str:
        """The key file's content (keep it secret: whoever has it is a member)."""
        return f"{KEY_FILE_HEADER}\n{base64.b64encode(self._secret).decode()}\n"

    @classmethod
    def parse(cls, text: str, where: str = "network key") -> NetworkKey:
        """The key in ``text`` (a key file's content, or the base64 line alone, as in an invite)."""
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if lines and lines[0] == KEY_FILE_HEADER:
            lines = lines[1:]
        if len(lines) != 1:
            raise ConfigError(f"{where}: not a Pumpkin network key (make one with 'pmk network create')")
        try:
            secret = base64.b64decode(lines[0], validate=True)
        except ValueError:
            raise ConfigError(f"{where}: the key is not valid base64") from None
        return cls(secret)

    @classmethod
    def load(cls, path: Path) -> NetworkKey:
        """Read a key file; refuses one that other users may read or write."""
        try:
            st = path.stat()
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"network key {path}: {exc}") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"network key {path}: other users may read it (mode {stat.filemode(st.st_mode)}); "
                f"whoever reads it joins the network: chmod 600 {path}"
            )
        return cls.parse(text, f"network key {path}")

    def derive(self, label: bytes) -> bytes:
        """A key for one purpose, from the network key."""
        return hmac.new(self._secret, b"pumpkin/" + label, hashlib.sha256).digest()

    @property
    def fingerprint(self) -> str:
        """A short public name of the key (safe to show and compare)."""
        return hashlib.sha256(b"pumpkin/fingerprint/" + self._secret).hexdigest()[:16]


@dataclass(frozen=True)
class NodeKeys:
    """A node's CurveZMQ key pair (Z85 text, as ZeroMQ takes them)."""

    public: bytes
    secret: bytes

    @classmethod
    def load_or_create(cls, folder: Path) -> NodeKeys:
        """The pair kept in ``folder`` (made on first use, mode 0600)."""
        path = folder / NODE_KEY_FILE
        if path.exists():
            try:
                raw = orjson.loads(path.read_bytes())
                keys = cls(raw["public"].encode(), raw["secret"].encode())
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise ConfigError(f"node key {path}: unreadable ({exc}); move it away to make a new one") from None
            if zmq.curve_public(keys.secret) != keys.public:
                raise ConfigError(f"node key {path}: the public key does not match the secret one")
            return keys
        public, secret = zmq.curve_keypair()
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps({"public": public.decode(), "secret": secret.decode()}))
        os.replace(tmp, path)
        return cls(public, secret)


@dataclass
class Membership:
    """This node's standing: its keys, and the network key when the network is keyed (None: open)."""

    network: NetworkKey | None
    keys: NodeKeys
    _cert_key: bytes = field(init=False, default=b"")
    _seal_key: bytes = field(init=False, default=b"")
    _host_key: bytes = field(init=False, default=b"")
    #: node id -> the public key first proven for it in this daemon's life (a second key for the id is refused)
    bound: dict[str, str] = field(default_factory=dict)
    #: public key -> node id, for telling who sent a message on the inbox
    holders: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.network is not None:
            self._cert_key = self.network.derive(b"member")
            self._seal_key = self.network.derive(b"beacon")
            self._host_key = self.network.derive(b"host")

    @property
    def keyed(self) -> bool:
        """True in a keyed network."""
        return self.network is not None

    @property
    def public(self) -> str:
        """This node's public key (Z85)."""
        return self.keys.public.decode()

    def cert(self, node_id: str, public: str) -> str:
        """The certificate binding ``node_id`` to ``public`` ("" in an open network)."""
        if not self.keyed:
            return ""
        msg = b"cert\0" + node_id.encode() + b"\0" + public.encode()
        return hmac.new(self._cert_key, msg, hashlib.sha256).hexdigest()[:CERT_HEX]

    def valid_cert(self, node_id: str, public: str, cert: str) -> bool:
        """True when ``cert`` binds ``node_id`` to ``public`` under this network's key."""
        return self.keyed and len(public) == 40 and hmac.compare_digest(self.cert(node_id, public), cert)

    def bind(self, node_id: str, public: str) -> bool:
        """Record that ``node_id`` holds ``public`` (already certified); False when another key holds the id."""
        known = self.bound.get(node_id)
        if known is not None and known != public:
            return False
        self.bound[node_id] = public
        self.holders[public] = node_id
        return True

    def key_of(self, node_id: str) -> bytes | None:
        """The public key bound to ``node_id`` (Z85), if any."""
        public = self.bound.get(node_id)
        return public.encode() if public else None

    def seal(self, body: bytes) -> bytes:
        """The seal of a beacon body."""
        return hmac.new(self._seal_key, body, hashlib.sha256).digest()[:SEAL_BYTES]

    def sealed(self, body: bytes, seal: bytes) -> bool:
        """True when ``seal`` is the seal of ``body`` under this network's key."""
        return self.keyed and hmac.compare_digest(self.seal(body), seal)

    def hide_host(self, host: str) -> str:
        """What beacons and messages say of this node's host: equal for equal hosts, opaque to strangers."""
        if self.keyed:
            return hmac.new(self._host_key, host.encode(), hashlib.sha256).hexdigest()[:24]
        return hashlib.sha256(b"pumpkin/host/" + host.encode()).hexdigest()[:24]


def open_network_warning() -> str:
    """What a daemon without a network key says at start."""
    return (
        "OPEN NETWORK: this daemon has no network key, so anyone who can reach it on this network can send it "
        "packets that its seeds run, receive its packets, and appear among its peers. To keep strangers out, make "
        "a key once ('pmk network create > lab.key', chmod 600) and start every daemon with --network-key lab.key"
    )
