"""The page's port, bound when the daemon starts; the page's server (``pumpkin.web`` over ``pumpkin.httpd``) made at
its first connection.

The page's views and server are ~1 MB of a daemon's memory (aiohttp, which served it before, was ~11 MB: issue
14, ``bench/README.md``), and most daemons' pages are never opened. So the daemon binds the port at start as
before (a taken port moves the page to the next one, an address it cannot bind stops the start, the URL is
logged), then only watches the listening sockets. The first connection waits in the kernel's backlog while
``pumpkin.web`` is imported (on a thread) and its server is started on the same sockets; that server then accepts
it and every later one.

Until then nothing samples the daemon: the page's rates (packets/s) count from its first connection on. A failure
to start the server then is logged as an error and closes the port (connections are refused from then on): the
daemon goes on without its page.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from importlib import import_module
from typing import TYPE_CHECKING

from .config import HttpConfig
from .supervisor import Spawn, unsupervised

if TYPE_CHECKING:
    from .query import NodeQuery
    from .web import Commands, WebServer

log = logging.getLogger(__name__)

PORT_TRIES = 10  # the configured port, then the next 9, then any free one
BACKLOG = 100  # connections the kernel holds before one is accepted (asyncio's default for a server)
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "*")


def page_url(host: str, port: int) -> str:
    """The page's URL as the log and ``/api/v1/node`` give it (a wildcard bind: the loopback one)."""
    name = "127.0.0.1" if host in WILDCARD_HOSTS else f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/"


async def listen(host: str, port: int) -> list[socket.socket]:
    """Listening, non-blocking sockets on every address ``host`` resolves to ("": every interface, IPv4 and IPv6),
    all on ``port`` (0: one free port for them all); OSError when one cannot be bound.

    Made as asyncio's ``create_server`` makes them (``SO_REUSEADDR``, an IPv6 socket only for IPv6), so that its
    server can take them over."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this machine lacks (no IPv6): asyncio skips it too
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the IPv4 socket takes IPv4
            if len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])  # port 0: the first one's
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EADDRNOTAVAIL, f"no address to listen on for {host!r}")
    return sockets


async def listen_page(host: str, wanted: int) -> list[socket.socket]:
    """``listen`` on ``wanted``, else on one of the next ``PORT_TRIES - 1`` ports, else on any free one."""
    tries = [wanted + i for i in range(PORT_TRIES) if wanted + i <= 65535] if wanted else []
    for port in [*tries, 0]:
        try:
            return await listen(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
    raise AssertionError("unreachable: port 0 either binds or raises")


class WebPort:
    """The page of a daemon: ``await start()`` binds its port, the first connection starts its ``server``;
    ``await stop()`` first at shutdown, at any point (before a connection came, while the server starts, after)."""

    def __init__(self, query: NodeQuery, commands: Commands, config: HttpConfig, spawn: Spawn = unsupervised) -> None:
        """What ``pumpkin.web.WebServer`` is given, at the first connection."""
        self.query = query
        self.commands = commands
        self.config = config
        self._spawn = spawn
        self.url = ""
        self.port = 0
        self.server: WebServer | None = None  # from the first connection on
        self._sockets: list[socket.socket] = []
        self._watched: list[int] = []  # file descriptors with a reader on the loop
        self._starting: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Bind (see ``[http] port``), log the page's URL and wait for its first connection."""
        host, wanted = self.config.host, self.config.port
        self._sockets = await listen_page(host, wanted)
        self.port = int(self._sockets[0].getsockname()[1])
        if wanted and self.port != wanted:
            log.warning("Web port %d is taken (another pmk?); serving on %d instead", wanted, self.port)
        self.url = page_url(host, self.port)
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._first_connection)
            self._watched.append(sock.fileno())
        extra = (
            f" (and on every interface: http://{socket.gethostname()}:{self.port}/)" if host in WILDCARD_HOSTS else ""
        )
        log.info("Web page: %s%s", self.url, extra)

    def _unwatch(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._watched:
            loop.remove_reader(fd)
        self._watched = []

    def _first_connection(self) -> None:
        # Readers off at once: the connection stays readable (in the backlog) until the server accepts it.
        self._unwatch()
        if self._starting is None and not self._closing:
            self._starting = self._spawn("web-start", self._serve)

    async def _serve(self) -> None:
        """Import the page's server and start it on the bound sockets; on failure, log it and close the port."""
        began = time.monotonic()
        try:
            # On a thread: the import takes ~15 ms (more on a loaded machine, or before it is compiled), while the
            # loop goes on with the daemon's work.
            web = await asyncio.to_thread(import_module, "pumpkin.web")
            self.server = web.WebServer(self.query, self.commands, self.config, spawn=self._spawn)
            await self.server.start(self._sockets)
        except Exception:  # noqa: BLE001 - the page must never take the daemon down
            log.exception(
                "web: the page's server failed to start at its first connection: port %d now refuses "
                "connections (the daemon goes on without its page)",
                self.port,
            )
            await self._close()
            return
        log.info("web: first connection: the page's server started in %.2f s", time.monotonic() - began)

    async def _close(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop()
            self.server = None
        for sock in self._sockets:
            sock.close()  # a socket asyncio's server took is closed already: closing again does nothing

    async def stop(self) -> None:
        """Release the port, stopping the page's server if it started; safe to call twice."""
        self._closing = True
        self._unwatch()
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        if self.server is not None:
            await self.server.stop()
            self.server = None
        for sock in self._sockets:
            sock.close()
        self._sockets = []
