"""The simulated network of meshes and routers lives in pumpkin.simnet; the tests import it from here."""

from pumpkin.sim.clock import Clock, Scheduler
from pumpkin.simnet import HEARTBEAT_S, START_S, FakeOutputs, FakeRunner, Links, Net, Node, T, spec

__all__ = [
    "HEARTBEAT_S",
    "START_S",
    "Clock",
    "FakeOutputs",
    "FakeRunner",
    "Links",
    "Net",
    "Node",
    "Scheduler",
    "T",
    "spec",
]
