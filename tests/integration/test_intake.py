"""The intake journal, the rx folder and the tx folder inside one process: crashes are simulated by
abandoning a journal or daemon without its orderly stop."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import sys
import threading
from pathlib import Path

import aiohttp
import pytest

from pumpkin import dropdir, loader, tags
from pumpkin.custody import Custody
from pumpkin.daemon import Daemon
from pumpkin.dropdir import DropDir
from pumpkin.journal import Entry, Journal, Source, Unwritable
from pumpkin.packet import IdMaker, Packet
from pumpkin.txdir import TxWriter
from tests.helpers import async_wait_until, cfg

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "seeds" / "helloworld"

SHOUT_SINK = """
from pumpkin import Seed
SEEN = []
class Shout(Seed):
    consumes = "SHOUT"
    def run(self, data):
        SEEN.append(data)
"""


# A file is taken soon after it stops changing, and a folder without events is looked at often.
QUICK_RX = {"rx.settle_s": "0.05", "rx.poll_interval_s": "0.1"}


def source_of(rx: Path, rel: str) -> Source:
    path = rx / rel
    st = path.stat()
    return Source(rel, st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())


async def crash(journal: Journal) -> None:
    """Stop a journal the way kill -9 would: nothing queued is committed."""
    assert journal._task is not None
    journal._task.cancel()
    await asyncio.gather(journal._task, return_exceptions=True)


def packet(ids: IdMaker, data: object, state: str = "UNGREETED") -> Packet:
    return Packet(ids.root(), tags.parse(state), data)


def test_journal_gives_back_exactly_the_unfinished_entries_after_a_crash(tmp_path):
    ids = IdMaker("aaaa0000")
    a, b, c = packet(ids, "A"), packet(ids, b"\x00B"), packet(ids, "C")

    async def first() -> None:
        j = Journal(tmp_path / "journal", "default", ids)
        assert j.recover() == []
        j.start()
        entries = await j.add([(None, [a]), (None, [b])])
        entries += await j.add([(Source("c.json", 3, 4, "ff"), [c])])
        custody = {
            p.data: Custody(functools.partial(j.release, entry, p.lineage))
            for p, entry in zip((a, b, c), entries, strict=True)
        }
        custody["A"].settle()  # a: nothing held here, so finished at once
        custody[b"\x00B"].add(1)  # b: still held at the crash
        custody[b"\x00B"].settle()
        custody["C"].add(1)
        custody["C"].settle()
        custody["C"].add(-1)  # c: finished, but its file was never moved on
        await async_wait_until(lambda: j.commits >= 3, what="the finish records to be committed")
        await crash(j)

    async def second() -> None:
        j = Journal(tmp_path / "journal", "default", IdMaker())
        back = j.recover()
        assert [(e.source, [p.data for p in e.packets], e.finished) for e in back] == [
            (None, [b"\x00B"], False),
            (Source("c.json", 3, 4, "ff"), [], True),
        ]
        assert back[0].packets[0].id == b.id  # the same packet, so the same lineage: tx/ stays idempotent
        j.start()
        j.moved(back[1])
        j.release(back[0], b.lineage)
        await j.close()
        assert list((tmp_path / "journal").iterdir()) == []

    asyncio.run(first())
    asyncio.run(second())


def test_a_file_accepted_just_before_a_crash_is_moved_on_not_injected_again(tmp_path, capfd):
    rx = tmp_path / "rx"
    rx.mkdir()
    (rx / "mars.json").write_text('{"state": "UNGREETED", "data": "Mars"}')
    (rx / "venus.json").write_text('{"state": "UNGREETED", "data": "Venus"}')
    ids = IdMaker("dead0000")

    async def journaled_then_killed() -> None:
        # What the daemon had done when it died: both files journaled, neither moved, nothing processed.
        j = Journal(tmp_path / "node" / "journal", "default", ids)
        j.recover()
        j.start()
        await j.add(
            [
                (source_of(rx, "mars.json"), [packet(ids, "Mars")]),
                (source_of(rx, "venus.json"), [packet(ids, "Venus (journaled)")]),
            ]
        )
        await crash(j)

    asyncio.run(journaled_then_killed())
    # venus.json was replaced after the crash by a different file of the same name: it is new, and read.
    (rx / "venus.json").write_text('{"state": "UNGREETED", "data": "Venus (new)"}')

    async def restart() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py", HELLO / "extract.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        try:
            await async_wait_until(lambda: d.router.counters["extracted"] >= 3, what="three greetings")
            await async_wait_until(lambda: d.journal.unfinished() == 0 and not d.journal.entries, what="journal")
            assert d.dropdir.counters["files_recognised"] == 1
        finally:
            await d.stop()

    asyncio.run(restart())
    out = capfd.readouterr().out.splitlines()
    assert sorted(out) == ["Greeting: Hello Mars", "Greeting: Hello Venus (journaled)", "Greeting: Hello Venus (new)"]
    assert sorted(p.name for p in (rx / "done").iterdir()) == ["mars.json", "venus.json"]
    assert not (rx / "mars.json").exists() and not (rx / "venus.json").exists()


def test_a_state_nobody_consumes_waits_then_flows_when_a_consumer_joins(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "shout.py").write_text(SHOUT_SINK)
    rx = tmp_path / "rx"

    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        try:
            (rx / "hi.json").write_text('{"state": "SHOUT", "data": "hi"}')
            await async_wait_until(lambda: (rx / "done" / "hi.json").exists(), what="hi.json in done/")
            assert d.router.waiting.counts() == {"default:*:SHOUT": 1}
            assert d.journal.unfinished() == 1  # accepted and kept durable while it waits
            report = loader.load([seeds / "shout.py"], "default", explicit=True)
            d.add_seed(report.seeds[0])
            seen = sys.modules[d.specs["Shout"].factory.__module__].SEEN
            await async_wait_until(lambda: seen == ["hi"], what="the new consumer to get the packet")
            await async_wait_until(lambda: d.journal.unfinished() == 0, what="the journal entry to finish")
        finally:
            await d.stop()

    asyncio.run(main())


def test_a_clean_stop_hands_waiting_packets_to_pending_without_a_second_copy(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "shout.py").write_text(SHOUT_SINK)
    rx = tmp_path / "rx"

    async def without_consumer() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        (rx / "hi.json").write_text('{"state": "SHOUT", "data": "hi"}')
        await async_wait_until(lambda: (rx / "done" / "hi.json").exists(), what="hi.json in done/")
        await d.stop()

    async def with_consumer() -> None:
        d = Daemon(cfg(tmp_path, seeds=[seeds / "shout.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        try:
            seen = sys.modules[d.specs["Shout"].factory.__module__].SEEN
            await async_wait_until(lambda: seen == ["hi"], what="the saved packet to arrive")
            # Any second copy (a journal replay) was queued at start, before this one: it would be here by now.
            await async_wait_until(lambda: d.journal.unfinished() == 0, what="the journal to let go")
            assert seen == ["hi"] and not list((tmp_path / "node" / "pending").iterdir())
        finally:
            await d.stop()

    asyncio.run(without_consumer())
    assert len(list((tmp_path / "node" / "pending").iterdir())) == 1
    assert list((tmp_path / "node" / "journal").glob("*.jrn")) == []
    asyncio.run(with_consumer())


def test_processed_files_can_be_removed_instead_of_kept(tmp_path):
    async def main() -> None:
        c = cfg(
            tmp_path,
            seeds=[HELLO / "greet.py", HELLO / "extract.py"],
            rx=tmp_path / "rx",
            flags={**QUICK_RX, "rx.processed": "remove"},
        )
        d = Daemon(c)
        await d.start()
        try:
            (c.rx.dir / "mars.json").write_text('{"state": "UNGREETED", "data": "Mars"}')
            await async_wait_until(lambda: d.dropdir.counters["files_done"] == 1, what="mars.json to be taken")
            assert not (c.rx.dir / "mars.json").exists() and list((c.rx.dir / "done").iterdir()) == []
        finally:
            await d.stop()

    asyncio.run(main())


def test_pmk_inject_requests_are_durable_before_the_answer(tmp_path):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py", HELLO / "extract.py"], tx=tmp_path / "tx"))
        await d.start()
        try:
            raw = (HELLO / "data.pkt").read_bytes()
            import base64

            reply = await d._on_control(
                {"op": "inject", "file": "data.pkt", "content_base64": base64.b64encode(raw).decode()}
            )
            assert reply["ok"] and reply["state"] == "default:String:UNGREETED" and d.journal.commits >= 1
            blob = await d._on_control({"op": "inject", "state": "BLOB", "data_base64": "AP8="})
            assert blob["ok"] and blob["state"] == "default:*:BLOB"
            bad = await d._on_control({"op": "inject", "file": "x.json", "content_base64": "e30="})
            assert not bad["ok"] and "no 'state' key" in bad["error"]
            await async_wait_until(lambda: list((tmp_path / "tx" / "extract").glob("*.json")), what="a result")
            (result,) = (tmp_path / "tx" / "extract").glob("*.json")
            assert json.loads(result.read_text())["data"] == "Hello Mars"
        finally:
            await d.stop()

    asyncio.run(main())


def test_tx_files_are_written_once_per_lineage_and_result(tmp_path):
    ids, again = IdMaker("aaaa0000"), IdMaker("bbbb0000")
    first = packet(ids, "Hello Mars", "GREETING")
    redelivered = Packet(first.id, first.tag, "Hello Mars")  # the journal routes it again after a restart
    other = Packet(again.child(first.id, "shout", 1), first.tag, "Hello Mars, again")  # another of the lineage

    async def main() -> list[Path]:
        tx = TxWriter(tmp_path / "tx", "data")
        tx.start()
        got: list[Path | OSError] = []
        for p in (first, redelivered, other):
            tx.submit(p, "extract", got.append)
        await async_wait_until(lambda: len(got) == 3, what="three writes")
        await tx.close()
        return got  # type: ignore[return-value]

    paths = asyncio.run(main())
    assert paths[0] == paths[1] != paths[2]
    assert sorted(p.read_text() for p in (tmp_path / "tx" / "extract").iterdir()) == ["Hello Mars", "Hello Mars, again"]


def test_packets_from_files_get_the_configured_hops_unless_the_file_says(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "ttl.py").write_text(
        "from pumpkin import Seed\nSEEN = []\nclass Ttl(Seed):\n    consumes = 'SHOUT'\n"
        "    def run(self, data, packet):\n        SEEN.append((data, packet.ttl))\n"
    )
    rx = tmp_path / "rx"

    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[seeds / "ttl.py"], rx=rx, flags={**QUICK_RX, "routing.ttl_hops": "5"}))
        await d.start()
        try:
            (rx / "plain.json").write_text('{"state": "SHOUT", "data": "plain"}')
            (rx / "own.json").write_text('{"state": "SHOUT", "data": "own", "ttl": 9}')
            (rx / "old.pkt").write_text('[{"box": "0"}, {}, {"stag": "default:String:SHOUT", "data": "old"}]')
            (rx / "SHOUT").mkdir()
            (rx / "SHOUT" / "raw.bin").write_bytes(b"raw")
            seen = sys.modules[d.specs["Ttl"].factory.__module__].SEEN
            await async_wait_until(lambda: len(seen) == 4, what="four files' packets")
            assert sorted(seen, key=str) == sorted([("plain", 5), ("own", 9), ("old", 5), (b"raw", 5)], key=str)
        finally:
            await d.stop()

    asyncio.run(main())


async def crash_daemon(d: Daemon) -> None:
    """What kill -9 leaves of a daemon: its journal commits nothing more, and the packets it held in memory are
    gone (none is saved to pending/); then its sockets and working directory are freed for the next one."""
    assert d.journal is not None and d.router is not None
    await crash(d.journal)
    d.router.waiting.release(lambda tag: True)
    await d.stop()


def test_post_inject_answers_201_once_the_packet_is_journaled_so_a_crash_loses_none(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "shout.py").write_text(SHOUT_SINK)

    async def post(d: Daemon, body: object) -> tuple[int, dict[str, object]]:
        async with aiohttp.ClientSession() as s:
            url = d.web.url.rstrip("/") + "/api/v1/inject"
            async with s.post(url, json=body, headers={"Authorization": "Bearer t"}) as r:
                return r.status, await r.json()

    async def accepted_then_killed() -> str:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py"], token="t"))
        await d.start()
        status, sent = await post(d, {"state": "SHOUT", "data": "Web"})  # nobody consumes SHOUT here: it waits
        assert status == 201 and sent["state"] == "default:*:SHOUT"
        journaled = [
            doc["id"]
            for jrn in (tmp_path / "node" / "journal").glob("*.jrn")
            for line in jrn.read_bytes().splitlines()
            for doc in json.loads(line)["packets"]
        ]
        assert journaled == [sent["id"]] and d.journal.unfinished() == 1
        await crash_daemon(d)
        return str(sent["id"])

    async def restarted(sent: str) -> None:
        d = Daemon(cfg(tmp_path, seeds=[seeds / "shout.py"]))
        await d.start()
        try:
            seen = sys.modules[d.specs["Shout"].factory.__module__].SEEN
            await async_wait_until(lambda: seen == ["Web"], what="the packet accepted before the crash")
            await async_wait_until(lambda: d.journal.unfinished() == 0, what="the journal to let go")
        finally:
            await d.stop()

    sent = asyncio.run(accepted_then_killed())
    assert not list((tmp_path / "node" / "pending").glob("*"))  # so only the journal can bring it back
    asyncio.run(restarted(sent))


def test_post_inject_answers_503_when_the_packet_cannot_be_made_durable(tmp_path, monkeypatch):
    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py"], token="t"))
        await d.start()
        try:
            url = d.web.url.rstrip("/") + "/api/v1/inject"
            body, auth = {"state": "UNGREETED", "data": "Web"}, {"Authorization": "Bearer t"}

            async def disk_full(items: object) -> None:
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(d.journal, "add", disk_full)
            async with aiohttp.ClientSession() as s:
                async with s.post(url, json=body, headers=auth) as r:
                    assert r.status == 503
                    assert "not accepted: the packet could not be made durable" in (await r.json())["error"]
                journal, d.journal = d.journal, None  # as while the daemon starts
                async with s.post(url, json=body, headers=auth) as r:
                    assert r.status == 503 and "still starting" in (await r.json())["error"]
                d.journal = journal
            assert d.router.counters["injected"] == 0  # nothing was routed
        finally:
            await d.stop()

    asyncio.run(main())


def test_an_entry_that_cannot_be_written_is_refused_alone_and_its_commit_goes_through(tmp_path):
    ids = IdMaker("aaaa0000")
    deep: object = "bottom"
    for _ in range(300):  # orjson reads 1024 levels but writes 254
        deep = [deep]
    good, huge, nested, after = packet(ids, "A"), packet(ids, 1 << 70), packet(ids, deep), packet(ids, "B")

    async def main() -> None:
        j = Journal(tmp_path / "journal", "default", ids)
        j.recover()
        j.start()
        results = await j.add_each([(None, [good]), (Source("huge.json", 1, 2, "ff"), [huge]), (None, [nested])])
        assert isinstance(results[0], Entry) and results[0].id
        assert isinstance(results[1], Unwritable) and "Integer exceeds 64-bit range" in str(results[1])
        assert isinstance(results[2], Unwritable) and "Recursion limit reached" in str(results[2])
        try:
            await j.add([(None, [huge])])
        except Unwritable as exc:
            assert str(exc).startswith("cannot be written to the journal as JSON: ")
        else:
            raise AssertionError("add() accepted a packet it cannot write")
        [entry] = await j.add([(None, [after])])  # the journal goes on as before
        assert set(j.entries) == {results[0].id, entry.id}
        await crash(j)

    asyncio.run(main())
    back = Journal(tmp_path / "journal", "default", IdMaker()).recover()
    assert [[p.data for p in e.packets] for e in back] == [["A"], ["B"]]


def test_a_link_inside_done_is_never_written_through(tmp_path, caplog):
    # Only someone who may write in done/ can put a link there (done/ must be the daemon's): say a folder made
    # writable for all. The file it would have received stays where it is, read once, and nothing goes outside.
    rx, outside = tmp_path / "rx", tmp_path / "outside"
    outside.mkdir()

    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        try:
            (rx / "done" / "BLOB").symlink_to(outside)
            (rx / "BLOB").mkdir()
            (rx / "BLOB" / "x.bin").write_bytes(b"x")
            await async_wait_until(lambda: d.dropdir.counters["files_accepted"] == 1, what="x.bin to be read")
            scans = d.dropdir.counters["scans"]
            await async_wait_until(lambda: d.dropdir.counters["scans"] >= scans + 3, what="three more scans")
            assert d.dropdir.counters["files_accepted"] == 1 and d.dropdir.counters["files_done"] == 0
        finally:
            await d.stop()

    asyncio.run(main())
    assert list(outside.iterdir()) == [] and (rx / "BLOB" / "x.bin").read_bytes() == b"x"
    assert "rx BLOB/x.bin: cannot move it to done/: done/BLOB/ is a symbolic link, not a folder" in caplog.text


def test_the_drop_folder_is_the_one_opened_at_start(tmp_path):
    rx, private = tmp_path / "rx", tmp_path / "private"
    private.mkdir()
    (private / "secret.json").write_text('{"state": "UNGREETED", "data": "SECRET"}')

    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py", HELLO / "extract.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        try:
            rx.rename(tmp_path / "rx-moved")
            rx.symlink_to(private)  # the configured path now leads elsewhere: the daemon stays where it was
            (tmp_path / "rx-moved" / "mars.json").write_text('{"state": "UNGREETED", "data": "Mars"}')
            await async_wait_until(lambda: d.dropdir.counters["files_done"] == 1, what="mars.json to be taken")
            scans = d.dropdir.counters["scans"]
            await async_wait_until(lambda: d.dropdir.counters["scans"] >= scans + 3, what="three more scans")
            assert d.router.counters["injected"] == 1
        finally:
            await d.stop()

    asyncio.run(main())
    assert (tmp_path / "rx-moved" / "done" / "mars.json").exists()
    assert [p.name for p in private.iterdir()] == ["secret.json"]


def test_a_fifo_put_in_place_after_the_check_is_never_waited_on(tmp_path, monkeypatch):
    # The race the scan cannot close: the name is a regular file when looked at, a FIFO when opened. Opened
    # the blocking way, the read would wait for a writer for ever, and the whole rx folder with it.
    c = cfg(tmp_path, rx=tmp_path / "rx", flags=QUICK_RX)
    rx = c.rx.dir
    rx.mkdir()
    os.mkfifo(rx / "pipe.json")
    d = DropDir(c.rx, "default", "node", IdMaker(), None, lambda e, p: None)  # type: ignore[arg-type]
    d._root_fd = os.open(rx, os.O_RDONLY | os.O_DIRECTORY)
    looked_at = iter([None])  # the first look says "a regular file", as it was a moment before
    monkeypatch.setattr(dropdir, "refusal", lambda st: next(looked_at, "refused"))
    st = (rx / "pipe.json").lstat()
    reads: list[dropdir.Read] = []
    reader = threading.Thread(target=lambda: reads.append(d._read("pipe.json", (st.st_size, st.st_mtime_ns))))
    reader.daemon = True  # should it hang after all, the test fails instead of the run
    reader.start()
    reader.join(5)
    os.close(d._root_fd)
    assert reads and reads[0].again and not reads[0].error  # not read: the next scan looks again, and refuses it


def test_a_done_folder_of_another_user_stops_intake_until_it_is_fixed(tmp_path, caplog):
    if os.geteuid() != 0:
        pytest.skip("needs root: a folder of another uid is made with chown")
    rx = tmp_path / "rx"
    (rx / "done").mkdir(parents=True)
    os.chown(rx / "done", 4242, 4242)
    (rx / "mars.json").write_text('{"state": "UNGREETED", "data": "Mars"}')

    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py", HELLO / "extract.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        try:
            await async_wait_until(lambda: d.dropdir.halted, what="intake to stop")
            assert d.dropdir.halted == "done/ belongs to uid 4242, not to the daemon's user (uid 0)"
            scans = d.dropdir.counters["scans"]
            await async_wait_until(lambda: d.dropdir.counters["scans"] >= scans + 3, what="three more scans")
            assert (rx / "mars.json").exists() and d.router.counters["injected"] == 0
            os.chown(rx / "done", 0, 0)
            await async_wait_until(lambda: (rx / "done" / "mars.json").exists(), what="mars.json in done/")
            assert not d.dropdir.halted
        finally:
            await d.stop()

    asyncio.run(main())
    assert caplog.text.count("done/ belongs to uid 4242") == 1


def test_every_bad_rx_file_is_logged_at_warning(tmp_path, caplog):
    rx = tmp_path / "rx"

    async def main() -> None:
        d = Daemon(cfg(tmp_path, seeds=[HELLO / "greet.py"], rx=rx, flags=QUICK_RX))
        await d.start()
        try:
            for n in range(3):
                (rx / f"bad{n}.json").write_text("{not json")
            await async_wait_until(
                lambda: len(list((rx / "failed").glob("bad*.json"))) == 3, what="three bad files in failed/"
            )
        finally:
            await d.stop()

    with caplog.at_level(logging.INFO, logger="pumpkin.dropdir"):
        asyncio.run(main())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "pumpkin.dropdir"]
    assert sorted(m.split(":")[0] for m in warned if "moved to failed/" in m) == [
        "rx bad0.json",
        "rx bad1.json",
        "rx bad2.json",
    ]
