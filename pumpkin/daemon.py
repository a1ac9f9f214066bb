"""The daemon: wires configuration, working directory, transport, seeds, automaton and router together, and runs
their lifecycle.

The node's components start and stop in the orders written in ``Daemon._lifecycle`` (each with its reason): in
short, claim the working directory (identity), open failed/, build the core objects, bind sockets, open the intake
journal and the tx writer (everything that takes a seed's outputs is there before any seed runs), load seeds, start
heartbeats and discovery, start the consuming seeds, serve the web page, bring back ``pending/`` and what the
journal holds unfinished and watch the rx folder, then start the injectors. A failed start stops what started.
Stop (``stop`` is idempotent): intake first (page, rx folder, injectors), then the seeds (drain, stop taking from
peers, stop seed threads, save everything still held to ``pending/``), finish failed/ and tx writes (so their
senders get ACKs), say goodbye to peers, finish journal commits, close sockets, cancel stray tasks, release the
working directory. Inbound dispatch (``inbound``), ``pending/`` (``pending``) and the ``pmk`` control protocol
(``control``) live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import legacy, loader, logfold, netinfo, tags
from . import packet as packets
from .actions import BROADCAST
from .automaton import Automaton, SeedInfo
from .beacons import seeds_digest
from .config import Config
from .control import Control
from .custody import hold
from .discovery import BeaconDiscovery, LocalDiscovery, MdnsDiscovery
from .driver import MeshDriver
from .dropdir import DropDir
from .errors import ConfigError, IntakeError
from .failed import FailedStore
from .filemover import FileMover, FileStore
from .hearing import Hearing
from .inbound import Inbound
from .journal import Entry, Journal
from .lifecycle import Component, Lifecycle
from .membership import Membership, NetworkKey, NodeKeys, open_network_warning
from .mesh import Mesh
from .messages import Origin
from .packet import Hop, IdMaker, Packet
from .peers import Liveness, PeerTable
from .pending import Pending
from .provenance import Provenance
from .query import NodeQuery
from .router import Remotes, Router
from .runner import SeedRunner
from .seed import SeedSpec
from .spool import Spool
from .supervisor import Supervisor
from .ticks import Ticks
from .trace import PacketEvents
from .transport import InboxLimits, Transport, raise_open_files_limit
from .txdir import TxWriter
from .waiting import WaitingRoom
from .webport import WebPort
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
    """When the node started (its uptime in ``pmk stats`` and on the page); inbound counters are ``Inbound``'s."""

    started: float = field(default_factory=time.time)


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
        self.file_store: FileStore | None = None
        self.pending: Pending | None = None  # packets held at the last stop
        self.inbound: Inbound | None = None  # frames from peers -> mesh, file mover, router
        self.control: Control | None = None  # requests from pmk
        self.provenance: Provenance | None = None  # pmk trace, failed, replay, pending
        self._chosen: list[netinfo.Interface] = []  # interfaces discovery uses
        self.hearing = Hearing(self.origin)  # what discovery heard, for pmk doctor
        self.files: FileMover | None = None
        self.specs: dict[str, SeedSpec] = {}
        self.stats = Stats()
        self.peers = PeerTable(config.discovery.evasive_s, config.discovery.expired_s)
        #: When this daemon's periodic work is done: on one grid of heartbeats, so that it shares wake-ups.
        self.ticks = Ticks.random_phase(config.discovery.heartbeat_s)
        self.mesh: Mesh | None = None
        self.driver: MeshDriver | None = None  # does what the mesh asks, on the transport and the loop
        self.discoveries: list[BeaconDiscovery | MdnsDiscovery | LocalDiscovery] = []
        self.host = netinfo.host_key()
        # This run of the node, told from the next by peers (see messages): a restart is noticed at once.
        self.incarnation = time.time_ns()
        self.advertise = "127.0.0.1"
        self.membership: Membership | None = None
        # What beacons say of our seeds (when they fit, see messages), and their digest: a daemon with none has
        # the digest of none, not "" (which peers take for "not said" and greet it again for, every second).
        self._summaries: list[dict[str, Any]] = []
        self._digest = seeds_digest(self._summaries)
        # Intake durability and the rx/tx folders (see the "intake" block below).
        self.journal: Journal | None = None
        self._recovered: list[Any] = []  # journal entries left unfinished by the last run
        self._journaling: set[asyncio.Future[None]] = set()  # packets on their way into the journal
        self.dropdir: DropDir | None = None
        self.tx: TxWriter | None = None
        self._legacy_env: legacy.LegacyEnv | None = None  # where legacy seeds work, made when the first loads
        self.disabled: set[str] = set()  # local seeds switched off (from the web API): out of the automaton
        self.web: WebPort | None = None  # while [http] enable is on
        self.open_files_limit = 0
        self.supervisor = Supervisor(self._fatal)
        self.query = NodeQuery(self)  # what the page and pmk stats read
        self.exit_status = 0  # 1 once a critical task crashed (see ``supervisor``)
        self._stopped = asyncio.Event()
        self._stopping = False
        self._started = False
        self.lifecycle = self._lifecycle()

    # -- lifecycle -------------------------------------------------------------------------------

    def _lifecycle(self) -> Lifecycle:
        """The node's components: started in this order, stopped in the order below it."""
        return Lifecycle(
            [
                # The node's identity and lock: first in, last out.
                Component("workdir", self._claim, self._release),
                # Started tasks outlive nothing: it cancels what a component did not end itself, after them all.
                Component("supervisor", stop=self.supervisor.stop),
                # failed/ takes a packet from the first thing that can fail one on; closed once nothing fails more.
                Component("failed", self._open_failed, self._close_failed),
                # The core objects, each given what it calls; no socket is bound and nothing runs yet.
                Component("core", self._wire),
                # Sockets bound before anything sends; closed after the goodbyes have been queued on them.
                Component("transport", self._start_transport, self._close_transport),
                # Everything that takes a seed's outputs is there before any seed runs: the intake journal
                # (outputs made durable) and the tx writer (extractors' results).
                Component("journal", self._open_journal, self._close_journal),
                Component("tx", self._start_tx, self._close_tx),
                # Loaded (in the automaton, not running) before the mesh's HELLO announces them. Its stop drains
                # them and saves what the node still holds to pending/; it runs whenever any later part started.
                Component("seeds", self._start_seeds, self._stop_seeds),
                Component("expiry-sweep", self._start_sweep, self._stop_sweep),
                # Heartbeats, then discovery: peers learn of this node and send it work from here on.
                Component("mesh", self._start_mesh, self._stop_mesh),
                Component("discovery", self._start_discovery, self._stop_discovery),
                # Consuming seeds run once peers may send (their stop is the "seeds" one).
                Component("consumers", self._start_consumers),
                # Before this node makes data: the page is there from its first packet on.
                Component("web", self._start_web, self._stop_web),
                # New input last: pending/ and the journal's unfinished entries routed again, the rx folder...
                Component("intake", self._start_intake, self._stop_intake),
                # ... and the injectors.
                Component("injectors", self._start_injectors, self._stop_injectors),
            ],
            [
                # Intake first: nothing new comes in (the page, the sweep, the rx folder, the injectors).
                "web",
                "expiry-sweep",
                "intake",
                "injectors",
                # Then the seeds: drain (bounded), stop taking from peers, stop the seed threads, save what is held.
                "seeds",
                "consumers",
                # Finish failed/ and tx writes, so their senders get ACKs with the goodbye ...
                "failed",
                "tx",
                # ... then the links: due ACKs and BYE to every peer, then discovery's goodbye.
                "mesh",
                "discovery",
                # Journal commits finished, sockets closed (ACKs and BYEs linger out), stray tasks cancelled.
                "journal",
                "core",
                "transport",
                "supervisor",
                "workdir",
            ],
        )

    async def start(self) -> None:
        """Bring the node up, component by component (see ``_lifecycle``); when one fails, what started is
        stopped and the error raised."""
        try:
            self._check_seed_paths()
            await self.lifecycle.start()
        except BaseException:
            self._stopping = True
            self._stopped.set()
            raise

    async def _claim(self) -> None:
        cfg = self.config
        self.workdir = claim(cfg.node.workdir, cfg.node.id)
        self.node_id = self.workdir.node_id
        self.pending = Pending(self.workdir.path / "pending")
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

    async def _release(self) -> None:
        assert self.workdir is not None
        self.workdir.release()
        logfold.flush(force=True)  # what was folded in the last window is said, not lost with the process
        log.info("Node %s stopped", self.node_id)

    async def _open_failed(self) -> None:
        assert self.workdir is not None
        self.file_store = FileStore(self.workdir.path / "files", self.node_id)
        self.failed = FailedStore(
            self.workdir.failed,
            self.config.limits.failed_max_bytes,
            keep_files=self.file_store.keep_with,
            report=self.supervisor.report,
        )
        await asyncio.to_thread(self.failed.measure)

    async def _close_failed(self) -> None:
        assert self.failed is not None
        await self.failed.close()

    async def _wire(self) -> None:
        """Build transport, file payloads, tx folder, mesh and router in dependency order, each given what it calls."""
        cfg = self.config
        assert self.workdir is not None and self.membership is not None
        assert self.failed is not None and self.file_store is not None
        # The interfaces first: the inbox's limits and the mesh's gossip depend on the addresses this host has.
        self._chosen, self.advertise = netinfo.choose(cfg.discovery.interface, cfg.discovery.advertise)
        spool = Spool(self.workdir.path / "spool", cfg.routing.spool_max_bytes)
        waiting = WaitingRoom(cfg.routing.waiting_max_packets, cfg.routing.waiting_expiry_s, spool)
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
                # Connections from this host's addresses are its other daemons': not held to the per-address limit.
                own_addresses=frozenset(i.address for i in netinfo.interfaces()),
            ),
            self._on_oversized,
            on_frames=self._on_frames,
            on_control=self._on_control,
            spawn=self.supervisor.spawn,
            report=self.supervisor.report,
        )
        self.files = FileMover(self.file_store, self.node_id, self.transport.send)
        if cfg.tx.dir is not None:
            self.tx = TxWriter(cfg.tx.dir, cfg.tx.form, self.supervisor.spawn)
        outputs = DaemonOutputs(self.files, self.tx, self._make_durable, self._to_tx)
        failed = self.failed
        assert failed is not None
        events = PacketEvents()
        transport = self.transport
        self.provenance = Provenance(
            node_id=self.node_id,
            group=cfg.node.group,
            ids=self.ids,
            events=events,
            failed=failed,
            router=lambda: self.router,
            accept=self.accept,
            send=transport.send,
            peers=lambda: [p.node_id for p in self.peers.peers.values() if p.state is not Liveness.EXPIRED],
        )

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
                events=events,
            )
            return self.router

        disc = cfg.discovery
        membership = self.membership

        def make_mesh(wake: Callable[[], None]) -> Mesh:
            return Mesh(
                node_id=self.node_id,
                host=self.host,
                me=self.origin,
                local_seeds=self._seed_summaries,
                local_load=self._local_load,
                local_done=self.local_done,
                router=make_router,
                peers=self.peers,
                heartbeat_s=disc.heartbeat_s,
                static_peers=disc.peers,
                membership=membership,
                report=self.supervisor.report,
                wake=wake,
                # A node on two networks hears peers by broadcast (or mDNS) that cannot hear each other: it gossips
                # them all.
                one_lan=sum(1 for i in self._chosen if not i.is_loopback) <= 1,
                ticks=self.ticks,
            )

        # The mesh opens no socket and sets no timer: its driver does what it asks, with the transport and the loop.
        self.driver = MeshDriver(
            links=self.transport,
            scheduler=asyncio.get_running_loop(),
            clock=time.monotonic,
            mesh=make_mesh,
            beacon_to=self._beacon_to,
            report=self.supervisor.report,
        )
        self.mesh = self.driver.mesh
        assert self.router is not None  # made by the mesh, above
        self.inbound = Inbound(self.mesh, self.files, self.failed, cfg.limits.message_max_bytes, self.provenance.tracer)
        self.control = Control(
            node_id=self.node_id,
            group=cfg.node.group,
            ttl_hops=cfg.routing.ttl_hops,
            ids=self.ids,
            automaton=self.automaton,
            peers=self.peers,
            membership=self.membership,
            stats=self.snapshot,
            diagnose=self.query.doctor,
            new_packet=self.new_packet,
            accept=self.accept,
            ops=self.provenance.ops(),
        )

    async def _start_transport(self) -> None:
        assert self.transport is not None and self.workdir is not None
        await self.transport.start()
        self.workdir.control_file.write_text(self.transport.control_endpoint + "\n")
        log.info("Node bound to IP: %s", self.advertise)
        for url in self.origin().tcp, self.origin().ipc:
            if url:
                log.info("Node endpoint: %s", url)

    async def _close_transport(self) -> None:
        assert self.transport is not None
        await self.transport.close()

    async def _open_journal(self) -> None:
        """Open the journal, reading what the last run left unfinished (routed again by ``intake``)."""
        assert self.workdir is not None
        cfg = self.config
        self.journal = Journal(self.workdir.path / "journal", cfg.node.group, self.ids, self.supervisor.spawn)
        self._recovered = await asyncio.to_thread(self.journal.recover)
        self.journal.start()

    async def _close_journal(self) -> None:
        assert self.journal is not None
        await self.journal.close()

    async def _start_tx(self) -> None:
        if self.tx is not None:
            self.tx.start()
            log.info("Writing results to tx folder %s", self.config.tx.dir)

    async def _close_tx(self) -> None:
        if self.tx is not None:
            await self.tx.close()

    async def _start_sweep(self) -> None:
        self.supervisor.spawn("expiry-sweep", self._sweep)

    async def _stop_sweep(self) -> None:
        await self.supervisor.cancel("expiry-sweep")

    async def _start_mesh(self) -> None:
        assert self.mesh is not None
        self.mesh.start(time.monotonic())

    async def _stop_mesh(self) -> None:
        assert self.mesh is not None
        self.mesh.stop()

    async def _start_consumers(self) -> None:
        assert self.router is not None
        for runner in self.router.local.values():
            if not runner.spec.is_injector:
                runner.start()

    async def _start_injectors(self) -> None:
        assert self.router is not None
        for runner in self.router.local.values():
            if runner.spec.is_injector:
                runner.start()

    async def _stop_injectors(self) -> None:
        assert self.router is not None
        for runner in self.router.local.values():
            runner.stop_injecting()

    async def _start_seeds(self) -> None:
        self._load_seeds()

    async def _stop_seeds(self) -> None:
        """Drain, stop taking packets from peers, stop the seed threads, and save everything the node still holds
        (queued, waiting, unacknowledged by a peer) to pending/, letting go of it."""
        router, mesh = self.router, self.mesh
        assert router is not None and mesh is not None and self.files is not None and self.pending is not None
        await self._drain()
        mesh.accepting = False  # senders keep what we have not taken; our BYE sends it elsewhere
        self.files.stop()  # packets saved to pending/ below keep their files
        queued = [p for r in router.local.values() for p in r.take_queued()]
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in router.local.values()))
        await asyncio.gather(*self._journaling, return_exceptions=True)  # routed before the save below
        queued += [p for r in router.local.values() for p in r.take_queued()]
        inflight = mesh.take_inflight()
        inflight += list(router.gather.drain())  # parts of joins and merges: they wait again after the restart
        # What waits may be mostly on disk (the spool): streamed to pending/ a batch at a time.
        waiting = ([p for p, _ in batch] for batch in router.waiting.drain())
        self.pending.save(itertools.chain([[*queued, *inflight]], waiting))

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
        me = Origin(self.node_id, tcp, ipc, self.host, self._digest, inc=self.incarnation, pk=pk, cert=cert)
        me.seeds = self._summaries
        return me

    def _seeds_changed(self) -> None:
        """Our seeds (or which of them are on) changed: what beacons and HELLOs say of them follows."""
        self._summaries = self._seed_summaries()
        self._digest = seeds_digest(self._summaries)

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

    async def _start_discovery(self) -> None:
        disc = self.config.discovery
        chosen = self._chosen
        assert self.mesh is not None and self.workdir is not None and self.membership is not None
        assert self.driver is not None
        hearing, driver = self.hearing, self.driver

        def on_origin(origin: Origin, via: str) -> None:
            hearing.heard(origin, via)  # first: pmk doctor reports what the mesh turns away too (our own id)
            driver.on_origin(origin, via)

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
                networks=[i.network for i in chosen],
                lan_beacons_per_s=disc.lan_beacons_per_s,
                ticks=self.ticks,
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
                runtime_base(), self.host, self.origin, on_origin, disc.heartbeat_s, self.supervisor.spawn, self.ticks
            )
            await local.start()
            self.discoveries.append(local)
        if disc.peers:
            log.info("Static peers: %s", ", ".join(disc.peers))

    async def _stop_discovery(self) -> None:
        # Beacons first: the mesh has said goodbye, and an ordinary beacon sent while mDNS takes its record down
        # (~0.3 s) would have peers find this node again on its way out.
        beacons = [d for d in self.discoveries if isinstance(d, BeaconDiscovery)]
        for discovery in [*beacons, *(d for d in reversed(self.discoveries) if d not in beacons)]:
            with contextlib.suppress(Exception):
                await discovery.stop()

    @property
    def interfaces(self) -> list[netinfo.Interface]:
        """The interfaces discovery uses (chosen at start)."""
        return list(self._chosen)

    def _beacon_to(self, address: str) -> None:
        """A beacon to ``address``, or to every broadcast address and static peer now (``actions.BROADCAST``)."""
        for discovery in self.discoveries:
            if isinstance(discovery, BeaconDiscovery):
                if address == BROADCAST:
                    discovery.send_now()
                else:
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
            await self.lifecycle.stop()
        finally:
            self._stopped.set()

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

    def _check_seed_paths(self) -> None:
        """A mistyped --seed or --taskdir stops start-up: a daemon with no seeds would look as if it ran fine."""
        cfg = self.config.node
        key, paths = ("node.seed", cfg.seed) if cfg.seed else ("node.taskdir", cfg.taskdir)
        for path in paths:
            if not path.exists():
                raise ConfigError(f"config key {key}: '{path}' does not exist")

    def _load_seeds(self) -> None:
        cfg = self.config.node
        if cfg.seed:
            report = loader.load(list(cfg.seed), cfg.group, explicit=True)
        else:
            report = loader.load(list(cfg.taskdir) or [hello_world_dir()], cfg.group)
        for path, why in report.errors:
            # A folder without seed files may be meant (the original's tweeter folder holds only data).
            level = logging.WARNING if path.is_dir() else logging.ERROR
            log.log(level, "Seed not loaded: %s", why if str(path) in why else f"{path}: {why}")
        for path, why in report.skipped:
            log.info("Seed skipped: %s (%s)", path, why)
        if not report.seeds:
            where = ", ".join(str(p) for p in (cfg.seed or cfg.taskdir))
            log.warning("No seed loaded from %s: this node runs no seed of its own", where or "the hello world")
        if any(spec.legacy for spec in report.seeds):
            self._legacy_env = self._make_legacy_env()
        for spec in report.seeds:
            self.add_seed(spec)

    def _make_legacy_env(self) -> legacy.LegacyEnv:
        """The working directory of legacy seeds (``work/``), with the taskdirs' data files copied in."""
        assert self.workdir is not None
        cfg = self.config
        # Absolute paths: seeds join them with names and run programs in them with cwd= set to one (the
        # original's tracula ran wd + script with cwd=wd), which a relative --workdir turned into a missing file.
        taskdirs = tuple(t.absolute() for t in cfg.node.taskdir) if not cfg.node.seed else ()
        root = (self.workdir.path / "work").absolute()
        for problem in legacy.prepare_workdir(root, taskdirs):
            log.warning("%s", problem)
        return legacy.LegacyEnv(
            root=root,
            group=cfg.node.group,
            node_id=self.node_id,
            ship=self.ids.ship,
            debug=cfg.node.debug,
            taskdirs=taskdirs,
            rx=cfg.rx.dir.absolute() if cfg.rx.dir else None,
            stats=self._legacy_stats,
        )

    def _legacy_stats(self) -> dict[str, tuple[int, int]]:
        """(packets in, packets out) of each local seed, for a legacy seed's ``context.get_stat()``."""
        router = self.router
        if router is None:
            return {}
        return {n: (router.tally.of(n).processed, router.tally.of(n).emitted) for n in list(router.local)}

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
        log.info(
            "Seed loaded: %s (%s)%s",
            spec.name,
            flow,
            f" x{spec.workers}" if spec.workers > 1 else "",
            extra={"seed": spec.name},
        )
        self.automaton.add(self.node_id, SeedInfo(spec.name, spec.inputs, spec.outputs, spec.joins))
        self._seeds_changed()
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
        tally = self.router.tally
        return {n: tally.of(n).processed for n in self.router.local}

    # -- web page and API (pumpkin/webport.py, pumpkin/web.py) ---------------------------------------

    async def _start_web(self) -> None:
        if not self.config.http.enable:
            return
        # The port is bound now (a conflict shows at start); the page's server is made at the first connection.
        self.web = WebPort(self.query, self, self.config.http, spawn=self.supervisor.spawn)
        await self.web.start()

    async def _stop_web(self) -> None:
        if self.web is not None:
            await self.web.stop()

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
        self._seeds_changed()
        if self.mesh is not None:
            self.mesh.announce()  # peers stop (or start again) sending this node packets for it
        return True

    # -- peers -----------------------------------------------------------------------------------

    def learn_peer(self, node: str, endpoint: str, seeds: list[SeedInfo], via: str = "static") -> bool:
        """Reach ``node`` at ``endpoint`` and route to its ``seeds`` (the one door for remote seeds)."""
        assert self.mesh is not None
        return self.mesh.learn(node, endpoint, seeds, via, time.monotonic())

    def forget_peer(self, node: str) -> None:
        """Stop routing to ``node``; what was still queued for it is routed again (to another replica)."""
        assert self.mesh is not None
        self.mesh.forget(node)

    # -- packets ---------------------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes], key: str = "") -> None:
        """A message from the inbox (see ``inbound``; the transport is made before the mesh it dispatches to)."""
        assert self.inbound is not None
        self.inbound.on_frames(frames, key, time.monotonic())

    def _on_oversized(self, head: list[bytes], frames: int, size: int) -> None:
        assert self.inbound is not None
        self.inbound.on_oversized(head, frames, size)

    def inject(self, state: str, data: Any, meta: dict[str, Any] | None = None, via: str = "inject") -> Packet:
        """Put ``data`` into the network in ``state`` (shorthands expand against this node's group), at once and
        not journaled: input from outside goes through ``accept``."""
        assert self.router is not None
        packets.check_data(data)
        return self.router.inject(tags.parse(state, self.config.node.group), data, meta, via)

    async def _restore_pending(self) -> None:
        """Route again what was saved at the last stop; journaled first, so a crash now loses none of it."""
        assert self.pending is not None and self.journal is not None and self.failed is not None
        assert self.workdir is not None
        saved = self.pending.files()
        resumed = self.pending.read(saved, self.config.node.group, self.ids, self.failed.keep_raw)
        if resumed:
            [entry] = await self.journal.add([(None, resumed)])
            self._admit(entry, resumed, fresh=False)
            log.info(
                "Resumed %d packet(s) saved at the last stop: 'pmk pending --workdir %s' lists them, "
                "'pmk pending --clear --workdir %s' moves them to failed/",
                len(resumed),
                self.workdir.path,
                self.workdir.path,
            )
        self.failed.sync()  # what could not be resumed is kept durably before its file goes
        self.pending.remove(saved)

    async def _sweep(self) -> None:
        assert self.router is not None
        loop = asyncio.get_running_loop()
        while True:
            period = min(EXPIRY_SWEEP_S, self.config.routing.waiting_expiry_s / 4)
            await asyncio.sleep(self.ticks.wait(loop.time(), period))
            while self.router.expire(EXPIRE_BATCH):
                await asyncio.sleep(0)
            logfold.flush()  # "folded K similar lines" once a kind's minute is over, even if it went quiet

    # -- control ---------------------------------------------------------------------------------

    async def _on_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request from ``pmk`` on the control socket (see ``control``)."""
        assert self.control is not None
        return await self.control.handle(request)

    # -- intake: the journal, the rx folder, pmk inject and the tx folder --------------------------

    async def _start_intake(self) -> None:
        """Route again what was saved at the last stop and what the journal holds unfinished; watch the rx folder."""
        assert self.workdir is not None and self.router is not None and self.journal is not None
        self._started = True
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

    async def _stop_intake(self) -> None:
        if self.dropdir is not None:
            await self.dropdir.close()

    def _admit(self, entry: Entry, batch: list[Packet], fresh: bool = True) -> None:
        """Route the packets of a journal entry (``fresh``: new injections); each lineage's custody tells the
        journal when this node is done with it."""
        assert self.router is not None and self.journal is not None
        self.router.admit_lineages(batch, functools.partial(self.journal.release, entry), fresh)

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

    def new_packet(self, state: str, data: Any) -> Packet:
        """A packet of ``data`` in ``state`` that starts a new lineage (not routed yet); TagError or PacketError
        when either is bad."""
        packets.check_data(data)
        return Packet(
            self.ids.root(), tags.parse(state, self.config.node.group), data, [], self.config.routing.ttl_hops
        )

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
