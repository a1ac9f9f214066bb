"""The live web page and its JSON API, served by the daemon itself on its own event loop (``pumpkin.httpd``).

Imported at the page's first connection (``pumpkin.webport`` binds the port at start): an idle daemon whose page
nobody opens has not loaded this module, its views or its server.

Everything is under ``/api/v1`` (documented in ``web/openapi.json`` and the README); the page is ``/`` and its
files ``/static/...``, all from the package, so it works on a LAN with no internet.

Who may see and do what: GETs show the network's structure and counters to whoever can reach ``[http] host``;
packet data, failure reasons and file paths only to a request carrying ``Authorization: Bearer <[http] token>``
(never, while no token is configured). POSTs (inject a packet, enable or disable a local seed) need the token
and ``Content-Type: application/json``, which a page of another site cannot send without a CORS preflight, and
preflights are refused. Every request must name this server in its ``Host`` header (its address, ``localhost``,
or a name in ``[http] allowed_hosts``), so a site whose DNS name is rebound to this machine reads nothing.

Slow clients: a connection must send a request's headers within ``HEADER_TIMEOUT_S`` of opening it or of its
previous answer, and a POST's body within ``BODY_TIMEOUT_S``; an event stream whose reader takes nothing for
``WRITE_TIMEOUT_S`` is closed. At most ``connection_limit()`` connections are open at once: one more closes the
one that has been idle longest, so idle connections cannot starve the page or the daemon's file descriptors.

Live updates: while an event stream is open, one sampler task looks at the daemon every ``SAMPLE_S`` (unwatched,
it only records the rates' counters, every ``UNWATCHED_SAMPLE_S``) and keeps two payloads, *graph* (the
structure: automaton, seeds, hosts; rebuilt only when the automaton version, the peer table or the disabled set
changes) and *stats* (counters, rates, waiting and failed packets, loads). ``/api/v1/events`` is a server-sent
event stream: ``graph`` and ``stats`` events carry the new payload each time one changes, coalesced, so a slow
browser skips intermediate states instead of queueing them. Rates are counter deltas over ``RATE_WINDOW_S``,
as seen from this node: what it ran and what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import resource
import socket
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import netifaces
import orjson

from . import __version__, tags
from .config import HttpConfig
from .errors import ConfigError, IntakeError, PacketError, TagError
from .httpd import HttpError, HttpServer, Request, Response, Routes, Stream
from .packet import Packet
from .supervisor import Spawn, unsupervised
from .tags import StateTag
from .webport import WILDCARD_HOSTS, page_url

if TYPE_CHECKING:
    from .query import NodeQuery

log = logging.getLogger(__name__)

API = "/api/v1"
SAMPLE_S = 0.25  # how often the sampler looks: a change reaches the page within this plus a frame
RATE_WINDOW_S = 2.0  # packets/s are averaged over this much history
#: While no event stream is open the sampler only records the rates' counters, this often (< RATE_WINDOW_S).
UNWATCHED_SAMPLE_S = 1.0
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies and idle browsers from closing the stream
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
HEADER_TIMEOUT_S = 10.0  # a request's headers must arrive this soon after the connection opens or last answered
BODY_TIMEOUT_S = 10.0  # a POST's body must arrive this soon after its headers (MAX_BODY_BYTES: 100 kB/s at least)
WRITE_TIMEOUT_S = 10.0  # an answer or event stream whose reader takes no data for this long is cut off
MAX_BODY_BYTES = 1 << 20
MAX_CONNECTIONS = 256  # open at once; fewer when the open-file limit is low (see connection_limit)
MIN_CONNECTIONS = 8
MAX_STREAMS = 32  # event streams at once, and never more than half the connections
HOST_REFRESH_S = 1.0  # a wildcard bind reads this machine's addresses again on an unknown Host, this often at most
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# What a failure record shows without the token: where and when, not the reason (it can quote the data) nor
# the file it was kept in.
PUBLIC_FAILURE_KEYS = ("time", "kind", "seed", "packet", "state")

K = TypeVar("K", bound=Hashable)


def web_root() -> Path:
    """The page's files: ``web/`` in a checkout, else the installed ``pumpkin.webpage`` package."""
    checkout = Path(__file__).resolve().parent.parent / "web"
    if (checkout / "index.html").is_file():
        return checkout
    return Path(str(resources.files("pumpkin.webpage")))


def _json(data: Any, status: int = 200) -> Response:
    # no-store: what a request with the token was shown must not be kept for one without
    return Response(
        status,
        orjson.dumps(data, default=str),
        {"Cache-Control": "no-store"},
        content_type="application/json; charset=utf-8",
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "status": status}, status)


#: Media types of the page's files, by suffix (anything else is served as bytes).
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


def _file(request: Request, path: Path) -> Response:
    """One of the page's files (small: read whole); 404 when it is not there. The browser keeps it and asks
    again each time (``no-cache``) with the ETag it got: 304, no body, while the file is unchanged."""
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            tag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            if tag in (request.headers.get("If-None-Match") or "").split(","):
                return Response(304, b"", {"ETag": tag, "Cache-Control": "no-cache"})
            body = f.read()
    except (OSError, ValueError):  # not there, a folder, a name too long, a NUL in it (%00)...
        raise HttpError(404, f"no file {path.name!r}") from None
    media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return Response(200, body, {"ETag": tag, "Cache-Control": "no-cache"}, content_type=media)


def preview(data: Any) -> str:
    """A short text form of packet data for the page (bytes are described, not shown)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(data))} bytes>"
    try:
        text = orjson.dumps(data).decode()
    except TypeError:
        text = repr(data)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def packet_view(packet: Packet, now_wall: float, full: bool = False) -> dict[str, Any]:
    """A waiting packet as the page lists it; its data only when ``full`` (the request carried the token)."""
    out = {
        "id": packet.id,
        "state": str(packet.tag),
        "age_s": round(now_wall - packet.created, 3),
        "ttl": packet.ttl,
        "trail": [{"seed": h.seed, "node": h.node, "state": h.tag, "at": h.at} for h in packet.trail],
    }
    if full:
        out["data"] = preview(packet.data)
    return out


def failure_view(record: dict[str, Any], full: bool) -> dict[str, Any]:
    """A failure record: all of it when ``full``, else only ``PUBLIC_FAILURE_KEYS``."""
    return dict(record) if full else {k: record[k] for k in PUBLIC_FAILURE_KEYS if k in record}


def public_counters(stats: dict[str, Any]) -> dict[str, Any]:
    """``counters_view`` without what needs the token: folder paths and failure reasons."""
    out = dict(stats)
    for key in ("rx", "tx"):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != "dir"}
    out["recent_failures"] = [failure_view(r, False) for r in stats.get("recent_failures", [])]
    return out


class Connections(Generic[K]):
    """Open connections and whether each is busy (a request being handled) or idle, since when: says which to
    close for idling too long, and which to drop when there are too many. Pure: the clock is injected.

    The dict keeps idle connections in the order they became idle (busy ones hold None), so the first idle
    one is the longest idle.
    """

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self._idle_since: dict[K, float | None] = {}

    def __len__(self) -> int:
        return len(self._idle_since)

    def opened(self, key: K, limit: int) -> list[K]:
        """A new connection; returns the ones to close now to stay within ``limit``: the longest idle, or this
        new one itself when every other is busy."""
        self._idle_since[key] = self.clock()
        drop: list[K] = []
        while len(self._idle_since) > max(limit, 1):
            victim = next((k for k, since in self._idle_since.items() if since is not None and k != key), key)
            del self._idle_since[victim]
            drop.append(victim)
            if victim == key:
                break
        return drop

    def busy(self, key: K) -> None:
        """A request on ``key`` is being handled: meanwhile it neither idles out nor is dropped."""
        if key in self._idle_since:
            self._idle_since[key] = None

    def idle(self, key: K) -> None:
        """``key`` answered its request: its next one must come within ``idle_s``."""
        if key in self._idle_since:
            del self._idle_since[key]
            self._idle_since[key] = self.clock()

    def closed(self, key: K) -> None:
        """``key`` is gone."""
        self._idle_since.pop(key, None)

    def open(self) -> list[K]:
        """Every connection still counted."""
        return list(self._idle_since)

    def expired(self) -> list[K]:
        """The connections idle for ``idle_s`` or more, forgotten here: the caller closes them."""
        deadline = self.clock() - self.idle_s
        out = []
        for key, since in self._idle_since.items():
            if since is None:
                continue
            if since > deadline:
                break  # idle ones are in order: the rest are younger
            out.append(key)
        for key in out:
            del self._idle_since[key]
        return out

    def next_expiry_s(self) -> float:
        """Seconds until a connection may next expire (``idle_s`` while none is idle: a new one waits that long)."""
        first = next((since for since in self._idle_since.values() if since is not None), None)
        return self.idle_s if first is None else max(0.0, first + self.idle_s - self.clock())


def connection_limit() -> int:
    """``MAX_CONNECTIONS``, or a quarter of this process's open-file limit when that is lower: the other three
    quarters stay for the daemon's sockets, journal and seeds. Read at each new connection, so ``prlimit`` on
    a running daemon counts."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, soft // 4))


def split_host(value: str) -> tuple[str, int | None]:
    """A ``Host`` header (or an ``[http] allowed_hosts`` entry) as (name, port or None), the name lower-case
    without a trailing dot and an IP address in its canonical form; ValueError when it is not one."""
    text = value.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not a host: {value!r}")
        port = rest[1:]
    elif text.count(":") > 1:  # an IPv6 address without brackets: only in allowed_hosts
        name, port = text, ""
    else:
        name, _, port = text.partition(":")
    name = name.rstrip(".")
    if not name or (port and not (port.isascii() and port.isdigit() and int(port) <= 65535)):
        raise ValueError(f"not a host: {value!r}")
    with contextlib.suppress(ValueError):
        name = ipaddress.ip_address(name).compressed
    return name, int(port) if port else None


class HostCheck:
    """Which ``Host`` header values name this server (against DNS rebinding); pure, the machine's own names
    and addresses passed in.

    Accepted: the bound address, the loopback names and ``own`` (a wildcard bind's addresses and host names),
    each with the bound port (no port means 80); a name listed in ``allowed`` with any port, or ``name:port``
    with that port; anything when ``allowed`` holds ``*``. A request without a ``Host`` (HTTP/1.0) is accepted:
    browsers always send one.
    """

    def __init__(self, bound: str, port: int, allowed: Iterable[str] = (), own: Iterable[str] = ()) -> None:
        self.port = port
        allowed = tuple(allowed)
        self.names: set[str] = set()
        self.anything = "*" in allowed
        for name in (*LOOPBACK_NAMES, *own, *(() if bound in WILDCARD_HOSTS else (bound,))):
            with contextlib.suppress(ValueError):
                self.names.add(split_host(name)[0])
        self.extra = {split_host(entry) for entry in allowed if entry != "*"}

    def allows(self, value: str | None) -> bool:
        """Whether a request with this ``Host`` header may be answered."""
        if value is None or self.anything:
            return True
        try:
            name, port = split_host(value)
        except ValueError:
            return False
        port = 80 if port is None else port
        return (name in self.names and port == self.port) or bool({(name, None), (name, port)} & self.extra)


def own_names() -> set[str]:
    """This machine's addresses (every interface, both families) and host names, for a wildcard bind."""
    out = {socket.gethostname(), f"{socket.gethostname()}.local"}
    for interface in netifaces.interfaces():
        for family in (netifaces.AF_INET, netifaces.AF_INET6):
            for entry in netifaces.ifaddresses(interface).get(family, []):
                address = str(entry.get("addr", "")).split("%")[0]  # fe80::1%eth0: the zone is no part of a Host
                if address:
                    out.add(address)
    return out


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


def node_view(q: NodeQuery, url: str, post_enabled: bool) -> dict[str, Any]:
    """This node."""
    node = q.node()
    return {
        "id": node["id"],
        "group": node["group"],
        "ship": node["ship"],
        "pumpkin": __version__,
        "endpoints": node["endpoints"],
        "http": url,
        "post": post_enabled,
        "uptime_s": node["uptime_s"],
        "automaton_version": node["automaton_version"],
        "seeds": node["seeds"],
    }


def automaton_view(q: NodeQuery) -> dict[str, Any]:
    """The automaton in networkx node-link form; ``graph`` holds its version and the node that answered."""
    return q.automaton()


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


def seeds_view(q: NodeQuery) -> list[dict[str, Any]]:
    """Every seed in the network (and this node's disabled ones), with which seeds it feeds."""
    known = q.seed_tags()
    local = q.local_seeds()
    feeds, fed_by = feeds_of(known)
    out = []
    for name in sorted(known):
        ins, outs = known[name]
        spec = local.get(name)
        out.append(
            {
                "name": name,
                "inputs": [str(t) for t in ins],
                "outputs": [str(t) for t in outs],
                "nodes": q.nodes_of(name),
                "local": spec is not None,
                "enabled": spec["enabled"] if spec else True,
                "injector": not ins,
                "extractor": not outs,
                "feeds": feeds[name],
                "fed_by": fed_by[name],
                "workers": spec["workers"] if spec else None,
                "description": spec["description"] if spec else "",
            }
        )
    return out


def hosts_view(q: NodeQuery, seeds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Hosts (this node and its peers) in node-link form, linked where some seed's output feeds a seed there."""
    seeds = seeds_view(q) if seeds is None else seeds
    me = q.node_id()
    advertise = q.advertise()
    nodes: list[dict[str, Any]] = [
        {
            "id": me,
            "self": True,
            "state": "alive",
            "endpoint": ", ".join(q.endpoints()),
            "addresses": [advertise] if advertise else [],
            "via": "",
            "seeds": sorted(n for n, s in q.local_seeds().items() if s["enabled"]),
        }
    ]
    for p in q.peers():
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
                "answering": p.get("answering", True),
            }
        )
    present = {n["id"] for n in nodes}
    # Which hosts feed which: per consumed tag, the hosts of the seeds emitting a matching tag (found by key and
    # type, not by comparing every pair of seeds), to the hosts of the consuming seed.
    where = {s["name"]: [n for n in s["nodes"] if n in present] for s in seeds}
    known = q.seed_tags()
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
    for peer, link in q.links().items():
        if peer in present and link["sent"]:
            flows.setdefault((me, peer), set())
    links = [{"source": x, "target": y, "seeds": sorted(names)} for (x, y), names in sorted(flows.items())]
    return {"directed": True, "multigraph": False, "graph": {"node": me}, "nodes": nodes, "links": links}


def waiting_view(
    q: NodeQuery, state: StateTag | None = None, limit: int = WAITING_PEEK, full: bool = False
) -> dict[str, Any]:
    """Packets waiting for a consumer, per state, with the oldest few of each (their data only when ``full``);
    only in states ``state`` matches (as a seed declaring it would consume them), when given."""
    now = time.time()
    out: dict[str, Any] = {}
    for text, count in sorted(q.waiting_counts().items()):
        tag = tags.parse(text)
        if state is not None and not state.matches(tag):
            continue
        out[text] = {"count": count, "oldest": [packet_view(p, now, full) for p in q.waiting_oldest(tag, limit)]}
    return {"total": sum(v["count"] for v in out.values()), "states": out}


def failed_view(q: NodeQuery, limit: int = 50, seed: str | None = None, full: bool = False) -> dict[str, Any]:
    """Failure counts by kind and the most recent failures, newest first; their reasons, files and the folder
    only when ``full``."""
    recent = [failure_view(r, full) for r in reversed(q.failed_recent()) if seed is None or r["seed"] == seed][:limit]
    counts = q.failed_counts()
    out: dict[str, Any] = {"counts": counts, "total": sum(counts.values()), "recent": recent}
    if full:
        out["folder"] = q.failed_folder()
    return out


def _waiting_on_graph(q: NodeQuery, shown: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Waiting counts of the states ``shown``, each with the automaton states it is drawn on (a wildcard type
    matches every type); automaton states looked up by (group, state), not compared one by one."""
    by_key: dict[tuple[str, str], list[StateTag]] = {}
    for s in q.states():
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


def counters_view(q: NodeQuery, rates: Rates) -> dict[str, Any]:
    """Counters, rates (packets/s as seen from this node), loads and queue depths; ``public_counters`` takes
    out what needs the token."""
    snap = q.stats()
    # The fullest states only: a stranger's packets can make thousands of states wait, which the page could not
    # draw, and which would make every sample as large (/api/v1/waiting lists them all).
    shown = q.waiting_largest(WAITING_SHOWN)
    snap["waiting"] = dict(shown)
    seeds = snap["seeds"]
    disabled = q.disabled()
    for name, c in seeds.items():
        c["rate"] = rates.rate(f"seed:{name}")
        c["enabled"] = name not in disabled
    delivered: dict[str, dict[str, int]] = {}
    for (name, node), n in q.delivered().items():
        delivered.setdefault(name, {})[node] = n
    seed_rates = {name: rates.rate(f"seed:{name}") for name in q.seed_tags()}
    peers = {
        node: {"sent": link["sent"], "backlog": link["backlog"], "rate": rates.rate(f"peer:{node}")}
        for node, link in q.links().items()
    }
    loads = {q.node_id(): q.local_load(), **q.peer_loads()}
    seed_failures: dict[str, int] = {}
    for r in q.failed_recent():
        if r["seed"]:
            seed_failures[r["seed"]] = seed_failures.get(r["seed"], 0) + 1
    failed_counts = q.failed_counts()
    return {
        "time": round(time.time(), 3),
        **snap,
        "delivered": delivered,
        "rates": {"seeds": seed_rates, "peers": {n: p["rate"] for n, p in peers.items()}},
        "peers": peers,
        "loads": loads,
        "waiting_total": q.waiting_total(),
        "waiting_states": q.waiting_states(),
        "waiting_on": _waiting_on_graph(q, shown),
        "failed_total": sum(failed_counts.values()),
        "seed_failures": seed_failures,
        "recent_failures": failed_view(q, RECENT_FAILURES, full=True)["recent"],
    }


def _rate_counters(q: NodeQuery) -> dict[str, int]:
    """What ``Rates`` differentiates: packets handled by every replica of each seed in the network (local counts,
    and each peer's own counts from its PINGs; for a peer that has not said, what this node sent it), and
    messages sent per peer."""
    c = {f"seed:{n}": v for n, v in q.local_done().items()}
    reported = q.peer_done()
    for done in reported.values():
        for name, n in done.items():
            c[f"seed:{name}"] = c.get(f"seed:{name}", 0) + n
    me = q.node_id()
    for (name, node), n in q.delivered().items():
        if node != me and name not in reported.get(node, {}):
            c[f"seed:{name}"] = c.get(f"seed:{name}", 0) + n
    for node, link in q.links().items():
        c[f"peer:{node}"] = link["sent"]
    return c


class Commands(Protocol):
    """What the page's POSTs may ask of the daemon (everything else it reads through a ``NodeQuery``)."""

    def new_packet(self, state: str, data: Any) -> Packet:
        """A new packet of ``state`` carrying ``data``; TagError or PacketError when they are not valid."""
        ...

    async def accept(self, batch: list[Packet], via: str) -> None:
        """Take ``batch`` in, durably; IntakeError when it cannot."""
        ...

    def enable_seed(self, name: str, enabled: bool) -> bool:
        """Switch local seed ``name`` on or off; True when that changed anything."""
        ...


# -- the server ------------------------------------------------------------------------------------


class WebServer:
    """The daemon's HTTP server, made by ``webport.WebPort`` at the page's first connection: ``await start(sockets)``
    on the sockets bound at the daemon's start, ``await stop()`` first at shutdown."""

    def __init__(
        self,
        query: NodeQuery,
        commands: Commands,
        config: HttpConfig,
        root: Path | None = None,
        spawn: Spawn = unsupervised,
    ) -> None:
        """``query``: everything the page reads; ``commands``: the few things its POSTs do; ``spawn`` starts its
        loops (restarted if they crash: the page must never take the daemon down)."""
        self._spawn = spawn
        self.query = query
        self.commands = commands
        self.config = config
        self.root = root or web_root()
        for entry in config.allowed_hosts:
            if entry != "*":
                try:
                    split_host(entry)
                except ValueError:
                    raise ConfigError(
                        f"config key http.allowed_hosts: {entry!r} is not a host name or host:port"
                    ) from None
        self.url = ""
        self.port = 0
        self.rates = Rates()
        self.graph: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}
        self.public_stats: dict[str, Any] = {}
        self.graph_seq = 0
        self.stats_seq = 0
        self.connections: Connections[asyncio.Transport] = Connections(HEADER_TIMEOUT_S)
        self.streams: set[Stream] = set()
        self.hosts = HostCheck(config.host, 0)
        self._hosts_read = 0.0
        self._warned_full = False
        self._graph_key: Any = None
        # The graph payload's parts that depend on the automaton alone, kept while it stays the same version (a
        # peer turning evasive changes the hosts, not them): (key, automaton view, seeds view).
        self._structure: tuple[Any, dict[str, Any], list[dict[str, Any]]] | None = None
        self._stats_key: bytes = b""
        self._rebuild_after = 0.0  # monotonic time before which the graph payload is not rebuilt
        self._notify = asyncio.Event()
        self._closing = False
        self._http: HttpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._exporter: Any = None  # metrics.Exporter, made at the first scrape (prometheus_client is imported then)
        self.routes = self._make_routes()

    # -- lifecycle -------------------------------------------------------------------------------

    def _make_routes(self) -> Routes:
        r = Routes()
        r.add("GET", "/", self._index)
        r.add("GET", "/static/{path:path}", self._static)
        r.add("GET", API, self._api_index)
        r.add("GET", f"{API}/openapi.json", self._openapi)
        r.add("GET", f"{API}/node", self._node)
        r.add("GET", f"{API}/automaton", self._automaton)
        r.add("GET", f"{API}/seeds", self._seeds)
        r.add("GET", f"{API}/seeds/{{name}}", self._seed)
        r.add("GET", f"{API}/peers", self._peers)
        r.add("GET", f"{API}/hosts", self._hosts)
        r.add("GET", f"{API}/counters", self._counters)
        r.add("GET", f"{API}/waiting", self._waiting)
        r.add("GET", f"{API}/failed", self._failed)
        r.add("GET", f"{API}/snapshot", self._snapshot)
        r.add("GET", f"{API}/events", self._events, head=False)
        r.add("GET", "/metrics", self._metrics)
        r.add("POST", f"{API}/inject", self._inject)
        r.add("POST", f"{API}/seeds/{{name}}/enable", self._enable)
        r.add("POST", f"{API}/seeds/{{name}}/disable", self._disable)
        return r

    async def start(self, sockets: list[socket.socket]) -> None:
        """Serve on ``sockets`` (listening, from ``webport.listen``; their servers close them) and start sampling."""
        server_log = _LoudOnce(logging.getLogger(f"{__name__}.server"))
        self.port = int(sockets[0].getsockname()[1])
        self.url = page_url(self.config.host, self.port)
        self.hosts = self._host_check()
        self._http = HttpServer(self._dispatch, self, MAX_BODY_BYTES, server_log, WRITE_TIMEOUT_S)
        await self._http.serve(sockets)
        self._sample()
        self._tasks = [
            self._spawn("web-sampler", self._sample_forever),
            self._spawn("web-reaper", self._reap_forever),
        ]

    async def stop(self) -> None:
        """Close event streams, stop sampling and release the port; safe to call twice."""
        self._closing = True
        self._notify.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for transport in self.connections.open():
            transport.abort()  # now: a polite close would wait for a reader that may never read
        if self._http is not None:
            await self._http.close(SHUTDOWN_S)
            self._http = None

    # -- connections -----------------------------------------------------------------------------

    def connection_opened(self, transport: asyncio.Transport) -> None:
        """Count a new connection; past the limit, close the longest idle one (or this one, if all are busy)."""
        limit = connection_limit()
        for old in self.connections.opened(transport, limit):
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "web: %d connections open, the most this daemon allows (a quarter of its open-file limit, "
                    "at most %d): closing the longest idle ones (further closings are logged at debug level)",
                    limit,
                    MAX_CONNECTIONS,
                )
            else:
                log.debug("web: too many connections: closing the longest idle one")
            old.abort()  # abort, not close: close would wait for a reader that may never read

    def connection_busy(self, transport: asyncio.Transport) -> None:
        """A request arrived on ``transport``: while it is answered, the connection neither idles out nor is dropped."""
        self.connections.busy(transport)

    def connection_idle(self, transport: asyncio.Transport) -> None:
        """``transport`` answered: its next request's headers must come within ``HEADER_TIMEOUT_S``."""
        self.connections.idle(transport)

    def connection_closed(self, transport: asyncio.Transport) -> None:
        """Forget a connection that closed."""
        self.connections.closed(transport)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.connections.next_expiry_s()))
            for transport in self.connections.expired():
                log.debug("web: closing a connection that sent no complete request in %g s", HEADER_TIMEOUT_S)
                transport.abort()

    def _host_check(self) -> HostCheck:
        wildcard = self.config.host in WILDCARD_HOSTS
        self._hosts_read = time.monotonic()
        own = own_names() if wildcard else ()
        return HostCheck(self.config.host, self.port, self.config.allowed_hosts, own)

    def _host_allowed(self, value: str | None) -> bool:
        if self.hosts.allows(value):
            return True
        if self.config.host in WILDCARD_HOSTS and time.monotonic() - self._hosts_read >= HOST_REFRESH_S:
            self.hosts = self._host_check()  # this machine may have a new address since
            return self.hosts.allows(value)
        return False

    # -- sampling --------------------------------------------------------------------------------

    def _graph_signature(self) -> Any:
        q = self.query
        links = tuple(sorted(n for n, link in q.links().items() if link["sent"]))
        return q.automaton_version(), q.disabled(), tuple(sorted(q.local_seeds())), q.peer_signature(), links

    def _sample(self) -> None:
        """Look at the daemon once: refresh the payloads that changed and wake the event streams."""
        q = self.query
        self.rates.add(_rate_counters(q))
        changed = False
        key = self._graph_signature()
        began = time.monotonic()
        if key != self._graph_key and began >= self._rebuild_after:
            self._graph_key = key
            structure = (q.automaton_version(), q.disabled(), tuple(sorted(q.local_seeds())))
            if self._structure is None or self._structure[0] != structure:
                self._structure = (structure, automaton_view(q), seeds_view(q))
            _, automaton, seeds = self._structure
            self.graph = {
                "node": node_view(q, self.url, bool(self.config.token)),
                "automaton": automaton,
                "seeds": seeds,
                "hosts": hosts_view(q, seeds),
            }
            self.graph_seq += 1
            changed = True
            took = time.monotonic() - began
            self._rebuild_after = began + GRAPH_REBUILD_PAUSE * took if took > GRAPH_REBUILD_FREE_S else 0.0
        stats = counters_view(q, self.rates)
        stats_key = orjson.dumps({k: v for k, v in stats.items() if k not in ("time", "uptime_s")}, default=str)
        if stats_key != self._stats_key:
            self._stats_key = stats_key
            self.stats = stats
            self.public_stats = public_counters(stats)
            self.stats_seq += 1
            changed = True
        if changed:
            self._notify.set()
            self._notify = asyncio.Event()

    async def _sample_forever(self) -> None:
        while True:
            # While no page watches, only the rates' counters are sampled, and less often: the payloads are
            # built for event streams (and on demand by /api/v1/snapshot), and an idle daemon should sleep.
            await asyncio.sleep(SAMPLE_S if self.streams else UNWATCHED_SAMPLE_S)
            try:
                if self.streams:
                    self._sample()
                else:
                    self.rates.add(_rate_counters(self.query))
            except Exception:  # noqa: BLE001 - the page must never take the daemon down
                log.exception("web: sampling the daemon failed")

    # -- every request -------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response | Stream:
        """Refuse a second or foreign ``Host`` and a wrong token, then answer by route; errors under ``/api/`` as
        JSON, elsewhere as text."""
        api = request.path.startswith("/api/")
        host = request.headers.get("Host")
        if request.host_count > 1:
            return _error(400, "more than one Host header") if api else Response(400, "more than one Host header\n")
        if not self._host_allowed(host):
            why = (
                f"Host {host!r} does not name this server (a DNS rebinding attempt?): reach it as {self.url}, "
                "or add the name to [http] allowed_hosts"
            )
            resp = _error(421, why) if api else Response(421, why)
            resp.close = True
            return resp
        given = request.headers.get("Authorization")
        if given is not None and self.config.token and not _token_matches(given, self.config.token):
            return self._unauthorised()  # a typo must not look like an empty folder
        try:
            handler, request.match_info = self.routes.match(request.method, request.path)
            return await handler(request)
        except HttpError as exc:
            if not api:
                raise
            resp = _error(exc.status, exc.message)
            resp.headers.update(exc.headers)
            resp.close = exc.status == 413
            return resp

    def _full(self, request: Request) -> bool:
        """Whether the request carries the token: it may see packet data, failure reasons and file paths."""
        given = request.headers.get("Authorization")
        return bool(self.config.token) and given is not None and _token_matches(given, self.config.token)

    @staticmethod
    def _unauthorised() -> Response:
        resp = _error(401, "missing or wrong token: send 'Authorization: Bearer <[http] token>'")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="pumpkin"'
        return resp

    def _authorise(self, request: Request) -> Response | None:
        """None when a POST may go on: the token (checked by ``_guard``) and a JSON body."""
        if not self.config.token:
            return _error(403, "this daemon's API is read-only: set [http] token in its configuration to allow POST")
        if not self._full(request):
            return self._unauthorised()
        if request.content_type != "application/json":
            got = request.headers.get("Content-Type")
            why = f"POST bodies must be JSON: send 'Content-Type: application/json' (got {got or 'none'!r})"
            return _error(415, why)
        return None

    # -- GET -------------------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        return _file(request, self.root / "index.html")

    async def _static(self, request: Request) -> Response:
        """The page's files under ``/static/``: only from the page's folder (no ``..``, no hidden files)."""
        parts = request.match_info["path"].split("/")
        if any(not part or part.startswith(".") for part in parts):
            raise HttpError(404, "no such file")
        return _file(request, self.root.joinpath(*parts))

    async def _api_index(self, request: Request) -> Response:
        routes = sorted({r for r in self.routes.listing() if r.split(" ", 1)[1].startswith(API)})
        return _json({"node": self.query.node_id(), "pumpkin": __version__, "api": "v1", "routes": routes})

    async def _openapi(self, request: Request) -> Response:
        return _file(request, self.root / "openapi.json")

    async def _node(self, request: Request) -> Response:
        return _json(node_view(self.query, self.url, bool(self.config.token)))

    async def _automaton(self, request: Request) -> Response:
        return _json(automaton_view(self.query))

    async def _seeds(self, request: Request) -> Response:
        return _json({"node": self.query.node_id(), "seeds": seeds_view(self.query)})

    async def _seed(self, request: Request) -> Response:
        name = request.match_info["name"]
        found = next((s for s in seeds_view(self.query) if s["name"] == name), None)
        if found is None:
            return _error(404, f"no seed named {name!r} in this network")
        counters = counters_view(self.query, self.rates)
        found["counters"] = counters["seeds"].get(name)
        found["rate"] = counters["rates"]["seeds"].get(name, 0.0)
        found["delivered"] = counters["delivered"].get(name, {})
        found["recent_errors"] = failed_view(self.query, 20, seed=name, full=self._full(request))["recent"]
        return _json(found)

    async def _peers(self, request: Request) -> Response:
        q = self.query
        peers = q.peers()
        links = q.links()
        for p in peers:
            link = links.get(p["id"])
            p["link"] = None if link is None else {**link, "rate": self.rates.rate(f"peer:{p['id']}")}
        return _json({"node": q.node_id(), "peers": peers})

    async def _hosts(self, request: Request) -> Response:
        return _json(hosts_view(self.query))

    async def _metrics(self, request: Request) -> Response:
        """Prometheus's text format (see ``metrics``): counters and structure only, as a GET without the token."""
        if self._exporter is None:
            from . import metrics  # prometheus_client is imported at the first scrape, not by an idle daemon

            self._exporter = metrics.Exporter(self.query)
        body, content_type = self._exporter.render(request.headers.get("Accept", ""))
        return Response(200, body, {"Content-Type": content_type, "Cache-Control": "no-store"})

    async def _counters(self, request: Request) -> Response:
        stats = counters_view(self.query, self.rates)
        return _json(stats if self._full(request) else public_counters(stats))

    async def _waiting(self, request: Request) -> Response:
        try:
            limit = int(request.query.get("limit", WAITING_PEEK))
        except ValueError:
            return _error(400, "limit must be a whole number")
        state: StateTag | None = None
        if "state" in request.query:  # written as everywhere else: STATE, type:STATE or group:type:STATE
            try:
                state = tags.parse(request.query["state"], self.query.node()["group"])
            except TagError as exc:
                return _error(400, str(exc))
        return _json(waiting_view(self.query, state, max(0, min(limit, 1000)), self._full(request)))

    async def _failed(self, request: Request) -> Response:
        try:
            limit = int(request.query.get("limit", 50))
        except ValueError:
            return _error(400, "limit must be a whole number")
        return _json(failed_view(self.query, max(0, limit), request.query.get("seed"), self._full(request)))

    async def _snapshot(self, request: Request) -> Response:
        self._sample()
        return _json({"graph": self.graph, "stats": self.stats if self._full(request) else self.public_stats})

    async def _events(self, request: Request) -> Response | Stream:
        """Server-sent events, always the public view: EventSource cannot send the token (the page fetches the
        rest with it)."""
        most = min(MAX_STREAMS, connection_limit() // 2)
        if len(self.streams) >= most:
            full = _error(503, f"{most} event streams are open, this daemon's most: close another page of it first")
            full.headers["Retry-After"] = "5"
            return full
        self._sample()  # nothing sampled the payloads while no page watched
        resp = await request.stream(
            200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self.streams.add(resp)
        graph_seq = stats_seq = -1
        try:
            await _send(request, resp, b"retry: 1000\n\n")
            while not self._closing:
                notify = self._notify
                if graph_seq != self.graph_seq:
                    graph_seq = self.graph_seq
                    body = orjson.dumps(self.graph, default=str)
                    await _send(request, resp, b"event: graph\ndata: " + body + b"\n\n")
                if stats_seq != self.stats_seq:
                    stats_seq = self.stats_seq
                    body = orjson.dumps(self.public_stats, default=str)
                    await _send(request, resp, b"event: stats\ndata: " + body + b"\n\n")
                try:
                    await asyncio.wait_for(notify.wait(), KEEPALIVE_S)
                except TimeoutError:
                    await _send(request, resp, b": keep-alive\n\n")
        except ConnectionError:
            pass  # the browser went away
        finally:
            self.streams.discard(resp)
        return resp

    # -- POST ------------------------------------------------------------------------------------

    async def _inject(self, request: Request) -> Response:
        refused = self._authorise(request)
        if refused is not None:
            return refused
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                raw = await request.read()
        except TimeoutError:
            resp = _error(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s")
            resp.close = True
            return resp
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, 'the body must be JSON: {"state": "STATE", "data": ...}')
        if not isinstance(body, dict) or not isinstance(body.get("state"), str) or "data" not in body:
            return _error(400, 'the body must be a JSON object {"state": "STATE", "data": ...}')
        try:
            pkt = self.commands.new_packet(body["state"], body["data"])
        except (TagError, PacketError) as exc:
            return _error(400, str(exc))
        try:
            await self.commands.accept([pkt], "web-inject")  # 201 means durable, as for pmk inject
        except IntakeError as exc:
            return _error(503, f"not accepted: {exc}")
        self._sample()
        return _json({"id": pkt.id, "state": str(pkt.tag)}, 201)

    async def _enable(self, request: Request) -> Response:
        return self._switch(request, True)

    async def _disable(self, request: Request) -> Response:
        return self._switch(request, False)

    def _switch(self, request: Request, enabled: bool) -> Response:
        refused = self._authorise(request)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        if name not in self.query.local_seeds():
            where = self.query.nodes_of(name)
            why = f"it runs on {', '.join(where)}; use that node's page" if where else "no seed has that name"
            return _error(404, f"seed {name!r} does not run on this node ({why})")
        changed = self.commands.enable_seed(name, enabled)
        self._sample()
        return _json({"name": name, "enabled": enabled, "changed": changed})


class _LoudOnce(logging.LoggerAdapter[logging.Logger]):
    """The HTTP server's log: its first warning or error as it is, the rest at debug level (it logs every
    malformed request, and a client sending junk must not fill the log)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self.loud = True

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.WARNING:
            if not self.loud:
                level = logging.DEBUG
            else:
                self.loud = False
                msg = f"{msg} (further ones are logged at debug level)"
        super().log(level, msg, *args, **kwargs)


async def _send(request: Request, resp: Stream, chunk: bytes) -> None:
    """Write to an event stream; a reader that takes nothing for ``WRITE_TIMEOUT_S`` is cut off."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await resp.write(chunk)
    except TimeoutError:
        log.info("web: closing an event stream whose reader took no data for %g s", WRITE_TIMEOUT_S)
        request.transport.abort()
        raise ConnectionResetError("the reader took no data") from None


def _token_matches(header: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    return header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode())
