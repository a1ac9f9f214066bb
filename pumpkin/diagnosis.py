"""``pmk doctor``'s verdicts: plain facts in (gathered by ``pumpkin.doctor``), one ``Check`` per concern out.

Pure: the facts are a JSON-ready dict, so every verdict can be unit-tested with made-up facts. Each check is OK,
WARN, FAIL or SKIP (could not be looked at here, and says why); every non-OK check carries a ``fix``.

The facts (every key optional; a missing one means "not looked at")::

    config    {"bcport", "tcp_port", "http": {"enable", "host", "port"}, "interface", "advertise",
               "broadcast", "mdns"}
    local     {"interfaces": [{"name", "address", "broadcast", "network"}], "chosen": [...], "advertise",
               "error"}: this host's interfaces as a daemon started now would choose them
    daemon    the running daemon's answer to the control request ``doctor`` (``NodeQuery.doctor``), or None;
              "daemon_error": why none answered
    probe     {"listening": bool, "own_back": bool, "sent": [{"to", "kind": "broadcast"|"unicast"}],
               "echoes": [{"id", "from", "kind", "rtt_s", "offset_s", "incarnation"}],
               "beacons": {node id: address}, "error"}
    mdns      {"found": [node ids], "error"}
    firewall  {"nft": ruleset text | None, "iptables": iptables-save text | None, "error"}
    reach     {node id: {"endpoint", "ok", "error"}}: TCP connects to peers' data ports
    web       {"url", "ok", "error"} for a running daemon's page; or {"port_free": bool} without one
    workdir   {"path", "exists", "node_id", "pending": packets, "failed": {kind: n}, "journal_batches",
               "same_id": [other working directories with this node id]}
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
MDNS_PORT = 5353
MDNS_GROUP = "224.0.0.251"
#: Seconds a peer is given to register its mDNS record (zeroconf probes ~1.5 s after start) before it is missed.
MDNS_SETTLE_S = 5.0
#: Clocks further apart than this make logs, traces and incarnations across hosts disagree.
CLOCK_SKEW_WARN_S = 1.0
#: Interface name prefixes of virtual bridges and tunnels: announcing such an address is usually a mistake.
VIRTUAL_PREFIXES = ("docker", "br-", "virbr", "veth", "cni", "podman", "flannel", "vboxnet", "vmnet", "lxc")
#: A peer's beacons or PING requests count as current within this many heartbeats.
FRESH_HEARTBEATS = 4


@dataclass
class Check:
    """One concern's verdict: one line, and a fix unless it is OK."""

    name: str
    status: str
    summary: str
    fix: str = ""
    details: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(facts: dict[str, Any]) -> list[Check]:
    """Every check, in the order ``pmk doctor`` prints them."""
    return [
        daemon_check(facts),
        interfaces_check(facts),
        broadcast_check(facts),
        multicast_check(facts),
        firewall_check(facts),
        data_port_check(facts),
        hearing_check(facts),
        clock_check(facts),
        node_id_check(facts),
        web_check(facts),
        workdir_check(facts),
    ]


def exit_status(checks: list[Check]) -> int:
    """1 when any check failed, else 0."""
    return 1 if any(c.status == FAIL for c in checks) else 0


# -- helpers -------------------------------------------------------------------------------------


def _names(ids: list[str]) -> str:
    return ", ".join(sorted(ids))


def _host(endpoint: str | None) -> str:
    """The host part of ``tcp://host:port`` ('' for anything else)."""
    if not endpoint or not endpoint.startswith("tcp://"):
        return ""
    return endpoint.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")


def _port(endpoint: str | None) -> int:
    try:
        return int(str(endpoint).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _networks(facts: dict[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    daemon = facts.get("daemon") or {}
    ifaces = daemon.get("interfaces") or (facts.get("local") or {}).get("chosen") or []
    return [ipaddress.ip_network(i["network"], strict=False) for i in ifaces if i.get("network")]


def _same_subnet(facts: dict[str, Any], endpoint: str | None) -> bool:
    """True when ``endpoint``'s host is on one of this node's subnets (so our broadcasts can reach it)."""
    host = _host(endpoint)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in _networks(facts))


def _heartbeat(facts: dict[str, Any]) -> float:
    return float(((facts.get("daemon") or {}).get("timing") or {}).get("heartbeat_s", 0.5))


def _fresh(age: float | None, facts: dict[str, Any]) -> bool:
    return age is not None and age <= FRESH_HEARTBEATS * _heartbeat(facts) + 0.5


def _alive_peers(facts: dict[str, Any]) -> list[dict[str, Any]]:
    daemon = facts.get("daemon") or {}
    return [p for p in daemon.get("peers", []) if p.get("state") == "alive"]


def _discovery(facts: dict[str, Any]) -> dict[str, Any]:
    return (facts.get("daemon") or {}).get("discovery") or {}


def _bcport(facts: dict[str, Any]) -> int:
    return int(_discovery(facts).get("bcport") or (facts.get("config") or {}).get("bcport") or 7700)


def _data_port(facts: dict[str, Any]) -> int:
    daemon = facts.get("daemon") or {}
    for url in daemon.get("endpoints", []):
        if url.startswith("tcp://"):
            return _port(url)
    return int((facts.get("config") or {}).get("tcp_port") or 0)


# -- the checks ----------------------------------------------------------------------------------


def daemon_check(facts: dict[str, Any]) -> Check:
    daemon = facts.get("daemon")
    where = (facts.get("workdir") or {}).get("path", "")
    if daemon:
        return Check("daemon", OK, f"pmk {daemon.get('node', '?')} answers on its control socket ({where})")
    why = facts.get("daemon_error") or "no running pmk found"
    return Check(
        "daemon",
        WARN,
        f"no daemon asked ({why}): the checks that need one are skipped",
        "start pmk (or name the one you mean with --workdir DIR), then run pmk doctor again",
    )


def interfaces_check(facts: dict[str, Any]) -> Check:
    local = facts.get("local") or {}
    daemon = facts.get("daemon") or {}
    if local.get("error") and not daemon:
        return Check("interfaces", FAIL, local["error"], "name an interface this host has (ip -brief address)")
    chosen = daemon.get("interfaces") if daemon else local.get("chosen", [])
    advertise = daemon.get("advertise") if daemon else local.get("advertise", "")
    every = local.get("interfaces", [])
    if not chosen:
        return Check(
            "interfaces",
            WARN,
            f"no interface but loopback: announcing {advertise}, so daemons on other hosts cannot find or reach it",
            "connect this host to the LAN, or give peers each other's address with --peers / --supernodes",
        )
    listed = "; ".join(
        f"{i['name']} {i['address']}/{i['network'].rsplit('/', 1)[-1]} (broadcast {i.get('broadcast') or 'none'})"
        for i in chosen
    )
    summary = f"{listed}; announcing {advertise}"
    configured = (facts.get("config") or {}).get("advertise")
    on_host = {i["address"] for i in every} | {i["address"] for i in chosen}
    if advertise and advertise not in on_host and not configured:
        return Check(
            "interfaces",
            WARN,
            f"{summary}, which is on no interface of this host",
            "set --advertise to an address peers can reach, or --interface to the LAN's interface",
        )
    first = next((i for i in chosen if i["address"] == advertise), chosen[0])
    if first["name"].startswith(VIRTUAL_PREFIXES) and not configured:
        real = [i["name"] for i in chosen if not i["name"].startswith(VIRTUAL_PREFIXES)]
        if real:
            return Check(
                "interfaces",
                WARN,
                f"{summary}: {first['name']} looks like a virtual bridge, which peers on other hosts cannot reach",
                f"pick the LAN's interface: --interface {real[0]} (or --advertise its address)",
            )
    return Check("interfaces", OK, summary + (" (set by --advertise)" if configured else ""))


def broadcast_check(facts: dict[str, Any]) -> Check:
    disc, config = _discovery(facts), facts.get("config") or {}
    if (facts.get("daemon") and not disc.get("broadcast")) or config.get("broadcast") is False:
        return Check("broadcast", OK, "broadcast beacons are off by configuration (discovery.broadcast)")
    probe = facts.get("probe")
    port = _bcport(facts)
    if probe is None:
        return Check("broadcast", SKIP, "not probed", f"run pmk doctor where it can use UDP port {port}")
    if probe.get("error"):
        return Check(
            "broadcast", FAIL, f"cannot probe: {probe['error']}", f"let this user send UDP broadcasts on port {port}"
        )
    targets = [s["to"] for s in probe.get("sent", []) if s["kind"] == "broadcast"]
    if not targets:
        return Check(
            "broadcast",
            WARN,
            "no interface has a broadcast address: beacons reach only --supernodes",
            "connect an interface with an IPv4 broadcast address, or list peers with --peers / --supernodes",
        )
    echoes = probe.get("echoes", [])
    refused = [
        f"{s['to']} ({s['error']})" for s in probe.get("sent", []) if s["kind"] == "broadcast" and s.get("error")
    ]
    by_broadcast = {e["id"] for e in echoes if e["kind"] == "broadcast"}
    by_unicast = {e["id"] for e in echoes if e["kind"] == "unicast"}
    problems: list[str] = []
    fixes: list[str] = []
    if refused:
        problems.append(f"sending to {', '.join(refused)} failed here: this host drops its broadcasts on the way out")
        fixes.append(f"let UDP port {port} out to the broadcast address (see the firewall check)")
    elif probe.get("listening") and not probe.get("own_back"):
        problems.append(f"a probe broadcast to {', '.join(targets)}:{port} did not come back to this host")
        fixes.append(f"let UDP port {port} out to and in from the broadcast address (see the firewall check)")
    local = [p for p in _alive_peers(facts) if _same_subnet(facts, p.get("tcp"))]
    unheard = [p["id"] for p in local if p["id"] not in by_broadcast and p["id"] in by_unicast]
    silent = [p["id"] for p in local if p["id"] not in by_broadcast and p["id"] not in by_unicast]
    if unheard:
        problems.append(
            f"{_names(unheard)} did not hear this host's broadcast probe but answered one sent to them alone: "
            "broadcasts from here do not reach them"
        )
        fixes.append(f"let broadcasts to UDP port {port} leave this host (and in on theirs)")
    if silent:
        problems.append(f"{_names(silent)} answered no probe to UDP port {port}, broadcast or sent to them alone")
        fixes.append(f"open UDP port {port} on those hosts (and on the way there)")
    hearing = ((facts.get("daemon") or {}).get("hearing") or {}).get("nodes", {})
    deaf = [
        p["id"]
        for p in local
        # (known for less than the freshness window: it greeted us before its first beacon came, not deaf yet)
        if not _fresh(p.get("known_s") or 0, facts)
        and not _fresh((hearing.get(p["id"]) or {}).get("ways", {}).get("broadcast"), facts)
        and not _fresh(p.get("broadcast_s"), facts)
    ]
    if deaf:
        problems.append(f"no broadcast beacon from {_names(deaf)} arrives here")
        fixes.append(f"let broadcasts to UDP port {port} in here (and out of theirs)")
    if problems:
        return Check("broadcast", FAIL, "; ".join(problems), "; ".join(dict.fromkeys(fixes)))
    heard = sorted({*by_broadcast, *probe.get("beacons", {})} - {(facts.get("daemon") or {}).get("node", "")})
    others = f"; answered or beaconed by {_names(heard)}" if heard else "; no other pmk heard on this LAN"
    return Check("broadcast", OK, f"broadcasts to {', '.join(targets)}:{port} leave and come back{others}")


def multicast_check(facts: dict[str, Any]) -> Check:
    disc, config = _discovery(facts), facts.get("config") or {}
    daemon = facts.get("daemon") or {}
    if (daemon and not disc.get("mdns")) or config.get("mdns") is False:
        return Check("multicast", OK, "mDNS is off by configuration (discovery.mdns)")
    mdns = facts.get("mdns")
    if mdns is None:
        return Check(
            "multicast", SKIP, "mDNS not asked", "not gathered: run pmk doctor itself (these facts came from elsewhere)"
        )
    if mdns.get("error"):
        return Check("multicast", WARN, f"cannot browse mDNS: {mdns['error']}", "see the error; mDNS needs UDP 5353")
    found = set(mdns.get("found", []))
    fix = f"let UDP port {MDNS_PORT} to and from {MDNS_GROUP} through (on every host), or rely on broadcast beacons"
    problems, unjudged = [], []
    me = daemon.get("node")
    registration = disc.get("mdns_registration")
    if me and str(registration).startswith("failed"):
        problems.append(f"this node could not register its mDNS record ({registration})")
    elif me and me not in found and registration == "pending":
        unjudged.append(f"this node's own record ({me}) is still being registered (zeroconf probes for ~2 s)")
    elif me and me not in found:
        problems.append(f"this node's own mDNS record ({me}) did not answer a query from this host")
    local = [p for p in _alive_peers(facts) if _same_subnet(facts, p.get("tcp")) and p["id"] not in found]
    # A peer met a moment ago may still be probing for its name: judged once it has had time to register.
    young = [p["id"] for p in local if (p.get("known_s") or 0) < MDNS_SETTLE_S]
    missing = [p["id"] for p in local if p["id"] not in young]
    if missing:
        problems.append(f"{_names(missing)} run pmk on this subnet but did not answer an mDNS query")
    if young:
        unjudged.append(f"{_names(young)} met less than {MDNS_SETTLE_S:g} s ago, not answering yet")
    if problems:
        return Check("multicast", FAIL, "mDNS: " + "; ".join(problems), fix, details=unjudged)
    others = sorted(found - {me})
    summary = f"mDNS answers: {_names(list(found))}" if found else "mDNS works here; no pmk answered"
    if unjudged:
        summary += f" (not judged yet: {'; '.join(unjudged)}; run pmk doctor again in a few seconds)"
    return Check("multicast", OK, summary, details=[f"found {o}" for o in others])


# -- firewall ------------------------------------------------------------------------------------

_VERDICT = re.compile(r"\b(drop|reject)\b")
_NFT_PORTS = re.compile(r"\b(udp|tcp|th)\s+dport\s+(\{[^}]*\}|\S+)")
_IPT_PORTS = re.compile(r"--dports?\s+(\S+)")


def _ports_in(text: str) -> set[int]:
    ports: set[int] = set()
    for part in re.split(r"[\s,{}]+", text):
        if not part:
            continue
        low, _, high = part.replace(":", "-").partition("-")
        if low.isdigit() and (high.isdigit() or not high):
            ports.update(range(int(low), int(high or low) + 1) if int(high or low) - int(low) < 70000 else [])
    return ports


def _blocks(rule: str, protocol_ports: list[tuple[str, int, str]], broadcasts: list[str]) -> list[str]:
    """What a dropping rule (one nft or iptables-save line) stands in the way of."""
    what: list[str] = []
    low = rule.lower()
    port_sets: list[tuple[str, set[int]]] = [(m.group(1), _ports_in(m.group(2))) for m in _NFT_PORTS.finditer(low)]
    for m in _IPT_PORTS.finditer(low):
        proto = "udp" if "-p udp" in low else "tcp" if "-p tcp" in low else "th"
        port_sets.append((proto, _ports_in(m.group(1))))
    for proto, ports in port_sets:
        for want_proto, port, label in protocol_ports:
            if port in ports and proto in (want_proto, "th"):
                what.append(label)
    if re.search(r"224\.0\.0\.(0/4|251)|pkttype multicast|--pkt-type multicast", low):
        what.append("multicast")
    if any(b in low for b in broadcasts) or re.search(r"255\.255\.255\.255|pkttype broadcast|--pkt-type broad", low):
        what.append("broadcast")
    matches = re.sub(r"\b(iifname|oifname|iif|oif|-i|-o)\s+\S+|\bcounter( packets \d+ bytes \d+)?|-[AI] \S+", "", low)
    matches = re.sub(r"\b(drop|reject)\b.*|-j\s+\S+.*|#.*", "", matches).strip()
    if not matches:
        what.append("everything")
    elif "numgen random" in low or "--mode random" in low:
        what.append("a share at random")
    return what


def firewall_findings(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules (nft ruleset, iptables-save) that drop what Pumpkin needs: beacons, mDNS, the data port, broadcast,
    multicast, or everything; and base chains whose policy is drop."""
    fw = facts.get("firewall") or {}
    port = _bcport(facts)
    wanted = [("udp", port, f"beacons (udp {port})"), ("udp", MDNS_PORT, f"mDNS (udp {MDNS_PORT})")]
    data = _data_port(facts)
    if data:
        wanted.append(("tcp", data, f"the data port (tcp {data})"))
    broadcasts = [
        i["broadcast"]
        for i in (facts.get("daemon") or {}).get("interfaces") or (facts.get("local") or {}).get("chosen") or []
        if i.get("broadcast")
    ]
    found: list[dict[str, Any]] = []
    table = chain = hook = ""
    for raw in (fw.get("nft") or "").splitlines():
        line = raw.strip()
        if m := re.match(r"table\s+(\S+\s+\S+)\s*\{", line):
            table, chain, hook = m.group(1), "", ""
        elif m := re.match(r"chain\s+(\S+)\s*\{", line):
            chain, hook = m.group(1), ""
        elif m := re.match(r"type\s+\S+\s+hook\s+(\S+)", line):
            hook = m.group(1)
            if re.search(r"policy\s+drop", line) and hook in ("input", "output", "forward", "prerouting"):
                found.append({"where": f"nft {table} chain {chain}", "rule": "policy drop", "blocks": ["policy"]})
        elif chain and _VERDICT.search(line) and not line.startswith(("type", "policy")):
            blocks = _blocks(line, wanted, broadcasts)
            if blocks:
                found.append({"where": f"nft {table} chain {chain} ({hook or 'no hook'})", "rule": line,
                              "blocks": blocks})  # fmt: skip
    for raw in (fw.get("iptables") or "").splitlines():
        line = raw.strip()
        if m := re.match(r":(INPUT|OUTPUT|FORWARD)\s+DROP", line):
            found.append({"where": f"iptables chain {m.group(1)}", "rule": "policy DROP", "blocks": ["policy"]})
        elif line.startswith("-A") and re.search(r"-j\s+(DROP|REJECT)", line):
            blocks = _blocks(line, wanted, broadcasts)
            if blocks:
                found.append({"where": f"iptables chain {line.split()[1]}", "rule": line, "blocks": blocks})
    return found


def firewall_check(facts: dict[str, Any]) -> Check:
    fw = facts.get("firewall")
    if fw is None:
        return Check(
            "firewall", SKIP, "rules not read", "not gathered: run pmk doctor itself (these facts came from elsewhere)"
        )
    if fw.get("nft") is None and fw.get("iptables") is None:
        why = fw.get("error") or "neither nft nor iptables-save could be run"
        fix = "run pmk doctor as root to read the firewall's rules"
        if "not installed" in why:
            fix = "where a firewall may run, install nftables (nft) and run pmk doctor as root to read its rules"
        return Check("firewall", SKIP, f"no rules read ({why})", fix)
    findings = firewall_findings(facts)
    rules = [f for f in findings if f["blocks"] != ["policy"]]
    policies = [f for f in findings if f["blocks"] == ["policy"]]
    details = [f"{f['where']}: {f['rule']}  -> blocks {', '.join(f['blocks'])}" for f in findings]
    if rules:
        what = sorted({b for f in rules for b in f["blocks"]})
        return Check(
            "firewall",
            FAIL,
            f"{len(rules)} rule(s) drop {', '.join(what)}: " + "; ".join(f"{f['where']}: {f['rule']}" for f in rules),
            "remove those rules, or accept Pumpkin's ports before them (e.g. nft insert rule ... udp dport "
            f"{{ {_bcport(facts)}, {MDNS_PORT} }} accept)",
            details,
        )
    if policies:
        return Check(
            "firewall",
            WARN,
            "chains that drop what they do not accept: " + ", ".join(f["where"] for f in policies),
            f"make sure they accept udp {_bcport(facts)} and {MDNS_PORT} (and multicast to {MDNS_GROUP})"
            + (f" and tcp {_data_port(facts)}" if _data_port(facts) else " and the data port (fix it: tcp_port)"),
            details,
        )
    return Check("firewall", OK, "no nftables or iptables rule here drops Pumpkin's ports, broadcast or multicast")


def data_port_check(facts: dict[str, Any]) -> Check:
    daemon = facts.get("daemon")
    if not daemon:
        return Check("data port", SKIP, "no daemon: no peers to reach", "start pmk, then run pmk doctor again")
    reach = facts.get("reach") or {}
    failed = {n: r for n, r in reach.items() if not r.get("ok")}
    problems = [
        f"{n}'s data port {r['endpoint']} does not answer from here ({r.get('error')})" for n, r in failed.items()
    ]
    stale = 2 * FRESH_HEARTBEATS * _heartbeat(facts) + 1.0
    heard = (daemon.get("hearing") or {}).get("nodes", {})
    unanswered = [
        p
        for p in daemon.get("peers", [])
        if p.get("state") == "unanswered"
        and max(p.get("known_s") or 0, (heard.get(p["id"]) or {}).get("heard_for_s") or 0) > stale
        and p["id"] not in failed
    ]
    ours = next((u for u in daemon.get("endpoints", []) if u.startswith("tcp://")), "")
    if unanswered:
        problems.append(
            f"{_names([p['id'] for p in unanswered])} greeted over ZeroMQ never answered: they cannot reach this "
            f"node's data port ({ours or 'no tcp endpoint'}) or it does not reach them"
        )
    if problems:
        return Check(
            "data port",
            FAIL,
            "; ".join(problems),
            f"open the data ports (TCP) between the hosts; give each daemon a fixed one (--endpoint.tcp_port, this "
            f"one's is {_data_port(facts) or 'chosen at random'}) so that a firewall can let it in",
        )
    if not reach:
        return Check("data port", OK, f"no peers to reach; this node listens on {ours or 'ipc:// only'}")
    return Check("data port", OK, f"data ports of {_names(list(reach))} answer from here")


def hearing_check(facts: dict[str, Any]) -> Check:
    daemon = facts.get("daemon")
    if not daemon:
        return Check("hearing", SKIP, "no daemon: nobody to ask who hears whom", "start pmk, then run pmk doctor again")
    if not _discovery(facts).get("beacons"):
        return Check("hearing", OK, "beacons are off: peers are kept by PINGs")
    alive = _alive_peers(facts)
    # A peer's first moments do not count: it asks for PINGs until our first beacon reaches it.
    settle = FRESH_HEARTBEATS * _heartbeat(facts) + 0.5
    known = [p for p in alive if (p.get("known_s") or 0) > 2 * settle]
    deaf_to_us = [
        p["id"]
        for p in known
        if _fresh(p.get("asks_pings_s"), facts) and (p.get("known_s") or 0) - (p.get("asks_pings_s") or 0) > settle
    ]
    local = [p for p in alive if _same_subnet(facts, p.get("tcp"))]
    unheard = [p["id"] for p in local if p in known and not _fresh(p.get("broadcast_s"), facts)]
    problems = []
    if deaf_to_us:
        they = "does" if len(deaf_to_us) == 1 else "do"
        problems.append(f"{_names(deaf_to_us)} {they} not hear this node's beacons (asking for PINGs instead)")
    if unheard:
        problems.append(f"this node does not hear the broadcasts of {_names(unheard)} (kept alive by PINGs)")
    if problems:
        return Check(
            "hearing",
            WARN,
            "one-way: " + "; ".join(problems),
            f"let UDP port {_bcport(facts)} broadcasts through both ways (see the broadcast and firewall checks); "
            "meanwhile PINGs keep such peers alive, at one message per heartbeat each",
        )
    remote = [p["id"] for p in alive if p not in local]
    tail = f"; {_names(remote)} on other subnets (direct beacons and PINGs)" if remote else ""
    return Check("hearing", OK, f"{len(local)} peer(s) on this subnet hear this node and are heard{tail}")


def clock_check(facts: dict[str, Any]) -> Check:
    offsets: dict[str, float] = {}
    nodes = ((facts.get("daemon") or {}).get("hearing") or {}).get("nodes", {})
    alive = {p["id"] for p in _alive_peers(facts)}
    for node, h in nodes.items():
        if h.get("offset_s") is not None and (node in alive or not alive):
            offsets[node] = float(h["offset_s"])
    for echo in (facts.get("probe") or {}).get("echoes", []):
        if echo.get("offset_s") is not None:
            offsets[echo["id"]] = float(echo["offset_s"])  # measured with the round trip: the better estimate
    me = (facts.get("daemon") or {}).get("node")
    offsets.pop(me or "", None)
    if not offsets:
        return Check("clock", OK, "no peer's clock to compare with")
    off = {n: o for n, o in offsets.items() if abs(o) > CLOCK_SKEW_WARN_S}
    worst = max(offsets.values(), key=abs)
    if off:
        said = ", ".join(f"{n} {o:+.1f} s" for n, o in sorted(off.items()))
        return Check(
            "clock",
            WARN,
            f"clocks differ from this host's by more than {CLOCK_SKEW_WARN_S:g} s: {said} (logs, traces and "
            "restarts across hosts disagree)",
            "run an NTP client (chrony or systemd-timesyncd) on every host; timedatectl shows whether it is synced",
        )
    return Check("clock", OK, f"{len(offsets)} peer clock(s) within {abs(worst):.3f} s of this host's")


def node_id_check(facts: dict[str, Any]) -> Check:
    daemon = facts.get("daemon") or {}
    me = daemon.get("node") or (facts.get("workdir") or {}).get("node_id") or ""
    problems = []
    for dup in (daemon.get("hearing") or {}).get("duplicates", []):
        problems.append(f"another daemon at {dup['endpoint'] or '?'} (found by {dup['via']}) uses this node's id")
    inc = daemon.get("incarnation")
    for echo in (facts.get("probe") or {}).get("echoes", []):
        if echo["id"] == me and inc and echo.get("incarnation") not in (0, inc):
            problems.append(f"a daemon at {echo['from']} answered a probe with this node's id")
    for other in (facts.get("workdir") or {}).get("same_id", []):
        problems.append(f"working directory {other} has the same node id")
    if problems:
        return Check(
            "node id",
            FAIL,
            f"{me}: " + "; ".join(dict.fromkeys(problems)),
            "give every daemon its own working directory (or --node-id); a copied working directory keeps its "
            "node-id file: delete that file in the copy and it gets a new id",
        )
    return Check("node id", OK, f"{me or '(not made yet)'}: no other daemon heard with this id")


def web_check(facts: dict[str, Any]) -> Check:
    web, config = facts.get("web") or {}, (facts.get("config") or {}).get("http") or {}
    daemon = facts.get("daemon") or {}
    if daemon:
        conf = daemon.get("web") or {}
        if not conf.get("enabled"):
            return Check("web", OK, "the page is off by configuration (http.enable)")
        url = web.get("url") or conf.get("url") or ""
        if not url:
            return Check("web", FAIL, "the page is on but not serving", "see the daemon's log for the web server")
        if not web.get("ok"):
            return Check("web", FAIL, f"{url} does not answer ({web.get('error')})", "see the daemon's log")
        wanted = int(conf.get("port") or 0)
        if wanted and _port(url.rstrip("/")) != wanted:
            return Check(
                "web",
                WARN,
                f"page at {url}: port {wanted} was taken",
                f"free port {wanted} (ss -ltnp 'sport = :{wanted}'), or set --http.port to a free one",
            )
        return Check("web", OK, f"page at {url} answers")
    if config.get("enable") is False:
        return Check("web", OK, "the page is off by configuration (http.enable)")
    port = config.get("port")
    if web.get("port_free") is False:
        return Check(
            "web",
            WARN,
            f"port {port} is in use by another program: a pmk started now serves its page on another port",
            f"free port {port} (ss -ltnp 'sport = :{port}'), or set --http.port to a free one",
        )
    return Check("web", OK, f"port {port} is free for the page" if port else "the page takes any free port")


def workdir_check(facts: dict[str, Any]) -> Check:
    wd = facts.get("workdir") or {}
    daemon = facts.get("daemon") or {}
    work = daemon.get("work") or {}
    if not wd.get("exists"):
        if wd.get("explicit"):
            return Check("workdir", FAIL, f"{wd.get('path')} does not exist", "check the --workdir path")
        return Check("workdir", OK, f"no working directory yet ({wd.get('path') or 'made at the first start'})")
    path = wd["path"]
    notes, fixes = [], []
    failed = work.get("failed") or wd.get("failed") or {}
    if sum(failed.values()):
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(failed.items()))
        notes.append(f"{sum(failed.values())} packet(s) failed ({kinds})")
        fixes.append(f"read {path}/failed/*.error; fix a .pkt and drop it into an rx folder, or delete it")
    if work.get("waiting"):
        notes.append(f"{work['waiting']} packet(s) wait for a consumer in {work.get('waiting_states', '?')} state(s)")
        fixes.append("start a seed that consumes their state (pmk stats: 'waiting'), or let them expire")
    if wd.get("pending"):
        notes.append(f"{wd['pending']} packet(s) in pending/ resume at the next start")
        fixes.append(f"to drop them instead, move {path}/pending/ away while no pmk runs there")
    unfinished = work.get("journal_unfinished") if daemon else wd.get("journal_batches")
    if unfinished and not daemon:
        notes.append(f"{unfinished} journal batch(es) unfinished: routed again at the next start")
        fixes.append(f"nothing to do: the next start finishes them ({path}/journal/)")
    if notes:
        return Check("workdir", WARN, f"{path}: " + "; ".join(notes), "; ".join(fixes))
    return Check("workdir", OK, f"{path}: nothing failed, waiting or pending")
