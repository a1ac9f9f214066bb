"""Facts about this host's network: interfaces, broadcast addresses, the address to advertise, host identity."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import netifaces

from .errors import ConfigError


@dataclass(frozen=True)
class Interface:
    """One IPv4 address of an interface."""

    name: str
    address: str
    broadcast: str | None
    netmask: str | None = None

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback

    @property
    def network(self) -> str:
        """The subnet, e.g. ``10.77.0.0/24`` (a /32 when the netmask is not known)."""
        return str(ipaddress.ip_network(f"{self.address}/{self.netmask or 32}", strict=False))


def interfaces() -> list[Interface]:
    """Every IPv4 address on every interface that is up, loopback included."""
    out = []
    for name in netifaces.interfaces():
        for entry in netifaces.ifaddresses(name).get(netifaces.AF_INET, []):
            addr = entry.get("addr")
            if not addr:
                continue
            bcast = entry.get("broadcast")
            if bcast is None and entry.get("netmask") and not ipaddress.ip_address(addr).is_loopback:
                net = ipaddress.ip_network(f"{addr}/{entry['netmask']}", strict=False)
                bcast = str(net.broadcast_address) if net.prefixlen < 31 else None
            out.append(Interface(name, addr, bcast, entry.get("netmask")))
    return out


def choose(interface: str = "", advertise: str = "") -> tuple[list[Interface], str]:
    """The interfaces to use for discovery and the address to announce to peers.

    ``interface`` limits discovery to one interface (by name); ``advertise`` overrides the announced
    address (containers, NAT). With neither, every non-loopback interface is used and the first one's
    address is announced; with none at all, 127.0.0.1.
    """
    found = interfaces()
    if interface:
        chosen = [i for i in found if i.name == interface]
        if not chosen:
            names = ", ".join(sorted({i.name for i in found})) or "none"
            raise ConfigError(f"config key discovery.interface: no IPv4 interface {interface!r} (have: {names})")
    else:
        chosen = [i for i in found if not i.is_loopback]
    if advertise:
        try:
            ipaddress.ip_address(advertise)
        except ValueError:
            raise ConfigError(f"config key discovery.advertise: {advertise!r} is not an IP address") from None
        address = advertise
    else:
        address = chosen[0].address if chosen else "127.0.0.1"
    return chosen, address


def host_key() -> str:
    """Identifies this host *and* network namespace: two nodes with the same key can use ipc://.

    Namespaces on one machine share the file system, so ipc:// would work between them, but they stand
    for separate hosts in tests and containers: the namespace is part of the key.
    """
    boot = Path("/proc/sys/kernel/random/boot_id")
    boot_id = boot.read_text().strip() if boot.exists() else "noboot"
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = "nonetns"
    return f"{boot_id}/{netns}"
