"""Ways of finding peers. Each one calls ``on_origin(origin, via)`` for every peer it hears of.

- ``BeaconDiscovery``: UDP beacons to each interface's subnet broadcast address and, unicast, to the
  ``[supernodes] hosts`` (to cross subnets); one listener on the beacon port, shared by the daemons of a
  host (SO_REUSEPORT: a broadcast reaches each of them, a unicast only one, which passes on what it
  learns in its HELLOs).
- ``MdnsDiscovery``: a zeroconf service ``_pumpkin._tcp.local.`` per node. It finds peers only; their
  liveness is ours to track, since zeroconf keeps a killed node's records for many minutes.
- ``LocalDiscovery``: a rendezvous folder shared by the daemons of one host and network namespace, for
  hosts where broadcast cannot reach (loopback only).

Anything received is untrusted: malformed input is counted in ``rejected`` and logged once, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from .beacons import LAN_BEACONS_PER_S, Beacons, OnOrigin, Rejects
from .membership import Membership
from .messages import ECHO_MAGIC, PROBE_MAGIC, MessageError, Origin, decode_probe, encode_echo, origin_from
from .supervisor import Spawn, unsupervised
from .ticks import Ticks

log = logging.getLogger(__name__)

MDNS_TYPE = "_pumpkin._tcp.local."
MDNS_RESOLVE_MS = 3000
#: Beacons are read at most this often (or a fifth of the heartbeat, if shorter): see ``BeaconDiscovery``.
BEACON_BATCH_S = 0.1
#: On a paced LAN beacons are read this long before each tick: in the same wake-up as the heartbeat, but always
#: before it (timers due at one time run in no set order), so that after a stall of this process the liveness
#: sweep judges peers on the beacons that waited, not on the stall.
READ_AHEAD_S = 1e-6
#: Datagrams read in one batch at most; the rest wait for the next one, so a flood cannot hold the loop.
DRAIN_MAX_DATAGRAMS = 1000
#: Larger than any beacon (``messages.MAX_BEACON_BYTES``): an oversized one is read whole, then refused.
MAX_DATAGRAM_BYTES = 65536
#: A folder whose mtime is older than this cannot change again with the same mtime: timestamps are taken from
#: the kernel's coarse clock (a tick, up to 10 ms) and file systems store them at 1 ns to 1 s (ext4, tmpfs: 1 ns).
MTIME_SETTLED_NS = 2_000_000_000
#: ``pmk doctor`` probes answered per second at most: a flood of probes (spoofed sources) gets little back.
ECHOES_PER_S = 20


class BeaconDiscovery(Beacons):
    """Sends and hears UDP beacons (what they say and what a heard one means is ``Beacons``', shared with the
    simulator).

    Beacons are read in batches: the first datagram to arrive starts a window of ``batch_s`` (a fifth of a
    heartbeat), at whose end every datagram waiting is read at once. N daemons of one LAN each hear N beacons
    per heartbeat, and a loop wake-up per datagram cost a daemon ~10 times the handling of the beacon itself
    (bench/scale.py); a beacon read up to ``batch_s`` late changes nothing for liveness (peers turn evasive
    after three heartbeats of silence) and little for a new peer's discovery.

    On a crowded LAN, whose beacons are paced (see ``Beacons.pace``), something arrives every batch: there the
    socket is not watched at all, and what came is read on every tick of the daemon's grid (``ticks``), in the
    wake-up of its heartbeat: a beacon is read up to a heartbeat late, when the LAN's liveness windows are
    stretched by several. Our own beacons go out on the ticks too. A read that finds more than it may take
    (``DRAIN_MAX_DATAGRAMS``: a flood) goes back to batch windows until one finds less.
    """

    def __init__(
        self,
        port: int,
        broadcasts: list[str],
        unicasts: list[tuple[str, int]],
        beacon: Callable[[], Origin],
        on_origin: OnOrigin,
        interval_s: float,
        membership: Membership | None = None,
        spawn: Spawn = unsupervised,
        networks: Sequence[str] = (),
        lan_beacons_per_s: float = LAN_BEACONS_PER_S,
        ticks: Ticks | None = None,
    ) -> None:
        """``ticks``: the daemon's grid (None: one of its own, of a heartbeat);
        ``membership``: seal our beacons and accept only members' (a keyed network), or None (open);
        ``spawn`` starts the beacon loop (restarted if it crashes); ``networks``: our broadcast networks
        (``10.77.0.0/24``), to tell a broadcast beacon from one sent to us alone from elsewhere (none: all LAN);
        ``lan_beacons_per_s``: see ``Beacons.pace``."""
        self._spawn = spawn
        nets = [ipaddress.ip_network(n, strict=False) for n in networks]

        @functools.lru_cache(maxsize=4096)  # every beacon asks, from the same few senders: parsing was a third of it
        def on_lan(host: str) -> bool:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return False
            return not nets or address.is_loopback or any(address in net for net in nets)

        Beacons.__init__(
            self,
            beacon,
            on_origin,
            membership,
            {h for h, _ in unicasts},
            on_lan=on_lan,
            lan_beacons_per_s=lan_beacons_per_s,
        )
        self.port = port
        self.broadcasts = broadcasts
        self.unicasts = unicasts
        self.interval_s = interval_s
        self.ticks = ticks or Ticks(interval_s)
        self.batch_s = min(BEACON_BATCH_S, interval_s / 5)
        self.sent = 0
        self.batches = 0  # times waiting beacons were read: at most one per batch_s
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._flooded = False  # the last read stopped at DRAIN_MAX_DATAGRAMS: more were waiting
        self._drained_at = -1e9  # loop time of the last read
        self._task: asyncio.Task[None] | None = None
        self._send_errors: set[str] = set()
        self.echoes = 0  # answers to pmk doctor's probes
        self._echo_window = (0, 0)  # (second, echoes sent in it)

    async def start(self) -> None:
        """Bind the shared beacon port and start beaconing."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.bind(("", self.port))  # "" and not the unicast address, or broadcasts are not heard
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self._task = self._spawn("beacons", self._beacon_loop)

    def send_now(self, bye: bool = False) -> None:
        """Send one beacon to every target (``bye``: announce that this node is leaving)."""
        self._send([*((b, self.port) for b in self.broadcasts), *self.unicasts], bye)

    def send_to(self, address: str) -> None:
        """Send one beacon to ``address`` alone: a peer that does not hear our broadcasts (another subnet).
        A datagram each heartbeat keeps it hearing from us when its TCP link to us stalls on a lossy network."""
        self._send([(address, self.port)], direct=True)

    def _send(self, targets: list[tuple[str, int]], bye: bool = False, direct: bool = False) -> None:
        if self._sock is None:
            return
        data = self.datagram(bye, direct)
        for target in targets:
            try:
                # Straight to the socket: a beacon that finds the send buffer full is lost like any datagram,
                # and the next heartbeat's replaces it (nothing to queue).
                self._sock.sendto(data, target)
                self.sent += 1
            except OSError as exc:  # e.g. a supernode's subnet is unreachable right now
                if target[0] not in self._send_errors:
                    self._send_errors.add(target[0])
                    log.warning("cannot send beacons to %s: %s", target[0], exc)

    async def _beacon_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            gap = self.pace(self.interval_s)
            self.send_now()
            # On a tick: a paced gap (announced as ``bi``) comes out up to half a heartbeat longer or shorter,
            # well inside the receivers' freshness window of two gaps.
            await asyncio.sleep(self.ticks.wait(loop.time(), gap))

    def _readable(self) -> None:
        """A datagram came: stop watching the socket and read everything that has come ``batch_s`` later (on a
        paced LAN: at the next tick, and on every tick after it while the LAN stays paced); at once when nothing
        was read for a heartbeat (a lone peer's beacon, or the end of a stall of this process: I/O callbacks run
        before the timers that fell due meanwhile, the heartbeat's liveness sweep)."""
        assert self._loop is not None and self._sock is not None
        now = self._loop.time()
        if now - self._drained_at >= self.interval_s:
            self._flooded = self._drain()
            return
        self._loop.remove_reader(self._sock.fileno())
        if self.every and not self._flooded:
            self._read_on_tick(now, self.interval_s / 2)  # the next tick, however near
        else:
            self._drain_timer = self._loop.call_later(self.batch_s, self._drain_and_watch)

    def _drain_and_watch(self) -> None:
        assert self._loop is not None and self._sock is not None
        self._drain_timer = None
        self._flooded = True  # (should the read raise: the socket is watched again, as after a flood)
        try:
            self._flooded = self._drain()
        finally:
            # Paced: read again at the next tick, without a wake-up of our own; but not while datagrams come
            # faster than a tick's read takes them (a flood): then the socket is watched again until it ends.
            if self.every and not self._flooded:
                self._read_on_tick(self._loop.time(), self.interval_s)  # the tick after this one
            else:
                # Level-triggered: whatever is still waiting (past DRAIN_MAX_DATAGRAMS) starts the next window.
                self._loop.add_reader(self._sock.fileno(), self._readable)

    def _read_on_tick(self, now: float, delay: float) -> None:
        """Read what waits just before the tick nearest ``now + delay`` (see ``READ_AHEAD_S``)."""
        assert self._loop is not None
        at = self.ticks.after(now, delay) - READ_AHEAD_S
        self._drain_timer = self._loop.call_at(at, self._drain_and_watch)

    def _drain(self) -> bool:
        """Read and handle every datagram waiting (DRAIN_MAX_DATAGRAMS at most); True when more may wait."""
        assert self._loop is not None and self._sock is not None
        self._drained_at = self._loop.time()
        self.batches += 1
        sock = self._sock
        for _ in range(DRAIN_MAX_DATAGRAMS):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM_BYTES)
            except BlockingIOError:
                return False
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                log.debug("beacon socket: %s", exc)
                continue
            self.datagram_received(data, addr)
        return True

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram from ``addr``: a beacon is reported to ``on_origin``, a ``pmk doctor`` probe answered,
        anything else counted and dropped."""
        if data.startswith(PROBE_MAGIC):
            self._answer_probe(data, addr)
            return
        if data.startswith(ECHO_MAGIC):
            return  # an answer meant for a pmk doctor sharing our port
        self.on_datagram(data, addr[0])

    def _answer_probe(self, data: bytes, addr: tuple[str, int]) -> None:
        """Tell ``pmk doctor`` (at ``addr``) that its probe arrived here, at most ECHOES_PER_S times a second."""
        try:
            nonce = decode_probe(data)
        except MessageError as exc:
            self.reject(f"probe from {addr[0]}", str(exc))
            return
        second = int(time.monotonic())
        start, sent = self._echo_window
        sent = sent + 1 if start == second else 1
        self._echo_window = (second, sent)
        if sent > ECHOES_PER_S or self._sock is None:
            return
        me = self._beacon()
        try:
            self._sock.sendto(encode_echo(me.id, me.inc, nonce), addr)
            self.echoes += 1
        except OSError as exc:
            log.debug("cannot answer a probe from %s: %s", addr[0], exc)

    async def stop(self) -> None:
        """Say goodbye by beacon and close the socket."""
        if self._task is not None:
            self._task.cancel()
        self.send_now(bye=True)
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None


class MdnsDiscovery(Rejects):
    """Registers this node with zeroconf and browses for others."""

    def __init__(self, addresses: list[str], advertise: str, origin: Callable[[], Origin], on_origin: OnOrigin) -> None:
        super().__init__()
        self.addresses = addresses
        self.advertise = advertise
        self._me = origin
        self._on_origin = on_origin
        self._azc: Any = None
        self._browser: Any = None
        self._info: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: "pending" while zeroconf probes for our name, then "registered" or "failed: <why>" (pmk doctor asks).
        self.registration = "pending"

    async def start(self) -> None:
        """Start zeroconf on our addresses; registration completes in the background (~1.5 s of probing)."""
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        me = self._me()
        port = int(me.tcp.rsplit(":", 1)[1]) if me.tcp else 0
        self._azc = AsyncZeroconf(interfaces=self.addresses, ip_version=IPVersion.V4Only)
        ipc = None if me.pk and me.tcp else me.ipc  # in a keyed network the ipc path travels in the encrypted HELLO
        fields = {
            "id": me.id,
            "tcp": me.tcp,
            "ipc": ipc,
            "host": me.host,
            "v": "1",
            "inc": str(me.inc),
            "pk": me.pk,
            "cert": me.cert,
        }
        props = {k: v for k, v in fields.items() if v}
        self._info = AsyncServiceInfo(
            MDNS_TYPE,
            f"{me.id}.{MDNS_TYPE}",
            addresses=[socket.inet_aton(self.advertise)],
            port=port,
            properties=props,
            server=f"{me.id}.local.",
        )
        self._spawn(self._register())
        self._browser = AsyncServiceBrowser(self._azc.zeroconf, MDNS_TYPE, handlers=[self._on_change])

    async def _register(self) -> None:
        try:
            await (await self._azc.async_register_service(self._info))
            self.registration = "registered"
            log.info("mDNS: registered %s", self._info.name)
        except Exception as exc:  # noqa: BLE001 - mDNS is one way among several; keep going without it
            self.registration = f"failed: {exc}"
            log.warning("mDNS: could not register %s: %s", self._info.name, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            self._spawn(self._resolve(service_type, name))

    async def _resolve(self, service_type: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._azc.zeroconf, MDNS_RESOLVE_MS):
            return
        try:
            props = {k.decode(): v.decode() for k, v in (info.properties or {}).items() if k and v is not None}
            origin = origin_from(
                {
                    "v": int(props.get("v", "0")),
                    "id": props.get("id"),
                    "tcp": props.get("tcp"),
                    "ipc": props.get("ipc"),
                    "host": props.get("host", ""),
                    "dg": "",
                    "inc": int(props.get("inc", "0")),
                    "pk": props.get("pk", ""),
                    "cert": props.get("cert", ""),
                }
            )
        except (MessageError, ValueError, UnicodeDecodeError) as exc:
            self.reject(f"mDNS service {name}", str(exc))
            return
        self._on_origin(origin, "mdns")

    async def stop(self) -> None:
        """Unregister (peers see the goodbye) and close zeroconf."""
        if self._azc is None:
            return
        for task in list(self._tasks):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        with contextlib.suppress(Exception):  # best effort on the way out
            await asyncio.wait_for(self._azc.async_unregister_all_services(), 2.0)
        await self._azc.async_close()


class LocalDiscovery(Rejects):
    """A folder where the daemons of one host and network namespace leave their cards.

    The cards are read again only when the folder changed (its mtime: a card written, renamed into place or
    removed), not every heartbeat: a card says where a peer is, not that it lives (beacons and PINGs say
    that), and 50 daemons re-reading 49 cards twice a second cost ~13% of a core between them.
    """

    def __init__(
        self,
        base: Path,
        host_key: str,
        origin: Callable[[], Origin],
        on_origin: OnOrigin,
        interval_s: float,
        spawn: Spawn = unsupervised,
        ticks: Ticks | None = None,
    ) -> None:
        """``spawn`` starts the scan loop (restarted if it crashes); it reads on ``ticks`` (the daemon's grid)."""
        super().__init__()
        self._spawn = spawn
        self.folder = base / f"local-{hashlib.sha1(host_key.encode()).hexdigest()[:12]}"
        self._me = origin
        self._on_origin = on_origin
        self.interval_s = interval_s
        self.ticks = ticks or Ticks(interval_s)
        self._task: asyncio.Task[None] | None = None
        self._card: Path | None = None
        self._written: dict[str, Any] = {}
        self._seen_mtime_ns: int | None = None  # the folder's mtime when its cards were last read
        self.reads = 0  # times the cards were read (for tests: not every heartbeat)

    async def start(self) -> None:
        """Leave our card and start reading the others'."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._card = self.folder / f"{self._me().id}.json"
        self._write_card()
        self._task = self._spawn("local-discovery", self._scan_loop)

    def _write_card(self) -> None:
        assert self._card is not None
        fields = self._me().fields()
        tmp = self._card.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({**fields, "pid": os.getpid()}))
        tmp.rename(self._card)
        self._written = fields

    async def _scan_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._me().fields() != self._written:
                # Our seeds changed: a stale digest on the card would make every peer here say HELLO each second.
                self._write_card()
            if self._changed():
                for card in await asyncio.to_thread(self._read_cards):
                    self._on_origin(card, "local")
            await asyncio.sleep(self.ticks.wait(loop.time(), self.interval_s))

    def _changed(self) -> bool:
        """True when the folder may hold cards not read yet (its mtime moved since the last read)."""
        try:
            mtime_ns = self.folder.stat().st_mtime_ns
        except OSError:
            return True  # gone or unreadable: reading says why (and counts it)
        if mtime_ns == self._seen_mtime_ns and time.time_ns() - mtime_ns > MTIME_SETTLED_NS:
            return False
        # A folder changed within the file system's timestamp granularity of our last look may change again
        # with the same mtime: read once more, until its mtime is safely in the past.
        self._seen_mtime_ns = mtime_ns
        return True

    def _read_cards(self) -> list[Origin]:
        self.reads += 1
        out = []
        for path in self.folder.glob("*.json"):
            if path == self._card:
                continue
            try:
                raw = orjson.loads(path.read_bytes())
                pid = int(raw.get("pid", 0))
                if pid and not _alive(pid):
                    path.unlink(missing_ok=True)  # its daemon died without cleaning up
                    continue
                out.append(origin_from(raw))
            except (OSError, ValueError, MessageError, orjson.JSONDecodeError) as exc:
                self.reject(f"card {path.name}", str(exc))
        return out

    async def stop(self) -> None:
        """Take our card away."""
        if self._task is not None:
            self._task.cancel()
        if self._card is not None:
            self._card.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
