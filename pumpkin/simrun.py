"""``pmk sim``: a scenario file (YAML) run on simulated Pumpkin nodes (``simnet``), checked, and its swarm.

A scenario (paths are relative to the file)::

    seed: 1                 # the random seed: one seed, one run, bit for bit
    duration: 20            # virtual seconds
    run_s: 0.001            # a seed run's virtual duration
    tx: true                # extractors keep a tx folder across restarts (false: a sink forgets what it took)
    link: {latency: 0.001, jitter: 0.0, loss: 0.0}     # every link, unless ``links`` says otherwise
    links: [{a: A, b: B, latency: 0.01, loss: 0.2}]
    nodes: {A: [seeds/helloworld/inject.py], B: [seeds/helloworld/greet.py], C: [seeds/helloworld/extract.py]}
    subnets: {lan1: [A, B], lan2: [C]}   # broadcast domains (default: one for all); beacons stay inside one
    peers: {C: [B]}                      # static peers: C greets B (which then listens on a fixed port)
    deaf: [A]                            # A hears no broadcast beacon (its links work, and it is heard)
    clocks: {B: {offset: 30, rate: 1.02}}  # a node's clock: ahead by offset s, running 2% fast
    faults:
      - {at: 2, crash: B}
      - {at: 4, restart: B}           # a new incarnation on a new endpoint, its memory gone
      - {at: 5, partition: [[A], [B, C]]}
      - {at: 6, heal: true}
      - {at: 7, loss: 0.2}            # every link from now on
    inject:
      - {node: A, state: UNGREETED, data: "n{i}", count: 10, rate: 5, at: 0.5}   # {i}: the injection's number
      - {node: A, seed: inject, count: 2}                                       # run an injector seed
"""

from __future__ import annotations

import dataclasses
import gc
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import PumpkinError
from .sim.check import Checker, Violation, check
from .sim.history import History
from .sim.links import Fixed, Link, Uniform
from .simnet import CHECKERS, RUN_S, STATIC_PORT, Net, Node

#: Scenario times count from here: every node has beaconed once and HELLOs have been exchanged (each node's
#: first beacon comes within a heartbeat of its start).
SETTLE_S = 1.0


class ScenarioError(PumpkinError):
    """A scenario file that cannot be run (says which key is wrong)."""


@dataclass
class Result:
    """One run: its history, what the checkers found, and the faults it had."""

    seed: int
    history: History
    violations: list[Violation]
    faults: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    events: int = 0  # callbacks the event queue fired
    cpu_s: float = 0.0  # CPU time of this process (steadier than wall time on a busy machine)

    def summary(self) -> dict[str, Any]:
        sinks = Counter(f"{r.node}/{r.data['seed']}" for r in self.history.notes("sink"))
        return {
            "seed": self.seed,
            "injected": len(self.history.notes("inject")),
            "delivered": sum(sinks.values()),
            "sinks": dict(sorted(sinks.items())),
            "messages": len(self.history.of("send")),
            "lost": len(self.history.of("drop")),
        }


def read(path: Path) -> dict[str, Any]:
    """The scenario in ``path``, its seed paths made absolute."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict):
        raise ScenarioError(f"{path}: a scenario needs a 'nodes' mapping (node name -> seed files or folders)")
    nodes: dict[str, list[Path]] = {}
    for name, seeds in raw["nodes"].items():
        seeds = [seeds] if isinstance(seeds, str) else seeds or []
        nodes[str(name)] = [(path.parent / s).resolve() for s in seeds]
        for s in nodes[str(name)]:
            if not s.exists():
                raise ScenarioError(f"{path}: node {name}: no seed file or folder {s}")
    return {**raw, "nodes": nodes}


def _link(spec: dict[str, Any], base: Link | None = None) -> Link:
    base = base or Link()
    latency = float(spec.get("latency", 0.001))
    jitter = float(spec.get("jitter", 0.0))
    return dataclasses.replace(
        base,
        latency=Uniform(latency, latency + jitter) if jitter else Fixed(latency),
        loss=float(spec.get("loss", base.loss)),
        duplicate=float(spec.get("duplicate", base.duplicate)),
        reorder=float(spec.get("reorder", base.reorder)),
    )


class Run:
    """A scenario being run: its network, who is up, and the schedule."""

    def __init__(self, scenario: dict[str, Any], seed: int, tmp: Path) -> None:
        self.scenario = scenario
        self.seed = seed
        self.run_s = float(scenario.get("run_s", RUN_S))
        self.net = Net(tmp, seed=seed, link=_link(scenario.get("link") or {}))
        self.net.tx = bool(scenario.get("tx", True))
        for spec in scenario.get("links") or []:
            self.net.wire.set_link(str(spec["a"]), str(spec["b"]), _link(spec, self.net.wire.default))
        self.start = self.net.clock.now
        self.faults: list[str] = []
        names = set(scenario["nodes"])
        for subnet, members in (scenario.get("subnets") or {}).items():
            for name in _names(members, names, f"subnets.{subnet}"):
                self.net.subnet[name] = str(subnet)
        for name, spec in (scenario.get("clocks") or {}).items():
            [name] = _names([name], names, "clocks")
            if not isinstance(spec, dict) or float(spec.get("rate", 1.0)) <= 0:
                raise ScenarioError(f"clocks.{name}: give {{offset: seconds, rate: a positive factor}}")
            self.net.skew[name] = (float(spec.get("offset", 0.0)), float(spec.get("rate", 1.0)))
        self.net.deaf = set(_names(scenario.get("deaf") or [], names, "deaf"))
        self.static: dict[str, list[str]] = {}
        for name, targets in (scenario.get("peers") or {}).items():
            [name] = _names([name], names, "peers")
            self.static[name] = _names(targets, names, f"peers.{name}")
            self.net.fixed_ports.update(self.static[name])

    def boot(self, name: str) -> Node:
        """Start ``name`` (a new incarnation if it ran before): its seeds load, it beacons and greets its peers."""
        statics = [f"tcp://{peer}:{STATIC_PORT}" for peer in self.static.get(name, [])]
        node = self.net.add(name, live=True, static_peers=statics)
        node.load_seeds(self.scenario["nodes"][name], self.run_s)
        node.resume()  # what its journal holds unfinished from an earlier life is routed again
        return node

    def at(self, t: float, what: Callable[[], object]) -> None:
        self.net.scheduler.call_at(self.start + SETTLE_S + t, what)

    def crash(self, name: str) -> None:
        if name in self.net.nodes:
            self.net.kill(name)

    def restart(self, name: str) -> None:
        self.crash(name)
        self.boot(name)

    def set_loss(self, loss: float) -> None:
        wire = self.net.wire
        wire.default = dataclasses.replace(wire.default, loss=loss)
        wire.links = {k: dataclasses.replace(v, loss=loss) for k, v in wire.links.items()}

    def fault(self, spec: dict[str, Any]) -> None:
        t = float(spec.get("at", 0.0))
        if "crash" in spec:
            self.at(t, lambda: self.crash(str(spec["crash"])))
        elif "restart" in spec:
            self.at(t, lambda: self.restart(str(spec["restart"])))
        elif "partition" in spec:
            self.at(t, lambda: self.net.wire.partition(*[[str(n) for n in g] for g in spec["partition"]]))
        elif "heal" in spec:
            self.at(t, self.net.wire.heal)
        elif "loss" in spec:
            self.at(t, lambda: self.set_loss(float(spec["loss"])))
        else:
            raise ScenarioError(f"a fault needs crash, restart, partition, heal or loss: {spec}")

    def injection(self, spec: dict[str, Any]) -> None:
        name, count = str(spec["node"]), int(spec.get("count", 1))
        gap = 1.0 / float(spec["rate"]) if spec.get("rate") else 0.0
        t0 = float(spec.get("at", 0.0))
        for i in range(count):

            def go(i: int = i) -> None:
                node = self.net.nodes.get(name)
                if node is None:
                    return  # the node is down: nothing enters there
                if "seed" in spec:
                    node.run_injector(str(spec["seed"]))
                else:
                    data = spec.get("data", i)
                    node.accept(str(spec["state"]), data.format(i=i) if isinstance(data, str) else data)

            self.at(t0 + i * gap, go)

    def run(self, duration_s: float) -> None:
        """Boot every node, find each other by beacons (``SETTLE_S``), then the faults and injections."""
        for name in self.scenario["nodes"]:
            self.boot(name)
        for spec in self.scenario.get("faults") or []:
            self.fault(spec)
        for spec in self.scenario.get("inject") or []:
            self.injection(spec)
        self.net.scheduler.run(self.start + SETTLE_S + duration_s)


def _names(raw: Any, known: set[str], where: str) -> list[str]:
    """Node names listed under ``where``, each one a node of the scenario (ScenarioError otherwise)."""
    names = [raw] if isinstance(raw, str) else list(raw or [])
    unknown = [str(n) for n in names if str(n) not in known]
    if unknown:
        raise ScenarioError(f"{where}: no node called {', '.join(unknown)} in 'nodes'")
    return [str(n) for n in names]


#: Clock skew drawn by ``randomise``: how far a node's clock may run fast or slow, and be ahead or behind.
SKEW_RATE_MAX = 0.05
SKEW_OFFSET_MAX_S = 100.0


def randomise(run: Run, rng: random.Random, duration_s: float) -> list[str]:
    """Random faults from ``rng``, in words: a loss burst; maybe a partition; maybe a crash and restart of any node
    (one that injects too: what it accepted is in its journal); maybe skewed clocks on some nodes. Messages are not
    duplicated or reordered: each link is a TCP stream, which does neither."""
    names = sorted(run.scenario["nodes"])
    done = []
    if rng.random() < 0.5:
        for name in names:
            if rng.random() < 0.5:
                offset = round(rng.uniform(-SKEW_OFFSET_MAX_S, SKEW_OFFSET_MAX_S), 3)
                rate = round(rng.uniform(1 - SKEW_RATE_MAX, 1 + SKEW_RATE_MAX), 4)
                run.net.skew[name] = (offset, rate)
                done.append(f"clock of {name}: {offset:+g} s, rate {rate:g}")
    start, end = sorted(rng.uniform(0, duration_s / 2) for _ in range(2))
    burst = round(rng.uniform(0, 0.3), 3)
    run.fault({"at": start, "loss": burst})
    run.fault({"at": end, "loss": run.net.wire.default.loss})
    done.append(f"loss {burst} from {start:.2f} to {end:.2f} s")
    if rng.random() < 0.5:
        start, end = sorted(rng.uniform(0, duration_s / 2) for _ in range(2))
        side = [n for n in names if rng.random() < 0.5]
        run.fault({"at": start, "partition": [side, [n for n in names if n not in side]]})
        run.fault({"at": end, "heal": True})
        done.append(f"partition {side} from {start:.2f} to {end:.2f} s")
    victims = names
    if victims and rng.random() < 0.5:
        victim = victims[rng.randrange(len(victims))]
        start, end = sorted(rng.uniform(0, duration_s / 2) for _ in range(2))
        run.fault({"at": start, "crash": victim})
        run.fault({"at": end, "restart": victim})
        done.append(f"crash {victim} at {start:.2f} s, restart at {end:.2f} s")
    return done


def run(
    scenario: dict[str, Any], seed: int | None = None, faults: bool = False, checkers: tuple[Checker, ...] = ()
) -> Result:
    """Run ``scenario`` once under ``seed`` (default: its own), with random ``faults`` drawn from the seed too."""
    import time

    seed = int(scenario.get("seed", 0)) if seed is None else seed
    duration = float(scenario.get("duration", 10.0))
    began, began_cpu = time.perf_counter(), time.process_time()
    thresholds = gc.get_threshold()
    # A run builds a long history and many long-lived protocol objects and few cycles: at the default thresholds
    # the collector's passes over them took 13% of a 50-node run's CPU (bench/simnet.py), as in a daemon.
    gc.set_threshold(100_000, 50, 1000)
    try:
        with tempfile.TemporaryDirectory(prefix="pmk-sim-") as tmp:
            r = Run(scenario, seed, Path(tmp))
            drawn = randomise(r, random.Random(seed), duration) if faults else []
            r.run(duration)
        history = r.net.history
        # (Inside: checkers over a history of millions of records, at the default thresholds, spent most of their
        # time in full collections.)
        violations = check(history, (*CHECKERS, *checkers))
    finally:
        gc.set_threshold(*thresholds)
    wall_s, cpu_s = time.perf_counter() - began, time.process_time() - began_cpu
    return Result(seed, history, violations, drawn, wall_s, r.net.scheduler.fired, cpu_s)
