"""The rx drop folder and ``pmk inject`` as a user meets them: real pmk processes, real files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from pumpkin.packet import MAX_NESTING
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


# -- issue 11: what a local user who may write into the rx folder can make a daemon (perhaps root) do ---------------


def rx_stats(sandbox, p) -> dict[str, object]:  # type: ignore[no-untyped-def]
    r = client(sandbox, "stats", "--workdir", str(p.workdir))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["rx"]


def more_scans(sandbox, p, n: int = 3) -> None:  # type: ignore[no-untyped-def]
    """Wait until the daemon has looked at the folder ``n`` more times: what it would have done, it has done."""
    start = rx_stats(sandbox, p)["scans"]
    wait_until(lambda: rx_stats(sandbox, p)["scans"] >= start + n, 10, what=f"{n} more scans of the rx folder")


def reasons(failed: Path) -> dict[str, str]:
    """Relative name in failed/ -> the one line its .error gives."""
    return {
        e.relative_to(failed).as_posix()[: -len(".error")]: e.read_text()
        for e in failed.rglob("*.error")
        if e.is_file()
    }


def watched_inodes(pid: int) -> set[int]:
    """The inodes of every folder the process has an inotify watch on (see proc(5), /proc/PID/fdinfo)."""
    out = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                if line.startswith("inotify wd:"):
                    out.add(int(line.split(" ino:")[1].split()[0], 16))
    return out


def test_symlinks_anywhere_in_the_rx_folder_are_never_followed(pmk, tmp_path):
    rx, private, seeds = tmp_path / "rx", tmp_path / "private", tmp_path / "seeds"
    private.mkdir(mode=0o700)
    (private / "secret.json").write_text('{"state": "UNGREETED", "data": "SECRET"}')
    (private / "secret.bin").write_bytes(b"SECRET")
    seeds.mkdir()
    (seeds / "digest.py").write_text(BLOB_SEED)
    p = pmk(*FAST, "--rx", str(rx), "--taskdir", str(HELLO), "--taskdir", str(seeds))
    p.wait_for("Greeting: Hello World")
    wait_until(lambda: (rx / "failed").is_dir(), 10, what="the rx folder to be watched")
    (rx / "link.json").symlink_to(private / "secret.json")  # a file that is a link
    (rx / "BLOB").mkdir()
    (rx / "BLOB" / "link.bin").symlink_to(private / "secret.bin")  # a link in a state folder
    (rx / "PHOTO").symlink_to(private)  # a state folder that is a link
    drop(rx, "marker.json", '{"state": "UNGREETED", "data": "Marker"}')
    p.wait_for("Greeting: Hello Marker")
    wait_until(lambda: len(reasons(rx / "failed")) == 3, 10, what="three links refused into failed/")
    why = reasons(rx / "failed")
    assert sorted(why) == ["BLOB/link.bin", "PHOTO", "link.json"]
    assert all(r.count("\n") == 1 and "refused: a symbolic link; links are never followed" in r for r in why.values())
    # Moved as they are, links still: nothing was read through them, nothing written where they lead.
    assert os.readlink(rx / "failed" / "link.json") == str(private / "secret.json")
    assert os.readlink(rx / "failed" / "BLOB" / "link.bin") == str(private / "secret.bin")
    assert os.readlink(rx / "failed" / "PHOTO") == str(private)
    assert sorted(f.name for f in private.iterdir()) == ["secret.bin", "secret.json"]
    assert not any("SECRET" in line for line in p.out) and not p.stdout_has("blob bytes")
    # (Waited for: the log line may reach our reader after the failed/ files are there.)
    p.wait_for("refused: a symbolic link", stream="err")
    assert p.proc.poll() is None
    # A link under a name the scan ignores stays, and file events never reach through it either.
    (private / "deeper").mkdir()
    (rx / ".hidden").symlink_to(private)
    (rx / "UNGREETED").mkdir()
    expected = {(rx / name).stat().st_ino for name in ("", "BLOB", "UNGREETED")}
    wait_until(lambda: watched_inodes(p.pid) == expected, 10, what="file events on rx, BLOB and UNGREETED alone")
    drop(rx, "second.json", '{"state": "UNGREETED", "data": "Second"}')
    p.wait_for("Greeting: Hello Second")
    assert watched_inodes(p.pid) == expected


def test_a_symlinked_done_or_failed_stops_intake_with_one_line_and_nothing_is_written_outside(pmk, sandbox, tmp_path):
    # The daemon keeps running (its peers, pmk inject, the page), but takes no file while done/ or failed/ is
    # not its own folder: a writer of the rx folder must not be able to stop the daemon, nor make it write anywhere.
    rx, outside = tmp_path / "rx", tmp_path / "outside"
    for name in ("done", "failed", "later"):
        (outside / name).mkdir(parents=True)
    rx.mkdir()
    (rx / "done").symlink_to(outside / "done")
    (rx / "failed").symlink_to(outside / "failed")
    drop(rx, "good.json", '{"state": "UNGREETED", "data": "Ceres"}')
    drop(rx, "bad.json", '{"state": "UNGREETED", "data": ')
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    p.wait_for("done/ is a symbolic link, not a folder; no file is taken", stream="err")
    more_scans(sandbox, p)
    assert rx_stats(sandbox, p)["halted"] == "done/ is a symbolic link, not a folder"
    assert sum("is a symbolic link, not a folder" in line for line in p.err) == 1  # said once, not every scan
    r = client(sandbox, "inject", "UNGREETED", "Inject", "--workdir", str(p.workdir))
    assert r.returncode == 0, r.stderr
    p.wait_for("Greeting: Hello Inject")
    assert sorted(f.name for f in rx.iterdir()) == ["bad.json", "done", "failed", "good.json"]
    assert not p.stdout_has("Hello Ceres")

    (rx / "done").unlink()  # one fixed: the other is still refused, and named
    p.wait_for("failed/ is a symbolic link, not a folder", stream="err")
    (rx / "failed").unlink()
    p.wait_for("Greeting: Hello Ceres")
    p.wait_for("done/ and failed/ are usable again", stream="err")
    wait_until(lambda: (rx / "failed" / "bad.json.error").exists(), 10, what="bad.json in the real failed/")
    assert (rx / "done" / "good.json").exists() and not (rx / "done").is_symlink()

    # Replaced while the daemon runs: the same refusal, and still nothing outside.
    link = tmp_path / "link"
    link.symlink_to(outside / "later")
    (rx / "done").rename(tmp_path / "old-done")
    # The daemon may make done/ again between the two renames (a folder it finds missing): move that one away too.
    for attempt in range(100):
        try:
            link.rename(rx / "done")  # over an empty folder, rename() fails: it never replaces a folder by a link
            break
        except OSError:
            (rx / "done").rename(tmp_path / f"made-again-{attempt}")
    assert (rx / "done").is_symlink()
    drop(rx, "later.json", '{"state": "UNGREETED", "data": "Later"}')
    wait_until(lambda: rx_stats(sandbox, p).get("halted"), 10, what="intake to stop")
    more_scans(sandbox, p)
    assert (rx / "later.json").exists() and not p.stdout_has("Hello Later")
    assert sorted(outside.rglob("*")) == [outside / n for n in ("done", "failed", "later")]
    assert p.proc.poll() is None


def test_fifos_sockets_and_devices_in_the_folder_never_block_the_daemon(pmk, tmp_path):
    rx = tmp_path / "rx"
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    wait_until(lambda: (rx / "failed").is_dir(), 10, what="the rx folder to be watched")
    os.mkfifo(rx / "pipe.json")  # opened for reading the blocking way, it would wait for a writer for ever
    (rx / "BLOB").mkdir()
    os.mkfifo(rx / "BLOB" / "pipe.bin")
    devices = 0
    if os.geteuid() == 0:  # a device node needs CAP_MKNOD (not ours in a user namespace)
        os.mknod(rx / "null.json", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        devices = 1
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(rx / "sock.json"))
        drop(rx, "after.json", '{"state": "UNGREETED", "data": "After"}')
        p.wait_for("Greeting: Hello After")
        wait_until(lambda: len(reasons(rx / "failed")) == 3 + devices, 10, what="the special files in failed/")
    finally:
        sock.close()
    why = reasons(rx / "failed")
    if devices:
        assert "refused: a device; only regular files are read" in why["null.json"]
    assert "refused: a named pipe (FIFO); only regular files are read" in why["pipe.json"]
    assert "refused: a named pipe (FIFO)" in why["BLOB/pipe.bin"]
    assert "refused: a socket; only regular files are read" in why["sock.json"]
    assert stat.S_ISFIFO((rx / "failed" / "pipe.json").lstat().st_mode)


OTHER_UID = 4242  # no user of the machine needs to have it: as root, files are given to it with chown


def test_hard_links_are_refused_and_another_users_own_file_is_read(pmk, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: files of another uid are made with chown")
    rx, other = tmp_path / "rx", tmp_path / "other"
    other.mkdir(mode=0o700)
    theirs, ours = other / "theirs.json", other / "ours.json"
    theirs.write_text('{"state": "UNGREETED", "data": "THEIR SECRET"}')
    ours.write_text('{"state": "UNGREETED", "data": "OUR SECRET"}')
    for f in (theirs, ours):
        f.chmod(0o600)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    wait_until(lambda: (rx / "failed").is_dir(), 10, what="the rx folder to be watched")
    os.link(theirs, rx / "theirs.json")  # a link to another user's file
    os.link(ours, rx / "ours.json")  # a link to one of the daemon's user's own files: as dangerous
    bob = drop(rx.parent / "staging", "bob.json", '{"state": "UNGREETED", "data": "Bob"}')
    os.chown(bob, OTHER_UID, OTHER_UID)
    os.replace(bob, rx / "bob.json")  # another user's own file, one link: how files reach a daemon run as root
    p.wait_for("Greeting: Hello Bob")
    wait_until(lambda: len(reasons(rx / "failed")) == 2, 10, what="both links in failed/")
    why = reasons(rx / "failed")
    assert all("refused: the file has 2 hard links" in why[n] for n in ("theirs.json", "ours.json")), why
    assert not any("SECRET" in line for line in p.out)
    assert theirs.stat().st_nlink == 2 and theirs.read_text().endswith('"THEIR SECRET"}')  # moved, never read
    assert (rx / "done" / "bob.json").stat().st_uid == OTHER_UID


def test_a_number_out_of_range_fails_its_file_alone_and_the_rest_of_its_batch_goes_through(pmk, tmp_path):
    rx, staging = tmp_path / "rx", tmp_path / "staging"
    staging.mkdir()
    names = [f"good{i}" for i in range(5)]
    for name in names:
        (staging / f"{name}.json").write_text(json.dumps({"state": "UNGREETED", "data": name}))
    (staging / "huge.json").write_text('{"state": "UNGREETED", "data": "Huge", "ttl": 99999999999999999999}')
    (staging / "huge-id.json").write_text('{"state": "UNGREETED", "data": "Huge", "created": "soon"}')
    # A legacy header's ttl is the original's re-send timer, kept and never refused, however large.
    header = '{"box": "0", "ttl": 99999999999999999999}'
    (staging / "old.pkt").write_text(f'[{header}, {{}}, {{"stag": "default:String:UNGREETED", "data": "Old"}}]')
    # Read as JSON, but nested deeper than any writer goes: the journal refuses this file, and it alone.
    (staging / "deep.json").write_text('{"state": "UNGREETED", "data": ' + "[" * 300 + "]" * 300 + "}")
    p = pmk(*FAST, "--rx", str(rx))
    p.wait_for("Greeting: Hello World")
    wait_until(lambda: (rx / "failed").is_dir(), 10, what="the rx folder to be watched")
    for f in sorted(staging.iterdir()):  # in the same moment: well within one settle time, so one batch
        os.replace(f, rx / f.name)
    for name in [*names, "Old"]:
        p.wait_for(f"Greeting: Hello {name}")
    wait_until(lambda: len(reasons(rx / "failed")) == 3, 10, what="the three bad files in failed/")
    why = reasons(rx / "failed")
    assert "'ttl' must be an integer" in why["huge.json"]
    assert "'created' a number" in why["huge-id.json"]
    assert why["deep.json"] == f"deep.json: 'data' nests deeper than {MAX_NESTING} levels\n"
    wait_until(lambda: len(files(rx / "done")) == 6, 10, what="the six good files in done/")
    assert not p.stdout_has("Hello Huge") and p.proc.poll() is None
