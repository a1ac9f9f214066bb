"""The live web page and its JSON API, served by the daemon itself on its own event loop (aiohttp).

Everything is under ``/api/v1`` (documented in ``web/openapi.json`` and the README); the page is ``/`` and its
files ``/static/...``, all from the package, so it works on a LAN with no internet. GETs are open to whoever can
reach ``[http] host``; POSTs (inject a packet, enable or disable a local seed) need ``Authorization: Bearer
<[http] token>`` and are refused with 403 while no token is configured.

Live updates: one sampler task looks at the daemon every ``SAMPLE_S`` and keeps two payloads, *graph* (the
structure: automaton, seeds, hosts; rebuilt only when the automaton version, the peer table or the disabled set
changes) and *stats* (counters, rates, waiting and failed packets, loads). ``/api/v1/events`` is a server-sent
event stream: ``graph`` and ``stats`` events carry the new payload each time one changes, coalesced, so a slow
browser skips intermediate states instead of queueing them. Rates are counter deltas over ``RATE_WINDOW_S``,
as seen from this node: what it ran and what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from . import __version__, tags
from .config import HttpConfig
from .errors import IntakeError, PacketError, TagError
from .packet import Packet
from .tags import StateTag

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger(__name__)

API = "/api/v1"
SAMPLE_S = 0.25  # how often the sampler looks: a change reaches the page within this plus a frame
RATE_WINDOW_S = 2.0  # packets/s are averaged over this much history
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies and idle browsers from closing the stream
PORT_TRIES = 10  # the configured port, then the next 9, then any free one
RECENT_FAILURES = 20  # failures each stats payload carries; /api/v1/failed gives more
FEEDS_SHOWN = 100  # seeds listed in one seed's feeds and fed_by (a state many seeds share could list thousands)
#: A graph rebuild that took t seconds is not followed by another for GRAPH_REBUILD_PAUSE x t: however fast the
#: structure changes (peers announcing thousands of seeds, again and again), rebuilding takes a tenth of the loop
#: at most; a change then reaches the page that much later (3,000 seeds: ~0.15 s to build, so ~1.5 s).
GRAPH_REBUILD_PAUSE = 10.0
GRAPH_REBUILD_FREE_S = 0.02  # rebuilds quicker than this are never held back (every network of a usual size)
WAITING_SHOWN = 50  # states with waiting packets the page gets, the fullest (/api/v1/waiting has them all)
WAITING_PEEK = 5  # oldest waiting packets shown per state by default
PREVIEW_CHARS = 200
SHUTDOWN_S = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def web_root() -> Path:
    """The page's files: ``web/`` in a checkout, else the installed ``pumpkin.webpage`` package."""
    checkout = Path(__file__).resolve().parent.parent / "web"
    if (checkout / "index.html").is_file():
        return checkout
    return Path(str(resources.files("pumpkin.webpage")))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message, "status": status}, status)


def preview(data: Any) -> str:
    """A short text form of packet data for the page (bytes are described, not shown)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(data))} bytes>"
    try:
        text = orjson.dumps(data).decode()
    except TypeError:
        text = repr(data)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def packet_view(packet: Packet, now_wall: float) -> dict[str, Any]:
    """A waiting packet as the page lists it."""
    return {
        "id": packet.id,
        "state": str(packet.tag),
        "data": preview(packet.data),
        "age_s": round(now_wall - packet.created, 3),
        "ttl": packet.ttl,
        "trail": [{"seed": h.seed, "node": h.node, "state": h.tag, "at": h.at} for h in packet.trail],
    }


class Rates:
    """Packets per second from monotonic counters, averaged over a sliding window; pure, clock injected."""

    def __init__(self, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, counters: dict[str, int]) -> None:
        """Record the counters' current values."""
        now = self.clock()
        self._samples.append((now, counters))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rate(self, key: str) -> float:
        """Per second over the window; 0 before there are two samples or when a counter went back."""
        if len(self._samples) < 2:
            return 0.0
        (t0, old), (t1, new) = self._samples[0], self._samples[-1]
        delta = new.get(key, 0) - old.get(key, 0)
        return round(delta / (t1 - t0), 2) if delta > 0 and t1 > t0 else 0.0


# -- views: JSON-ready pictures of what the daemon holds ---------------------------------------------


def node_view(d: Daemon, url: str, post_enabled: bool) -> dict[str, Any]:
    """This node."""
    assert d.transport is not None
    return {
        "id": d.node_id,
        "group": d.config.node.group,
        "ship": d.ids.ship,
        "pumpkin": __version__,
        "endpoints": list(d.transport.data_endpoints),
        "http": url,
        "post": post_enabled,
        "uptime_s": round(time.time() - d.stats.started, 3),
        "automaton_version": d.automaton.version,
        "seeds": sorted(d.specs),
    }


def automaton_view(d: Daemon) -> dict[str, Any]:
    """The automaton in networkx node-link form; ``graph`` holds its version and the node that answered."""
    data = d.automaton.node_link()
    data["graph"] = {**data.get("graph", {}), "version": d.automaton.version, "node": d.node_id}
    return data


def _all_seeds(d: Daemon) -> dict[str, tuple[tuple[StateTag, ...], tuple[StateTag, ...]]]:
    known = {n: (i.inputs, i.outputs) for n, i in d.automaton.seeds().items()}
    for name in d.disabled:
        spec = d.specs[name]
        known.setdefault(name, (spec.inputs, spec.outputs))
    return known


class _TagIndex:
    """Seeds by the tags they consume (or emit), for finding which match a tag without comparing every pair.

    Tags match only within one (group, state) key, where types are equal or one is ``*``: so per key, one list
    of seeds per type and one of all of them, each in name order.
    """

    def __init__(self, entries: list[tuple[str, StateTag]]) -> None:
        self._by_type: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._all: dict[tuple[str, str], list[str]] = {}
        for name, tag in entries:
            self._by_type.setdefault(tag.key, {}).setdefault(tag.type, []).append(name)
            self._all.setdefault(tag.key, []).append(name)
        for names in self._all.values():
            names.sort()
        for by_type in self._by_type.values():
            for names in by_type.values():
                names.sort()

    def matching(self, tag: StateTag, limit: int) -> set[str]:
        """The first ``limit`` (by name) seeds listed with a tag matching ``tag``."""
        if tag.type == tags.ANY_TYPE:
            lists = [self._all.get(tag.key, [])]
        else:
            by_type = self._by_type.get(tag.key, {})
            lists = [by_type.get(tag.type, []), by_type.get(tags.ANY_TYPE, [])]
        found: set[str] = set()
        for names in lists:
            taken: set[str] = set()
            for name in names:  # every name here matches: stop at ``limit`` distinct ones
                taken.add(name)
                if len(taken) >= limit:
                    break
            found |= taken
        return found


def _first(names: set[str], limit: int) -> list[str]:
    return sorted(names)[:limit]


def feeds_of(
    known: dict[str, tuple[tuple[StateTag, ...], tuple[StateTag, ...]]], limit: int = FEEDS_SHOWN
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Which seeds each seed feeds (its outputs match their inputs) and is fed by, the first ``limit`` of each
    by name: in time linear in the seeds' tags (times ``limit``), not in the square of the seeds."""
    consumers = _TagIndex([(name, t) for name, (ins, _) in known.items() for t in ins])
    producers = _TagIndex([(name, t) for name, (_, outs) in known.items() for t in outs])
    feeds: dict[str, list[str]] = {}
    fed_by: dict[str, list[str]] = {}
    for name, (ins, outs) in known.items():
        feeds[name] = _first(set().union(*(consumers.matching(o, limit) for o in outs)), limit)
        fed_by[name] = _first(set().union(*(producers.matching(i, limit) for i in ins)), limit)
    return feeds, fed_by


def seeds_view(d: Daemon) -> list[dict[str, Any]]:
    """Every seed in the network (and this node's disabled ones), with which seeds it feeds."""
    known = _all_seeds(d)
    feeds, fed_by = feeds_of(known)
    out = []
    for name in sorted(known):
        ins, outs = known[name]
        spec = d.specs.get(name)
        out.append(
            {
                "name": name,
                "inputs": [str(t) for t in ins],
                "outputs": [str(t) for t in outs],
                "nodes": d.automaton.nodes_of(name),
                "local": spec is not None,
                "enabled": name not in d.disabled,
                "injector": not ins,
                "extractor": not outs,
                "feeds": feeds[name],
                "fed_by": fed_by[name],
                "workers": spec.workers if spec else None,
                "description": spec.description if spec else "",
            }
        )
    return out


def _load_of_self(d: Daemon) -> float:
    assert d.router is not None
    loads = [r.pending / r.spec.workers for r in d.router.local.values() if not r.spec.is_injector]
    return round(max(loads, default=0.0), 3)


def hosts_view(d: Daemon, seeds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Hosts (this node and its peers) in node-link form, linked where some seed's output feeds a seed there."""
    assert d.transport is not None
    seeds = seeds_view(d) if seeds is None else seeds
    nodes: list[dict[str, Any]] = [
        {
            "id": d.node_id,
            "self": True,
            "state": "alive",
            "endpoint": ", ".join(d.transport.data_endpoints),
            "addresses": [d.advertise] if d.advertise else [],
            "via": "",
            "seeds": sorted(n for n in d.specs if n not in d.disabled),
        }
    ]
    for p in d.peers.summaries():
        nodes.append(
            {
                "id": p["id"],
                "self": False,
                "state": p["state"],
                "endpoint": p["endpoint"],
                "addresses": p["addresses"],
                "via": p["via"],
                "seeds": p["seeds"],
                "last_heard_s_ago": p["last_heard_s_ago"],
            }
        )
    present = {n["id"] for n in nodes}
    # Which hosts feed which: per consumed tag, the hosts of the seeds emitting a matching tag (found by key and
    # type, not by comparing every pair of seeds), to the hosts of the consuming seed.
    where = {s["name"]: [n for n in s["nodes"] if n in present] for s in seeds}
    known = _all_seeds(d)
    emitters: dict[tuple[str, str], dict[str, set[str]]] = {}
    for name, (_, outs) in known.items():
        for tag in outs:
            emitters.setdefault(tag.key, {}).setdefault(tag.type, set()).update(where.get(name, ()))
    flows: dict[tuple[str, str], set[str]] = {}
    for s in seeds:
        sources: set[str] = set()
        for tag in known.get(s["name"], ((), ()))[0]:
            by_type = emitters.get(tag.key, {})
            if tag.type == tags.ANY_TYPE:
                sources = sources.union(*by_type.values())
            else:
                sources |= by_type.get(tag.type, set()) | by_type.get(tags.ANY_TYPE, set())
        for x in sources:
            for y in where[s["name"]]:
                if x != y:
                    flows.setdefault((x, y), set()).add(s["name"])
    for peer in d.transport.links:
        if peer in present and d.transport.links[peer].sent:
            flows.setdefault((d.node_id, peer), set())
    links = [{"source": x, "target": y, "seeds": sorted(names)} for (x, y), names in sorted(flows.items())]
    return {"directed": True, "multigraph": False, "graph": {"node": d.node_id}, "nodes": nodes, "links": links}


def waiting_view(d: Daemon, state: str | None = None, limit: int = WAITING_PEEK) -> dict[str, Any]:
    """Packets waiting for a consumer, per state, with the oldest few of each."""
    assert d.router is not None
    now = time.time()
    out: dict[str, Any] = {}
    for text, count in sorted(d.router.waiting.counts().items()):
        if state is not None and text != state:
            continue
        tag = tags.parse(text)
        out[text] = {"count": count, "oldest": [packet_view(p, now) for p in d.router.waiting.peek(tag, limit)]}
    return {"total": sum(v["count"] for v in out.values()), "states": out}


def failed_view(d: Daemon, limit: int = 50, seed: str | None = None) -> dict[str, Any]:
    """Failure counts by kind and the most recent failures, newest first."""
    assert d.failed is not None
    recent = [r for r in reversed(d.failed.recent) if seed is None or r["seed"] == seed][:limit]
    return {
        "counts": dict(d.failed.counts),
        "total": sum(d.failed.counts.values()),
        "recent": recent,
        "folder": str(d.failed.root),
    }


def _waiting_on_graph(d: Daemon, shown: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Waiting counts of the states ``shown``, each with the automaton states it is drawn on (a wildcard type
    matches every type); automaton states looked up by (group, state), not compared one by one."""
    by_key: dict[tuple[str, str], list[StateTag]] = {}
    for s in d.automaton.states():
        by_key.setdefault(s.key, []).append(s)
    out = []
    for text, count in sorted(shown):
        tag = tags.parse(text)
        candidates = by_key.get(tag.key, [])
        exact = [str(s) for s in candidates if s == tag]
        out.append(
            {
                "state": text,
                "count": count,
                "nodes": exact or [str(s) for s in candidates if not s.is_pseudo and s.matches(tag)],
            }
        )
    return out


def counters_view(d: Daemon, rates: Rates) -> dict[str, Any]:
    """Counters, rates (packets/s as seen from this node), loads and queue depths."""
    assert d.router is not None and d.transport is not None and d.failed is not None
    snap = d.snapshot()
    # The fullest states only: a stranger's packets can make thousands of states wait, which the page could not
    # draw, and which would make every sample as large (/api/v1/waiting lists them all).
    shown = d.router.waiting.largest(WAITING_SHOWN)
    snap["waiting"] = dict(shown)
    seeds = snap["seeds"]
    for name, c in seeds.items():
        c["rate"] = rates.rate(f"seed:{name}")
        c["enabled"] = name not in d.disabled
    delivered: dict[str, dict[str, int]] = {}
    for (name, node), n in d.router.delivered.items():
        delivered.setdefault(name, {})[node] = n
    seed_rates = {name: rates.rate(f"seed:{name}") for name in _all_seeds(d)}
    peers = {
        node: {"sent": link.sent, "backlog": len(link.backlog), "rate": rates.rate(f"peer:{node}")}
        for node, link in d.transport.links.items()
    }
    loads = {d.node_id: _load_of_self(d)}
    for node, peer in d.peers.peers.items():
        loads[node] = round(max(peer.load.values(), default=0.0), 3)
    seed_failures: dict[str, int] = {}
    for r in d.failed.recent:
        if r["seed"]:
            seed_failures[r["seed"]] = seed_failures.get(r["seed"], 0) + 1
    return {
        "time": round(time.time(), 3),
        **snap,
        "delivered": delivered,
        "rates": {"seeds": seed_rates, "peers": {n: p["rate"] for n, p in peers.items()}},
        "peers": peers,
        "loads": loads,
        "waiting_total": len(d.router.waiting),
        "waiting_states": d.router.waiting.state_count(),
        "waiting_on": _waiting_on_graph(d, shown),
        "failed_total": sum(d.failed.counts.values()),
        "seed_failures": seed_failures,
        "recent_failures": failed_view(d, RECENT_FAILURES)["recent"],
    }


def _rate_counters(d: Daemon) -> dict[str, int]:
    """What ``Rates`` differentiates: packets handled by every replica of each seed in the network (local counts,
    and each peer's own counts from its PINGs; for a peer that has not said, what this node sent it), and
    messages sent per peer."""
    assert d.router is not None and d.transport is not None and d.mesh is not None
    c = {f"seed:{n}": v for n, v in d.local_done().items()}
    reported = {node: d.mesh.done_of(node) for node in d.peers.peers}
    for done in reported.values():
        for name, n in done.items():
            c[f"seed:{name}"] = c.get(f"seed:{name}", 0) + n
    for (name, node), n in d.router.delivered.items():
        if node != d.node_id and name not in reported.get(node, {}):
            c[f"seed:{name}"] = c.get(f"seed:{name}", 0) + n
    for node, link in d.transport.links.items():
        c[f"peer:{node}"] = link.sent
    return c


# -- the server ------------------------------------------------------------------------------------


class WebServer:
    """The daemon's HTTP server: ``await start()`` after the daemon started, ``await stop()`` first at shutdown."""

    def __init__(self, daemon: Daemon, config: HttpConfig, root: Path | None = None) -> None:
        self.daemon = daemon
        self.config = config
        self.root = root or web_root()
        self.url = ""
        self.port = 0
        self.rates = Rates()
        self.graph: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}
        self.graph_seq = 0
        self.stats_seq = 0
        self._graph_key: Any = None
        # The graph payload's parts that depend on the automaton alone, kept while it stays the same version (a
        # peer turning evasive changes the hosts, not them): (key, automaton view, seeds view).
        self._structure: tuple[Any, dict[str, Any], list[dict[str, Any]]] | None = None
        self._stats_key: bytes = b""
        self._rebuild_after = 0.0  # monotonic time before which the graph payload is not rebuilt
        self._notify = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.app = self._make_app()

    # -- lifecycle -------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_as_json])
        r = app.router
        r.add_get("/", self._index)
        r.add_static("/static", self.root, append_version=False)
        r.add_get(API, self._api_index)
        r.add_get(f"{API}/openapi.json", self._openapi)
        r.add_get(f"{API}/node", self._node)
        r.add_get(f"{API}/automaton", self._automaton)
        r.add_get(f"{API}/seeds", self._seeds)
        r.add_get(f"{API}/seeds/{{name}}", self._seed)
        r.add_get(f"{API}/peers", self._peers)
        r.add_get(f"{API}/hosts", self._hosts)
        r.add_get(f"{API}/counters", self._counters)
        r.add_get(f"{API}/waiting", self._waiting)
        r.add_get(f"{API}/failed", self._failed)
        r.add_get(f"{API}/snapshot", self._snapshot)
        r.add_get(f"{API}/events", self._events)
        r.add_post(f"{API}/inject", self._inject)
        r.add_post(f"{API}/seeds/{{name}}/enable", self._enable)
        r.add_post(f"{API}/seeds/{{name}}/disable", self._disable)
        return app

    async def start(self) -> None:
        """Bind (see ``[http] port``), start sampling, and log the page's URL."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        self._runner = runner
        host, wanted = self.config.host, self.config.port
        tries = [wanted + i for i in range(PORT_TRIES) if wanted + i <= 65535] if wanted else []
        for port in [*tries, 0]:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            break
        self.port = _bound_port(runner)
        if wanted and self.port != wanted:
            log.warning("Web port %d is taken (another pmk?); serving on %d instead", wanted, self.port)
        wildcard = host in ("", "0.0.0.0", "::", "*")
        self.url = f"http://{'127.0.0.1' if wildcard else _bracket(host)}:{self.port}/"
        self._sample()
        self._sampler = asyncio.create_task(self._sample_forever(), name="web-sampler")
        extra = f" (and on every interface: http://{socket.gethostname()}:{self.port}/)" if wildcard else ""
        log.info("Web page: %s%s", self.url, extra)

    async def stop(self) -> None:
        """Close event streams, stop sampling and release the port; safe to call twice."""
        self._closing = True
        self._notify.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- sampling --------------------------------------------------------------------------------

    def _graph_signature(self) -> Any:
        d = self.daemon
        peers = tuple(
            (p.node_id, p.state.value, p.endpoint, tuple(p.addresses), p.via, tuple(s.name for s in p.seeds))
            for p in d.peers.peers.values()
        )
        links = tuple(sorted(n for n, link in (d.transport.links.items() if d.transport else ()) if link.sent))
        return d.automaton.version, frozenset(d.disabled), tuple(sorted(d.specs)), peers, links

    def _sample(self) -> None:
        """Look at the daemon once: refresh the payloads that changed and wake the event streams."""
        d = self.daemon
        self.rates.add(_rate_counters(d))
        changed = False
        key = self._graph_signature()
        began = time.monotonic()
        if key != self._graph_key and began >= self._rebuild_after:
            self._graph_key = key
            structure = (d.automaton.version, frozenset(d.disabled), tuple(sorted(d.specs)))
            if self._structure is None or self._structure[0] != structure:
                self._structure = (structure, automaton_view(d), seeds_view(d))
            _, automaton, seeds = self._structure
            self.graph = {
                "node": node_view(d, self.url, bool(self.config.token)),
                "automaton": automaton,
                "seeds": seeds,
                "hosts": hosts_view(d, seeds),
            }
            self.graph_seq += 1
            changed = True
            took = time.monotonic() - began
            self._rebuild_after = began + GRAPH_REBUILD_PAUSE * took if took > GRAPH_REBUILD_FREE_S else 0.0
        stats = counters_view(d, self.rates)
        stats_key = orjson.dumps({k: v for k, v in stats.items() if k not in ("time", "uptime_s")}, default=str)
        if stats_key != self._stats_key:
            self._stats_key = stats_key
            self.stats = stats
            self.stats_seq += 1
            changed = True
        if changed:
            self._notify.set()
            self._notify = asyncio.Event()

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            try:
                self._sample()
            except Exception:  # noqa: BLE001 - the page must never take the daemon down
                log.exception("web: sampling the daemon failed")

    # -- middleware ------------------------------------------------------------------------------

    @web.middleware
    async def _errors_as_json(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if not request.path.startswith("/api/") or exc.status < 400:
                raise
            return _error(exc.status, exc.reason if exc.text is None else exc.text.removeprefix(f"{exc.status}: "))

    def _authorise(self, request: web.Request) -> web.Response | None:
        token = self.config.token
        if not token:
            return _error(403, "this daemon's API is read-only: set [http] token in its configuration to allow POST")
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            resp = _error(401, "missing or wrong token: send 'Authorization: Bearer <[http] token>'")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="pumpkin"'
            return resp
        return None

    # -- GET -------------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.root / "index.html", headers={"Cache-Control": "no-cache"})

    async def _api_index(self, request: web.Request) -> web.Response:
        routes = sorted(
            {
                f"{r.method} {r.resource.canonical}"
                for r in self.app.router.routes()
                if r.resource is not None and r.resource.canonical.startswith(API) and r.method != "HEAD"
            }
        )
        return _json({"node": self.daemon.node_id, "pumpkin": __version__, "api": "v1", "routes": routes})

    async def _openapi(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.root / "openapi.json")

    async def _node(self, request: web.Request) -> web.Response:
        return _json(node_view(self.daemon, self.url, bool(self.config.token)))

    async def _automaton(self, request: web.Request) -> web.Response:
        return _json(automaton_view(self.daemon))

    async def _seeds(self, request: web.Request) -> web.Response:
        return _json({"node": self.daemon.node_id, "seeds": seeds_view(self.daemon)})

    async def _seed(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = next((s for s in seeds_view(self.daemon) if s["name"] == name), None)
        if found is None:
            return _error(404, f"no seed named {name!r} in this network")
        counters = counters_view(self.daemon, self.rates)
        found["counters"] = counters["seeds"].get(name)
        found["rate"] = counters["rates"]["seeds"].get(name, 0.0)
        found["delivered"] = counters["delivered"].get(name, {})
        found["recent_errors"] = failed_view(self.daemon, 20, seed=name)["recent"]
        return _json(found)

    async def _peers(self, request: web.Request) -> web.Response:
        d = self.daemon
        assert d.transport is not None
        peers = d.peers.summaries()
        for p in peers:
            link = d.transport.links.get(p["id"])
            p["link"] = (
                None
                if link is None
                else {
                    "endpoint": link.endpoint,
                    "sent": link.sent,
                    "backlog": len(link.backlog),
                    "rate": self.rates.rate(f"peer:{p['id']}"),
                }
            )
        return _json({"node": d.node_id, "peers": peers})

    async def _hosts(self, request: web.Request) -> web.Response:
        return _json(hosts_view(self.daemon))

    async def _counters(self, request: web.Request) -> web.Response:
        return _json(counters_view(self.daemon, self.rates))

    async def _waiting(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", WAITING_PEEK))
        except ValueError:
            return _error(400, "limit must be a whole number")
        return _json(waiting_view(self.daemon, request.query.get("state"), max(0, min(limit, 1000))))

    async def _failed(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", 50))
        except ValueError:
            return _error(400, "limit must be a whole number")
        return _json(failed_view(self.daemon, max(0, limit), request.query.get("seed")))

    async def _snapshot(self, request: web.Request) -> web.Response:
        self._sample()
        return _json({"graph": self.graph, "stats": self.stats})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        graph_seq = stats_seq = -1
        try:
            await resp.write(b"retry: 1000\n\n")
            while not self._closing:
                notify = self._notify
                if graph_seq != self.graph_seq:
                    graph_seq = self.graph_seq
                    await resp.write(b"event: graph\ndata: " + orjson.dumps(self.graph, default=str) + b"\n\n")
                if stats_seq != self.stats_seq:
                    stats_seq = self.stats_seq
                    await resp.write(b"event: stats\ndata: " + orjson.dumps(self.stats, default=str) + b"\n\n")
                try:
                    await asyncio.wait_for(notify.wait(), KEEPALIVE_S)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
        except (ConnectionError, RuntimeError):
            pass  # the browser went away (aiohttp raises ConnectionResetError or RuntimeError on a closed transport)
        return resp

    # -- POST ------------------------------------------------------------------------------------

    async def _inject(self, request: web.Request) -> web.Response:
        refused = self._authorise(request)
        if refused is not None:
            return refused
        try:
            body = await request.json(loads=orjson.loads)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'the body must be JSON: {"state": "STATE", "data": ...}')
        if not isinstance(body, dict) or not isinstance(body.get("state"), str) or "data" not in body:
            return _error(400, 'the body must be a JSON object {"state": "STATE", "data": ...}')
        try:
            pkt = self.daemon.new_packet(body["state"], body["data"])
        except (TagError, PacketError) as exc:
            return _error(400, str(exc))
        try:
            await self.daemon.accept([pkt], "web-inject")  # 201 means durable, as for pmk inject
        except IntakeError as exc:
            return _error(503, f"not accepted: {exc}")
        self._sample()
        return _json({"id": pkt.id, "state": str(pkt.tag)}, 201)

    async def _enable(self, request: web.Request) -> web.Response:
        return self._switch(request, True)

    async def _disable(self, request: web.Request) -> web.Response:
        return self._switch(request, False)

    def _switch(self, request: web.Request, enabled: bool) -> web.Response:
        refused = self._authorise(request)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        if name not in self.daemon.specs:
            where = self.daemon.automaton.nodes_of(name)
            why = f"it runs on {', '.join(where)}; use that node's page" if where else "no seed has that name"
            return _error(404, f"seed {name!r} does not run on this node ({why})")
        changed = self.daemon.enable_seed(name, enabled)
        self._sample()
        return _json({"name": name, "enabled": enabled, "changed": changed})


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the web server bound no TCP socket")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
