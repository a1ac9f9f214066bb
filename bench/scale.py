"""How Pumpkin scales on one host: memory, discovery time, idle traffic and idle CPU of N daemons.

    sudo .venv/bin/python bench/scale.py [--sizes 10,30,50] [--idle-s 5] [--window-s 5] [--stagger cpus] [--kill]

For each N, starts N ``pmk`` daemons with default settings (each its own --workdir and --node-id, one seed:
the hello world's extractor; ``--http`` picks the web page, off by default so 50 pages are not measured) in ONE
network namespace with a veth pair, so that broadcast and mDNS work among them and nothing leaves the machine.
Measures:

- launch: from the first launch until every daemon's control socket answers;
- discovery: until every daemon lists N-1 *alive* peers (asked over the control socket, in parallel rounds,
  polling with a deadline), counted from the first launch, the last launch and the last daemon ready;
- once all see each other and after ``--idle-s`` of idle, over a ``--window-s`` window: RSS per daemon
  (VmRSS), CPU per daemon (utime+stime from /proc/PID/stat), and the packets and bytes the namespace sends,
  counted by nftables on the output hook: beacons (udp dport 7700, each broadcast counted once however many
  daemons hear it), mDNS (udp 5353) and TCP (all ZeroMQ traffic between the daemons: PINGs, HELLOs, ACKs;
  segments include pure TCP ACKs, bytes include IP and TCP headers; there is no ipc:// peer traffic, as
  the default endpoint is zmq.TCP);
- peer-state changes in the daemons' logs (evasive / expired / back): any at all means liveness flapped.
- with ``--kill``, last: one daemon is killed with SIGKILL and another is asked (every 0.1 s) until it lists it
  evasive, then not at all (expired): on a crowded LAN the windows stretch with the beacons' pace.

Baselines, measured in the same run: a bare interpreter and ``import asyncio, zmq, zeroconf`` (what every daemon
loads; RSS), and one
lone idle daemon with the web page on (opened once: the page and its snapshot fetched) and off (RSS, CPU and
traffic, in namespaces of their own).
Prints a table, then one JSON line. Needs root; builds its namespaces and deletes them, and stops every
daemon it started, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pumpkin.transport import request_sync  # noqa: E402
from tests.netns import Sandbox, sh  # noqa: E402

PMK = [sys.executable, "-m", "pumpkin"]
SEED = ROOT / "seeds" / "helloworld" / "extract.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BEACON_PORT = 7700
NFT_TABLE = "pmkscale"
NFT_RULES = f"""table inet {NFT_TABLE} {{
  counter beacons {{}}
  counter mdns {{}}
  counter zmqtcp {{}}
  chain out {{
    type filter hook output priority 0; policy accept;
    udp dport {BEACON_PORT} counter name "beacons"
    udp dport 5353 counter name "mdns"
    meta l4proto tcp counter name "zmqtcp"
  }}
}}
"""
POLL_ROUND_S = 0.1
REQUEST_TIMEOUT_S = 2.0
#: A starting daemon may not answer yet: a round of polls waits no longer than this for it.
POLL_TIMEOUT_S = 0.5
BASELINE_IMPORTS = "import asyncio, zmq, zeroconf, time; print('ready', flush=True); time.sleep(3600)"
BARE = "import time; print('ready', flush=True); time.sleep(3600)"
# What a browser opening the page asks first: the page and the snapshot it draws (its server is made at the first).
PAGE_PATHS = ("/", "/api/v1/snapshot")
OPEN_PAGE = (
    "import sys, urllib.request\n"
    "for path in sys.argv[2:]:\n"
    "    with urllib.request.urlopen(sys.argv[1] + path, timeout=10) as r:\n"
    "        r.read()\n"
    "        print(r.status)\n"
)
WEB_PORT = 7780


# -- /proc -------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds used by ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of stat(5)


def wakeups(pid: int) -> int:
    """Times the main thread of ``pid`` has slept and woken so far (its voluntary context switches): for an idle
    daemon, its event loop's wake-ups."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise RuntimeError(f"no voluntary_ctxt_switches for {pid}")


# -- namespace and counters --------------------------------------------------------------------------


class Net:
    """A sandbox namespace with nftables counters on what it sends."""

    def __init__(self) -> None:
        self.box = Sandbox()

    def up(self) -> Net:
        self.box.up()
        subprocess.run(self.box.wrap(["nft", "-f", "-"]), input=NFT_RULES, text=True, check=True)
        return self

    def counters(self) -> dict[str, dict[str, int]]:
        out = sh(*self.box.wrap(["nft", "-j", "list", "counters", "table", "inet", NFT_TABLE])).stdout
        found = {}
        for item in json.loads(out)["nftables"]:
            c = item.get("counter")
            if c:
                found[c["name"]] = {"packets": c["packets"], "bytes": c["bytes"]}
        return found

    def down(self) -> None:
        self.box.down()


def rates(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], secs: float) -> dict[str, Any]:
    """Packets and bytes per second for each counter."""
    return {
        k: {
            "pkts_per_s": round((after[k]["packets"] - before[k]["packets"]) / secs, 1),
            "bytes_per_s": round((after[k]["bytes"] - before[k]["bytes"]) / secs),
        }
        for k in after
    }


# -- daemons -----------------------------------------------------------------------------------------


@dataclass
class Daemon:
    """One ``pmk`` started by the bench."""

    name: str
    workdir: Path
    proc: subprocess.Popen[bytes]
    launched: float
    ready: float | None = None
    saw_all: float | None = None
    control: str = ""

    def endpoint(self) -> str:
        if not self.control:
            file = self.workdir / "control"
            if file.exists():
                self.control = file.read_text().strip()
        return self.control


@dataclass
class Fleet:
    """Daemons started in one namespace; ``stop`` ends every one of them."""

    net: Net
    tmp: Path
    env: dict[str, str]
    http: bool
    extra: list[str] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)

    def launch(self, name: str) -> Daemon:
        workdir = self.tmp / name
        cmd = [*PMK, "--workdir", str(workdir), "--node-id", name, "--seed", str(SEED)]
        if not self.http:
            cmd += ["--http.enable", "false"]
        cmd += self.extra
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed by the child's exit, owned by Popen
        proc = subprocess.Popen(self.net.box.wrap(cmd), stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        log.close()
        d = Daemon(name, workdir, proc, time.monotonic())
        self.daemons.append(d)
        return d

    def stop(self) -> None:
        for d in self.daemons:
            if d.proc.poll() is None:
                d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for d in self.daemons:
            try:
                d.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()
        self.daemons.clear()

    def log_events(self) -> dict[str, int]:
        """Peer-state changes and errors the daemons logged."""
        counts = {"evasive": 0, "expired": 0, "back": 0, "errors": 0}
        for d in self.daemons:
            text = (self.tmp / f"{d.name}.log").read_text(errors="replace")
            counts["evasive"] += text.count(" is evasive")
            counts["expired"] += text.count(" expired (silent")
            counts["back"] += text.count(" is back")
            counts["errors"] += text.count(" ERROR ") + text.count("Traceback")
        return counts


def ask_all(daemons: list[Daemon], op: str, timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """One control request to each daemon, in parallel; the replies that came within the timeout."""
    asked = [(d.name, d.endpoint()) for d in daemons]

    def one(endpoint: str) -> dict[str, Any] | None:
        try:
            return request_sync(endpoint, {"op": op}, timeout_s)
        except (TimeoutError, ConnectionError):
            return None

    with ThreadPoolExecutor(max_workers=min(32, max(1, len(asked)))) as pool:
        answers = pool.map(one, [endpoint for _, endpoint in asked if endpoint])
        names = [name for name, endpoint in asked if endpoint]
        return {name: reply for name, reply in zip(names, answers, strict=True) if reply is not None}


def alive_peers(reply: dict[str, Any]) -> int:
    return sum(1 for p in reply.get("peers", []) if p["state"] == "alive")


def wait_discovery(fleet: Fleet, n: int, stagger: str, deadline_s: float) -> None:
    """Launch ``n`` daemons (staggered) and poll until each lists n-1 alive peers, or the deadline passes."""
    concurrent = (os.cpu_count() or 2) if stagger == "cpus" else 0
    gap_s = 0.0 if stagger == "cpus" else float(stagger)
    names = [f"n{n}-{i:03d}" for i in range(n)]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        starting = [d for d in fleet.daemons if d.ready is None]
        while names and (not concurrent or len(starting) < concurrent):
            if gap_s and fleet.daemons and time.monotonic() - fleet.daemons[-1].launched < gap_s:
                break
            starting.append(fleet.launch(names.pop(0)))
        pending = [d for d in fleet.daemons if d.saw_all is None]
        if not names and not pending:
            return
        replies = ask_all(pending, "peers", POLL_TIMEOUT_S)
        now = time.monotonic()
        for d in pending:
            r = replies.get(d.name)
            if r is None:
                if d.proc.poll() is not None:
                    raise RuntimeError(f"daemon {d.name} exited with {d.proc.returncode}; see its log in {fleet.tmp}")
                continue
            if d.ready is None:
                d.ready = now
            if alive_peers(r) >= n - 1:
                d.saw_all = now
        time.sleep(POLL_ROUND_S)


def mesh_rates(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], secs: float) -> dict[str, float]:
    """What the daemons' meshes did over the window, all together, per second (the busiest 8 counters): who talks
    when the network should be quiet."""
    total: dict[str, float] = {}
    for name, a in after.items():
        b = before.get(name, {}).get("mesh", {})
        for key, value in a.get("mesh", {}).items():
            if isinstance(value, int | float):
                total[key] = total.get(key, 0.0) + value - b.get(key, 0)
    busiest = sorted(total.items(), key=lambda kv: -kv[1])[:8]
    return {key: round(value / secs, 1) for key, value in busiest if value}


def measure_kill(fleet: Fleet, deadline_s: float) -> dict[str, Any]:
    """``kill -9`` the last daemon; seconds until the first one lists it evasive, then no more (expired), polled
    every POLL_ROUND_S. On a crowded LAN its windows are stretched by its beacons' pace (README, "Liveness")."""
    victim, observer = fleet.daemons[-1], fleet.daemons[0]
    victim.proc.kill()
    t0 = time.monotonic()
    out: dict[str, Any] = {"evasive_s": None, "expired_s": None}
    while time.monotonic() - t0 < deadline_s and out["expired_s"] is None:
        reply = ask_all([observer], "peers", POLL_TIMEOUT_S).get(observer.name)
        if reply is not None:
            state = next((p["state"] for p in reply.get("peers", []) if p["id"] == victim.name), None)
            now = round(time.monotonic() - t0, 2)
            if state == "evasive" and out["evasive_s"] is None:
                out["evasive_s"] = now
            elif state is None:
                out["expired_s"] = now
        time.sleep(POLL_ROUND_S)
    victim.proc.wait()
    return out


def measure_idle(fleet: Fleet, window_s: float) -> dict[str, Any]:
    """RSS, CPU and traffic of the fleet over ``window_s`` (nothing else asks the daemons meanwhile)."""
    pids = [d.proc.pid for d in fleet.daemons]
    stats0 = ask_all(fleet.daemons, "stats")  # (outside the window: the control requests are traffic too)
    c0, t0 = fleet.net.counters(), time.monotonic()
    cpu0, wake0 = [cpu_s(p) for p in pids], [wakeups(p) for p in pids]
    time.sleep(window_s)
    cpu1, wake1 = [cpu_s(p) for p in pids], [wakeups(p) for p in pids]
    c1, t1 = fleet.net.counters(), time.monotonic()
    secs = t1 - t0
    stats1 = ask_all(fleet.daemons, "stats")
    rss = [rss_mb(p) for p in pids]
    cpu_pct = [100 * (b - a) / secs for a, b in zip(cpu0, cpu1, strict=True)]
    replies = ask_all(fleet.daemons, "peers")
    return {
        "rss_mb_median": round(statistics.median(rss), 1),
        "rss_mb_max": round(max(rss), 1),
        "cpu_pct_per_daemon_median": round(statistics.median(cpu_pct), 2),
        "cpu_pct_per_daemon_max": round(max(cpu_pct), 2),
        "cpu_pct_total": round(sum(cpu_pct), 1),
        "wakeups_per_s_median": round(statistics.median((b - a) / secs for a, b in zip(wake0, wake1, strict=True)), 1),
        "traffic": rates(c0, c1, secs),
        "mesh_per_s": mesh_rates(stats0, stats1, secs),
        "window_s": round(secs, 2),
        "still_all_alive": sum(1 for r in replies.values() if alive_peers(r) >= len(pids) - 1),
    }


def run_size(net: Net, tmp: Path, env: dict[str, str], n: int, args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(net, tmp / f"n{n}", env, args.http, shlex.split(args.pmk_args))
    fleet.tmp.mkdir()
    try:
        wait_discovery(fleet, n, args.stagger, args.deadline_s)
        ds = fleet.daemons
        first = min(d.launched for d in ds)
        last_launch = max(d.launched for d in ds)
        ready = [d.ready for d in ds if d.ready is not None]
        seen = [d.saw_all for d in ds if d.saw_all is not None]
        out: dict[str, Any] = {
            "n": n,
            "launched": len(ds),
            "all_ready": len(ready) == n,
            "all_saw_all": len(seen) == n,
            "launch_s": round(max(ready) - first, 2) if len(ready) == n else None,
            "last_launch_s": round(last_launch - first, 2),
        }
        if len(seen) == n:
            done = max(seen)
            out |= {
                "discovery_from_first_launch_s": round(done - first, 2),
                "discovery_from_last_launch_s": round(done - last_launch, 2),
                "discovery_from_last_ready_s": round(done - max(ready), 2),
            }
            time.sleep(args.idle_s)
            out |= measure_idle(fleet, args.window_s)
            if args.kill:
                out["killed"] = measure_kill(fleet, args.deadline_s)
        out["log_events"] = fleet.log_events()
        return out
    finally:
        fleet.stop()


def open_page(net: Net) -> list[int]:
    """Fetch what a browser opening the page fetches first, from inside ``net``; the HTTP statuses."""
    cmd = [sys.executable, "-c", OPEN_PAGE, f"http://127.0.0.1:{WEB_PORT}", *PAGE_PATHS]
    done = subprocess.run(net.box.wrap(cmd), capture_output=True, text=True, timeout=30, check=True)
    return [int(line) for line in done.stdout.split()]


def baselines(tmp: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Bare interpreters, and one lone idle daemon with the web page on and one with it off."""
    procs = {
        name: subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
        for name, code in (("python_bare", BARE), ("python_asyncio_zmq_zeroconf", BASELINE_IMPORTS))
    }
    nets = {"web_on": Net(), "web_off": Net()}
    fleets: dict[str, Fleet] = {}
    try:
        for key, net in nets.items():
            net.up()
            extra = ["--http.port", str(WEB_PORT)] if key == "web_on" else []
            fleets[key] = Fleet(net, tmp / f"single-{key}", env, http=key == "web_on", extra=extra)
            fleets[key].tmp.mkdir()
            fleets[key].launch(f"single-{key.replace('_', '')}")
        for p in procs.values():
            p.stdout.readline()  # type: ignore[union-attr]
        deadline = time.monotonic() + args.deadline_s
        while time.monotonic() < deadline:
            if all(ask_all(f.daemons, "ping") for f in fleets.values()):
                break
            time.sleep(POLL_ROUND_S)
        out: dict[str, Any] = {"daemon_web_on_page_status": open_page(nets["web_on"])}
        time.sleep(args.idle_s)
        out |= {k: round(rss_mb(p.pid), 1) for k, p in procs.items()}
        for key, fleet in fleets.items():
            idle = measure_idle(fleet, args.window_s) if key == "web_off" else None
            out[f"daemon_{key}_rss_mb"] = round(rss_mb(fleet.daemons[0].proc.pid), 1)
            if idle:
                keys = ("cpu_pct_per_daemon_median", "wakeups_per_s_median", "traffic")
                out["daemon_alone"] = {k: idle[k] for k in keys}
        return out
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        for fleet in fleets.values():
            fleet.stop()
        for net in nets.values():
            net.down()


def fmt_traffic(t: dict[str, Any], key: str) -> str:
    return f"{t[key]['pkts_per_s']:.1f} pkt/s {t[key]['bytes_per_s'] / 1000:.1f} kB/s"


def print_table(result: dict[str, Any]) -> None:
    b = result["baseline"]
    alone = b["daemon_alone"]
    hb = result["heartbeat_s"]
    print(
        f"Baseline RSS: bare python {b['python_bare']} MB; python + asyncio, zmq, zeroconf "
        f"{b['python_asyncio_zmq_zeroconf']} MB; one idle daemon: web on {b['daemon_web_on_rss_mb']} MB, "
        f"web off {b['daemon_web_off_rss_mb']} MB (target < 45 MB with the web page on)"
    )
    print(
        f"One daemon alone (web off): CPU {alone['cpu_pct_per_daemon_median']} %, "
        f"{alone['wakeups_per_s_median']} wake-ups/s; "
        f"beacons {fmt_traffic(alone['traffic'], 'beacons')}; mDNS {fmt_traffic(alone['traffic'], 'mdns')}; "
        f"TCP {fmt_traffic(alone['traffic'], 'zmqtcp')}"
    )
    print()
    head = (
        f"{'N':>3} {'launch':>7} {'disc/first':>10} {'disc/last':>9} {'disc/ready':>10} "
        f"{'RSS med':>8} {'RSS max':>8} {'CPU/d med':>9} {'CPU tot':>8} {'wake/s':>6} "
        f"{'beacon pkt/s':>13} {'mDNS pkt/s':>11} {'TCP pkt/s':>10} {'TCP kB/s':>9} {'flaps':>6}"
    )
    print(head)
    for r in result["sizes"]:
        if "rss_mb_median" not in r:
            print(f"{r['n']:>3} did not converge: {r}")
            continue
        t = r["traffic"]
        ev = r["log_events"]
        print(
            f"{r['n']:>3} {r['launch_s']:>6.1f}s {r['discovery_from_first_launch_s']:>9.1f}s "
            f"{r['discovery_from_last_launch_s']:>8.1f}s {r['discovery_from_last_ready_s']:>9.1f}s "
            f"{r['rss_mb_median']:>6.1f}MB {r['rss_mb_max']:>6.1f}MB {r['cpu_pct_per_daemon_median']:>8.2f}% "
            f"{r['cpu_pct_total']:>7.1f}% {r['wakeups_per_s_median']:>6.1f} "
            f"{t['beacons']['pkts_per_s']:>7.1f} ({r['n'] / hb:>4.0f}) "
            f"{t['mdns']['pkts_per_s']:>11.1f} {t['zmqtcp']['pkts_per_s']:>10.1f} "
            f"{t['zmqtcp']['bytes_per_s'] / 1000:>9.1f} {ev['evasive'] + ev['expired'] + ev['back']:>6}"
        )
    print(
        "launch: first launch -> all control sockets answer; disc/first, disc/last, disc/ready: all list N-1 alive "
        "peers, from the first launch, the last launch, the last daemon ready (poll resolution ~"
        f"{POLL_ROUND_S}s+). CPU: % of one core over the window (CPU tot: all daemons). wake/s: a daemon's event "
        "loop waking (median; its main thread's voluntary context switches). Beacon pkt/s: sent, "
        "(expected N/heartbeat). flaps: evasive/expired/back log lines. Targets: 50 daemons see each other "
        "within 5 s; all idle daemons together < 10% of a core; idle RSS < 45 MB with the web page on."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,30,50", help="numbers of daemons, comma-separated")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle time after all see each other")
    parser.add_argument("--window-s", type=float, default=5.0, help="measuring window for CPU and traffic")
    parser.add_argument(
        "--stagger",
        default="cpus",
        help="'cpus': keep at most one starting daemon per CPU; else seconds between launches (0: all at once)",
    )
    parser.add_argument("--deadline-s", type=float, default=120.0, help="give up on a size after this")
    parser.add_argument("--http", action="store_true", help="run the N daemons with their web page on")
    parser.add_argument("--kill", action="store_true", help="then kill -9 one and time until it is evasive, expired")
    parser.add_argument("--pmk-args", default="", help="more flags for the N daemons, e.g. '--discovery.local false'")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/scale.py needs root: it runs the daemons in a network namespace", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result: dict[str, Any] = {
        "benchmark": "scale",
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
        "heartbeat_s": 0.5,
        "stagger": args.stagger,
        "http": args.http,
        "pmk_args": args.pmk_args,
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="pmkscale-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "run").mkdir()
        # Sockets and the same-host discovery folder in our own directory, so nothing is left behind.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_RUNTIME_DIR": str(tmp / "run"), "HOME": str(tmp)}
        result["baseline"] = baselines(tmp, env, args)
        for n in sizes:
            net = Net()
            try:
                net.up()
                result["sizes"].append(run_size(net, tmp, env, n, args))
            finally:
                with contextlib.suppress(Exception):
                    net.down()
    print_table(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
