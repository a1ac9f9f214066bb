"""The page's port is bound at the daemon's start, its server (``pumpkin.httpd``) made at the first connection
(issue 14): a real ``pmk`` serves its page without aiohttp, and opening it costs little memory; the first request
is answered in full; a stop before any connection, or while the server is being made, releases the port; a server
that fails to start is logged and closes the port while the daemon goes on; a wildcard host listens on IPv4 and
IPv6 on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import subprocess
import sys
import threading
import time
from types import ModuleType

import pytest

from pumpkin import web, webport
from pumpkin.daemon import Daemon
from tests.helpers import async_wait_until, cfg
from tests.web.conftest import api, web_url
from tests.web.test_api import hello, run


def mapped_aiohttp(pid: int) -> bool:
    """Whether process ``pid`` has aiohttp's compiled HTTP parser mapped (``import aiohttp`` loads it; the tests'
    client uses it, the daemon must not)."""
    with open(f"/proc/{pid}/maps") as maps:
        return any("/aiohttp/" in line for line in maps)


def refused(port: int) -> bool:
    """Whether a connection to 127.0.0.1:``port`` is refused (nothing listens there)."""
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound again (the daemon let it go)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def http_get(port: int, path: str) -> bytes:
    """One GET over a plain socket, and everything the server sent until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    try:
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def rss_mb(pid: int) -> float:
    """Process ``pid``'s resident memory (VmRSS), in MB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


#: What opening the page may add to a daemon's memory (issue 14: < 45 MB with the page opened, ~37 MB without;
#: aiohttp, which served it before, added ~10.8 MB).
PAGE_COST_MB = 4.0


def test_a_real_pmk_serves_its_page_without_aiohttp_and_opening_it_costs_little_memory(pmk, sandbox):
    p = pmk("--endpoint.type", "zmq.IPC")
    p.wait_for("Greeting: Hello World")  # started, and its hello world ran
    url = web_url(p)
    before = rss_mb(p.pid)
    fetch = "import sys, urllib.request\nfor url in sys.argv[1:]: urllib.request.urlopen(url, timeout=10).read()"
    page = [url + path for path in ("", "static/app.js", "api/v1/snapshot")]  # what a browser asks first
    out = subprocess.run(sandbox.wrap([sys.executable, "-c", fetch, *page]), capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    status, node = api(sandbox, url + "api/v1/node")
    assert status == 200 and node["http"] == url
    p.wait_for("web: first connection: the page's server started", stream="err")
    status, counters = api(sandbox, url + "api/v1/counters")
    assert status == 200 and counters["router"]["extracted"] == 1
    grew = rss_mb(p.pid) - before
    print(f"opening the page added {grew:.1f} MB")
    assert grew < PAGE_COST_MB, f"opening the page added {grew:.1f} MB"
    assert not mapped_aiohttp(p.pid)


def test_the_first_request_gets_the_whole_page(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello()))
        await d.start()
        try:
            assert d.web is not None and d.web.server is None and d.web.url == f"http://127.0.0.1:{d.web.port}/"
            answer = await http_get(d.web.port, "/")
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"text/html" in head
            assert body.rstrip().endswith(b"</html>")
            assert d.web.server is not None and d.web.server.url == d.web.url
        finally:
            await d.stop()

    run(main)


def test_a_stop_before_any_connection_releases_the_port(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello()))
        await d.start()
        assert d.web is not None
        port, page = d.web.port, d.web
        assert not free(port)
        await d.stop()
        assert page.server is None and free(port) and refused(port)

    run(main)


def test_a_stop_while_the_server_is_being_made_releases_the_port(tmp_path, monkeypatch):
    importing, release = threading.Event(), threading.Event()

    def slow_import(name: str) -> ModuleType:
        importing.set()
        release.wait(20)
        return importlib.import_module(name)

    monkeypatch.setattr(webport, "import_module", slow_import)

    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello()))
        await d.start()
        assert d.web is not None
        port, page = d.web.port, d.web
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # in the backlog, not yet accepted
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await async_wait_until(importing.is_set, what="the first connection to start the import")
            t0 = time.monotonic()
            await d.stop()
            assert time.monotonic() - t0 < 5 and page.server is None and free(port)
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""  # dropped, never answered
        finally:
            writer.close()
            release.set()

    run(main)


def test_a_server_that_fails_to_start_closes_the_port_loudly_and_the_daemon_goes_on(tmp_path, monkeypatch, caplog):
    async def broken(self: web.WebServer, sockets: list[socket.socket]) -> None:
        raise RuntimeError("no page today")

    monkeypatch.setattr(web.WebServer, "start", broken)

    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello()))
        await d.start()
        try:
            assert d.web is not None
            port = d.web.port
            with contextlib.suppress(ConnectionResetError):
                assert await http_get(port, "/") == b""  # the waiting connection is dropped, not answered
            await async_wait_until(lambda: refused(port), what="the port to refuse connections")
            errors = [r for r in caplog.records if r.name == "pumpkin.webport" and r.levelno == logging.ERROR]
            assert len(errors) == 1 and f"port {port} now refuses connections" in errors[0].getMessage()
            assert "no page today" in caplog.text  # with its traceback
            d.inject("UNGREETED", "After")  # the daemon still works
            await async_wait_until(lambda: d.router.counters["extracted"] >= 2, what="the second greeting")
        finally:
            await d.stop()

    run(main)


def test_a_wildcard_host_listens_on_ipv4_and_ipv6_on_one_port():
    async def main() -> None:
        sockets = await webport.listen("", 0)
        try:
            families = {s.family for s in sockets}
            ports = {s.getsockname()[1] for s in sockets}
            assert socket.AF_INET in families and len(ports) == 1
            port = ports.pop()
            targets = [("127.0.0.1", port)] + ([("::1", port)] if socket.AF_INET6 in families else [])
            for target in targets:
                with socket.create_connection(target, timeout=5):
                    pass
            if socket.AF_INET6 not in families:
                pytest.skip("no IPv6 here: only the IPv4 half was checked")
        finally:
            for s in sockets:
                s.close()

    run(main)


def test_an_address_that_cannot_be_bound_fails_the_start(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello(), flags={"http.host": "10.254.254.254"}))
        with pytest.raises(OSError, match="assign requested address"):
            await d.start()

    run(main)
