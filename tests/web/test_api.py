"""The HTTP API: every endpoint's JSON against what the daemon really holds, the token on POSTs, the event stream.

Most tests run daemons in this process (as ``tests/integration`` does: ipc://, discovery off, HTTP on
127.0.0.1 port 0) so they can compare the JSON with the daemon's own objects; the last one calls a real
``pmk`` from inside its sandbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from pumpkin.automaton import SeedInfo
from pumpkin.daemon import Daemon
from tests.conftest import PMK, ROOT
from tests.helpers import async_wait_until, cfg, wait_until
from tests.web.conftest import api, web_url

SEEDS = ROOT / "seeds"
BOOM = """
from pumpkin import seed

@seed(consumes="Int:BOOM", emits="Int:AFTER")
def boom(n):
    raise ValueError(f"boom {n}")
"""
SHOUT = """
from pumpkin import seed

@seed(consumes="String:GREETING", emits="String:SHOUTED")
def shout(greeting):
    return greeting.upper()
"""


def seed_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "seeds" / f"{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def hello() -> list[Path]:
    return sorted((SEEDS / "helloworld").glob("*.py"))


class Client:
    """A small JSON client for one daemon's API."""

    def __init__(self, session: aiohttp.ClientSession, daemon: Daemon) -> None:
        self.session = session
        self.base = daemon.web.url.rstrip("/")

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with self.session.get(self.base + path, headers=headers) as r:
            return r.status, await r.json()

    async def post(
        self, path: str, body: Any = None, token: str | None = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """POST ``body`` as JSON (no body at all when None), as curl -H 'Content-Type: application/json' would."""
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = b"" if body is None else json.dumps(body).encode()
        async with self.session.post(self.base + path, data=data, headers=headers) as r:
            return r.status, await r.json()


def run(main: Any) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


def test_every_get_endpoint_matches_what_the_daemon_holds(tmp_path):
    """With the token, as the page's owner sees it (test_without_the_token_... shows what others see)."""

    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", token="t", seeds=[*hello(), seed_file(tmp_path, "boom", BOOM)]))
        await d.start()
        try:
            await async_wait_until(lambda: d.router.counters["extracted"] >= 1, what="the hello world")
            waiting = d.inject("NOBODY", {"x": 1})
            d.inject("Int:BOOM", 7)
            await async_wait_until(lambda: d.failed.counts["seed-error"] >= 1, what="boom to fail")
            async with aiohttp.ClientSession() as s:
                c = Client(s, d)
                status, index = await c.get("/api/v1")
                assert status == 200 and index["node"] == d.node_id
                for route in (
                    "GET /api/v1/automaton",
                    "GET /api/v1/events",
                    "POST /api/v1/inject",
                    "POST /api/v1/seeds/{name}/disable",
                ):
                    assert route in index["routes"]

                status, node = await c.get("/api/v1/node")
                assert node["id"] == d.node_id and node["seeds"] == sorted(d.specs) and node["post"] is True
                assert node["http"] == d.web.url and node["automaton_version"] == d.automaton.version

                _, automaton = await c.get("/api/v1/automaton")
                truth = d.automaton.node_link()
                assert automaton["graph"]["version"] == d.automaton.version
                assert automaton["nodes"] == truth["nodes"] and automaton["links"] == truth["links"]
                assert automaton["directed"] is True and automaton["multigraph"] is True

                _, seeds = await c.get("/api/v1/seeds")
                by_name = {s["name"]: s for s in seeds["seeds"]}
                assert set(by_name) == set(d.automaton.seeds()) == {"inject", "greet", "extract", "boom"}
                assert by_name["greet"]["feeds"] == ["extract"] and by_name["greet"]["fed_by"] == ["inject"]
                assert by_name["greet"]["nodes"] == [d.node_id] and by_name["greet"]["local"] is True
                assert by_name["inject"]["injector"] and by_name["extract"]["extractor"]
                assert by_name["boom"]["inputs"] == ["default:Int:BOOM"]

                _, greet = await c.get("/api/v1/seeds/greet")
                assert greet["counters"]["processed"] == d.router.tally.of("greet").processed == 1
                assert greet["delivered"] == {d.node_id: 1}
                _, boom = await c.get("/api/v1/seeds/boom", token="t")
                assert [e["reason"] for e in boom["recent_errors"]][0].startswith("seed boom raised ValueError: boom 7")
                status, missing = await c.get("/api/v1/seeds/nope")
                assert status == 404 and "nope" in missing["error"]

                _, counters = await c.get("/api/v1/counters", token="t")
                assert counters["router"] == dict(d.router.counters)
                assert counters["seeds"]["greet"]["processed"] == 1 and counters["failed"] == dict(d.failed.counts)
                assert counters["waiting"] == d.router.waiting.counts() == {"default:*:NOBODY": 1}
                assert counters["waiting_on"] == [{"state": "default:*:NOBODY", "count": 1, "nodes": []}]
                assert set(counters["rates"]["seeds"]) == {"inject", "greet", "extract", "boom"}

                _, w = await c.get("/api/v1/waiting", token="t")
                assert w["total"] == 1 and w["states"]["default:*:NOBODY"]["oldest"][0]["id"] == waiting.id
                assert w["states"]["default:*:NOBODY"]["oldest"][0]["data"] == '{"x":1}'
                _, w = await c.get("/api/v1/waiting?state=default:String:GREETING")
                assert w == {"total": 0, "states": {}}
                # The state as written everywhere else: the bare name, type:STATE, the full tag.
                for state in ("NOBODY", "Json:NOBODY", "default:*:NOBODY"):
                    _, w = await c.get(f"/api/v1/waiting?state={state}")
                    assert list(w["states"]) == ["default:*:NOBODY"] and w["total"] == 1, state
                status, bad = await c.get("/api/v1/waiting?state=a:b:c:d")
                assert status == 400 and "4 parts" in bad["error"]
                status, _ = await c.get("/api/v1/waiting?limit=many")
                assert status == 400

                _, failed = await c.get("/api/v1/failed", token="t")
                assert failed["counts"] == dict(d.failed.counts) and failed["total"] == 1
                item = failed["recent"][0]
                assert item["seed"] == "boom" and item["kind"] == "seed-error" and item["state"] == "default:Int:BOOM"
                assert (d.failed.root / item["file"]).exists() and failed["folder"] == str(d.failed.root)

                _, peers = await c.get("/api/v1/peers")
                assert peers == {"node": d.node_id, "peers": []}
                _, hosts = await c.get("/api/v1/hosts")
                assert [h["id"] for h in hosts["nodes"]] == [d.node_id] and hosts["links"] == []

                _, snap = await c.get("/api/v1/snapshot", token="t")
                assert snap["graph"]["automaton"]["nodes"] == truth["nodes"]
                assert snap["stats"]["router"] == counters["router"]

                status, doc = await c.get("/api/v1/openapi.json")
                assert status == 200 and doc["openapi"].startswith("3.")
                documented = {f"{m.upper()} /api/v1{p}".rstrip("/") for p, ops in doc["paths"].items() for m in ops}
                assert documented == set(index["routes"]), "web/openapi.json and the routes disagree"

                async with s.get(d.web.url) as r:
                    assert r.status == 200 and '<svg id="view-states"' in await r.text()
                async with s.get(d.web.url + "static/vendor/d3/d3.min.js") as r:
                    assert r.status == 200 and (await r.text()).startswith("// https://d3js.org v7")
        finally:
            await d.stop()

    run(main)


def test_peers_and_hosts_show_an_introduced_daemon_and_where_data_flows(tmp_path):
    async def main() -> None:
        a = Daemon(cfg(tmp_path, "a", seeds=hello()))
        b = Daemon(cfg(tmp_path, "b", seeds=[seed_file(tmp_path, "shout", SHOUT)]))
        await a.start()
        await b.start()
        try:
            a.learn_peer(
                b.node_id, b.transport.data_endpoints[0], [SeedInfo.from_summary(s.summary()) for s in b.specs.values()]
            )
            async with aiohttp.ClientSession() as s:
                c = Client(s, a)
                _, peers = await c.get("/api/v1/peers")
                (peer,) = peers["peers"]
                assert peer["id"] == b.node_id and peer["seeds"] == ["shout"] and peer["state"] == "alive"
                assert peer["link"]["endpoint"] == b.transport.data_endpoints[0]
                _, hosts = await c.get("/api/v1/hosts")
                assert {h["id"] for h in hosts["nodes"]} == {a.node_id, b.node_id}
                assert hosts["links"] == [{"source": a.node_id, "target": b.node_id, "seeds": ["shout"]}]
                _, seeds = await c.get("/api/v1/seeds")
                shout = next(x for x in seeds["seeds"] if x["name"] == "shout")
                assert shout["nodes"] == [b.node_id] and shout["local"] is False and shout["fed_by"] == ["greet"]
                status, refused = await c.post("/api/v1/seeds/shout/disable", token="x")
                assert status == 403  # read-only daemon: no token configured
        finally:
            await b.stop()
            await a.stop()

    run(main)


def test_every_page_shows_the_rates_of_seeds_anywhere_in_the_network(tmp_path):
    """A -> B -> C: A sends nothing to C, yet A's counters show C's seed at work (peers' PINGs carry their counts)."""
    ticker = seed_file(
        tmp_path,
        "ticker",
        "from pumpkin import Seed\nclass Tick(Seed):\n    emits = 'N'\n    every_s = 0.02\n"
        "    def run(self):\n        return 1\n",
    )
    double = seed_file(
        tmp_path,
        "double",
        "from pumpkin import seed\n@seed(consumes='N', emits='D')\ndef double(n):\n    return 2 * n\n",
    )
    sink = seed_file(tmp_path, "sink", "from pumpkin import seed\n@seed(consumes='D')\ndef sink(d):\n    pass\n")

    async def main() -> None:
        a, b, c = (Daemon(cfg(tmp_path, n, seeds=[f])) for n, f in (("a", ticker), ("b", double), ("c", sink)))
        for d in (c, b, a):
            await d.start()
        try:
            everyone = (a, b, c)
            for x in everyone:
                for y in everyone:
                    if x is not y:
                        x.learn_peer(
                            y.node_id,
                            y.transport.data_endpoints[0],
                            [SeedInfo.from_summary(s.summary()) for s in y.specs.values()],
                        )
            async with aiohttp.ClientSession() as s:
                client = Client(s, a)

                async def sink_rate() -> float:
                    _, counters = await client.get("/api/v1/counters")
                    return counters["rates"]["seeds"].get("sink", 0.0)

                await async_wait_until(sink_rate, timeout_s=20, what="C's sink at work, seen from A")
                assert a.router.delivered.get(("sink", c.node_id), 0) == 0  # A never sent C a thing
                assert a.mesh.done_of(c.node_id)["sink"] > 0
        finally:
            for d in (a, b, c):
                await d.stop()

    run(main)


def test_posts_are_refused_without_the_token(tmp_path):
    async def main() -> None:
        ro = Daemon(cfg(tmp_path, "ro", seeds=hello()))
        rw = Daemon(cfg(tmp_path, "rw", token="s3cret", seeds=hello()))
        await ro.start()
        await rw.start()
        try:
            async with aiohttp.ClientSession() as s:
                ro_c, rw_c = Client(s, ro), Client(s, rw)
                for path, body in (
                    ("/api/v1/inject", {"state": "UNGREETED", "data": "Web"}),
                    ("/api/v1/seeds/greet/disable", None),
                    ("/api/v1/seeds/greet/enable", None),
                ):
                    status, why = await ro_c.post(path, body, token="s3cret")
                    assert status == 403 and "read-only" in why["error"] and "[http] token" in why["error"]
                    for token in (None, "wrong", ""):
                        status, why = await rw_c.post(path, body, token=token)
                        assert status == 401 and "token" in why["error"]
                assert ro.router.counters["injected"] == rw.router.counters["injected"] == 0
                assert not rw.disabled
                # The hello world's own packet first, so the count below moves by the injected one alone.
                await async_wait_until(lambda: rw.router.counters["extracted"] >= 1, what="the hello world")
                before = rw.router.counters["extracted"]
                status, sent = await rw_c.post("/api/v1/inject", {"state": "UNGREETED", "data": "Web"}, token="s3cret")
                assert status == 201 and sent["state"] == "default:*:UNGREETED" and sent["id"].count(":") == 3
                await async_wait_until(
                    lambda: rw.router.counters["extracted"] == before + 1, what="the injected packet"
                )
                status, why = await rw_c.post("/api/v1/inject", {"state": "not a tag!", "data": 1}, token="s3cret")
                assert status == 400 and "state tag" in why["error"]
                status, why = await rw_c.post("/api/v1/inject", ["no"], token="s3cret")
                assert status == 400
                status, why = await rw_c.post("/api/v1/seeds/nope/disable", token="s3cret")
                assert status == 404 and "no seed has that name" in why["error"]
        finally:
            await rw.stop()
            await ro.stop()

    run(main)


def test_a_disabled_seed_leaves_the_automaton_and_its_packets_wait_for_it(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", token="t", seeds=hello()))
        await d.start()
        try:
            await async_wait_until(lambda: d.router.counters["extracted"] >= 1, what="the hello world")
            async with aiohttp.ClientSession() as s:
                c = Client(s, d)
                status, r = await c.post("/api/v1/seeds/extract/disable", token="t")
                assert status == 200 and r == {"name": "extract", "enabled": False, "changed": True}
                assert "extract" not in d.automaton.seeds()
                _, seeds = await c.get("/api/v1/seeds")
                extract = next(x for x in seeds["seeds"] if x["name"] == "extract")
                assert extract["enabled"] is False and extract["nodes"] == [] and extract["fed_by"] == ["greet"]
                await c.post("/api/v1/inject", {"state": "UNGREETED", "data": "Moon"}, token="t")
                await async_wait_until(
                    lambda: d.router.waiting.counts().get("default:String:GREETING") == 1,
                    what="the greeting to wait for the disabled extractor",
                )
                _, w = await c.get("/api/v1/waiting", token="t")
                assert w["states"]["default:String:GREETING"]["oldest"][0]["data"] == '"Hello Moon"'
                status, r = await c.post("/api/v1/seeds/extract/disable", token="t")
                assert r["changed"] is False
                status, r = await c.post("/api/v1/seeds/extract/enable", token="t")
                assert r == {"name": "extract", "enabled": True, "changed": True}
                await async_wait_until(lambda: d.router.counters["extracted"] == 2, what="the waiting greeting")
                assert d.router.waiting.counts() == {}
        finally:
            await d.stop()

    run(main)


async def _events(response: aiohttp.ClientResponse):
    """Yield (event, data) from a server-sent-event stream."""
    event, data = "message", []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


def test_the_event_stream_pushes_a_new_graph_when_a_peer_seed_arrives(tmp_path):
    async def main() -> None:
        a = Daemon(cfg(tmp_path, "a", seeds=hello()))
        b = Daemon(cfg(tmp_path, "b", seeds=[seed_file(tmp_path, "shout", SHOUT)]))
        await a.start()
        await b.start()
        try:
            async with aiohttp.ClientSession() as s, s.get(a.web.url + "api/v1/events") as r:
                assert r.headers["Content-Type"] == "text/event-stream"
                stream = _events(r)
                kinds = {}
                while len(kinds) < 2:
                    kind, data = await anext(stream)
                    kinds[kind] = data
                assert {x["name"] for x in kinds["graph"]["seeds"]} == {"inject", "greet", "extract"}
                assert set(kinds["stats"]["seeds"]) == {"inject", "greet", "extract"}
                t0 = time.monotonic()
                a.learn_peer(
                    b.node_id,
                    b.transport.data_endpoints[0],
                    [SeedInfo.from_summary(x.summary()) for x in b.specs.values()],
                )
                while True:
                    kind, data = await anext(stream)
                    if kind == "graph" and any(x["name"] == "shout" for x in data["seeds"]):
                        break
                took = time.monotonic() - t0
                assert took < 2.0, took  # sampled every 0.25 s; generous for a loaded CI machine
                assert {h["id"] for h in data["hosts"]["nodes"]} == {a.node_id, b.node_id}
        finally:
            await b.stop()
            await a.stop()

    run(main)


def test_a_taken_port_moves_the_page_to_the_next_one(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            d = Daemon(cfg(tmp_path, "a", seeds=hello(), flags={"http.port": str(port)}))
            await d.start()
            try:
                assert d.web.port != port and d.web.url == f"http://127.0.0.1:{d.web.port}/"
            finally:
                await d.stop()

        run(main)
    assert f"Web port {port} is taken" in caplog.text
    assert any(r.getMessage().startswith("Web page: http://127.0.0.1:") for r in caplog.records)


def test_http_enable_false_serves_nothing(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, "a", seeds=hello(), flags={"http.enable": "false"}))
        await d.start()
        try:
            assert d.web is None
        finally:
            await d.stop()

    run(main)


def test_the_api_of_a_real_pmk_from_inside_its_sandbox(pmk, sandbox):
    p = pmk("--endpoint.type", "zmq.IPC", "--http.token", "s3cret")
    p.wait_for("Greeting: Hello World")
    url = web_url(p)
    assert url.startswith("http://127.0.0.1:") and p.stderr_has(" INFO Web page: http://127.0.0.1:")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    graph = json.loads(
        subprocess.run(
            sandbox.wrap([*PMK, "graph", "--json", "--workdir", str(p.workdir)]),
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
            check=True,
        ).stdout
    )
    status, automaton = api(sandbox, url + "api/v1/automaton")
    assert status == 200
    assert automaton["nodes"] == graph["nodes"] and automaton["links"] == graph["links"]
    status, why = api(sandbox, url + "api/v1/inject", "POST", {"state": "UNGREETED", "data": "Web"})
    assert status == 401 and "token" in why["error"]
    status, sent = api(sandbox, url + "api/v1/inject", "POST", {"state": "UNGREETED", "data": "Web"}, token="s3cret")
    assert status == 201
    p.wait_for("Greeting: Hello Web")
    wait_until(
        lambda: api(sandbox, url + "api/v1/counters")[1]["router"].get("extracted") == 2,
        10,
        what="the counters to show both greetings",
    )
