"""The daemon: wires configuration, working directory, transport, seeds, automaton and router together.

Start order: claim the working directory (identity), bind sockets, open the intake journal and the tx writer
(everything that takes a seed's outputs is there before any seed runs), load seeds, put them in the
automaton, start heartbeats and discovery, start the consuming seeds (peers may send work from now on), serve
the web page, bring back packets saved at the last stop, route again what the intake journal holds
unfinished and start watching the rx folder, then start the injectors.
Stop order (``stop`` is idempotent): stop intake (web page, rx folder, injectors), drain work (local queues
and packets peers have not acknowledged; bounded wait), stop taking packets from peers, stop seed threads
(``on_unload``), save everything still held (queued, waiting, unacknowledged by a peer) to ``pending/``
(fsynced) and let go of it, finish failed/ and tx writes (so their senders get ACKs), say goodbye to peers
(ACKs, BYE, a goodbye beacon, mDNS unregister), finish journal commits, close sockets, release the working
directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import importlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from . import files, legacy, loader, logfold, messages, netinfo, tags
from . import packet as packets
from .automaton import Automaton, SeedInfo
from .config import Config
from .custody import Custody, hold
from .discovery import BeaconDiscovery, LocalDiscovery, MdnsDiscovery
from .dropdir import DropDir
from .dropfile import is_lines, parse_document, parse_lines
from .errors import IntakeError, PacketError, TagError
from .failed import FailedStore
from .filemover import FileMover, FileStore
from .journal import Entry, Journal, fsync_dir
from .membership import Membership, NetworkKey, NodeKeys, open_network_warning
from .mesh import Mesh
from .messages import Origin
from .packet import Hop, IdMaker, Packet
from .peers import PeerTable
from .query import NodeQuery
from .router import Remotes, Router
from .runner import SeedRunner
from .seed import SeedSpec
from .spool import Spool
from .supervisor import Supervisor
from .transport import InboxLimits, Transport, raise_open_files_limit
from .txdir import TxWriter
from .waiting import WaitingRoom
from .workdir import Workdir, claim, runtime_base

log = logging.getLogger("pumpkin")

DRAIN_TIMEOUT_S = 5.0
DRAIN_ACK_WAIT_S = 0.5  # at a stop, how long ACKs may pause before what peers hold is saved instead
#: Results an extractor may have made beyond what the tx folder holds durably: its seed waits past that. What it
#: ran on beyond the durable results is run again after a crash (its sender still holds it): this bounds that.
TX_AHEAD_MAX = 64
EXPIRY_SWEEP_S = 1.0
EXPIRE_BATCH = 1000  # packets failed as expired per turn of the loop: a mass expiry must not stall it


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
    from_strangers: int = 0  # messages on the inbox from a key that is no member's (keyed network)
    forged_sender: int = 0  # packets from a member naming another node as their sender


class DaemonOutputs:
    """The router's ``Outputs`` in a daemon: file payloads, the intake journal, and the tx folder when there is one."""

    durable = True

    def __init__(
        self,
        files: FileMover,
        tx: TxWriter | None,
        make_durable: Callable[[list[Packet], Callable[[], None] | None], None],
        to_tx: Callable[[Packet, str], None],
    ) -> None:
        self.files = files
        self.tx = tx
        self._make_durable = make_durable
        self._to_tx = to_tx

    def made(self, packet: Packet) -> None:
        """A seed's output may carry files: the file mover adopts them."""
        self.files.adopt(packet)

    def extracted(self, packet: Packet, seed: str) -> None:
        """An extractor's result goes to the tx folder, when there is one."""
        if self.tx is not None:
            self._to_tx(packet, seed)

    def done_before(self, seed: str, packet: Packet) -> bool:
        """True when the tx folder holds this result from an earlier life."""
        return self.tx is not None and self.tx.written_before(seed, packet)

    def make_durable(self, batch: list[Packet], then: Callable[[], None] | None) -> None:
        """Journal ``batch`` and route it (see ``Daemon._make_durable``)."""
        self._make_durable(batch, then)


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
        self.files: FileMover | None = None
        self.specs: dict[str, SeedSpec] = {}
        self.stats = Stats()
        self.peers = PeerTable(config.discovery.evasive_s, config.discovery.expired_s)
        self.mesh: Mesh | None = None
        self.discoveries: list[BeaconDiscovery | MdnsDiscovery | LocalDiscovery] = []
        self.host = netinfo.host_key()
        # This run of the node, told from the next by peers (see messages): a restart is noticed at once.
        self.incarnation = time.time_ns()
        self.advertise = "127.0.0.1"
        self.membership: Membership | None = None
        self._digest = ""
        # Intake durability and the rx/tx folders (see the "intake" block below).
        self.journal: Journal | None = None
        self._recovered: list[Any] = []  # journal entries left unfinished by the last run
        self._journaling: set[asyncio.Future[None]] = set()  # packets on their way into the journal
        self.dropdir: DropDir | None = None
        self.tx: TxWriter | None = None
        self._legacy_env: legacy.LegacyEnv | None = None  # where legacy seeds work, made when the first loads
        self.disabled: set[str] = set()  # local seeds switched off (from the web API): out of the automaton
        self.web: Any = None  # pumpkin.web.WebServer while [http] enable is on
        self.open_files_limit = 0
        self.supervisor = Supervisor(self._fatal)
        self.query = NodeQuery(self)  # what the page and pmk stats read
        self.exit_status = 0  # 1 once a critical task crashed (see ``supervisor``)
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
        self.membership = self._membership()
        self.host = self.membership.hide_host(netinfo.host_key())
        before, self.open_files_limit, hard = raise_open_files_limit()
        log.info(
            "Open files limit: %d%s",
            self.open_files_limit,
            f" (raised from {before})" if before != self.open_files_limit else f" (hard limit {hard})",
        )
        file_store = FileStore(self.workdir.path / "files", self.node_id)
        self.failed = FailedStore(
            self.workdir.failed,
            cfg.limits.failed_max_bytes,
            keep_files=file_store.keep_with,
            report=self.supervisor.report,
        )
        await asyncio.to_thread(self.failed.measure)
        spool = Spool(self.workdir.path / "spool", cfg.routing.spool_max_bytes)
        waiting = WaitingRoom(cfg.routing.waiting_max_packets, cfg.routing.waiting_expiry_s, spool)
        # Built in dependency order, each given what it calls: transport, file payloads, tx folder, mesh and router.
        self.transport = Transport(
            self.workdir.runtime,
            cfg.endpoint.type,
            cfg.endpoint.endpoints,
            cfg.endpoint.tcp_host,
            cfg.endpoint.tcp_port,
            self.membership.keys if self.membership.keyed else None,
            self.membership.key_of if self.membership.keyed else None,
            InboxLimits(
                cfg.limits.message_max_bytes,
                # Half the descriptors at most: the rest stay for files, peers, the page and pmk commands.
                max(1, min(cfg.limits.inbound_connections_max, self.open_files_limit // 2)),
                cfg.limits.inbound_per_address_max,
            ),
            self._on_oversized,
            on_frames=self._on_frames,
            on_control=self._on_control,
            spawn=self.supervisor.spawn,
            report=self.supervisor.report,
        )
        self.files = FileMover(file_store, self.node_id, self.transport.send)
        if cfg.tx.dir is not None:
            self.tx = TxWriter(cfg.tx.dir, cfg.tx.form, self.supervisor.spawn)
        outputs = DaemonOutputs(self.files, self.tx, self._make_durable, self._to_tx)
        failed = self.failed

        def make_router(remotes: Remotes) -> Router:
            self.router = Router(
                self.node_id,
                self.automaton,
                self.ids,
                failed,
                waiting,
                remotes=remotes,
                outputs=outputs,
                seed_queue_max=cfg.routing.seed_queue_max,
                ttl_hops=cfg.routing.ttl_hops,
                join_wait_s=cfg.routing.join_wait_s,
            )
            return self.router

        disc = cfg.discovery
        self.mesh = Mesh(
            node_id=self.node_id,
            host=self.host,
            me=self.origin,
            local_seeds=self._seed_summaries,
            local_load=self._local_load,
            local_done=self.local_done,
            transport=self.transport,
            router=make_router,
            peers=self.peers,
            learn=self.learn_peer,
            forget=self.forget_peer,
            heartbeat_s=disc.heartbeat_s,
            scheduler=asyncio.get_running_loop(),
            static_peers=disc.peers,
            beacon_to=self._beacon_to,
            membership=self.membership,
            report=self.supervisor.report,
        )
        router = self.router
        assert router is not None  # made by the mesh, above
        chosen, self.advertise = netinfo.choose(disc.interface, disc.advertise)
        await self.transport.start()
        self.workdir.control_file.write_text(self.transport.control_endpoint + "\n")
        log.info("Node bound to IP: %s", self.advertise)
        for url in self.origin().tcp, self.origin().ipc:
            if url:
                log.info("Node endpoint: %s", url)
        await self._open_intake()
        self._load_seeds()
        self.supervisor.spawn("expiry-sweep", self._sweep)
        # Peers learn of us and send us work while the page starts (importing it alone takes ~150 ms).
        self.mesh.start()
        await self._start_discovery(chosen)
        for runner in router.local.values():
            if not runner.spec.is_injector:
                runner.start()
        await self._start_web()  # before this node makes data: the page is there from its first packet on
        if self._stopping:
            return  # stopped while starting (a signal): stop() has done the rest
        self._started = True
        await self._start_intake()
        for runner in router.local.values():
            if runner.spec.is_injector:
                runner.start()

    def origin(self) -> Origin:
        """Who this node is and where peers reach it, as announced in beacons and messages."""
        assert self.transport is not None
        tcp = next((u for u in self.transport.data_endpoints if u.startswith("tcp://")), None)
        ipc = next((u for u in self.transport.data_endpoints if u.startswith("ipc://")), None)
        if tcp is not None:
            tcp = f"tcp://{self.advertise}:{tcp.rsplit(':', 1)[1]}"
        m = self.membership
        pk = m.public if m is not None and m.keyed else ""
        cert = m.cert(self.node_id, pk) if pk and m is not None else ""
        return Origin(self.node_id, tcp, ipc, self.host, self._digest, inc=self.incarnation, pk=pk, cert=cert)

    def _membership(self) -> Membership:
        """This node's keys, and the network key if one is configured (logged either way)."""
        assert self.workdir is not None
        keys = NodeKeys.load_or_create(self.workdir.path)
        key_file = self.config.network.key_file
        if key_file is None:
            log.warning(open_network_warning())
            return Membership(None, keys)
        network = NetworkKey.load(key_file)
        log.info(
            "Network key %s (fingerprint %s); this node's public key: %s",
            key_file,
            network.fingerprint,
            keys.public.decode(),
        )
        return Membership(network, keys)

    async def _start_discovery(self, chosen: list[netinfo.Interface]) -> None:
        disc = self.config.discovery
        assert self.mesh is not None and self.workdir is not None and self.membership is not None
        on_origin = self.mesh.on_origin
        # In a keyed network the beacon port is always heard: a static peer greets us with a sealed beacon first,
        # since CurveZMQ cannot connect to a node whose key it does not know.
        if (disc.enable and disc.broadcast) or disc.supernodes or self.membership.keyed:
            broadcasts = [i.broadcast for i in chosen if i.broadcast] if disc.enable and disc.broadcast else []
            beacons = BeaconDiscovery(
                disc.bcport,
                broadcasts,
                list(disc.supernodes),
                self.origin,
                on_origin,
                disc.heartbeat_s,
                self.membership,
                self.supervisor.spawn,
            )
            try:
                await beacons.start()
                self.discoveries.append(beacons)
                log.info(
                    "Starting broadcast listener on port %d (beacons to %s)",
                    disc.bcport,
                    ", ".join([*broadcasts, *(f"{h}:{p}" for h, p in disc.supernodes)]) or "nobody",
                )
            except OSError as exc:
                log.warning("Beacons disabled: cannot use UDP port %d: %s", disc.bcport, exc)
        if disc.enable and disc.mdns:
            addresses = [i.address for i in chosen]
            if addresses:
                mdns = MdnsDiscovery(addresses, self.advertise, self.origin, on_origin)
                try:
                    await mdns.start()
                    self.discoveries.append(mdns)
                except OSError as exc:
                    log.warning("mDNS disabled: %s", exc)
            else:
                log.info("mDNS disabled: no interface but loopback")
        if disc.enable and disc.local:
            local = LocalDiscovery(
                runtime_base(), self.host, self.origin, on_origin, disc.heartbeat_s, self.supervisor.spawn
            )
            await local.start()
            self.discoveries.append(local)
        if disc.peers:
            log.info("Static peers: %s", ", ".join(disc.peers))

    def _beacon_to(self, address: str) -> None:
        for discovery in self.discoveries:
            if isinstance(discovery, BeaconDiscovery):
                discovery.send_to(address)

    def _fatal(self, task: str, error: BaseException) -> None:
        """A critical task crashed: stop, and exit non-zero so that a service manager restarts the daemon."""
        log.error("Stopping: critical task %s crashed: %s: %s", task, type(error).__name__, error)
        self.exit_status = 1
        asyncio.get_running_loop().create_task(self.stop(), name="fatal-stop")

    async def run(self) -> None:
        """Start, then serve until ``stop`` is called."""
        await self.start()
        await self._stopped.wait()

    async def wait_stopped(self) -> None:
        """Return once ``stop`` has finished."""
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
        if self.web is not None:
            await self.web.stop()
        await self.supervisor.cancel("expiry-sweep")
        if self.dropdir is not None:
            await self.dropdir.close()
        if router is not None:
            for runner in router.local.values():
                runner.stop_injecting()
            await self._drain()
            if self.mesh is not None:
                self.mesh.accepting = False  # senders keep what we have not taken; our BYE sends it elsewhere
            if self.files is not None:
                self.files.stop()  # packets saved to pending/ below keep their files
            queued = [p for r in router.local.values() for p in r.take_queued()]
            await asyncio.gather(*(asyncio.to_thread(r.stop) for r in router.local.values()))
            await asyncio.gather(*self._journaling, return_exceptions=True)  # routed before the save below
            queued += [p for r in router.local.values() for p in r.take_queued()]
            inflight = self.mesh.take_inflight() if self.mesh is not None else []
            inflight += list(router.gather.drain())  # parts of joins and merges: they wait again after the restart
            # What waits may be mostly on disk (the spool): streamed to pending/ a batch at a time.
            waiting = ([p for p, _ in batch] for batch in router.waiting.drain())
            self._save_pending(itertools.chain([[*queued, *inflight]], waiting))
        if self.failed is not None:
            await self.failed.close()
        if self.tx is not None:
            await self.tx.close()
        if self.mesh is not None:
            self.mesh.stop()
        for discovery in reversed(self.discoveries):
            with contextlib.suppress(Exception):
                await discovery.stop()
        if self.journal is not None:
            await self.journal.close()
        if self.transport is not None:
            await self.transport.close()
        await self.supervisor.stop()  # what a component above did not end itself
        if self.workdir is not None:
            self.workdir.release()
        log.info("Node %s stopped", self.node_id)

    async def _drain(self) -> None:
        """Give local seeds up to DRAIN_TIMEOUT_S to finish what they hold, and peers as long as their ACKs keep
        coming (polled): packets a peer holds for longer (its own downstream is away) are saved instead."""
        assert self.router is not None
        runners = list(self.router.local.values())
        now = time.monotonic()
        deadline, last_ack = now + DRAIN_TIMEOUT_S, now
        inflight = sum(self.mesh.inflight_counts().values()) if self.mesh is not None else 0
        while time.monotonic() < deadline:
            busy = any(r.pending for r in runners if not r.spec.is_injector)
            left = sum(self.mesh.inflight_counts().values()) if self.mesh is not None else 0
            if left < inflight:
                inflight, last_ack = left, time.monotonic()
            if not busy and (not left or time.monotonic() - last_ack > DRAIN_ACK_WAIT_S):
                return
            await asyncio.sleep(0.02)

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
        if any(spec.legacy for spec in report.seeds):
            self._legacy_env = self._make_legacy_env()
        for spec in report.seeds:
            self.add_seed(spec)

    def _make_legacy_env(self) -> legacy.LegacyEnv:
        """The working directory of legacy seeds (``work/``), with the taskdirs' data files copied in."""
        assert self.workdir is not None
        cfg = self.config
        taskdirs = tuple(cfg.node.taskdir) if not cfg.node.seed else ()
        root = self.workdir.path / "work"
        for problem in legacy.prepare_workdir(root, taskdirs):
            log.warning("%s", problem)
        return legacy.LegacyEnv(
            root=root,
            group=cfg.node.group,
            node_id=self.node_id,
            ship=self.ids.ship,
            debug=cfg.node.debug,
            taskdirs=taskdirs,
            rx=cfg.rx.dir,
            stats=self._legacy_stats,
        )

    def _legacy_stats(self) -> dict[str, tuple[int, int]]:
        """(packets in, packets out) of each local seed, for a legacy seed's ``context.get_stat()``."""
        router = self.router
        if router is None:
            return {}
        return {n: (r.processed, router.emitted_by[n]) for n, r in list(router.local.items())}

    def add_seed(self, spec: SeedSpec) -> None:
        """Run ``spec`` on this node from now on."""
        assert self.router is not None
        if spec.legacy and self._legacy_env is None:
            self._legacy_env = self._make_legacy_env()
        runner = SeedRunner(
            spec,
            self.node_id,
            asyncio.get_running_loop(),
            self.router.on_outcome,
            self._seed_broken,
            self._legacy_env if spec.legacy else None,
            self.files,
        )
        self.router.local[spec.name] = runner
        if spec.is_extractor and self.tx is not None:
            runner.limit_unsettled(TX_AHEAD_MAX)
        self.specs[spec.name] = spec
        flow = f"{', '.join(map(str, spec.inputs)) or 'injector'} -> {', '.join(map(str, spec.outputs)) or 'extractor'}"
        log.info("Seed loaded: %s (%s)%s", spec.name, flow, f" x{spec.workers}" if spec.workers > 1 else "")
        self.automaton.add(self.node_id, SeedInfo(spec.name, spec.inputs, spec.outputs, spec.joins))
        self._digest = hashlib.sha1(orjson.dumps(self._seed_summaries())).hexdigest()[:12]
        self.router.replan()
        if self._started:
            runner.start()
            if self.mesh is not None:
                self.mesh.announce()

    def _seed_broken(self, runner: SeedRunner) -> None:
        """No instance of a local seed could be made or loaded: take it out of the automaton, as if disabled."""
        name = runner.spec.name
        if self.router is None or self.router.local.get(name) is not runner or self._stopping:
            return
        log.error(
            "Seed %s cannot run (%s): disabled; its packets go to other replicas or wait for it",
            name,
            runner.broken_reason,
        )
        self.enable_seed(name, False)

    def _seed_summaries(self) -> list[dict[str, Any]]:
        return [self.specs[n].summary() for n in sorted(self.specs) if n not in self.disabled]

    def _local_load(self) -> dict[str, float]:
        assert self.router is not None
        return {n: r.pending / r.spec.workers for n, r in self.router.local.items()}

    def local_done(self) -> dict[str, int]:
        """Packets each local seed has handled (an injector: made), for peers' pages."""
        assert self.router is not None
        return {
            n: self.router.emitted_by[n] if r.spec.is_injector else r.processed for n, r in self.router.local.items()
        }

    # -- web page and API (pumpkin/web.py) -------------------------------------------------------

    async def _start_web(self) -> None:
        if not self.config.http.enable:
            return
        # Imported only when on (a daemon without a page needs no aiohttp), and on a thread: the import takes
        # ~150 ms, during which the loop goes on answering the peers that discovery has just brought.
        web = await asyncio.to_thread(importlib.import_module, "pumpkin.web")
        if self._stopping:
            return
        self.web = web.WebServer(self.query, self, self.config.http, spawn=self.supervisor.spawn)
        await self.web.start()

    def enable_seed(self, name: str, enabled: bool) -> bool:
        """Switch local seed ``name`` on or off; True when that changed anything.

        A disabled seed leaves the automaton, as if it had been unloaded: its packets go to other replicas, or
        wait for it like for any absent seed. Packets it had queued but not started are routed again.
        An injector is paused instead of run.
        """
        assert self.router is not None
        runner = self.router.local[name]  # KeyError: not a local seed
        if enabled == (name not in self.disabled):
            return False
        if enabled and runner.broken_reason:
            # Its instances are gone: packets routed to it would wait in its queue until the daemon stops.
            log.warning("Seed %s stays disabled: it cannot run (%s); restart the daemon", name, runner.broken_reason)
            return False
        if enabled:
            self.disabled.discard(name)
            runner.pause(False)
            self.automaton.add(self.node_id, SeedInfo(name, runner.spec.inputs, runner.spec.outputs, runner.spec.joins))
            log.info("Seed enabled: %s", name)
        else:
            self.disabled.add(name)
            runner.pause(True)
            self.automaton.remove(self.node_id, name)
            for packet in runner.take_queued():
                self.router.deliver_to(name, packet)  # to another replica, or it waits for this seed
                hold(packet, -1)  # held again where it went; no longer in this seed's queue
            log.info("Seed disabled: %s (its packets go to other replicas or wait)", name)
        self.router.replan()
        self._digest = hashlib.sha1(orjson.dumps(self._seed_summaries())).hexdigest()[:12]
        if self.mesh is not None:
            self.mesh.announce()  # peers stop (or start again) sending this node packets for it
        return True

    # -- peers -----------------------------------------------------------------------------------

    def learn_peer(self, node: str, endpoint: str, seeds: list[SeedInfo], via: str = "static") -> bool:
        """Reach ``node`` at ``endpoint`` and route to its ``seeds`` (the one door for remote seeds)."""
        assert self.transport is not None and self.router is not None
        if node == self.node_id:
            return False
        self.transport.connect(node, endpoint)
        peer, revived = self.peers.heard(node, endpoint, via)
        peer.seeds = list(seeds)
        before = {n for n, i in self.automaton.seeds().items() if node in self.automaton.nodes_of(n)}
        changed = self.automaton.sync_node(node, seeds)
        for info in seeds:
            if info.name not in before:
                log.info("Discovered new peer seed: %s at %s (node %s)", info.name, endpoint, node)
        if changed or revived:
            self.router.replan(force=revived)
        return changed

    def forget_peer(self, node: str) -> None:
        """Stop routing to ``node``; what was still queued for it is routed again (to another replica)."""
        assert self.transport is not None and self.router is not None
        self.peers.leave(node)
        gone = self.automaton.remove_node(node)
        if gone:
            log.info("Peer %s left; its seeds are gone from the automaton: %s", node, ", ".join(gone))
        # Packets still in the link's backlog are in the mesh's in-flight table too: it re-routes them.
        self.transport.disconnect(node)
        self.router.replan()

    # -- packets ---------------------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes], key: str = "") -> None:
        """A message from the inbox; ``key``: the CurveZMQ key it came with (a keyed network)."""
        assert self.mesh is not None and self.failed is not None
        if frames and bytes(frames[0]) in messages.KINDS:
            self.mesh.handle(frames, key)
            return
        member = self.mesh.member(key) if self.mesh.keyed else None
        if frames and bytes(frames[0]) in files.KINDS and self.files is not None:
            self.files.handle(frames, member, self.mesh.keyed)
            return
        if self.mesh.keyed and member is None:
            # Not from a member (a key no valid HELLO bound): not read at all, only counted.
            self.stats.from_strangers += 1
            return
        batch = packets.split_batch(frames)
        for one in batch:
            try:
                packet, to, sender = packets.decode_addressed(one)
            except PacketError as exc:
                self.stats.bad_inbound += 1
                self.failed.keep_raw(one, "bad-packet", f"malformed packet from the network: {exc}")
                continue
            if member is not None and sender != member:
                self.stats.forged_sender += 1  # a member claiming another's packets: refused
                continue
            self.mesh.on_packet(packet, to, sender, alone=len(batch) == 1)

    def _on_oversized(self, head: list[bytes], frames: int, size: int) -> None:
        assert self.failed is not None
        self.stats.bad_inbound += 1
        limit = self.config.limits.message_max_bytes
        why = f"a message of {frames} frame(s) from the network exceeds limits.message_max_bytes ({limit}): dropped"
        self.failed.keep_raw(head, "oversized-message", why, total_bytes=size)

    def inject(self, state: str, data: Any, meta: dict[str, Any] | None = None, via: str = "inject") -> Packet:
        """Put ``data`` into the network in ``state`` (shorthands expand against this node's group), at once and
        not journaled: input from outside goes through ``accept``."""
        assert self.router is not None
        packets.check_data(data)
        return self.router.inject(tags.parse(state, self.config.node.group), data, meta, via)

    def _save_pending(self, batches: Iterable[list[Packet]]) -> None:
        """Write the packets of ``batches`` to ``pending/`` as one fsynced JSON-lines file, then let go of them:
        they are safe there."""
        if self.workdir is None:
            return
        folder = self.workdir.path / "pending"
        folder.mkdir(exist_ok=True)
        final = folder / f"{time.time_ns():020d}.jsonl"
        tmp = folder / f".{final.name}.tmp"
        custodies: list[Custody] = []  # not the packets themselves: a spooled backlog need not fit in memory
        saved = 0
        with open(tmp, "wb") as fh:
            for batch in batches:
                fh.write(b"".join(orjson.dumps(packets.to_document(p)) + b"\n" for p in batch))
                custodies.extend(p.custody for p in batch if p.custody is not None)
                saved += len(batch)
            fh.flush()
            os.fsync(fh.fileno())
        if not saved:
            tmp.unlink()
            return
        os.replace(tmp, final)
        fsync_dir(folder)
        for custody in custodies:
            custody.add(-1)  # its sender is acknowledged, or the intake journal lets go of it
        log.info("Saved %d packet(s) still on their way to %s; they resume at the next start", saved, folder)

    async def _restore_pending(self) -> None:
        """Route again what was saved at the last stop; journaled first, so a crash now loses none of it."""
        assert self.workdir is not None and self.journal is not None and self.failed is not None
        folder = self.workdir.path / "pending"
        files = sorted([*folder.glob("*.pkt"), *folder.glob("*.jsonl")]) if folder.exists() else []
        resumed: list[Packet] = []
        for file in files:
            lines = file.read_bytes().splitlines() if file.suffix == ".jsonl" else [file.read_bytes()]
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    resumed.append(packets.from_document(orjson.loads(line), self.config.node.group, self.ids))
                except (PacketError, orjson.JSONDecodeError) as exc:
                    self.failed.keep_raw([line], "bad-pending", f"{file} line {number}: cannot resume: {exc}")
        if resumed:
            [entry] = await self.journal.add([(None, resumed)])
            self._admit(entry, resumed, fresh=False)
            log.info("Resumed %d packet(s) saved at the last stop", len(resumed))
        self.failed.sync()  # what could not be resumed is kept durably before its file goes
        for file in files:
            file.unlink()
        for tmp in folder.glob(".*.tmp") if folder.exists() else []:
            tmp.unlink()  # a save cut short: its packets are still in the journal or with their senders

    async def _sweep(self) -> None:
        assert self.router is not None
        while True:
            await asyncio.sleep(min(EXPIRY_SWEEP_S, self.config.routing.waiting_expiry_s / 4))
            while self.router.expire(EXPIRE_BATCH):
                await asyncio.sleep(0)
            logfold.flush()  # "folded K similar lines" once a kind's minute is over, even if it went quiet

    # -- control ---------------------------------------------------------------------------------

    async def _on_control(self, request: dict[str, Any]) -> dict[str, Any]:
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
            return {"ok": True, "node": self.node_id, **self.snapshot()}
        if op == "peers":
            return {"ok": True, "node": self.node_id, "peers": self.peers.summaries()}
        if op == "keys":
            m = self.membership
            assert m is not None
            return {
                "ok": True,
                "node": self.node_id,
                "keyed": m.keyed,
                "fingerprint": m.network.fingerprint if m.network else "",
                "public_key": m.public,
                "members": dict(m.bound),
            }
        if op == "inject":
            return await self._inject_request(request)
        return {"ok": False, "error": f"unknown op {op!r}"}

    # -- intake: the journal, the rx folder, pmk inject and the tx folder --------------------------

    async def _open_intake(self) -> None:
        """Open the journal (reading what the last run left unfinished) and the tx writer: both take packets
        from the moment any seed may run."""
        assert self.workdir is not None and self.router is not None
        cfg = self.config
        self.journal = Journal(self.workdir.path / "journal", cfg.node.group, self.ids, self.supervisor.spawn)
        self._recovered = await asyncio.to_thread(self.journal.recover)
        self.journal.start()
        if self.tx is not None:
            self.tx.start()
            log.info("Writing results to tx folder %s", cfg.tx.dir)

    async def _start_intake(self) -> None:
        """Route again what was saved at the last stop and what the journal holds unfinished; watch the rx folder."""
        assert self.workdir is not None and self.router is not None and self.journal is not None
        cfg = self.config
        recovered, self._recovered = self._recovered, []
        await self._restore_pending()
        replay = sum(len(entry.packets) for entry in recovered)
        if replay:
            log.info("Routing again %d packet(s) accepted before the last stop and not finished", replay)
        for entry in recovered:
            if entry.packets:
                self._admit(entry, entry.packets, fresh=False)
        expected = [e for e in recovered if not e.moved]
        if cfg.rx.dir is not None:
            self.dropdir = DropDir(
                cfg.rx,
                cfg.node.group,
                self.node_id,
                self.ids,
                self.journal,
                self._admit,
                cfg.routing.ttl_hops,
                self.supervisor.spawn,
            )
            await self.dropdir.start(expected)
        else:
            for entry in expected:
                self.journal.moved(entry)

    def _admit(self, entry: Entry, batch: list[Packet], fresh: bool = True) -> None:
        """Route the packets of a journal entry (``fresh``: new injections); each lineage's custody tells the
        journal when this node is done with it."""
        assert self.router is not None and self.journal is not None
        journal = self.journal
        custodies: dict[str, Custody] = {}
        for packet in batch:
            lineage = packet.lineage
            custody = custodies.get(lineage)
            if custody is None:
                custody = custodies[lineage] = Custody(functools.partial(journal.release, entry, lineage))
            packet.custody = custody
            if fresh:
                self.router.admit(packet)
            else:
                self.router.route(packet)
        for custody in custodies.values():
            custody.settle()

    def _make_durable(self, batch: list[Packet], then: Callable[[], None] | None) -> None:
        """Journal ``batch`` (packets a seed made that must not depend on their input's custody), then route it."""

        async def journal_then_route() -> None:
            assert self.journal is not None and self.router is not None
            try:
                [entry] = await self.journal.add([(None, batch)])
            except OSError as exc:
                for packet in batch:
                    self.router.fail(packet, "journal", f"packet {packet.id} could not be made durable: {exc}")
            else:
                self._admit(entry, batch, fresh=False)
            if then is not None:
                then()

        task = asyncio.ensure_future(journal_then_route())
        self._journaling.add(task)
        task.add_done_callback(self._journaling.discard)

    def _to_tx(self, packet: Packet, seed: str) -> None:
        assert self.tx is not None and self.router is not None
        hold(packet, 1)  # not safe before its result file is durable
        runner = self.router.local.get(seed)

        def then(result: Path | OSError) -> None:
            if isinstance(result, OSError):
                assert self.router is not None
                self.router.fail(
                    packet,
                    "tx-write",
                    f"the result of {seed} for {packet.id} could not be written to {self.config.tx.dir}: {result}",
                )
            hold(packet, -1)
            if runner is not None:
                runner.settled()

        self.tx.submit(packet, seed, then)

    async def accept(self, batch: list[Packet], via: str) -> None:
        """Take new packets from outside (``pmk inject``, ``POST /api/v1/inject``) and route them, returning
        once they are journaled (durable); ``via`` names the door in their trail.

        Raises IntakeError, and nothing is accepted, while the journal is not open or when its commit failed.
        """
        if self.journal is None:
            raise IntakeError("the daemon is still starting; try again in a moment")
        now = time.time()
        for p in batch:
            p.trail.append(Hop(via, self.node_id, str(p.tag), now))
        try:
            [entry] = await self.journal.add([(None, batch)])
        except OSError as exc:
            raise IntakeError(f"the packet could not be made durable: {exc}") from None
        self._admit(entry, batch)

    async def _inject_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """``pmk inject``: the packets are journaled (durable) before the answer says they are accepted."""
        try:
            batch = self._packets_of(request)
            await self.accept(batch, "pmk-inject")
        except (TagError, PacketError, ValueError, IntakeError) as exc:
            return {"ok": False, "error": str(exc)}
        listed = [{"id": p.id, "state": str(p.tag)} for p in batch]
        return {"ok": True, "id": batch[0].id, "state": listed[0]["state"], "packets": listed}

    def new_packet(self, state: str, data: Any) -> Packet:
        """A packet of ``data`` in ``state`` that starts a new lineage (not routed yet); TagError or PacketError
        when either is bad."""
        packets.check_data(data)
        return Packet(
            self.ids.root(), tags.parse(state, self.config.node.group), data, [], self.config.routing.ttl_hops
        )

    def _packets_of(self, request: dict[str, Any]) -> list[Packet]:
        group = self.config.node.group
        if "content_base64" in request:
            name = str(request.get("file", "-"))
            raw = base64.b64decode(str(request["content_base64"]), validate=True)
            parsed = (
                parse_lines(raw.splitlines(keepends=True), name, group, self.ids, self.config.routing.ttl_hops)
                if is_lines(name)
                else parse_document(raw, name, group, self.ids, self.config.routing.ttl_hops)
            )
            for note in parsed.notes:
                log.warning("pmk inject %s: %s", name, note)
            return parsed.packets
        if "data_base64" in request:
            data: Any = base64.b64decode(str(request["data_base64"]), validate=True)
        else:
            data = request.get("data")
        return [self.new_packet(str(request.get("state", "")), data)]

    def snapshot(self) -> dict[str, Any]:
        """Counters and queue depths, JSON-ready (see ``NodeQuery.stats``)."""
        return self.query.stats()


def _tune_gc() -> None:
    """Garbage collection for a daemon process: everything made at start-up (modules, seeds) moves out of the
    collector's sight, and young collections run every 20,000 allocations instead of 700. Packets make many
    short-lived objects and almost no cycles, so the default thresholds spent 5-8% of a busy daemon's CPU
    on collections that found nothing (bench/chain.py, per-packet CPU per daemon)."""
    import gc

    gc.collect()  # what start-up left behind is freed, not frozen
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def serve(config: Config) -> int:
    """Run a daemon until SIGINT/SIGTERM; the exit status for the command line."""
    import signal

    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(daemon.stop()))
    try:
        await daemon.start()
        _tune_gc()
        await daemon.wait_stopped()
    finally:
        with contextlib.suppress(Exception):
            await daemon.stop()
    return daemon.exit_status
