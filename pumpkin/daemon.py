"""The daemon: wires configuration, working directory, transport, seeds, automaton and router together.

Start order: claim the working directory (identity), bind sockets, load seeds, put them in the automaton,
start consumers, bring back packets saved at the last stop, then start injectors.
Stop order (``stop`` is idempotent): stop intake (injectors, inbox), drain in-flight work (bounded wait),
save what still waits to ``pending/``, stop seed threads (``on_unload``), close sockets, release the
working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from . import loader, packet as packets, tags
from .automaton import Automaton, SeedInfo
from .config import Config
from .errors import PacketError, TagError
from .failed import FailedStore
from .packet import IdMaker, Packet
from .peers import PeerTable
from .router import Router
from .runner import SeedRunner
from .seed import SeedSpec
from .transport import Transport
from .waiting import WaitingRoom
from .workdir import Workdir, claim

log = logging.getLogger("pumpkin")

DRAIN_TIMEOUT_S = 5.0
EXPIRY_SWEEP_S = 1.0


def hello_world_dir() -> Path:
    """The packaged hello-world seeds (``seeds/helloworld`` in a checkout)."""
    checkout = Path(__file__).resolve().parent.parent / "seeds" / "helloworld"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("pumpkin.examples") / "helloworld"))


@dataclass
class Stats:
    """Counters a user reads with ``pmk stats`` and the web page."""

    started: float = field(default_factory=time.time)
    bad_inbound: int = 0


class Daemon:
    """One Pumpkin node. ``await start()``, then ``await stop()`` (or ``await run()`` until stopped)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.workdir: Workdir | None = None
        self.node_id = ""
        self.ids = IdMaker()
        self.automaton = Automaton(config.node.group)
        self.transport: Transport | None = None
        self.router: Router | None = None
        self.failed: FailedStore | None = None
        self.specs: dict[str, SeedSpec] = {}
        self.stats = Stats()
        # Liveness is tracked from the first discovery issue on; until then peers are introduced by hand.
        self.peers = PeerTable(evasive_s=3.0, expired_s=10.0)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._stopping = False
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring the node up (see the module documentation for the order)."""
        cfg = self.config
        self.workdir = claim(cfg.node.workdir, cfg.node.id)
        self.node_id = self.workdir.node_id
        log.info("Node assigned UID: %s", self.node_id)
        log.info("Exec context: %s", self.ids.ship)
        log.info("Working directory: %s", self.workdir.path)
        self.failed = FailedStore(self.workdir.failed)
        waiting = WaitingRoom(cfg.routing.waiting_max_packets, cfg.routing.waiting_expiry_s)
        self.router = Router(self.node_id, self.automaton, self.ids, self.failed, waiting,
                             cfg.routing.seed_queue_max, cfg.routing.ttl_hops)
        self.transport = Transport(self.workdir.runtime, cfg.endpoint.type, cfg.endpoint.endpoints,
                                   cfg.endpoint.tcp_host, cfg.endpoint.tcp_port)
        self.router.send_remote = self._send_remote
        self.transport.on_frames = self._on_frames
        self.transport.on_control = self._on_control
        await self.transport.start()
        self.workdir.control_file.write_text(self.transport.control_endpoint + "\n")
        for url in self.transport.data_endpoints:
            log.info("Node endpoint: %s", url)
        self._load_seeds()
        self._started = True
        self._restore_pending()
        for runner in sorted(self.router.local.values(), key=lambda r: r.spec.is_injector):
            runner.start()
        self._tasks.append(asyncio.create_task(self._sweep(), name="expiry-sweep"))

    async def run(self) -> None:
        """Start, then serve until ``stop`` is called."""
        await self.start()
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop in the documented order; safe to call more than once."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            await self._shutdown()
        finally:
            self._stopped.set()

    async def _shutdown(self) -> None:
        router = self.router
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if router is not None:
            for runner in router.local.values():
                runner._stopping.set()  # injectors: no new runs
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while any(r.pending for r in router.local.values()) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            left = [p for r in router.local.values() for p in r.take_queued()]
            self._save_pending([*left, *router.waiting.release(lambda tag: True)])
            await asyncio.gather(*(asyncio.to_thread(r.stop) for r in router.local.values()))
        if self.transport is not None:
            await self.transport.close()
        if self.workdir is not None:
            self.workdir.release()
        log.info("Node %s stopped", self.node_id)

    # -- seeds -----------------------------------------------------------------------------------

    def _load_seeds(self) -> None:
        cfg = self.config.node
        if cfg.seed:
            report = loader.load(list(cfg.seed), cfg.group, explicit=True)
        else:
            report = loader.load(list(cfg.taskdir) or [hello_world_dir()], cfg.group)
        for path, why in report.errors:
            log.error("Seed not loaded: %s", why if str(path) in why else f"{path}: {why}")
        for path, why in report.skipped:
            log.info("Seed skipped: %s (%s)", path, why)
        for spec in report.seeds:
            self.add_seed(spec)

    def add_seed(self, spec: SeedSpec) -> None:
        """Run ``spec`` on this node from now on."""
        assert self.router is not None
        runner = SeedRunner(spec, self.node_id, asyncio.get_running_loop(), self.router.on_outcome)
        self.router.local[spec.name] = runner
        self.specs[spec.name] = spec
        flow = f"{', '.join(map(str, spec.inputs)) or 'injector'} -> {', '.join(map(str, spec.outputs)) or 'extractor'}"
        log.info("Seed loaded: %s (%s)%s", spec.name, flow, f" x{spec.workers}" if spec.workers > 1 else "")
        self.automaton.add(self.node_id, SeedInfo(spec.name, spec.inputs, spec.outputs))
        self.router.replan()
        if self._started:
            runner.start()

    # -- peers -----------------------------------------------------------------------------------

    def learn_peer(self, node: str, endpoint: str, seeds: list[SeedInfo], via: str = "static") -> bool:
        """Reach ``node`` at ``endpoint`` and route to its ``seeds`` (the one door for remote seeds)."""
        assert self.transport is not None and self.router is not None
        if node == self.node_id:
            return False
        self.transport.connect(node, endpoint)
        peer, _ = self.peers.heard(node, endpoint, via)
        peer.seeds = list(seeds)
        before = {n for n, i in self.automaton.seeds().items() if node in self.automaton.nodes_of(n)}
        changed = self.automaton.sync_node(node, seeds)
        for info in seeds:
            if info.name not in before:
                log.info("Discovered new peer seed: %s at %s (node %s)", info.name, endpoint, node)
        if changed:
            self.router.replan()
        return changed

    def forget_peer(self, node: str) -> None:
        """Stop routing to ``node``; what was still queued for it is routed again (to another replica)."""
        assert self.transport is not None and self.router is not None
        self.peers.leave(node)
        gone = self.automaton.remove_node(node)
        if gone:
            log.info("Peer %s left; its seeds are gone from the automaton: %s", node, ", ".join(gone))
        for frames in self.transport.disconnect(node):
            try:
                self.router.route(packets.decode(frames))
            except PacketError:
                pass  # we encoded these ourselves; cannot happen
        self.router.replan()

    def _send_remote(self, node: str, packet: Packet) -> bool:
        assert self.transport is not None and self.failed is not None
        try:
            frames = packets.encode(packet)
        except PacketError as exc:
            self.failed.keep(packet, "bad-data", str(exc))
            return True  # handled: kept with its reason, nothing to retry
        return self.transport.send(node, frames)

    # -- packets ---------------------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes]) -> None:
        assert self.router is not None and self.failed is not None
        try:
            packet = packets.decode(frames)
        except PacketError as exc:
            self.stats.bad_inbound += 1
            self.failed.keep_raw(frames, "bad-packet", f"malformed packet from the network: {exc}")
            return
        self.router.route(packet)

    def inject(self, state: str, data: Any, meta: dict[str, Any] | None = None, via: str = "inject") -> Packet:
        """Put ``data`` into the network in ``state`` (shorthands expand against this node's group)."""
        assert self.router is not None
        packets.check_data(data)
        return self.router.inject(tags.parse(state, self.config.node.group), data, meta, via)

    def _save_pending(self, left: list[Packet]) -> None:
        if not left or self.workdir is None:
            return
        folder = self.workdir.path / "pending"
        folder.mkdir(exist_ok=True)
        for i, p in enumerate(left):
            (folder / f"{i:06d}.pkt").write_bytes(orjson.dumps(packets.to_document(p)))
        log.info("Saved %d packet(s) still waiting to %s; they resume at the next start", len(left), folder)

    def _restore_pending(self) -> None:
        assert self.workdir is not None and self.router is not None and self.failed is not None
        folder = self.workdir.path / "pending"
        files = sorted(folder.glob("*.pkt")) if folder.exists() else []
        for file in files:
            try:
                self.router.route(packets.from_document(orjson.loads(file.read_bytes()), self.config.node.group,
                                                        self.ids))
            except (PacketError, orjson.JSONDecodeError, OSError) as exc:
                self.failed.keep_raw([file.read_bytes()], "bad-pending", f"{file}: cannot resume: {exc}")
            file.unlink()
        if files:
            log.info("Resumed %d packet(s) saved at the last stop", len(files))

    async def _sweep(self) -> None:
        assert self.router is not None
        while True:
            await asyncio.sleep(min(EXPIRY_SWEEP_S, self.config.routing.waiting_expiry_s / 4))
            self.router.expire()

    # -- control ---------------------------------------------------------------------------------

    async def _on_control(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "node": self.node_id}
        if op == "graph":
            return {"ok": True, "node": self.node_id, "graph": self.automaton.node_link(),
                    "seeds": {n: {"inputs": [str(t) for t in i.inputs], "outputs": [str(t) for t in i.outputs],
                                  "nodes": self.automaton.nodes_of(n)} for n, i in self.automaton.seeds().items()}}
        if op == "stats":
            return {"ok": True, "node": self.node_id, **self.snapshot()}
        if op == "inject":
            try:
                pkt = self.inject(str(request.get("state", "")), request.get("data"), via="pmk-inject")
            except (TagError, PacketError) as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "id": pkt.id, "state": str(pkt.tag)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def snapshot(self) -> dict[str, Any]:
        """Counters and queue depths, JSON-ready."""
        assert self.router is not None and self.failed is not None
        return {
            "uptime_s": round(time.time() - self.stats.started, 3),
            "router": dict(self.router.counters),
            "failed": dict(self.failed.counts),
            "waiting": self.router.waiting.counts(),
            "bad_inbound": self.stats.bad_inbound,
            "seeds": {n: {"pending": r.pending, "processed": r.processed, "failures": r.failures,
                          "workers": r.spec.workers, "busy_s": round(r.busy_s, 6)}
                      for n, r in self.router.local.items()},
        }


async def serve(config: Config) -> int:
    """Run a daemon until SIGINT/SIGTERM; the exit status for the command line."""
    import signal

    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(daemon.stop()))
    try:
        await daemon.run()
    finally:
        with contextlib.suppress(Exception):
            await daemon.stop()
    return 0
