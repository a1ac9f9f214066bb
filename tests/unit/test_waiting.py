"""The waiting room and its spool: FIFO per (state, seed) across memory and disk, quota, expiry, drain."""

from __future__ import annotations

import random
import time
from pathlib import Path

from pumpkin import tags
from pumpkin.custody import Custody
from pumpkin.packet import Hop, Packet
from pumpkin.spool import Spool
from pumpkin.waiting import READ_BACK_CHUNK, WaitingRoom

T = tags.parse
A, B = T("String:A"), T("String:B")


def pkt(n: int, tag: tags.StateTag = A, data: object = None) -> Packet:
    return Packet(
        f"5eed0000:c0ffee00:1:{n:x}",
        tag,
        n if data is None else data,
        [Hop("make", "node-1", str(tag), 1.5)],
        60,
        1000.0,
        {"n": n},
    )


def room(tmp_path: Path, memory: int = 3, quota: int = 1 << 20, expiry: float = 10.0, segment: int = 400):
    spool = Spool(tmp_path / "spool", quota, segment_bytes=segment)
    return WaitingRoom(memory, expiry, spool), spool


def files(spool: Spool) -> list[Path]:
    return sorted(spool.folder.iterdir())


def test_the_spool_folder_is_emptied_when_made(tmp_path):
    (tmp_path / "spool" / "sub").mkdir(parents=True)
    (tmp_path / "spool" / "000001-000000.jsonl").write_text("junk from a crash\n")
    spool = Spool(tmp_path / "spool", 100)
    assert files(spool) == [] and spool.used_bytes == 0


def test_a_queue_stays_first_in_first_out_across_spill_and_read_back(tmp_path):
    w, spool = room(tmp_path)
    for n in range(20):
        assert w.park(pkt(n), now=float(n), seed="s")
    assert w.in_memory == 3 and len(w) == w.waiting_for(A, "s") == 20 and w.busy(A) == 20
    assert len(files(spool)) > 2  # small segments: several of them
    assert 0 < sum(f.stat().st_size for f in files(spool)) <= spool.used_bytes  # the rest is still buffered
    got = [p.data for p in w.take(A, "s", 2)]
    w.park(pkt(20), now=20.0, seed="s")  # memory has room again, but the queue has spilled: it goes last
    for limit in (1, 5, 4, 100):
        got += [p.data for p in w.take(A, "s", limit)]
        assert w.in_memory <= 3
    assert got == list(range(21))
    assert len(w) == 0 and w.counts() == {} and not w.any_busy() and w.tags_for("s") == []
    assert files(spool) == [] and spool.used_bytes == 0


def test_memory_freed_is_filled_again_from_the_spool_in_order(tmp_path):
    w, spool = room(tmp_path, memory=READ_BACK_CHUNK * 2, segment=1 << 20)
    for n in range(READ_BACK_CHUNK * 5):
        w.park(pkt(n), 0.0, "s")
    assert w.in_memory == READ_BACK_CHUNK * 2
    assert [p.data for p in w.take(A, "s", READ_BACK_CHUNK - 1)] == list(range(READ_BACK_CHUNK - 1))
    assert w.in_memory == READ_BACK_CHUNK + 1  # less than a chunk free: not read back yet
    w.take(A, "s", 1)
    assert w.in_memory == READ_BACK_CHUNK * 2  # a chunk free: filled again
    assert [p.data for p in w.peek(A, 3)] == [READ_BACK_CHUNK, READ_BACK_CHUNK + 1, READ_BACK_CHUNK + 2]


def test_queues_of_each_state_and_seed_are_apart(tmp_path):
    w, _ = room(tmp_path, memory=2)
    keys = [(A, "s1"), (A, "s2"), (A, None), (B, "s1")]
    for n in range(40):
        tag, seed = keys[n % 4]
        w.park(pkt(n, tag), float(n), seed)
    assert w.counts() == {str(A): 30, str(B): 10} and w.busy(A) == 20 and w.busy(B) == 10
    assert sorted(map(str, w.tags_for("s1"))) == [str(A), str(B)] and w.tags_for("s2") == [A]
    assert [p.data for p in w.take(A, "s2", 100)] == list(range(1, 40, 4))
    assert [p.data for p in w.take(B, "s1", 100)] == list(range(3, 40, 4))
    released = list(w.release(lambda tag: tag == A))
    assert [(p.data, s) for p, s in released if s == "s1"] == [(n, "s1") for n in range(0, 40, 4)]
    assert [(p.data, s) for p, s in released if s is None] == [(n, None) for n in range(2, 40, 4)]
    assert len(w) == 0


def test_park_refuses_only_once_memory_and_the_quota_are_used_up(tmp_path):
    w, spool = room(tmp_path, memory=2, quota=1000)
    parked = 0
    while w.park(pkt(parked), 0.0):
        parked += 1
    assert 2 < parked < 10 and len(w) == parked  # a refused packet is not counted
    assert spool.used_bytes <= 1000 and "of its 1000 bytes on disk (routing.spool_max_bytes)" in w.why_full()
    assert [p.data for p, _ in w.release(lambda tag: True)] == list(range(parked))
    assert spool.used_bytes == 0 and w.park(pkt(99), 0.0)  # the quota is free again


def test_with_the_quota_used_up_a_packet_still_takes_room_freed_in_memory(tmp_path):
    w, spool = room(tmp_path, memory=READ_BACK_CHUNK + 10, quota=1200)
    for n in range(READ_BACK_CHUNK + 10):
        w.park(pkt(n, B), 0.0, "t")
    spilled = 0
    while w.park(pkt(1000 + spilled), 0.0, "s"):
        spilled += 1
    assert 0 < spilled < 10
    w.take(B, "t", 10)
    assert w.in_memory == READ_BACK_CHUNK and w.waiting_for(A, "s") == spilled  # less than a chunk: not read back
    assert w.park(pkt(2000), 0.0, "s")  # the spool refuses it: its queue is read back, and it follows in memory
    assert spool.used_bytes == 0 and w.in_memory == READ_BACK_CHUNK + spilled + 1
    assert [p.data for p in w.take(A, "s", 100)] == [*range(1000, 1000 + spilled), 2000]


def test_with_spilling_off_a_full_memory_refuses(tmp_path):
    for w in (WaitingRoom(2, 10.0), WaitingRoom(2, 10.0, Spool(tmp_path / "spool", 0))):
        assert w.park(pkt(0), 0.0) and w.park(pkt(1, B), 0.0, "s")
        assert not w.park(pkt(2), 0.0) and len(w) == 2  # across states: memory is one bound
        assert "2 packets already wait in memory" in w.why_full() and "spilling to disk is off" in w.why_full()


def test_spooled_packets_expire_oldest_first(tmp_path):
    w, spool = room(tmp_path, memory=2, expiry=10.0)
    for n in range(6):
        w.park(pkt(n), float(n), "s")
    w.park(pkt(6, B), 0.0)
    assert [p.data for p in w.expire(9.5)] == []
    assert sorted(p.data for p in w.expire(13.0)) == [0, 1, 2, 3, 6]  # 0 and 1 in memory, 2 and 3 spooled
    assert w.waiting_for(A, "s") == 2 and len(w) == 2 and w.counts() == {str(A): 2}
    assert [p.data for p in w.peek(A)] == [4, 5]
    assert [p.data for p in w.expire(100.0)] == [4, 5]
    assert len(w) == 0 and files(spool) == [] and spool.used_bytes == 0


def test_a_whole_queue_on_disk_expires_and_is_taken(tmp_path):
    w, _ = room(tmp_path, memory=1)
    w.park(pkt(0, B), 0.0)  # takes all the memory: every packet of A goes to disk
    for n in range(1, 5):
        w.park(pkt(n), float(n), "s")
    assert w.in_memory == 1 and w.waiting_for(A, "s") == 4
    assert [p.data for p in w.expire(11.5)] == [0, 1]
    assert [p.data for p in w.take(A, "s", 2)] == [2, 3]
    assert w.in_memory == 1 and [p.data for p in w.peek(A)] == [4]


def test_packets_come_back_from_disk_whole(tmp_path):
    w, _ = room(tmp_path, memory=1)
    w.park(pkt(0), 0.0)
    sent = [
        pkt(1, data=bytes(range(256)) * 3),
        pkt(2, data={"text": "h\u00e9llo \u2603", "list": [1, 2.5, None, True], "nested": {"a": []}}),
        pkt(3, data=b""),
    ]
    custody = Custody(lambda: None)  # a live object: it cannot go to disk, and must come back on its packet
    sent[0].custody = sent[2].custody = custody
    for p in sent:
        w.park(p, 0.0, "s")
    assert w.in_memory == 1 and w.peek(A, 10)[1:] == sent
    back = w.take(A, "s", 3)
    assert back == sent and isinstance(back[0].data, bytes) and isinstance(back[0].trail[0], Hop)
    assert [p.custody for p in back] == [custody, None, custody]


def test_release_takes_out_whole_states_at_once_spooled_packets_too(tmp_path):
    w, spool = room(tmp_path, memory=2)
    for n in range(6):
        w.park(pkt(n, A if n % 3 else B), float(n), "s" if n % 2 else None)
    out = w.release(lambda tag: tag == A)  # nothing iterated: it is a list, and they are gone already
    assert [(p.data, s) for p, s in out] == [(1, "s"), (5, "s"), (2, None), (4, None)]
    assert w.counts() == {str(B): 2} and w.tags_for("s") == [B] and w.waiting_for(B, "s") == 1
    assert [p.data for p in w.take(B, "s", 5)] == [3] and spool.used_bytes == 0


def test_hand_out_is_lazy_and_a_packet_that_comes_back_keeps_its_place(tmp_path):
    w, spool = room(tmp_path, memory=2)
    for n in range(10):
        w.park(pkt(n), float(n), "s")
    handed = w.hand_out(lambda tag: True)
    first, seed = next(handed)
    assert first.data == 0 and seed == "s" and len(w) == 9
    second, _ = next(handed)
    w.park(second, now=50.0, seed="s")  # no room for it after all: back to the front, and its turn ends
    assert list(handed) == []
    assert len(w) == 9 and [p.data for p in w.peek(A, 3)] == [1, 2, 3]
    assert [p.data for p in w.expire(11.5)] == [1]  # it kept its expiry (1 + 10), not 50 + 10
    assert [p.data for p in w.take(A, "s", 100)] == list(range(2, 10)) and spool.used_bytes == 0


def test_hand_out_parks_elsewhere_without_loading_the_whole_backlog(tmp_path):
    w, _ = room(tmp_path, memory=10, segment=1 << 20)
    for n in range(1000):
        w.park(pkt(n), 0.0)
    highest = 0
    for packet, _ in w.hand_out(lambda tag: True):
        w.park(packet, 1.0, "consumer")  # what the router does when the new consumer has no room
        highest = max(highest, w.in_memory)
    assert highest <= 10 and w.waiting_for(A, None) == 0 and w.waiting_for(A, "consumer") == 1000
    assert [p.data for p in w.take(A, "consumer", 2000)] == list(range(1000))


def test_drain_hands_out_everything_in_batches(tmp_path):
    w, spool = room(tmp_path, memory=100, segment=1 << 16)
    for n in range(2500):
        w.park(pkt(n, A if n % 5 else B), 0.0, "s" if n % 2 else None)
    assert w.in_memory == 100
    batches = w.drain(batch=1000)
    first = next(batches)
    assert len(first) == 1000 and len(w) == 1500
    rest = list(batches)
    assert [len(b) for b in rest] == [1000, 500] and len(w) == 0 and w.counts() == {} and not w.any_busy()
    out = [(p.data, s) for b in [first, *rest] for p, s in b]
    for key_of in ((A, None), (A, "s"), (B, None), (B, "s")):
        expected = [n for n in range(2500) if (A if n % 5 else B, "s" if n % 2 else None) == key_of]
        assert [n for n, s in out if (A if n % 5 else B, s) == key_of] == expected
    assert files(spool) == [] and spool.used_bytes == 0 and w.in_memory == 0


class Model:
    """The waiting room without memory or disk: one list per (state, seed)."""

    def __init__(self, expiry: float) -> None:
        self.expiry = expiry
        self.queues: dict[tuple[tags.StateTag, str | None], list[tuple[float, int]]] = {}

    def park(self, n: int, tag: tags.StateTag, seed: str | None, now: float) -> None:
        self.queues.setdefault((tag, seed), []).append((now + self.expiry, n))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (tag, _), q in self.queues.items():
            if q:
                out[str(tag)] = out.get(str(tag), 0) + len(q)
        return out


def check(w: WaitingRoom, m: Model, spool: Spool, memory: int) -> None:
    assert w.counts() == m.counts()
    assert len(w) == sum(len(q) for q in m.queues.values())
    assert w.in_memory <= memory
    for tag in (A, B):
        assert w.busy(tag) == sum(len(q) for (t, s), q in m.queues.items() if t == tag and s is not None)
        for seed in (None, "s1", "s2"):
            assert w.waiting_for(tag, seed) == len(m.queues.get((tag, seed), []))
    for seed in ("s1", "s2"):
        assert set(w.tags_for(seed)) == {t for (t, s), q in m.queues.items() if s == seed and q}
    assert w.any_busy() == any(q for (_, s), q in m.queues.items() if s is not None)
    assert sum(f.stat().st_size for f in spool.folder.iterdir()) <= spool.used_bytes  # the rest is buffered


def test_random_operations_agree_with_a_simple_model(tmp_path):
    rng = random.Random(10)
    memory, expiry = 7, 30.0
    w, spool = room(tmp_path, memory=memory, expiry=expiry, segment=600)
    m = Model(expiry)
    keys = [(A, None), (A, "s1"), (A, "s2"), (B, None), (B, "s1")]
    now, made = 0.0, 0
    for _ in range(3000):
        now += rng.random()
        op = rng.random()
        if op < 0.55:
            tag, seed = rng.choice(keys)
            assert w.park(pkt(made, tag), now, seed)
            m.park(made, tag, seed, now)
            made += 1
        elif op < 0.75:
            tag, seed = rng.choice([k for k in keys if k[1] is not None])
            limit = rng.randint(1, 6)
            q = m.queues.get((tag, seed), [])
            assert [p.data for p in w.take(tag, seed, limit)] == [n for _, n in q[:limit]]
            del q[:limit]
        elif op < 0.82:
            tag = rng.choice([A, B])
            # The model's answer: per queue, in order, until a packet comes back (then the rest stay).
            for packet, seed in w.hand_out(lambda t, tag=tag: t == tag):
                q = m.queues[(tag, seed)]
                assert packet.data == q[0][1]
                entry = q.pop(0)
                fate = rng.random()
                if fate < 0.3:  # no room for it: it comes back, and its queue's turn ends
                    w.park(packet, now, seed)
                    q.insert(0, entry)
                elif fate < 0.6:  # it goes to a busy seed: a queue of its own
                    to = rng.choice([s for s in ("s1", "s2") if s != seed])
                    w.park(packet, now, to)
                    m.park(packet.data, tag, to, now)
        elif op < 0.9:
            expired = w.expire(now)
            gone = [n for q in m.queues.values() for e, n in q if e <= now]
            assert sorted(p.data for p in expired) == sorted(gone)
            for key, q in m.queues.items():
                m.queues[key] = [(e, n) for e, n in q if e > now]
        else:
            tag = rng.choice([A, B])
            expiry = {n: e for (t, _), q in m.queues.items() if t == tag for e, n in q}
            oldest = sorted(expiry.values())[:5]  # by expiry alone: packets parked in one hand-out tie
            assert [expiry[p.data] for p in w.peek(tag, 5)] == oldest
        check(w, m, spool, memory)
    assert spool.used_bytes > 0  # it did spill on the way
    drained = [n for batch in w.drain(batch=50) for n in (p.data for p, _ in batch)]
    assert sorted(drained) == sorted(n for q in m.queues.values() for _, n in q)
    assert len(w) == 0 and spool.used_bytes == 0


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_memory_stays_bounded_while_200000_packets_wait(tmp_path):
    memory = 10_000
    w, spool = room(tmp_path, memory=memory, quota=1 << 30, segment=4 << 20)
    before = rss_kb()
    started = time.perf_counter()
    highest = 0
    for n in range(200_000):
        w.park(Packet(f"5eed0000:c0ffee00:1:{n:x}", A, {"i": n}, [], 60, 1000.0), 0.0, "s")
        highest = max(highest, w.in_memory)
    parked_s = time.perf_counter() - started
    grown = rss_kb() - before
    assert highest == memory and len(w) == 200_000 and spool.used_bytes > 0
    started = time.perf_counter()
    n = 0
    while batch := w.take(A, "s", 1000):
        assert [p.data["i"] for p in batch] == list(range(n, n + len(batch)))
        n += len(batch)
        assert w.in_memory <= memory
    assert n == 200_000 and spool.used_bytes == 0
    print(
        f"\n200,000 packets waiting, {memory} in memory: RSS grew {grown / 1024:.1f} MiB, spool held "
        f"{(200_000 - memory)} packets; park {parked_s / 200_000 * 1e6:.2f} us/packet, "
        f"take {(time.perf_counter() - started) / 200_000 * 1e6:.2f} us/packet"
    )
