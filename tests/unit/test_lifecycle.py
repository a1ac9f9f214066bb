"""Components start in their order and stop in the written stop order; a failed start unwinds what started."""

from __future__ import annotations

import asyncio

import pytest

from pumpkin.errors import PumpkinError
from pumpkin.lifecycle import Component, Lifecycle


def recording(names: list[str], log: list[str], broken: str = "") -> list[Component]:
    def step(what: str, name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            log.append(f"{what} {name}")
            if what == "start" and name == broken:
                raise RuntimeError("injected")

        return run

    return [Component(n, step("start", n), step("stop", n)) for n in names]


def test_starts_in_order_and_stops_in_the_stop_order_once():
    log: list[str] = []
    life = Lifecycle(recording(["a", "b", "c"], log), ["b", "c", "a"])

    async def main() -> None:
        await life.start()
        await life.stop()
        await life.stop()

    asyncio.run(main())
    assert log == ["start a", "start b", "start c", "stop b", "stop c", "stop a"]


def test_a_failed_start_stops_what_started_in_stop_order_and_raises():
    log: list[str] = []
    life = Lifecycle(recording(["a", "b", "c", "d"], log, broken="c"), ["d", "c", "b", "a"])
    with pytest.raises(RuntimeError, match="injected"):
        asyncio.run(life.start())
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]  # d never started


def test_a_failing_stop_is_logged_and_the_rest_still_stop(caplog):
    log: list[str] = []
    parts = recording(["a", "b"], log)

    async def broken() -> None:
        raise OSError("injected")

    life = Lifecycle([Component("a", parts[0].start, broken), parts[1]], ["a", "b"])

    async def main() -> None:
        await life.start()
        await life.stop()

    asyncio.run(main())
    assert log == ["start a", "start b", "stop b"]
    assert any("Stopping a failed" in r.getMessage() for r in caplog.records)


def test_a_stop_during_start_ends_it_before_the_next_component():
    log: list[str] = []
    life: Lifecycle

    async def stop_now() -> None:
        log.append("start b")
        await life.stop()

    parts = recording(["a", "b", "c"], log)
    life = Lifecycle([parts[0], Component("b", stop_now, parts[1].stop), parts[2]], ["c", "b", "a"])
    asyncio.run(life.start())
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_every_component_is_in_both_orders():
    with pytest.raises(PumpkinError):
        Lifecycle(recording(["a", "b"], []), ["a"])
