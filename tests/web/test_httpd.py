"""The page's HTTP server (``pumpkin.httpd``) over real sockets, spoken to byte by byte: keep-alive and pipelining,
HEAD, 404 and 405, bodies sent whole, chunked or with ``Expect: 100-continue``, bodies over the limit, answers sent
before the body was read, and the page's files without a way out of their folder."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pumpkin import httpd
from pumpkin.daemon import Daemon
from tests.helpers import cfg
from tests.web.test_api import hello, run


class Watcher:
    """Counts what the server tells about its connections."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def connection_opened(self, transport: asyncio.Transport) -> None:
        self.events.append("opened")

    def connection_busy(self, transport: asyncio.Transport) -> None:
        self.events.append("busy")

    def connection_idle(self, transport: asyncio.Transport) -> None:
        self.events.append("idle")

    def connection_closed(self, transport: asyncio.Transport) -> None:
        self.events.append("closed")


async def echo(request: httpd.Request) -> httpd.Response:
    """Answers with what it was asked: method, path, a query value and the body (read only when ?read=1)."""
    body = await request.read() if request.query.get("read") == "1" else b"-"
    text = f"{request.method} {request.path} q={request.query.get('q')} {request.content_type} ".encode() + body
    return httpd.Response(200, text, content_type="text/plain")


ENDED: list[str] = []


async def forever(request: httpd.Request) -> httpd.Stream:
    """A stream that sends one event, then waits for a next one that never comes."""
    stream = await request.stream(200, {"Content-Type": "text/event-stream"})
    try:
        await stream.write(b"data: one\n\n")
        await asyncio.Event().wait()
    finally:
        ENDED.append("forever")
    return stream


async def big(request: httpd.Request) -> httpd.Response:
    return httpd.Response(200, b"x" * (8 << 20), content_type="application/octet-stream")


@asynccontextmanager
async def serving(max_body: int = 1000, write_timeout_s: float = 10.0) -> AsyncIterator[tuple[int, Watcher]]:
    routes = httpd.Routes()
    routes.add("GET", "/echo/{name}", echo)
    routes.add("POST", "/echo/{name}", echo)
    routes.add("GET", "/forever", forever, head=False)
    routes.add("GET", "/big", big)

    async def handler(request: httpd.Request) -> httpd.Response | httpd.Stream:
        found, request.match_info = routes.match(request.method, request.path)
        return await found(request)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    watcher = Watcher()
    log = logging.LoggerAdapter(logging.getLogger("test.httpd"))
    server = httpd.HttpServer(handler, watcher, max_body, log, write_timeout_s)
    await server.serve([sock])
    try:
        yield sock.getsockname()[1], watcher
    finally:
        await server.close(2.0)


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, say it is all (half-close), and read everything until the server closes (b"" when it
    resets the connection first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    try:
        async with asyncio.timeout(5):
            return await reader.read()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def statuses(answer: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def test_keep_alive_pipelining_head_and_errors() -> None:
    async def main() -> None:
        async with serving() as (port, watcher):
            # Three requests on one connection, sent at once: answered in order; HEAD without its body.
            answer = await exchange(
                port,
                b"GET /echo/a%20b?q=1&q=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"HEAD /echo/x HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            assert statuses(answer) == [200, 200, 200], answer
            assert b"GET /echo/a b q=1 application/octet-stream -" in answer  # decoded path, first value
            assert b"HEAD /echo/x" not in answer and b"GET /echo/last" in answer
            assert answer.count(b"Content-Length:") == 3
            assert watcher.events[0] == "opened" and watcher.events.count("busy") == 3
            assert watcher.events[-1] == "closed"

            answer = await exchange(port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert statuses(answer) == [404]
            answer = await exchange(port, b"DELETE /echo/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert statuses(answer) == [405] and b"Allow: GET, HEAD, POST" in answer
            answer = await exchange(port, b"GET /echo/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert statuses(answer) == [404]  # an empty segment is no name

    run(main)


def test_bodies_whole_chunked_continued_too_big_or_unread() -> None:
    async def main() -> None:
        async with serving(max_body=1000) as (port, _):
            head = b"POST /echo/b?read=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/JSON; charset=utf-8\r\n"
            answer = await exchange(port, head + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
            assert statuses(answer) == [200] and answer.endswith(b"application/json hello")
            chunked = b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
            answer = await exchange(port, head + chunked)
            assert statuses(answer) == [200] and answer.endswith(b"hello")

            # Expect: 100-continue: the server asks for the body when it reads it.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 100")
            writer.write(b"hello")
            assert (await asyncio.wait_for(reader.read(), 5)).endswith(b"hello")
            writer.close()

            # Over the limit: said up front, or found as it arrives (chunked).
            answer = await exchange(port, head + b"Content-Length: 1001\r\n\r\n")
            assert statuses(answer) == [413]
            chunk = b"100\r\n" + b"x" * 256 + b"\r\n"
            answer = await exchange(port, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 5)
            assert statuses(answer) == [413]

            # Answered without reading the body: the body is skipped and the connection kept for the next one.
            unread = b"POST /echo/c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            answer = await exchange(port, unread + b"GET /echo/d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert statuses(answer) == [200, 200] and answer.endswith(b"GET /echo/d q=None application/octet-stream -")

    run(main)


def test_malformed_requests_get_400_or_431_and_the_connection_closes() -> None:
    async def main() -> None:
        async with serving() as (port, watcher):
            assert statuses(await exchange(port, b"NOT HTTP AT ALL\r\n\r\n")) == [400]
            big = b"GET /echo/a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * httpd.MAX_HEAD_BYTES + b"\r\n\r\n"
            assert statuses(await exchange(port, big)) == [431]
            assert statuses(await exchange(port, big[: httpd.MAX_HEAD_BYTES + 100])) == [431]  # still arriving
            # A client that hangs up half-way is not answered (nor logged as malformed).
            assert await exchange(port, b"GET /echo/a HT") == b""
            assert watcher.events.count("opened") == watcher.events.count("closed") == 4

    run(main)


def test_the_page_files_are_served_and_nothing_outside_their_folder(tmp_path) -> None:
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello()))
        await d.start()
        try:
            port = d.web.port

            async def get(path: str) -> bytes:
                request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                return await exchange(port, request.encode())

            d3 = await get("/static/vendor/d3/d3.min.js")
            assert statuses(d3) == [200] and b"text/javascript" in d3 and b"https://d3js.org" in d3
            # Kept by the browser and asked again with its ETag: 304 and no body while the file is unchanged.
            etag = re.search(rb"ETag: (\S+)\r\n", d3).group(1).decode()  # type: ignore[union-attr]
            request = f"GET /static/vendor/d3/d3.min.js HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            again = await exchange(port, f"{request}If-None-Match: {etag}\r\nConnection: close\r\n\r\n".encode())
            assert statuses(again) == [304] and again.endswith(b"\r\n\r\n") and b"Content-Length" not in again
            other = await exchange(port, f'{request}If-None-Match: "0-1"\r\nConnection: close\r\n\r\n'.encode())
            assert statuses(other) == [200] and b"https://d3js.org" in other
            assert b"image/svg+xml" in await get("/static/pumpkin.svg")
            for sneaky in (
                "/static/../pumpkin/web.py",
                "/static/%2e%2e/pumpkin/web.py",
                "/static/vendor/../../pumpkin/web.py",
                "/static//etc/passwd",
                "/static/.hidden",
                "/static/vendor",
                "/static/",
                "/static/app.js%00.txt",
                "/static/" + "a" * 5000,
            ):
                answer = await get(sneaky)
                assert statuses(answer) == [404], (sneaky, answer[:80])
        finally:
            await d.stop()

    run(main)


def test_a_stream_whose_client_hangs_up_ends_at_once() -> None:
    async def main() -> None:
        async with serving() as (port, watcher):
            ENDED.clear()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            async with asyncio.timeout(5):
                while b"data: one" not in got:
                    got += await reader.read(1024)
            assert statuses(got) == [200] and b"Transfer-Encoding: chunked" in got
            writer.close()  # while the stream waits for its next event, which would never come
            async with asyncio.timeout(2):
                while ENDED != ["forever"] or watcher.events[-1] != "closed":
                    await asyncio.sleep(0.02)
            answer = await exchange(port, b"HEAD /forever HTTP/1.1\r\nHost: x\r\n\r\n")
            assert statuses(answer) == [405]  # added without HEAD

    run(main)


def test_a_client_that_reads_none_of_its_answer_is_cut_off_after_the_write_timeout() -> None:
    async def main() -> None:
        async with serving(write_timeout_s=0.5) as (port, watcher):
            stuck = socket.socket()
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.setblocking(False)
            await asyncio.get_running_loop().sock_connect(stuck, ("127.0.0.1", port))
            stuck.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # ... and never reads the 8 MB
            try:
                async with asyncio.timeout(5):
                    while watcher.events[-1:] != ["closed"]:
                        await asyncio.sleep(0.05)
                assert watcher.events == ["opened", "busy", "idle", "closed"]
                # Meanwhile and after, others are served.
                answer = await exchange(port, b"GET /echo/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert statuses(answer) == [200]
            finally:
                stuck.close()

    run(main)
