"""The control protocol: what the ``pmk`` command line asks a running daemon over its control socket.

A request is one JSON object with an ``op`` (``ping``, ``graph``, ``stats``, ``peers``, ``keys``, ``inject``,
``doctor``); the
answer is one JSON object with ``ok`` and, when it is false, an ``error`` a person can read. The transport reads
and writes the socket; this module only answers.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .automaton import Automaton
from .dropfile import is_lines, parse_document, parse_lines
from .errors import IntakeError, PacketError, TagError
from .membership import Membership
from .packet import IdMaker, Packet
from .peers import PeerTable

log = logging.getLogger("pumpkin")


class Control:
    """Answers control requests for one node."""

    def __init__(
        self,
        *,
        node_id: str,
        group: str,
        ttl_hops: int,
        ids: IdMaker,
        automaton: Automaton,
        peers: PeerTable,
        membership: Membership,
        stats: Callable[[], dict[str, Any]],
        diagnose: Callable[[], dict[str, Any]],
        new_packet: Callable[[str, Any], Packet],
        accept: Callable[[list[Packet], str], Awaitable[None]],
    ) -> None:
        """``stats()``: the node's counters (``NodeQuery.stats``); ``diagnose()``: what ``pmk doctor`` asks of a
        running daemon (``NodeQuery.doctor``); ``new_packet(state, data)``: a packet that starts
        a lineage; ``accept(batch, via)``: journal and route new packets (raises IntakeError)."""
        self.node_id = node_id
        self.group = group
        self.ttl_hops = ttl_hops
        self.ids = ids
        self.automaton = automaton
        self.peers = peers
        self.membership = membership
        self.stats = stats
        self.diagnose = diagnose
        self.new_packet = new_packet
        self.accept = accept

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one request."""
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "node": self.node_id}
        if op == "graph":
            return {
                "ok": True,
                "node": self.node_id,
                "graph": self.automaton.node_link(),
                "seeds": {
                    n: {
                        "inputs": [str(t) for t in i.inputs],
                        "outputs": [str(t) for t in i.outputs],
                        "nodes": self.automaton.nodes_of(n),
                    }
                    for n, i in self.automaton.seeds().items()
                },
            }
        if op == "stats":
            return {"ok": True, "node": self.node_id, **self.stats()}
        if op == "doctor":
            return {"ok": True, "node": self.node_id, **self.diagnose()}
        if op == "peers":
            return {"ok": True, "node": self.node_id, "peers": self.peers.summaries()}
        if op == "keys":
            m = self.membership
            return {
                "ok": True,
                "node": self.node_id,
                "keyed": m.keyed,
                "fingerprint": m.network.fingerprint if m.network else "",
                "public_key": m.public,
                "members": dict(m.bound),
            }
        if op == "inject":
            return await self._inject(request)
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def _inject(self, request: dict[str, Any]) -> dict[str, Any]:
        """``pmk inject``: the packets are journaled (durable) before the answer says they are accepted."""
        try:
            batch = self._packets_of(request)
            await self.accept(batch, "pmk-inject")
        except (TagError, PacketError, ValueError, IntakeError) as exc:
            return {"ok": False, "error": str(exc)}
        listed = [{"id": p.id, "state": str(p.tag)} for p in batch]
        return {"ok": True, "id": batch[0].id, "state": listed[0]["state"], "packets": listed}

    def _packets_of(self, request: dict[str, Any]) -> list[Packet]:
        if "content_base64" in request:
            name = str(request.get("file", "-"))
            raw = base64.b64decode(str(request["content_base64"]), validate=True)
            parsed = (
                parse_lines(raw.splitlines(keepends=True), name, self.group, self.ids, self.ttl_hops)
                if is_lines(name)
                else parse_document(raw, name, self.group, self.ids, self.ttl_hops)
            )
            for note in parsed.notes:
                log.warning("pmk inject %s: %s", name, note)
            return parsed.packets
        if "data_base64" in request:
            data: Any = base64.b64decode(str(request["data_base64"]), validate=True)
        else:
            data = request.get("data")
        return [self.new_packet(str(request.get("state", "")), data)]
