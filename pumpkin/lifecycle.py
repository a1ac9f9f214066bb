"""Components that start and stop in a written order (as nameko's container runs its extensions).

A ``Lifecycle`` holds its components in start order and the names in stop order: the two differ (a node says
goodbye to peers only after its last writes are durable, long after it stopped taking input), so both are
written down, each beside the reason for it, where the lifecycle is made. ``start`` starts each in turn; when one
raises, what has started so far (the failed one included: its ``stop`` ends what it got to) is stopped in stop
order and the error is raised again. ``stop`` stops every started component in stop order, once, even when
one of them raises (logged, then the next one); it is safe to call more than once and while ``start`` runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .errors import PumpkinError

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Component:
    """One part of the node: ``start`` brings it up; ``stop`` ends it (tolerating a start cut short)."""

    name: str
    start: Step = _nothing
    stop: Step = _nothing


class Lifecycle:
    """Starts ``components`` in their order and stops the started ones in ``stop_order``."""

    def __init__(self, components: Iterable[Component], stop_order: Iterable[str]) -> None:
        self.components = list(components)
        self.stop_order = list(stop_order)
        names = [c.name for c in self.components]
        if len(set(names)) != len(names) or sorted(names) != sorted(self.stop_order):
            raise PumpkinError(f"every component once in each order: starts {names}, stops {self.stop_order}")
        self.started: list[str] = []
        self.stopping = False

    async def start(self) -> None:
        """Start each component in order; a failure stops what started and is raised again. A ``stop`` during
        ``start`` ends it before the next component."""
        for component in self.components:
            if self.stopping:
                return
            self.started.append(component.name)  # before it runs: a stop meanwhile, or its failure, stops it too
            try:
                await component.start()
            except BaseException:
                log.error("Starting %s failed: stopping what started", component.name)
                await self.stop()
                raise

    async def stop(self) -> None:
        """Stop the started components in stop order (each once; a failing stop is logged and the next runs)."""
        self.stopping = True
        by_name = {c.name: c for c in self.components}
        for name in self.stop_order:
            if name not in self.started:
                continue
            self.started.remove(name)
            try:
                await by_name[name].stop()
            except Exception:  # noqa: BLE001 - the rest must still stop (and release the working directory)
                log.exception("Stopping %s failed; stopping the rest", name)
