"""Supervised tasks: a crash is logged, counted and restarted, or (critical) stops the daemon."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pumpkin import supervisor
from pumpkin.supervisor import Supervisor


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "RESTART_FIRST_S", 0.001)


def test_a_crashed_task_is_logged_counted_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("a bug in one turn")
        await asyncio.sleep(3600)

    async def main() -> dict:
        sup = Supervisor(lambda name, exc: pytest.fail("not critical"))
        sup.spawn("beat", loop)
        while len(runs) < 2:
            await asyncio.sleep(0.001)
        snap = sup.snapshot()
        await sup.stop()
        return snap

    with caplog.at_level(logging.ERROR, "pumpkin.supervisor"):
        snap = asyncio.run(main())
    assert snap == {"running": ["beat"], "crashes": {"beat": 1}, "restarts": {"beat": 1}}
    [record] = [r for r in caplog.records if "task beat crashed" in r.getMessage()]
    assert record.exc_info is not None and "a bug in one turn" in str(record.exc_info[1])


def test_a_crashed_critical_task_is_not_restarted_and_calls_on_fatal() -> None:
    fatal: list[tuple[str, str]] = []

    async def journal() -> None:
        raise OSError("disk gone")

    async def main() -> Supervisor:
        sup = Supervisor(lambda name, exc: fatal.append((name, str(exc))))
        await sup.spawn("journal", journal, critical=True)
        return sup

    sup = asyncio.run(main())
    assert fatal == [("journal", "disk gone")]
    assert sup.snapshot() == {"running": [], "crashes": {"journal": 1}, "restarts": {}}


def test_a_task_that_returns_or_is_cancelled_is_not_restarted() -> None:
    async def main() -> Supervisor:
        sup = Supervisor(lambda name, exc: pytest.fail("no crash"))
        await sup.spawn("once", lambda: asyncio.sleep(0), critical=True)
        sup.spawn("forever", lambda: asyncio.sleep(3600))
        await asyncio.sleep(0)
        await sup.stop()
        return sup

    sup = asyncio.run(main())
    assert sup.snapshot() == {"running": [], "crashes": {}, "restarts": {}}
