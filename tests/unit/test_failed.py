"""The failed/ area's bounds: a disk quota, and raw bytes kept cut to their head."""

from __future__ import annotations

import base64
import logging

from pumpkin import tags
from pumpkin.failed import RAW_KEEP_BYTES, REMEASURE_S, FailedStore
from pumpkin.packet import Packet


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pkt(n: int, size: int = 1000) -> Packet:
    return Packet(f"5eed0000:c0ffee00:1:{n:x}", tags.parse("String:A"), "x" * size, [], 60, 1000.0)


def folder_bytes(store: FailedStore) -> int:
    return sum(f.stat().st_size for f in store.root.iterdir())


def test_past_the_quota_failures_are_counted_and_let_go_of_but_not_written(tmp_path, caplog):
    clock = Clock()
    store = FailedStore(tmp_path / "failed", max_bytes=10_000, clock=clock)
    released: list[int] = []
    with caplog.at_level(logging.DEBUG, logger="pumpkin.failed"):
        for n in range(30):
            store.keep(pkt(n), "seed-error", f"seed raised on {n}", then=lambda n=n: released.append(n))
    assert released == list(range(30))  # every packet let go of, kept or not (no event loop: at once)
    kept = store.counts["seed-error"] - store.not_kept["seed-error"]
    assert store.counts["seed-error"] == 30 and 5 <= kept < 10
    assert len(list(store.root.glob("*.pkt"))) == kept
    assert store.used_bytes == folder_bytes(store) <= 10_000
    full = [r for r in caplog.records if r.getMessage().startswith("failed/ is full")]
    assert len(full) == 1 and full[0].levelno == logging.ERROR  # said once, loudly
    assert [r["file"] is None for r in store.recent] == [False] * kept + [True] * (30 - kept)


def test_removing_files_makes_room_again_once_the_folder_is_measured_again(tmp_path, caplog):
    clock = Clock()
    store = FailedStore(tmp_path / "failed", max_bytes=5_000, clock=clock)
    for n in range(10):
        store.keep(pkt(n), "seed-error", "boom")
    before = store.not_kept["seed-error"]
    assert before > 0
    for f in store.root.iterdir():
        f.unlink()
    store.keep(pkt(100), "seed-error", "boom")
    assert store.not_kept["seed-error"] == before + 1  # not measured again yet: still full
    clock.now = REMEASURE_S + 1
    store.keep(pkt(101), "seed-error", "boom")  # measures again (no loop: at once), and is kept
    store.keep(pkt(102), "seed-error", "boom")
    assert store.not_kept["seed-error"] == before + 1
    assert len(list(store.root.glob("*.pkt"))) == 2
    assert any("failed/ has room again" in r.getMessage() for r in caplog.records)


def test_what_is_already_there_counts_against_the_quota_from_the_start(tmp_path):
    root = tmp_path / "failed"
    root.mkdir()
    (root / "old.raw").write_bytes(b"x" * 9_000)
    store = FailedStore(root, max_bytes=10_000)
    assert store.measure() == 9_000
    store.keep(pkt(1, size=2_000), "seed-error", "boom")
    assert store.not_kept["seed-error"] == 1


def test_a_quota_of_zero_keeps_nothing_and_counts_everything(tmp_path):
    store = FailedStore(tmp_path / "failed", max_bytes=0)
    store.keep_raw([b"junk"], "bad-packet", "malformed")
    assert store.counts["bad-packet"] == store.not_kept["bad-packet"] == 1
    assert not list((tmp_path / "failed").glob("*.raw"))


def test_raw_bytes_are_kept_cut_to_their_head_with_their_size_noted(tmp_path):
    store = FailedStore(tmp_path / "failed")
    frames = [b"A" * 1000, b"B" * RAW_KEEP_BYTES, b"C" * 5000]
    path = store.keep_raw(frames, "bad-packet", "malformed packet from the network")
    kept = [base64.b64decode(line) for line in path.read_bytes().splitlines()]
    assert kept == [b"A" * 1000, b"B" * (RAW_KEEP_BYTES - 1000)]
    total = 1000 + RAW_KEEP_BYTES + 5000
    reason = path.with_suffix(".error").read_text().splitlines()[0]
    assert reason == f"malformed packet from the network ({total} bytes; the first {RAW_KEEP_BYTES} kept)"
    # A small one is kept whole, its reason as given.
    small = store.keep_raw([b"PMK1", b"{broken"], "bad-packet", "header is not JSON")
    assert small.with_suffix(".error").read_text() == "header is not JSON\n(bad-packet)\n"  # reason, then kind
    assert len(small.read_bytes().splitlines()) == 2


def test_a_crash_in_the_background_fsync_is_reported_and_the_others_still_run(tmp_path):
    import asyncio

    reported: list[str] = []
    store = FailedStore(tmp_path / "failed", report=lambda what, error: reported.append(what))
    called: list[int] = []

    def broken() -> None:
        raise RuntimeError("injected")

    async def main() -> None:
        store.keep(pkt(1), "seed-error", "one", then=broken)
        store.keep(pkt(2), "seed-error", "two", then=lambda: called.append(2))
        await store.close()
        store.keep(pkt(3), "seed-error", "three", then=lambda: called.append(3))
        await store.close()

    asyncio.run(main())
    assert reported == ["failed/ fsync callback"] and called == [2, 3]
