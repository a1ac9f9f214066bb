"""Fixtures for tests on real (network-namespace) hosts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import PMK, ROOT, PmkProcess, dump_on_failure
from tests.multihost.lan import Lan
from tests.netns import require_netns

SEEDS = Path(__file__).resolve().parent / "seeds"
HELLO = ROOT / "seeds" / "helloworld"

# Short timings so that a test sees liveness changes quickly; the defaults are what users get.
FAST = ["--discovery.heartbeat_s", "0.25", "--discovery.evasive_s", "0.75", "--discovery.expired_s", "2.5"]


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    """Four hosts on two subnets, shared by the tests of a module."""
    require_netns()
    net = Lan().up()
    try:
        yield net
    finally:
        net.down()


class Hosts:
    """Starts real pmk processes on the hosts of a Lan."""

    def __init__(self, lan: Lan, tmp: Path) -> None:
        self.lan = lan
        self.tmp = tmp
        self.procs: list[PmkProcess] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

    def pmk(self, host: str, *args: str, env: dict[str, str] | None = None) -> PmkProcess:
        wd = self.tmp / f"{host}{len(self.procs)}"
        p = PmkProcess(
            self.lan.wrap(host, [*PMK, "--workdir", str(wd), "--node-id", f"node{host}{len(self.procs)}", *args]),
            env={**self.env, **(env or {})},
        )
        p.workdir = wd  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def client(self, host: str, *args: str) -> str:
        import subprocess

        r = subprocess.run(self.lan.wrap(host, [*PMK, *args]), capture_output=True, text=True, timeout=20, env=self.env)
        assert r.returncode == 0, r.stderr
        return r.stdout


def collected(collector: PmkProcess) -> dict[int, list[str]]:
    """What ``seeds/collect.py`` printed so far: each packet's number, and the nodes that handled it (one per
    arrival: two entries are a packet that arrived twice)."""
    seen: dict[int, list[str]] = {}
    for line in list(collector.out):
        if line.startswith("got "):
            _, n, _, by = line.split()
            seen.setdefault(int(n), []).append(by)
    return seen


@contextmanager
def running(lan: Lan, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hosts]:
    """``Hosts`` on ``lan``; every pmk it started is stopped at the end, and their output shown if the test failed."""
    h = Hosts(lan, tmp_path)
    try:
        yield h
    finally:
        for p in h.procs:
            p.stop()
        dump_on_failure(request, h.procs)


@pytest.fixture
def hosts(lan: Lan, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hosts]:
    """Start pmk on hosts A-D; everything is stopped and the network restored after the test."""
    try:
        with running(lan, tmp_path, request) as h:
            yield h
    finally:
        lan.reset()
