"""File payloads between two real daemons in one process (ipc://): modern File, legacy file://, failures."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

from pumpkin.automaton import SeedInfo
from pumpkin.daemon import Daemon
from tests.helpers import async_wait_until, cfg
from tests.integration.test_daemon import write_seeds

MAKER = """
import os
from pumpkin import File, Seed

class Maker(Seed):
    emits = "Blob:MADE"

    def run(self):
        return File(os.environ["FILES_TEST_SRC"])
"""

CHECKER = """
import hashlib
from pumpkin import File, Seed

SEEN = []

class Checker(Seed):
    consumes = "Blob:MADE"

    def run(self, blob):
        assert isinstance(blob, File), type(blob)
        if blob.name == "boom.bin":
            raise RuntimeError("this seed fails on purpose")
        SEEN.append((str(blob.path), hashlib.sha256(blob.path.read_bytes()).hexdigest(), blob.sha256))
"""

LEGACY_PRODUCER = """
###START-CONF
##{"object_name": "lproducer", "object_poi": "p-1", "auto-load": true, "parameters": [],
## "return": [{"name": "data", "type": "DataFile", "state": "LPRE"}]}
##END-CONF
import os
from pumpkin import *

class lproducer(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt):
        path = os.environ["FILES_TEST_LEGACY"]
        with open(path, "w") as f:
            f.write("some data for file 1")
        self.dispatch(pkt, "file://" + path, "LPRE")
"""

LEGACY_RECEIVER = """
###START-CONF
##{"object_name": "lreceiver", "object_poi": "r-1", "auto-load": true,
## "parameters": [{"name": "data", "type": "DataFile", "state": "LPRE"}], "return": []}
##END-CONF
from pumpkin import *

SEEN = []

class lreceiver(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, data):
        if data.startswith("file://"):
            with open(data[len("file://"):]) as f:
                SEEN.append((data, f.read()))
"""


def module_of(daemon: Daemon, name: str):
    return sys.modules[daemon.specs[name].factory.__module__]


def keys_in(daemon_dir: Path) -> list[str]:
    folder = daemon_dir / "files"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def introduce(a: Daemon, b: Daemon) -> None:
    for x, y in ((a, b), (b, a)):
        x.learn_peer(
            y.node_id,
            y.transport.data_endpoints[0],
            [SeedInfo(n, s.inputs, s.outputs) for n, s in y.specs.items()],
        )


def run_pair(tmp_path: Path, seeds_a: dict[str, str], seeds_b: dict[str, str], body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        a = Daemon(cfg(tmp_path, "a", taskdir=write_seeds(tmp_path / "sa", **seeds_a)))
        b = Daemon(cfg(tmp_path, "b", taskdir=write_seeds(tmp_path / "sb", **seeds_b)))
        await a.start()
        await b.start()
        try:
            await body(a, b)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_a_file_a_seed_returns_reaches_the_next_seed_on_another_node_whole_and_both_copies_go(tmp_path, monkeypatch):
    src = tmp_path / "payload.bin"
    data = os.urandom(3 * (1 << 20) + 12345)
    src.write_bytes(data)
    monkeypatch.setenv("FILES_TEST_SRC", str(src))

    async def body(a: Daemon, b: Daemon) -> None:
        await async_wait_until(lambda: a.router.waiting.counts(), what="the file packet to wait for a consumer")
        assert not src.exists() and len(keys_in(tmp_path / "a")) == 1  # handed over into A's files/
        introduce(a, b)
        seen = module_of(b, "Checker").SEEN
        await async_wait_until(lambda: seen, what="the checker to run on B")
        path, digest, announced = seen[0]
        assert digest == announced == hashlib.sha256(data).hexdigest()
        assert Path(path).is_relative_to(tmp_path / "b" / "files")
        # Safe downstream (B's seed ran on its own copy): both copies are removed, and B acknowledged A.
        await async_wait_until(lambda: not keys_in(tmp_path / "a") and not keys_in(tmp_path / "b"), what="cleanup")
        assert b.files is not None and b.files.counters["files_fetched"] == 1
        assert b.files.counters["chunks_received"] == 4 and a.files is not None
        assert a.files.counters["chunks_served"] == 4
        assert not a.mesh.inflight_counts()

    run_pair(tmp_path, {"maker": MAKER}, {"checker": CHECKER}, body)


def test_a_legacy_seed_dispatches_a_file_url_and_the_receiver_gets_a_file_url_on_its_own_host(tmp_path, monkeypatch):
    monkeypatch.setenv("FILES_TEST_LEGACY", str(tmp_path / "testfile.txt"))

    async def body(a: Daemon, b: Daemon) -> None:
        await async_wait_until(lambda: a.router.waiting.counts(), what="the file packet to wait")
        introduce(a, b)
        seen = module_of(b, "lreceiver").SEEN
        await async_wait_until(lambda: seen, what="the receiver to run on B")
        url, text = seen[0]
        assert text == "some data for file 1"
        assert url.startswith(f"file://{tmp_path / 'b' / 'files'}/") and url.endswith("/testfile.txt")

    run_pair(tmp_path, {"lproducer": LEGACY_PRODUCER}, {"lreceiver": LEGACY_RECEIVER}, body)


def test_the_file_of_a_packet_that_fails_is_kept_beside_it(tmp_path, monkeypatch):
    src = tmp_path / "boom.bin"
    src.write_bytes(b"x" * 1000)
    monkeypatch.setenv("FILES_TEST_SRC", str(src))

    async def body(a: Daemon, b: Daemon) -> None:
        await async_wait_until(lambda: a.router.waiting.counts(), what="the file packet to wait")
        introduce(a, b)
        await async_wait_until(lambda: list((tmp_path / "b" / "failed").glob("*.files/boom.bin")), what="kept file")
        kept = next((tmp_path / "b" / "failed").glob("*.files/boom.bin"))
        assert kept.read_bytes() == b"x" * 1000
        await async_wait_until(lambda: not keys_in(tmp_path / "a") and not keys_in(tmp_path / "b"), what="cleanup")

    run_pair(tmp_path, {"maker": MAKER}, {"checker": CHECKER}, body)


def test_a_chunk_spoilt_at_the_holder_is_detected_and_the_packet_fails_with_the_reason(tmp_path, monkeypatch):
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(2 * (1 << 20)))
    monkeypatch.setenv("FILES_TEST_SRC", str(src))

    async def body(a: Daemon, b: Daemon) -> None:
        await async_wait_until(lambda: a.router.waiting.counts(), what="the file packet to wait")
        (key,) = keys_in(tmp_path / "a")
        with open(tmp_path / "a" / "files" / key / "payload.bin", "r+b") as fh:  # after it was sealed
            fh.seek((1 << 20) + 10)
            fh.write(b"\x00\x01\x02")
        introduce(a, b)
        await async_wait_until(lambda: list((tmp_path / "b" / "failed").glob("*.error")), what="the failure on B")
        reason = next((tmp_path / "b" / "failed").glob("*.error")).read_text()
        assert "chunk 1 of payload.bin" in reason and "failed its sha256" in reason
        assert b.files is not None and b.files.counters["chunks_corrupt"] >= 3
        assert not module_of(b, "Checker").SEEN

    run_pair(tmp_path, {"maker": MAKER}, {"checker": CHECKER}, body)
