"""The ``pmk`` command line: run the daemon, or talk to a running one.

pmk [options]                  run a daemon in the foreground (Ctrl-C stops it)
pmk seeds check PATH...        load seed files or folders, make an instance of each seed, and report
pmk graph                      print the automaton of a running daemon
pmk peers                      list the peers a running daemon knows
pmk stats                      print a running daemon's counters
pmk inject STATE DATA          send one packet into a running daemon
pmk inject [STATE] --file F    send a packet file (.json, .pkt, .jsonl), or with STATE a file's bytes
pmk network create FILE        make a network key (mode 600); start every daemon with --network-key FILE
pmk keys                       this node's public key, the network key's fingerprint, the members it knows
pmk doctor                     check this host and its daemon: interfaces, discovery, firewall, peers, clocks
pmk trace ID                   where a packet and its lineage went across the network, and where it is now
pmk failed                     the failed packets kept in failed/ (reason, seed, time)
pmk replay ID                  accept a kept failed packet again
pmk pending [--clear]          what waits to be saved to pending/ (or was saved there); --clear: move it to failed/
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, loader, logfold
from . import config as configuration
from .console import LineAtomicWriter
from .errors import ConfigError, DaemonNotRunning, PumpkinError
from .runner import try_instance
from .transport import MAX_CONTROL_BYTES, request_sync
from .workdir import DEFAULT_ROOT, in_use, running_control_files

PROVENANCE_COMMANDS = ("trace", "failed", "replay", "pending")

SUBCOMMANDS = ("seeds", "graph", "stats", "inject", "peers", "network", "keys", "sim", "doctor", *PROVENANCE_COMMANDS)
CHECK_NODE_ID = "pmk-seeds-check"  # the node id seeds see when pmk seeds check makes them
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # local time; log_formatter adds the milliseconds


class OneLineParser(argparse.ArgumentParser):
    """A bad flag is reported in one line, as a bad value from the environment or a file is (not ~30 of usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _daemon_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="pmk",
        description="Run a Pumpkin daemon (or see 'pmk graph --help', "
        "'pmk seeds check --help', 'pmk stats', 'pmk inject --help').",
    )
    p.add_argument("--version", action="version", version=f"pmk {__version__}")
    p.add_argument("-c", "--config", type=Path, help="configuration file (see pumpkin-template.cfg)")
    aliased = {v: k for k, v in configuration.ALIASES.items()}
    for key in configuration.KEYS:
        names = [f"--{key.dotted}"]
        if key.dotted in aliased:
            names.append(f"--{aliased[key.dotted]}")
        if key.kind == "bool":
            p.add_argument(*names, dest=key.dotted, nargs="?", const="true", metavar="true|false", help=key.help)
        elif key.kind == "paths":
            p.add_argument(*names, dest=key.dotted, action="append", metavar="PATH", help=key.help + " Repeatable.")
        else:
            p.add_argument(
                *names, dest=key.dotted, metavar=key.name.upper(), help=key.help, choices=key.choices or None
            )
    p.add_argument("--node-id", dest="node.id", help="alias of --node.id")
    return p


def log_formatter(debug: bool) -> logging.Formatter:
    """Local time to the millisecond, the level, (with --debug the logger,) the message."""
    where = " %(name)s:" if debug else ""
    return logging.Formatter(f"%(asctime)s.%(msecs)03d %(levelname)s{where} %(message)s", LOG_DATE_FORMAT)


def _log_formatter_for(log_format: str, debug: bool) -> logging.Formatter:
    """``--log-format``: text for people (``log_formatter``), or one JSON object per line for machines."""
    if log_format == "json":
        from .logformat import JsonFormatter

        return JsonFormatter()
    return log_formatter(debug)


def _setup_logging(debug: bool, lines_per_minute: int, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_log_formatter_for(log_format, debug))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    # A flood of one kind of line (bad input from a stranger, a failing disk) folds into a count per minute.
    logfold.install(lines_per_minute)


def run_daemon(argv: list[str]) -> int:
    """``pmk [options]``."""
    args = vars(_daemon_parser().parse_args(argv))
    cfg_file = args.pop("config")
    flags: dict[str, Any] = {}
    for dotted, value in args.items():
        if value is None:
            continue
        flags[dotted] = ",".join(value) if isinstance(value, list) else value
    try:
        cfg = configuration.load(cfg_file, flags=flags)
    except ConfigError as exc:
        print(f"pmk: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg.node.debug, cfg.limits.log_lines_per_minute, cfg.node.log_format)
    # Seeds print results from many threads; whole lines, flushed at once, as a terminal shows them.
    sys.stdout = LineAtomicWriter(sys.stdout)
    from . import malloc
    from .daemon import serve

    malloc.one_arena()  # before ZeroMQ's threads and the seeds' start

    try:
        return asyncio.run(serve(cfg))
    except ConfigError as exc:
        print(f"pmk: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _control_endpoint(args: argparse.Namespace) -> str:
    if getattr(args, "control", None):
        return str(args.control)
    if getattr(args, "workdir", None):
        file = Path(args.workdir) / "control"
        if not file.exists():
            raise DaemonNotRunning(f"no pmk is running in {args.workdir} (no control file there)")
        if not in_use(Path(args.workdir)):
            raise DaemonNotRunning(f"no pmk is running in {args.workdir} (the last one stopped without cleaning up)")
        return file.read_text().strip()
    files = running_control_files()
    if not files:
        raise DaemonNotRunning(f"no running pmk found under {DEFAULT_ROOT}; start one with 'pmk', or pass --workdir")
    if len(files) > 1:
        names = ", ".join(str(f.parent) for f in files)
        raise DaemonNotRunning(f"several pmk daemons are running ({names}); pick one with --workdir")
    return files[0].read_text().strip()


def _ask(args: argparse.Namespace, message: dict[str, Any]) -> dict[str, Any]:
    endpoint = _control_endpoint(args)
    try:
        reply = request_sync(endpoint, message, timeout_s=args.timeout)
    except TimeoutError:
        raise DaemonNotRunning(f"the pmk at {endpoint} did not answer within {args.timeout:g} s") from None
    except ConnectionError as exc:
        raise DaemonNotRunning(f"no pmk answers at {endpoint}: {exc}") from None
    if not reply.get("ok"):
        raise DaemonNotRunning(f"the daemon refused: {reply.get('error', 'no reason given')}")
    return reply


def _print_graph(reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply["graph"], indent=2))
        return
    me = reply["node"]
    graph = reply["graph"]
    print(f"Automaton seen by node {me}: {len(graph['nodes'])} states, {len(reply['seeds'])} seeds")
    rows = [("SEED", "FROM STATE", "TO STATE", "RUNS ON")]
    for link in sorted(graph["links"], key=lambda e: (e["seed"], e["source"], e["target"])):
        where = ", ".join(f"{n} (this node)" if n == me else n for n in link["nodes"])
        rows.append((link["seed"], link["source"], link["target"], where))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  ->  {r[2]:<{widths[2]}}  {r[3]}")


def _print_peers(reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply["peers"], indent=2))
        return
    print(f"Peers known to node {reply['node']}: {len(reply['peers'])}")
    rows = [("ID", "STATE", "LAST HEARD", "ADDRESSES", "SEEDS")]
    for p in reply["peers"]:
        rows.append(
            (
                p["id"],
                p["state"] if p.get("answering", True) else f"{p['state']}, answers nothing we send",
                f"{p['last_heard_s_ago']:.1f} s ago",
                " ".join(p["addresses"]) or p["endpoint"],
                ", ".join(p["seeds"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  " + "  ".join(f"{c:<{widths[i]}}" for i, c in enumerate(r[:4])) + "  " + r[4])


def _client_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pmk")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--workdir", type=Path, help="the daemon's working directory (default: the only running one)")
        sp.add_argument("--control", help="the daemon's control endpoint (ipc://...)")
        sp.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer (default 5)")

    seeds = sub.add_parser("seeds", help="work with seed files")
    seeds_sub = seeds.add_subparsers(dest="action", required=True)
    check = seeds_sub.add_parser(
        "check",
        help="load seeds, make an instance of each, and report, without running them",
        description="Import seed files or folders and make one instance of each seed (its __init__ runs, not "
        "its on_load), reporting every file or seed that fails as a daemon would at start. Exit status 1 "
        "when any does.",
    )
    check.add_argument("paths", nargs="+", type=Path)
    check.add_argument("--group", default="default")
    check.add_argument(
        "--on-load",
        action="store_true",
        help="also call each instance's on_load, then its on_unload (they may open files, connections, models)",
    )
    graph = sub.add_parser("graph", help="print the automaton of a running daemon")
    graph.add_argument("--json", action="store_true", help="print networkx node-link JSON")
    common(graph)
    stats = sub.add_parser("stats", help="print a running daemon's counters (JSON)")
    common(stats)
    peers = sub.add_parser("peers", help="list the peers a running daemon knows")
    peers.add_argument("--json", action="store_true", help="print JSON")
    common(peers)
    inject = sub.add_parser(
        "inject",
        help="send a packet into a running daemon",
        description="Send packets to a running daemon; prints each packet's id and state once "
        "the daemon has made it durable.",
    )
    inject.add_argument("state", nargs="?", help="the packet's state: group:type:STATE, type:STATE or STATE")
    inject.add_argument("data", nargs="?", help="the data (parsed as JSON when it is JSON, else taken as a string)")
    inject.add_argument("--string", action="store_true", help="take DATA as a string even if it parses as JSON")
    inject.add_argument(
        "--file",
        type=Path,
        help="with STATE: the file's bytes are the data; without: a packet "
        "file as the rx folder reads it (.json or .pkt document, .jsonl lines)",
    )
    common(inject)
    network = sub.add_parser("network", help="make a network key")
    network_sub = network.add_subparsers(dest="action", required=True)
    create = network_sub.add_parser(
        "create",
        help="make a new network key",
        description="Make a new network key: every daemon started with --network-key FILE is a member of the "
        "network, and daemons without it cannot join, read or send. Written with mode 600 to FILE (or printed, "
        "with '-': then chmod 600 the file you keep it in). Copy it to each host by a safe way (scp -p).",
    )
    create.add_argument("file", help="where to write the key, or - for standard output")
    keys = sub.add_parser("keys", help="show this node's public key and the network it is in")
    common(keys)
    _add_doctor_parser(sub)
    _provenance_parsers(sub, common)
    sim = sub.add_parser("sim", help="run a scenario on simulated Pumpkin nodes (virtual time) and check it")
    sim.add_argument("scenario", type=Path, help="a scenario file (YAML; see README, 'Simulating a Pumpkin network')")
    sim.add_argument("--seed", type=int, help="the random seed (default: the scenario's)")
    sim.add_argument("--faults", action="store_true", help="add the random faults a swarm run under --seed has")
    sim.add_argument("--swarm", type=int, metavar="N", help="run N seeds with random faults; report those that fail")
    sim.add_argument("--history", type=Path, metavar="FILE", help="write the run's history (JSON lines)")
    sim.add_argument("--timeline", type=Path, metavar="FILE", help="write the run's timeline (HTML/SVG)")
    return p


def _add_doctor_parser(sub: Any) -> None:
    from . import doctor

    p = sub.add_parser(
        "doctor",
        help="check this host and its running daemon, and say how to fix what is wrong",
        description="Check interfaces, broadcast and multicast, firewall rules, peers' data ports, who hears whom, "
        "clocks, node ids, the page and the working directory; one line per check (OK, WARN, FAIL, SKIP) and a fix "
        "for each that is not OK. Exit status 1 when any check fails.",
    )
    doctor.add_arguments(p)


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    return doctor.run(args)


def _provenance_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """``pmk trace``, ``pmk failed``, ``pmk replay``, ``pmk pending``."""
    trace = sub.add_parser(
        "trace",
        help="where a packet and its lineage went, across the network",
        description="Ask the daemon, and through it every peer, what they know of packet ID's lineage (every "
        "packet made from the same injected one): which seed ran it on which node, when, for how long, where it "
        "was sent, and where each packet is now or why it failed. Daemons remember their last few thousand packet "
        "events, in memory only.",
    )
    trace.add_argument("id", help="a packet id, as pmk inject, pmk failed or the page print it")
    trace.add_argument("--json", action="store_true", help="print the events as JSON")
    trace.add_argument("--wait", type=float, default=2.0, help="seconds to wait for peers' answers (default 2)")
    common(trace)
    failed = sub.add_parser("failed", help="list the failed packets kept in failed/ (newest first)")
    failed.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    failed.add_argument("--json", action="store_true", help="print JSON")
    common(failed)
    replay = sub.add_parser(
        "replay",
        help="accept a kept failed packet again",
        description="Accept the packet ID kept in failed/ again, as pmk inject would (journaled before this "
        "returns), with a new id in the same lineage; its files leave failed/ only once it is accepted.",
    )
    replay.add_argument("id")
    common(replay)
    pending = sub.add_parser(
        "pending",
        help="show (or clear) the packets that wait, and come back at the next start",
        description="With a daemon running: the packets waiting in it for a consumer, which a stop saves to "
        "pending/ and the next start resumes. With none running in --workdir: what pending/ holds. --clear moves "
        "them to failed/ (kind 'cleared'), from where pmk replay brings any one back.",
    )
    pending.add_argument("--clear", action="store_true", help="move them to failed/")
    common(pending)


def _provenance(args: argparse.Namespace) -> int:
    """Run one of ``PROVENANCE_COMMANDS``."""
    if args.command == "pending" and args.workdir is not None and not in_use(Path(args.workdir)):
        return _pending_at_rest(Path(args.workdir), args.clear)
    if args.command == "trace":
        args.timeout = max(args.timeout, args.wait * 3 + 2)  # up to three rounds of asking peers
        reply = _ask(args, {"op": "trace", "id": args.id, "wait_s": args.wait})
        if args.json:
            print(json.dumps(reply, indent=2))
        else:
            _print_trace(reply)
    elif args.command == "failed":
        reply = _ask(args, {"op": "failed", "limit": args.limit})
        if args.json:
            print(json.dumps(reply["failed"], indent=2))
        else:
            _print_failed(reply)
    elif args.command == "replay":
        reply = _ask(args, {"op": "replay", "id": args.id})
        print(f"{reply['id']} {reply['state']} (replay of {reply['was']})")
    else:
        reply = _ask(args, {"op": "pending", "clear": args.clear})
        if args.clear:
            print(f"Moved {reply['cleared']} waiting packet(s) to {reply['folder']} (see pmk failed; pmk replay ID)")
        else:
            _print_pending(reply["total"], [(s["state"], s["count"], s["packets"]) for s in reply["states"]], True)
    return 0


def _print_trace(reply: dict[str, Any]) -> None:
    events = reply["events"]
    asked, silent = reply["asked"], reply["silent"]
    heard = f"asked {len(asked)} peer(s)" + (f", no answer from {', '.join(silent)}" if silent else "")
    if not events:
        print(f"Nothing known of {reply['id']} here or at the peers ({heard}): too old, or never seen.")
        return
    nodes = sorted({e["node"] for e in events})
    print(f"Trace of {reply['id']} (lineage {', '.join(reply['lineages'])}): {len(events)} event(s) on "
          f"{len(nodes)} node(s); {heard}")  # fmt: skip
    start = events[0]["at"]
    for e in events:
        print(f"  +{e['at'] - start:8.3f} s  {e['node']:<14} {_trace_line(e)}")
    parents = {e.get("parent") for e in events if e["event"] == "made"}
    last: dict[str, dict[str, Any]] = {}
    for e in events:
        last[e["packet"]] = e
    print("Where each packet is now:")
    for pid, e in last.items():
        if pid in parents and e["event"] != "failed":
            continue  # it went on as the packets made from it
        print(f"  {pid}  {_trace_now(e, silent)}")


def _trace_line(e: dict[str, Any]) -> str:
    seed, state, pid = e.get("seed", ""), e.get("state", ""), e["packet"]
    took = "" if not e.get("s") else f" in {e['s'] * 1e6:.0f} µs" if e["s"] < 0.001 else f" in {e['s'] * 1e3:.1f} ms"
    event = e["event"]
    if event == "in":
        return f"in       {pid} in {state} (by {seed or '?'}{', replay of ' + e['parent'] if e.get('parent') else ''})"
    if event == "made":
        return f"made     {pid} in {state} by {seed} from {e.get('parent') or '(an injector)'}"
    if event == "sent":
        return f"sent     {pid} to {e.get('peer')} for {seed}"
    if event in ("ran", "done"):
        failed = f", failed ({e['kind']})" if e.get("kind") else ""
        return f"{event:<8} {pid} by {seed}{took}{failed}"
    if event == "waiting":
        return f"waiting  {pid} in {state}{' for ' + seed if seed else ' (no consumer)'}"
    reason = f": {e['reason']}" if e.get("reason") else ""
    return f"failed   {pid} ({e.get('kind')}{', seed ' + seed if seed else ''}), kept as {e.get('file')}{reason}"


def _trace_now(e: dict[str, Any], silent: list[str]) -> str:
    where, event = e["node"], e["event"]
    if event == "done":
        return f"done: {e.get('seed')} on {where} took it out of the network"
    if event == "failed":
        return f"failed on {where} ({e.get('kind')}), kept in its failed/ as {e.get('file')}"
    if event == "waiting":
        return f"waiting on {where} in {e.get('state')}"
    if event == "sent":
        peer = e.get("peer", "")
        why = "which did not answer" if peer in silent else "which says nothing of it (still in flight?)"
        return f"sent to {peer} for {e.get('seed')}, {why}"
    if event == "ran":
        return f"ran by {e.get('seed')} on {where}, which made nothing of it"
    return f"{event} on {where}"


def _print_failed(reply: dict[str, Any]) -> None:
    items = reply["failed"]
    print(f"{len(items)} failed packet(s) kept in {reply['folder']}, newest first (pmk replay ID takes one back):")
    for f in items:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["time"]))
        print(f"  {when}  {f['kind'] or '?':<16} {f['seed'] or '-':<12} {f['packet'] or '-':<28} {f['reason']}")


def _print_pending(total: int, states: list[tuple[str, int, list[dict[str, Any]]]], running: bool) -> None:
    where = "waiting in the running daemon (a stop saves them to pending/)" if running else "saved in pending/"
    print(f"{total} packet(s) {where}")
    for state, count, shown in states:
        print(f"  {state}: {count}")
        for p in shown:
            print(f"    {p['id']}" + (f"  ({p['age_s']} s old)" if "age_s" in p else ""))
    if total:
        print("They resume at the next start; 'pmk pending --clear' moves them to failed/ (pmk replay ID: one back).")


def _pending_at_rest(workdir: Path, clear: bool) -> int:
    """``pmk pending`` on a working directory no daemon runs in: what its pending/ holds."""
    from .failed import FailedStore
    from .packet import IdMaker
    from .pending import Pending

    pending = Pending(workdir / "pending")
    files = pending.files()
    unreadable: list[tuple[list[bytes], str]] = []
    packets_ = pending.read(files, "default", IdMaker(), lambda frames, kind, why: unreadable.append((frames, why)))
    if not clear:
        by_state: dict[str, list[dict[str, Any]]] = {}
        for p in packets_:
            by_state.setdefault(str(p.tag), []).append({"id": p.id})
        _print_pending(len(packets_), [(s, len(ps), ps[:20]) for s, ps in sorted(by_state.items())], False)
        for _, why in unreadable:
            print(f"  unreadable: {why}")
        return 0
    store = FailedStore(workdir / "failed")
    store.measure()
    for p in packets_:
        store.keep(p, "cleared", f"packet {p.id} saved in pending/ was cleared by pmk pending --clear")
    for frames, why in unreadable:
        store.keep_raw(frames, "cleared", f"{why} (cleared by pmk pending --clear)")
    store.sync()
    pending.remove(files)
    print(f"Moved {len(packets_)} packet(s) from {pending.folder} to {store.root} (see pmk failed; pmk replay ID)")
    return 0


def _sim(args: argparse.Namespace) -> int:
    """``pmk sim``: one checked run (or a swarm of them); exit 1 when a checker failed."""
    from . import simrun  # the simulator is only imported by the command that uses it
    from .sim import timeline

    scenario = simrun.read(args.scenario)
    if args.swarm:
        start = int(scenario.get("seed", 0)) if args.seed is None else args.seed
        bad = 0
        for seed in range(start, start + args.swarm):
            result = simrun.run(scenario, seed, faults=True)
            if result.violations:
                bad += 1
                print(f"seed {seed} FAILED ({'; '.join(result.faults)})")
                for v in result.violations[:5]:
                    print(f"  {v}")
                replay = f"pmk sim {args.scenario} --seed {seed} --faults --history seed{seed}.jsonl"
                print(f"  replay: {replay} --timeline seed{seed}.html")
        print(f"{args.swarm - bad} of {args.swarm} seeds passed")
        return 1 if bad else 0
    result = simrun.run(scenario, args.seed, faults=args.faults)
    summary = result.summary()
    print(f"seed {summary['seed']}: {summary['injected']} injected, {summary['delivered']} delivered to sinks")
    for sink, n in summary["sinks"].items():
        print(f"  {sink}: {n}")
    print(f"{summary['messages']} messages, {summary['lost']} lost; {result.wall_s:.2f} s of wall time")
    for fault in result.faults:
        print(f"fault: {fault}")
    if args.history:
        result.history.write(args.history)
    if args.timeline:
        args.timeline.write_text(timeline.render(result.history, f"pmk sim {args.scenario} --seed {result.seed}"))
    for v in result.violations:
        print(f"FAILED {v}")
    print("checkers: " + ("all passed" if not result.violations else f"{len(result.violations)} violation(s)"))
    return 1 if result.violations else 0


def _inject_request(args: argparse.Namespace) -> dict[str, Any]:
    """The control request for ``pmk inject``; raises PumpkinError (exit 1) on a usage problem."""
    if args.file is None:
        if args.state is None or args.data is None:
            raise PumpkinError("inject needs STATE and DATA, or --file F (see pmk inject --help)")
        data: Any = args.data
        if not args.string:
            with contextlib.suppress(json.JSONDecodeError):
                data = json.loads(args.data)
        return {"op": "inject", "state": args.state, "data": data}
    if args.data is not None:
        raise PumpkinError("give DATA or --file, not both")
    try:
        content = args.file.read_bytes()
    except OSError as exc:
        raise PumpkinError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if len(content) * 4 // 3 + 4096 > MAX_CONTROL_BYTES:
        most = (MAX_CONTROL_BYTES - 4096) * 3 // 4
        raise PumpkinError(
            f"{args.file} has {len(content)} bytes; pmk inject sends at most about {most} bytes: "
            "drop it into the daemon's rx folder instead"
        )
    encoded = base64.b64encode(content).decode()
    if args.state is not None:
        return {"op": "inject", "state": args.state, "data_base64": encoded}
    return {"op": "inject", "file": args.file.name, "content_base64": encoded}


def _network_create(file: str) -> int:
    from .membership import NetworkKey

    text = NetworkKey.create().text()
    if file == "-":
        sys.stdout.write(text)
        return 0
    path = Path(file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"pmk: {path} exists; a new key would cut its network off: pick another name", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pmk: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"Network key written to {path} (mode 600). Start every daemon of the network with --network-key {path}")
    return 0


def _print_keys(reply: dict[str, Any]) -> None:
    if reply.get("keyed"):
        print(f"Network key fingerprint: {reply['fingerprint']}")
    else:
        print("Open network: this daemon has no network key (anyone on the LAN can join; see pmk network create)")
    print(f"This node ({reply['node']}): {reply['public_key']}")
    members = reply.get("members", {})
    if members:
        print(f"Members it knows: {len(members)}")
        for node in sorted(members):
            print(f"  {node:<24}  {members[node]}")


def _seeds_check(paths: list[Path], group: str, on_load: bool) -> int:
    report = loader.load(paths, group)
    ok = 0
    failed: list[str] = []
    for spec in report.seeds:
        ins = ", ".join(map(str, spec.inputs)) or "(injector)"
        outs = ", ".join(map(str, spec.outputs)) or "(extractor)"
        kind = "legacy" if spec.legacy else "seed"
        fault = try_instance(spec, CHECK_NODE_ID, load=on_load)
        if fault is None:
            ok += 1
            print(f"ok       {spec.name}: {ins} -> {outs}  [{kind}, {spec.path}]")
        else:
            then = "" if fault.stage == "on_unload" else "; a daemon would disable it"
            failed.append(f"{spec.path}: {fault}{then}\n{fault.traceback.rstrip()}")
    for path, why in report.skipped:
        print(f"skipped  {path}: {why}")
    for why in [*(why if str(path) in why else f"{path}: {why}" for path, why in report.errors), *failed]:
        print(f"error    {why}")
    errors = len(report.errors) + len(failed)
    if on_load:
        print("Imported each file, made an instance of each seed and called its on_load, then its on_unload.")
    else:
        print("Imported each file and made an instance of each seed (on_load not called: --on-load calls it).")
    print(f"{ok} seed(s) ok, {len(report.skipped)} skipped, {errors} error(s)")
    return 0 if errors == 0 else 1


def run_client(argv: list[str]) -> int:
    """The subcommands that do not run a daemon."""
    args = _client_parser().parse_args(argv)
    try:
        if args.command == "seeds":
            return _seeds_check(args.paths, args.group, args.on_load)
        if args.command == "graph":
            _print_graph(_ask(args, {"op": "graph"}), args.json)
        elif args.command == "peers":
            _print_peers(_ask(args, {"op": "peers"}), args.json)
        elif args.command == "stats":
            print(json.dumps(_ask(args, {"op": "stats"}), indent=2))
        elif args.command == "network":
            return _network_create(args.file)
        elif args.command == "keys":
            _print_keys(_ask(args, {"op": "keys"}))
        elif args.command == "sim":
            return _sim(args)
        elif args.command == "doctor":
            return _doctor(args)
        elif args.command in PROVENANCE_COMMANDS:
            return _provenance(args)
        elif args.command == "inject":
            reply = _ask(args, _inject_request(args))
            for item in reply.get("packets") or [reply]:
                print(f"{item['id']} {item['state']}")
    except PumpkinError as exc:  # no daemon, a refusal, or a usage problem: one line, exit 1
        print(f"pmk: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pmk`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return run_client(argv)
    return run_daemon(argv)
