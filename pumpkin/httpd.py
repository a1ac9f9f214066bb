"""A small HTTP/1.1 server on asyncio for the daemon's page: h11 speaks the protocol, this module runs the
connections, reads request bodies within a limit and hands every request to one handler.

Why not a web framework: aiohttp, which served the page before, is ~10 MB of a daemon's memory once imported
(issue 14: an idle daemon with its page opened must stay under 45 MB), and the page needs little of it: GET, HEAD
and POST on a dozen fixed routes, JSON answers, a few files and one server-sent event stream. h11 is the
protocol alone (pure Python, no dependencies, well kept): parsing, keep-alive, chunked bodies, framing errors.

The server owns the protocol: a malformed request is answered 400 (431 for headers over ``MAX_HEAD_BYTES``) and
its connection closed; a body over ``max_body`` bytes raises ``HttpError(413)`` from ``Request.read``; HEAD gets a
GET's head without its body; a body left unread is skipped to keep the connection (within ``LINGER_S``), else
the connection is closed politely (FIN first, then what the client still sends is dropped for up to ``LINGER_S``,
so that it reads the answer before the connection goes); a client that takes none of an answer for
``write_timeout_s`` is cut off; a streamed answer (server-sent events) ends when its client hangs up. It leaves to
its caller (``pumpkin.web``): routes (``Routes`` helps), how errors look, header timeouts and connection limits,
through ``ConnectionWatcher``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

import h11

MAX_HEAD_BYTES = 16 * 1024  # a request line and headers bigger than this are refused (431)
READ_BYTES = 64 * 1024
LINGER_S = 2.0  # how long a closing connection's unread input is drained, so the client reads our answer first


class HttpError(Exception):
    """Answer the request with ``status`` and ``message`` (raised by handlers and by ``Request.read``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Headers(dict[str, str]):
    """Request headers by lower-case name (a repeated header's values joined by ", ", as RFC 9110 allows)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class Response:
    """A whole answer: status, headers and body (``Content-Length`` is added when sent)."""

    def __init__(
        self,
        status: int = 200,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = dict(headers or {})
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        elif isinstance(body, str) and "Content-Type" not in self.headers:
            self.headers["Content-Type"] = "text/plain; charset=utf-8"
        self.close = close  # close the connection after this answer


class Stream:
    """An answer written piece by piece (server-sent events): ``Request.stream`` sends its head, ``write`` each
    chunk (chunked encoding), and the handler returns it when done."""

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    async def write(self, chunk: bytes) -> None:
        """Send ``chunk`` and wait until the transport's buffer drains; ConnectionError once the client is gone."""
        ex = self._exchange
        if ex.writer.transport.is_closing():
            raise ConnectionResetError("the client went away")
        ex.writer.write(ex.conn.send(h11.Data(data=chunk)))
        await ex.writer.drain()


class Request:
    """One request: what the handler reads. ``path`` is percent-decoded, ``query`` keeps each name's first value,
    ``match_info`` is filled in by the caller's routing."""

    def __init__(self, event: h11.Request, exchange: _Exchange) -> None:
        self.method = event.method.decode("ascii", "replace")
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        self.path = unquote(path)
        self.query: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            self.query.setdefault(name, value)
        self.headers = Headers()
        self.host_count = 0  # (two Host headers are refused: which one names the server?)
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            dict.__setitem__(self.headers, name, f"{self.headers[name]}, {value}" if name in self.headers else value)
            self.host_count += name == "host"
        self.match_info: dict[str, str] = {}
        self.transport: asyncio.Transport = exchange.writer.transport  # type: ignore[assignment]
        self._exchange = exchange
        self._body: bytes | None = None

    @property
    def content_type(self) -> str:
        """The body's media type, lower case, without parameters ("application/octet-stream" when not given)."""
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else "application/octet-stream"

    async def read(self) -> bytes:
        """The whole body; ``HttpError(413)`` past the server's limit (said by Content-Length, or as it arrives)."""
        if self._body is not None:
            return self._body
        ex = self._exchange
        limit = ex.server.max_body
        declared = self.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"the body is {declared} bytes, more than the {limit} this server takes")
        if ex.conn.they_are_waiting_for_100_continue:
            ex.writer.write(ex.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        chunks, size = [], 0
        while True:
            event = await ex.next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise HttpError(413, f"the body is more than the {limit} bytes this server takes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed in the middle of the body
                raise ConnectionResetError("the client went away before its body was complete")
        self._body = b"".join(chunks)
        return self._body

    async def stream(self, status: int = 200, headers: dict[str, str] | None = None) -> Stream:
        """Send the head of an answer whose body follows in pieces (``Stream.write``)."""
        ex = self._exchange
        ex.writer.write(
            ex.conn.send(h11.Response(status_code=status, headers=_header_list(headers or {}), reason=_reason(status)))
        )
        await ex.writer.drain()
        ex.streamed = True
        handler = asyncio.current_task()
        assert handler is not None
        ex.hangup_watch = asyncio.create_task(_cancel_at_hangup(ex.reader, handler))
        return Stream(ex)


Handler = Callable[[Request], Awaitable[Response | Stream]]


class Routes:
    """Handlers by method and path: in a pattern, ``{name}`` matches one path segment and a last ``{name:path}``
    the rest of the path; a GET route answers HEAD too unless added with ``head=False``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, list[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler, head: bool = True) -> None:
        segments = pattern.split("/")
        self._routes.append((method, segments, handler))
        if method == "GET" and head:
            self._routes.append(("HEAD", segments, handler))

    def listing(self) -> list[str]:
        """Every route as "METHOD /pattern", HEAD left out."""
        return ["{} {}".format(method, "/".join(segments)) for method, segments, _ in self._routes if method != "HEAD"]

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler of ``method`` on ``path`` and the values of its pattern's names; ``HttpError`` 404 when no
        pattern matches the path, 405 (with ``Allow``) when none of those that do takes the method."""
        parts = path.split("/")
        allowed: list[str] = []
        for route_method, segments, handler in self._routes:
            found = _match(segments, parts)
            if found is None:
                continue
            if route_method == method:
                return handler, found
            allowed.append(route_method)
        if allowed:
            raise HttpError(405, f"{method} is not allowed here", {"Allow": ", ".join(sorted(set(allowed)))})
        raise HttpError(404, f"nothing at {path}")


def _match(segments: list[str], parts: list[str]) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for i, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith(":path}"):
            rest = "/".join(parts[i:])
            if not rest:
                return None
            found[segment[1:-6]] = rest
            return found
        if i >= len(parts):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            if not parts[i]:
                return None
            found[segment[1:-1]] = parts[i]
        elif segment != parts[i]:
            return None
    return found if len(parts) == len(segments) else None


class ConnectionWatcher(Protocol):
    """Told of every connection's life, to time out idle ones and limit how many are open (``pumpkin.web``)."""

    def connection_opened(self, transport: asyncio.Transport) -> None: ...

    def connection_busy(self, transport: asyncio.Transport) -> None: ...

    def connection_idle(self, transport: asyncio.Transport) -> None: ...

    def connection_closed(self, transport: asyncio.Transport) -> None: ...


class _Exchange:
    """One connection's protocol state and streams, shared by its requests."""

    def __init__(self, server: HttpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.streamed = False
        self.eof = False
        # While an answer streams, nobody else reads the connection: this task does, to see the client go.
        self.hangup_watch: asyncio.Task[None] | None = None

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = b"" if self.eof else await self.reader.read(READ_BYTES)
            self.eof = not data
            self.conn.receive_data(data)


class HttpServer:
    """Serves ``handler`` on listening sockets; ``await close()`` stops it and drops every open connection."""

    def __init__(
        self,
        handler: Handler,
        watcher: ConnectionWatcher,
        max_body: int,
        logger: logging.LoggerAdapter[Any],
        write_timeout_s: float = 10.0,
    ) -> None:
        """``write_timeout_s``: a client that takes none of an answer for that long is cut off (else a client
        that asks and never reads would hold its connection, busy, for ever)."""
        self.handler = handler
        self.watcher = watcher
        self.max_body = max_body
        self.log = logger
        self.write_timeout_s = write_timeout_s
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: weakref.WeakKeyDictionary[asyncio.Transport, asyncio.TimerHandle] = weakref.WeakKeyDictionary()

    async def serve(self, sockets: Iterable[socket.socket]) -> None:
        """Accept connections on ``sockets`` (bound and listening; closed by ``close``)."""
        for sock in sockets:
            self._servers.append(await asyncio.start_server(self._connection, sock=sock, limit=READ_BYTES))

    async def close(self, timeout_s: float) -> None:
        """Stop accepting, cancel every connection's handler and close it; within ``timeout_s``."""
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        for transport, timer in list(self._closing.items()):
            timer.cancel()
            transport.abort()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await server.wait_closed()
        self._servers = []

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        transport: asyncio.Transport = writer.transport  # type: ignore[assignment]
        self.watcher.connection_opened(transport)
        ex = _Exchange(self, reader, writer)
        try:
            await self._requests(ex, transport)
        except ConnectionError:
            pass  # the client went away, or we cut it off
        except asyncio.CancelledError:
            # ``close`` cancelled us, or the client hung up on a stream: end normally, for asyncio's streams (3.11)
            # log a cancelled connection handler as an error.
            pass
        finally:
            if ex.hangup_watch is not None:
                ex.hangup_watch.cancel()
            self._tasks.discard(task)
            self.watcher.connection_closed(transport)
            # close, not abort: an answer still in the buffer goes out first; but a client that reads nothing
            # cannot hold the connection open for more than LINGER_S.
            transport.close()
            self._closing[transport] = asyncio.get_running_loop().call_later(LINGER_S, transport.abort)

    async def _requests(self, ex: _Exchange, transport: asyncio.Transport) -> None:
        while True:
            try:
                event = await ex.next_event()
            except h11.RemoteProtocolError as exc:
                if not ex.eof:  # a client that hung up half-way is not malformed
                    await self._refuse(ex, exc)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed
            if _head_bytes(event) > MAX_HEAD_BYTES:  # h11 counts only heads that arrive in pieces
                await self._refuse(ex, h11.RemoteProtocolError("the request's headers are too long", 431))
                return
            self.watcher.connection_busy(transport)
            try:
                keep = await self._answer(ex, Request(event, ex))
            finally:
                self.watcher.connection_idle(transport)
            if not keep:
                return
            ex.conn.start_next_cycle()
            ex.streamed = False

    async def _answer(self, ex: _Exchange, request: Request) -> bool:
        """Handle one request and send its answer; whether the connection can take another."""
        try:
            try:
                response = await self.handler(request)
            except HttpError as exc:
                response = Response(exc.status, exc.message + "\n", exc.headers, close=exc.status == 413)
        except ConnectionError:
            raise
        except h11.RemoteProtocolError as exc:  # a body that breaks the framing, found while reading it
            await self._refuse(ex, exc)
            return False
        except Exception:  # noqa: BLE001 - one request's failure must not take the server down
            self.log.exception("the handler of %s %s failed", request.method, request.path)
            if ex.streamed:
                return False
            response = Response(500, "internal error: see the daemon's log\n", close=True)
        if isinstance(response, Stream):
            if not ex.writer.transport.is_closing():
                ex.writer.write(ex.conn.send(h11.EndOfMessage()))
                await self._drain(ex)
            return False  # the hang-up watch has read what came after the request: no next one on this connection
        else:
            headers = dict(response.headers)
            if response.status not in (204, 304):  # (these have no body, and say nothing of its length)
                headers["Content-Length"] = str(len(response.body))
            if response.close:
                headers["Connection"] = "close"
            ex.writer.write(
                ex.conn.send(
                    h11.Response(
                        status_code=response.status, headers=_header_list(headers), reason=_reason(response.status)
                    )
                )
            )
            if response.body and request.method != "HEAD":
                ex.writer.write(ex.conn.send(h11.Data(data=response.body)))
            ex.writer.write(ex.conn.send(h11.EndOfMessage()))
        await self._drain(ex)
        if ex.conn.our_state is h11.DONE and ex.conn.their_state is h11.SEND_BODY:
            await _skip_body(ex)  # answered without reading it (refused, or not needed): keep the connection
        if ex.conn.our_state is h11.DONE and ex.conn.their_state is h11.DONE:
            return True
        if ex.conn.their_state is h11.SEND_BODY:
            await _linger(ex)  # a body we did not read: it must not reset the connection before our answer is read
        return False

    async def _refuse(self, ex: _Exchange, exc: h11.RemoteProtocolError) -> None:
        """Answer a malformed request (logged: loud once, then quiet; see ``web._LoudOnce``) and close."""
        status = 431 if "too long" in str(exc).lower() else exc.error_status_hint  # h11: "Receive buffer too long"
        peer = ex.writer.get_extra_info("peername")
        self.log.warning("refused a malformed request from %s (%d): %s", peer, status, exc)
        if ex.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"malformed request: {exc}\n".encode()
            head = {
                "Content-Type": "text/plain; charset=utf-8",
                "Content-Length": str(len(body)),
                "Connection": "close",
            }
            ex.writer.write(_raw_response(status, head, body))  # by hand: h11 has seen the connection break
            with contextlib.suppress(ConnectionError):
                await self._drain(ex)
        await _linger(ex)

    async def _drain(self, ex: _Exchange) -> None:
        """Wait until the answer is on its way; ConnectionResetError (the connection cut off) when the client
        takes none of it for ``write_timeout_s``."""
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await ex.writer.drain()
        except TimeoutError:
            self.log.debug("cut off a client that took no answer for %g s", self.write_timeout_s)
            ex.writer.transport.abort()
            raise ConnectionResetError("the client took none of its answer") from None


async def _cancel_at_hangup(reader: asyncio.StreamReader, handler: asyncio.Task[Any]) -> None:
    """Cancel ``handler`` (a streaming answer's) when its client closes the connection: a stream waiting for its
    next event would not see it before its next write (two writes, on a half-closed socket)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(READ_BYTES):
            pass  # nothing is expected from the client while it reads a stream
    handler.cancel()


async def _skip_body(ex: _Exchange) -> None:
    """Read and drop the rest of a request's body, if it comes within ``LINGER_S`` and the server's limit; else
    leave it (the connection is then closed)."""
    size = 0
    try:
        async with asyncio.timeout(LINGER_S):
            while ex.conn.their_state is h11.SEND_BODY and size <= ex.server.max_body:
                event = await ex.next_event()
                if isinstance(event, h11.Data):
                    size += len(event.data)
                elif not isinstance(event, h11.EndOfMessage):
                    return
    except (TimeoutError, h11.RemoteProtocolError):
        pass


async def _linger(ex: _Exchange) -> None:
    """Close after our answer without losing it: FIN first, then drop what the client still sends, a while."""
    writer = ex.writer
    if writer.transport.is_closing():
        return
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            while not ex.eof and await ex.reader.read(READ_BYTES):
                pass
    except (OSError, RuntimeError):  # TimeoutError and ConnectionError are OSErrors
        pass


def _head_bytes(event: h11.Request) -> int:
    """About how many bytes the request line and headers took."""
    return len(event.target) + 16 + sum(len(name) + len(value) + 4 for name, value in event.headers)


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _raw_response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    reason = _reason(status).decode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status} {reason}\r\n{head}\r\n".encode("latin-1") + body
