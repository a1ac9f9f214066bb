"""What an idle daemon's discovery costs: beacons read in batches, same-host cards read only when they change,
and nothing heavy imported that the idle path does not use (issue 14, idle cost)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pumpkin import discovery
from pumpkin.discovery import BeaconDiscovery, LocalDiscovery
from pumpkin.messages import Origin
from pumpkin.ticks import Ticks
from tests.helpers import async_wait_until

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_S = 0.5


def origin(node: str) -> Origin:
    return Origin(node, "tcp://127.0.0.1:1", None, "host", "dg", inc=1)


def test_beacons_that_come_together_are_read_in_one_batch_and_each_is_reported_once():
    async def main() -> None:
        heard: list[tuple[str, int]] = []
        listener = BeaconDiscovery(0, [], [], lambda: origin("b"), lambda o, via: heard.append((o.id, o.seq)), 0.5)
        await listener.start()
        assert listener._sock is not None
        port = listener._sock.getsockname()[1]
        senders = [BeaconDiscovery(0, [], [("127.0.0.1", port)], lambda n=n: origin(n), print, 0.5) for n in "acdef"]
        try:
            for s in senders:
                await s.start()  # each sends its first beacon at once
            # quiet for over a heartbeat before: the first datagram is read at once, the rest together
            await async_wait_until(lambda: len(heard) >= 5, timeout_s=5)
            for _ in range(20):
                for s in senders:
                    s.send_now()
            await async_wait_until(lambda: len(heard) >= 105, timeout_s=5)
            await asyncio.sleep(2 * listener.batch_s)
            assert len(heard) == len(set(heard)) == 105 == listener.received
            # 105 datagrams, a handful of wake-ups: each batch waits batch_s for the rest of a burst
            assert listener.batches <= 8, listener.batches
        finally:
            for s in [*senders, listener]:
                await s.stop()

    asyncio.run(main())


def test_on_a_paced_lan_beacons_are_read_on_the_daemons_ticks_just_before_its_heartbeat():
    """A crowded LAN's beacons come all the time: the socket is not watched, it is read once per tick (in the
    heartbeat's wake-up, and before the heartbeat, so a sweep after a stall sees what waited)."""
    ticks = Ticks(HEARTBEAT_S, phase=0.123)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        read_at: list[float] = []
        listener = BeaconDiscovery(
            0,
            [],
            [],
            lambda: origin("b"),
            lambda o, via: read_at.append(loop.time()),
            HEARTBEAT_S,
            lan_beacons_per_s=1.0,  # alone, it paces itself to a beacon a second: the LAN counts as crowded
            ticks=ticks,
        )
        await listener.start()
        await async_wait_until(lambda: listener.every == 1.0, timeout_s=5)  # its first beacon paced it
        assert listener._sock is not None
        sender = BeaconDiscovery(0, [], [("127.0.0.1", listener._sock.getsockname()[1])], lambda: origin("a"), print, 9)
        try:
            await sender.start()
            await async_wait_until(lambda: read_at, timeout_s=5)  # the first, at once: nothing was read before
            first_batches = listener.batches
            for _ in range(30):  # a beacon every 0.07 s for 2.1 s: unpaced, read within 0.1 s of coming
                await asyncio.sleep(0.07)
                sender.send_now()
            await async_wait_until(lambda: len(read_at) >= 31, timeout_s=5)
        finally:
            await sender.stop()
            await listener.stop()
        late = [round((t - ticks.phase + discovery.READ_AHEAD_S) % HEARTBEAT_S, 3) for t in read_at[1:]]
        # Each read just before a tick (its timer fires a little late, more so on a busy machine): by chance,
        # 30 readings spread over a heartbeat would all fall in its first fifth once in 10^21.
        assert max(late) < HEARTBEAT_S / 5, late
        assert listener.batches - first_batches <= 7, listener.batches  # one per tick over ~2.1 s, not one per beacon

    asyncio.run(main())


def test_on_a_paced_lan_a_flood_of_datagrams_is_read_in_batch_windows_not_a_tick_at_a_time(monkeypatch):
    monkeypatch.setattr(discovery, "DRAIN_MAX_DATAGRAMS", 10)  # a tick's read takes 10: 100 is a flood

    async def main() -> None:
        heard: list[int] = []
        listener = BeaconDiscovery(
            0, [], [], lambda: origin("b"), lambda o, via: heard.append(o.seq), HEARTBEAT_S, lan_beacons_per_s=1.0
        )
        await listener.start()
        await async_wait_until(lambda: listener.every == 1.0, timeout_s=5)
        assert listener._sock is not None
        sender = BeaconDiscovery(0, [], [("127.0.0.1", listener._sock.getsockname()[1])], lambda: origin("a"), print, 9)
        try:
            await sender.start()
            await async_wait_until(lambda: heard, timeout_s=5)
            await asyncio.sleep(HEARTBEAT_S)  # into the paced rhythm: read on ticks
            for _ in range(100):
                sender.send_now()
            # Ten reads of ten: ~1 s in batch windows (0.1 s); a read per tick would take 5 s.
            await async_wait_until(lambda: len(heard) >= 101, timeout_s=2.5)
        finally:
            await sender.stop()
            await listener.stop()

    asyncio.run(main())


def test_same_host_cards_are_read_again_only_when_the_folder_changes(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(discovery, "MTIME_SETTLED_NS", 200_000_000)  # the file system's granularity, shortened

    async def main() -> None:
        heard: list[str] = []
        local = LocalDiscovery(tmp_path, "host", lambda: origin("me"), lambda o, via: heard.append(o.id), 0.02)
        await local.start()
        try:
            card = {**origin("peer").fields(), "pid": os.getpid()}
            (local.folder / "peer.json").write_bytes(json.dumps(card).encode())
            await async_wait_until(lambda: "peer" in heard, timeout_s=5)
            await asyncio.sleep(0.3)  # the folder's mtime settles
            reads = local.reads
            await asyncio.sleep(0.5)  # 25 scans
            assert local.reads == reads, "cards re-read while nothing changed"
            (local.folder / "other.json").write_bytes(json.dumps({**card, "id": "other"}).encode())
            await async_wait_until(lambda: "other" in heard, timeout_s=5)  # a new card is seen at once
        finally:
            await local.stop()

    asyncio.run(main())


@pytest.mark.parametrize("page", [False, True])
def test_an_idle_daemon_imports_no_networkx_and_no_web_server_until_its_page_is_opened(tmp_path: Path, page: bool):
    script = f"""
import asyncio, sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from tests.helpers import cfg
from pumpkin.daemon import Daemon

async def main():
    # the hello world's seeds (original format: they star-import pumpkin), discovery on, the page on or off
    d = Daemon(cfg(Path({str(tmp_path)!r}), discovery=True, flags={{"http.enable": "{str(page).lower()}"}}))
    await d.start()
    await asyncio.sleep(1.5)  # three heartbeats; the hello world runs
    print(sorted(m for m in ("networkx", "aiohttp", "pumpkin.web", "h11") if m in sys.modules))
    if d.web is not None:  # the page's first request, over a plain socket
        reader, writer = await asyncio.open_connection("127.0.0.1", d.web.port)
        host = f"Host: 127.0.0.1:{{d.web.port}}\\r\\n"
        writer.write(f"GET /api/v1/node HTTP/1.1\\r\\n{{host}}Connection: close\\r\\n\\r\\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        loaded = sorted(m for m in ("networkx", "aiohttp", "pumpkin.web", "h11") if m in sys.modules)
        print(answer.split(b"\\r\\n", 1)[0].decode(), d.node_id.encode() in answer, *loaded)
    await d.stop()

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "Greeting: Hello World" in out.stdout
    lines = out.stdout.strip().splitlines()
    if page:
        assert lines[-2:] == ["[]", "HTTP/1.1 200 OK True h11 pumpkin.web"], out.stdout
    else:
        assert lines[-1] == "[]", out.stdout
