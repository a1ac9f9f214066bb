"""Long-lived asyncio tasks that never die silently.

Each task is named. A crash is logged with its traceback and counted; an ordinary task is then started again
after a backoff (``RESTART_FIRST_S`` doubling up to ``RESTART_MAX_S``, back to the first once it ran for
``RESTART_RESET_S``), while a *critical* one (without it the daemon would lose data or go deaf) calls
``on_fatal`` instead, which stops the daemon with a clear error. A task that returns is done; one cancelled
(at a stop) is not restarted. ``pmk stats`` shows the counts (``snapshot``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

RESTART_FIRST_S = 0.1
RESTART_MAX_S = 10.0
RESTART_RESET_S = 60.0  # a task that ran this long before crashing starts again from the first backoff

Fatal = Callable[[str, BaseException], None]


class Spawn(Protocol):
    """How a component starts its long-lived tasks: ``Supervisor.spawn`` in a daemon."""

    def __call__(self, name: str, run: Callable[[], Awaitable[None]], critical: bool = False) -> asyncio.Task[None]: ...


def unsupervised(name: str, run: Callable[[], Awaitable[None]], critical: bool = False) -> asyncio.Task[None]:
    """A plain task: for a component used on its own (a test, a tool), where no supervisor watches."""

    async def once() -> None:
        await run()

    return asyncio.create_task(once(), name=name)


def log_crash(name: str, error: BaseException) -> None:
    """Report a crash where no supervisor counts it (a component used on its own): log it with its traceback."""
    log.error("%s crashed", name, exc_info=error)


class Supervisor:
    """Starts named tasks and restarts (or escalates) the ones that crash."""

    def __init__(self, on_fatal: Fatal, clock: Callable[[], float] = time.monotonic) -> None:
        """``on_fatal(name, error)``: a critical task crashed (the daemon stops)."""
        self.on_fatal = on_fatal
        self.clock = clock
        self.crashes: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, name: str, run: Callable[[], Awaitable[None]], critical: bool = False) -> asyncio.Task[None]:
        """Run ``run()`` as task ``name``, under supervision; the returned task ends when it does (or is cancelled)."""
        task = asyncio.create_task(self._supervise(name, run, critical), name=name)
        self.tasks[name] = task
        task.add_done_callback(lambda t: self.tasks.pop(name, None) if self.tasks.get(name) is t else None)
        return task

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]], critical: bool) -> None:
        delay = RESTART_FIRST_S
        while True:
            started = self.clock()
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point: no task dies silently
                self.crashes[name] += 1
                if critical:
                    log.critical("task %s crashed; it is critical: the daemon stops", name, exc_info=exc)
                    self.on_fatal(name, exc)
                    return
                if self.clock() - started >= RESTART_RESET_S:
                    delay = RESTART_FIRST_S
                log.error("task %s crashed; restarting it in %g s", name, delay, exc_info=exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_S)
            self.restarts[name] += 1

    def report(self, name: str, error: BaseException) -> None:
        """A callback outside any task (a timer, a short-lived helper task) crashed and carries on: log, count."""
        self.crashes[name] += 1
        log.error("%s crashed; it carries on", name, exc_info=error)

    async def cancel(self, name: str) -> None:
        """Cancel task ``name`` (if it runs) and wait for it to end."""
        task = self.tasks.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every task and wait for them to end (idempotent)."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def snapshot(self) -> dict[str, Any]:
        """Running tasks, and crashes and restarts per task, JSON-ready."""
        return {"running": sorted(self.tasks), "crashes": dict(self.crashes), "restarts": dict(self.restarts)}
