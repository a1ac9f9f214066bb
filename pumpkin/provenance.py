"""What ``pmk trace``, ``pmk failed``, ``pmk replay`` and ``pmk pending`` ask a running daemon (control ops).

- ``trace``: the events of a packet's lineage here (``trace.PacketEvents``) and at every peer, asked over the
  peer protocol (``trace.Tracer``) in up to ``TRACE_ROUNDS`` rounds (a lineage forked on a peer is asked about
  in the next), each waiting at most ``TRACE_WAIT_S`` for answers; local failures get their reason from failed/.
- ``failed``: the failures kept in failed/, newest first (``FailedStore.listing``).
- ``replay``: a kept packet accepted again, as ``pmk inject`` does (journaled before the answer), with a new id
  in its lineage; its files leave failed/ only once it is accepted.
- ``pending``: what this daemon would save to pending/ if it stopped now (the packets waiting for a consumer,
  resumed or not); ``clear`` moves them to failed/ (kind ``cleared``), where ``pmk replay`` can bring any back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from . import packet as packets
from . import tags
from .errors import IntakeError, PacketError
from .failed import FailedStore
from .packet import Hop, IdMaker, Packet
from .trace import PacketEvents, Tracer, lineage

if TYPE_CHECKING:
    from .router import Router

TRACE_WAIT_S = 2.0
TRACE_ROUNDS = 3
PENDING_SHOWN = 20  # waiting packets listed per state


class Provenance:
    """Answers the control ops above for one daemon (on its loop)."""

    def __init__(
        self,
        *,
        node_id: str,
        group: str,
        ids: IdMaker,
        events: PacketEvents,
        failed: FailedStore,
        router: Callable[[], Router | None],
        accept: Callable[[list[Packet], str], Awaitable[None]],
        send: Callable[[str, list[bytes]], bool],
        peers: Callable[[], list[str]],
    ) -> None:
        """``router()``: the daemon's router, once it has one; ``accept(batch, via)``: journal and route new
        packets (IntakeError when it cannot); ``send``/``peers``: a peer's inbox, and the peers to ask."""
        self.node_id = node_id
        self.group = group
        self.ids = ids
        self.events = events
        self.failed = failed
        self.router = router
        self.accept = accept
        self._answers: dict[int, asyncio.Event] = {}
        self.tracer = Tracer(node_id, events, send, peers, answered=self._answered)
        self._replays = 0

    def ops(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        """Control ops this answers, by name."""
        return {"trace": self.trace, "failed": self.listing, "replay": self.replay, "pending": self.pending}

    # -- trace -----------------------------------------------------------------------------------

    def _answered(self, q: int) -> None:
        if not self.tracer.unanswered(q) and q in self._answers:
            self._answers[q].set()

    async def trace(self, request: dict[str, Any]) -> dict[str, Any]:
        """Every event of ``request["id"]``'s lineage known here and at the peers, oldest first."""
        pid = str(request.get("id", ""))
        if pid.count(":") != 3:
            return {"ok": False, "error": f"{pid!r} is not a packet id (ship:container:hops:n, as pmk inject prints)"}
        wait_s = min(float(request.get("wait_s", TRACE_WAIT_S)), 10.0)
        local, lineages = self.events.lineage_events([lineage(pid)])
        found = [{**e, "node": self.node_id} for e in local]
        asked: set[str] = set()
        silent: set[str] = set()
        for _ in range(TRACE_ROUNDS):
            q = self.tracer.ask(sorted(lineages))
            done = self._answers[q] = asyncio.Event()
            if not self.tracer.unanswered(q):
                done.set()
            try:
                await asyncio.wait_for(done.wait(), wait_s)
            except TimeoutError:
                pass
            finally:
                del self._answers[q]
            answers = self.tracer.finish(q)
            asked.update(answers)
            silent.update(n for n, got in answers.items() if got is None)
            more = set(lineages)
            for node, got in answers.items():
                for e in got or []:
                    found.append(e)
                    silent.discard(node)
                    if e.get("parent") and lineage(e["parent"]) in more:
                        more.add(lineage(e["packet"]))  # forked on that peer
            if more == lineages:
                break
            lineages = more
        unique = {(e["node"], e["at"], e["event"], e["packet"]): e for e in found}
        events = sorted(unique.values(), key=lambda e: (e["at"], e["event"] != "sent"))
        for e in events:
            if e["node"] == self.node_id and e["event"] == "failed" and e.get("file"):
                e["reason"] = self.failed.reason_of(e["file"])
        return {
            "ok": True,
            "node": self.node_id,
            "id": pid,
            "lineages": sorted(lineages),
            "events": events,
            "asked": sorted(asked),
            "silent": sorted(silent),
        }

    # -- failed/ ---------------------------------------------------------------------------------

    async def listing(self, request: dict[str, Any]) -> dict[str, Any]:
        """The kept failures, newest first (at most ``limit``)."""
        limit = int(request.get("limit", 50))
        items = await asyncio.to_thread(self.failed.listing, max(0, limit))
        return {"ok": True, "node": self.node_id, "folder": str(self.failed.root), "failed": items}

    async def replay(self, request: dict[str, Any]) -> dict[str, Any]:
        """Accept the kept packet ``request["id"]`` again; its files leave failed/ once it is journaled."""
        pid = str(request.get("id", ""))
        found = await asyncio.to_thread(self.failed.find, pid)
        if found is None:
            return {"ok": False, "error": f"no packet {pid} is kept in {self.failed.root} (see pmk failed)"}
        try:
            doc = orjson.loads(found.read_bytes())
            packet = packets.from_document(doc, self.group, self.ids)
        except (OSError, orjson.JSONDecodeError, PacketError) as exc:
            return {"ok": False, "error": f"{found} cannot be read back as a packet: {exc}"}
        self._replays += 1
        # A new id in the same lineage: peers that had the old one would take it for a duplicate, and the trace
        # follows it from the old one (its "in" event names it).
        packet.id = self.ids.child(pid, f"replay@{self.node_id}:{time.time_ns()}", self._replays)
        packet.meta = {**packet.meta, "replay_of": pid}
        packet.trail = [*packet.trail, Hop("replay", self.node_id, str(packet.tag), time.time())]
        try:
            await self.accept([packet], "pmk-replay")
        except IntakeError as exc:
            return {"ok": False, "error": f"not replayed, still kept in {found}: {exc}"}
        self.failed.forget(found)
        return {"ok": True, "id": packet.id, "state": str(packet.tag), "was": pid}

    # -- pending/ --------------------------------------------------------------------------------

    async def pending(self, request: dict[str, Any]) -> dict[str, Any]:
        """The packets waiting here (what a stop would save to pending/); ``clear``: move them to failed/."""
        router = self.router()
        if router is None:
            return {"ok": False, "error": "the daemon is still starting; try again in a moment"}
        if request.get("clear"):
            cleared = router.clear_waiting("pmk pending --clear")
            return {"ok": True, "node": self.node_id, "cleared": cleared, "folder": str(self.failed.root)}
        states = []
        now = time.time()
        for state, n in router.waiting.largest(1000):
            oldest = router.waiting.peek(tags.parse(state), PENDING_SHOWN)
            states.append(
                {
                    "state": state,
                    "count": n,
                    "packets": [{"id": p.id, "age_s": round(now - p.created, 1)} for p in oldest],
                }
            )
        return {"ok": True, "node": self.node_id, "running": True, "total": len(router.waiting), "states": states}
