"""The web module's pure parts: rates from counters, data previews, the connection table, the Host check."""

from __future__ import annotations

import resource

import pytest

from pumpkin import web
from pumpkin.web import PREVIEW_CHARS, Connections, HostCheck, Rates, connection_limit, preview, split_host


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


def test_connections_idle_too_long_expire_but_busy_ones_never_do():
    clock = Clock()
    conns: Connections[str] = Connections(idle_s=10.0, clock=clock)
    assert conns.opened("a", limit=10) == [] and conns.next_expiry_s() == 10.0
    clock.now = 4.0
    conns.opened("b", limit=10)
    conns.busy("b")  # its headers arrived: a handler runs
    clock.now = 9.9
    assert conns.expired() == [] and conns.next_expiry_s() == pytest.approx(0.1)
    clock.now = 10.0
    assert conns.expired() == ["a"] and len(conns) == 1
    clock.now = 100.0
    assert conns.expired() == []  # b is busy (an event stream, say) however long it takes
    conns.idle("b")  # answered: the next request's headers must come within 10 s
    clock.now = 109.0
    assert conns.expired() == []
    clock.now = 110.0
    assert conns.expired() == ["b"] and len(conns) == 0
    conns.idle("b")
    conns.busy("gone")
    assert len(conns) == 0  # what was closed is not brought back


def test_past_the_limit_the_longest_idle_connection_goes_never_a_busy_one():
    clock = Clock()
    conns: Connections[str] = Connections(idle_s=10.0, clock=clock)
    for i, key in enumerate("abcd"):
        clock.now = float(i)
        assert conns.opened(key, limit=4) == []
    conns.busy("a")
    conns.busy("c")
    conns.idle("c")  # idle again, now the youngest
    clock.now = 5.0
    assert conns.opened("e", limit=4) == ["b"]
    assert conns.opened("f", limit=4) == ["d"]
    assert conns.opened("g", limit=4) == ["c"]
    assert conns.opened("h", limit=2) == ["e", "f", "g"]  # the limit fell (prlimit): down to it at once
    conns.busy("h")
    assert conns.opened("i", limit=2) == ["i"]  # every other one is busy: the newcomer is refused
    assert sorted(conns.open()) == ["a", "h"]
    conns.closed("a")
    assert conns.opened("j", limit=2) == []


def test_host_values_are_split_and_normalised():
    assert split_host("LocalHost.:7780") == ("localhost", 7780)
    assert split_host("127.0.0.1") == ("127.0.0.1", None)
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("[0:0::1]") == ("::1", None)
    assert split_host("fe80::1") == ("fe80::1", None)
    for bad in ("", ":80", "a:b", "a:99999", "[::1", "[::1]x", "host:٣"):
        with pytest.raises(ValueError):
            split_host(bad)


def test_the_host_check_accepts_this_servers_names_with_its_port_and_listed_names():
    check = HostCheck("127.0.0.1", 7780, allowed=("pumpkin.lan", "proxy.example:8080"))
    for ok in ("127.0.0.1:7780", "localhost:7780", "[::1]:7780", "LOCALHOST.:7780", None):
        assert check.allows(ok), ok
    for ok in ("pumpkin.lan", "pumpkin.lan:1", "Pumpkin.LAN:7780", "proxy.example:8080"):
        assert check.allows(ok), ok
    for bad in ("evil.test:7780", "127.0.0.1:7781", "localhost", "proxy.example:8081", "proxy.example", "x y"):
        assert not check.allows(bad), bad
    assert HostCheck("127.0.0.1", 80).allows("localhost")  # no port means 80
    assert HostCheck("127.0.0.1", 7780, allowed=("*",)).allows("evil.test")


def test_a_wildcard_bind_answers_to_this_machines_addresses_and_names_only():
    check = HostCheck("0.0.0.0", 7780, own=("10.0.0.5", "fe80::1", "myhost", "myhost.local"))
    for ok in ("10.0.0.5:7780", "[fe80::1]:7780", "myhost:7780", "myhost.local:7780", "localhost:7780"):
        assert check.allows(ok), ok
    assert not check.allows("0.0.0.0:7780") and not check.allows("evil.test:7780")
    assert HostCheck("192.168.1.5", 7780).allows("192.168.1.5:7780")


def test_the_connection_limit_is_256_or_a_quarter_of_the_open_file_limit(monkeypatch):
    for soft, limit in ((1 << 20, 256), (resource.RLIM_INFINITY, 256), (1024, 256), (256, 64), (12, 8)):
        monkeypatch.setattr(web.resource, "getrlimit", lambda _which, soft=soft: (soft, soft))
        assert connection_limit() == limit, soft
