"""Running one seed's code off the event loop.

A ``SeedRunner`` owns ``spec.workers`` instances of a seed, each on its own thread, all pulling from one
backlog: whichever instance is free takes the next packet, so local replicas are shared least-loaded by
construction. Hand-overs go in batches both ways, because a thread wake-up and a GIL hand-over cost more than
a quick seed's run (bench/README.md, issue 14): the loop appends the packets of its turn to the backlog and
wakes the workers once, at the end of the turn (a packet that arrived alone wakes them at once, for
latency); a worker runs whatever is in the backlog and posts the outcomes to an outbox in batches (at the
latest every ``POST_EVERY_S`` or ``POST_BATCH`` outcomes, and whenever the backlog runs dry), and one
``call_soon_threadsafe`` wakes the loop for however many outcomes are ready. A seed that raises fails that
packet only; what it emitted before raising is discarded, so the kept input can be injected again without
duplicates. An instance whose ``__init__`` or ``on_load`` raises is logged and does not run; when no
instance can, ``on_broken`` tells the daemon, which disables the seed (its packets go to other replicas or
wait).

An ``inline`` seed has one instance and no thread: its packets queue on the loop and run there, a batch
per callback, with no hand-over between threads (see ``seed``). A seed with ``processes = N`` runs in a
pool of N worker processes (see ``procpool``); the runner keeps at most two packets per process in the pool
and the rest in its own queue, so that throttling and shutdown see them.

Durable results: an extractor whose results are written to the tx folder runs at most ``limit_unsettled``
packets beyond those its writer has made durable (``settled``): whatever it ran on past the durable results
is run again after a crash, since its sender still holds it, so the limit bounds those re-runs.

Back-pressure: the router may ``throttle`` a runner whose outputs pile up; its workers then take no new
packet and its injector makes no new one until it is let go. An injector also has at most
``INJECT_WINDOW`` emissions on their way to the loop, so a generator that yields in a tight loop cannot
flood the loop's queue before the router gets a chance to throttle it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from . import legacy, splitmerge
from .errors import PacketError, SeedStartError
from .files import File, FileError
from .packet import Packet, check_data
from .seed import SEED_FAULTS, Emit, SeedSpec, run_arity

log = logging.getLogger(__name__)

_STOP = object()
INJECT_WINDOW = 256
OUTBOX_BATCH = 512  # outcomes handled per loop callback before other tasks get a turn
#: A worker posts its outcomes at least this often: a slow seed's results do not wait for the rest of its batch.
POST_EVERY_S = 0.002
POST_BATCH = 64  # ... or this many outcomes, whichever comes first
_WAKE = object()  # a worker token: there are packets in the backlog


@dataclass
class Emission:
    """Data a seed emitted, in the state it named (None: its only output)."""

    state: str | None
    data: Any
    forked: bool = False  # starts a new lineage (a legacy fork_dispatch)
    error: str = ""  # set when the data cannot travel (not JSON, not bytes)
    header: dict[str, Any] | None = None  # a legacy seed's header fields, carried on in meta["legacy_header"]
    again: bool = False  # the input again, in its own state (a legacy re_dispatch)
    fragment: tuple[str, bool] | None = None  # a fragment made by split: (the seed's label, whether the last)


@dataclass
class Outcome:
    """What one invocation produced: emissions, or the error that failed the input packet."""

    runner: SeedRunner
    packet: Packet | None  # None for an injector's run
    emissions: list[Emission] = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0
    streamed: bool = False  # one emission of an injector, posted as it was made
    pooled: bool = False  # run in a worker process (processes = N)
    broken_pool: bool = False  # ... whose process died
    kind: str = "seed-error"  # the failed/ counter an error goes to
    unclaimed: bool = False  # failed before it ran: it took no place among the unsettled runs


class FileHooks(Protocol):
    """File payloads (see ``filemover``): what the runner asks of them, and where."""

    def needs(self, packet: Packet) -> bool: ...  # on the loop: must ``prepare`` before it runs

    def prepare(self, packet: Packet, then: Callable[[str], None]) -> None: ...  # on the loop

    def seal(self, data: Any, legacy: bool) -> Any: ...  # on the seed's thread: a File -> its descriptor

    def localize(self, data: Any, legacy: bool) -> Any: ...  # on the seed's thread: a descriptor -> a File


def _emission(
    state: str | None,
    data: Any,
    forked: bool = False,
    header: dict[str, Any] | None = None,
    again: bool = False,
    fragment: tuple[str, bool] | None = None,
) -> Emission:
    if isinstance(data, File):
        return Emission(state, data, forked, "", header, again, fragment)  # sealed once the run has succeeded
    try:
        check_data(data)
    except PacketError as exc:
        return Emission(state, data, forked, str(exc), header, again, fragment)
    return Emission(state, data, forked, "", header, again, fragment)


def iter_results(result: Any) -> Iterator[Emission]:
    """What a modern seed's ``run`` returned, as emissions (see ``seed``)."""
    if result is None:
        return
    if isinstance(result, Emit):
        yield _emission(result.state, result.data)
    elif inspect.isgenerator(result):
        for item in result:
            if isinstance(item, Emit):
                yield _emission(item.state, item.data)
            elif item is not None:
                yield _emission(None, item)
    else:
        yield _emission(None, result)


def instantiate(
    spec: SeedSpec, node_id: str, env: legacy.LegacyEnv | None = None, emit: legacy.EmitFn | None = None
) -> Any:
    """A new instance of ``spec``'s seed, as the daemon ``node_id`` gives it (on_load not called yet); a legacy
    seed works in ``env`` and what it dispatches outside ``run`` goes to ``emit``."""
    if spec.legacy:
        context = legacy.LegacyContext(spec, env or legacy.LegacyEnv.scratch(node_id))
        context.emit = emit
        instance = spec.factory(context, spec.manifest.get("object_poi"))
        instance.conf = spec.manifest
    else:
        instance = spec.factory()
        instance.node_id = node_id
        instance.log = logging.getLogger(f"pumpkin.seed.{spec.name}")
    return instance


def ready_instance(
    spec: SeedSpec,
    node_id: str,
    load: bool = True,
    env: legacy.LegacyEnv | None = None,
    emit: legacy.EmitFn | None = None,
) -> Any:
    """A new instance of ``spec``'s seed with its on_load called (``load=False``: not called); see instantiate.

    Raises SeedStartError naming the seed and which of ``__init__`` and ``on_load`` raised what.
    """
    try:
        instance = instantiate(spec, node_id, env, emit)
    except SEED_FAULTS as exc:
        raise SeedStartError(spec.name, "__init__", exc) from exc
    if load:
        try:
            instance.on_load()
        except SEED_FAULTS as exc:
            raise SeedStartError(spec.name, "on_load", exc) from exc
    return instance


def try_instance(spec: SeedSpec, node_id: str, load: bool = False) -> SeedStartError | None:
    """Make one instance of ``spec``'s seed as the daemon would (``load``: then call its on_load and on_unload
    too), and drop it; None when that worked, else why not (``pmk seeds check``)."""
    try:
        instance = ready_instance(spec, node_id, load)
    except SeedStartError as exc:
        return exc
    if load:
        try:
            instance.on_unload()
        except SEED_FAULTS as exc:
            return SeedStartError(spec.name, "on_unload", exc)
    return None


def run_modern(instance: Any, arity: int, packet: Packet | None) -> Any:
    """Call a modern seed's ``run`` the way its signature asks (see ``seed``); what it returned."""
    if packet is None:
        return instance.run()
    if arity >= 2:
        return instance.run(packet.data, packet)
    return instance.run(packet.data)


def raised(seed: str, exc: BaseException) -> str:
    """The one-line reason a packet failed because its seed raised ``exc``."""
    return f"seed {seed} raised {type(exc).__name__}: {exc}"


class SeedRunner:
    """Runs one seed's instances on worker threads; lives on the event loop that created it."""

    _inline_running = False  # an inline seed is running on the loop's thread (never nest them)

    def __init__(
        self,
        spec: SeedSpec,
        node_id: str,
        loop: asyncio.AbstractEventLoop,
        on_outcome: Callable[[Outcome], None],
        on_broken: Callable[[SeedRunner], None] | None = None,
        legacy_env: legacy.LegacyEnv | None = None,
        files: FileHooks | None = None,
    ) -> None:
        """``on_broken`` is called on the loop once no instance can run (each one's __init__ or on_load
        raised; ``broken_reason`` says how the last one failed). ``legacy_env``: where a legacy seed works.
        ``files``: file payloads are fetched before a packet runs and handed over when emitted (None: data is
        passed as it is)."""
        self.spec = spec
        self.legacy_env = legacy_env or (legacy.LegacyEnv.scratch(node_id) if spec.legacy else None)
        self.files = files
        self.node_id = node_id
        self._loop = loop
        self._on_outcome = on_outcome
        self._on_broken = on_broken
        self._load_failures = 0
        self._load_lock = threading.Lock()
        self.broken_reason = ""  # set once no instance can run
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # wake-ups (_WAKE) and _STOP for the workers
        self._backlog: deque[Packet] = deque()  # packets for the workers (threaded seeds), appended on the loop
        self._wake_scheduled = False
        self._threads: list[threading.Thread] = []
        self._instances: list[Any] = []
        self._stopping = threading.Event()
        self._running = threading.Event()  # cleared while an injector is paused (a seed disabled from the page)
        self._running.set()
        self._flowing = threading.Event()  # cleared while the router throttles this seed
        self._flowing.set()
        self._window = threading.BoundedSemaphore(INJECT_WINDOW)
        self._outbox: deque[Outcome] = deque()
        self._outbox_lock = threading.Lock()
        self._outbox_scheduled = False
        self._inline: deque[Packet] = deque()  # an inline seed's queue (it has no thread)
        self._pool: Any = None  # concurrent.futures.ProcessPoolExecutor for a seed with processes = N
        self._pool_queue: deque[Packet] = deque()
        self._pool_busy = 0  # packets handed to the pool and not back yet
        self._run_in_pool: Callable[[Packet], Any] | None = None  # procpool.run_packet, once there is a pool
        self._probing = False  # packets wait until a worker process says it could make the seed
        self._inline_scheduled = False
        self._unsettled_max = 0
        self._unsettled = 0  # runs whose results are not durable yet (see limit_unsettled)
        self._settle = threading.Condition()
        self.pending = 0  # queued + running, counted on the loop (what it did is counted by the router: counters)
        self._arity = 0 if spec.legacy else run_arity(spec.factory)
        self._splits = splitmerge.splits(spec.factory)

    # -- loop side -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads (each makes its instance and calls its on_load), the inline instance, or
        the worker processes. An instance whose __init__ or on_load raises is logged and does not run."""
        if self.spec.processes:
            self._pool = self._new_pool()
            self._probe()  # then the packets that came before the seed started
            return
        if self.spec.inline:
            instance = self._ready("it will not run")
            if instance is None:
                return
            self._instances.append(instance)
            if self._inline:
                self._schedule_inline()  # packets that came before the seed started
            return
        for i in range(self.spec.workers):
            t = threading.Thread(target=self._work, name=f"seed-{self.spec.name}-{i}", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()
        if self._backlog:
            self._wake()  # packets that came before the seed started

    def submit(self, packet: Packet, now: bool = False) -> None:
        """Queue ``packet`` for the next free instance. ``now``: an inline seed with nothing else queued runs it
        before returning, instead of on the loop's next turn (a lone packet from the network: latency).
        A packet whose file is on another node waits here (counted as queued) until the file is fetched."""
        if self.files is not None and self.files.needs(packet):
            self.pending += 1
            self.files.prepare(packet, lambda error: self._prepared(packet, error))
            return
        self.pending += 1
        if self.spec.processes:
            self._pool_queue.append(packet)
            self._pump()
        elif self.spec.inline:
            self._inline.append(packet)
            if now and len(self._inline) == 1 and not self._inline_scheduled and self._can_run_inline():
                self._run_inline()
            else:
                self._schedule_inline()
        else:
            self._backlog.append(packet)
            if now:
                self._wake()  # a packet on its own: no turn to wait for (latency)
            elif not self._wake_scheduled:
                self._wake_scheduled = True
                self._loop.call_soon(self._wake)  # once, when this turn's packets are all in the backlog

    def _wake(self) -> None:
        """On the loop: wake as many workers as there are packets for (at most all of them)."""
        self._wake_scheduled = False
        for _ in range(min(len(self._backlog), len(self._threads))):
            self._queue.put(_WAKE)

    def _prepared(self, packet: Packet, error: str) -> None:
        """On the loop: ``packet``'s file is here (queue it), or could not be fetched (fail it)."""
        if error:
            self._on_outcome(
                Outcome(self, packet, error=f"its file could not be fetched: {error}", kind="file", unclaimed=True)
            )
            return
        self.pending -= 1
        self.submit(packet)

    def _new_pool(self) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from . import procpool  # here: procpool imports this module

        self._run_in_pool = procpool.run_packet
        group = self.spec.inputs[0].group
        return ProcessPoolExecutor(
            max_workers=self.spec.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=procpool.init_worker,
            initargs=(str(self.spec.path), group, self.spec.name, self.node_id),
        )

    def _probe(self) -> None:
        """Ask the pool whether its worker could make the seed; packets wait for the answer, so that a seed
        no process can make is taken out (``on_broken``) instead of failing every packet."""
        from . import procpool

        self._probing = True
        future = self._pool.submit(procpool.load_error)

        def answered(f: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us during shutdown
                self._loop.call_soon_threadsafe(self._probed, f)

        future.add_done_callback(answered)

    def _probed(self, future: Any) -> None:
        """On the loop: the probe's answer, (error, traceback). An error breaks the seed, and its packets stay
        queued (for ``take_queued``) instead of failing in the pool."""
        if self._stopping.is_set() or future.cancelled():
            return
        try:
            error, tb = future.result()
        except Exception:  # noqa: BLE001 - the pool broke: its packets fail with the reason, a new pool follows
            error = ""
        if error:
            log.error("%s; it will not run\n%s", error, tb.rstrip())
            self._load_failed(error, 1)
            return
        self._probing = False
        self._pump()

    def _pump(self) -> None:
        """On the loop: hand queued packets to the pool, at most two per process at a time."""
        while (
            not self._probing
            and self._pool is not None
            and self._pool_queue
            and self._flowing.is_set()
            and self._pool_busy < 2 * self.spec.processes
            and self._claim(block=False)
        ):
            packet = self._pool_queue.popleft()
            self._pool_busy += 1
            try:
                future = self._pool.submit(self._run_in_pool, packet)
            except RuntimeError as exc:  # the pool broke (a worker died) or is shut down
                self._pool_result(packet, None, exc)
                continue
            future.add_done_callback(lambda f, p=packet: self._pool_result(p, f, None))

    def _pool_result(self, packet: Packet, future: Any, error: BaseException | None) -> None:
        """In the pool's thread (or on the loop): turn a worker's answer into an Outcome for the loop."""
        outcome = Outcome(self, packet, pooled=True)
        try:
            if error is not None:
                raise error
            outcome.emissions, outcome.error, outcome.traceback, outcome.seconds = future.result()
        except Exception as exc:  # noqa: BLE001 - the worker died or the pool went away: this packet fails
            outcome.error = (
                f"seed {self.spec.name}: its worker process failed ({type(exc).__name__}: {exc}); "
                "a new pool is started for the next packets"
            )
            outcome.broken_pool = True
        self._post(outcome)

    def _can_run_inline(self) -> bool:
        return bool(self._instances) and self._flowing.is_set() and not SeedRunner._inline_running

    def _schedule_inline(self) -> None:
        if not self._inline_scheduled and self._instances and self._flowing.is_set():
            self._inline_scheduled = True
            self._loop.call_soon(self._run_inline)

    def _run_inline(self) -> None:
        """On the loop: run a batch of an inline seed's packets, then let other callbacks have a turn."""
        self._inline_scheduled = False
        instance = self._instances[0]
        SeedRunner._inline_running = True  # what this seed feeds to other inline seeds waits for a turn
        try:
            for _ in range(OUTBOX_BATCH):
                if not self._inline or not self._flowing.is_set() or not self._claim(block=False):
                    return  # settled() schedules the rest
                self._on_outcome(self._invoke(instance, self._inline.popleft()))
        finally:
            SeedRunner._inline_running = False
        self._schedule_inline()

    def outcome_done(self, outcome: Outcome) -> None:
        """Bookkeeping for a finished invocation (called on the loop)."""
        if outcome.packet is not None:
            self.pending -= 1
            if self._unsettled_max and not outcome.unclaimed and (outcome.error or not self.spec.is_extractor):
                self.settled()  # nothing to make durable: its place is free at once
        elif outcome.streamed:
            self._window.release()
        if outcome.pooled:
            self._pool_busy -= 1
            if outcome.broken_pool and self._pool is not None and not self._stopping.is_set():
                old, self._pool = self._pool, self._new_pool()
                old.shutdown(wait=False, cancel_futures=True)
            self._pump()

    def limit_unsettled(self, limit: int) -> None:
        """From now on run at most ``limit`` packets whose results are not ``settled`` yet (0: no limit)."""
        self._unsettled_max = limit

    def settled(self) -> None:
        """On the loop: one result made durable (or a run that made none), so another packet may run."""
        with self._settle:
            self._unsettled -= 1
            self._settle.notify()
        if self.spec.inline:
            self._schedule_inline()
        elif self.spec.processes:
            self._pump()

    def _claim(self, block: bool) -> bool:
        """Take a place among the unsettled runs; False (without blocking) when there is none now."""
        if not self._unsettled_max:
            return True
        with self._settle:
            while self._unsettled >= self._unsettled_max and not self._stopping.is_set():
                if not block:
                    return False
                self._settle.wait(0.2)
            self._unsettled += 1
            return True

    def _unclaim(self) -> None:
        """Give back a place taken by ``_claim`` for a run that did not happen."""
        if self._unsettled_max:
            with self._settle:
                self._unsettled -= 1
                self._settle.notify()

    def throttle(self, on: bool) -> None:
        """Hold (or let go) the taking of new packets and the making of new injections."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()
            if self.spec.inline:
                self._schedule_inline()
            elif self.spec.processes:
                self._pump()

    @property
    def throttled(self) -> bool:
        """True while the router throttles this seed."""
        return not self._flowing.is_set()

    def stop_injecting(self) -> None:
        """An injector makes no new runs from now on (the run under way finishes)."""
        self._stopping.set()
        self._running.set()  # a paused injector wakes to see it must stop

    def pause(self, paused: bool) -> None:
        """Hold (or let go) an injector's next run; consuming seeds are paused by routing nothing to them."""
        if paused:
            self._running.clear()
        else:
            self._running.set()

    @property
    def paused(self) -> bool:
        """True while ``pause(True)`` holds the injector."""
        return not self._running.is_set()

    def take_queued(self) -> list[Packet]:
        """Remove and return the packets no instance has started yet (on the loop, before ``stop``)."""
        taken: list[Packet] = [*self._inline, *self._pool_queue]
        self._inline.clear()
        self._pool_queue.clear()
        while True:
            try:  # one at a time: a worker may be taking from the other end (each packet goes to one of us)
                taken.append(self._backlog.popleft())
            except IndexError:
                break
        self.pending -= len(taken)
        return taken

    def stop(self, timeout_s: float = 5.0) -> None:
        """Let queued packets finish, then stop the threads and call on_unload (blocking; use a thread)."""
        self._stopping.set()
        self._running.set()  # a paused injector wakes to see it must stop
        self._flowing.set()  # and so does a throttled seed
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            # The workers finish what they hold and exit (their atexit runs on_unload).
            self._pool.shutdown(wait=True, cancel_futures=True)
        for instance in self._instances:
            try:
                instance.on_unload()
            except SEED_FAULTS:  # a seed's bug must not stop the shutdown
                log.exception("seed %s: on_unload raised", self.spec.name)

    # -- worker side -----------------------------------------------------------------------------

    def _post(self, outcome: Outcome) -> None:
        self._post_all((outcome,))

    def _post_all(self, outcomes: Any) -> None:
        """Hand ``outcomes`` to the loop; one wake-up of the loop for however many are waiting."""
        self._outbox.extend(outcomes)
        with self._outbox_lock:
            if self._outbox_scheduled:
                return
            self._outbox_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop closed under us during shutdown
            self._loop.call_soon_threadsafe(self._deliver_outbox)

    def _deliver_outbox(self) -> None:
        """On the loop: hand the ready outcomes to the router, a batch at a time."""
        with self._outbox_lock:
            self._outbox_scheduled = False
        for _ in range(OUTBOX_BATCH):
            try:
                outcome = self._outbox.popleft()
            except IndexError:
                return
            self._on_outcome(outcome)
        with self._outbox_lock:  # more left: come back after the other ready callbacks
            if self._outbox_scheduled:
                return
            self._outbox_scheduled = True
        self._loop.call_soon(self._deliver_outbox)

    def _ready(self, otherwise: str) -> Any:
        """A new instance with on_load called, or None (logged with the traceback and ``otherwise``) when its
        __init__ or on_load raised: a seed's bug must not stop the daemon."""
        try:
            return ready_instance(self.spec, self.node_id, env=self.legacy_env, emit=self._emit_outside)
        except SeedStartError as exc:
            log.error("%s; %s\n%s", exc, otherwise, exc.traceback.rstrip())
            self._load_failed(str(exc), 1 if self.spec.inline else self.spec.workers)
            return None

    def _load_failed(self, reason: str, of: int) -> None:
        """One more instance (of ``of``) cannot run; when none can, the seed is broken (``on_broken``)."""
        with self._load_lock:
            self._load_failures += 1
            broken = self._load_failures == of
            if broken:
                self.broken_reason = reason
        if broken and self._on_broken is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us during shutdown
                self._loop.call_soon_threadsafe(self._on_broken, self)

    def _work(self) -> None:
        # The instance is made here, not on the loop: a slow __init__ (loading a model) delays only this seed.
        instance = self._ready("this instance will not run")
        if instance is None:
            return
        self._instances.append(instance)
        if self.spec.is_injector:
            self._inject_loop(instance)
            return
        while True:
            item = self._queue.get()
            self._run_backlog(instance)
            if item is _STOP:
                return

    def _run_backlog(self, instance: Any) -> None:
        """Run packets from the backlog until it is empty; outcomes are posted in batches (see the module doc)."""
        backlog, outcomes = self._backlog, []
        first_at = 0.0
        while True:
            self._flowing.wait()
            if not backlog or not self._claim(block=True):
                break
            try:
                packet = backlog.popleft()
            except IndexError:  # another worker (or take_queued) took the last one
                self._unclaim()
                break
            outcomes.append(self._invoke(instance, packet))
            if len(outcomes) == 1:
                first_at = time.perf_counter()
            elif len(outcomes) >= POST_BATCH or time.perf_counter() - first_at >= POST_EVERY_S:
                self._post_all(outcomes)
                outcomes = []
        if outcomes:
            self._post_all(outcomes)

    def _inject_loop(self, instance: Any) -> None:
        every = self.spec.every_s
        while not self._stopping.is_set():
            self._running.wait()
            if self._stopping.is_set():
                break
            self._post(self._invoke(instance, None, stream=True))
            if every is None or self._stopping.wait(every):
                break

    def _invoke(self, instance: Any, packet: Packet | None, stream: bool = False) -> Outcome:
        """Run ``instance`` on ``packet``; with ``stream`` each emission is posted as soon as it is made."""
        outcome = Outcome(self, packet)
        collected = outcome.emissions
        files = self.files
        if packet is not None and files is not None:
            local = files.localize(packet.data, self.spec.legacy)
            if local is not packet.data:
                packet = replace(packet, data=local)  # the seed sees the file's local form; the packet keeps its own

        def emit(e: Emission) -> None:
            if stream:
                e = self._seal(e)
                self._flowing.wait()
                took = self._window.acquire(timeout=0.2)
                while not took and not self._stopping.is_set():
                    took = self._window.acquire(timeout=0.2)
                self._post(Outcome(self, None, [e], streamed=took))
            else:
                collected.append(e)

        started = time.perf_counter()
        try:
            if packet is not None and splitmerge.special(packet, self._splits):
                splitmerge.invoke(self.spec, instance, packet, self._arity, self._splits, emit, self.legacy_env)
            elif self.spec.legacy:
                assert self.legacy_env is not None

                def legacy_emit(state: str, data: Any, **kw: Any) -> None:
                    emit(_emission(state, data, **kw))

                legacy.invoke(instance, self.spec, self.legacy_env, packet, legacy_emit)
            else:
                for e in iter_results(run_modern(instance, self._arity, packet)):
                    emit(e)
        except SEED_FAULTS as exc:  # a seed's bug (even sys.exit()) fails its packet, not the daemon
            outcome.emissions = []
            outcome.error = raised(self.spec.name, exc)
            outcome.traceback = traceback.format_exc()
        else:
            # Files are handed over only once the run succeeded: a failed run's emissions are discarded.
            outcome.emissions = [self._seal(e) for e in outcome.emissions]
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _emit_outside(self, state: str, data: Any, **kw: Any) -> None:
        """A legacy seed dispatched outside ``run`` (from a thread of its own): a new packet, as an injection."""
        if self._stopping.is_set():
            return
        self._flowing.wait()
        took = self._window.acquire(timeout=0.2)
        while not took and not self._stopping.is_set():
            took = self._window.acquire(timeout=0.2)
        self._post(Outcome(self, None, [self._seal(_emission(state, data, **kw))], streamed=took))

    def _seal(self, e: Emission) -> Emission:
        """An emission whose data is a file (a ``File``; ``file://`` from a legacy seed), handed over to the
        node's file store: its data becomes the file's descriptor."""
        if self.files is None:
            if isinstance(e.data, File):
                return replace(e, error="a File needs a daemon with a file store")
            return e
        if not isinstance(e.data, (File, str)) or e.error:
            return e
        try:
            data = self.files.seal(e.data, self.spec.legacy)
        except FileError as exc:
            return replace(e, error=str(exc))
        return e if data is e.data else replace(e, data=data)
