"""``pmk doctor``: gathers the facts ``pumpkin.diagnosis`` judges, from this host and its running daemon.

What it does, all within a few seconds: asks the daemon (if one runs) over its control socket what it knows;
sends a probe to the beacon port of every broadcast address and of every known peer (daemons answer with an echo,
which also carries their wall clock) while listening on the beacon port itself; browses mDNS; reads the nftables
and iptables rulesets where it may; opens (and at once closes) a TCP connection to each peer's data port; asks the
page for its node; and reads the working directory's pending/, failed/ and journal/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

from . import config as configuration
from . import diagnosis, netinfo
from .errors import ConfigError, DaemonNotRunning, PumpkinError
from .messages import BEACON_MAGIC, SEALED_BEACON_MAGIC, MessageError, decode_echo, encode_probe, wall_clock
from .transport import request_sync
from .workdir import DEFAULT_ROOT, in_use, running_control_files

#: How long the probe listens for echoes and beacons (and mDNS answers come in), at the least.
LISTEN_S = 1.5
CONNECT_TIMEOUT_S = 1.5
MDNS_TYPE = "_pumpkin._tcp.local."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``pmk doctor``'s flags."""
    p.add_argument("--workdir", type=Path, help="the daemon's working directory (default: the only running one)")
    p.add_argument("-c", "--config", type=Path, help="the configuration file a daemon here would use")
    p.add_argument("--json", action="store_true", help="print the checks and the facts behind them as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon (default 5)")
    p.add_argument("--listen", type=float, default=LISTEN_S, help=f"seconds to listen for echoes (default {LISTEN_S})")


def run(args: argparse.Namespace) -> int:
    """``pmk doctor``: print one line per check (and a fix for each that is not OK); 1 when any failed."""
    facts = gather(args)
    checks = diagnosis.diagnose(facts)
    if args.json:
        print(json.dumps({"checks": [c.as_json() for c in checks], "facts": facts}, indent=2, default=str))
    else:
        for c in checks:
            print(f"{c.status:<4}  {c.name:<10}  {c.summary}")
            if c.status != diagnosis.OK and c.fix:
                print(f"{'':18}fix: {c.fix}")
    return diagnosis.exit_status(checks)


def gather(args: argparse.Namespace) -> dict[str, Any]:
    """Every fact, gathered at once where it can be."""
    facts: dict[str, Any] = {}
    try:
        cfg = configuration.load(args.config)
    except ConfigError as exc:
        raise PumpkinError(str(exc)) from None
    facts["config"] = {
        "bcport": cfg.discovery.bcport,
        "tcp_port": cfg.endpoint.tcp_port,
        "interface": cfg.discovery.interface,
        "advertise": cfg.discovery.advertise,
        "broadcast": cfg.discovery.enable and cfg.discovery.broadcast,
        "mdns": cfg.discovery.enable and cfg.discovery.mdns,
        "http": {"enable": cfg.http.enable, "host": cfg.http.host, "port": cfg.http.port},
    }
    facts["local"] = _local(cfg.discovery.interface, cfg.discovery.advertise)
    workdir, explicit = _workdir(args, cfg.node.workdir)
    facts["daemon"], facts["daemon_error"] = _ask_daemon(workdir, explicit, args.timeout)
    daemon = facts["daemon"] or {}
    if daemon and workdir is None:
        workdir = _running_workdir()
    facts["workdir"] = _read_workdir(workdir, explicit)
    if daemon:
        facts["config"]["broadcast"] = bool((daemon.get("discovery") or {}).get("broadcast"))
        facts["config"]["mdns"] = bool((daemon.get("discovery") or {}).get("mdns"))
    bcport = int((daemon.get("discovery") or {}).get("bcport") or cfg.discovery.bcport)
    chosen = daemon.get("interfaces") or facts["local"].get("chosen", [])
    broadcasts = sorted({i["broadcast"] for i in chosen if i.get("broadcast")})
    peers = [p for p in daemon.get("peers", []) if p.get("tcp")]
    unicasts = sorted({diagnosis._host(p["tcp"]) for p in peers if p.get("state") == "alive"} - {""})
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        probe = pool.submit(_probe, bcport, broadcasts, unicasts, args.listen)
        mdns = pool.submit(_browse_mdns, [i["address"] for i in chosen], args.listen)
        firewall = pool.submit(_rulesets)
        reach = {p["id"]: pool.submit(_connect, p["tcp"]) for p in peers}
        web = pool.submit(_web, daemon, cfg.http.port, cfg.http.host)
        facts["probe"] = probe.result()
        facts["mdns"] = mdns.result() if facts["config"]["mdns"] else {"found": [], "off": True}
        facts["firewall"] = firewall.result()
        facts["reach"] = {node: {"endpoint": p["tcp"], **f.result()} for node, f, p in _zip(reach, peers)}
        facts["web"] = web.result()
    return facts


def _zip(futures: dict[str, Any], peers: list[dict[str, Any]]) -> list[tuple[str, Any, dict[str, Any]]]:
    by_id = {p["id"]: p for p in peers}
    return [(node, f, by_id[node]) for node, f in futures.items()]


# -- this host -----------------------------------------------------------------------------------


def _iface(i: netinfo.Interface) -> dict[str, Any]:
    return {"name": i.name, "address": i.address, "broadcast": i.broadcast, "network": i.network}


def _local(interface: str, advertise: str) -> dict[str, Any]:
    out: dict[str, Any] = {"interfaces": [_iface(i) for i in netinfo.interfaces()]}
    try:
        chosen, address = netinfo.choose(interface, advertise)
    except ConfigError as exc:
        out["error"] = str(exc)
        return out
    out["chosen"] = [_iface(i) for i in chosen]
    out["advertise"] = address
    return out


def _workdir(args: argparse.Namespace, configured: Path | None) -> tuple[Path | None, bool]:
    if args.workdir is not None:
        return args.workdir, True
    if configured is not None:
        return configured, True
    running = running_control_files()
    if len(running) == 1:
        return running[0].parent, False
    slot = DEFAULT_ROOT / "node0"
    return (slot if slot.exists() and not running else None), False


def _running_workdir() -> Path | None:
    running = running_control_files()
    return running[0].parent if len(running) == 1 else None


def _ask_daemon(workdir: Path | None, explicit: bool, timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """The daemon's ``doctor`` answer, or None and why not."""
    try:
        if workdir is not None:
            control = workdir / "control"
            if not control.exists() or not in_use(workdir):
                return None, f"no pmk is running in {workdir}"
            endpoint = control.read_text().strip()
        else:
            running = running_control_files()
            if len(running) > 1:
                names = ", ".join(str(f.parent) for f in running)
                return None, f"several pmk daemons run ({names}): pick one with --workdir"
            if not running:
                return None, f"no running pmk found under {DEFAULT_ROOT}"
            endpoint = running[0].read_text().strip()
        reply = request_sync(endpoint, {"op": "doctor"}, timeout_s=timeout_s)
    except (TimeoutError, ConnectionError, OSError, DaemonNotRunning) as exc:
        return None, f"the daemon did not answer: {exc or type(exc).__name__}"
    if not reply.get("ok"):
        return None, f"the daemon refused: {reply.get('error', 'no reason given')} (an older pmk?)"
    return reply, ""


def _read_workdir(path: Path | None, explicit: bool) -> dict[str, Any]:
    """pending/, failed/ and journal/ of a working directory, and other working directories with its node id."""
    if path is None:
        return {"path": "", "exists": False, "explicit": False}
    out: dict[str, Any] = {"path": str(path), "exists": path.is_dir(), "explicit": explicit}
    if not path.is_dir():
        return out
    id_file = path / "node-id"
    node_id = id_file.read_text().strip() if id_file.exists() else ""
    out["node_id"] = node_id
    pending = 0
    for file in sorted((path / "pending").glob("*")):
        if file.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            lines = file.read_bytes().splitlines() if file.suffix == ".jsonl" else [b"one packet"]
            pending += sum(1 for line in lines if line.strip())
    out["pending"] = pending
    failed: dict[str, int] = {}
    for error in (path / "failed").glob("*.error"):
        with contextlib.suppress(OSError):
            kind = error.read_text(errors="replace").split(":", 1)[0].strip()[:40] or "unknown"
            failed[kind] = failed.get(kind, 0) + 1
    out["failed"] = failed
    out["journal_batches"] = len(list((path / "journal").glob("*.jrn")))
    same = []
    if node_id:
        for other in sorted({*path.parent.glob("*/node-id"), *DEFAULT_ROOT.glob("*/node-id")}):
            with contextlib.suppress(OSError):
                if other.parent.resolve() != path.resolve() and other.read_text().strip() == node_id:
                    same.append(str(other.parent))
    out["same_id"] = same
    return out


# -- the network ---------------------------------------------------------------------------------


def _probe(port: int, broadcasts: list[str], unicasts: list[str], listen_s: float) -> dict[str, Any]:
    """Probes to the beacon port (broadcast, and to each peer alone); the echoes, and the beacons heard meanwhile."""
    out: dict[str, Any] = {"sent": [], "echoes": [], "beacons": {}, "listening": False, "own_back": False}
    nonce = uuid.uuid4().hex[:16]
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("", port))
            out["listening"] = True
        except OSError as exc:
            out["listen_error"] = f"cannot listen on UDP port {port}: {exc.strerror or exc}"
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sender.bind(("", 0))
        sent_at: dict[str, tuple[str, float]] = {}
        targets = [*((b, "broadcast") for b in broadcasts), *((u, "unicast") for u in unicasts)]
        for n, (address, kind) in enumerate(targets):
            tag = f"{nonce}-{n}"
            sent_at[tag] = (kind, wall_clock())
            try:
                sender.sendto(encode_probe(tag), (address, port))
                out["sent"].append({"to": address, "kind": kind})
            except OSError as exc:  # EPERM: this host's firewall dropped it on the way out
                out["sent"].append({"to": address, "kind": kind, "error": exc.strerror or str(exc)})
        deadline = time.monotonic() + listen_s
        socks = [sender, *([listener] if out["listening"] else [])]
        for s in socks:
            s.settimeout(0.05)
        seen: set[tuple[str, str]] = set()
        while time.monotonic() < deadline:
            for s in socks:
                try:
                    data, addr = s.recvfrom(2048)
                except (TimeoutError, BlockingIOError):
                    continue
                now = wall_clock()
                if s is listener:
                    if data.startswith(b"PMKD") and nonce.encode() in data:
                        out["own_back"] = True
                    else:
                        node = _beacon_id(data)
                        if node:
                            out["beacons"][node] = addr[0]
                    continue
                try:
                    echo = decode_echo(data)
                except MessageError:
                    continue
                if echo.nonce not in sent_at or (echo.node, echo.nonce) in seen:
                    continue
                seen.add((echo.node, echo.nonce))
                kind, t0 = sent_at[echo.nonce]
                out["echoes"].append(
                    {
                        "id": echo.node,
                        "from": addr[0],
                        "kind": kind,
                        "incarnation": echo.inc,
                        "rtt_s": round(now - t0, 6),
                        "offset_s": round(echo.wall - (t0 + now) / 2, 3) if echo.wall else None,
                    }
                )
    finally:
        listener.close()
        sender.close()
    return out


def _beacon_id(data: bytes) -> str:
    """The node id a beacon claims (unverified: only to say who is heard)."""
    if data.startswith(SEALED_BEACON_MAGIC):
        body = data[4 + 16 :]
    elif data.startswith(BEACON_MAGIC):
        body = data[4:]
    else:
        return ""
    try:
        node = orjson.loads(body).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return node if isinstance(node, str) else ""


def _browse_mdns(addresses: list[str], listen_s: float) -> dict[str, Any]:
    """The node ids that answer an mDNS query for Pumpkin's service type."""
    if not addresses:
        return {"found": [], "error": "no interface but loopback"}
    try:
        from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf
    except ImportError as exc:
        return {"found": [], "error": str(exc)}
    found: set[str] = set()

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found.add(name.removesuffix("." + MDNS_TYPE))

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            self.add_service(zc, type_, name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

    try:
        zc = Zeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
    except OSError as exc:
        return {"found": [], "error": f"cannot start mDNS: {exc.strerror or exc}"}
    try:
        ServiceBrowser(zc, MDNS_TYPE, listener=Listener())
        time.sleep(listen_s)  # answers come by multicast at their own pace; the browser asks again meanwhile
    finally:
        zc.close()
    return {"found": sorted(found)}


def _rulesets() -> dict[str, Any]:
    """The nftables ruleset and iptables-save's output, where readable (root)."""
    out: dict[str, Any] = {"nft": None, "iptables": None}
    errors = []
    for key, cmd in (("nft", ["nft", "list", "ruleset"]), ("iptables", ["iptables-save"])):
        if shutil.which(cmd[0]) is None and not os.path.exists(f"/usr/sbin/{cmd[0]}"):
            errors.append(f"{cmd[0]} is not installed")
            continue
        exe = shutil.which(cmd[0]) or f"/usr/sbin/{cmd[0]}"
        try:
            r = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{cmd[0]}: {exc}")
            continue
        if r.returncode == 0:
            out[key] = r.stdout
        else:
            errors.append(f"{' '.join(cmd)}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
    if errors:
        out["error"] = "; ".join(errors)
    return out


def _connect(endpoint: str) -> dict[str, Any]:
    """Whether a TCP connection to ``endpoint``'s data port opens (closed again at once, nothing sent)."""
    host, port = diagnosis._host(endpoint), diagnosis._port(endpoint)
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {CONNECT_TIMEOUT_S:g} s: dropped on the way"}
    except OSError as exc:
        return {"ok": False, "error": exc.strerror or str(exc)}
    return {"ok": True, "s": round(time.monotonic() - started, 4)}


def _web(daemon: dict[str, Any], port: int, host: str) -> dict[str, Any]:
    """The running daemon's page answers its API; without a daemon, whether the configured port is free."""
    if daemon:
        url = (daemon.get("web") or {}).get("url") or ""
        if not url:
            return {"url": ""}
        try:
            with urllib.request.urlopen(url + "api/v1/node", timeout=CONNECT_TIMEOUT_S) as r:
                node = json.loads(r.read()).get("id")
        except (OSError, ValueError) as exc:
            return {"url": url, "ok": False, "error": str(getattr(exc, "reason", exc))}
        return {"url": url, "ok": node == daemon.get("node"), "error": f"answered as {node}"}
    if not port:
        return {"port_free": True}
    with socket.socket() as s:
        # As the page's server binds (SO_REUSEADDR): a connection closed a moment ago (TIME_WAIT) does not hold it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host if host not in ("", "0.0.0.0", "*") else "", port))
        except OSError:
            return {"port_free": False}
    return {"port_free": True}
