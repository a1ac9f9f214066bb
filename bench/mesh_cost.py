#!/usr/bin/env python3
"""CPU per packet of the peer protocol in one process: route packets to a peer through the router and the mesh (and,
since issue 13, the mesh's driver), then take the peer's ACKs for them. No sockets: the links take everything.

``--root DIR`` measures the ``pumpkin`` package of another checkout instead (e.g. ``git archive`` of an older commit
unpacked there): the mesh before issue 13 took a transport, a scheduler and a clock, and this script builds either.
Run both in one sitting, alternating, and compare: this machine is shared.

    .venv/bin/python bench/mesh_cost.py [--packets 20000] [--repeat 5] [--root DIR]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class Links:
    """Links that take every message (the transport's seam, before and after issue 13)."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    def connect(self, node: str, endpoint: str) -> None:
        self.links[node] = endpoint

    def disconnect(self, node: str) -> list[list[bytes]]:
        self.links.pop(node, None)
        return []

    def send(self, node: str, frames: list[bytes]) -> bool:
        return True

    send_packet = send
    send_control = send


def measure(packets: int, repeat: int) -> float:
    """Best seconds per packet over ``repeat`` rounds."""
    from pumpkin import messages
    from pumpkin.automaton import Automaton
    from pumpkin.failed import FailedStore
    from pumpkin.mesh import Mesh
    from pumpkin.messages import ACK, HELLO, Origin
    from pumpkin.packet import IdMaker, Packet
    from pumpkin.peers import PeerTable
    from pumpkin.router import NoOutputs, Router
    from pumpkin.sim.clock import Clock, Scheduler
    from pumpkin.simnet import T, spec
    from pumpkin.waiting import WaitingRoom

    tmp = Path(tempfile.mkdtemp())
    clock = Clock(1000.0)
    scheduler = Scheduler(clock)

    def make_router(remotes: Any) -> Router:
        return Router(
            "A",
            Automaton(),
            IdMaker("aaaaaaaa", seed=1),
            FailedStore(tmp / "failed"),
            WaitingRoom(100, 600.0),
            remotes=remotes,
            outputs=NoOutputs(),
            clock=clock,
        )

    me = Origin("A", "tcp://10.0.0.1:1", None, "host-A", "dg", inc=1)
    b = Origin("B", "tcp://10.0.0.2:2", None, "host-B", "dg", inc=1)
    common: dict[str, Any] = dict(
        node_id="A", host="host-A", me=lambda: me, local_seeds=list, local_load=dict, router=make_router
    )
    mesh: Any
    if "transport" in inspect.signature(Mesh.__init__).parameters:  # before issue 13
        peers: Any = PeerTable(1.5, 5.0, clock=clock)

        def learn(node: str, endpoint: str, seeds: Any, via: str) -> bool:
            peers.heard(node, endpoint, via)
            return bool(mesh.router.automaton.sync_node(node, seeds))

        mesh = Mesh(
            **common,
            transport=Links(),
            peers=peers,
            learn=learn,
            forget=lambda node: None,
            heartbeat_s=0.5,
            scheduler=scheduler,
            clock=clock,
        )

        def handle(frames: list[bytes]) -> None:
            mesh.handle(frames)
    else:
        from pumpkin.driver import MeshDriver

        driver = MeshDriver(
            links=Links(),
            scheduler=scheduler,
            clock=clock,
            mesh=lambda wake: Mesh(**common, peers=PeerTable(1.5, 5.0), heartbeat_s=0.5, wake=wake),
        )
        mesh = driver.mesh

        def handle(frames: list[bytes]) -> None:
            mesh.handle(frames, "", clock.now)

    work = spec("work", ("RAW",), ("DONE",), workers=packets // 1000 + 1)  # a window that takes them all
    handle(messages.encode(HELLO, b, seeds=[work.summary()], peers=[], reply=False))
    best = float("inf")
    for round_ in range(repeat):
        batch = [Packet(f"s:{round_}:{i}:1", T("RAW"), i, [], 64) for i in range(packets)]
        acks = [[p.id, "work"] for p in batch]
        began = time.perf_counter()
        for p in batch:
            mesh.router.route(p)
        for i in range(0, packets, 500):
            handle(messages.encode(ACK, b, acks=acks[i : i + 500]))
        best = min(best, (time.perf_counter() - began) / packets)
        scheduler.run_for(0.01)
        assert not mesh.inflight_counts(), "every packet was acknowledged"
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    us = measure(args.packets, args.repeat) * 1e6
    print(f"{args.root}: {us:.2f} us per packet (route, send, ACK), best of {args.repeat} x {args.packets}")
    print(json.dumps({"benchmark": "mesh_cost", "root": str(args.root), "us_per_packet": round(us, 2)}))


if __name__ == "__main__":
    main()
