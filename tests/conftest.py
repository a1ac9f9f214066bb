"""Fixtures for the whole suite: daemons in sandboxes, and a clean home for every test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.netns import Sandbox, exposure_reason, require_netns

ROOT = Path(__file__).resolve().parent.parent
# The console script users run, when the suite runs from an installed venv; the module otherwise.
_SCRIPT = Path(sys.executable).with_name("pmk")
PMK = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "pumpkin"]


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to start where a daemon's beacons or mDNS could leave the machine (see tests/netns.py)."""
    reason = None if config.option.help else exposure_reason()
    if reason:
        raise pytest.UsageError(reason)


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default working directories go to a per-test home, never the user's ~/.pumpkin."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    import pumpkin.workdir as wd

    monkeypatch.setattr(wd, "DEFAULT_ROOT", home / ".pumpkin" / "nodes")


class PmkProcess:
    """A real ``pmk`` process; its stdout and stderr are collected line by line as they arrive."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env, bufsize=1
        )
        self.out: list[str] = []
        self.out_at: list[float] = []  # when each stdout line arrived (monotonic)
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(s, b), daemon=True)
            for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self._readers:
            t.start()

    def _pump(self, stream, into: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            into.append(line.rstrip("\n"))
            if into is self.out:
                self.out_at.append(time.monotonic())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout_has(self, text: str) -> bool:
        return any(text in line for line in self.out)

    def stderr_has(self, text: str) -> bool:
        return any(text in line for line in self.err)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.out)

    def wait_for(self, text: str, timeout_s: float = 15.0, stream: str = "out") -> None:
        lines = self.out if stream == "out" else self.err
        try:
            wait_until(
                lambda: any(text in line for line in lines) or self.proc.poll() is not None,
                timeout_s,
                what=f"{text!r} from {' '.join(self.cmd)}",
            )
        except AssertionError:
            raise AssertionError(
                f"{text!r} not seen in {timeout_s} s\nstdout:\n"
                + "\n".join(self.out)
                + "\nstderr:\n"
                + "\n".join(self.err)
            ) from None
        if not any(text in line for line in lines):
            raise AssertionError(
                f"pmk exited with {self.proc.returncode} before printing {text!r}\nstdout:\n"
                + "\n".join(self.out)
                + "\nstderr:\n"
                + "\n".join(self.err)
            )

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._readers:
            t.join(2)
        return self.proc.returncode


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Remember each phase's outcome on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def dump_on_failure(request: pytest.FixtureRequest, procs: list[PmkProcess]) -> None:
    """Print what every pmk of a failed test said: a flaky failure in CI is then explained by its log."""
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    for p in procs:
        print(f"\n----- {' '.join(p.cmd[-8:])} (exit {p.proc.returncode})")
        print("\n".join(["stderr:", *p.err[-60:], "stdout:", *p.out[-20:]]))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A throwaway network namespace with a LAN of its own (skips without root, fails under CI)."""
    require_netns()
    box = Sandbox().up()
    try:
        yield box
    finally:
        box.down()


@pytest.fixture
def pmk(sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """Start real ``pmk`` processes inside the sandbox: ``pmk(*args, workdir=None)``; all stopped at the end."""
    started: list[PmkProcess] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

    def start(*args: str, workdir: Path | None = None, cwd: Path = ROOT) -> PmkProcess:
        """``workdir`` may be relative: to ``cwd``, where the process runs."""
        wd = workdir or tmp_path / f"node{len(started)}"
        p = PmkProcess(sandbox.wrap([*PMK, "--workdir", str(wd), *args]), env=env, cwd=cwd)
        p.workdir = cwd / wd  # type: ignore[attr-defined]
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
    dump_on_failure(request, started)
