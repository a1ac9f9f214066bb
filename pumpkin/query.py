"""What a node knows, read-only and as plain data: the one interface the web page and ``pmk stats`` read.

Views (``pumpkin.web``) never reach into the router, the transport or the peer table: they ask a ``NodeQuery``,
so the daemon's internals can change without the page noticing, and every reader sees the same counters.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import logfold
from .discovery import BeaconDiscovery, LocalDiscovery, MdnsDiscovery
from .packet import Packet
from .tags import StateTag
from .transport import open_files

if TYPE_CHECKING:
    from .daemon import Daemon

SeedTags = dict[str, tuple[tuple[StateTag, ...], tuple[StateTag, ...]]]


class NodeQuery:
    """Read-only questions about one running daemon; every answer is a fresh plain value (never a live object)."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon

    # -- this node -------------------------------------------------------------------------------

    def node_id(self) -> str:
        """This node's id."""
        return self._d.node_id

    def node(self) -> dict[str, Any]:
        """This node: id, group, process, endpoints, uptime, automaton version and local seeds."""
        d = self._d
        return {
            "id": d.node_id,
            "group": d.config.node.group,
            "ship": d.ids.ship,
            "endpoints": self.endpoints(),
            "uptime_s": round(time.time() - d.stats.started, 3),
            "automaton_version": d.automaton.version,
            "seeds": sorted(d.specs),
        }

    def endpoints(self) -> list[str]:
        """Where peers reach this node's data socket."""
        t = self._d.transport
        return list(t.data_endpoints) if t is not None else []

    def advertise(self) -> str:
        """The address this node announces (empty when none)."""
        return self._d.advertise

    # -- automaton and seeds ---------------------------------------------------------------------

    def automaton_version(self) -> int:
        """Bumped whenever the automaton changes."""
        return self._d.automaton.version

    def automaton(self) -> dict[str, Any]:
        """The automaton in networkx node-link form; ``graph`` holds its version and the node that answered."""
        d = self._d
        data = d.automaton.node_link()
        data["graph"] = {**data.get("graph", {}), "version": d.automaton.version, "node": d.node_id}
        return data

    def states(self) -> list[StateTag]:
        """Every state of the automaton."""
        return list(self._d.automaton.states())

    def seed_tags(self) -> SeedTags:
        """Inputs and outputs of every seed in the network, and of this node's disabled ones."""
        d = self._d
        known = {n: (i.inputs, i.outputs) for n, i in d.automaton.seeds().items()}
        for name in d.disabled:
            spec = d.specs[name]
            known.setdefault(name, (spec.inputs, spec.outputs))
        return known

    def nodes_of(self, seed: str) -> list[str]:
        """The nodes that run ``seed``."""
        return list(self._d.automaton.nodes_of(seed))

    def local_seeds(self) -> dict[str, dict[str, Any]]:
        """This node's seeds: whether each is enabled, its workers and description."""
        d = self._d
        return {
            n: {"enabled": n not in d.disabled, "workers": s.workers, "description": s.description}
            for n, s in d.specs.items()
        }

    def disabled(self) -> frozenset[str]:
        """Local seeds switched off."""
        return frozenset(self._d.disabled)

    def local_load(self) -> float:
        """The busiest local consuming seed's queue per worker."""
        router = self._d.router
        if router is None:
            return 0.0
        loads = [r.pending / r.spec.workers for r in router.local.values() if not r.spec.is_injector]
        return round(max(loads, default=0.0), 3)

    def local_done(self) -> dict[str, int]:
        """Packets each local seed has handled (an injector: made)."""
        return self._d.local_done() if self._d.router is not None else {}

    def delivered(self) -> dict[tuple[str, str], int]:
        """Packets this node sent to each (seed, node)."""
        router = self._d.router
        return dict(router.delivered) if router is not None else {}

    # -- peers -----------------------------------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        """Every known peer, JSON-ready, sorted by id."""
        return self._d.peers.summaries(time.monotonic(), time.time())

    def peer_signature(self) -> tuple[Any, ...]:
        """What of the peers the page draws: equal values mean an unchanged picture."""
        return tuple(
            (p.node_id, p.state.value, p.endpoint, tuple(p.addresses), p.via, tuple(s.name for s in p.seeds))
            for p in self._d.peers.peers.values()
        )

    def peer_loads(self) -> dict[str, float]:
        """Each peer's load as it last said."""
        return {n: round(max(p.load.values(), default=0.0), 3) for n, p in self._d.peers.peers.items()}

    def peer_done(self) -> dict[str, dict[str, int]]:
        """Each peer's own count of packets per seed, as its PINGs said."""
        mesh = self._d.mesh
        return {node: mesh.done_of(node) for node in self._d.peers.peers} if mesh is not None else {}

    def peer_rtt(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Per peer and seed: (smoothed send-to-ACK time, retransmission timeout) in seconds, where measured."""
        mesh = self._d.mesh
        return mesh.rtt_estimates() if mesh is not None else {}

    def peer_inflight(self) -> dict[str, int]:
        """Packets sent to each known peer and not acknowledged yet (0 included)."""
        mesh = self._d.mesh
        return {**dict.fromkeys(self._d.peers.peers, 0), **(mesh.inflight_counts() if mesh is not None else {})}

    def seed_latency(self) -> dict[str, tuple[list[tuple[float, int]], float]]:
        """Per local seed, its run-time histogram: (cumulative (upper bound s, runs), sum of seconds)."""
        router = self._d.router
        if router is None:
            return {}
        return {n: (router.tally.of(n).cumulative(), router.tally.of(n).busy_s) for n in router.local}

    def links(self) -> dict[str, dict[str, Any]]:
        """Outgoing links: endpoint, messages sent and backlog per peer."""
        t = self._d.transport
        if t is None:
            return {}
        return {n: {"endpoint": k.endpoint, "sent": k.sent, "backlog": len(k.backlog)} for n, k in t.links.items()}

    # -- waiting and failed ----------------------------------------------------------------------

    def waiting_counts(self) -> dict[str, int]:
        """Packets waiting for a consumer, per state."""
        router = self._d.router
        return router.waiting.counts() if router is not None else {}

    def waiting_largest(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` states with the most waiting packets."""
        router = self._d.router
        return list(router.waiting.largest(n)) if router is not None else []

    def waiting_oldest(self, tag: StateTag, limit: int) -> list[Packet]:
        """The oldest ``limit`` packets waiting in ``tag``."""
        router = self._d.router
        return list(router.waiting.peek(tag, limit)) if router is not None else []

    def waiting_total(self) -> int:
        """Packets waiting, in all states."""
        router = self._d.router
        return len(router.waiting) if router is not None else 0

    def waiting_states(self) -> int:
        """States with packets waiting."""
        router = self._d.router
        return router.waiting.state_count() if router is not None else 0

    def failed_counts(self) -> dict[str, int]:
        """Failures by kind."""
        failed = self._d.failed
        return dict(failed.counts) if failed is not None else {}

    def failed_recent(self) -> list[dict[str, Any]]:
        """The most recent failures, oldest first."""
        failed = self._d.failed
        return list(failed.recent) if failed is not None else []

    def failed_folder(self) -> str:
        """Where failed packets are kept."""
        failed = self._d.failed
        return str(failed.root) if failed is not None else ""

    # -- counters --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and queue depths, JSON-ready: what ``pmk stats`` prints and the page starts from."""
        d = self._d
        assert d.router is not None and d.failed is not None and d.inbound is not None
        m = d.membership
        return {
            "uptime_s": round(time.time() - d.stats.started, 3),
            "tasks": d.supervisor.snapshot(),
            "router": dict(d.router.counters),
            "failed": dict(d.failed.counts),
            "waiting": d.router.waiting.counts(),
            "gathering": d.router.gather.counts(),
            "bad_inbound": d.inbound.bad_inbound,
            "limits": self._limits(),
            "from_strangers": d.inbound.from_strangers,
            "forged_sender": d.inbound.forged_sender,
            "network": {
                "keyed": m.keyed if m else False,
                "fingerprint": m.network.fingerprint if m and m.network else "",
                "public_key": m.public if m else "",
                "refused_links": d.transport.refused_links if d.transport else 0,
            },
            **self._intake(),
            "mesh": dict(d.mesh.counters) if d.mesh else {},
            "files": d.files.stats() if d.files else {},
            "inflight": d.mesh.inflight_counts() if d.mesh else {},
            "trace": dict(d.provenance.tracer.counters) if d.provenance else {},
            "discovery": {
                type(x).__name__: {
                    "rejected": x.rejected,
                    **({"sent": x.sent, "received": x.received} if isinstance(x, BeaconDiscovery) else {}),
                }
                for x in d.discoveries
            },
            "seeds": {
                n: {"pending": r.pending, "workers": r.spec.workers, **d.router.tally.of(n).view()}
                for n, r in d.router.local.items()
            },
        }

    # -- pmk doctor ------------------------------------------------------------------------------

    def doctor(self) -> dict[str, Any]:
        """What ``pmk doctor`` asks a running daemon: its interfaces and address, discovery's ways and counters,
        what it heard and from whom, each peer's paths (whose broadcasts arrive, who asks for our PINGs because ours
        do not), the page's address, and what waits in its working directory."""
        d = self._d
        disc = d.config.discovery
        beacons = next((x for x in d.discoveries if isinstance(x, BeaconDiscovery)), None)
        mdns = next((x for x in d.discoveries if isinstance(x, MdnsDiscovery)), None)
        return {
            "incarnation": d.incarnation,
            "advertise": d.advertise,
            "interfaces": [
                {"name": i.name, "address": i.address, "broadcast": i.broadcast, "network": i.network}
                for i in d.interfaces
            ],
            "endpoints": self.endpoints(),
            "timing": {"heartbeat_s": disc.heartbeat_s, "evasive_s": disc.evasive_s, "expired_s": disc.expired_s},
            "discovery": {
                "bcport": disc.bcport,
                "broadcast": beacons is not None and bool(beacons.broadcasts),
                "beacons": beacons is not None,
                "mdns": mdns is not None,
                "mdns_registration": mdns.registration if mdns is not None else None,
                "local": any(isinstance(x, LocalDiscovery) for x in d.discoveries),
                "supernodes": [f"{h}:{p}" for h, p in disc.supernodes],
                "static_peers": list(disc.peers),
                "beacons_sent": beacons.sent if beacons else 0,
                "beacons_received": beacons.received if beacons else 0,
                "rejected": sum(x.rejected for x in d.discoveries),
            },
            "hearing": d.hearing.facts(),
            "peers": self._peer_paths(),
            "web": {
                "enabled": d.config.http.enable,
                "host": d.config.http.host,
                "port": d.config.http.port,
                "url": d.web.url if d.web is not None else "",
            },
            "work": {
                "waiting": self.waiting_total(),
                "waiting_states": self.waiting_states(),
                "failed": self.failed_counts(),
                "journal_unfinished": d.journal.unfinished() if d.journal is not None else 0,
                "inflight": d.mesh.inflight_counts() if d.mesh is not None else {},
            },
        }

    def _peer_paths(self) -> list[dict[str, Any]]:
        """Every node the mesh greeted or knows: its state ("unanswered": greeted, never answered our HELLO), how
        it was found, and how long ago its broadcast beacon, its direct beacon and its last request for our PINGs
        came (None: never)."""
        d = self._d
        mesh = d.mesh
        if mesh is None:
            return []
        now = time.monotonic()

        def age(at: float) -> float | None:
            return round(now - at, 3) if at > -1e8 else None

        out = []
        for node, peer in sorted(d.peers.entries.items()):
            origin = peer.origin
            known = peer.known
            out.append(
                {
                    "id": node,
                    "state": peer.state.value if known else "unanswered",
                    "tcp": origin.tcp if origin is not None else (peer.endpoint or None),
                    "found_via": peer.found_via or peer.via,
                    "last_heard_s": round(now - peer.last_heard, 3) if known else None,
                    "known_s": round(now - peer.since, 3),
                    "broadcast_s": age(peer.broadcast_at),
                    "direct_s": age(peer.direct_at),
                    "asks_pings_s": age(peer.echo_at),
                }
            )
        return out

    def _intake(self) -> dict[str, Any]:
        d = self._d
        out: dict[str, Any] = {}
        if d.journal is not None:
            out["journal"] = {"unfinished": d.journal.unfinished(), "commits": d.journal.commits}
        if d.dropdir is not None:
            out["rx"] = d.dropdir.snapshot()
        if d.tx is not None:
            out["tx"] = {"dir": str(d.tx.root), "written": d.tx.written}
        return out

    def _limits(self) -> dict[str, Any]:
        """What the bounds of [limits] refused or dropped, next to the bounds themselves."""
        d = self._d
        assert d.failed is not None
        out: dict[str, Any] = {
            "failed": {
                "used_bytes": d.failed.used_bytes,
                "max_bytes": d.failed.max_bytes,
                "not_kept": dict(d.failed.not_kept),
            },
            "log": {"lines_per_minute": d.config.limits.log_lines_per_minute, "folded": logfold.folded_total()},
            "open_files": {"in_use": open_files(), "limit": d.open_files_limit},
        }
        if d.transport is not None:
            t = d.transport
            out["inbox"] = {
                "message_max_bytes": t.limits.message_max_bytes,
                "oversized": t.oversized,
                "oversized_bytes": t.oversized_bytes,
                "handler_errors": t.rejected,
            }
            out["connections"] = {
                "open": len(t.connections),
                "open_peak": t.connections.peak,
                "kept": t.connections.kept,
                "accepted": t.accepted,
                "max": t.limits.connections_max,
                "per_address_max": t.limits.per_address_max,
                "refused": dict(t.connections.refused),
                "gone_unchecked": t.connections.gone_unchecked,
                "busiest": dict(t.connections.busiest()),
            }
        return out
