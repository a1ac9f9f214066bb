"""The page's HTTP server (``pumpkin.httpd``) against arbitrary requests, over a real socket: whatever a client
sends, it answers with a well-formed status line or closes without one, never fails in a handler's place (no
500), and closes every connection it opened."""

from __future__ import annotations

import asyncio
import re

from hypothesis import example, given
from hypothesis import strategies as st

from tests.web.test_httpd import Watcher, exchange, serving, statuses

TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~ABCXYZabcxyz0123456789", min_size=1, max_size=12)
TARGET = st.one_of(
    st.sampled_from(["/echo/a", "/echo/%00", "/echo/%2e%2e", "/echo/a?q=1&q=2&read=1", "/forever", "/", "*"]),
    st.text(alphabet="/%?&=.ab\x00 \t~", max_size=40).map(lambda t: "/" + t),
)
HEADER = st.tuples(TOKEN, st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS"]) | TOKEN)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1x"]))
    head = f"{method} {draw(TARGET)} {version}\r\n"
    for name, value in draw(st.lists(HEADER, max_size=5)):
        head += f"{name}: {value}\r\n"
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        head += f"Content-Length: {draw(st.sampled_from([len(body), 0, len(body) + 5, -1]))}\r\n"
    elif draw(st.booleans()):
        head += "Transfer-Encoding: chunked\r\n"
    if draw(st.booleans()):
        head += "Host: x\r\n"
    return head.encode("latin-1") + b"\r\n" + body


STATUS_LINE = re.compile(rb"^HTTP/1\.1 [1-5]\d\d [^\r\n]*\r\n")


def check(data: bytes) -> None:
    async def main() -> tuple[bytes, Watcher]:
        async with serving() as (port, watcher):
            answer = await exchange(port, data)
            async with asyncio.timeout(5):  # the server's side of the connection ends too
                while watcher.events.count("closed") < watcher.events.count("opened"):
                    await asyncio.sleep(0.01)
            return answer, watcher

    answer, watcher = asyncio.run(main())
    assert answer == b"" or STATUS_LINE.match(answer), answer[:80]
    assert 500 not in statuses(answer), answer[:200]
    assert watcher.events.count("busy") == watcher.events.count("idle")


@given(requests())
@example(b"GET /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello")
@example(b"GET /echo/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
@example(b"POST /echo/a?read=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
def test_any_request_gets_a_well_formed_answer_or_none(data: bytes) -> None:
    check(data)


@given(st.binary(max_size=200))
def test_any_bytes_get_a_well_formed_answer_or_none(data: bytes) -> None:
    check(data)
