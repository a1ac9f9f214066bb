"""The chain of issue 10's fault scenarios, on namespace hosts: used by test_faults.py and bench/reliability.py.

    A: Numbered (source)  ->  B, C: Relay (one transform, two replicas)  ->  D: Sink, with --tx

A, B and C share subnet 10.77.0.0/24; D is on 10.78.0.0/24 behind the router and finds the others through
``--supernodes`` A (a unicast beacon; A's HELLOs pass D on to B and C). Every host keeps its working directory
and node id across restarts, as a supervisor restarting a crashed daemon would; the tcp port is picked anew at
each start (port 0), as it is by default.

``FaultChain.finish`` returns an ``Outcome``: every number the sink's seed ran on, per incarnation of D (its
stdout, one ``sink <n> <by>`` line per run), every tx file per number, the time from the go until all were
delivered, and what the nodes kept in failed/ and pending/. ``Outcome.problems`` says what breaks the promise
"nothing accepted is lost, nothing reaches a sink twice".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import PMK, ROOT, PmkProcess
from tests.helpers import wait_until
from tests.multihost.lan import Lan

SEEDS = Path(__file__).resolve().parent / "seeds"
HOSTS = ("A", "B", "C", "D")
TRANSFORMS = ("B", "C")
SINK = "Sink"  # the extractor's name: its tx files are in <tx>/Sink/
#: Each replica of Relay runs 2 workers taking this long per packet: the chain then moves ~1,500 packets/s here,
#: so a flat-out source keeps the credit windows full, and 10,000 packets take 6-8 s, as in the issue (6 s).
WORK_S = 0.001
ROLE_SEEDS = {"A": "numbered.py", "B": "relay.py", "C": "relay.py", "D": "sink.py"}
SEED_NAMES = {"A": "Numbered", "B": "Relay", "C": "Relay", "D": "Sink"}
CHAIN_READY_S = 30.0
POLL_S = 0.05


def node_id(host: str) -> str:
    """The node id ``host``'s daemon keeps across restarts."""
    return f"node{host}"


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory of process ``pid`` so far (VmHWM), in MB; None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


@dataclass
class Outcome:
    """What reached the sink, and what the nodes kept, after one run of the chain."""

    count: int
    runs: list[list[tuple[int, str]]]  # per incarnation of D, in order: (number, transform node) per sink run
    tx: dict[int, list[str]]  # number -> the tx files holding it
    elapsed_s: float | None  # go -> every number run by the sink and in tx/ (None: not while the chain ran)
    failed: dict[str, list[str]] = field(default_factory=dict)  # host -> first line of each failed/ item
    pending: dict[str, int] = field(default_factory=dict)  # host -> packets saved to pending/ at the clean stop
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> `pmk stats` before the stop

    @property
    def seen(self) -> Counter[int]:
        """How many times the sink ran on each number, over all incarnations of D."""
        return Counter(n for runs in self.runs for n, _ in runs)

    @property
    def lost_inputs(self) -> list[int]:
        seen = self.seen
        return [n for n in range(self.count) if n not in seen]

    @property
    def duplicated_inputs(self) -> dict[int, int]:
        """Number -> extra runs of the sink on it."""
        return {n: c - 1 for n, c in self.seen.items() if c > 1}

    @property
    def lost_tx(self) -> list[int]:
        return [n for n in range(self.count) if n not in self.tx]

    @property
    def duplicated_tx(self) -> dict[int, list[str]]:
        return {n: files for n, files in self.tx.items() if len(files) > 1}

    @property
    def strangers(self) -> list[int]:
        """Numbers that were never sent (out of range): a corrupt packet."""
        return sorted({n for n in [*self.seen, *self.tx] if not 0 <= n < self.count})

    def failed_count(self) -> int:
        return sum(len(v) for v in self.failed.values())

    def problems(self, *, inputs: bool = True) -> list[str]:
        """Every way this run broke "nothing lost, nothing twice" (``inputs``: also count the sink's runs)."""
        out = []
        if self.elapsed_s is None:
            out.append("not every number reached the sink and tx/ while the chain ran")
        if inputs and self.lost_inputs:
            out.append(f"{len(self.lost_inputs)} numbers never ran in the sink seed, e.g. {_some(self.lost_inputs)}")
        if inputs and self.duplicated_inputs:
            dups = self.duplicated_inputs
            out.append(f"{sum(dups.values())} extra sink runs on {len(dups)} numbers, e.g. {_some(sorted(dups))}")
        if self.lost_tx:
            out.append(f"{len(self.lost_tx)} numbers have no tx file, e.g. {_some(self.lost_tx)}")
        if self.duplicated_tx:
            out.append(f"{len(self.duplicated_tx)} numbers have several tx files, e.g. {_some(self.duplicated_tx)}")
        if self.failed_count():
            per_host = _per_host({h: len(v) for h, v in self.failed.items() if v})
            out.append(f"{self.failed_count()} packets in failed/ ({per_host})")
        if self.strangers:
            out.append(f"numbers never sent reached the sink: {_some(self.strangers)}")
        return out

    def summary(self) -> str:
        """One paragraph: counts, time, failed/ and pending/, and the diagnostics that explain a loss."""
        took = f"{self.elapsed_s:.1f} s" if self.elapsed_s is not None else "not finished"
        lines = [
            f"{self.count} sent: sink ran on {len(self.seen)} distinct ({sum(self.seen.values())} runs, "
            f"{len(self.runs)} incarnation(s) of D), {len(self.tx)} distinct in tx/ "
            f"({sum(len(f) for f in self.tx.values())} files); lost {len(self.lost_inputs)} inputs / "
            f"{len(self.lost_tx)} tx; duplicated {sum(self.duplicated_inputs.values())} inputs / "
            f"{sum(len(f) - 1 for f in self.duplicated_tx.values())} tx; {took}",
            f"failed/: {_per_host({h: len(v) for h, v in self.failed.items()})}; pending/ at the clean stop: "
            f"{_per_host(self.pending)}",
        ]
        for host, reasons in self.failed.items():
            if reasons:
                lines.append(f"  failed/ on {host}: {_some(sorted(Counter(_kind(r) for r in reasons).items()))}")
        for host, st in self.stats.items():
            lines.append(
                f"  {host} at the end: peak RSS {st.get('peak_rss_mb', '?')} MB, "
                f"inflight {st.get('inflight', {})}, waiting {st.get('waiting', {})}, "
                f"mesh {st.get('mesh', {})}, "
                f"router {_pick(st.get('router', {}), 'throttled', 'throttle_stuck', 'parked', 'failed')}, "
                f"processed { ({k: v.get('processed') for k, v in st.get('seeds', {}).items()}) }"
            )
        return "\n".join(lines)


def _some(items: Any, k: int = 5) -> str:
    items = list(items)
    return ", ".join(map(str, items[:k])) + (f" ... ({len(items)})" if len(items) > k else "")


def _per_host(counts: dict[str, int]) -> str:
    return ", ".join(f"{h} {n}" for h, n in counts.items()) or "-"


def _pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _kind(reason: str) -> str:
    """A failure reason without its packet ids and numbers, to count alike reasons together."""
    words = [w for w in reason.split() if not any(c.isdigit() for c in w)]
    return " ".join(words[:8])


class FaultChain:
    """Starts, breaks and restarts the daemons of the chain; ``finish`` stops them and says what happened."""

    def __init__(
        self,
        lan: Lan,
        tmp: Path,
        count: int,
        *,
        work_s: float = WORK_S,
        pmk_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """``pmk_args`` go to every daemon (e.g. liveness timings); ``work_s``: Relay's time per packet."""
        self.lan = lan
        self.tmp = tmp
        self.count = count
        self.pmk_args = pmk_args
        tmp.mkdir(parents=True, exist_ok=True)
        self.go_file = tmp / "go"
        self.tx_dir = tmp / "tx"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "FAULT_COUNT": str(count),
            "FAULT_WORK_S": str(work_s),
            "FAULT_GO": str(self.go_file),
            **(env or {}),
        }
        self.procs: dict[str, list[PmkProcess]] = {h: [] for h in HOSTS}
        self.go_at: float | None = None
        self._parsed: list[int] = []  # per incarnation of D: lines of its stdout already parsed
        self._runs: list[list[tuple[int, str]]] = []

    # -- daemons ---------------------------------------------------------------------------------

    @property
    def all_procs(self) -> list[PmkProcess]:
        """Every process started, in order of host then start."""
        return [p for h in HOSTS for p in self.procs[h]]

    def workdir(self, host: str) -> Path:
        return self.tmp / f"wd{host}"

    def start(self, host: str) -> PmkProcess:
        """Start ``host``'s daemon (again: same working directory and node id, a new tcp port)."""
        args = [
            *PMK,
            "--workdir",
            str(self.workdir(host)),
            "--node-id",
            node_id(host),
            "--seed",
            str(SEEDS / ROLE_SEEDS[host]),
            *self.pmk_args,
        ]
        if host == "D":
            args += ["--tx", str(self.tx_dir), "--supernodes", self.lan.ip("A")]
        p = PmkProcess(self.lan.wrap(host, args), env=self.env)
        p.workdir = self.workdir(host)  # type: ignore[attr-defined]
        self.procs[host].append(p)
        return p

    def current(self, host: str) -> PmkProcess:
        return self.procs[host][-1]

    def kill(self, host: str) -> None:
        """``kill -9`` the running daemon of ``host``."""
        p = self.current(host)
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(10)

    def up(self, hosts: str = "BCDA", unreachable: str = "") -> None:
        """Start the daemons of ``hosts`` and wait until each one that runs knows its neighbours in the chain;
        ``unreachable``: hosts nothing can send to (see ``wait_ready``)."""
        for host in hosts:
            self.start(host)
        self.wait_ready(hosts, unreachable=unreachable)

    def wait_ready(self, hosts: str = "ABCD", timeout_s: float = CHAIN_READY_S, unreachable: str = "") -> None:
        """Wait until A knows both replicas of Relay, they know the sink and D knows them (its ACKs go to them).
        A host in ``unreachable`` hears nothing, so it learns nobody and only A (on its subnet, where its beacons
        and HELLOs go) learns it."""
        needs = {
            "A": [("Relay", node_id(h)) for h in TRANSFORMS],
            "B": [("Sink", node_id("D"))] if "D" in hosts else [],
            "C": [("Sink", node_id("D"))] if "D" in hosts else [],
            "D": [("Relay", node_id(h)) for h in TRANSFORMS],  # D acknowledges to them
        }
        for deaf in unreachable:
            needs[deaf] = []
            needs["D"] = [(seed, node) for seed, node in needs["D"] if node != node_id(deaf)]

        def knows(host: str, seed: str, node: str) -> bool:
            return any(
                f"Discovered new peer seed: {seed} at " in line and f"(node {node})" in line
                for line in self.current(host).err
            )

        def missing() -> list[str]:
            out = [f"{h} of {seed} on {node}" for h in hosts for seed, node in needs[h] if not knows(h, seed, node)]
            # D's tx writer is attached late in its start-up (after the web page): a result that comes before it
            # is never written (issue 10, the sink that starts late), so the chain is up once the writer is.
            if "D" in hosts and not self.current("D").stderr_has("Writing results to tx folder"):
                out.append("D's tx writer")
            return out

        try:
            wait_until(lambda: not missing(), timeout_s, interval_s=0.1, what=f"the chain on {hosts} to see itself")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still not known: {', '.join(missing())}") from None

    # -- the stream ------------------------------------------------------------------------------

    def go(self) -> None:
        """Let the source start its stream."""
        self.go_file.touch()
        self.go_at = time.monotonic()

    def sink_runs(self) -> list[list[tuple[int, str]]]:
        """Per incarnation of D, the (number, transform node) of every sink run so far (parsed once each)."""
        for i, p in enumerate(self.procs["D"]):
            if i == len(self._runs):
                self._runs.append([])
                self._parsed.append(0)
            lines = p.out
            end = len(lines)
            for line in lines[self._parsed[i] : end]:
                if line.startswith("sink "):
                    _, n, by = line.split()
                    self._runs[i].append((int(n), by))
            self._parsed[i] = end
        return self._runs

    def seen_count(self) -> int:
        """Distinct numbers the sink has run on."""
        return len({n for runs in self.sink_runs() for n, _ in runs})

    def tx_names(self) -> list[str]:
        """The result files in tx/ (not the writer's dot-files)."""
        try:
            return [e.name for e in os.scandir(self.tx_dir / SINK) if not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def wait_delivered(self, timeout_s: float, stall_s: float | None = None) -> float | None:
        """Seconds from the go until every number has run in the sink and has a tx file; None when that did
        not happen within ``timeout_s``, or nothing at all moved at the sink for ``stall_s`` (a stuck chain)."""
        assert self.go_at is not None
        last: tuple[int, int] = (-1, -1)
        moved_at = time.monotonic()
        done_at: list[float] = []

        def settled() -> bool:
            nonlocal last, moved_at
            now = time.monotonic()
            state = (self.seen_count(), len(self.tx_names()))
            if min(state) >= self.count:
                done_at.append(now)
                return True
            if state != last:
                last, moved_at = state, now
            return stall_s is not None and now - moved_at > stall_s

        try:
            wait_until(settled, timeout_s, interval_s=POLL_S, what="every number at the sink")
        except AssertionError:
            return None  # what is missing is what the Outcome reports
        return done_at[0] - self.go_at if done_at else None

    def progress(self, at_least: int, timeout_s: float = 60.0, tx: bool = False) -> None:
        """Wait until the sink has run on ``at_least`` distinct numbers (``tx``: until tx/ holds that many
        files), so that a fault hits a stream under way."""
        if tx:
            wait_until(
                lambda: len(self.tx_names()) >= at_least, timeout_s, interval_s=POLL_S, what=f"{at_least} in tx/"
            )
        else:
            wait_until(lambda: self.seen_count() >= at_least, timeout_s, interval_s=POLL_S, what=f"{at_least} at sink")

    # -- the end ---------------------------------------------------------------------------------

    def client(self, host: str, *args: str) -> str | None:
        """A ``pmk`` client command on ``host`` against its running daemon; None when it does not answer."""
        r = subprocess.run(
            self.lan.wrap(host, [*PMK, *args, "--workdir", str(self.workdir(host))]),
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
        )
        return r.stdout if r.returncode == 0 else None

    def unacknowledged(self) -> dict[str, dict[str, int]]:
        """Per running daemon, the packets it has sent and holds unacknowledged, per peer (``pmk stats``)."""
        held: dict[str, dict[str, int]] = {}
        for host in HOSTS:
            if self.procs[host] and self.current(host).proc.poll() is None:
                out = self.client(host, "stats")
                inflight = json.loads(out).get("inflight", {}) if out else {}
                if inflight:
                    held[host] = inflight
        return held

    def finish(self, elapsed_s: float | None) -> Outcome:
        """Read every node's counters, stop all daemons cleanly (A first), and gather the outcome."""
        stats: dict[str, dict[str, Any]] = {}
        for host in HOSTS:
            if self.procs[host] and self.current(host).proc.poll() is None:
                out = self.client(host, "stats")
                if out:
                    stats[host] = json.loads(out)
                    stats[host]["peak_rss_mb"] = peak_rss_mb(self.current(host).pid)
        for host in HOSTS:
            for p in self.procs[host]:
                p.stop()
        failed: dict[str, list[str]] = {}
        pending: dict[str, int] = {}
        for host in HOSTS:
            wd = self.workdir(host)
            failed[host] = [
                e.read_text().split("\n", 1)[0] for e in sorted((wd / "failed").glob("*.error")) if e.is_file()
            ]
            pending[host] = sum(
                len(f.read_bytes().splitlines()) for f in (wd / "pending").glob("*.jsonl") if f.is_file()
            )
        tx: dict[int, list[str]] = {}
        for name in self.tx_names():
            doc = orjson.loads((self.tx_dir / SINK / name).read_bytes())
            tx.setdefault(int(doc["data"]["n"]), []).append(name)
        return Outcome(self.count, [list(r) for r in self.sink_runs()], tx, elapsed_s, failed, pending, stats)

    def close(self) -> None:
        """Stop whatever still runs (idempotent); with PUMPKIN_FAULTS_LOGS=DIR, keep every daemon's log there."""
        for p in self.all_procs:
            p.stop()
        keep = os.environ.get("PUMPKIN_FAULTS_LOGS")
        if keep:
            folder = Path(keep) / self.tmp.name
            folder.mkdir(parents=True, exist_ok=True)
            for host, procs in self.procs.items():
                for i, p in enumerate(procs):
                    (folder / f"{host}{i}.log").write_text("\n".join(p.err))
                    stamped = (f"{t:.3f} {line}" for t, line in zip(p.out_at, p.out, strict=False))
                    (folder / f"{host}{i}.out").write_text("\n".join(stamped))
