"""Network-namespace sandboxes, so that no daemon a test starts can send a packet off the machine.

``Sandbox`` is one namespace with a veth pair inside it: a private broadcast-capable LAN on which
several daemons see each other (../shared/notes/sandbox-host.md). Multi-host topologies build on the
same helpers (``tests/multihost``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def netns_unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (no daemon may discover peers outside one)"
    if not shutil.which("ip"):
        return "needs iproute2 ('ip') to create network namespaces"
    return None


def require_netns() -> None:
    """Skip the test when namespaces cannot be made; under CI=true that is a failure instead."""
    reason = netns_unavailable_reason()
    if reason:
        if CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output."""
    return subprocess.run(args, check=check, capture_output=True, text=True)


def kill_inside(ns: str) -> None:
    """Kill every process left in namespace ``ns`` (a namespace with processes outlives ``ip netns del``)."""
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


class Sandbox:
    """One namespace with a veth pair (10.79.0.1/24 on v0): a LAN of its own."""

    def __init__(self, address: str = "10.79.0.1/24") -> None:
        self.name = f"pmk{uuid.uuid4().hex[:8]}s"
        self.address = address

    def up(self) -> Sandbox:
        """Create the namespace."""
        ns = self.name
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        sh("ip", "-n", ns, "addr", "add", self.address, "brd", "+", "dev", "v0")
        sh("ip", "-n", ns, "link", "set", "v0", "up")
        sh("ip", "-n", ns, "link", "set", "v1", "up")
        sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "v0")
        return self

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` as run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def down(self) -> None:
        """Kill what runs inside and delete the namespace."""
        kill_inside(self.name)
        sh("ip", "netns", "del", self.name, check=False)
