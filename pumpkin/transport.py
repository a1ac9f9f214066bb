"""ZeroMQ sockets: one inbox per node, one outbound link per peer, and a control socket.

- The inbox is a PULL socket bound to the node's data endpoint(s); every peer PUSHes to it. A reader callback
  on its descriptor drains the ready messages per wake-up (one ``await`` per message costs up to 10x, see
  ../shared/notes/measured-facts.md), up to ``INBOX_BATCH`` before yielding, so that a burst never
  starves the loop's other tasks (heartbeats: a peer that stops pinging under load looks dead).
- A link to a peer is a PUSH socket with a bounded high-water mark, written with NOBLOCK: a slow or dead
  peer never blocks the loop or other peers. Messages that do not fit wait in a bounded per-peer backlog
  flushed by a task; when that is full too, ``send`` says so, the mesh's driver tells the mesh (``on_unsent``) and
  the packet goes to another replica.
- Packets for one peer made in the same turn of the loop leave as one message (``send_packet``): the first
  at once, the others at the end of the turn, up to ``BATCH_PACKETS`` a message.
- The control socket answers JSON requests from the ``pmk`` command line: a Unix stream socket (``ipc://`` path)
  served by asyncio, not ZeroMQ, one request per connection (the request, then the end of the client's
  stream; the reply, then the end of ours). Not ZeroMQ's ipc:// because libzmq aborts the whole process when
  an ipc:// connection comes in while no file descriptor is free; asyncio pauses accepting for a second
  instead, so a ``pmk`` command then fails alone, with a clear time-out.
- In a keyed network (see ``membership``) every link and the inbox speak CurveZMQ: a link connects only with the
  peer's certified public key as the server key, and the inbox's ZAP handler (on the loop) tags every message
  with the client's public key, which the mesh checks against the members it knows.

Bounds on what a peer (or a stranger reaching the data port) can make the inbox hold (``InboxLimits``):

- A message is read frame by frame, copied while the frames read so far stay within ``message_max_bytes`` in
  all; past that the rest of it is dropped frame by frame, never copied, and the message is counted
  (``oversized``) and handed to ``on_oversized`` with its first frames. ZeroMQ's own MAXMSGSIZE, set to the same
  figure, is per frame: a larger frame makes it drop the connection before holding the frame. ZeroMQ hands over
  a multipart message only once its last frame has come, so while it arrives a message of many frames, each
  under the limit, is held whole by ZeroMQ (not by us): a bound that only knowing the peers (authentication)
  makes tight.
- Connections to the data port are watched through a ZeroMQ monitor (accepted, disconnected); one over
  ``connections_max`` in all, or over ``per_address_max`` from one IP address (not this host's own: its other
  daemons), is shut down at once and
  counted (``refused``): the node's file descriptors stay for what it needs (``connections_max`` is at most half
  the open-files limit, which the daemon raises to its hard limit at start; see ``raise_open_files_limit``).
  ZeroMQ itself aborts the process when an ipc:// connection comes while no descriptor is free (libzmq 4.3.5,
  ipc_listener.cpp, an assertion on EMFILE), and spins on a TCP one: keeping descriptors free is the defence.
  A connection that has not completed ZeroMQ's handshake within ``INBOX_HANDSHAKE_MS`` is closed by ZeroMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import zmq
import zmq.asyncio
import zmq.utils.z85

from .membership import NodeKeys
from .packet import pack_batch
from .supervisor import Spawn, log_crash, unsupervised

log = logging.getLogger(__name__)

PEER_HWM_MSGS = 10000
PEER_BACKLOG_MSGS = 10000
LINGER_MS = 1000
MAX_CONTROL_BYTES = 1 << 20
MESSAGE_MAX_BYTES = 256 << 20  # default of limits.message_max_bytes
OVERSIZED_HEAD_BYTES = 64 << 10  # of a message past the limit, this much of its first frames is handed on
CONTROL_READ_S = 10.0  # a control client has this long to send its request, and to take the reply
INBOX_HANDSHAKE_MS = 10_000  # a connection silent this long without completing ZeroMQ's handshake is closed
BATCH_PACKETS = 64  # packets per outbound message at most
BATCH_MAX_BYTES = 1 << 20  # a batch grows past this only by its first packet: see limits.message_max_bytes
TCP_STALL_MS = 2000
TCP_CONNECT_MS = 1000
TCP_STREAMS = 2
INBOX_BATCH = 500  # messages handled per wake-up before the loop's other tasks get a turn

# Plain ints: pyzmq's send_multipart combines enum flags per frame, which costs more than the send itself.
# (NOBLOCK is also the one flag recv needs.)
_SEND_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_SEND_LAST = int(zmq.NOBLOCK)

#: on_frames(frames, sender): a message from the inbox, with the sender's CurveZMQ public key ("" when open).
FrameHandler = Callable[[list[bytes], str], None]
#: server_key(node) -> the public key to connect to ``node`` with (Z85), or None when not known.
ServerKey = Callable[[str], bytes | None]
#: on_oversized(first_frames, frames, size): a message past message_max_bytes, of which only the first frames
#: (up to OVERSIZED_HEAD_BYTES) were kept; ``frames`` and ``size`` are the whole message's.
OversizedHandler = Callable[[list[bytes], int, int], None]
ControlHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class InboxLimits:
    """What one message, and the connections to the data port, may take (config ``[limits]``)."""

    message_max_bytes: int = MESSAGE_MAX_BYTES
    connections_max: int = 4096
    per_address_max: int = 64
    #: This host's own addresses: its other daemons are no strangers, and N of them on one host hold 2(N-1)
    #: connections each from one address (TCP_STREAMS per peer): past 33 daemons, over a per-address limit of 64,
    #: each refused one was dialled again at once, a storm of 40,000-80,000 TCP packets a second at idle.
    own_addresses: frozenset[str] = frozenset()


def send_now(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send a multipart message without blocking; raises zmq.Again (and sends nothing) when there is no room.

    ZeroMQ takes a multipart message whole or not at all: once the first frame is accepted, so are the rest.
    """
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, _SEND_LAST if i == last else _SEND_MORE)


def recv_now(sock: zmq.Socket[bytes]) -> list[bytes]:
    """Receive a whole multipart message without blocking (raises zmq.Again when none is ready).

    Frames' ``more`` flag instead of pyzmq's recv_multipart, which asks the socket for RCVMORE through an enum
    after every frame: a third less time per batched message here.
    """
    frame = sock.recv(_SEND_LAST, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(_SEND_LAST, copy=False)
        frames.append(frame.bytes)
    return frames


class Inbound(NamedTuple):
    """One message as ``recv_bounded`` read it."""

    frames: list[bytes]  # all of them; or, when not ``whole``, the first ones (up to OVERSIZED_HEAD_BYTES)
    frame_count: int  # frames in the message
    size: int  # bytes in the message
    whole: bool  # False: it was past the limit, and only its head is here
    sender: str = ""  # the "User-Id" ZAP gave the connection, when asked for (``user``)


def recv_bounded(sock: zmq.Socket[bytes], max_bytes: int, user: bool = False) -> Inbound:
    """Receive a whole multipart message without blocking (raises zmq.Again when none is ready), copying its
    frames only while they stay within ``max_bytes`` in all.

    Past that, the remaining frames are received and dropped without a copy (each is freed as the next comes),
    and only the message's first OVERSIZED_HEAD_BYTES are kept: we never hold more than ``max_bytes`` of it.
    """
    frame = sock.recv(_SEND_LAST, copy=False)
    sender = frame.get("User-Id") if user else ""
    size = len(frame)
    count = 1
    frames: list[bytes] = []
    whole = size <= max_bytes
    if whole:
        frames.append(frame.bytes)
    else:
        frames.append(bytes(frame.buffer[:OVERSIZED_HEAD_BYTES]))
    while frame.more:
        frame = sock.recv(_SEND_LAST, copy=False)
        count += 1
        size += len(frame)
        if whole and size <= max_bytes:
            frames.append(frame.bytes)
            continue
        if whole:  # just went past the limit: keep only the head of what was copied
            whole = False
            frames = _head(frames, OVERSIZED_HEAD_BYTES)
        if sum(map(len, frames)) < OVERSIZED_HEAD_BYTES:
            frames.append(bytes(frame.buffer[: OVERSIZED_HEAD_BYTES - sum(map(len, frames))]))
    return Inbound(frames, count, size, whole, sender if isinstance(sender, str) else "")


def _head(frames: list[bytes], limit: int) -> list[bytes]:
    out: list[bytes] = []
    for frame in frames:
        if limit <= 0:
            break
        out.append(frame[:limit])
        limit -= len(out[-1])
    return out


class ConnectionBook:
    """The connections the inbox holds, in all and per address: whether a new one may stay. Pure bookkeeping."""

    def __init__(self, max_total: int, max_per_address: int, own_addresses: frozenset[str] = frozenset()) -> None:
        """``own_addresses``: not held to ``max_per_address`` (see ``InboxLimits.own_addresses``)."""
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.own_addresses = own_addresses
        self._open: dict[int, str | None] = {}  # fd -> peer address (None: not counted per address, e.g. ipc://)
        self._per_address: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # why -> connections shut down
        self.gone_unchecked = 0  # connections closed (by their peer, or ZeroMQ) before they could be looked at
        self.kept = 0  # connections let stay, in all
        self.peak = 0  # the most held at once

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, fd: int, address: str | None) -> bool:
        """A connection was accepted on ``fd``: True when it may stay (it is then counted until ``closed``)."""
        if fd in self._open:
            self.closed(fd)  # its DISCONNECTED event came after this ACCEPTED one's descriptor number was reused
        if len(self._open) >= self.max_total:
            self.refused["total"] += 1
            return False
        if (
            address is not None
            and self._per_address[address] >= self.max_per_address
            and address not in self.own_addresses
            and not address.startswith("127.")
        ):
            self.refused["per_address"] += 1
            return False
        self._open[fd] = address
        if address is not None:
            self._per_address[address] += 1
        self.kept += 1
        self.peak = max(self.peak, len(self._open))
        return True

    def closed(self, fd: int) -> None:
        """The connection on ``fd`` is gone (one that was refused was never counted: nothing to do)."""
        if fd not in self._open:
            return
        address = self._open.pop(fd)
        if address is not None:
            self._per_address[address] -= 1
            if not self._per_address[address]:
                del self._per_address[address]

    def busiest(self, n: int = 5) -> list[tuple[str, int]]:
        """The addresses holding the most connections."""
        return self._per_address.most_common(n)


def raise_open_files_limit() -> tuple[int, int, int]:
    """Raise this process's soft limit of open files to its hard limit; returns (before, now, hard).

    A daemon holds a descriptor per connection, file and socket; the common soft default of 1024 is what a
    flood of idle connections exhausts first. Where the hard limit is unlimited, the kernel's nr_open caps it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft, now, hard


def open_files() -> int:
    """File descriptors this process has open now (-1 where /proc does not tell)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself opened
    except OSError:
        return -1


def _last_endpoint(sock: zmq.asyncio.Socket) -> str:
    value = sock.getsockopt(zmq.LAST_ENDPOINT)
    return value.decode() if isinstance(value, bytes) else str(value)


class PeerLink:
    """The outbound PUSH socket to one peer, with its backlog."""

    def __init__(
        self, ctx: zmq.asyncio.Context, endpoint: str, keys: NodeKeys | None = None, server_key: bytes | None = None
    ) -> None:
        """With ``keys`` and ``server_key``: CurveZMQ, accepting only a server that holds that key's secret."""
        self.endpoint = endpoint
        self.server_key = server_key
        sock = ctx.socket(zmq.PUSH)
        if keys is not None and server_key is not None:
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            sock.curve_serverkey = server_key
        sock.setsockopt(zmq.SNDHWM, PEER_HWM_MSGS)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on completed connections: a dead peer fills nothing
        if endpoint.startswith("tcp://"):
            # A TCP stream whose data stays unacknowledged this long is closed and dialled again (TCP_USER_TIMEOUT
            # on Linux): on a lossy link the kernel's doubling retransmission timeout otherwise stalls it for tens
            # of seconds. What it held is asked about and sent again by the mesh (QUERY, "unknown").
            sock.setsockopt(zmq.TCP_MAXRT, TCP_STALL_MS)
            # A lost SYN would cost the kernel's 1 s, then 2 s, ...: give up sooner and dial again.
            sock.setsockopt(zmq.CONNECT_TIMEOUT, TCP_CONNECT_MS)
            # Several TCP streams to the peer, taking messages in turn: one that loss stalls holds up only its
            # share (nothing here depends on order), and each has a congestion window of its own.
            for _ in range(TCP_STREAMS - 1):
                sock.connect(endpoint)
        sock.connect(endpoint)
        self.socket = sock
        self.sync: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        self.backlog: deque[list[bytes]] = deque()
        self.batch: list[bytes] = []  # packets' frames queued during this turn of the loop, sent as one message
        self.batched = 0
        self.batch_bytes = 0
        self.hot = False  # a packet left during this turn of the loop: the next ones wait for the batch
        self.sent = 0
        self.flusher: asyncio.Task[None] | None = None

    def close(self, linger_ms: int = LINGER_MS) -> None:
        """Close the socket; queued messages get ``linger_ms`` to leave."""
        if self.flusher is not None:
            self.flusher.cancel()
        self.socket.close(linger=linger_ms)


class Transport:
    """The node's ZeroMQ sockets. Create, ``await start()``, use, ``await close()``."""

    def __init__(
        self,
        runtime_dir: Path,
        endpoint_type: str,
        endpoints: tuple[str, ...] = (),
        tcp_host: str = "*",
        tcp_port: int = 0,
        keys: NodeKeys | None = None,
        server_key: ServerKey | None = None,
        limits: InboxLimits | None = None,
        on_oversized: OversizedHandler | None = None,
        *,
        on_frames: FrameHandler,
        on_control: ControlHandler,
        spawn: Spawn = unsupervised,
        report: Callable[[str, BaseException], None] = log_crash,
    ) -> None:
        """``keys`` and ``server_key``: a keyed network (CurveZMQ everywhere); both None: an open one.
        ``on_frames``: each message from the inbox; ``on_control``: each request on the control socket;
        ``spawn``: starts the inbox loops (a daemon's supervisor); ``report(what, error)``: a per-peer flusher
        crashed (logged and counted; the next message to that peer starts a new one)."""
        self._spawn = spawn
        self._report = report
        self.ctx = zmq.asyncio.Context()
        self.limits = limits or InboxLimits()
        self.on_oversized: OversizedHandler = on_oversized or (lambda head, frames, size: None)
        self.connections = ConnectionBook(
            self.limits.connections_max, self.limits.per_address_max, self.limits.own_addresses
        )
        self.oversized = 0  # messages past limits.message_max_bytes
        self.oversized_bytes = 0  # their bytes, dropped
        self.accepted = 0  # connections accepted on the data endpoints
        self.flush_errors = 0  # per-peer flushers that crashed
        self.keys = keys
        self.server_key = server_key
        self.refused_links = 0  # links not made: no certified key known for the peer
        self.runtime_dir = runtime_dir
        self.endpoint_type = endpoint_type
        self._wanted = endpoints
        self._tcp_host = tcp_host
        self._tcp_port = tcp_port
        self.data_endpoints: list[str] = []
        self.control_endpoint = ""
        self.links: dict[str, PeerLink] = {}
        self.on_frames = on_frames
        self.on_control = on_control
        self.rejected = 0
        self.dropped_control = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._inbox: zmq.asyncio.Socket | None = None
        self._control: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind the inbox and the control socket and start serving them."""
        inbox = self.ctx.socket(zmq.PULL)
        if self.keys is not None:
            zap = self.ctx.socket(zmq.ROUTER)
            zap.setsockopt(zmq.LINGER, 0)
            zap.bind("inproc://zeromq.zap.01")  # before the inbox binds: every handshake then asks it
            self._tasks.append(self._spawn("zap", lambda: self._serve_zap(zap), critical=True))
            inbox.curve_server = True
            inbox.curve_secretkey = self.keys.secret
            inbox.curve_publickey = self.keys.public
            inbox.zap_domain = b"pumpkin"
        inbox.setsockopt(zmq.RCVHWM, PEER_HWM_MSGS)
        inbox.setsockopt(zmq.MAXMSGSIZE, self.limits.message_max_bytes)  # per frame: see the module doc
        inbox.setsockopt(zmq.HANDSHAKE_IVL, INBOX_HANDSHAKE_MS)
        inbox.setsockopt(zmq.LINGER, 0)
        # Before binding, so that no connection is accepted unseen.
        monitor = self._monitor(inbox)
        wanted = list(self._wanted)
        if not wanted:
            # zmq.IPC: ipc:// for daemons on this host, and tcp:// still, for other hosts.
            wanted = [f"tcp://{self._tcp_host}:{self._tcp_port or '*'}"]
            if self.endpoint_type == "zmq.IPC":
                wanted.insert(0, f"ipc://{self.runtime_dir / 'data'}")
        for url in wanted:
            inbox.bind(url)
            self.data_endpoints.append(_last_endpoint(inbox))
        self._inbox = inbox
        path = self.runtime_dir / "control"
        path.unlink(missing_ok=True)  # left by a run that was killed
        self._control = await asyncio.start_unix_server(self._serve_control, path=str(path))
        self.control_endpoint = f"ipc://{path}"
        # The inbox is critical: without it the node is deaf. Watching connections only counts them: restarted.
        self._tasks.append(self._spawn("inbox", lambda: self._receive(inbox), critical=True))
        self._tasks.append(self._spawn("inbox-connections", lambda: self._watch_connections(monitor)))

    # -- inbound ---------------------------------------------------------------------------------

    async def _serve_zap(self, sock: zmq.asyncio.Socket) -> None:
        """ZAP (RFC 27): let every CurveZMQ client in, naming it by its public key. Whether that key belongs to a
        member is the mesh's question, per message: a HELLO with a valid certificate is how a key joins."""
        while True:
            request = await sock.recv_multipart()
            try:
                envelope, _, version, request_id, _domain, _address, _identity, mechanism, *credentials = request
            except ValueError:
                continue  # not a ZAP request: libzmq never sends one like it
            if mechanism == b"CURVE" and credentials and len(credentials[0]) == 32:
                reply = [b"200", b"OK", zmq.utils.z85.encode(credentials[0])]
            else:
                reply = [b"400", b"CurveZMQ only", b""]
            await sock.send_multipart([envelope, b"", version, request_id, *reply, b""])

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        """Serve the inbox from the loop's own reader callback on the socket's file descriptor.

        Cheaper per wake-up than awaiting ``sock.poll`` (no future per message burst), which is most of a
        hop's latency when packets come one at a time. ZeroMQ's descriptor is edge-triggered: it signals
        only when the socket's state changes, so each wake-up drains until Again (or a batch, then comes back
        through call_soon for the rest).
        """
        loop = asyncio.get_running_loop()
        sync: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        fd = int(sync.getsockopt(zmq.FD))
        idle = asyncio.Event()

        max_bytes = self.limits.message_max_bytes
        keyed = self.keys is not None

        def drain() -> None:
            for _ in range(INBOX_BATCH):
                try:
                    got = recv_bounded(sync, max_bytes, keyed)
                except zmq.Again:
                    return
                try:
                    if got.whole:
                        self.on_frames(got.frames, got.sender)
                    else:
                        self.oversized += 1
                        self.oversized_bytes += got.size
                        self.on_oversized(got.frames, got.frame_count, got.size)
                except Exception:  # noqa: BLE001 - one bad message must not stop the inbox
                    self.rejected += 1
                    log.exception("handling an inbound message failed")
            loop.call_soon(drain)  # a steady stream must not starve heartbeats, timers and control

        loop.add_reader(fd, drain)
        try:
            drain()  # messages that came before the reader was added do not signal again
            await idle.wait()  # until cancelled by close()
        finally:
            loop.remove_reader(fd)

    def _monitor(self, inbox: zmq.asyncio.Socket) -> zmq.asyncio.Socket:
        """A PAIR socket receiving the inbox's connection events (accepted, disconnected)."""
        address = f"inproc://inbox-monitor-{id(self)}"
        inbox.monitor(address, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        events = self.ctx.socket(zmq.PAIR)
        # No high-water mark on the way to us: at one, ZeroMQ's I/O thread would block on sending an event (the
        # monitor's send does not give up) while our loop is busy. Two events per connection, small ones.
        events.setsockopt(zmq.RCVHWM, 0)
        events.setsockopt(zmq.LINGER, 0)
        events.connect(address)
        return events

    async def _watch_connections(self, events: zmq.asyncio.Socket) -> None:
        """Count the inbox's connections, and shut down those over the limits (see the module doc)."""
        sync: zmq.Socket[bytes] = zmq.Socket.shadow(events.underlying)
        try:
            while True:
                await events.poll(None, zmq.POLLIN)  # type: ignore[call-arg]  # pyzmq's stub lacks the flag
                while True:
                    try:
                        head, endpoint = recv_now(sync)
                    except zmq.Again:
                        break
                    except ValueError:
                        continue  # not the two frames of an event
                    event, fd = struct.unpack("=hi", head[:6])
                    if event == zmq.EVENT_ACCEPTED:
                        self.accepted += 1
                        self._admit(fd, endpoint.decode(errors="replace"))
                    elif event == zmq.EVENT_DISCONNECTED:
                        self.connections.closed(fd)
        finally:
            events.close(linger=0)

    def _admit(self, fd: int, endpoint: str) -> None:
        """A connection was accepted on ``fd`` (by the data endpoint ``endpoint``): keep it, or shut it down."""
        try:
            conn = socket.socket(fileno=os.dup(fd))  # our own descriptor of it: ZeroMQ owns ``fd``
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                self.connections.gone_unchecked += 1  # closed already: nothing to look at
                return
            if exc.errno not in (errno.EMFILE, errno.ENFILE):  # unexpected: counted by its name, never silent
                self.connections.refused[f"unchecked-{errno.errorcode.get(exc.errno or 0, exc.errno)}"] += 1
                return
            # No descriptor free for a copy: a flood of connections is using them up, and shutting the extra ones
            # down is what ends it. Look through ZeroMQ's own descriptor instead, at once: waiting for a free one
            # lost the race to ZeroMQ's next accept, under load for longer than its handshake timeout.
            try:
                conn = socket.socket(fileno=fd)
            except OSError:
                self.connections.gone_unchecked += 1
                return
            try:
                self._admit_socket(conn, fd, endpoint)
            finally:
                conn.detach()  # ``fd`` stays ZeroMQ's to close
            return
        with conn:
            self._admit_socket(conn, fd, endpoint)

    def _admit_socket(self, conn: socket.socket, fd: int, endpoint: str) -> None:
        """``_admit`` with ``conn``, a socket object on the accepted connection ``fd`` (not closed here)."""
        try:
            local = conn.getsockname()
            address: str | None = None
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                # By the time the event is read, ``fd`` may be another descriptor (that connection closed and the
                # number was reused): it is one of ours only if it is a connection to our data port.
                if not endpoint.endswith(f":{local[1]}"):
                    self.connections.gone_unchecked += 1
                    return
                address = str(conn.getpeername()[0])
            elif conn.family != socket.AF_UNIX or not endpoint.endswith(str(local)):
                self.connections.gone_unchecked += 1
                return
        except OSError:
            self.connections.gone_unchecked += 1  # closed meanwhile (by its peer, or by ZeroMQ's handshake timeout)
            return
        if not self.connections.opened(fd, address):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # ZeroMQ sees the end of the stream and closes ``fd`` itself

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One control request: its JSON until the client ends its stream, then our reply."""
        try:
            body = await asyncio.wait_for(_read_all(reader, MAX_CONTROL_BYTES), CONTROL_READ_S)
            try:
                if body is None:
                    raise ValueError(f"a control request is at most {MAX_CONTROL_BYTES} bytes")
                request = orjson.loads(body)
                if not isinstance(request, dict):
                    raise ValueError("a control request is a JSON object with an 'op'")
                reply = await self.on_control(request)
            except Exception as exc:  # noqa: BLE001 - a bad request gets an error reply, not a crash
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(orjson.dumps(reply, default=str))
            await asyncio.wait_for(writer.drain(), CONTROL_READ_S)
        except (TimeoutError, OSError):
            pass  # the client went away, or never finished its request: nobody to answer
        finally:
            writer.close()

    # -- outbound --------------------------------------------------------------------------------

    def connect(self, node: str, endpoint: str) -> None:
        """Open (or re-point) the link to ``node`` at ``endpoint`` (in a keyed network: only with its certified
        key as the server key; without one known, no link is made)."""
        server_key = None
        if self.keys is not None:
            server_key = self.server_key(node) if self.server_key is not None else None
            if server_key is None:
                self.refused_links += 1
                return
        link = self.links.get(node)
        if link is not None and link.endpoint == endpoint and link.server_key == server_key:
            return
        if link is not None:
            link.close(linger_ms=0)  # what was queued for the old endpoint is not for the new one
        self.links[node] = PeerLink(self.ctx, endpoint, self.keys, server_key)

    def disconnect(self, node: str) -> list[list[bytes]]:
        """Close the link to ``node``, dropping what is queued on it (the peer is gone: whatever was in it
        is re-routed by its sender, and must not reach a restarted process at the same endpoint); returns
        the messages that were still in its backlog."""
        link = self.links.pop(node, None)
        if link is None:
            return []
        left = list(link.backlog)
        link.close(linger_ms=0)
        return left

    def send_packet(self, node: str, frames: list[bytes]) -> bool:
        """Queue a packet's frames for ``node``; False when there is no link or no room.

        The first packet of a turn of the event loop leaves at once; the ones queued after it in the same
        turn leave together at the end of the turn, as one ZeroMQ message (their frames back to back, see
        ``packet``): one send and one wake-up of the peer for the lot instead of one per packet, and no
        added latency for a packet alone.
        """
        link = self.links.get(node)
        if link is None or len(link.backlog) >= PEER_BACKLOG_MSGS:
            return False
        if not link.hot:
            # The first packet of a turn leaves at once (no added latency); the ones after it in the same
            # turn are batched, and the batch leaves when the turn ends.
            link.hot = True
            asyncio.get_running_loop().call_soon(self._end_turn, node, link)
            self._push(node, link, frames)
            return True
        size = sum(map(len, frames))
        if link.batched and link.batch_bytes + size > BATCH_MAX_BYTES:
            self._send_batch(node, link)  # large packets travel alone: a message stays under the peer's limit
        link.batch += frames
        link.batched += 1
        link.batch_bytes += size
        if link.batched >= BATCH_PACKETS:
            self._send_batch(node, link)
        return True

    def _end_turn(self, node: str, link: PeerLink) -> None:
        link.hot = False
        self._send_batch(node, link)

    def _send_batch(self, node: str, link: PeerLink) -> None:
        if not link.batched or self.links.get(node) is not link:
            return  # sent already (a full batch), or the link was closed meanwhile
        frames, link.batch, link.batched, link.batch_bytes = link.batch, [], 0, 0
        if len(frames) > 3:
            frames = [pack_batch(frames)]  # one frame for the lot (see packet)
        self._push(node, link, frames)  # accepted when queued: never refused now

    def send(self, node: str, frames: list[bytes]) -> bool:
        """Queue ``frames`` for ``node`` without blocking; False when there is no link or no room."""
        link = self.links.get(node)
        if link is None:
            return False
        if link.batched:
            self._send_batch(node, link)  # packets queued before this message leave before it
        if len(link.backlog) >= PEER_BACKLOG_MSGS:
            return False
        self._push(node, link, frames)
        return True

    def _push(self, node: str, link: PeerLink, frames: list[bytes]) -> None:
        """Send now, or keep in the backlog (in order) for the flusher."""
        if not link.backlog:
            try:
                send_now(link.sync, frames)
                link.sent += 1
                return
            except zmq.Again:
                pass
        link.backlog.append(frames)
        if link.flusher is None or link.flusher.done():
            link.flusher = asyncio.create_task(self._flush(link), name=f"flush-{node}")
            link.flusher.add_done_callback(self._flushed)

    def send_control(self, node: str, frames: list[bytes]) -> bool:
        """Send a small control message now or never: heartbeats are not worth a backlog."""
        link = self.links.get(node)
        if link is None:
            return False
        try:
            send_now(link.sync, frames)
        except zmq.Again:
            self.dropped_control += 1
            return False
        return True

    def _flushed(self, task: asyncio.Task[None]) -> None:
        """A per-peer flusher ended: a crash is reported, never lost with the task."""
        if not task.cancelled() and task.exception() is not None:
            self.flush_errors += 1
            self._report(task.get_name(), task.exception())  # type: ignore[arg-type]  # not None, just checked

    async def _flush(self, link: PeerLink) -> None:
        while link.backlog:
            await link.socket.poll(None, zmq.POLLOUT)  # type: ignore[call-arg]  # as above
            while link.backlog:
                try:
                    send_now(link.sync, link.backlog[0])
                except zmq.Again:
                    break
                link.backlog.popleft()
                link.sent += 1

    async def close(self) -> None:
        """Stop serving and close every socket."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self.links.values():
            link.close()  # our own stop: ACKs and BYEs get LINGER_MS to leave
        self.links.clear()
        if self._control is not None:
            self._control.close()
        if self._inbox is not None:
            self._inbox.close(linger=0)
        self.ctx.term()


async def _read_all(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """Everything until the end of the stream; None when it is longer than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def request_sync(endpoint: str, message: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Send one control request to the daemon at ``endpoint`` (``ipc://PATH``) and return its reply.

    Raises TimeoutError when it does not answer within ``timeout_s``, ConnectionError when nothing listens there.
    """
    path = endpoint.removeprefix("ipc://")
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(path)
            sock.sendall(orjson.dumps(message))
            sock.shutdown(socket.SHUT_WR)
            chunks: list[bytes] = []
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            raise TimeoutError(f"no answer from {endpoint} within {timeout_s:g} s") from None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionError(f"nothing answers at {endpoint} ({exc.strerror})") from None
    try:
        reply = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        return {"ok": False, "error": "malformed reply (the daemon stopped while answering?)"}
    return reply if isinstance(reply, dict) else {"ok": False, "error": "malformed reply"}
