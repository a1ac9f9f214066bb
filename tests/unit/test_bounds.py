"""Bounds on what peers can make a node hold or compute (issue 11): the page's seed index, the inbox's
connection book, expiry over many idle queues, the spool's open files."""

from __future__ import annotations

import random
import time

from pumpkin import tags
from pumpkin.spool import Spool
from pumpkin.transport import ConnectionBook
from pumpkin.waiting import WaitingRoom
from pumpkin.web import FEEDS_SHOWN, feeds_of
from tests.unit.test_waiting import pkt

T = tags.parse


def brute(known):
    feeds = {
        a: sorted(b for b, (ins, _) in known.items() if any(o.matches(i) for o in outs for i in ins))
        for a, (_, outs) in known.items()
    }
    fed_by = {n: sorted(a for a, fed in feeds.items() if n in fed) for n in known}
    return feeds, fed_by


def test_feeds_found_by_index_are_the_pairs_that_match():
    rnd = random.Random(7)
    states = ["A", "B", "C"]
    types = ["String", "Int", "*"]
    known = {}
    for n in range(60):
        ins = tuple(T(f"{rnd.choice(types)}:{rnd.choice(states)}") for _ in range(rnd.randint(0, 2)))
        outs = tuple(T(f"{rnd.choice(types)}:{rnd.choice(states)}") for _ in range(rnd.randint(0, 2)))
        known[f"s{n:02d}"] = (ins, outs)
    assert feeds_of(known) == brute(known)


def test_3000_seeds_that_all_feed_each_other_are_indexed_in_linear_time_with_lists_cut():
    # 3 nodes x 1,000 seeds re-announced every 2 s: the page's sampler compared every seed with every other (17 s
    # stalls); every one here consumes and emits the same state, the worst case for the lists' lengths.
    known = {f"n{k}-s{i:04d}": ((T("String:X"),), (T("String:X"),)) for k in range(3) for i in range(1000)}
    began = time.perf_counter()
    feeds, fed_by = feeds_of(known)
    took = time.perf_counter() - began
    print(f"\nfeeds_of, 3,000 seeds: {took * 1000:.0f} ms")
    assert all(len(v) == FEEDS_SHOWN for v in feeds.values()) and all(len(v) == FEEDS_SHOWN for v in fed_by.values())
    assert feeds["n0-s0000"] == sorted(known)[:FEEDS_SHOWN]
    assert took < 2.0  # ~0.1-0.3 s here; the quadratic comparison took ~10 s


def test_connections_past_the_total_or_per_address_limit_are_refused_and_counted():
    book = ConnectionBook(max_total=3, max_per_address=2)
    assert book.opened(10, "10.0.0.1") and book.opened(11, "10.0.0.1")
    assert not book.opened(12, "10.0.0.1")  # a third from one address
    assert book.opened(13, None)  # ipc://: not counted per address
    assert not book.opened(14, "10.0.0.2")  # a fourth in all
    assert dict(book.refused) == {"per_address": 1, "total": 1} and len(book) == 3
    book.closed(10)
    book.closed(12)  # refused, never counted: nothing to undo
    assert book.opened(15, "10.0.0.2") and book.busiest() == [("10.0.0.1", 1), ("10.0.0.2", 1)]
    assert (book.kept, book.peak, len(book)) == (4, 3, 3)  # 10, 11, 13, 15 let stay; 3 at once at most


def test_this_hosts_own_daemons_are_not_held_to_the_per_address_limit():
    book = ConnectionBook(max_total=100, max_per_address=2, own_addresses=frozenset({"10.0.0.7"}))
    assert all(book.opened(fd, "10.0.0.7") for fd in range(10))  # 5 daemons on our host, 2 streams each
    assert all(book.opened(fd, "127.0.0.1") for fd in range(10, 15))
    assert book.opened(20, "10.0.0.8") and book.opened(21, "10.0.0.8") and not book.opened(22, "10.0.0.8")
    assert dict(book.refused) == {"per_address": 1}


def test_an_accept_on_a_reused_descriptor_number_replaces_the_old_connection():
    book = ConnectionBook(max_total=10, max_per_address=10)
    book.opened(7, "10.0.0.1")
    book.opened(7, "10.0.0.2")  # 7's DISCONNECTED event is still to come: it was closed, the number reused
    assert len(book) == 1 and book.busiest() == [("10.0.0.2", 1)]


def test_expiry_looks_only_at_due_queues_and_in_parts(tmp_path):
    room = WaitingRoom(100_000, 10.0, Spool(tmp_path / "spool", 0))
    for n in range(20_000):  # 20,000 states with a packet each, waiting
        assert room.park(pkt(n, T(f"String:S{n}")), now=100.0 + n * 1e-4)
    began = time.perf_counter()
    for _ in range(100):
        assert room.expire(105.0) == []  # nothing due: a sweep costs nothing, however many queues wait
    idle = time.perf_counter() - began
    print(f"\n100 sweeps over 20,000 idle states: {idle * 1000:.1f} ms")
    assert idle < 0.05
    first = room.expire(200.0, limit=1000)
    assert [p.meta["n"] for p in first] == list(range(1000))  # the oldest first, at most the limit
    rest = room.expire(200.0)
    assert len(rest) == 19_000 and len(room) == 0 and room.counts() == {}


def test_the_spool_keeps_few_files_open_however_many_queues_spill(tmp_path):
    spool = Spool(tmp_path / "spool", 1 << 30, open_files_max=8)
    room = WaitingRoom(0, 60.0, spool)  # nothing in memory: every packet goes to disk
    for n in range(300):
        assert room.park(pkt(n, T(f"String:S{n % 100}")), now=1.0)
    assert spool.open_files <= 8
    out = room.expire(1000.0)
    assert sorted(p.meta["n"] for p in out) == list(range(300)) and spool.open_files <= 8
