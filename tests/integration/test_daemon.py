"""Real daemons in one process, real ZeroMQ sockets over ipc://, no discovery (peers are introduced)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
import zmq

from pumpkin import config, loader, tags
from pumpkin import packet as codec
from pumpkin.automaton import SeedInfo
from pumpkin.daemon import Daemon
from pumpkin.discovery import LocalDiscovery
from tests.helpers import async_wait_until, cfg

ROOT = Path(__file__).resolve().parents[2]


def write_seeds(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    return folder


RECORDER = """
from pumpkin import Seed
SEEN = []
class Sink(Seed):
    consumes = "{state}"
    def run(self, data, packet):
        SEEN.append((data, [h.seed for h in packet.trail], packet.id))
"""


def sink_module(daemon: Daemon, name: str = "Sink"):
    import sys

    spec = daemon.specs[name]
    return sys.modules[spec.factory.__module__]


def test_hello_world_in_process(tmp_path, capfd):
    async def main():
        d = Daemon(cfg(tmp_path, "a"))
        await d.start()
        try:
            await async_wait_until(lambda: d.router.counters["extracted"] >= 1, what="the greeting to be extracted")
        finally:
            await d.stop()

    asyncio.run(main())
    assert "Greeting: Hello World" in capfd.readouterr().out


def test_legacy_and_modern_seeds_chain_and_trail_says_how(tmp_path):
    seeds = write_seeds(tmp_path / "seeds", sink=RECORDER.format(state="String:GREETING"))
    modern_greet = ROOT / "seeds/modern/greet.py"

    async def main():
        d = Daemon(cfg(tmp_path, "a", seeds=[ROOT / "seeds/helloworld/inject.py", modern_greet, seeds / "sink.py"]))
        await d.start()
        try:
            seen = sink_module(d).SEEN
            await async_wait_until(lambda: seen, what="the sink to see the greeting")
            data, trail, pid = seen[0]
            assert data == "Hello World" and trail == ["inject", "greet"]
            assert pid.count(":") == 3 and pid.split(":")[2] == "1"
        finally:
            await d.stop()

    asyncio.run(main())


def test_a_raising_seed_fails_that_packet_only(tmp_path):
    seeds = write_seeds(
        tmp_path / "seeds",
        picky="""
from pumpkin import Seed
class Picky(Seed):
    consumes = "N"
    emits = "OK"
    def run(self, n):
        if n == 3:
            raise ValueError("three is not allowed")
        return n
""",
        sink=RECORDER.format(state="OK"),
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        try:
            for n in range(6):
                d.inject("N", n)
            seen = sink_module(d).SEEN
            await async_wait_until(lambda: len(seen) == 5, what="5 of 6 packets through")
            assert sorted(s[0] for s in seen) == [0, 1, 2, 4, 5]
            errors = list((tmp_path / "a/failed").glob("*.error"))
            assert len(errors) == 1
            text = errors[0].read_text()
            assert text.startswith("seed Picky raised ValueError: three is not allowed") and "Traceback" in text
            kept = errors[0].with_suffix(".pkt").read_text()
            assert '"data": 3' in kept
            assert d.snapshot()["seeds"]["Picky"]["failures"] == 1
        finally:
            await d.stop()

    asyncio.run(main())


def test_every_seed_failure_is_logged_at_warning_naming_the_file_with_its_traceback(tmp_path, caplog):
    seeds = write_seeds(
        tmp_path / "seeds",
        odd="""
from pumpkin import Seed
class Odd(Seed):
    consumes = "N"
    def run(self, n):
        raise ValueError(f"no {n}")
""",
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        try:
            for n in range(3):
                d.inject("N", n)
            await async_wait_until(lambda: len(list((tmp_path / "a/failed").glob("*.error"))) == 3, what="3 kept")
        finally:
            await d.stop()

    with caplog.at_level(logging.INFO, logger="pumpkin.failed"):
        asyncio.run(main())
    warned = [r.getMessage() for r in caplog.records if r.name == "pumpkin.failed" and r.levelno == logging.WARNING]
    assert sorted(m.split(" while ")[0] for m in warned) == [f"seed Odd raised ValueError: no {n}" for n in range(3)]
    for message in warned:
        error = message.rsplit("; traceback in ", 1)[1].rstrip(")")
        assert "Traceback" in (tmp_path / "a/failed" / error).read_text()


def test_a_taskdir_without_seeds_is_a_warning_and_the_daemon_runs(tmp_path, caplog):
    data = tmp_path / "tweeter"
    data.mkdir()
    (data / "words.txt").write_text("only data\n")

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=data))
        await d.start()
        try:
            assert not d.specs
        finally:
            await d.stop()

    with caplog.at_level(logging.INFO, logger="pumpkin"):
        asyncio.run(main())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"No seed loaded from {data}: this node runs no seed of its own" in warned
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_inline_seeds_run_on_the_loop_locally_and_for_a_peer_and_fail_one_packet_only(tmp_path):
    """Inline seeds run on the daemon's own thread, in one daemon and when their packets come over ZeroMQ
    (alone, or in a batch); a raising inline seed fails that packet only and the loop goes on."""
    seeds = write_seeds(
        tmp_path / "seeds",
        double="""
import threading
from pumpkin import Seed
THREADS = set()
class Double(Seed):
    consumes = "N"
    emits = "D"
    inline = True
    def run(self, n):
        THREADS.add(threading.current_thread().name)
        if n == 3:
            raise ValueError("three is not allowed")
        return 2 * n
""",
        sink=RECORDER.format(state="D"),
    )

    async def main():
        b = Daemon(cfg(tmp_path, "b", seeds=[seeds / "double.py"]))
        a = Daemon(cfg(tmp_path, "a", seeds=[seeds / "sink.py"]))
        await b.start()
        await a.start()
        try:
            b.learn_peer(a.node_id, a.transport.data_endpoints[0], [SeedInfo("Sink", a.specs["Sink"].inputs, ())])
            a.learn_peer(
                b.node_id,
                b.transport.data_endpoints[0],
                [SeedInfo("Double", b.specs["Double"].inputs, b.specs["Double"].outputs)],
            )
            a.inject("N", 1)  # over ZeroMQ, alone in its message: runs as it arrives
            seen = sink_module(a).SEEN
            await async_wait_until(lambda: len(seen) == 1, what="the lone packet doubled by the peer")
            for n in range(2, 40):  # a burst: batched, run on the loop's next turn
                a.inject("N", n)
            await async_wait_until(lambda: len(seen) == 38, what="37 more, the one with 3 failed")
            assert sorted(s[0] for s in seen) == sorted(2 * n for n in range(1, 40) if n != 3)
            ran_on = sink_module(b, "Double").THREADS
            assert ran_on == {"MainThread"}  # the loop's thread: no worker thread was used
            assert b.failed.counts == {"seed-error": 1}
            assert "three is not allowed" in next((tmp_path / "b/failed").glob("*.error")).read_text()
            b.inject("N", 50)  # and in the daemon itself
            await async_wait_until(lambda: len(seen) == 39, what="a local packet")
            assert seen[-1][0] == 100 and not a.mesh.inflight_counts().get(b.node_id)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_a_seed_whose_on_load_raises_is_reported_and_the_others_run(tmp_path, caplog):
    broken = """
from pumpkin import Seed
class {name}(Seed):
    consumes = "N"
    inline = {inline}
    def on_load(self):
        raise RuntimeError("no model file")
    def run(self, n):
        pass
"""
    seeds = write_seeds(
        tmp_path / "seeds",
        threaded=broken.format(name="Threaded", inline=False),
        inline=broken.format(name="Inline", inline=True),
        sink=RECORDER.format(state="N"),
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        try:
            for name, what in (("Threaded", "this instance will not run"), ("Inline", "it will not run")):
                line = f"seed {name}: on_load raised RuntimeError: no model file; {what}"
                await async_wait_until(lambda line=line: line in caplog.text, what=line)
                # It cannot run, so it leaves the automaton (as if disabled) instead of swallowing packets.
                await async_wait_until(lambda name=name: name in d.disabled, what=f"{name} disabled")
            assert list(d.automaton.consumers(tags.parse("N"))) == ["Sink"]
            d.inject("N", 7)
            await async_wait_until(lambda: sink_module(d).SEEN, what="the working seed's packet")
            assert d.router.waiting.counts() == {} and d.failed.counts == {}
        finally:
            await d.stop()

    asyncio.run(main())


BAD_INIT = {
    "threaded": """
from pumpkin import Seed
class Bad(Seed):
    consumes = "N"
    workers = 2
    def __init__(self):
        raise ValueError("no config")
    def run(self, n):
        pass
""",
    "inline": """
from pumpkin import Seed
class Bad(Seed):
    consumes = "N"
    inline = True
    def __init__(self):
        raise ValueError("no config")
    def run(self, n):
        pass
""",
    "processes": """
from pumpkin import Seed
class Bad(Seed):
    consumes = "N"
    processes = 2
    def __init__(self):
        raise ValueError("no config")
    def run(self, n):
        pass
""",
    "legacy": """###START-CONF
##{"object_name": "Bad", "object_poi": "bad-1",
## "parameters": [{"name": "n", "type": "Int", "state": "N"}],
## "return": [{"name": "n", "type": "Int", "state": "DONE"}]}
##END-CONF
from pumpkin import *
class Bad(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        raise ValueError("no config")
    def run(self, pkt, n):
        self.dispatch(pkt, n, "DONE")
""",
}


@pytest.mark.parametrize("kind", sorted(BAD_INIT))
def test_a_seed_whose_init_raises_is_disabled_and_the_others_run(tmp_path, caplog, kind):
    seeds = write_seeds(
        tmp_path / "seeds",
        bad=BAD_INIT[kind],
        double=DOUBLE,
        sink=RECORDER.format(state="N"),
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()  # the daemon is up: no exception, whatever kind of seed failed
        try:
            await async_wait_until(lambda: "Bad" in d.disabled, what="Bad disabled")
            reason = "seed Bad: __init__ raised ValueError: no config"
            assert f"Seed Bad cannot run ({reason}): disabled" in caplog.text
            assert 'bad.py", line' in caplog.text and 'raise ValueError("no config")' in caplog.text  # the traceback
            assert "Bad" not in d.automaton.seeds() and "Bad" not in {s["name"] for s in d._seed_summaries()}
            assert list(d.automaton.consumers(tags.parse("N"))) == ["Sink"]
            d.inject("M", 21)  # through the working seeds: Double, then Sink
            await async_wait_until(lambda: sink_module(d).SEEN, what="the working seeds' packet")
            assert [data for data, _, _ in sink_module(d).SEEN] == [42]
            assert d.router.waiting.counts() == {} and d.failed.counts == {}
            assert not d.enable_seed("Bad", True) and "Bad" in d.disabled  # it cannot run: it stays out
        finally:
            await d.stop()

    asyncio.run(main())


DOUBLE = """
from pumpkin import Seed
class Double(Seed):
    consumes = "M"
    emits = "N"
    def run(self, n):
        return 2 * n
"""


def test_seed_code_that_exits_or_interrupts_fails_its_own_work_never_the_daemon(tmp_path, caplog):
    """sys.exit() or KeyboardInterrupt in a seed file's class body, __init__, on_load or run is a seed fault."""
    seeds = write_seeds(
        tmp_path / "seeds",
        at_import="""
from pumpkin import Seed
class Gone(Seed):
    consumes = "N"
    raise KeyboardInterrupt
""",
        exits_in_init="""
import sys
from pumpkin import Seed
class ExitsInInit(Seed):
    consumes = "N"
    inline = True
    def __init__(self):
        sys.exit(2)
    def run(self, n):
        pass
""",
        interrupted_on_load="""
from pumpkin import Seed
class InterruptedOnLoad(Seed):
    consumes = "N"
    def on_load(self):
        raise KeyboardInterrupt
    def run(self, n):
        pass
""",
        quitter="""
import sys
from pumpkin import Seed
class Quitter(Seed):
    consumes = "Q"
    emits = "N"
    inline = True
    def run(self, n):
        if n == "quit":
            sys.exit("bye")
        return n
""",
        sink=RECORDER.format(state="N"),
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        try:
            assert "at_import.py: importing the seed raised KeyboardInterrupt" in caplog.text
            assert "Gone" not in d.specs
            await async_wait_until(
                lambda: {"ExitsInInit", "InterruptedOnLoad"} <= d.disabled, what="the two seeds disabled"
            )
            assert "seed ExitsInInit: __init__ raised SystemExit: 2" in caplog.text
            assert "seed InterruptedOnLoad: on_load raised KeyboardInterrupt" in caplog.text
            d.inject("Q", "quit")  # fails that packet only
            d.inject("Q", "go on")
            await async_wait_until(lambda: sink_module(d).SEEN, what="the next packet through Quitter")
            assert [data for data, _, _ in sink_module(d).SEEN] == ["go on"]
            assert d.failed.counts == {"seed-error": 1}
            assert "seed Quitter raised SystemExit: bye" in caplog.text
        finally:
            await d.stop()

    asyncio.run(main())


def test_a_seed_with_processes_runs_in_worker_processes_and_survives_a_dead_worker(tmp_path):
    """processes = 2: packets run in two worker processes (not the daemon's), a raising packet fails alone, and a
    worker killed under a packet fails that packet with the reason while a new pool takes the next ones."""
    seeds = write_seeds(
        tmp_path / "seeds",
        heavy="""
import os
from pumpkin import Seed
class Heavy(Seed):
    consumes = "N"
    emits = "R"
    processes = 2
    def on_load(self):
        self.seen = 0
    def run(self, n):
        self.seen += 1
        if n == 3:
            raise ValueError("three is not allowed")
        if n == 99:
            os._exit(1)  # the worker dies under this packet
        return [n, sum(i * i for i in range(20000)), os.getpid()]
""",
        sink=RECORDER.format(state="R"),
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        try:
            for n in range(12):
                d.inject("N", n)
            seen = sink_module(d).SEEN
            await async_wait_until(lambda: len(seen) == 11, timeout_s=60, what="11 of 12 through the pool")
            assert sorted(s[0][0] for s in seen) == [n for n in range(12) if n != 3]
            pids = {s[0][2] for s in seen}
            assert os.getpid() not in pids and 1 <= len(pids) <= 2
            assert d.failed.counts == {"seed-error": 1}
            d.inject("N", 99)
            await async_wait_until(lambda: d.failed.counts["seed-error"] == 2, timeout_s=60, what="the dead worker")
            reasons = [p.read_text() for p in (tmp_path / "a/failed").glob("*.error")]
            assert any("its worker process failed" in r for r in reasons), reasons
            d.inject("N", 100)
            await async_wait_until(lambda: len(seen) == 12, timeout_s=60, what="a packet after the new pool")
            assert seen[-1][0][0] == 100
        finally:
            await d.stop()

    asyncio.run(main())


def test_undeclared_state_and_unsendable_data_are_reported(tmp_path):
    seeds = write_seeds(
        tmp_path / "seeds",
        liar="""
from pumpkin import Seed, Emit
class Liar(Seed):
    consumes = "IN"
    emits = ["A", "B"]
    def run(self, x):
        yield Emit(x, "A")
        yield Emit(x, "NOT_DECLARED") if x == "undeclared" else Emit(object(), "B")
""",
        sink=RECORDER.format(state="A"),
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        try:
            d.inject("IN", "undeclared")
            d.inject("IN", "bad")
            await async_wait_until(lambda: d.failed.counts["bad-data"] == 1, what="bad data to be reported")
            await async_wait_until(lambda: d.failed.counts["undeclared-state"] == 1, what="the undeclared state")
            assert sink_module(d).SEEN == []  # the whole input fails: nothing it emitted goes out
            reasons = " ".join(p.read_text() for p in (tmp_path / "a/failed").glob("*.error"))
            assert (
                "emitted state 'NOT_DECLARED', which it does not declare (declared: default:*:A, default:*:B)"
                in reasons
            )
            assert "neither JSON-serialisable nor bytes" in reasons
        finally:
            await d.stop()

    asyncio.run(main())


def test_packets_wait_for_a_seed_and_flow_when_it_arrives(tmp_path):
    seeds = write_seeds(tmp_path / "later", sink=RECORDER.format(state="LATE"))
    write_seeds(tmp_path / "none", other=RECORDER.format(state="OTHER"))

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=tmp_path / "none"))
        await d.start()
        try:
            for n in range(3):
                d.inject("LATE", n)
            d.inject("OTHER", "not delayed")
            other = sink_module(d).SEEN
            await async_wait_until(lambda: other, what="other traffic to flow while LATE waits")
            assert d.router.waiting.counts() == {"default:*:LATE": 3}
            spec = loader.load([seeds / "sink.py"], "default").seeds[0]
            object.__setattr__(spec, "name", "LateSink")
            d.add_seed(spec)
            late = sink_module(d, "LateSink").SEEN
            await async_wait_until(lambda: len(late) == 3, what="waiting packets to flow to the new seed")
            assert [s[0] for s in late] == [0, 1, 2]
        finally:
            await d.stop()

    asyncio.run(main())


def test_packets_past_memory_wait_on_disk_flow_in_order_and_are_saved_at_stop(tmp_path):
    seeds = write_seeds(tmp_path / "later", sink=RECORDER.format(state="LATE"))
    write_seeds(tmp_path / "none", other=RECORDER.format(state="OTHER"))
    (tmp_path / "a" / "spool").mkdir(parents=True)
    (tmp_path / "a" / "spool" / "junk.jsonl").write_text("left by a crash\n")

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=tmp_path / "none", flags={"routing.waiting_max_packets": "10"}))
        await d.start()
        spool = tmp_path / "a" / "spool"
        try:
            for n in range(300):
                d.inject("LATE", n)
            assert d.router.waiting.counts() == {"default:*:LATE": 300} and d.router.waiting.in_memory == 10
            assert [f.name for f in spool.iterdir()] == ["000001-000000.jsonl"] and d.failed.counts == {}
            spec = loader.load([seeds / "sink.py"], "default").seeds[0]
            object.__setattr__(spec, "name", "LateSink")
            d.add_seed(spec)
            late = sink_module(d, "LateSink").SEEN
            await async_wait_until(lambda: len(late) == 300, what="spooled packets to flow to the new seed")
            assert [s[0] for s in late] == list(range(300)) and not any(spool.iterdir())
        finally:
            await d.stop()

    asyncio.run(main())


def test_spooled_packets_are_saved_to_pending_at_a_clean_stop(tmp_path):
    write_seeds(tmp_path / "none", other=RECORDER.format(state="OTHER"))

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=tmp_path / "none", flags={"routing.waiting_max_packets": "10"}))
        await d.start()
        try:
            for n in range(100):
                d.inject("LATE", n)
            assert len(d.router.waiting) == 100 and d.router.waiting.in_memory == 10
        finally:
            await d.stop()
        saved = [json.loads(line) for f in sorted((tmp_path / "a" / "pending").glob("*.jsonl")) for line in f.open()]
        assert [doc["data"] for doc in saved] == list(range(100))
        assert not any((tmp_path / "a" / "spool").iterdir())

    asyncio.run(main())


def test_malformed_packets_from_the_network_are_kept_and_the_daemon_goes_on(tmp_path):
    seeds = write_seeds(tmp_path / "seeds", sink=RECORDER.format(state="IN"))

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        ctx = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        push.connect(d.transport.data_endpoints[0])
        try:
            push.send_multipart([b"PMK1", b"{broken", b"1"])
            push.send_multipart([b"garbage"])
            push.send_multipart(codec.encode(codec.Packet(d.ids.root(), tags.parse("IN"), "fine")))
            await async_wait_until(lambda: sink_module(d).SEEN, what="the good packet after two bad ones")
            assert d.inbound.bad_inbound == 2
            raws = sorted((tmp_path / "a/failed").glob("*.raw"))
            assert len(raws) == 2
            assert "header is not JSON" in raws[0].with_suffix(".error").read_text()
        finally:
            push.close(0)
            await d.stop()

    asyncio.run(main())


def test_two_daemons_route_over_zeromq_when_introduced(tmp_path, capfd):
    hello = ROOT / "seeds/helloworld"

    async def main():
        a = Daemon(cfg(tmp_path, "a", seeds=[hello / "inject.py", hello / "extract.py"]))
        b = Daemon(cfg(tmp_path, "b", seeds=[hello / "greet.py"]))
        await a.start()
        await b.start()
        try:
            await async_wait_until(lambda: a.router.waiting.counts(), what="World to wait for a greeter")
            a.learn_peer(
                b.node_id,
                b.transport.data_endpoints[0],
                [SeedInfo("greet", b.specs["greet"].inputs, b.specs["greet"].outputs)],
            )
            b.learn_peer(a.node_id, a.transport.data_endpoints[0], [SeedInfo("extract", a.specs["extract"].inputs, ())])
            await async_wait_until(lambda: a.router.counters["extracted"], what="the greeting back on A")
            assert b.snapshot()["seeds"]["greet"]["processed"] == 1
            a.forget_peer(b.node_id)
            assert a.automaton.consumers(tags.parse("String:UNGREETED")) == {}
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())
    assert "Greeting: Hello World" in capfd.readouterr().out


def test_waiting_packets_survive_a_restart(tmp_path):
    seeds = write_seeds(tmp_path / "seeds", sink=RECORDER.format(state="KEEP"))
    write_seeds(tmp_path / "none", other=RECORDER.format(state="OTHER"))

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=tmp_path / "none"))
        await d.start()
        d.inject("KEEP", {"n": 1})
        await d.stop()
        assert list((tmp_path / "a/pending").glob("*.jsonl"))
        d2 = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d2.start()
        try:
            assert d2.node_id == d.node_id
            await async_wait_until(lambda: sink_module(d2).SEEN, what="the saved packet after restart")
            assert sink_module(d2).SEEN[0][0] == {"n": 1}
        finally:
            await d2.stop()

    asyncio.run(main())


def test_group_and_explicit_endpoints_are_honoured(tmp_path, capfd):
    async def main():
        c = config.load(
            env={},
            flags={
                "node.workdir": str(tmp_path / "g"),
                "discovery.enable": "false",
                "node.group": "lab",
                "endpoint.endpoints": f"ipc://{tmp_path}/explicit",
            },
        )
        d = Daemon(c)
        await d.start()
        try:
            assert d.transport.data_endpoints == [f"ipc://{tmp_path}/explicit"]
            assert {str(t) for t in d.automaton.states()} == {
                "lab:Seed:INJECTION",
                "lab:String:UNGREETED",
                "lab:String:GREETING",
                "lab:Seed:EXTRACTION",
            }
            await async_wait_until(lambda: d.router.counters["extracted"], what="the greeting in group lab")
        finally:
            await d.stop()

    asyncio.run(main())
    assert "Greeting: Hello World" in capfd.readouterr().out


LEGACY_SPLITTER = """
###START-CONF
##{
##"object_name": "splitter",
##"object_poi": "my-splitter-1",
##"parameters": [ {"name": "line", "type": "String", "state": "LINE|TEXT", "required": true} ],
##"return": [ {"name": "word", "type": "String", "state": "WORD"},
##            {"name": "count", "type": "Int", "state": "COUNT"} ]
##}
##END-CONF

from pumpkin import *

class splitter(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def on_load(self):
        self.lines = 0

    def run(self, pkt, line):
        self.lines += 1
        for word in line.split():
            self.fork_dispatch(pkt, word, "WORD")
        self.dispatch(pkt, self.lines, "COUNT")
"""


def test_a_legacy_seed_with_state_alternatives_and_fork_dispatch_runs_unchanged(tmp_path):
    seeds = write_seeds(
        tmp_path / "seeds",
        splitter=LEGACY_SPLITTER,
        words=RECORDER.format(state="String:WORD"),
        counts=RECORDER.format(state="Int:COUNT").replace("class Sink", "class Counts"),
    )

    async def main():
        d = Daemon(cfg(tmp_path, "a", taskdir=seeds))
        await d.start()
        try:
            assert d.specs["splitter"].legacy and d.specs["splitter"].manifest["object_poi"] == "my-splitter-1"
            d.inject("String:LINE", "hello brave new world")
            d.inject("String:TEXT", "again")
            words, counts = sink_module(d).SEEN, sink_module(d, "Counts").SEEN
            await async_wait_until(lambda: len(words) == 5 and len(counts) == 2, what="5 words and 2 counts")
            assert sorted(w[0] for w in words) == ["again", "brave", "hello", "new", "world"]
            assert sorted(c[0] for c in counts) == [1, 2]  # on_load state kept across packets
            assert len({w[2] for w in words}) == 5  # every emitted packet has its own id
        finally:
            await d.stop()

    asyncio.run(main())


def test_a_packet_addressed_to_a_disabled_seed_waits_instead_of_running(tmp_path):
    hello = ROOT / "seeds/helloworld"

    async def main():
        b = Daemon(cfg(tmp_path, "b", seeds=[hello / "greet.py"]))
        await b.start()
        try:
            b.enable_seed("greet", False)
            # A peer that has not heard of the change yet sends a packet addressed to greet here.
            late = codec.Packet(b.ids.root(), tags.parse("String:UNGREETED"), "late")
            b.mesh.on_packet(late, "greet", "peer-that-did-not-hear", time.monotonic())
            assert b.router.waiting.counts() == {"default:String:UNGREETED": 1}
            assert b.snapshot()["seeds"]["greet"]["processed"] == 0
            b.enable_seed("greet", True)
            await async_wait_until(
                lambda: b.snapshot()["seeds"]["greet"]["processed"] == 1,
                what="the packet to run once greet is enabled again",
            )
        finally:
            await b.stop()

    asyncio.run(main())


def test_a_burst_into_a_slow_peer_is_paced_by_flow_control_and_nothing_is_lost(tmp_path):
    """An injector yielding 5000 packets at once into a slower seed on a peer: the sender keeps at most its
    window unacknowledged, the injector is throttled instead of failing packets, and every packet arrives once."""
    from pumpkin.mesh import CREDIT_PER_WORKER

    seeds = write_seeds(
        tmp_path / "seeds",
        burst="""
import threading
from pumpkin import Seed
GO = threading.Event()
class Burst(Seed):
    emits = "N"
    def run(self):
        GO.wait(30)
        yield from range(5000)
""",
        slow="""
import time
from pumpkin import Seed
SEEN = []
class Slow(Seed):
    consumes = "N"
    def run(self, n):
        time.sleep(0.0003)
        SEEN.append(n)
""",
    )

    async def main():
        b = Daemon(cfg(tmp_path, "b", seeds=[seeds / "slow.py"]))
        await b.start()
        a = Daemon(cfg(tmp_path, "a", seeds=[seeds / "burst.py"]))
        await a.start()
        try:
            a.learn_peer(b.node_id, b.transport.data_endpoints[0], [SeedInfo("Slow", b.specs["Slow"].inputs, ())])
            b.learn_peer(a.node_id, a.transport.data_endpoints[0], [])
            sink_module(a, "Burst").GO.set()
            most = 0

            def done() -> bool:
                nonlocal most
                most = max(most, a.mesh.inflight_counts().get(b.node_id, 0))
                return len(sink_module(b, "Slow").SEEN) >= 5000 and not a.mesh.inflight_counts().get(b.node_id)

            await async_wait_until(done, timeout_s=60, interval_s=0.01, what="5000 packets through the slow seed")
            assert sorted(sink_module(b, "Slow").SEEN) == list(range(5000))
            assert most <= CREDIT_PER_WORKER
            assert a.router.counters["throttled"] >= 1
            assert a.failed.counts == {} and b.failed.counts == {}
            assert len(a.router.waiting) == 0
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_a_same_host_card_follows_seed_changes_so_peers_stop_saying_hello(tmp_path, monkeypatch):
    # Same-host discovery only (a folder): nothing is sent on any network. A short runtime path: ipc:// limit.
    run = Path(tempfile.mkdtemp(prefix="pmk"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    hello = ROOT / "seeds/helloworld"

    def local_only(name: str, seed: str) -> config.Config:
        flags = {
            "node.workdir": str(tmp_path / name),
            "node.seed": str(hello / seed),
            "endpoint.type": "zmq.IPC",
            "discovery.broadcast": "false",
            "discovery.mdns": "false",
            "discovery.heartbeat_s": "0.05",
            "http.enable": "false",
        }
        return config.load(env={}, flags=flags)

    async def main():
        a = Daemon(local_only("a", "greet.py"))
        b = Daemon(local_only("b", "extract.py"))
        await a.start()
        await b.start()
        try:
            await async_wait_until(lambda: a.node_id in b.peers.peers and b.node_id in a.peers.peers)
            a.enable_seed("greet", False)
            await async_wait_until(lambda: b.peers.peers[a.node_id].seeds_digest == a.origin().digest)
            card = next(x for x in a.discoveries if isinstance(x, LocalDiscovery))._card
            assert card is not None
            # Once a's card says the new digest, b cannot read a stale one any more; what it said before is done.
            await async_wait_until(
                lambda: json.loads(card.read_bytes()).get("dg") == a.origin().digest, what="a's card to follow"
            )
            said_hello = b.peers.entries[a.node_id].hello_sent
            await asyncio.sleep(1.5)  # longer than HELLO_RETRY_S: a stale card would make b say hello again
            assert b.peers.entries[a.node_id].hello_sent == said_hello, "b keeps saying hello: a's card is stale"
        finally:
            await a.stop()
            await b.stop()

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(run, ignore_errors=True)


def test_a_clean_stop_saves_what_a_peer_has_not_acknowledged_and_the_next_start_sends_it_again(tmp_path):
    seeds = write_seeds(
        tmp_path / "seeds",
        hold="""
import threading
from pumpkin import Seed
GO = threading.Event()
class Hold(Seed):
    consumes = "N"
    def run(self, n):
        GO.wait(30)  # holds the packet (unacknowledged to its sender) until the test lets it go
""",
        sink=RECORDER.format(state="N"),
    )

    async def main():
        b = Daemon(cfg(tmp_path, "b", seeds=[seeds / "hold.py"]))
        write_seeds(tmp_path / "none", other=RECORDER.format(state="OTHER"))
        a = Daemon(cfg(tmp_path, "a", taskdir=tmp_path / "none"))
        await b.start()
        await a.start()
        try:
            a.learn_peer(b.node_id, b.transport.data_endpoints[0], [SeedInfo("Hold", b.specs["Hold"].inputs, ())])
            b.learn_peer(a.node_id, a.transport.data_endpoints[0], [])
            for n in range(3):
                await a.accept([a.new_packet("N", n)], "test")  # journaled: the node answers for them
            await async_wait_until(lambda: a.mesh.inflight_counts().get(b.node_id) == 3, what="3 sent to b")
            await a.stop()  # b holds all three: they are saved, not lost
        finally:
            sys.modules[b.specs["Hold"].factory.__module__].GO.set()
            await b.stop()
        saved = [json.loads(line) for f in (tmp_path / "a/pending").glob("*.jsonl") for line in f.read_text().split()]
        assert sorted(doc["data"] for doc in saved) == [0, 1, 2]
        again = Daemon(cfg(tmp_path, "a", seeds=[seeds / "sink.py"]))
        await again.start()
        try:
            await async_wait_until(lambda: len(sink_module(again).SEEN) == 3, what="the saved packets, routed again")
            assert sorted(s[0] for s in sink_module(again).SEEN) == [0, 1, 2]
            await async_wait_until(lambda: again.journal.unfinished() == 0, what="the journal to let go")
        finally:
            await again.stop()

    asyncio.run(main())


def test_a_crash_in_the_daemons_sweep_is_logged_counted_and_the_sweep_runs_again(tmp_path, monkeypatch, caplog):
    from pumpkin import supervisor

    monkeypatch.setattr(supervisor, "RESTART_FIRST_S", 0.01)

    async def main():
        d = Daemon(cfg(tmp_path, "a", flags={"routing.waiting_expiry_s": "0.2"}))
        await d.start()
        try:
            real, calls = d.router.expire, []

            def expire(limit=None):
                calls.append(limit)
                if len(calls) == 1:
                    raise RuntimeError("injected bug in the sweep")
                return real(limit)

            monkeypatch.setattr(d.router, "expire", expire)
            await async_wait_until(lambda: len(calls) >= 3, what="the sweep to run again after its crash")
            return d.snapshot()["tasks"]
        finally:
            await d.stop()

    tasks = asyncio.run(main())
    assert tasks["crashes"] == {"expiry-sweep": 1} and tasks["restarts"] == {"expiry-sweep": 1}
    assert "expiry-sweep" in tasks["running"]
    assert any("task expiry-sweep crashed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_crash_in_the_rx_scanner_is_counted_and_it_scans_again(tmp_path, monkeypatch):
    """Loops started inside components (here the rx folder's) run under the daemon's supervisor too."""
    from pumpkin import supervisor

    monkeypatch.setattr(supervisor, "RESTART_FIRST_S", 0.01)

    async def main():
        d = Daemon(cfg(tmp_path, "a", rx=tmp_path / "rx", flags={"rx.poll_interval_s": "0.05"}))
        await d.start()
        try:
            real, calls = d.dropdir._halt, []

            def halt(reason):
                calls.append(reason)
                if len(calls) == 1:
                    raise RuntimeError("injected bug in the rx scanner")
                return real(reason)

            monkeypatch.setattr(d.dropdir, "_halt", halt)
            await async_wait_until(lambda: len(calls) >= 3, what="the scanner to run again after its crash")
            assert "web-sampler" not in d.snapshot()["tasks"]["running"]  # the page's server: at its first connection
            _, writer = await asyncio.open_connection("127.0.0.1", d.web.port)
            writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{d.web.port}\r\n\r\n".encode())
            await async_wait_until(lambda: "web-sampler" in d.snapshot()["tasks"]["running"], what="the page's loops")
            writer.close()
            return d.snapshot()["tasks"]
        finally:
            await d.stop()

    tasks = asyncio.run(main())
    assert tasks["crashes"] == {"rx-scanner": 1} and tasks["restarts"] == {"rx-scanner": 1}
    assert {"rx-scanner", "rx-watcher", "journal", "inbox", "web-sampler"} <= set(tasks["running"])


def test_a_crash_in_the_journal_stops_the_daemon_with_exit_status_1(tmp_path, monkeypatch, caplog):
    """The journal is critical: without it no intake is durable, so the daemon stops rather than limp on."""

    async def main():
        d = Daemon(cfg(tmp_path, "a"))
        await d.start()
        try:

            class Broken:
                """The committer's wake-up event, broken: its next turn raises (a bug in the loop itself)."""

                def set(self):
                    pass

                def clear(self):
                    raise RuntimeError("injected bug in the journal")

            woken, d.journal._wake = d.journal._wake, Broken()
            woken.set()
            await asyncio.wait_for(d.wait_stopped(), 10)
            return d.exit_status
        finally:
            await d.stop()

    assert asyncio.run(main()) == 1
    assert any("critical task journal crashed" in r.getMessage() for r in caplog.records)


def test_a_failed_start_stops_what_had_started_and_leaves_no_task(tmp_path, monkeypatch):
    """Discovery's start raises: the components before it (journal, seeds, mesh, transport, workdir...) are stopped
    in the stop order, no task is left, and the working directory can be claimed again."""
    stopped: list[str] = []

    async def broken(self):
        raise OSError("injected: discovery cannot start")

    monkeypatch.setattr(Daemon, "_start_discovery", broken)

    async def main():
        d = Daemon(cfg(tmp_path, "a"))
        for component in d.lifecycle.components:
            real = component.stop

            async def stop(name=component.name, real=real):
                stopped.append(name)
                await real()

            object.__setattr__(component, "stop", stop)
        with pytest.raises(OSError, match="injected"):
            await d.start()
        assert d.lifecycle.started == [] and d.supervisor.tasks == {}
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        assert d.transport.ctx.closed and d.journal is not None
        await d.stop()  # a no-op now
        monkeypatch.undo()
        again = Daemon(cfg(tmp_path, "a"))  # the working directory was released
        await again.start()
        await again.stop()

    asyncio.run(main())
    assert stopped == [
        "expiry-sweep", "seeds", "failed", "tx", "mesh", "discovery", "journal", "core", "transport",
        "supervisor", "workdir",
    ]  # fmt: skip


def test_the_mesh_asks_for_a_beacon_to_one_host_or_to_the_whole_lan(tmp_path):
    from unittest import mock

    from pumpkin.actions import BROADCAST
    from pumpkin.discovery import BeaconDiscovery

    d = Daemon(cfg(tmp_path, "a"))
    beacons = mock.create_autospec(BeaconDiscovery, instance=True)
    d.discoveries = [mock.create_autospec(LocalDiscovery, instance=True), beacons]
    d._beacon_to("10.7.0.5")  # a peer that does not hear our broadcasts
    d._beacon_to(BROADCAST)  # our seeds changed on a crowded LAN (Mesh.announce)
    assert beacons.send_to.call_args_list == [mock.call("10.7.0.5")]
    assert beacons.send_now.call_count == 1
