"""README's samples are what the program prints: each is run as README says, and compared line by line.

Times, node ids, hex ids, addresses, numbers and paths differ from run to run and machine to machine: both sides
have them replaced by placeholders before the comparison (``shape``); everything else must be the same text.
"""

from __future__ import annotations

import re
import shutil

from tests.conftest import ROOT
from tests.helpers import wait_until

README = (ROOT / "README.md").read_text()
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


def shape(line: str) -> str:
    """``line`` with what varies between runs replaced by placeholders."""
    line = line.removeprefix("^C")  # the terminal's echo of Ctrl-C, shown in README
    line = TIME.sub("<TIME> ", line)
    line = re.sub(r"(/[\w.+~-]+)+/?", "<PATH>", line)
    line = re.sub(r"\b[\w.-]+-[0-9a-f]{8}\b", "<NODE>", line)
    return name_shape(line)


def name_shape(name: str) -> str:
    """``name`` with numbers, and hex ids (with a digit in them), replaced by ``<N>``."""
    return re.sub(r"[0-9a-f]*\d[0-9a-f]*", "<N>", name)


def block_after(marker: str, first_line: str) -> list[str]:
    """The lines of README's first code block after ``marker`` that follow its line ``first_line``."""
    rest = README[README.index(marker) :]
    body = rest[rest.index("```") :].split("\n", 1)[1]
    lines = body[: body.index("```")].splitlines()
    return lines[lines.index(first_line) + 1 :] if first_line else lines


def is_subsequence(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in wanted)


def test_the_hello_world_sample_is_what_pmk_prints(pmk):
    sample = block_after("## Hello world, the original way", "pmk --endpoint.type zmq.IPC")
    p = pmk("--endpoint.type", "zmq.IPC")
    p.wait_for("Greeting: Hello World")
    p.wait_for("mDNS: registered", stream="err")
    assert p.stop() == 0
    got_log = [shape(line) for line in p.err]
    want_log = [shape(line) for line in sample if TIME.match(line.removeprefix("^C"))]
    want_out = [line for line in sample if not TIME.match(line.removeprefix("^C"))]
    assert want_out == p.out == ["Greeting: Hello World"]
    missing = [line for line in want_log if line not in got_log]
    printed = "\n--- pmk:\n" + "\n".join(p.err)
    assert not missing, "README shows lines pmk did not print:\n" + "\n".join(missing) + printed
    assert is_subsequence(want_log, got_log), "README's lines come in another order than pmk's:\n" + "\n".join(p.err)
    unshown = [line for line in p.err if shape(line) not in want_log]
    assert not unshown, "pmk printed lines that README does not show:\n" + "\n".join(unshown)


def test_the_failure_sample_is_what_pmk_logs_and_keeps(pmk):
    sample = block_after("**Failures.**", "")
    warning = next(line for line in sample if " WARNING " in line)
    listing = sample[sample.index(next(line for line in sample if line.startswith("$ ls"))) + 1 :]
    p = pmk("--endpoint.type", "zmq.IPC", "--taskdir", str(ROOT / "seeds" / "live"))
    p.wait_for("seed check raised", timeout_s=30, stream="err")
    assert p.stop() == 0
    logged = next(line for line in p.err if "seed check raised" in line)
    assert shape(logged) == shape(warning)
    kept = sorted(f.name for f in (p.workdir / "failed").iterdir())
    assert [name_shape(n) for n in kept[:2]] == [name_shape(n) for n in listing]
    assert kept[0] in logged and kept[1] in logged  # the log line names both files


def test_the_tx_sample_names_are_what_pmk_writes(pmk, tmp_path):
    rx, tx = tmp_path / "rx", tmp_path / "tx"
    rx.mkdir()
    shutil.copy(ROOT / "seeds" / "helloworld" / "data.pkt", rx)
    start = README.index("**File in, file out.**")
    names = re.findall(r"`OUT/(extract/[\w.-]+)`", README[start : start + 1200])
    assert len(names) == 2
    p = pmk("--endpoint.type", "zmq.IPC", "--rx", str(rx), "--tx", str(tx))
    wait_until(lambda: len(list((tx / "extract").glob("*.json"))) == 2 if (tx / "extract").exists() else False)
    p.stop()
    written = sorted(str(f.relative_to(tx)) for f in (tx / "extract").iterdir())
    assert sorted(name_shape(n) for n in written) == sorted(name_shape(n) for n in names)
