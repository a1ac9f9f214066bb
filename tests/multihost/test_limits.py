"""Bounded resources on real daemons (issue 11): a flood of idle TCP connections at 1,024 descriptors, and a
message larger than the limit over all its frames. A stranger on host C does the flooding."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PMK, PmkProcess
from tests.helpers import wait_until
from tests.multihost.conftest import HELLO

PORT = 7900
HTTP_PORT = 7980
QUIET = ["--discovery.enable", "false", "--endpoint.tcp_port", str(PORT), "--http.port", str(HTTP_PORT)]

HOLD = textwrap.dedent(
    """
    import resource, socket, sys, time
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    held = []
    for _ in range(int(sys.argv[2])):             # idle connections: no ZeroMQ greeting, nothing at all
        s = socket.create_connection((sys.argv[1], int(sys.argv[3])), timeout=5)
        held.append(s)
    print(f"held {len(held)}", flush=True)
    sys.stdin.read()                              # until the test is done
    """
)

OVERSIZED = textwrap.dedent(
    """
    import sys, time, zmq
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(sys.argv[1])
    frame = b"x" * (800 << 10)                    # each frame under the 1 MiB limit, the message 3.2 MB
    push.send_multipart([b"PMK1", frame, frame, frame, frame])
    time.sleep(1)
    push.close(linger=2000)
    ctx.term()
    print("sent", flush=True)
    """
)


def stats(hosts, p):
    return json.loads(hosts.client("B", "stats", "--workdir", str(p.workdir)))


def b_daemon(hosts, tmp_path: Path, *args: str, nofile: int | None = None) -> PmkProcess:
    """pmk on B (with a hard limit of ``nofile`` descriptors: it cannot raise its own past that)."""
    wd = tmp_path / f"B{len(hosts.procs)}"
    cmd = hosts.lan.wrap("B", [*PMK, "--workdir", str(wd), "--node-id", "nodeB", *QUIET, *args])
    if nofile:
        cmd = ["prlimit", f"--nofile={nofile}:{nofile}", *cmd]
    p = PmkProcess(cmd, env=hosts.env)
    p.workdir = wd  # type: ignore[attr-defined]
    hosts.procs.append(p)
    return p


def http_ok(hosts) -> bool:
    get = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{HTTP_PORT}/api/v1/counters', timeout=3)"
    r = subprocess.run(hosts.lan.wrap("B", [sys.executable, "-c", get]), capture_output=True, timeout=20)
    return r.returncode == 0


@pytest.mark.parametrize("per_address", [None, "2000"], ids=["per-address-limit", "total-limit"])
def test_1100_idle_connections_at_1024_descriptors_leave_http_rx_and_commands_working(hosts, tmp_path, per_address):
    rx = tmp_path / "rx"
    b = b_daemon(
        hosts,
        tmp_path,
        *(["--limits.inbound_per_address_max", per_address] if per_address else []),
        "--seed",
        str(HELLO / "greet.py"),
        "--seed",
        str(HELLO / "extract.py"),
        "--rx",
        str(rx),
        "--rx.settle_s",
        "0.2",
        nofile=1024,
    )
    b.wait_for("Web page", stream="err")
    wait_until(lambda: http_ok(hosts), 10, what="the page")
    flood = subprocess.Popen(
        hosts.lan.wrap("C", [sys.executable, "-c", HOLD, hosts.lan.ip("B"), "1100", str(PORT)]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None
        line = flood.stdout.readline()
        assert line.strip() == "held 1100", flood.stderr.read() if flood.stderr else ""
        # While they are held: the extra ones were shut down and counted, and everything else still works.
        # Every connection is looked at: let stay, shut down, or found closed already. ZeroMQ closes the idle ones
        # it keeps after 10 s without a handshake, which makes room for more: under load (three busy processes on
        # two cores) the 1,100 take longer than that, and 128 rather than 64 were let stay over the run.

        def looked_at(connections: dict) -> int:
            return sum(connections["refused"].values()) + connections["gone_unchecked"] + connections["kept"]

        try:
            wait_until(
                lambda: looked_at(stats(hosts, b)["limits"]["connections"]) >= 1100,
                45,
                what="every connection looked at",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; at the end: {stats(hosts, b)['limits']}") from None
        s = stats(hosts, b)
        print(f"\nlimits: {json.dumps(s['limits'])}")
        assert s["limits"]["open_files"]["limit"] == 1024
        assert s["limits"]["open_files"]["in_use"] < 1024 // 2 + 200
        connections = s["limits"]["connections"]
        assert connections["max"] == 512  # half the descriptors
        assert connections["open_peak"] == (512 if per_address else 64)  # half of 1,024 descriptors; per address
        assert connections["accepted"] == looked_at(connections) == 1100
        # 1,036 / 588 refused on a quiet machine (all but the 64 / 512 let stay), 972 / 533 under load
        assert list(connections["refused"]) == ["total" if per_address else "per_address"]
        hosts.client("B", "inject", "--workdir", str(b.workdir), "UNGREETED", "Io")  # aborted the daemon before
        b.wait_for("Greeting: Hello Io")
        (rx / "UNGREETED").mkdir(parents=True, exist_ok=True)
        (rx / "mars.json").write_text('{"state": "UNGREETED", "data": "Mars"}')
        b.wait_for("Greeting: Hello Mars")
        assert http_ok(hosts)
    finally:
        if flood.stdin:
            flood.stdin.close()
        flood.wait(timeout=20)
    assert b.proc.poll() is None, "\n".join(b.err[-30:])
    assert len(b.err) < 200, f"{len(b.err)} log lines"  # 55,000 before


def test_a_message_past_the_limit_over_its_frames_is_counted_and_kept_as_a_head_only(hosts, tmp_path):
    b = b_daemon(
        hosts,
        tmp_path,
        "--seed",
        str(HELLO / "greet.py"),
        "--seed",
        str(HELLO / "extract.py"),
        "--limits.message_max_bytes",
        str(1 << 20),
    )
    b.wait_for("Web page", stream="err")
    out = subprocess.run(
        hosts.lan.wrap("C", [sys.executable, "-c", OVERSIZED, f"tcp://{hosts.lan.ip('B')}:{PORT}"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout.strip() == "sent", out.stderr
    wait_until(lambda: stats(hosts, b)["limits"]["inbox"]["oversized"] == 1, 10, what="the message counted")
    inbox = stats(hosts, b)["limits"]["inbox"]
    assert inbox["oversized_bytes"] == 4 + 4 * (800 << 10)
    failed = b.workdir / "failed"  # type: ignore[attr-defined]
    raws = sorted(failed.glob("*.raw"))
    assert len(raws) == 1 and raws[0].stat().st_size < 100_000  # the first 64 KiB, base64: not the 3.2 MB
    reason = raws[0].with_suffix(".error").read_text()
    assert "exceeds limits.message_max_bytes" in reason and str(4 + 4 * (800 << 10)) in reason
    hosts.client("B", "inject", "--workdir", str(b.workdir), "UNGREETED", "Io")
    b.wait_for("Greeting: Hello Io")
    hwm_kb = int(
        next(x for x in Path(f"/proc/{b.pid}/status").read_text().splitlines() if x.startswith("VmHWM")).split()[1]
    )
    print(f"\nB's peak RSS: {hwm_kb / 1024:.0f} MB")
