"""Test helpers shared by every layer of the suite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from pumpkin import config
from tests.netns import exposure_reason

T = TypeVar("T")


def cfg(
    tmp_path: Path,
    name: str = "node",
    *,
    seeds: Sequence[Path] = (),
    taskdir: Path | None = None,
    rx: Path | None = None,
    tx: Path | None = None,
    token: str = "",
    discovery: bool = False,
    flags: Mapping[str, str] | None = None,
) -> config.Config:
    """The configuration of a daemon a test runs in its own process, in ``tmp_path / name``.

    ipc:// endpoints, HTTP on 127.0.0.1 port 0, and discovery off: beacons and mDNS reach every interface of
    the network namespace the test runs in, so a test turns it on only with ``discovery=True``, which fails
    unless that namespace leads nowhere (scripts/test.sh's). ``flags`` sets any other key (dotted name -> text).
    """
    if flags and "discovery.enable" in flags:
        raise ValueError("turn discovery on with cfg(..., discovery=True), which checks where it would reach")
    if discovery and (reason := exposure_reason()):
        raise AssertionError(f"discovery=True: {reason}")
    values = {
        "node.workdir": str(tmp_path / name),
        "endpoint.type": "zmq.IPC",
        "discovery.enable": "true" if discovery else "false",
        "http.host": "127.0.0.1",
        "http.port": "0",
        "http.token": token,
    }
    if seeds:
        values["node.seed"] = ",".join(map(str, seeds))
    if taskdir:
        values["node.taskdir"] = str(taskdir)
    if rx:
        values["rx.dir"] = str(rx)
    if tx:
        values["tx.dir"] = str(tx)
    return config.load(env={}, flags={**values, **(flags or {})})


def wait_until(predicate: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what or predicate}")
        time.sleep(interval_s)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]], timeout_s: float = 10.0, interval_s: float = 0.01, what: str = ""
) -> T:
    """``wait_until`` for code running on an event loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what or predicate}")
        await asyncio.sleep(interval_s)
