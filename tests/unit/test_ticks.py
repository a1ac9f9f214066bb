"""A daemon's grid of ticks: periodic work falls due on it, neither run twice nor skipped when a timer is late."""

from __future__ import annotations

import pytest

from pumpkin.ticks import Ticks


def test_work_due_a_period_on_falls_on_the_next_tick_whether_its_timer_was_early_or_late():
    ticks = Ticks(0.5, phase=0.1)
    assert ticks.after(10.1, 0.5) == pytest.approx(10.6)  # on time
    assert ticks.after(10.1004, 0.5) == pytest.approx(10.6)  # a little late: no drift
    assert ticks.after(10.0999, 0.5) == pytest.approx(10.6)  # a little early: not run again at once
    assert ticks.after(10.34, 0.5) == pytest.approx(10.6)  # 0.24 s late: still the next tick
    assert ticks.after(10.36, 0.5) == pytest.approx(11.1)  # past half a period: that tick is skipped, not run soon


def test_longer_periods_fall_on_the_same_grid_and_short_delays_are_not_aligned():
    ticks = Ticks(0.5, phase=0.1)
    assert ticks.after(10.1, 1.0) == pytest.approx(11.1)  # the sweep, every other tick
    assert ticks.after(10.2, 2.4) == pytest.approx(12.6)  # a paced beacon's gap, to the nearest tick
    assert ticks.after(10.2, 0.05) == pytest.approx(10.25)  # under half a period: as asked
    assert ticks.wait(10.2, 2.4) == pytest.approx(2.4)  # the sleep that lands on it
    for now in (10.0, 10.2, 10.35, 10.5999):
        assert now <= ticks.after(now, 0.25) <= now + 0.5  # the next tick at most: never in the past


def test_each_daemon_draws_a_phase_of_its_own_within_one_period():
    phases = {Ticks.random_phase(0.5).phase for _ in range(20)}
    assert len(phases) > 1 and all(0 <= p <= 0.5 for p in phases)
