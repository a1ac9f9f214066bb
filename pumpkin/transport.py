"""ZeroMQ sockets: one inbox per node, one outbound link per peer, and a control socket.

- The inbox is a PULL socket bound to the node's data endpoint(s); every peer PUSHes to it. A reader callback
  on its descriptor drains the ready messages per wake-up (one ``await`` per message costs up to 10x, see
  ../shared/notes/measured-facts.md), up to ``INBOX_BATCH`` before yielding, so that a burst never
  starves the loop's other tasks (heartbeats: a peer that stops pinging under load looks dead).
- A link to a peer is a PUSH socket with a bounded high-water mark, written with NOBLOCK: a slow or dead
  peer never blocks the loop or other peers. Messages that do not fit wait in a bounded per-peer backlog
  flushed by a task; when that is full too, ``send`` says so and the router picks another replica.
- Packets for one peer made in the same turn of the loop leave as one message (``send_packet``): the first
  at once, the others at the end of the turn, up to ``BATCH_PACKETS`` a message.
- The control socket (ROUTER, always on ipc://) answers JSON requests from the ``pmk`` command line.
- In a keyed network (see ``membership``) every link and the inbox speak CurveZMQ: a link connects only with the
  peer's certified public key as the server key, and the inbox's ZAP handler (on the loop) tags every message
  with the client's public key, which the mesh checks against the members it knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.asyncio
import zmq.utils.z85

from .membership import NodeKeys

log = logging.getLogger(__name__)

PEER_HWM_MSGS = 10000
PEER_BACKLOG_MSGS = 10000
LINGER_MS = 1000
MAX_CONTROL_BYTES = 1 << 20
MAX_INBOX_FRAME_BYTES = 256 << 20
BATCH_PACKETS = 64  # packets per outbound message at most
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
ControlHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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


def recv_now_from(sock: zmq.Socket[bytes]) -> tuple[list[bytes], str]:
    """``recv_now``, with the public key ZAP gave the message's sender (its "User-Id")."""
    frame = sock.recv(_SEND_LAST, copy=False)
    user = frame.get("User-Id")
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(_SEND_LAST, copy=False)
        frames.append(frame.bytes)
    return frames, user if isinstance(user, str) else ""


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
    ) -> None:
        """``keys`` and ``server_key``: a keyed network (CurveZMQ everywhere); both None: an open one."""
        self.ctx = zmq.asyncio.Context()
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
        self.on_frames: FrameHandler = lambda frames, sender: None
        self.on_control: ControlHandler | None = None
        self.rejected = 0
        self.dropped_control = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._inbox: zmq.asyncio.Socket | None = None
        self._control: zmq.asyncio.Socket | None = None

    async def start(self) -> None:
        """Bind the inbox and the control socket and start serving them."""
        inbox = self.ctx.socket(zmq.PULL)
        if self.keys is not None:
            zap = self.ctx.socket(zmq.ROUTER)
            zap.setsockopt(zmq.LINGER, 0)
            zap.bind("inproc://zeromq.zap.01")  # before the inbox binds: every handshake then asks it
            self._tasks.append(asyncio.create_task(self._serve_zap(zap), name="zap"))
            inbox.curve_server = True
            inbox.curve_secretkey = self.keys.secret
            inbox.curve_publickey = self.keys.public
            inbox.zap_domain = b"pumpkin"
        inbox.setsockopt(zmq.RCVHWM, PEER_HWM_MSGS)
        inbox.setsockopt(zmq.MAXMSGSIZE, MAX_INBOX_FRAME_BYTES)
        inbox.setsockopt(zmq.LINGER, 0)
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
        control = self.ctx.socket(zmq.ROUTER)
        control.setsockopt(zmq.LINGER, 0)
        control.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_BYTES)
        control.bind(f"ipc://{self.runtime_dir / 'control'}")
        self.control_endpoint = _last_endpoint(control)
        self._control = control
        self._tasks.append(asyncio.create_task(self._receive(inbox), name="inbox"))
        self._tasks.append(asyncio.create_task(self._serve_control(control), name="control"))

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

        keyed = self.keys is not None

        def drain() -> None:
            for _ in range(INBOX_BATCH):
                try:
                    frames, sender = recv_now_from(sync) if keyed else (recv_now(sync), "")
                except zmq.Again:
                    return
                try:
                    self.on_frames(frames, sender)
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

    async def _serve_control(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            ident, body = frames[0], frames[-1]
            try:
                request = orjson.loads(body)
                if not isinstance(request, dict) or self.on_control is None:
                    raise ValueError("a control request is a JSON object with an 'op'")
                reply = await self.on_control(request)
            except Exception as exc:  # noqa: BLE001 - a bad request gets an error reply, not a crash
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            await sock.send_multipart([ident, b"", orjson.dumps(reply, default=str)])

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
        link.batch += frames
        link.batched += 1
        if link.batched >= BATCH_PACKETS:
            self._send_batch(node, link)
        return True

    def _end_turn(self, node: str, link: PeerLink) -> None:
        link.hot = False
        self._send_batch(node, link)

    def _send_batch(self, node: str, link: PeerLink) -> None:
        if not link.batched or self.links.get(node) is not link:
            return  # sent already (a full batch), or the link was closed meanwhile
        frames, link.batch, link.batched = link.batch, [], 0
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
        for sock in (self._inbox, self._control):
            if sock is not None:
                sock.close(linger=0)
        self.ctx.term()


def request_sync(endpoint: str, message: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Blocking form of ``request`` for the command line."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(orjson.dumps(message))
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise TimeoutError(f"no answer from {endpoint} within {timeout_s:g} s")
        reply = orjson.loads(sock.recv())
        return reply if isinstance(reply, dict) else {"ok": False, "error": "malformed reply"}
    finally:
        sock.close()
