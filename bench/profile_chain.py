#!/usr/bin/env python3
"""Where the time goes in the 4-daemon chain: py-spy samples every daemon while packets flow, then the costs.

Runs chain.py's 4-daemon ipc:// chain (threaded seeds unless ``--inline``) with enough packets to keep it busy,
attaches ``py-spy record`` (installed for the benchmark only, like Zenoh: bench/.venv-peers) to each daemon for
``--seconds``, and prints per daemon the functions with the most samples on the CPU, by self time and with what
they call (inclusive), as shares of the event loop thread's samples, and how the samples split between the
loop thread and the others (seed worker threads). Only the thread holding the GIL is sampled
(``--gil``): in this VM py-spy's idle detection counts threads blocked in a queue or a condition as busy.

    .venv/bin/python bench/profile_chain.py [--packets 200000] [--seconds 8] [--top 15] [--inline | --dispatch]
                                            [--size 100]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY_SPY = HERE / ".venv-peers" / "bin" / "py-spy"


def load_chain():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_chain", HERE / "chain.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Files whose frames are on every stack (thread start, the event loop's run): left out of the inclusive list.
PLUMBING = {"threading.py", "runners.py", "<frozen runpy>", "__main__.py", "cli.py", "base_events.py", "events.py"}
FRAME = re.compile(r"(.*) \((.*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """ "name (file.py)" of py-spy's "name (/path/to/file.py:line)": one entry per function, not per line."""
    m = FRAME.match(frame)
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})" if m else frame


def costs(collapsed: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares per function from py-spy's collapsed stacks ("f1;f2;f3 count" lines)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads_incl: collections.Counter[str] = collections.Counter()
    total = on_loop = off_loop = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [short(f) for f in stack.split(";")]
        total += n
        if not any(f.startswith("BaseEventLoop.run_forever ") for f in frames):
            off_loop += n  # seed worker threads, ZeroMQ's and the journal's: py-spy's GIL view of them is unsure
            for f in set(frames[1:]):
                if f.rsplit(" (", 1)[-1].rstrip(")") not in PLUMBING:
                    threads_incl[f] += n
            continue
        on_loop += n
        own[frames[-1]] += n
        for f in set(frames[1:]):  # frames[0] is the thread
            if f.rsplit(" (", 1)[-1].rstrip(")") not in PLUMBING:
                incl[f] += n
    if not total:
        return {"self": [], "inclusive": [], "other threads, inclusive": [], "samples": []}
    return {
        "samples": [("all", float(total)), ("loop thread", on_loop / total), ("other threads", off_loop / total)],
        "self": [(f, n / max(on_loop, 1)) for f, n in own.most_common(top)],
        "inclusive": [(f, n / max(on_loop, 1)) for f, n in incl.most_common(top)],
        "other threads, inclusive": [(f, n / max(off_loop, 1)) for f, n in threads_incl.most_common(top)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--inline", action="store_true", help="seeds inline on the loop (default: threaded)")
    ap.add_argument("--dispatch", action="store_true", help="the two transforms in the original format (threaded)")
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    args = ap.parse_args()
    beside = Path(sys.executable).parent / "py-spy"  # the test extras install it in the project's .venv
    spy = str(PY_SPY) if PY_SPY.exists() else str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        sys.exit(f"needs py-spy: {PY_SPY} or on PATH (bench/.venv-peers/bin/pip install py-spy)")
    if os.geteuid() == 0 and not os.environ.get("PMK_BENCH_SANDBOXED") and shutil.which("ip"):
        os.environ["PMK_BENCH_SANDBOXED"] = "1"
        sandbox = str(HERE.parent / "scripts" / "sandbox.sh")
        os.execv(sandbox, [sandbox, sys.executable, *sys.argv])
    chain = load_chain()
    run = chain.Run(args.packets, args.size, "throughput", args.inline)
    report: dict[str, object] = {}
    try:
        for name in reversed(chain.CHAIN):
            seed = f"dispatch_{name}" if args.dispatch and name.startswith("step") else name
            chain.pmk(run, name, [seed], "ipc")
        daemons = dict(zip(reversed(chain.CHAIN), run.procs, strict=True))
        for upstream, seed in zip(chain.CHAIN, chain.CHAIN[1:], strict=False):
            run.wait_for(
                f"{upstream} to know {seed}",
                lambda u=upstream, s=seed: chain.knows_remote(run.tmp / u, s.capitalize()),
            )
        (run.ctl / "go").touch()
        time.sleep(1.0)  # past the start
        spies = {}
        for name, proc in daemons.items():
            out = run.tmp / f"{name}.spy"
            cmd = [
                spy,
                "record",
                "-p",
                str(proc.pid),
                "-d",
                str(args.seconds),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(out),
            ]
            spies[name] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
        for name, (spy_proc, out) in spies.items():
            _, err = spy_proc.communicate(timeout=args.seconds + 60)
            if not out.exists():
                sys.exit(f"py-spy wrote nothing for {name}: {err.decode(errors='replace')[-2000:]}")
            report[name] = costs(out, args.top)
        seeds = "dispatch" if args.dispatch else "inline" if args.inline else "threaded"
        for name, r in report.items():
            assert isinstance(r, dict)
            samples = int(r["samples"][0][1]) if r["samples"] else 0
            split = ", ".join(f"{k} {v * 100:.0f}%" for k, v in r["samples"][1:])
            print(f"\n== {name} ({seeds} seeds): {samples} samples holding the GIL in {args.seconds:g} s ({split})")
            print("   the loop thread's costs, as shares of its samples (the other threads': of theirs):")
            for kind in ("self", "inclusive", "other threads, inclusive"):
                print(f"  -- {kind}")
                for f, share in r[kind]:
                    print(f"  {share * 100:5.1f}%  {f}")
    finally:
        run.close()
    print(json.dumps({"benchmark": "profile_chain", "packets": args.packets, "results": report}))


if __name__ == "__main__":
    main()
