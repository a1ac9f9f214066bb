"""``pmk`` as a user runs it: real processes, each inside a throwaway network namespace."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

from tests.conftest import PMK, ROOT
from tests.helpers import wait_until

SEEDS = ROOT / "seeds"


def client(sandbox, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(sandbox.wrap([*PMK, *args]), capture_output=True, text=True, timeout=timeout, env=env)


def test_hello_world_prints_the_greeting_and_stops_cleanly(pmk):
    p = pmk("--endpoint.type", "zmq.IPC")
    p.wait_for("Greeting: Hello World")
    assert p.stderr_has("Node assigned UID:") and p.stderr_has("Node endpoint: ipc://")
    uid = next(line for line in p.err if "Node assigned UID:" in line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO Node assigned UID: \S+", uid)
    for seed in ("inject", "greet", "extract"):
        assert p.stderr_has(f"Seed loaded: {seed}")
    assert p.stop(signal.SIGTERM) == 0
    assert p.stderr_has("stopped")
    assert p.count("Greeting: Hello World") == 1


def test_identity_is_stable_across_restarts(pmk, tmp_path):
    wd = tmp_path / "node"
    first = pmk("--endpoint.type", "zmq.IPC", workdir=wd)
    first.wait_for("Greeting: Hello World")
    first.stop()
    uid = next(line.split(" INFO ", 1)[1] for line in first.err if "Node assigned UID" in line)
    second = pmk("--endpoint.type", "zmq.IPC", workdir=wd)
    second.wait_for("Greeting: Hello World")
    assert second.stderr_has(uid)


def test_graph_shows_states_seeds_and_where_they_run(pmk, sandbox):
    p = pmk("--endpoint.type", "zmq.IPC")
    p.wait_for("Greeting: Hello World")
    r = client(sandbox, "graph", "--workdir", str(p.workdir))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "4 states, 3 seeds" in lines[0]
    greet = next(line for line in lines if line.strip().startswith("greet"))
    assert "default:String:UNGREETED" in greet and "default:String:GREETING" in greet and "(this node)" in greet
    as_json = json.loads(client(sandbox, "graph", "--json", "--workdir", str(p.workdir)).stdout)
    assert {n["id"] for n in as_json["nodes"]} == {
        "default:Seed:INJECTION",
        "default:String:UNGREETED",
        "default:String:GREETING",
        "default:Seed:EXTRACTION",
    }


def test_inject_from_the_command_line(pmk, sandbox):
    p = pmk("--endpoint.type", "zmq.IPC")
    p.wait_for("Greeting: Hello World")
    r = client(sandbox, "inject", "UNGREETED", "Mars", "--workdir", str(p.workdir))
    assert r.returncode == 0, r.stderr
    pid, state = r.stdout.split()
    assert pid.count(":") == 3 and state == "default:*:UNGREETED"
    p.wait_for("Greeting: Hello Mars")


def test_client_without_a_daemon_fails_clearly(sandbox, tmp_path):
    r = client(sandbox, "graph", "--workdir", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "no pmk is running" in r.stderr
    r = client(sandbox, "inject", "X", "1")
    assert r.returncode == 1 and "no running pmk found" in r.stderr


def test_bad_config_stops_start_up_with_one_line_naming_the_key(sandbox, tmp_path):
    r = client(sandbox, "--routing.waiting_expiry_s", "soon", "--workdir", str(tmp_path / "w"))
    assert r.returncode == 2
    assert r.stderr.strip() == "pmk: config key routing.waiting_expiry_s: 'soon' is not a valid float"
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[endpoint]\ntype = zmq.CARRIER_PIGEON\n")
    r = client(sandbox, "-c", str(cfg))
    assert r.returncode == 2 and "endpoint.type" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_mistyped_taskdir_or_seed_stops_start_up_with_one_line(sandbox, tmp_path):
    for flag, key in (("--taskdir", "node.taskdir"), ("--seed", "node.seed")):
        missing = tmp_path / "seeds" / "helo.py"
        r = client(sandbox, flag, str(missing), "--workdir", str(tmp_path / "w"))
        assert r.returncode == 2
        assert r.stderr.strip() == f"pmk: config key {key}: '{missing}' does not exist"


def test_seeds_check_reports_per_file(sandbox, tmp_path):
    (tmp_path / "bad.py").write_text('###START-CONF\n##{"object_name": \n##END-CONF\n')
    r = client(sandbox, "seeds", "check", str(SEEDS / "helloworld"), str(tmp_path / "bad.py"))
    assert r.returncode == 1
    assert "ok       greet: default:String:UNGREETED -> default:String:GREETING" in r.stdout
    assert "bad.py: bad manifest: line 2: manifest is not valid JSON" in r.stdout
    assert r.stdout.strip().endswith("3 seed(s) ok, 0 skipped, 1 error(s)")
    assert client(sandbox, "seeds", "check", str(SEEDS / "fanout")).returncode == 0


def test_a_seed_whose_init_raises_fails_seeds_check_and_is_left_out_by_the_daemon(pmk, sandbox, tmp_path):
    (tmp_path / "model.py").write_text(
        "from pumpkin import Seed\n"
        "class Model(Seed):\n"
        "    consumes = 'N'\n"
        "    def __init__(self):\n"
        "        self.weights = open('/nonexistent/weights.bin').read()\n"
        "    def run(self, n):\n"
        "        return n\n"
    )
    r = client(sandbox, "seeds", "check", str(SEEDS / "helloworld"), str(tmp_path / "model.py"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ok       greet: default:String:UNGREETED -> default:String:GREETING" in r.stdout
    assert "seed Model: __init__ raised FileNotFoundError: [Errno 2] No such file or directory" in r.stdout
    assert f'File "{tmp_path / "model.py"}", line 5, in __init__' in r.stdout  # where, in the seed's own code
    assert r.stdout.strip().endswith("3 seed(s) ok, 0 skipped, 1 error(s)")
    # The daemon runs the other seeds, without that one.
    p = pmk("--endpoint.type", "zmq.IPC", "--taskdir", str(SEEDS / "helloworld"), "--taskdir", str(tmp_path))
    p.wait_for("Greeting: Hello World")
    p.wait_for("Seed Model cannot run (seed Model: __init__ raised FileNotFoundError", stream="err")
    assert p.stop(signal.SIGTERM) == 0


def test_fanout_example_sends_every_number_to_both_consumers(pmk):
    p = pmk("--endpoint.type", "zmq.IPC", "--taskdir", str(SEEDS / "fanout"))
    wait_until(lambda: p.count("square:") == 5 and p.count("parity:") == 5, 15, what="10 results")
    assert sorted(line for line in p.out if line.startswith("square")) == [
        f"square: {n} -> {n * n}" for n in range(1, 6)
    ]


def test_replica_example_shares_jobs_between_workers(pmk):
    p = pmk("--endpoint.type", "zmq.IPC", "--taskdir", str(SEEDS / "replicas"))
    wait_until(lambda: p.count("done: job") == 8, 20, what="8 jobs done")
    jobs = sorted(int(line.split()[2]) for line in p.out if line.startswith("done"))
    workers = {line.split(" by ")[1] for line in p.out if line.startswith("done")}
    assert jobs == list(range(8))
    assert len(workers) == 4, workers


def test_auto_load_false_keeps_a_seed_back_and_seed_flag_loads_it(pmk, tmp_path):
    folder = tmp_path / "hello"
    folder.mkdir()
    for f in (SEEDS / "helloworld").glob("*.py"):
        text = f.read_text()
        if f.name == "greet.py":
            text = text.replace('"auto-load" : true', '"auto-load" : false')
        (folder / f.name).write_text(text)
    a = pmk("--endpoint.type", "zmq.IPC", "--taskdir", str(folder))
    wait_until(lambda: a.stderr_has("Seed skipped:"), 15, what="greet to be skipped")
    assert not a.stderr_has("Seed loaded: greet")
    b = pmk("--endpoint.type", "zmq.IPC", "--seed", str(folder / "greet.py"))
    b.wait_for("Seed loaded: greet", stream="err")
    assert not b.stderr_has("Seed loaded: inject")


def test_daemons_on_one_host_find_each_other_and_use_ipc(pmk, sandbox):
    hello = SEEDS / "helloworld"
    b = pmk("--endpoint.type", "zmq.IPC", "--seed", str(hello / "greet.py"))
    c = pmk("--endpoint.type", "zmq.IPC", "--seed", str(hello / "extract.py"))
    a = pmk("--endpoint.type", "zmq.IPC", "--seed", str(hello / "inject.py"))
    c.wait_for("Greeting: Hello World", timeout_s=20)
    assert a.stderr_has("Discovered new peer seed: greet at ipc://")
    assert b.stderr_has("Discovered new peer seed: extract at ipc://")
    r = client(sandbox, "peers", "--json", "--workdir", str(a.workdir))
    peers = json.loads(r.stdout)
    assert len(peers) == 2 and {p["state"] for p in peers} == {"alive"}
    assert all(any(addr.startswith("ipc://") for addr in p["addresses"]) for p in peers)
