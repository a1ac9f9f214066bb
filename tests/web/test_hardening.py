"""The HTTP server against slow and hostile clients (issue 11): header and body timeouts, the connection and
event-stream limits, the ``Host`` check, what a GET shows without the token, and POSTs only as JSON with it.

Daemons run in this process (ipc://, discovery off, HTTP on 127.0.0.1 port 0) with the timeouts shrunk, so
each test takes seconds; the last test runs a real ``pmk`` with a low open-file limit inside its sandbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pumpkin import httpd, web
from pumpkin.daemon import Daemon
from tests.helpers import async_wait_until, cfg, wait_until
from tests.web.conftest import api, web_url
from tests.web.test_api import BOOM, Client, hello, run, seed_file

TOKEN = "tok-3f9a-secret"


async def closed_after(reader: asyncio.StreamReader, timeout_s: float) -> tuple[float, bytes]:
    """Read until the server closes the connection; (seconds it took, what came before)."""
    t0, got = time.monotonic(), b""
    async with asyncio.timeout(timeout_s):
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return time.monotonic() - t0, got


# -- slow clients ------------------------------------------------------------------------------------


def test_half_a_header_is_cut_off_after_the_header_timeout_while_others_are_served(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(web, "HEADER_TIMEOUT_S", 1.0)

    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello()))
        await d.start()
        try:
            port, host = d.web.port, f"Host: 127.0.0.1:{d.web.port}\r\n".encode()
            half_r, half_w = await asyncio.open_connection("127.0.0.1", port)
            half_w.write(b"GET /api/v1/node HTTP/1.1\r\n" + host)  # ... and nothing more
            slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)

            async def trickle() -> None:
                """Slowloris proper: a byte every 50 ms, so the connection is never silent."""
                with pytest.raises(ConnectionError):
                    for byte in b"GET /api/v1/node HTTP/1.1\r\n" + host + b"X-Slow: " + b"a" * 2000:
                        slow_w.write(bytes([byte]))
                        await slow_w.drain()
                        await asyncio.sleep(0.05)

            trickling = asyncio.create_task(trickle())
            cut = asyncio.gather(closed_after(half_r, 10), closed_after(slow_r, 10))
            served = 0
            async with aiohttp.ClientSession() as s, s.get(d.web.url + "api/v1/events") as stream:
                c = Client(s, d)
                while not cut.done():
                    status, node = await c.get("/api/v1/node")
                    assert status == 200 and node["id"] == d.node_id
                    served += 1
                    await asyncio.sleep(0.05)
                (half_s, half_got), (slow_s, _) = await cut
                await trickling
                assert half_got == b""  # no answer: just closed
                assert 0.9 <= half_s <= 3.0 and 0.9 <= slow_s <= 3.0, (half_s, slow_s)
                assert served >= 10  # a normal client was served all along
                # The event stream, open longer than the timeout, is a request being answered: it stays.
                d.inject("NOBODY", 1)
                got = b""
                async with asyncio.timeout(5):
                    while b'"waiting_total":1' not in got:
                        got += await stream.content.readany()
            await async_wait_until(lambda: len(d.web.server.connections) == 0, what="the table to be empty")

            # Headers over the server's limit are refused at once (431), and logged once, not each time; so is
            # junk that is not HTTP (400).
            for junk in (
                b"GET / HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * (httpd.MAX_HEAD_BYTES + 100) + b"\r\n\r\n",
                b"GET / HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * (httpd.MAX_HEAD_BYTES + 100) + b"\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
            ):
                big_r, big_w = await asyncio.open_connection("127.0.0.1", port)
                big_w.write(junk)
                took, answer = await closed_after(big_r, 5)
                expected = b"431" if b"X-Big" in junk else b"400"
                assert answer.split(b" ", 2)[1] == expected and took < 0.9, answer[:40]
                big_w.close()
            loud = [r for r in caplog.records if r.name == "pumpkin.web.server" and r.levelno >= logging.WARNING]
            assert len(loud) == 1 and "further ones are logged at debug level" in loud[0].getMessage()
            for w in (half_w, slow_w):
                w.close()
        finally:
            await d.stop()

    run(main)


def test_a_post_body_that_does_not_arrive_in_time_gets_408(tmp_path, monkeypatch):
    monkeypatch.setattr(web, "BODY_TIMEOUT_S", 2.0)
    monkeypatch.setattr(web, "HEADER_TIMEOUT_S", 30.0)  # so that only the body timeout can be what cuts it

    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", token=TOKEN, seeds=hello()))
        await d.start()
        try:
            port = d.web.port

            async def partial_post(auth: bool) -> tuple[float, bytes]:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(
                    f"POST /api/v1/inject HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                    f"{f'Authorization: Bearer {TOKEN}' if auth else 'X-No: token'}\r\nContent-Length: 100\r\n\r\n"
                    '{"state": "UNGREETED",'.encode()
                )
                try:
                    if auth:
                        return await closed_after(r, 10)
                    t0 = time.monotonic()
                    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                    return time.monotonic() - t0, head
                finally:
                    w.close()

            took, answer = await partial_post(auth=False)
            assert answer.startswith(b"HTTP/1.1 401") and took < 1.5  # refused before any body is read
            took, answer = await partial_post(auth=True)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"the body did not arrive within 2 s" in answer and 1.9 <= took <= 5.0, took
            assert d.router.counters["injected"] == 0
        finally:
            await d.stop()

    run(main)


BIG_SEED = '''
from pumpkin import Seed

class Big(Seed):
    """{doc}"""

    consumes = "String:GREETING"

    def run(self, greeting):
        pass
'''


def test_event_streams_are_limited_and_one_whose_reader_takes_nothing_is_cut_off(tmp_path, monkeypatch):
    monkeypatch.setattr(web, "MAX_STREAMS", 2)
    monkeypatch.setattr(web, "WRITE_TIMEOUT_S", 3.0)
    # A 3 MB description makes the first graph event 3 MB: a reader that takes nothing fills the buffers at once.
    big = seed_file(tmp_path, "big", BIG_SEED.format(doc="x" * 3_000_000))

    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=[*hello(), big]))
        await d.start()
        try:
            url = d.web.url + "api/v1/events"
            async with aiohttp.ClientSession() as s, s.get(url) as reading:
                assert reading.status == 200
                stuck = socket.socket()
                stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stuck.setblocking(False)
                await asyncio.get_running_loop().sock_connect(stuck, ("127.0.0.1", d.web.port))
                stuck.send(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{d.web.port}\r\n\r\n".encode())
                await async_wait_until(lambda: len(d.web.server.streams) == 2, what="both streams to open")
                opened = time.monotonic()
                async with s.get(url) as third:
                    assert third.status == 503 and third.headers["Retry-After"] == "5"
                    assert "2 event streams are open" in (await third.json())["error"]
                await async_wait_until(
                    lambda: len(d.web.server.streams) == 1, 15, what="the stuck stream to be cut off"
                )
                assert time.monotonic() - opened >= 2.5
                async with s.get(url) as again:
                    assert again.status == 200  # its place is free again
                # The reader that reads got the whole 3 MB graph, then the stats.
                got = b""
                async with asyncio.timeout(15):
                    while b"event: stats" not in got:
                        got += await reading.content.readany()
                assert got.index(b"event: graph") < got.index(b"event: stats") and len(got) > 3_000_000
                stuck.close()
        finally:
            await d.stop()

    run(main)


# -- Host -------------------------------------------------------------------------------------------


async def raw_get(port: int, path: str, host: str | None) -> tuple[int, str]:
    """A GET with exactly this ``Host`` header; with none (host None) as HTTP/1.0, which may omit it; (status, body)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    head = f"GET {path} HTTP/1.0\r\n" if host is None else f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    head += "Connection: close\r\n"
    w.write((head + "\r\n").encode())
    _, got = await closed_after(r, 10)
    w.close()
    status_line, _, rest = got.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode()


def test_a_foreign_host_header_is_refused_and_listed_names_are_served(tmp_path):
    async def main() -> None:
        flags = {"http.allowed_hosts": "pumpkin.lan, proxy.example:8080"}
        d = Daemon(cfg(tmp_path, "a", seeds=hello(), flags=flags))
        await d.start()
        try:
            port = d.web.port
            for host in (
                f"127.0.0.1:{port}",
                f"localhost:{port}",
                f"LOCALHOST.:{port}",
                f"[::1]:{port}",
                "pumpkin.lan",
                f"pumpkin.lan:{port}",
                "proxy.example:8080",
                None,
            ):
                assert (await raw_get(port, "/api/v1/node", host))[0] == 200, host
            for host in (f"evil.test:{port}", f"127.0.0.1:{port + 1}", "localhost", "proxy.example:8081", "a b"):
                status, body = await raw_get(port, "/api/v1/node", host)
                assert status == 421, host
                why = json.loads(body)["error"]
                assert "does not name this server" in why and "[http] allowed_hosts" in why and d.web.url in why
                status, body = await raw_get(port, "/", host)  # the page and its files alike, as text
                assert status == 421 and "[http] allowed_hosts" in body
                assert (await raw_get(port, "/static/app.js", host))[0] == 421
                assert (await raw_get(port, "/metrics", host))[0] == 421
        finally:
            await d.stop()

    run(main)


def test_a_wildcard_bind_answers_to_this_machines_addresses_and_name(tmp_path):
    async def main() -> None:
        # 0.0.0.0 inside scripts/test.sh's namespace, which leads nowhere (a veth pair, 10.79.0.1).
        d = Daemon(cfg(tmp_path, "a", seeds=hello(), flags={"http.host": "0.0.0.0"}))
        await d.start()
        try:
            port = d.web.port
            own = [a for a in web.own_names() if a[0].isdigit() and "." in a]
            assert "127.0.0.1" in own
            names = (socket.gethostname(), f"{socket.gethostname()}.local", "localhost")
            for host in (*(f"{a}:{port}" for a in own), *(f"{n}:{port}" for n in names)):
                assert (await raw_get(port, "/api/v1/node", host))[0] == 200, host
            for host in (f"evil.test:{port}", f"0.0.0.0:{port}", f"10.99.99.99:{port}"):
                assert (await raw_get(port, "/api/v1/node", host))[0] == 421, host
        finally:
            await d.stop()

    run(main)


# -- what a GET shows without the token -------------------------------------------------------------

SECRET_DATA = "SECRET-PAYLOAD-7"
SECRET_NUMBER = 424242  # the failing seed quotes its input in its error: the reason holds data too


def test_without_the_token_gets_show_structure_and_counts_but_no_data_reasons_or_paths(tmp_path):
    async def main() -> None:
        rx, tx = tmp_path / "rx", tmp_path / "tx"
        d = Daemon(cfg(tmp_path, "a", token=TOKEN, rx=rx, tx=tx, seeds=[*hello(), seed_file(tmp_path, "boom", BOOM)]))
        await d.start()
        try:
            waiting = d.inject("NOBODY", {"note": SECRET_DATA})
            d.inject("Int:BOOM", SECRET_NUMBER)
            await async_wait_until(lambda: d.failed.counts["seed-error"] == 1, what="boom to fail")
            secrets = (SECRET_DATA, str(SECRET_NUMBER), str(tmp_path), TOKEN)
            async with aiohttp.ClientSession() as s:
                c = Client(s, d)
                _, index = await c.get("/api/v1")
                paths = [
                    r.split(" ", 1)[1].replace("{name}", "boom")
                    for r in index["routes"]
                    if r.startswith("GET ") and not r.endswith("/events")
                ]
                paths += ["/api/v1/waiting?limit=100&state=default:*:NOBODY", "/api/v1/failed?seed=boom", "/"]
                paths += ["/metrics"]
                for path in paths:
                    async with s.get(c.base + path) as r:
                        text = await r.text()
                        assert r.status == 200, path
                        if path.startswith("/api/") and not path.endswith(".json"):
                            assert r.headers["Cache-Control"] == "no-store", path
                    leaked = [x for x in secrets if x in text]
                    assert not leaked, f"GET {path} without the token shows {leaked}"
                async with s.get(c.base + "/api/v1/events") as r:
                    seen: dict[str, str] = {}
                    while len(seen) < 2:
                        line = (await r.content.readline()).decode()
                        if line.startswith("event: "):
                            seen[line[7:].strip()] = (await r.content.readline()).decode()
                leaked = [x for x in secrets if x in "".join(seen.values())]
                assert not leaked, f"the event stream shows {leaked}"

                # ... yet the structure and the counts are all there.
                _, w = await c.get("/api/v1/waiting")
                (packet,) = w["states"]["default:*:NOBODY"]["oldest"]
                assert w["total"] == 1 and packet["id"] == waiting.id and "data" not in packet
                _, failed = await c.get("/api/v1/failed")
                assert failed["counts"] == {"seed-error": 1} and "folder" not in failed
                assert failed["recent"][0] == {
                    "time": failed["recent"][0]["time"],
                    "kind": "seed-error",
                    "seed": "boom",
                    "packet": failed["recent"][0]["packet"],
                    "state": "default:Int:BOOM",
                }
                _, counters = await c.get("/api/v1/counters")
                assert "dir" not in counters["rx"] and "dir" not in counters["tx"] and counters["failed_total"] == 1
                assert counters["recent_failures"] == failed["recent"]

                # With the token: the data, the reasons and the paths.
                _, w = await c.get("/api/v1/waiting", token=TOKEN)
                assert SECRET_DATA in w["states"]["default:*:NOBODY"]["oldest"][0]["data"]
                _, failed = await c.get("/api/v1/failed", token=TOKEN)
                assert str(SECRET_NUMBER) in failed["recent"][0]["reason"] and failed["recent"][0]["file"]
                assert failed["folder"] == str(d.failed.root)
                _, counters = await c.get("/api/v1/counters", token=TOKEN)
                assert counters["rx"]["dir"] == str(rx) and counters["tx"]["dir"] == str(tx)
                _, snap = await c.get("/api/v1/snapshot", token=TOKEN)
                assert str(SECRET_NUMBER) in snap["stats"]["recent_failures"][0]["reason"]
                _, boom = await c.get("/api/v1/seeds/boom", token=TOKEN)
                assert str(SECRET_NUMBER) in boom["recent_errors"][0]["reason"]

                # A wrong token is refused, rather than taken for "no token" (a typo would look like no data).
                for path in ("/api/v1/waiting", "/api/v1/node"):
                    status, why = await c.get(path, token="wrong")
                    assert status == 401 and "token" in why["error"]
        finally:
            await d.stop()

    run(main)


def test_a_daemon_without_a_token_never_shows_data(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello()))
        await d.start()
        try:
            d.inject("NOBODY", SECRET_DATA)
            async with aiohttp.ClientSession() as s:
                c = Client(s, d)
                for token in (None, "anything"):  # no token can be right: the header is ignored
                    status, w = await c.get("/api/v1/waiting", token=token)
                    assert status == 200 and w["total"] == 1 and SECRET_DATA not in json.dumps(w)
        finally:
            await d.stop()

    run(main)


# -- POST ----------------------------------------------------------------------------------------------


def test_posts_need_the_token_and_a_json_content_type(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", token=TOKEN, seeds=hello()))
        await d.start()
        try:
            body = {"state": "UNGREETED", "data": "Web"}
            async with aiohttp.ClientSession() as s:
                c = Client(s, d)
                # What an HTML form or a no-preflight fetch() of another site could send, even with the token:
                for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
                    for path in ("/api/v1/inject", "/api/v1/seeds/greet/disable"):
                        status, why = await c.post(path, body, token=TOKEN, content_type=content_type)
                        assert status == 415 and "Content-Type: application/json" in why["error"], content_type
                status, why = await c.post("/api/v1/inject", body, content_type="text/plain")
                assert status == 401  # the token is checked first
                assert d.router.counters["injected"] == 0 and not d.disabled
                status, sent = await c.post(
                    "/api/v1/inject", body, token=TOKEN, content_type="application/json; charset=utf-8"
                )
                assert status == 201
                status, _ = await c.post("/api/v1/seeds/greet/disable", token=TOKEN)  # an empty JSON POST
                assert status == 200 and d.disabled == {"greet"}
                status, why = await c.post("/api/v1/inject", "x" * (1 << 20), token=TOKEN)
                assert status == 413
                # CORS preflights are refused: another site's page cannot send the JSON or the token.
                preflight = {"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"}
                async with s.options(c.base + "/api/v1/inject", headers=preflight) as r:
                    assert r.status == 405 and "Access-Control-Allow-Origin" not in r.headers
        finally:
            await d.stop()

    run(main)


# -- many idle connections, a real pmk ------------------------------------------------------------------

FD_LIMIT = 256  # the daemon's RLIMIT_NOFILE in this test: it allows FD_LIMIT // 4 = 64 connections
IDLE = 400  # more than the daemon could hold open at all
HOLD_IDLE = r"""
import json, socket, sys, time, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
idle = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /api/v1/node HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)  # half a header, never the rest
    idle.append(s)
t0 = time.monotonic()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/node", timeout=10) as r:
    status, node = r.status, json.loads(r.read())
took = time.monotonic() - t0
closed = 0
for s in idle:
    s.setblocking(False)
    try:
        closed += s.recv(1) == b""
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print(json.dumps({"status": status, "node": node["id"], "took_s": took, "closed": closed}))
"""


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_many_idle_connections_stop_neither_the_page_nor_the_daemon(pmk, sandbox):
    p = pmk("--endpoint.type", "zmq.IPC", "--http.port", "0", "--http.token", TOKEN)
    p.wait_for("Greeting: Hello World")
    url = web_url(p)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    assert Path(f"/proc/{p.pid}/comm").read_text().strip() != "ip"  # ip netns exec replaced itself with pmk
    before = _open_fds(p.pid)
    assert before < FD_LIMIT // 2, before
    resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    out = subprocess.run(
        sandbox.wrap([sys.executable, "-c", HOLD_IDLE, str(port), str(IDLE)]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    held: dict[str, Any] = json.loads(out.stdout)
    assert held["status"] == 200 and held["took_s"] < 5.0, held
    assert held["closed"] >= IDLE - FD_LIMIT // 4, held  # the longest idle ones made room
    assert _open_fds(p.pid) < FD_LIMIT - 16
    assert p.stderr_has(f"web: {FD_LIMIT // 4} connections open, the most this daemon allows")
    # The daemon itself still works: its journal and sockets got the descriptors they needed.
    status, _ = api(sandbox, url + "api/v1/inject", "POST", {"state": "UNGREETED", "data": "Busy"}, token=TOKEN)
    assert status == 201
    p.wait_for("Greeting: Hello Busy")
    wait_until(lambda: p.proc.poll() is None and _open_fds(p.pid) <= before + 8, 20, what="the fds to come back")
