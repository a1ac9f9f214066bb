"""The web module's pure parts: rates from counters, data previews."""

from __future__ import annotations

from pumpkin.web import PREVIEW_CHARS, Rates, preview


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rates_are_counter_deltas_over_the_window():
    clock = Clock()
    rates = Rates(window_s=2.0, clock=clock)
    assert rates.rate("a") == 0.0
    for second in range(6):
        clock.now = second * 0.5
        rates.add({"a": second * 10, "b": 5})
    assert rates.rate("a") == 20.0  # 10 every 0.5 s
    assert rates.rate("b") == 0.0 and rates.rate("missing") == 0.0
    clock.now = 10.0
    rates.add({"a": 50, "b": 5})
    clock.now = 10.5
    rates.add({"a": 50, "b": 5})
    assert rates.rate("a") == 0.0  # the window slid past the last change: traffic stopped


def test_a_counter_going_back_is_not_a_negative_rate():
    clock = Clock()
    rates = Rates(clock=clock)
    rates.add({"a": 100})
    clock.now = 1.0
    rates.add({"a": 3})  # e.g. a seed restarted under the same name
    assert rates.rate("a") == 0.0


def test_previews_are_short_and_never_show_bytes():
    assert preview({"x": [1, 2]}) == '{"x":[1,2]}'
    assert preview(b"\x00\x01\x02") == "<3 bytes>"
    long = preview("y" * 1000)
    assert len(long) == PREVIEW_CHARS and long.endswith("…")
