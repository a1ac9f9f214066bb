#!/usr/bin/env python3
"""Throughput and latency of a 3-seed chain: Pumpkin next to a fair raw pyzmq chain, Zenoh and asyncio, in one run.

The chain is inject -> step1 -> step2 -> extract (bench/seeds/). Every side gets the same packet count, 4
processes and 3 hops where it has processes; bench/README.md says exactly what each side does:

- ``chain``: each seed in its own ``pmk`` daemon, next to the **fair raw chain** (``fair_role``: Pumpkin's header
  fields, growing trail and child ids, orjson at every hop, up to 64 packets in one frame, the inbox drained per
  wake-up, gc tuned as the daemon does), **Zenoh** (``zenoh_role``: the same work, P2P, from bench/.venv-peers;
  skipped with a message when not installed), the fair raw chain **keeping the delivery promise** (``promise_role``:
  dedup, a copy kept until the next stage acknowledges it, custody; the "/ promise" column) and, with
  ``--minimal``, the old minimal raw chain (``raw_role``: one send_multipart per packet).
- ``latency``: the same chains with one packet in flight at a time; p50 and p99 per hop (end to end over 3
  hops; the sink acknowledges each packet to the source over ipc://).
- ``inprocess``: all four seeds in one daemon, next to asyncio queues of the same functions with the codec work
  a daemon does in-process (child id, trail, a JSON check of each output) and without it (plain dicts).
- ``ray``: where Ray is installed (here or in bench/.venv-peers; never a dependency), 3 Ray actors fed by the
  driver next to the 4-daemon ipc:// chain with threaded seeds, the same packet count.

``--repeat N`` runs every side N times, in rounds (each round runs every side once, so that drift weighs on all
alike), and prints medians; the JSON line keeps every run. As root
the whole run is moved into a throwaway network namespace first, like scripts/hello.sh.

    .venv/bin/python bench/chain.py [--packets 20000] [--sizes 100,10000] [--transports ipc,tcp] [--repeat 3]
                                    [--latency-packets 2000] [--only chain,latency,inprocess,ray] [--threaded]
                                    [--minimal] [--no-zenoh] [--keyed]

The step and sink seeds are marked ``inline`` (they take microseconds: see pumpkin.seed); ``--threaded``
adds every Pumpkin row again with them on worker threads, the default for a seed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import zmq

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "bench" / "seeds"
CHAIN = ("source", "step1", "step2", "sink")
TAGS = ("Bench:RAW", "Bench:ONE", "Bench:TWO")
MAGIC = b"PMK1"
DEADLINE_S = 300.0
INBOX_DRAIN = 500  # messages taken per wake-up, as pumpkin.transport.INBOX_BATCH


# -- the raw pyzmq chain ---------------------------------------------------------------------------


def raw_frames(i: int, data: dict[str, Any], tag: str, trail: list[Any], ttl: int) -> list[bytes]:
    header = {"id": f"s:c:{len(trail)}:{i}", "tag": tag, "ttl": ttl, "created": data["t"], "trail": trail, "enc": "j"}
    return [MAGIC, orjson.dumps(header), orjson.dumps(data)]


def raw_role(role: str, ctl: Path, endpoints: list[str], n: int, size: int, mode: str) -> None:
    """One process of the raw chain: source, step1, step2 or sink (endpoints: where each stage listens)."""
    ctx = zmq.Context()
    index = CHAIN.index(role)
    inbox = None
    if role != "source":
        inbox = ctx.socket(zmq.PULL)
        inbox.bind(endpoints[index - 1])
    out = None
    if role != "sink":
        out = ctx.socket(zmq.PUSH)
        out.connect(endpoints[index])
    (ctl / f"ready-{role}").touch()
    if role == "source":
        assert out is not None
        acks = ctx.socket(zmq.PULL)
        acks.bind(f"ipc://{ctl / 'ack'}")
        while not (ctl / "go").exists():
            time.sleep(0.005)
        pad = "x" * size
        for i in range(n):
            data = {"i": i, "t": time.monotonic(), "pad": pad}
            out.send_multipart(raw_frames(i, data, TAGS[0], [["source", "raw", TAGS[0], time.time()]], 64))
            if mode == "latency":
                acks.recv()
        time.sleep(1.0)  # let the last messages leave before the context closes
        return
    assert inbox is not None
    count, first, latencies = 0, None, []
    ack = None
    while count < n:
        magic, raw_header, payload = inbox.recv_multipart()
        header, data = orjson.loads(raw_header), orjson.loads(payload)
        if role == "sink":
            now = time.monotonic()
            count += 1
            if first is None:
                first = data["t"]
            if mode == "latency":
                latencies.append(now - data["t"])
                if ack is None:
                    ack = ctx.socket(zmq.PUSH)
                    ack.connect(f"ipc://{ctl / 'ack'}")
                ack.send(b"k")
            continue
        assert out is not None
        data["hops"] = data.get("hops", 0) + 1
        trail = [*header["trail"], [role, "raw", TAGS[index], time.time()]]
        out.send_multipart(raw_frames(data["i"], data, TAGS[index], trail, header["ttl"] - 1))
        count += 1
    if role == "sink":
        result = {"n": n, "first_sent": first, "last_arrived": time.monotonic(), "latencies": latencies}
        (ctl / "result.tmp").write_text(json.dumps(result))
        (ctl / "result.tmp").rename(ctl / "result.json")
    else:
        time.sleep(1.0)


# -- the fair raw pyzmq chain ----------------------------------------------------------------------
# The same work per packet as a daemon (orjson header with Pumpkin's fields and growing trail, child ids by
# blake2b as pumpkin.packet.Ids.child makes them, orjson payload), with every technique Pumpkin uses: up to
# FAIR_BATCH packets per message, one frame per message, the socket drained per wake-up, gc tuned as in
# pumpkin.daemon. What it leaves out is what the reliability guarantees cost (acks, journal, dedup).

FAIR_BATCH = 64  # packets per message at most, as pumpkin.transport.BATCH_PACKETS
FAIR_BATCH_BYTES = 1 << 20  # ... and payload bytes, as pumpkin.transport.BATCH_MAX_BYTES (64 MB messages stall)
_LENS = struct.Struct("<II")


def fair_pack(packets: list[tuple[bytes, bytes]]) -> bytes:
    """One frame: MAGIC, then per packet the lengths of its header and payload and the two themselves."""
    parts = [MAGIC]
    for header, payload in packets:
        parts += (_LENS.pack(len(header), len(payload)), header, payload)
    return b"".join(parts)


def fair_unpack(msg: bytes) -> list[tuple[memoryview, memoryview]]:
    view, pos, end, out = memoryview(msg), 4, len(msg), []
    while pos < end:
        hl, pl = _LENS.unpack_from(msg, pos)
        pos += 8
        out.append((view[pos : pos + hl], view[pos + hl : pos + hl + pl]))
        pos += hl + pl
    return out


def fair_header(pid: str, tag: str, ttl: int, created: float, trail: list[Any], to: str, sender: str) -> bytes:
    header = {"id": pid, "tag": tag, "ttl": ttl, "created": created, "trail": trail, "enc": "j"}
    header["to"], header["from"] = to, sender
    return orjson.dumps(header)


def fair_child(parent_id: str, seed: str) -> str:
    ship, container, hops, _ = parent_id.split(":")
    digest = hashlib.blake2b(f"{parent_id}|{seed}|0".encode(), digest_size=6).hexdigest()
    return f"{ship}:{container}:{int(hops) + 1}:{digest}"


def fair_next(
    header: dict[str, Any], data: dict[str, Any], seed: str, node: str, tag: str, nxt: str
) -> tuple[str, bytes, bytes]:
    """A transform stage's work on one packet, the same in both fair chains: the hop counted in the data, the
    trail's entry, the child id; the child's id, header and payload."""
    data["hops"] = data.get("hops", 0) + 1
    now = time.time()
    trail = [*header["trail"], [seed, node, tag, now]]
    pid = fair_child(header["id"], seed)
    return pid, fair_header(pid, tag, header["ttl"] - 1, header["created"], trail, nxt, node), orjson.dumps(data)


def fair_batches(
    ctx: zmq.Context[Any], ctl: Path, n: int, size: int, node: str, nxt: str, mode: str
) -> Iterator[list[tuple[str, bytes, bytes]]]:
    """A fair chain's source, once the go file is there: its ``n`` packets (id, header, payload) in the batches
    it sends (one packet each in latency mode, the next once the sink says the last arrived; else up to
    FAIR_BATCH, or FAIR_BATCH_BYTES of payloads)."""
    acks = ctx.socket(zmq.PULL)  # the sink's word in latency mode (see ``Arrivals``)
    acks.bind(f"ipc://{ctl / 'ack'}")
    while not (ctl / "go").exists():
        time.sleep(0.005)
    pad, batch_n = "x" * size, 1 if mode == "latency" else FAIR_BATCH
    ship, container, tag = f"{os.getpid():08x}", "c0ffee00", TAGS[0]
    batch: list[tuple[str, bytes, bytes]] = []
    size_of = 0
    for i in range(n):
        now = time.time()
        data = {"i": i, "t": time.monotonic(), "pad": pad}
        pid = f"{ship}:{container}:0:{i}"
        batch.append((pid, fair_header(pid, tag, 64, now, [["Source", node, tag, now]], nxt, node), orjson.dumps(data)))
        size_of += len(batch[-1][2])
        if len(batch) == batch_n or size_of >= FAIR_BATCH_BYTES or i == n - 1:
            yield batch
            batch, size_of = [], 0
            if mode == "latency":
                acks.recv()


def drained(sock: zmq.Socket[Any], msgs: list[bytes]) -> list[bytes]:
    """``msgs`` and the messages waiting on ``sock``, up to INBOX_DRAIN in all (as the daemon drains its inbox)."""
    try:
        while len(msgs) < INBOX_DRAIN:
            msgs.append(sock.recv(zmq.NOBLOCK))
    except zmq.Again:
        pass
    return msgs


class Arrivals:
    """What a fair chain's sink keeps: the first packet's send time and, in latency mode, each packet's latency,
    acknowledged to the source (which then sends the next)."""

    def __init__(self, ctx: zmq.Context[Any], ctl: Path, mode: str) -> None:
        self.ctx, self.ctl, self.mode = ctx, ctl, mode
        self.first: float | None = None
        self.latencies: list[float] = []
        self._ack: zmq.Socket[Any] | None = None

    def note(self, data: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = data["t"]
        if self.mode == "latency":
            self.latencies.append(now - data["t"])
            if self._ack is None:
                self._ack = self.ctx.socket(zmq.PUSH)
                self._ack.connect(f"ipc://{self.ctl / 'ack'}")
            self._ack.send(b"k")

    def write(self, n: int) -> None:
        result = {"n": n, "first_sent": self.first, "last_arrived": time.monotonic(), "latencies": self.latencies}
        (self.ctl / "result.tmp").write_text(json.dumps(result))
        (self.ctl / "result.tmp").rename(self.ctl / "result.json")


def fair_role(role: str, ctl: Path, endpoints: list[str], n: int, size: int, mode: str) -> None:
    """One process of the fair raw chain (see above)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)  # as pumpkin.daemon does
    ctx = zmq.Context()
    index = CHAIN.index(role)
    node = f"raw-{role}-{os.getpid()}"
    nxt = CHAIN[index + 1].capitalize() if role != "sink" else ""
    inbox = out = None
    if role != "source":
        inbox = ctx.socket(zmq.PULL)
        inbox.bind(endpoints[index - 1])
    if role != "sink":
        out = ctx.socket(zmq.PUSH)
        out.connect(endpoints[index])
    (ctl / f"ready-{role}").touch()
    if role == "source":
        assert out is not None
        for batch in fair_batches(ctx, ctl, n, size, node, nxt, mode):
            out.send(fair_pack([(header, payload) for _, header, payload in batch]))
        wait_done(ctl)
        return
    assert inbox is not None
    count, arrivals = 0, Arrivals(ctx, ctl, mode)
    seed, tag = role.capitalize(), TAGS[index] if role != "sink" else ""
    pending: list[tuple[bytes, bytes]] = []
    pending_bytes = 0
    while count < n:
        for msg in drained(inbox, [inbox.recv()]):
            for raw_header, payload in fair_unpack(msg):
                header, data = orjson.loads(raw_header), orjson.loads(payload)
                count += 1
                if role == "sink":
                    arrivals.note(data)
                    continue
                _, child_header, child_payload = fair_next(header, data, seed, node, tag, nxt)
                pending.append((child_header, child_payload))
                pending_bytes += len(child_payload)
                if len(pending) == FAIR_BATCH or pending_bytes >= FAIR_BATCH_BYTES:
                    out.send(fair_pack(pending))  # type: ignore[union-attr]
                    pending, pending_bytes = [], 0
        if pending:
            out.send(fair_pack(pending))  # type: ignore[union-attr]
            pending, pending_bytes = [], 0
    if role == "sink":
        arrivals.write(n)
    else:
        wait_done(ctl)


# -- the fair raw chain keeping the delivery promise -----------------------------------------------
# The fair raw chain plus what Pumpkin's guarantee needs on the way (not the journal: the chain's seeds write
# none): the receiver drops a packet id it has seen (a set), a sender keeps each packet it sent until the next
# stage acknowledges it and sends it again after PROMISE_RTO_S, and a relay acknowledges a packet to the stage
# before only once the packet it made of it is acknowledged (custody: a crash anywhere loses nothing). ACKs
# travel back over a PUSH/PULL pair per hop, one message of ids per wake-up.

PROMISE_RTO_S = 1.0  # a packet not acknowledged within this is sent again (never, on a quiet local chain)


def promise_role(role: str, ctl: Path, endpoints: list[str], n: int, size: int, mode: str) -> None:
    """One process of the fair raw chain with the delivery promise; ``endpoints``: the 3 stages' data inboxes,
    then the 3 ACK inboxes of source, step1 and step2."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    ctx = zmq.Context()
    index = CHAIN.index(role)
    node = f"raw-{role}-{os.getpid()}"
    nxt = CHAIN[index + 1].capitalize() if role != "sink" else ""
    inbox = out = acks_in = acks_out = None
    if role != "source":
        inbox = ctx.socket(zmq.PULL)
        inbox.bind(endpoints[index - 1])
        acks_out = ctx.socket(zmq.PUSH)
        acks_out.connect(endpoints[3 + index - 1])
    if role != "sink":
        out = ctx.socket(zmq.PUSH)
        out.connect(endpoints[index])
        acks_in = ctx.socket(zmq.PULL)
        acks_in.bind(endpoints[3 + index])
    # Sent and not acknowledged yet: id -> (the packet's header and payload, when sent, the parent it was made of).
    unacked: dict[str, tuple[tuple[bytes, bytes], float, str]] = {}
    checked_at = time.monotonic()

    def send(batch: list[tuple[str, bytes, bytes, str]]) -> None:
        now = time.monotonic()
        for pid, header, payload, parent in batch:
            unacked[pid] = ((header, payload), now, parent)
        out.send(fair_pack([(h, p) for _, h, p, _ in batch]))  # type: ignore[union-attr]

    def take_acks() -> list[str]:
        """The ACKs waiting: the parents of the packets they acknowledge (one child per parent here)."""
        assert acks_in is not None
        done = []
        try:
            msg = acks_in.recv(zmq.NOBLOCK)
            while True:
                for pid in orjson.loads(msg):
                    entry = unacked.pop(pid, None)
                    if entry is not None:
                        done.append(entry[2])
                msg = acks_in.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass
        return done

    def resend_late() -> None:
        nonlocal checked_at
        now = time.monotonic()
        if now - checked_at < 0.1:
            return
        checked_at = now
        late = []
        for pid, (frames, sent_at, parent) in unacked.items():  # oldest first
            if now - sent_at < PROMISE_RTO_S:
                break
            late.append((pid, *frames, parent))
        for pid, *_ in late:
            del unacked[pid]
        if late:
            send(late)

    (ctl / f"ready-{role}").touch()
    if role == "source":
        assert out is not None
        for batch in fair_batches(ctx, ctl, n, size, node, nxt, mode):
            send([(pid, header, payload, "") for pid, header, payload in batch])
            take_acks()
            resend_late()
        deadline = time.monotonic() + DEADLINE_S
        while unacked and time.monotonic() < deadline:  # the promise: every packet acknowledged
            if acks_in.poll(100):  # type: ignore[union-attr]
                take_acks()
            resend_late()
        wait_done(ctl)
        return
    assert inbox is not None and acks_out is not None
    poller = zmq.Poller()
    poller.register(inbox, zmq.POLLIN)
    if acks_in is not None:
        poller.register(acks_in, zmq.POLLIN)
    count, arrivals = 0, Arrivals(ctx, ctl, mode)
    seed, tag = role.capitalize(), TAGS[index] if role != "sink" else ""
    seen: dict[str, bool] = {}  # packet id -> still held (its child not acknowledged yet)
    pending: list[tuple[str, bytes, bytes, str]] = []
    pending_bytes = 0
    while count < n or unacked:
        ready = dict(poller.poll(100))
        answers: list[str] = []
        if acks_in is not None and acks_in in ready:
            for parent in take_acks():
                seen[parent] = False
                answers.append(parent)
        for msg in drained(inbox, []) if inbox in ready else []:
            for raw_header, payload in fair_unpack(msg):
                header = orjson.loads(raw_header)
                pid = header["id"]
                held = seen.get(pid)
                if held is not None:  # a copy sent again: acknowledged now if done, else when its child is
                    if not held:
                        answers.append(pid)
                    continue
                seen[pid] = role != "sink"
                data = orjson.loads(payload)
                count += 1
                if role == "sink":
                    answers.append(pid)
                    arrivals.note(data)
                    continue
                child, child_header, child_payload = fair_next(header, data, seed, node, tag, nxt)
                pending.append((child, child_header, child_payload, pid))
                pending_bytes += len(child_payload)
                if len(pending) == FAIR_BATCH or pending_bytes >= FAIR_BATCH_BYTES:
                    send(pending)
                    pending, pending_bytes = [], 0
        if pending:
            send(pending)
            pending, pending_bytes = [], 0
        if answers:
            acks_out.send(orjson.dumps(answers))
        if role != "sink":
            resend_late()
    if role == "sink":
        arrivals.write(n)
    else:
        wait_done(ctl)


def wait_done(ctl: Path) -> None:
    """Until the sink has written its result: a stage that quits early would cut the chain (and be an error)."""
    deadline = time.monotonic() + DEADLINE_S
    while not (ctl / "result.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


# -- Zenoh as a peer (installed for the benchmark only: bench/.venv-peers) -------------------------
# The same 4 processes and 3 hops, the same orjson work per packet as the fair raw chain, one packet per put
# (Zenoh batches on its own link); peer mode, no router, no scouting: each stage listens on a loopback port
# and its upstream connects to it. Publishers block when congested (the default drops), so nothing is lost.


def zenoh_wait_matching(pub: Any) -> None:
    """Until the next stage's subscriber is known: a put before that goes nowhere."""
    deadline = time.monotonic() + 30
    while not pub.matching_status.matching:
        if time.monotonic() > deadline:
            raise TimeoutError("no matching subscriber within 30 s")
        time.sleep(0.01)


def zenoh_role(role: str, ctl: Path, endpoints: list[str], n: int, size: int, mode: str) -> None:
    import threading

    import zenoh  # only in bench/.venv-peers

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    index = CHAIN.index(role)
    conf: dict[str, Any] = {"mode": "peer", "scouting": {"multicast": {"enabled": False}, "gossip": {"enabled": False}}}
    conf["listen"] = {"endpoints": [endpoints[index - 1]] if role != "source" else []}
    conf["connect"] = {"endpoints": [endpoints[index]] if role != "sink" else []}
    session = zenoh.open(zenoh.Config.from_json5(json.dumps(conf)))
    node = f"zenoh-{role}-{os.getpid()}"
    nxt = CHAIN[index + 1].capitalize() if role != "sink" else ""
    pub = None
    if role != "sink":
        pub = session.declare_publisher(f"bench/{CHAIN[index + 1]}", congestion_control=zenoh.CongestionControl.BLOCK)
    if role == "source":
        assert pub is not None
        acks = zmq.Context().socket(zmq.PULL)
        acks.bind(f"ipc://{ctl / 'ack'}")
        zenoh_wait_matching(pub)
        (ctl / f"ready-{role}").touch()
        while not (ctl / "go").exists():
            time.sleep(0.005)
        pad, ship, container, tag = "x" * size, f"{os.getpid():08x}", "c0ffee00", TAGS[0]
        for i in range(n):
            now = time.time()
            data = {"i": i, "t": time.monotonic(), "pad": pad}
            header = fair_header(f"{ship}:{container}:0:{i}", tag, 64, now, [["Source", node, tag, now]], nxt, node)
            pub.put(fair_pack([(header, orjson.dumps(data))]))
            if mode == "latency":
                acks.recv()
        wait_done(ctl)
        session.close()
        return
    done = threading.Event()
    state: dict[str, Any] = {"count": 0, "first": None, "latencies": []}
    seed, tag = role.capitalize(), TAGS[index] if role != "sink" else ""
    ack = zmq.Context().socket(zmq.PUSH) if role == "sink" and mode == "latency" else None
    if ack is not None:
        ack.connect(f"ipc://{ctl / 'ack'}")

    def on_sample(sample: Any) -> None:
        for raw_header, payload in fair_unpack(sample.payload.to_bytes()):
            header, data = orjson.loads(raw_header), orjson.loads(payload)
            state["count"] += 1
            if role == "sink":
                now = time.monotonic()
                if state["first"] is None:
                    state["first"] = data["t"]
                if ack is not None:
                    state["latencies"].append(now - data["t"])
                    ack.send(b"k")
                if state["count"] == n:
                    state["last"] = now
                    done.set()
                continue
            data["hops"] = data.get("hops", 0) + 1
            now = time.time()
            trail = [*header["trail"], [seed, node, tag, now]]
            pid = fair_child(header["id"], seed)
            packet = (fair_header(pid, tag, header["ttl"] - 1, header["created"], trail, nxt, node), orjson.dumps(data))
            pub.put(fair_pack([packet]))  # type: ignore[union-attr]
            if state["count"] == n:
                done.set()

    session.declare_subscriber(f"bench/{role}", on_sample)
    if pub is not None:
        zenoh_wait_matching(pub)
    (ctl / f"ready-{role}").touch()
    done.wait(DEADLINE_S)
    if role == "sink":
        result = {"n": n, "first_sent": state["first"], "last_arrived": state["last"], "latencies": state["latencies"]}
        (ctl / "result.tmp").write_text(json.dumps(result))
        (ctl / "result.tmp").rename(ctl / "result.json")
    else:
        wait_done(ctl)
    session.close()


# -- the in-process asyncio baseline --------------------------------------------------------------


async def asyncio_pipeline(n: int, size: int) -> float:
    """Packets per second through source -> step1 -> step2 -> sink joined by asyncio queues."""
    q1: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10000)
    q2: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10000)
    q3: asyncio.Queue[dict[str, Any]] = asyncio.Queue(10000)
    pad = "x" * size

    async def source() -> None:
        for i in range(n):
            await q1.put({"i": i, "t": time.monotonic(), "pad": pad})

    async def step(inq: asyncio.Queue[dict[str, Any]], outq: asyncio.Queue[dict[str, Any]]) -> None:
        for _ in range(n):
            data = await inq.get()
            data["hops"] = data.get("hops", 0) + 1
            await outq.put(data)

    async def sink() -> float:
        first = None
        for _ in range(n):
            data = await q3.get()
            first = data["t"] if first is None else first
        return n / (time.monotonic() - first)

    tasks = [asyncio.create_task(c) for c in (source(), step(q1, q2), step(q2, q3))]
    rate = await sink()
    await asyncio.gather(*tasks)
    return rate


async def asyncio_pipeline_packets(n: int, size: int) -> float:
    """As asyncio_pipeline, with the codec work a daemon does in-process: each hand-over makes a child id and a
    trail entry, and checks the data by writing it with orjson (pumpkin.runner calls packet.check_data on
    every seed output; the bytes are thrown away)."""
    q1: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue(10000)
    q2: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue(10000)
    q3: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue(10000)
    pad, node = "x" * size, f"asyncio-{os.getpid()}"

    def hand_over(parent: dict[str, Any] | None, seed: str, tag: str, data: Any, i: int) -> dict[str, Any]:
        now = time.time()
        if parent is None:
            header = {"id": f"{os.getpid():08x}:c0ffee00:0:{i}", "tag": tag, "ttl": 64, "created": now, "trail": []}
        else:
            header = {**parent, "id": fair_child(parent["id"], seed), "tag": tag, "ttl": parent["ttl"] - 1}
        header["trail"] = [*header["trail"], [seed, node, tag, now]]
        orjson.dumps(data)
        return header

    async def source() -> None:
        for i in range(n):
            data = {"i": i, "t": time.monotonic(), "pad": pad}
            await q1.put((hand_over(None, "Source", TAGS[0], data, i), data))

    async def step(inq: asyncio.Queue[Any], outq: asyncio.Queue[Any], seed: str, tag: str) -> None:
        for _ in range(n):
            header, data = await inq.get()
            data["hops"] = data.get("hops", 0) + 1
            await outq.put((hand_over(header, seed, tag, data, 0), data))

    async def sink() -> float:
        first = None
        for _ in range(n):
            _, data = await q3.get()
            first = data["t"] if first is None else first
        return n / (time.monotonic() - first)

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    steps = (step(q1, q2, "Step1", TAGS[1]), step(q2, q3, "Step2", TAGS[2]))
    tasks = [asyncio.create_task(c) for c in (source(), *steps)]
    rate = await sink()
    await asyncio.gather(*tasks)
    return rate


# -- the optional Ray baseline ---------------------------------------------------------------------


def ray_pipeline(n: int, size: int) -> float:
    """Packets per second through 3 Ray actors (step1 -> step2 -> sink) fed by the driver, as in the issue."""
    import ray  # optional: this row runs only where Ray is installed

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)

    @ray.remote
    class Step:
        def __init__(self, nxt: Any) -> None:
            self.nxt = nxt

        def run(self, data: dict[str, Any]) -> Any:
            data["hops"] = data.get("hops", 0) + 1
            return self.nxt.run.remote(data)

    @ray.remote
    class Sink:
        def __init__(self) -> None:
            self.count, self.first, self.last = 0, 0.0, 0.0

        def run(self, data: dict[str, Any]) -> None:
            self.count += 1
            self.first = self.first or data["t"]
            self.last = time.monotonic()

        def result(self) -> tuple[int, float, float]:
            return self.count, self.first, self.last

    sink = Sink.remote()
    first = Step.remote(Step.remote(sink))
    pad = "x" * size
    ray.get([first.run.remote({"i": i, "t": time.monotonic(), "pad": pad}) for i in range(n)])
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        count, t0, t1 = ray.get(sink.result.remote())
        if count >= n:
            return n / (t1 - t0)
        time.sleep(0.01)
    raise TimeoutError("the Ray pipeline did not finish")


# -- running things --------------------------------------------------------------------------------


class Run:
    """A set of processes for one measurement, with a control folder; always cleaned up."""

    def __init__(self, n: int, size: int, mode: str, inline: bool = True) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="pmk-bench-"))
        self.ctl = self.tmp / "ctl"
        self.ctl.mkdir()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BENCH_N": str(n),
            "BENCH_SIZE": str(size),
            "BENCH_MODE": mode,
            "BENCH_DIR": str(self.ctl),
            "BENCH_INLINE": "1" if inline else "0",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        self._cpu_at_go: list[float] = []

    def spawn(self, cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / log, "wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.names.append(log.removesuffix(".log"))
        return proc

    def wait_for(self, what: str, check: Any, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a process exited early while waiting for {what}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not within {timeout_s:g} s:\n{self.logs()}")
            time.sleep(0.01)

    def cpu_s(self) -> list[float]:
        """CPU seconds (user + system, every thread) each of the run's processes has used so far."""
        used = []
        for p in self.procs:
            try:  # fields after the command's ")": state is field 3, utime 14 and stime 15 (proc(5))
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                used.append(0.0)
                continue
            used.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        return used

    def go(self) -> None:
        """Start the measurement: note the CPU used so far, then let the source go."""
        self._cpu_at_go = self.cpu_s()
        (self.ctl / "go").touch()

    def result(self) -> dict[str, Any]:
        """The sink's result, with ``cpu_us`` (CPU of every process per packet, from go to the last arrival)."""
        file = self.ctl / "result.json"
        self.wait_for("all packets at the sink", file.exists, DEADLINE_S)
        res: dict[str, Any] = json.loads(file.read_text())
        used = [now - then for now, then in zip(self.cpu_s(), self._cpu_at_go, strict=True)]
        res["cpu_us"] = sum(used) / res["n"] * 1e6
        res["cpu_us_by_process"] = {
            name: round(u / res["n"] * 1e6, 1) for name, u in zip(self.names, used, strict=True)
        }
        return res

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in sorted(self.tmp.glob("*.log"))
        )

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def pmk(run: Run, name: str, seeds: list[str], transport: str, network_key: Path | None = None) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pumpkin",
        "--endpoint.type",
        "zmq.IPC" if transport == "ipc" else "zmq.TCP",
        "--workdir",
        str(run.tmp / name),
        "--node-id",
        f"bench-{name}-{os.getpid()}",
        "--discovery.broadcast",
        "false",
        "--discovery.mdns",
        "false",
        "--http.enable",
        "false",
    ]
    for s in seeds:
        cmd += ["--seed", str(SEEDS / f"{s}.py")]
    if network_key is not None:
        cmd += ["--network-key", str(network_key)]
    run.spawn(cmd, f"{name}.log")


def knows_remote(workdir: Path, seed: str) -> bool:
    """True when the daemon in ``workdir`` has ``seed`` on another node in its automaton."""
    from pumpkin.transport import request_sync

    try:
        control = (workdir / "control").read_text().strip()
        if not control:
            return False  # being written
        reply = request_sync(control, {"op": "graph"}, timeout_s=2.0)
    except (OSError, TimeoutError, zmq.ZMQError):
        return False
    nodes = reply.get("seeds", {}).get(seed, {}).get("nodes", [])
    return bool(nodes) and reply.get("node") not in nodes


def throughput(res: dict[str, Any]) -> float:
    return float(res["n"] / (res["last_arrived"] - res["first_sent"]))


#: Payloads of a megabyte and more get fewer packets (every side the same count): 20,000 would be 20 GB a run.
BIG_BYTES, BIG_PACKETS = 1_000_000, 500


def packets_for(n: int, size: int) -> int:
    """Packets per throughput run of ``size``-byte payloads, when ``n`` is asked for."""
    return min(n, BIG_PACKETS) if size >= BIG_BYTES else n


def pumpkin_chain(
    transport: str, n: int, size: int, mode: str, inline: bool = True, keyed: bool = False, legacy: bool = False
) -> dict[str, Any]:
    """The 4-daemon chain; ``legacy``: the two transforms in the original format (bench/seeds/dispatch_*.py)."""
    run = Run(n, size, mode, inline)
    try:
        key = None
        if keyed:  # a network key: every link is CurveZMQ, beacons and HELLOs are sealed and certified
            from pumpkin.membership import NetworkKey

            key = run.tmp / "network.key"
            key.write_text(NetworkKey.create().text())
            key.chmod(0o600)
        for name in reversed(CHAIN):
            seed = f"dispatch_{name}" if legacy and name.startswith("step") else name
            pmk(run, name, [seed], transport, key)
        for upstream, seed in zip(CHAIN, CHAIN[1:], strict=False):
            run.wait_for(
                f"{upstream} to know {seed}", lambda u=upstream, s=seed: knows_remote(run.tmp / u, s.capitalize())
            )
        run.go()
        return run.result()
    finally:
        run.close()


PEERS_PYTHON = ROOT / "bench" / ".venv-peers" / "bin" / "python"


def raw_chain(transport: str, n: int, size: int, mode: str, kind: str = "fair") -> dict[str, Any]:
    """The chain without Pumpkin: ``kind`` is "fair" (fair_role), "promise" (promise_role), "minimal" (raw_role)
    or "zenoh" (zenoh_role)."""
    run = Run(n, size, mode)
    try:
        python = sys.executable
        if kind == "zenoh":
            python = str(PEERS_PYTHON)
            if transport == "ipc":  # Zenoh's unix stream sockets: the same kind of link as ZeroMQ's ipc://
                endpoints = [f"unixsock-stream/{run.ctl / f'stage{i}.sock'}" for i in range(3)]
            else:
                endpoints = [f"tcp/127.0.0.1:{p}" for p in free_ports(3)]
        elif transport == "ipc":  # 3 data inboxes, then 3 ACK inboxes (only promise_role's ACKs use them)
            endpoints = [f"ipc://{run.ctl / f'stage{i}'}" for i in range(6)]
        else:
            endpoints = [f"tcp://127.0.0.1:{p}" for p in free_ports(6)]
        for role in reversed(CHAIN):
            run.spawn(
                [
                    python,
                    __file__,
                    "--raw-kind",
                    kind,
                    "--raw-role",
                    role,
                    "--raw-ctl",
                    str(run.ctl),
                    "--raw-endpoints",
                    ",".join(endpoints),
                    "--raw-n",
                    str(n),
                    "--raw-size",
                    str(size),
                    "--raw-mode",
                    mode,
                ],
                f"raw-{role}.log",
            )
        run.wait_for("the raw chain", lambda: all((run.ctl / f"ready-{r}").exists() for r in CHAIN))
        time.sleep(0.2)  # PUSH connects are asynchronous; a source sending before they complete only waits
        run.go()
        return run.result()
    finally:
        run.close()


def zenoh_missing() -> str:
    """Why the Zenoh rows cannot run, or "" when they can."""
    if not PEERS_PYTHON.exists():
        return f"skipped: no {PEERS_PYTHON} (make it: see bench/README.md, Zenoh)"
    probe = subprocess.run([str(PEERS_PYTHON), "-c", "import zenoh, orjson, zmq"], capture_output=True, check=False)
    return "" if probe.returncode == 0 else f"skipped: eclipse-zenoh, orjson or pyzmq not installed in {PEERS_PYTHON}"


def pumpkin_inprocess(n: int, size: int, inline: bool = True) -> dict[str, Any]:
    run = Run(n, size, "throughput", inline)
    try:
        pmk(run, "all", list(CHAIN), "ipc")
        run.wait_for("the daemon to start", lambda: (run.tmp / "all" / "control").exists())
        run.go()
        return run.result()
    finally:
        run.close()


def asyncio_inprocess(n: int, size: int, kind: str = "packets") -> float:
    """Packets per second through the asyncio pipeline: "plain" passes dicts, "packets" does a daemon's codec work."""
    out = subprocess.run(
        [sys.executable, __file__, "--asyncio-baseline", str(n), str(size), "--asyncio-kind", kind],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(out.stdout.strip())


def free_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def per_hop_us(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49] / 3 * 1e6, q[98] / 3 * 1e6


def median_of(runs: list[float]) -> float:
    return float(statistics.median(runs))


def rates(results: list[dict[str, Any]]) -> tuple[float, float, list[float]]:
    """Median packets/s, median CPU us per packet (all processes), and every run's packets/s."""
    pps = [throughput(r) for r in results]
    return median_of(pps), median_of([r["cpu_us"] for r in results]), pps


def ray_python() -> str | None:
    """An interpreter with Ray (it is not a dependency): this one, or bench/.venv-peers's."""
    if importlib.util.find_spec("ray") is not None:
        return sys.executable
    if PEERS_PYTHON.exists():
        probe = subprocess.run([str(PEERS_PYTHON), "-c", "import ray"], capture_output=True, check=False)
        if probe.returncode == 0:
            return str(PEERS_PYTHON)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=20000, help="packets per throughput run (every side)")
    ap.add_argument("--latency-packets", type=int, default=2000, help="packets per latency run (one at a time)")
    ap.add_argument("--sizes", default="100,10000", help="payload sizes in bytes")
    ap.add_argument("--transports", default="ipc,tcp")
    ap.add_argument("--only", default="chain,latency,inprocess,ray")
    ap.add_argument("--repeat", type=int, default=1, help="runs per row, in rounds of every side (medians printed)")
    ap.add_argument("--threaded", action="store_true", help="also run every Pumpkin row with threaded seeds")
    ap.add_argument(
        "--dispatch", action="store_true", help="also run the chain with its transforms in the original format"
    )
    ap.add_argument(
        "--keyed", action="store_true", help="also run every Pumpkin row in a keyed network (CurveZMQ on every link)"
    )
    ap.add_argument("--minimal", action="store_true", help="also run the minimal raw chain (one message per packet)")
    ap.add_argument("--no-zenoh", action="store_true", help="leave out the Zenoh rows")
    ap.add_argument("--raw-kind", default="fair")
    ap.add_argument("--raw-role")
    ap.add_argument("--raw-ctl", type=Path)
    ap.add_argument("--raw-endpoints")
    ap.add_argument("--raw-n", type=int)
    ap.add_argument("--raw-size", type=int)
    ap.add_argument("--raw-mode")
    ap.add_argument("--asyncio-baseline", nargs=2, type=int)
    ap.add_argument("--asyncio-kind", default="packets")
    ap.add_argument("--ray-baseline", nargs=2, type=int)
    ap.add_argument("--ray-packets", type=int, help="packets through the Ray pipeline (default: --packets)")
    args = ap.parse_args()
    if args.raw_role:
        role = {"fair": fair_role, "promise": promise_role, "minimal": raw_role, "zenoh": zenoh_role}[args.raw_kind]
        role(args.raw_role, args.raw_ctl, args.raw_endpoints.split(","), args.raw_n, args.raw_size, args.raw_mode)
        return
    if args.asyncio_baseline:
        pipeline = asyncio_pipeline if args.asyncio_kind == "plain" else asyncio_pipeline_packets
        print(asyncio.run(pipeline(*args.asyncio_baseline)))
        return
    if args.ray_baseline:
        print(f"RAY_PPS {ray_pipeline(*args.ray_baseline)}")  # Ray writes its warnings to stdout too
        return
    if os.geteuid() == 0 and not os.environ.get("PMK_BENCH_SANDBOXED") and shutil.which("ip"):
        os.environ["PMK_BENCH_SANDBOXED"] = "1"
        os.execv(
            str(ROOT / "scripts" / "sandbox.sh"), [str(ROOT / "scripts" / "sandbox.sh"), sys.executable, *sys.argv]
        )
    sizes = [int(s) for s in args.sizes.split(",")]
    transports = args.transports.split(",")
    only = set(args.only.split(","))
    reps = range(args.repeat)
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, pyzmq {zmq.__version__}",
        "load_before": os.getloadavg()[0],
    }
    zenoh_why = "skipped: --no-zenoh" if args.no_zenoh else zenoh_missing()
    zt = transports[0]  # Zenoh runs once per row, over the first transport (ipc: unix stream sockets)
    zlabel = f"Zenoh peer, {'unix sockets' if zt == 'ipc' else 'tcp'}"
    if zenoh_why:
        print(f"Zenoh rows {zenoh_why}")
    # Seeds run inline (on the loop) unless the row says "threaded" (the default for seeds: a worker thread).
    variants = [("inline", True), ("threaded", False)] if args.threaded else [("inline", True)]
    if args.dispatch:  # original-format transforms (dispatch), threaded as every such seed
        variants.append(("dispatch seeds", False))
    if args.keyed:
        variants += [(f"{label}+keyed", inline) for label, inline in variants]
    if "chain" in only:
        print(
            f"{'chain throughput':<34} {'size':>8} {'pkt/s':>10} {'/ fair raw':>10} {'/ zenoh':>8} {'CPU us/pkt':>10}"
            f" {'/ promise':>9}"
        )
        for size in sizes:
            n = packets_for(args.packets, size)
            zenoh_pps = None  # run with the first transport's rounds, compared with every transport's rows
            for transport in transports:
                # Round-robin: each repetition runs every side once, so that the machine's drift (these VMs
                # speed up and slow down by 10-20% within minutes) weighs on every side alike.
                sides = ["fair", "promise", *(["minimal"] if args.minimal else []), *(label for label, _ in variants)]
                with_zenoh = not zenoh_why and transport == transports[0]
                done: dict[str, list[dict[str, Any]]] = {side: [] for side in ["zenoh"] * with_zenoh + sides}
                for _ in reps:
                    if with_zenoh:
                        done["zenoh"].append(raw_chain(zt, n, size, "throughput", "zenoh"))
                    done["fair"].append(raw_chain(transport, n, size, "throughput", "fair"))
                    done["promise"].append(raw_chain(transport, n, size, "throughput", "promise"))
                    if args.minimal:
                        done["minimal"].append(raw_chain(transport, n, size, "throughput", "minimal"))
                    for label, inline in variants:
                        keyed, legacy = label.endswith("+keyed"), label.startswith("dispatch")
                        done[label].append(
                            pumpkin_chain(transport, n, size, "throughput", inline, keyed, legacy=legacy)
                        )
                if with_zenoh:
                    zenoh_pps, zcpu, runs = rates(done["zenoh"])
                    results[f"zenoh_{size}"] = {
                        "pps": round(zenoh_pps),
                        "runs": [round(r) for r in runs],
                        "cpu_us": zcpu,
                    }
                base, cpu, fair = rates(done["fair"])
                results[f"raw_fair_{transport}_{size}"] = {
                    "pps": round(base), "runs": [round(r) for r in fair], "cpu_us": round(cpu, 1), "packets": n,
                }  # fmt: skip
                print(f"{'fair raw pyzmq, ' + transport:<34} {size:>8} {base:>10,.0f} {1:>10.3f} {'':>8} {cpu:>10.1f}")
                if with_zenoh and zenoh_pps is not None:
                    z = f"{zenoh_pps / base:>10.3f} {1:>8.3f} {zcpu:>10.1f}"
                    print(f"{zlabel:<34} {size:>8} {zenoh_pps:>10,.0f} {z}")
                kept, kcpu, runs = rates(done["promise"])
                results[f"raw_promise_{transport}_{size}"] = {
                    "pps": round(kept), "runs": [round(r) for r in runs], "cpu_us": round(kcpu, 1),
                    "ratio": round(kept / base, 3),
                }  # fmt: skip
                label = f"fair raw + promise, {transport}"
                print(f"{label:<34} {size:>8} {kept:>10,.0f} {kept / base:>10.3f} {'':>8} {kcpu:>10.1f} {1:>9.3f}")
                if args.minimal:
                    m, mcpu, runs = rates(done["minimal"])
                    results[f"raw_minimal_{transport}_{size}"] = {"pps": round(m), "runs": [round(r) for r in runs]}
                    label = f"minimal raw (1 msg/packet), {transport}"
                    print(f"{label:<34} {size:>8} {m:>10,.0f} {m / base:>10.3f} {'':>8} {mcpu:>10.1f}")
                for label, _ in variants:
                    ours, ocpu, runs = rates(done[label])
                    row: dict[str, Any] = {
                        "pumpkin_pps": round(ours),
                        "raw_pps": round(base),
                        "ratio": round(ours / base, 3),
                        "runs": [round(r) for r in runs],
                        "cpu_us": round(ocpu, 1),
                        "raw_cpu_us": round(cpu, 1),
                        "ratio_promise": round(ours / kept, 3),
                        # each process's CPU per packet, medians over the runs (where a variant's cost lies)
                        "cpu_us_by_process": {
                            name: median_of([r["cpu_us_by_process"][name] for r in done[label]])
                            for name in done[label][0]["cpu_us_by_process"]
                        },
                    }
                    zr = f"{'':>8}"
                    if zenoh_pps is not None:
                        row["zenoh_pps"] = round(zenoh_pps)
                        row["ratio_zenoh"] = round(ours / zenoh_pps, 3)
                        zr = f"{ours / zenoh_pps:>8.3f}"
                    results[f"chain_{transport}_{size}_{label}"] = row
                    name = f"Pumpkin 4 daemons, {transport}, {label}"
                    figures = f"{ours:>10,.0f} {ours / base:>10.3f} {zr} {ocpu:>10.1f} {ours / kept:>9.3f}"
                    print(f"{name:<34} {size:>8} {figures}")
    if "latency" in only:
        print(f"\n{'per-hop latency, 100 B':<34} {'p50 us':>8} {'p99 us':>8} {'p50/raw':>8} {'p99/raw':>8}")

        def lat(res_of: Any) -> tuple[float, float]:
            got = [per_hop_us(res_of()["latencies"]) for _ in reps]
            return median_of([g[0] for g in got]), median_of([g[1] for g in got])

        n = args.latency_packets
        zenoh_lat = None
        if not zenoh_why:
            zenoh_lat = lat(lambda: raw_chain(zt, n, 100, "latency", "zenoh"))
            results["latency_zenoh"] = {"p50_us": round(zenoh_lat[0]), "p99_us": round(zenoh_lat[1])}
        for transport in transports:
            r50, r99 = lat(lambda t=transport: raw_chain(t, n, 100, "latency", "fair"))
            results[f"latency_raw_fair_{transport}"] = {"p50_us": round(r50), "p99_us": round(r99)}
            print(f"{'fair raw pyzmq, ' + transport:<34} {r50:>8.0f} {r99:>8.0f} {1:>8.2f} {1:>8.2f}")
            if zenoh_lat is not None and transport == transports[0]:
                z50, z99 = zenoh_lat
                print(f"{zlabel:<34} {z50:>8.0f} {z99:>8.0f} {z50 / r50:>8.2f} {z99 / r99:>8.2f}")
            for label, inline in variants:
                keyed, legacy = label.endswith("+keyed"), label.startswith("dispatch")
                p50, p99 = lat(
                    lambda t=transport, i=inline, k=keyed, g=legacy: pumpkin_chain(t, n, 100, "latency", i, k, g)
                )
                row = {
                    "pumpkin_p50_us": round(p50),
                    "pumpkin_p99_us": round(p99),
                    "raw_p50_us": round(r50),
                    "raw_p99_us": round(r99),
                    "p50_ratio": round(p50 / r50, 2),
                    "p99_ratio": round(p99 / r99, 2),
                }
                if zenoh_lat is not None:
                    row["zenoh_p50_us"], row["zenoh_p99_us"] = round(zenoh_lat[0]), round(zenoh_lat[1])
                results[f"latency_{transport}_{label}"] = row
                name = f"Pumpkin 4 daemons, {transport}, {label}"
                print(f"{name:<34} {p50:>8.0f} {p99:>8.0f} {p50 / r50:>8.2f} {p99 / r99:>8.2f}")
    if "inprocess" in only:
        print(f"\n{'one process':<34} {'size':>6} {'pkt/s':>10} {'/ asyncio':>10} {'/ plain':>8}")
        for size in sizes:
            plain = median_of([asyncio_inprocess(args.packets, size, "plain") for _ in reps])
            base = median_of([asyncio_inprocess(args.packets, size, "packets") for _ in reps])
            results[f"asyncio_plain_{size}"] = {"pps": round(plain)}
            results[f"asyncio_packets_{size}"] = {"pps": round(base)}
            print(f"{'asyncio queues, ids+trail+check':<34} {size:>6} {base:>10,.0f} {1:>10.3f} {base / plain:>8.3f}")
            print(f"{'asyncio queues, plain dicts':<34} {size:>6} {plain:>10,.0f} {plain / base:>10.3f} {1:>8.3f}")
            for label, inline in variants:
                if label.endswith("+keyed") or label.startswith("dispatch"):
                    continue  # one daemon: no link to encrypt; the original-format row is for the chain
                ours = median_of([throughput(pumpkin_inprocess(args.packets, size, inline)) for _ in reps])
                results[f"inprocess_{size}_{label}"] = {
                    "pumpkin_pps": round(ours),
                    "asyncio_pps": round(base),
                    "ratio": round(ours / base, 3),
                    "ratio_plain": round(ours / plain, 3),
                }
                name = f"Pumpkin 4 seeds, 1 daemon, {label}"
                print(f"{name:<34} {size:>6} {ours:>10,.0f} {ours / base:>10.3f} {ours / plain:>8.3f}")
    ray_py = ray_python() if "ray" in only else None
    if "ray" in only and ray_py is None:
        print("\nRay row skipped: Ray is not installed here or in bench/.venv-peers")
    if ray_py is not None:
        # Ray is not a dependency: 3 Ray actors fed by the driver, next to the 4-daemon ipc:// chain, same count.
        n = args.ray_packets or args.packets
        ray_runs, ours_runs = [], []
        for _ in reps:
            out = subprocess.run(
                [ray_py, __file__, "--ray-baseline", str(n), "100"], check=True, capture_output=True, text=True
            )
            ray_runs.append(float(next(x for x in out.stdout.splitlines() if x.startswith("RAY_PPS ")).split()[1]))
            ours_runs.append(throughput(pumpkin_chain("ipc", n, 100, "throughput", inline=False)))
        ray_pps, ours = median_of(ray_runs), median_of(ours_runs)
        results["vs_ray_100"] = {
            "pumpkin_pps": round(ours),
            "ray_pps": round(ray_pps),
            "ratio": round(ours / ray_pps, 1),
            "packets": n,
        }
        print(f"\n{'Ray, 3 actors':<34} {100:>6} {ray_pps:>10,.0f}")
        print(f"{'Pumpkin 4 daemons, ipc, threaded':<34} {100:>6} {ours:>10,.0f} {ours / ray_pps:>9.1f}x")
    print(json.dumps({"benchmark": "chain", "packets": args.packets, "repeat": args.repeat, "results": results}))


if __name__ == "__main__":
    main()
