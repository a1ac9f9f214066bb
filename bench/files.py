"""A file through two hops: source -> relay -> sink, three pmk daemons on one host (ipc://), next to a local copy.

    .venv/bin/python bench/files.py [--size-mb 1024] [--repeat 1]

The source seed hands over a file of random bytes (``pumpkin.File``), the relay passes it on, the sink records
when it arrived. Each hop moves the whole file into the next daemon's working directory: chunks pulled over
ZeroMQ and checked (sha256 per chunk), the whole file checked and fsynced (see ``pumpkin/filemover.py``). Time
runs from the source seed's start (it moves the file into its store and hashes it) to the sink's seed.
Baseline in the same run: ``shutil.copyfile`` of the same file plus an fsync (one local copy). The ratio is
Pumpkin's end-to-end rate over the copy's rate; two hops are two copies, so 0.5 would be as fast as copying.
Peak RSS (VmHWM) of every daemon is read before it stops. As root the daemons run in a throwaway network
namespace (scripts/sandbox.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "bench" / "seeds"
CHAIN = [("source", "file_source", "FileRelay"), ("relay", "file_relay", "FileSink"), ("sink", "file_sink", "")]
DEADLINE_S = 600.0


def make_file(path: Path, size: int) -> str:
    """Random bytes (not compressible, not cached as zeros); returns their sha256."""
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            piece = hashlib.sha256(piece[:64] + left.to_bytes(8, "little")).digest() + piece[32:]
            digest.update(piece)
            fh.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def local_copy(src: Path, dst: Path) -> float:
    started = time.monotonic()
    shutil.copyfile(src, dst)
    with open(dst, "rb") as fh:
        os.fsync(fh.fileno())
    seconds = time.monotonic() - started
    dst.unlink()
    return seconds


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def knows_remote(workdir: Path, seed: str) -> bool:
    from pumpkin.transport import request_sync

    try:
        control = (workdir / "control").read_text().strip()
        if not control:
            return False
        reply = request_sync(control, {"op": "graph"}, timeout_s=2.0)
    except (OSError, TimeoutError, zmq.ZMQError):
        return False
    nodes = reply.get("seeds", {}).get(seed, {}).get("nodes", [])
    return bool(nodes) and reply.get("node") not in nodes


def through_pumpkin(tmp: Path, src: Path, sha: str, size: int) -> dict[str, Any]:
    ctl = tmp / "ctl"
    ctl.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_DIR": str(ctl), "BENCH_FILE": str(src)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, seed, _ in reversed(CHAIN):
            cmd = [
                sys.executable, "-m", "pumpkin", "--endpoint.type", "zmq.IPC", "--workdir", str(tmp / name),
                "--node-id", f"bench-{name}-{os.getpid()}", "--discovery.broadcast", "false",
                "--discovery.mdns", "false", "--http.enable", "false", "--seed", str(SEEDS / f"{seed}.py"),
            ]  # fmt: skip
            with open(tmp / f"{name}.log", "wb") as out:
                procs[name] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        for name, _, downstream in CHAIN[:-1]:
            wait(procs, tmp, f"{name} to know {downstream}", lambda n=name, d=downstream: knows_remote(tmp / n, d))
        (ctl / "go").touch()
        result = ctl / "result.json"
        wait(procs, tmp, "the file at the sink", result.exists, DEADLINE_S)
        got = json.loads(result.read_text())
        started = float((ctl / "started").read_text())
        rss = {name: peak_rss_mb(p.pid) for name, p in procs.items()}
        if got["sha256"] != sha or got["size"] != size:
            raise RuntimeError(f"the sink got another file: {got}")
        return {"seconds": got["arrived"] - started, "rss_mb": rss, "sha256_ok": got["sha256"] == sha}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def wait(procs: dict[str, subprocess.Popen[bytes]], tmp: Path, what: str, check: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if any(p.poll() is not None for p in procs.values()) or time.monotonic() > deadline:
            logs = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in tmp.glob("*.log"))
            raise RuntimeError(f"{what}: not within {timeout_s:g} s, or a daemon exited\n{logs}")
        time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1, help="copy/Pumpkin pairs (medians are printed)")
    args = ap.parse_args()
    if os.geteuid() == 0 and not os.environ.get("PMK_BENCH_SANDBOXED") and shutil.which("ip"):
        os.environ["PMK_BENCH_SANDBOXED"] = "1"
        sandbox = str(ROOT / "scripts" / "sandbox.sh")
        os.execv(sandbox, [sandbox, sys.executable, *sys.argv])
    size = args.size_mb << 20
    runs: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="pmk-bench-files-"))
        try:
            src = tmp / "payload.bin"
            sha = make_file(src, size)
            copy_s = local_copy(src, tmp / "copy.bin")
            ours = through_pumpkin(tmp, src, sha, size)
            runs.append({"copy_s": copy_s, **ours})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    mb = size / (1 << 20)
    copy_s = statistics.median(r["copy_s"] for r in runs)
    ours_s = statistics.median(r["seconds"] for r in runs)
    ratio = statistics.median(r["copy_s"] / r["seconds"] for r in runs)
    rss = {n: max(r["rss_mb"][n] for r in runs) for n, _, _ in CHAIN}
    print(f"{'file, two hops':<26} {'MB':>6} {'seconds':>8} {'MB/s':>8}")
    print(f"{'local copy + fsync':<26} {mb:>6.0f} {copy_s:>8.2f} {mb / copy_s:>8.1f}")
    print(f"{'pumpkin source->sink':<26} {mb:>6.0f} {ours_s:>8.2f} {mb / ours_s:>8.1f}")
    print(f"ratio (pumpkin rate / copy rate): {ratio:.3f}; per hop: {2 * ratio:.3f}")
    print("peak RSS MB: " + ", ".join(f"{n} {v:.1f}" for n, v in rss.items()))
    print(
        json.dumps(
            {
                "benchmark": "files",
                "size_mb": mb,
                "copy_s": copy_s,
                "pumpkin_s": ours_s,
                "ratio": ratio,
                "peak_rss_mb": rss,
                "sha256_ok": all(r["sha256_ok"] for r in runs),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
