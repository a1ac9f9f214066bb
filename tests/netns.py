"""Network-namespace sandboxes, so that no daemon a test starts can send a packet off the machine.

``Sandbox`` is one namespace with a veth pair inside it: a private broadcast-capable LAN on which
several daemons see each other (../shared/notes/sandbox-host.md). Multi-host topologies build on the
same helpers (``tests/multihost``). ``exposure_reason`` is the check behind tests/conftest.py's refusal to
run anywhere a packet could leave the machine (scripts/test.sh runs the suite in a namespace of its own).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Set to 1 on a disposable machine to run the suite in a network that may lead off it (README, "The two commands").
ANY_NETWORK = "PUMPKIN_TEST_ANY_NETWORK"


@functools.cache
def netns_unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here, or None when they can (tried once, then remembered)."""
    if not shutil.which("ip"):
        return "needs iproute2 ('ip') to create network namespaces"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (no daemon may discover peers outside one)"
    # Being uid 0 is not enough: in the user namespace scripts/test.sh makes for a normal user, `ip netns add`
    # works only where /run/netns could be given a private tmpfs, so ask the kernel itself.
    probe = f"pmk{uuid.uuid4().hex[:8]}p"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        why = made.stderr.strip().splitlines()[-1] if made.stderr.strip() else f"exit status {made.returncode}"
        return f"cannot create a network namespace here (ip netns add: {why})"
    sh("ip", "netns", "del", probe, check=False)
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


def exits() -> list[str] | None:
    """The interfaces of this network namespace that are up and may lead off it; None when ``ip`` cannot tell.

    Loopback leads nowhere, and so does a veth pair with both ends here (the private LAN of scripts/test.sh and
    ``Sandbox``); anything else that is up may reach the machine's own network, or through it the world.
    """
    try:
        shown = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, check=True)
        links = json.loads(shown.stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    names = {link["ifname"] for link in links}
    out: list[str] = []
    for link in links:
        if "UP" not in link.get("flags", ()) or link.get("link_type") == "loopback":
            continue
        # A veth whose peer is in another namespace carries link_netnsid; one whose peer is here names it in "link".
        private = (
            link.get("linkinfo", {}).get("info_kind") == "veth"
            and "link_netnsid" not in link
            and link.get("link") in names
        )
        if not private:
            out.append(link["ifname"])
    return out


def exposure_reason() -> str | None:
    """Why daemons that discover must not run in this network namespace, or None when they may.

    They may when nothing that is up leads off the namespace (a namespace scripts/test.sh made), or when
    PUMPKIN_TEST_ANY_NETWORK=1 says the machine is disposable. Comparing with PID 1's namespace would not do:
    its link is unreadable on our CI machine even as root, and inside scripts/test.sh's PID namespace PID 1 is
    the suite's own shell.
    """
    if os.environ.get(ANY_NETWORK) == "1":
        return None
    found = exits()
    if found == []:
        return None
    what = (
        f"interfaces that may lead off the machine are up here ({', '.join(found)})"
        if found
        else "cannot tell whether this network leads off the machine ('ip -j -d link' failed)"
    )
    return (
        f"refusing to run the tests: {what}; run scripts/test.sh, which confines the suite in a network namespace "
        f"of its own, or set {ANY_NETWORK}=1 on a disposable machine"
    )


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
