"""Swarm testing: one scenario under many seeds, each with its own random faults; failing seeds come back with the
one command that replays them exactly (the idea of FoundationDB's simulation tests and TigerBeetle's VOPR).

A scenario is a module (or ``module:NAME``) holding a ``SCENARIO``: how to build the network, its checkers, how
long to run. Faults are drawn from the run's own generator after the network is built, so the seed alone decides
the faults too.
"""

from __future__ import annotations

import dataclasses
import importlib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pumpkin.sim.check import Checker, Violation, check
from pumpkin.sim.links import Link
from pumpkin.sim.network import Network
from pumpkin.sim.node import SimError

MAX_LOSS = 0.2
PARTITION_CHANCE = 0.3
CRASH_CHANCE = 0.3
DUPLICATE_MAX = 0.05
REORDER_MAX = 0.1


@dataclass(frozen=True)
class Scenario:
    """A network to build, the checkers that judge its runs, and how long a run lasts (virtual seconds)."""

    build: Callable[[Network], None]
    checkers: Sequence[Checker]
    duration_s: float
    link: Link = field(default_factory=Link)


@dataclass(frozen=True)
class Options:
    """How each run is set up beyond its seed: ``loss`` on every link, and ``faults`` drawn at random."""

    loss: float = 0.0
    faults: bool = False


@dataclass
class Outcome:
    seed: int
    violations: list[Violation]
    faults: list[str]
    net: Network


def load(spec: str) -> Scenario:
    """``package.module`` or ``package.module:NAME`` (default ``SCENARIO``)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SimError(f"cannot import scenario module {module_name!r}: {e}") from e
    scenario = getattr(module, attr or "SCENARIO", None)
    if not isinstance(scenario, Scenario):
        raise SimError(f"found no Scenario called {attr or 'SCENARIO'!r} in module {module_name}")
    return scenario


def randomise(net: Network, duration_s: float) -> list[str]:
    """Schedule random faults on ``net`` from its own generator; returns what was scheduled, in words."""
    rng = net.rng
    names = sorted(net.nodes)
    done = []
    duplicate, reorder = rng.uniform(0, DUPLICATE_MAX), rng.uniform(0, REORDER_MAX)
    net.wire.default = dataclasses.replace(net.wire.default, duplicate=duplicate, reorder=reorder)
    done.append(f"duplicate {duplicate:.3f}, reorder {reorder:.3f}")
    start, end = sorted(rng.uniform(0, duration_s) for _ in range(2))
    burst = rng.uniform(0, MAX_LOSS)
    base = net.wire.default.loss
    net.at(start, net.set_loss, max(base, burst))
    net.at(end, net.set_loss, base)
    done.append(f"loss {burst:.3f} from {start:.2f} to {end:.2f} s")
    if rng.random() < PARTITION_CHANCE:
        start, end = sorted(rng.uniform(0, duration_s) for _ in range(2))
        side = [n for n in names if rng.random() < 0.5]
        net.at(start, net.partition, side, [n for n in names if n not in side])
        net.at(end, net.heal)
        done.append(f"partition {side} from {start:.2f} to {end:.2f} s")
    if rng.random() < CRASH_CHANCE:
        victim = names[rng.randrange(len(names))]
        start, end = sorted(rng.uniform(0, duration_s) for _ in range(2))
        net.at(start, net.crash, victim)
        net.at(end, net.restart, victim)
        done.append(f"crash {victim} at {start:.2f} s, restart at {end:.2f} s")
    return done


def run_one(scenario: Scenario, seed: int, options: Options = Options()) -> Outcome:
    """One run of ``scenario`` under ``seed``, checked."""
    link = dataclasses.replace(scenario.link, loss=options.loss) if options.loss else scenario.link
    net = Network(seed, link)
    scenario.build(net)
    faults = randomise(net, scenario.duration_s) if options.faults else []
    net.run(scenario.duration_s)
    return Outcome(seed, check(net.history, scenario.checkers), faults, net)


def swarm(scenario: Scenario, seeds: Sequence[int], options: Options = Options()) -> list[Outcome]:
    """The failing runs among ``seeds`` (histories are not kept for passing ones)."""
    failed = []
    for seed in seeds:
        outcome = run_one(scenario, seed, options)
        if outcome.violations:
            failed.append(outcome)
    return failed


def replay_command(spec: str, seed: int, options: Options) -> str:
    """The command that replays one run exactly, writing its history and timeline."""
    args = ["python", "-m", "pumpkin.sim", "replay", spec, "--seed", str(seed)]
    if options.loss:
        args += ["--loss", repr(options.loss)]
    if options.faults:
        args.append("--faults")
    args += ["--history", f"seed{seed}.jsonl", "--timeline", f"seed{seed}.html"]
    return shlex.join(args)
