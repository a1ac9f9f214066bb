"""A deterministic network simulator: virtual time, links that delay, lose, duplicate and reorder, partitions and
crashes on a schedule, all from one random seed; a history of the run, checkers over it, and a timeline view.

Modules, one job each: ``clock`` (virtual time, event queue), ``links`` (latency distributions, loss...),
``wire`` (putting messages on links, partitions, down nodes), ``history`` (the records), ``check`` (checkers),
``node`` and ``network`` (the API for writing an algorithm), ``topology``, ``swarm`` (many seeds, replay),
``timeline`` (the HTML/SVG view). Nothing here opens a socket or reads a real clock.
"""

from __future__ import annotations

from pumpkin.sim.check import Checker, Violation, check, invariant
from pumpkin.sim.clock import Clock, Scheduler
from pumpkin.sim.history import History, Record
from pumpkin.sim.links import Fixed, Link, LogNormal, Normal, Uniform
from pumpkin.sim.network import Network
from pumpkin.sim.node import Node, SimError, handles
from pumpkin.sim.swarm import Scenario

__all__ = [
    "Checker",
    "Clock",
    "Fixed",
    "History",
    "Link",
    "LogNormal",
    "Network",
    "Node",
    "Normal",
    "Record",
    "Scenario",
    "Scheduler",
    "SimError",
    "Uniform",
    "Violation",
    "check",
    "handles",
    "invariant",
]
