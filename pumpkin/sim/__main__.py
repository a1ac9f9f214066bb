"""``python -m pumpkin.sim``: run a scenario under many seeds, or replay one seed exactly.

python -m pumpkin.sim swarm pumpkin.sim.examples.register --seeds 200 --loss 0.05
python -m pumpkin.sim replay pumpkin.sim.examples.register --seed 17 --loss 0.05 --history h.jsonl --timeline t.html
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pumpkin.sim import swarm as sw
from pumpkin.sim import timeline
from pumpkin.sim.node import SimError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pumpkin.sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("swarm", "replay"):
        p = sub.add_parser(name)
        p.add_argument("scenario", help="module[:NAME] holding a pumpkin.sim Scenario (default name SCENARIO)")
        p.add_argument("--loss", type=float, default=0.0, help="loss on every link, 0..1")
        p.add_argument("--faults", action="store_true", help="random partitions, crashes, loss bursts per seed")
    swarm_p, replay_p = sub.choices["swarm"], sub.choices["replay"]
    swarm_p.add_argument("--seeds", type=int, default=100, help="how many seeds (0, 1, ... N-1)")
    swarm_p.add_argument("--first-seed", type=int, default=0)
    replay_p.add_argument("--seed", type=int, required=True)
    replay_p.add_argument("--history", type=Path, help="write the history here (JSON lines)")
    replay_p.add_argument("--timeline", type=Path, help="write the timeline here (HTML)")
    args = parser.parse_args(argv)
    options = sw.Options(args.loss, args.faults)
    try:
        scenario = sw.load(args.scenario)
    except SimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "swarm":
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        failed = sw.swarm(scenario, seeds, options)
        for outcome in failed:
            print(f"seed {outcome.seed}: {len(outcome.violations)} violation(s); first: {outcome.violations[0]}")
            for fault in outcome.faults:
                print(f"  fault: {fault}")
            print(f"  replay: {sw.replay_command(args.scenario, outcome.seed, options)}")
        print(f"{len(failed)} of {len(seeds)} seeds failed")
        return 1 if failed else 0
    outcome = sw.run_one(scenario, args.seed, options)
    if args.history:
        outcome.net.history.write(args.history)
    if args.timeline:
        title = f"{args.scenario} seed {args.seed}"
        args.timeline.write_text(timeline.render(outcome.net.history, title))
    for fault in outcome.faults:
        print(f"fault: {fault}")
    for violation in outcome.violations:
        print(violation)
    print(f"seed {args.seed}: {len(outcome.net.history)} records, {len(outcome.violations)} violation(s)")
    return 1 if outcome.violations else 0


if __name__ == "__main__":
    sys.exit(main())
