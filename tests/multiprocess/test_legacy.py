"""Pipelines written in the original Pumpkin's format (our own seeds, in tests/legacy/seeds) on a real pmk.

Each uses what one of the original's examples relies on: .pkt loads with several inputs (mthreads), a tracer
(system/tracer, with a script in the folder that must not run), a parameter sweep with a working directory and
data files from the taskdir (sa, without R or MATLAB), filter and collector chains (tweeter, no network).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT
from tests.helpers import wait_until
from tests.multiprocess.test_rx import drop, files

LEGACY = ROOT / "tests" / "legacy" / "seeds"
FAST = ("--endpoint.type", "zmq.IPC", "--rx.settle_s", "0.1")


def work(p: object) -> Path:
    """The legacy seeds' working directory (getWorkingDir) of a pmk process."""
    return Path(p.workdir) / "work"  # type: ignore[attr-defined]


def test_pkt_loads_with_several_inputs_and_the_original_ttls(pmk, tmp_path):
    rx = tmp_path / "rx"
    p = pmk(
        *FAST, "--taskdir", str(LEGACY / "jobs" / "work"), "--taskdir", str(LEGACY / "jobs" / "report"), "--rx", str(rx)
    )
    p.wait_for("Watching rx folder", stream="err")
    for i in (1, 2, 3):
        drop(rx, f"job_{i}.pkt", (LEGACY / "jobs" / f"job_{i}.pkt").read_text())
    # data "0.3|,|job3": job[0] is the first input (0.3 s, not the character "0"), job[1] the second.
    for i, ttl in ((1, "600"), (2, "600"), (3, "D")):
        p.wait_for(f"report: job{i} slept 0.{i} of 0.{i} s (ttl {ttl}) on ", 20)
    assert p.count("[SLEPT]") == 3
    wait_until(lambda: len(files(rx / "done")) == 3, 10, what="the three .pkt files in done/")
    assert files(rx / "failed") == []
    log = work(p) / "logs" / "sleeper.log"
    assert "slept 0.3 for job3" in log.read_text()


def test_a_tracer_answers_a_ttl_d_packet_and_the_script_beside_it_never_runs(pmk, tmp_path):
    marker = LEGACY / "probe" / "probe_gen.ran"
    marker.unlink(missing_ok=True)
    rx = tmp_path / "rx"
    p = pmk(*FAST, "--taskdir", str(LEGACY / "probe"), "--rx", str(rx))
    p.wait_for("probe_gen.py (not a seed", stream="err")
    p.wait_for("Watching rx folder", stream="err")
    drop(rx, "probe.pkt", (LEGACY / "probe" / "probe.pkt").read_text())
    p.wait_for("probe answered by ", 20)
    assert p.stdout_has("in group LAB: 2 seed(s), ttl D")
    assert "Received trace" in (work(p) / "logs" / "probe_collector.log").read_text()
    assert not marker.exists()
    assert (work(p) / "probe.pkt").is_file()  # the taskdir's non-Python files are in the working directory


def test_a_parameter_sweep_with_a_working_directory_and_the_taskdirs_files(pmk, tmp_path):
    rx = tmp_path / "rx"
    # A relative --workdir: the model runs wd + "model.sh" with cwd=wd, which needs getWorkingDir() absolute.
    p = pmk(*FAST, "--taskdir", str(LEGACY / "sweep"), "--rx", str(rx), workdir=Path("node"), cwd=tmp_path)
    p.wait_for("Watching rx folder", stream="err")
    drop(rx, "sweep.pkt", (LEGACY / "sweep" / "sweep.pkt").read_text())  # StringCSV:SWEEP: group public
    for line in ("sweep: 2 -> 4", "sweep: 3 -> 9", "sweep: 5 -> 25"):
        p.wait_for(line, 20)
    # stop_func "model": the model runs, and what it dispatches goes nowhere.
    drop(rx, "stop.pkt", (LEGACY / "sweep" / "stop.pkt").read_text())
    for value in (2, 3, 5, 7, 11):
        p.wait_for(f"model: stop_func reached for {value}", 20)
    assert p.count("sweep: ") == 3 and not p.stdout_has("sweep: 7")
    wd = work(p)
    assert (wd / "params.csv").read_text().split() == ["2", "3", "5", "7", "11"]
    assert (wd / "model.sh").stat().st_mode & 0o100
    assert len([d for d in (wd / "out_data").iterdir() if d.is_dir()]) == 8  # one sample folder per value
    # Each tar was handed over when dispatched as file:// (the original moved it to getFileDir() then).
    assert not list((wd / "out_data").glob("*.tar.gz"))


def test_filters_and_collectors_read_data_files_from_the_taskdir(pmk):
    p = pmk(*FAST, "--taskdir", str(LEGACY / "tweets" / "source"), "--taskdir", str(LEGACY / "tweets" / "filters"))
    p.wait_for("collected ENGLISH: the weather is nice", 20)
    p.wait_for("collected ENGLISH: is it going to rain on the park today?", 20)
    p.wait_for("collected QUESTION: is it going to rain on the park today?", 20)
    wait_until(lambda: p.stdout_has("collected") and p.count("collected") == 3, 5, what="three collections")
    assert not p.stdout_has("het weer") and not p.stdout_has("le temps")


UNDECLARED = """
###START-CONF
##{"object_name": "sloppy", "parameters": [{"name": "x", "type": "String", "state": "IN"}],
## "return": [{"name": "y", "type": "String", "state": "OUT"}]}
##END-CONF
from pumpkin import *

class sloppy(PmkSeed.Seed):
    def run(self, pkt, x):
        self.dispatch(pkt, "fine " + x, "OUT")
        try:
            self.dispatch(pkt, "oops", "ELSEWHERE")
        except Exception:
            pass  # swallowed, as the original's seeds often did: the input fails all the same
"""

SINK = """
###START-CONF
##{"object_name": "sink", "parameters": [{"name": "y", "type": "String", "state": "OUT"}], "return": []}
##END-CONF
from pumpkin import *

class sink(PmkSeed.Seed):
    def run(self, pkt, y):
        print("sink got " + y)
"""


def test_dispatching_an_undeclared_state_fails_the_whole_input(pmk, tmp_path):
    seeds, rx = tmp_path / "seeds", tmp_path / "rx"
    seeds.mkdir()
    (seeds / "sloppy.py").write_text(UNDECLARED)
    (seeds / "sink.py").write_text(SINK)
    p = pmk(*FAST, "--taskdir", str(seeds), "--rx", str(rx))
    p.wait_for("Watching rx folder", stream="err")
    drop(rx, "in.pkt", '[{"ttl": "D"}, {}, {"stag": "default:String:IN", "data": "x"}]')
    p.wait_for("which it does not declare", 15, stream="err")
    failed = Path(p.workdir) / "failed"  # type: ignore[attr-defined]
    wait_until(lambda: list(failed.glob("*.error")), 10, what="the input kept in failed/")
    assert "ELSEWHERE" in next(failed.glob("*.error")).read_text()
    assert not p.stdout_has("sink got")
