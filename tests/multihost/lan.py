"""Hosts as network namespaces: two subnets, each a bridge in its own namespace, joined by a router.

    10.77.0.0/24 (switch X):  A .11   B .12   C .13   router R .1
    10.78.0.0/24 (switch Y):  D .14                   router R .1

Nothing is created in the root namespace except a guard route that makes any packet to the test subnets
sent from the root namespace fail at once (it would otherwise leave through eth0). Recipe and measured
gotchas: ../shared/notes/multihost-and-browser-testing.md.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field

from tests.netns import kill_inside, sh

SUBNETS = {"X": "10.77.0", "Y": "10.78.0"}
HOSTS = {"A": ("X", 11), "B": ("X", 12), "C": ("X", 13), "D": ("Y", 14)}


@dataclass
class Lan:
    """The namespaces of one test run (unique names, so parallel runs never collide)."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    guards: list[str] = field(default_factory=list)
    #: host -> (its switch, the last byte of its address); the four above unless a test needs others
    hosts: dict[str, tuple[str, int]] = field(default_factory=lambda: dict(HOSTS))

    def ns(self, name: str) -> str:
        """The namespace of host (or switch, or router) ``name``."""
        return f"pmk{self.tag}{name}"

    def ip(self, host: str) -> str:
        """Host ``host``'s address."""
        subnet, last = self.hosts[host]
        return f"{SUBNETS[subnet]}.{last}"

    def up(self) -> Lan:
        """Build the topology."""
        for sw in SUBNETS:
            sh("ip", "netns", "add", self.ns(sw))
            sh("ip", "-n", self.ns(sw), "link", "set", "lo", "up")
            sh("ip", "-n", self.ns(sw), "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.ns(sw), "link", "set", "br0", "up")
        r = self.ns("R")
        sh("ip", "netns", "add", r)
        sh("ip", "-n", r, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for sw, net in SUBNETS.items():
            self._plug(r, f"r{sw}", sw, f"{net}.1")
        for host, (sw, last) in self.hosts.items():
            ns = self.ns(host)
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            self._plug(ns, "eth0", sw, f"{SUBNETS[sw]}.{last}", port=f"v{host}")
            sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"{SUBNETS[sw]}.1")
        for net in SUBNETS.values():
            if sh("ip", "route", "add", "unreachable", f"{net}.0/24", check=False).returncode == 0:
                self.guards.append(f"{net}.0/24")
        return self

    def _plug(self, ns: str, ifname: str, sw: str, address: str, port: str | None = None) -> None:
        port = port or f"{ifname}{self.tag}"[:15]
        sh("ip", "-n", self.ns(sw), "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
        sh("ip", "-n", self.ns(sw), "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "brd", "+", "dev", ifname)
        sh("ip", "-n", ns, "link", "set", ifname, "up")

    def wrap(self, host: str, cmd: list[str]) -> list[str]:
        """``cmd`` as run on ``host``."""
        return ["ip", "netns", "exec", self.ns(host), *cmd]

    def cut(self, host: str) -> None:
        """Unplug ``host`` at the switch (its own routes stay as they are)."""
        sh("ip", "-n", self.ns(self.hosts[host][0]), "link", "set", f"v{host}", "down")

    def heal(self, host: str) -> None:
        """Plug ``host`` back in."""
        sh("ip", "-n", self.ns(self.hosts[host][0]), "link", "set", f"v{host}", "up")

    def block(self, host: str, what: str) -> None:
        """Drop ``what`` ('broadcast' or 'multicast') leaving ``host``, with nftables in its namespace."""
        rule = {
            # Not "meta pkttype broadcast": on the output hook a local sender's broadcast is not marked so.
            "broadcast": f"ip daddr {{ {', '.join(f'{net}.255' for net in SUBNETS.values())} }} drop",
            "multicast": "ip daddr 224.0.0.0/4 drop",
        }[what]
        chain = f" chain out {{\n type filter hook output priority 0; policy accept;\n  {rule}\n }}\n"
        nft = f"table ip pmkblock {{\n{chain}}}\n"
        subprocess.run(["ip", "netns", "exec", self.ns(host), "nft", "-f", "-"], input=nft, text=True, check=True)

    def lossy(self, percent: int) -> None:
        """Drop ``percent``% of the frames each switch delivers to a host, at random (nftables: no netem here).

        Every host-to-host path ends at a host's switch port, so each one, across the router too, loses
        ``percent``% each way (the router's own ports are spared, so that no path loses twice).
        """
        rule = f'oifname "v*" numgen random mod 100 < {int(percent)} drop'
        chain = f" chain swforward {{\n type filter hook forward priority 0; policy accept;\n  {rule}\n }}\n"
        nft = f"table bridge pmkloss {{\n{chain}}}\n"
        for sw in SUBNETS:
            subprocess.run(["ip", "netns", "exec", self.ns(sw), "nft", "-f", "-"], input=nft, text=True, check=True)

    def lossless(self) -> None:
        """Undo ``lossy``."""
        for sw in SUBNETS:
            sh("ip", "netns", "exec", self.ns(sw), "nft", "delete", "table", "bridge", "pmkloss", check=False)

    def nft(self, host: str, rules: str) -> None:
        """Add ``rules`` (chains, in a table ``ip pmkblock`` that ``reset`` removes) on ``host``: a host firewall."""
        text = f"table ip pmkblock {{\n{rules}\n}}\n"
        subprocess.run(self.wrap(host, ["nft", "-f", "-"]), input=text, text=True, check=True)

    def reset(self) -> None:
        """Between tests: kill what runs on the hosts, plug every host back in, drop nft rules."""
        for host in self.hosts:
            kill_inside(self.ns(host))
            self.heal(host)
            sh("ip", "netns", "exec", self.ns(host), "nft", "delete", "table", "ip", "pmkblock", check=False)
        self.lossless()

    def down(self) -> None:
        """Delete everything this run made."""
        for name in [*self.hosts, "R", *SUBNETS]:
            kill_inside(self.ns(name))
            sh("ip", "netns", "del", self.ns(name), check=False)
        for net in self.guards:
            sh("ip", "route", "del", "unreachable", net, check=False)


def nft_available() -> bool:
    """True when nftables can be used (the loss and partition tools)."""
    return (
        subprocess.run(["nft", "--version"], capture_output=True).returncode == 0
        if os.path.exists("/usr/sbin/nft")
        else False
    )
