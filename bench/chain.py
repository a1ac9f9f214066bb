#!/usr/bin/env python3
"""Throughput and latency of a 3-seed chain, Pumpkin next to raw pyzmq, measured in one run.

The chain is inject -> step1 -> step2 -> extract (bench/seeds/). Three set-ups, each beside its baseline:

- ``chain``: each seed in its own ``pmk`` daemon (4 processes, 3 network hops), over ipc:// and over
  tcp:// on loopback, next to a raw pyzmq chain of the same shape: 4 processes joined by PUSH/PULL, each
  relay decoding and re-encoding the same three frames with orjson (magic, JSON header with id, tag, ttl and
  trail, JSON payload), as a Pumpkin daemon does.
- ``latency``: the same two chains with one packet in flight at a time; p50 and p99 per hop
  (end-to-end over 3 hops; the sink acknowledges each packet to the source over ipc://).
- ``inprocess``: all four seeds in one daemon, next to a plain asyncio pipeline (four coroutines joined by
  asyncio queues, passing the same dicts) in a process of its own.
- where Ray is installed (it is not a dependency), the ``chain`` part adds a row: the 4-daemon ipc:// chain
  next to a pipeline of 3 Ray actors fed by the driver (``--ray-packets``).

Every figure is printed as packets per second (or microseconds) and as a ratio to its baseline, then all
results as one JSON line. Daemons find each other through the local discovery folder only (no broadcast,
no mDNS); as root the whole run is moved into a throwaway network namespace first, like scripts/hello.sh.

    .venv/bin/python bench/chain.py [--packets 20000] [--sizes 100,10000] [--transports ipc,tcp]
                                    [--latency-packets 2000] [--only chain,latency,inprocess] [--threaded] [--repeat 3]

The step and sink seeds are marked ``inline`` (they take microseconds: see pumpkin.seed); ``--threaded``
adds every Pumpkin row again with them on worker threads, the default for a seed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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

import orjson
import zmq

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "bench" / "seeds"
CHAIN = ("source", "step1", "step2", "sink")
TAGS = ("Bench:RAW", "Bench:ONE", "Bench:TWO")
MAGIC = b"PMK1"
DEADLINE_S = 300.0


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

    def spawn(self, cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / log, "wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
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

    def result(self) -> dict[str, Any]:
        file = self.ctl / "result.json"
        self.wait_for("all packets at the sink", file.exists, DEADLINE_S)
        return json.loads(file.read_text())

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


def pumpkin_chain(
    transport: str, n: int, size: int, mode: str, inline: bool = True, keyed: bool = False
) -> dict[str, Any]:
    run = Run(n, size, mode, inline)
    try:
        key = None
        if keyed:  # a network key: every link is CurveZMQ, beacons and HELLOs are sealed and certified
            from pumpkin.membership import NetworkKey

            key = run.tmp / "network.key"
            key.write_text(NetworkKey.create().text())
            key.chmod(0o600)
        for name in reversed(CHAIN):
            pmk(run, name, [name], transport, key)
        for upstream, seed in zip(CHAIN, CHAIN[1:], strict=False):
            run.wait_for(
                f"{upstream} to know {seed}", lambda u=upstream, s=seed: knows_remote(run.tmp / u, s.capitalize())
            )
        (run.ctl / "go").touch()
        return run.result()
    finally:
        run.close()


def raw_chain(transport: str, n: int, size: int, mode: str) -> dict[str, Any]:
    run = Run(n, size, mode)
    try:
        if transport == "ipc":
            endpoints = [f"ipc://{run.ctl / f'stage{i}'}" for i in range(3)]
        else:
            ports = free_ports(3)
            endpoints = [f"tcp://127.0.0.1:{p}" for p in ports]
        for role in reversed(CHAIN):
            run.spawn(
                [
                    sys.executable,
                    __file__,
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
        (run.ctl / "go").touch()
        return run.result()
    finally:
        run.close()


def pumpkin_inprocess(n: int, size: int, inline: bool = True) -> dict[str, Any]:
    run = Run(n, size, "throughput", inline)
    try:
        pmk(run, "all", list(CHAIN), "ipc")
        run.wait_for("the daemon to start", lambda: (run.tmp / "all" / "control").exists())
        (run.ctl / "go").touch()
        return run.result()
    finally:
        run.close()


def asyncio_inprocess(n: int, size: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--asyncio-baseline", str(n), str(size)], check=True, capture_output=True, text=True
    )
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=20000, help="packets per throughput run")
    ap.add_argument("--latency-packets", type=int, default=2000, help="packets per latency run (one at a time)")
    ap.add_argument("--sizes", default="100,10000", help="payload sizes in bytes")
    ap.add_argument("--transports", default="ipc,tcp")
    ap.add_argument("--only", default="chain,latency,inprocess")
    ap.add_argument("--repeat", type=int, default=1, help="throughput pairs per row (medians are printed)")
    ap.add_argument("--threaded", action="store_true", help="also run every Pumpkin row with threaded seeds")
    ap.add_argument(
        "--keyed", action="store_true", help="also run every Pumpkin row in a keyed network (CurveZMQ on every link)"
    )
    ap.add_argument("--raw-role")
    ap.add_argument("--raw-ctl", type=Path)
    ap.add_argument("--raw-endpoints")
    ap.add_argument("--raw-n", type=int)
    ap.add_argument("--raw-size", type=int)
    ap.add_argument("--raw-mode")
    ap.add_argument("--asyncio-baseline", nargs=2, type=int)
    ap.add_argument("--ray-baseline", nargs=2, type=int)
    ap.add_argument("--ray-packets", type=int, default=3000, help="packets through the Ray pipeline (if installed)")
    args = ap.parse_args()
    if args.raw_role:
        raw_role(args.raw_role, args.raw_ctl, args.raw_endpoints.split(","), args.raw_n, args.raw_size, args.raw_mode)
        return
    if args.asyncio_baseline:
        print(asyncio.run(asyncio_pipeline(*args.asyncio_baseline)))
        return
    if args.ray_baseline:
        print(ray_pipeline(*args.ray_baseline))
        return
    if os.geteuid() == 0 and not os.environ.get("PMK_BENCH_SANDBOXED") and shutil.which("ip"):
        os.environ["PMK_BENCH_SANDBOXED"] = "1"
        os.execv(
            str(ROOT / "scripts" / "sandbox.sh"), [str(ROOT / "scripts" / "sandbox.sh"), sys.executable, *sys.argv]
        )
    sizes = [int(s) for s in args.sizes.split(",")]
    transports = args.transports.split(",")
    only = set(args.only.split(","))
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, pyzmq {zmq.__version__}"
    }
    # Seeds run inline (on the loop) unless the row says "threaded" (the default for seeds: a worker thread).
    variants = [("inline", True), ("threaded", False)] if args.threaded else [("inline", True)]
    if args.keyed:
        variants += [(f"{label}+keyed", inline) for label, inline in variants]
    if "chain" in only:
        print(f"{'chain throughput':<28} {'size':>6} {'pumpkin pkt/s':>14} {'raw pkt/s':>12} {'ratio':>7}")
        for transport in transports:
            for size in sizes:
                for label, inline in variants:
                    # --repeat N: N pairs, raw then Pumpkin, back to back; medians of rates and of pair ratios.
                    pairs = []
                    for _ in range(args.repeat):
                        raw_rate = throughput(raw_chain(transport, args.packets, size, "throughput"))
                        keyed = label.endswith("+keyed")
                        ours_rate = throughput(
                            pumpkin_chain(transport, args.packets, size, "throughput", inline, keyed)
                        )
                        pairs.append((ours_rate, raw_rate))
                    ours = statistics.median(o for o, _ in pairs)
                    raw = statistics.median(r for _, r in pairs)
                    ratio = statistics.median(o / r for o, r in pairs)
                    results[f"chain_{transport}_{size}_{label}"] = {
                        "pumpkin_pps": round(ours),
                        "raw_pps": round(raw),
                        "ratio": round(ratio, 3),
                        "runs": args.repeat,
                    }
                    row = f"4 daemons, {transport}, {label}"
                    print(f"{row:<28} {size:>6} {ours:>14,.0f} {raw:>12,.0f} {ratio:>7.3f}")
    if "latency" in only:
        print(f"\n{'per-hop latency':<28} {'':>6} {'pumpkin p50/p99 us':>20} {'raw p50/p99 us':>16} {'p50 ratio':>9}")
        for transport in transports:
            raw50, raw99 = per_hop_us(raw_chain(transport, args.latency_packets, 100, "latency")["latencies"])
            for label, inline in variants:
                res = pumpkin_chain(transport, args.latency_packets, 100, "latency", inline, label.endswith("+keyed"))
                p50, p99 = per_hop_us(res["latencies"])
                results[f"latency_{transport}_{label}"] = {
                    "pumpkin_p50_us": round(p50),
                    "pumpkin_p99_us": round(p99),
                    "raw_p50_us": round(raw50),
                    "raw_p99_us": round(raw99),
                    "p50_ratio": round(p50 / raw50, 2),
                }
                row = f"4 daemons, {transport}, {label}"
                print(f"{row:<28} {100:>6} {p50:>9.0f} /{p99:>8.0f} {raw50:>7.0f} /{raw99:>7.0f} {p50 / raw50:>9.2f}")
    if "inprocess" in only:
        print(f"\n{'one process':<28} {'size':>6} {'pumpkin pkt/s':>14} {'asyncio pkt/s':>14} {'ratio':>7}")
        for size in sizes:
            base = asyncio_inprocess(args.packets, size)
            for label, inline in variants:
                if label.endswith("+keyed"):
                    continue  # one daemon: no link to encrypt
                ours = throughput(pumpkin_inprocess(args.packets, size, inline))
                results[f"inprocess_{size}_{label}"] = {
                    "pumpkin_pps": round(ours),
                    "asyncio_pps": round(base),
                    "ratio": round(ours / base, 3),
                }
                row = f"4 seeds, 1 daemon, {label}"
                print(f"{row:<28} {size:>6} {ours:>14,.0f} {base:>14,.0f} {ours / base:>7.3f}")
    if "chain" in only and importlib.util.find_spec("ray") is not None:
        # Optional (Ray is not a dependency): Pumpkin's 4-daemon ipc:// chain next to 3 Ray actors fed by a driver.
        out = subprocess.run(
            [sys.executable, __file__, "--ray-baseline", str(args.ray_packets), "100"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        ray_pps = float(out.stdout.strip().splitlines()[-1])
        ours = throughput(pumpkin_chain("ipc", args.packets, 100, "throughput"))
        results["vs_ray_100"] = {
            "pumpkin_pps": round(ours),
            "ray_pps": round(ray_pps),
            "ratio": round(ours / ray_pps, 1),
        }
        print(f"\n{'vs Ray (3 actors)':<28} {100:>6} {ours:>14,.0f} {ray_pps:>12,.0f} {ours / ray_pps:>7.1f}x")
    print(json.dumps({"benchmark": "chain", "packets": args.packets, "results": results}))


if __name__ == "__main__":
    main()
