"""The rx drop folder and ``pmk inject`` as a user meets them: real pmk processes, real files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers import wait_until
from tests.multiprocess.test_pmk import client

HELLO = ROOT / "seeds" / "helloworld"
FAST = ("--endpoint.type", "zmq.IPC", "--rx.settle_s", "0.2")

BLOB_SEED = """
import hashlib
from pumpkin import Seed

class Digest(Seed):
    consumes = "BLOB"
    def run(self, data):
        print(f"blob {type(data).__name__} {len(data)} {hashlib.sha256(data).hexdigest()}")
"""

SLOW_GREET = """
import time
from pumpkin import Seed

class Greet(Seed):
    consumes = "String:UNGREETED"
    emits = "String:GREETING"
    def run(self, name):
        time.sleep(0.004)
        return f"Hello {name}"
"""


def drop(rx: Path, rel: str, content: bytes | str) -> Path:
    """Put a file into the folder the safe way: write a temporary name, then rename."""
    path = rx / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content.encode() if isinstance(content, str) else content)
    os.replace(tmp, path)
    return path


def files(folder: Path) -> list[Path]:
    """The files a reader would take: not the dot-files a writer fills before renaming them (the tx writer's
    ``.name.tmp``, which a kill -9 can leave until the restarted daemon writes that result again)."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def results(tx: Path) -> list[str]:
    """The data of every result file the extract seed wrote."""
    return [json.loads(p.read_text())["data"] for p in files(tx / "extract")]


def legacy_packet(name: str) -> str:
    doc = json.loads((HELLO / "data.pkt").read_text())
    doc[-1]["data"] = name
    return json.dumps(doc)


def test_legacy_pkt_file_greets_jupiter_and_moves_to_done(pmk, tmp_path):
    rx = tmp_path / "rx"
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    drop(rx, "data.pkt", legacy_packet("Jupiter"))
    p.wait_for("Greeting: Hello Jupiter")
    wait_until(lambda: (rx / "done" / "data.pkt").exists(), 10, what="data.pkt in done/")
    assert not (rx / "data.pkt").exists() and files(rx / "failed") == []
    assert p.count("Greeting: Hello Jupiter") == 1


def test_legacy_code_field_is_never_run_and_is_logged(pmk, tmp_path):
    rx = tmp_path / "rx"
    witness = tmp_path / "pwned"
    doc = json.loads(legacy_packet("Saturn"))
    doc[0]["code"] = f"open({str(witness)!r}, 'w').write('ran')"
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    drop(rx, "code.pkt", json.dumps(doc))
    p.wait_for("Greeting: Hello Saturn")
    assert p.stderr_has("ignored the legacy header field 'code'")
    assert not witness.exists()


def test_modern_forms_documents_lines_and_raw_files(pmk, tmp_path):
    rx, tx = tmp_path / "rx", tmp_path / "tx"
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "digest.py").write_text(BLOB_SEED)
    p = pmk(*FAST, "--rx", str(rx), "--tx", str(tx), "--taskdir", str(HELLO), "--taskdir", str(seeds))
    p.wait_for("Greeting: Hello World")
    drop(rx, "mars.json", '{"state": "UNGREETED", "data": "Mars"}')
    drop(rx, "names.jsonl", '{"state": "UNGREETED", "data": "Io"}\n\n{"state": "String:UNGREETED", "data": "Europa"}\n')
    blob = bytes(range(256)) * 40 + b"\x00\xff"
    drop(rx, "BLOB/photo.jpg", blob)
    for name in ("Mars", "Io", "Europa"):
        p.wait_for(f"Greeting: Hello {name}")
    p.wait_for(f"blob bytes {len(blob)} {hashlib.sha256(blob).hexdigest()}")
    wait_until(lambda: len(files(rx / "done")) == 3, 10, what="three files in done/")
    assert [p.relative_to(rx / "done").as_posix() for p in files(rx / "done")] == [
        "BLOB/photo.jpg",
        "mars.json",
        "names.jsonl",
    ]
    wait_until(lambda: len(results(tx)) == 4, 10, what="four results in tx/")
    assert sorted(results(tx)) == ["Hello Europa", "Hello Io", "Hello Mars", "Hello World"]
    mars = next(f for f in files(tx / "extract") if f.name.startswith("mars-"))
    assert json.loads(mars.read_text())["meta"]["rx"] == {"file": "mars.json"}


def test_bad_files_go_to_failed_with_a_reason_and_the_daemon_keeps_going(pmk, tmp_path):
    rx = tmp_path / "rx"
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    drop(rx, "broken.json", '{"state": "UNGREETED", "data": ')
    drop(rx, "empty.json", "")
    drop(rx, "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    drop(rx, "nostate.json", '{"data": "Mars"}')
    drop(rx, "lines.jsonl", '{"state": "UNGREETED", "data": "A"}\n{"state": "UNGREETED", "data": "B"\n')
    drop(rx, "bad state/x.bin", b"x")
    wait_until(lambda: len(files(rx / "failed")) == 12, 10, what="6 files and 6 reasons in failed/")
    reasons = {f.name[: -len(".error")]: f.read_text() for f in files(rx / "failed") if f.name.endswith(".error")}
    assert all(len(r.splitlines()) == 1 for r in reasons.values()), reasons
    assert "not valid JSON" in reasons["broken.json"]
    assert "the file is empty" in reasons["empty.json"]
    assert "binary, not JSON text" in reasons["image.png"] and "rx/UNGREETED/photo.jpg" in reasons["image.png"]
    assert "no 'state' key" in reasons["nostate.json"]
    assert reasons["lines.jsonl"].startswith("lines.jsonl: line 2: ")
    assert "nothing from this file" in reasons["lines.jsonl"]
    assert "is not a state" in reasons["x.bin"]
    assert (rx / "failed" / "bad state" / "x.bin").read_bytes() == b"x"
    assert not p.stdout_has("Hello A")  # all or nothing: line 1 was not injected either
    drop(rx, "good.json", '{"state": "UNGREETED", "data": "Ceres"}')
    p.wait_for("Greeting: Hello Ceres")
    assert p.proc.poll() is None


def test_a_thousand_files_dropped_at_once_are_each_processed_once(pmk, tmp_path):
    rx, tx, staging = tmp_path / "rx", tmp_path / "tx", tmp_path / "staging"
    staging.mkdir()
    n = 1000
    for i in range(n):
        (staging / f"f{i:04d}.json").write_text(json.dumps({"state": "UNGREETED", "data": f"n{i}"}))
    p = pmk(
        *FAST, "--rx", str(rx), "--tx", str(tx), "--seed", str(HELLO / "greet.py"), "--seed", str(HELLO / "extract.py")
    )
    p.wait_for("Seed loaded: greet", stream="err")
    wait_until(lambda: (rx / "done").is_dir(), 10, what="the rx folder to be watched")
    for f in sorted(staging.iterdir()):
        os.replace(f, rx / f.name)
    wait_until(lambda: len(files(tx / "extract")) >= n, 60, interval_s=0.2, what=f"{n} results")
    wait_until(lambda: len(files(rx / "done")) == n, 10, what=f"{n} files in done/")
    assert sorted(results(tx)) == sorted(f"Hello n{i}" for i in range(n))
    greetings = [line for line in p.out if line.startswith("Greeting: ")]
    assert len(greetings) == n and len(set(greetings)) == n
    assert files(rx / "failed") == [] and [f for f in rx.iterdir() if f.is_file()] == []


def test_a_file_written_slowly_is_never_read_half_way(pmk, tmp_path):
    rx = tmp_path / "rx"
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    wait_until(lambda: (rx / "done").is_dir(), 10, what="the rx folder to be watched")
    # A writer that keeps the file open and pauses longer than the settle time between chunks.
    with open(rx / "slow.jsonl", "w") as fh:
        for i in range(4):
            fh.write(f'{{"state": "UNGREETED", "data": "slow{i}"}}\n')
            fh.write('{"state": "UNGREETED", "da')  # half a line: reading now would fail the whole file
            fh.flush()
            time.sleep(0.5)  # the writer's own pace (2.5x the settle time), not a wait for the daemon
            fh.write(f'ta": "half{i}"}}\n')
            fh.flush()
        assert not p.stdout_has("slow0") and (rx / "slow.jsonl").exists()
    wait_until(lambda: p.count("Greeting: Hello ") >= 9, 10, what="the 8 greetings of slow.jsonl")
    wait_until(lambda: (rx / "done" / "slow.jsonl").exists(), 10, what="slow.jsonl in done/")
    assert files(rx / "failed") == []
    assert sorted(line for line in p.out if "slow" in line or "half" in line) == sorted(
        [f"Greeting: Hello slow{i}" for i in range(4)] + [f"Greeting: Hello half{i}" for i in range(4)]
    )


def test_temporary_names_are_left_alone_until_renamed(pmk, tmp_path):
    rx = tmp_path / "rx"
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    for name in ("x.json.tmp", ".x.json", "x.json.part", "x.json~"):
        (rx / name).write_text('{"state": "UNGREETED", "data": "Early"}')
    drop(rx, "marker.json", '{"state": "UNGREETED", "data": "Marker"}')
    p.wait_for("Greeting: Hello Marker")
    assert not p.stdout_has("Hello Early") and (rx / "x.json.tmp").exists()
    os.replace(rx / "x.json.tmp", rx / "x.json")
    p.wait_for("Greeting: Hello Early")
    assert p.count("Greeting: Hello Early") == 1


def test_kill_9_during_a_burst_then_restart_loses_and_duplicates_nothing(pmk, sandbox, tmp_path):
    rx, tx, wd, seeds = tmp_path / "rx", tmp_path / "tx", tmp_path / "node", tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "greet.py").write_text(SLOW_GREET)
    n = 600
    args = (
        *FAST,
        "--rx",
        str(rx),
        "--tx",
        str(tx),
        "--seed",
        str(seeds / "greet.py"),
        "--seed",
        str(HELLO / "extract.py"),
    )

    def dropper() -> None:  # files keep arriving while the daemon is killed and restarted
        for i in range(n):
            drop(rx, f"k{i:04d}.json", json.dumps({"state": "UNGREETED", "data": f"k{i}"}))
            if i % 10 == 9:
                time.sleep(0.01)

    runs = [pmk(*args, workdir=wd)]
    runs[0].wait_for("Watching rx folder", stream="err")
    writer = threading.Thread(target=dropper)
    writer.start()
    try:
        for at_least in (60, 300):  # two kills: during the intake burst, then while the backlog drains
            wait_until(lambda n=at_least: len(files(tx / "extract")) >= n, 60, what=f"{at_least} results")
            runs[-1].stop(signal.SIGKILL)
            assert len(files(tx / "extract")) < n, "the burst was over before the kill; the test proves nothing"
            runs.append(pmk(*args, workdir=wd))
    finally:
        writer.join()
    wait_until(lambda: len(files(tx / "extract")) >= n, 90, interval_s=0.2, what=f"all {n} results")
    wait_until(lambda: not any(f.is_file() for f in rx.iterdir()), 10, what="the rx folder to empty")
    assert sorted(results(tx)) == sorted(f"Hello k{i}" for i in range(n))  # none lost, none duplicated
    assert len(files(tx / "extract")) == n
    assert sorted(f.name for f in files(rx / "done")) == sorted(f"k{i:04d}.json" for i in range(n))
    assert files(rx / "failed") == []

    def unfinished() -> int:
        return json.loads(client(sandbox, "stats", "--workdir", str(wd)).stdout)["journal"]["unfinished"]

    wait_until(lambda: unfinished() == 0, 10, what="the journal to let go of every entry")
    # Seeds may see a packet that was in flight at a kill again (at least once); tx/ holds each result once.
    printed = {line for r in runs for line in r.out if line.startswith("Greeting: ")}
    assert printed == {f"Greeting: Hello k{i}" for i in range(n)}


def test_pmk_inject_sends_files_and_bytes_and_answers_with_ids(pmk, sandbox, tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "digest.py").write_text(BLOB_SEED)
    p = pmk("--endpoint.type", "zmq.IPC", "--taskdir", str(HELLO), "--taskdir", str(seeds))
    p.wait_for("Greeting: Hello World")
    wd = ("--workdir", str(p.workdir))
    pkt = tmp_path / "jupiter.pkt"
    pkt.write_text(legacy_packet("Jupiter"))
    r = client(sandbox, "inject", "--file", str(pkt), *wd)
    assert r.returncode == 0, r.stderr
    pid, state = r.stdout.split()
    assert pid.count(":") == 3 and state == "default:String:UNGREETED"
    p.wait_for("Greeting: Hello Jupiter")
    lines = tmp_path / "two.jsonl"
    lines.write_text('{"state": "UNGREETED", "data": "Titan"}\n{"state": "UNGREETED", "data": "Rhea"}\n')
    r = client(sandbox, "inject", "--file", str(lines), *wd)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r
    p.wait_for("Greeting: Hello Rhea")
    blob = tmp_path / "photo.jpg"
    blob.write_bytes(b"\xff\xd8\xff\x00" * 1000)
    r = client(sandbox, "inject", "BLOB", "--file", str(blob), *wd)
    assert r.returncode == 0 and r.stdout.split()[1] == "default:*:BLOB", r
    p.wait_for(f"blob bytes 4000 {hashlib.sha256(blob.read_bytes()).hexdigest()}")


def test_pmk_inject_explains_what_it_cannot_do(pmk, sandbox, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": 1}')
    r = client(sandbox, "inject", "--file", str(bad), "--workdir", str(tmp_path / "none"))
    assert r.returncode == 1 and "no pmk is running in" in r.stderr
    p = pmk("--endpoint.type", "zmq.IPC")
    p.wait_for("Greeting: Hello World")
    wd = ("--workdir", str(p.workdir))
    r = client(sandbox, "inject", "--file", str(bad), *wd)
    assert r.returncode == 1 and r.stderr.strip().startswith("pmk: the daemon refused: the packet document has no")
    r = client(sandbox, "inject", "--file", str(tmp_path / "missing.json"), *wd)
    assert r.returncode == 1 and "cannot read" in r.stderr and "missing.json" in r.stderr
    r = client(sandbox, "inject", "UNGREETED", *wd)
    assert r.returncode == 1 and "needs STATE and DATA, or --file" in r.stderr
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (2 << 20))
    r = client(sandbox, "inject", "BLOB", "--file", str(big), *wd)
    assert r.returncode == 1 and "drop it into the daemon's rx folder instead" in r.stderr
    p.stop(signal.SIGKILL)
    r = client(sandbox, "inject", "UNGREETED", "Mars", *wd)
    assert r.returncode == 1 and "stopped without cleaning up" in r.stderr


def test_a_bad_rx_setting_stops_start_up_with_one_line(sandbox, tmp_path):
    (tmp_path / "afile").write_text("")
    r = client(sandbox, "--rx", str(tmp_path / "afile"), "--workdir", str(tmp_path / "w"))
    assert r.returncode == 2 and r.stderr.strip() == f"pmk: config key rx.dir: {tmp_path / 'afile'} is not a folder"
    r = client(sandbox, "--rx", str(tmp_path / "in"), "--rx.settle_s", "soon", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 2 and r.stderr.strip() == "pmk: config key rx.settle_s: 'soon' is not a valid float"


DURABLE_SOURCE = """
from pumpkin import Seed

class Source(Seed):
    emits = "NUMBER"
    durable = True
    def run(self):
        yield from range(200)
"""
NUMBER_SINK = """
from pumpkin import Seed

class Sink(Seed):
    consumes = "NUMBER"
    def run(self, n):
        print(f"number {n}")
"""


def test_a_durable_injectors_packets_survive_kill_9(pmk, sandbox, tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "source.py").write_text(DURABLE_SOURCE)
    (seeds / "sink.py").write_text(NUMBER_SINK)
    wd = tmp_path / "node"
    first = pmk("--endpoint.type", "zmq.IPC", "--seed", str(seeds / "source.py"), workdir=wd)

    def unfinished() -> int:
        r = client(sandbox, "stats", "--workdir", str(wd))
        return json.loads(r.stdout)["journal"]["unfinished"] if r.returncode == 0 else -1

    # Nobody consumes NUMBER here: the 200 packets wait in memory, and the journal answers for them.
    wait_until(lambda: unfinished() == 200, 20, what="the injector's 200 packets in the journal")
    first.stop(signal.SIGKILL)
    second = pmk("--endpoint.type", "zmq.IPC", "--seed", str(seeds / "sink.py"), workdir=wd)
    wait_until(lambda: second.count("number ") >= 200, 20, what="the 200 packets after the restart")
    numbers = sorted(int(line.split()[1]) for line in second.out if line.startswith("number "))
    assert numbers == list(range(200))
    wait_until(lambda: unfinished() == 0, 10, what="the journal to let go")
