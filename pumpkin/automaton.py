"""The data automaton: states are nodes, seeds are edges, as a networkx multigraph.

Every seed known anywhere in the network goes through ``add``/``remove`` with the node it runs on, so
local seeds and peers' seeds take the same path. A seed consuming nothing hangs off the group's
``Seed:INJECTION`` pseudo-state; one emitting nothing leads to ``Seed:EXTRACTION``. A seed with several
inputs and outputs contributes one edge per (input, output) pair, all keyed by the seed's name. The edges
from the states of an AND-join (``A&B``) carry ``join``: every state of that join, so a view can draw them
as one transition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from . import tags
from .tags import StateTag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedInfo:
    """What the automaton knows of a seed: its name and the states it consumes and emits."""

    name: str
    inputs: tuple[StateTag, ...]
    outputs: tuple[StateTag, ...]
    joins: tuple[tuple[StateTag, ...], ...] = ()

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> SeedInfo:
        """From the JSON form peers exchange (``SeedSpec.summary()``); TypeError or TagError when malformed."""
        joins = summary.get("joins", [])
        if not isinstance(joins, list) or not all(isinstance(j, list) for j in joins):
            raise TypeError("a seed's 'joins' must be a list of lists of state tags")
        return cls(
            str(summary["name"]),
            tuple(tags.parse(t) for t in summary.get("inputs", [])),
            tuple(tags.parse(t) for t in summary.get("outputs", [])),
            tuple(tuple(tags.parse(t) for t in join) for join in joins),
        )

    def join_of(self, tag: StateTag) -> tuple[StateTag, ...] | None:
        """The AND-join among this seed's inputs that data in ``tag`` is a part of, or None."""
        for join in self.joins:
            for part in join:
                if part.matches(tag):
                    return join
        return None


class Automaton:
    """The merged automaton of every seed on every node this daemon knows."""

    def __init__(self, group: str = tags.DEFAULT_GROUP) -> None:
        self.group = group
        self.graph: nx.MultiDiGraph = nx.MultiDiGraph()
        self._seeds: dict[str, SeedInfo] = {}
        self._nodes_of: dict[str, dict[str, None]] = {}  # seed name -> nodes, in arrival order
        self._index: dict[tuple[str, str], list[tuple[StateTag, str]]] = {}
        self._consumer_cache: dict[StateTag, dict[str, list[str]]] = {}
        self.version = 0

    # -- changes ---------------------------------------------------------------------------------

    def add(self, node: str, info: SeedInfo) -> bool:
        """Record that ``node`` runs ``info``; True when the automaton changed."""
        known = self._seeds.get(info.name)
        if known is not None and known != info:
            log.warning(
                "seed %r on node %s declares other states than the one already known; using the first", info.name, node
            )
        nodes = self._nodes_of.setdefault(info.name, {})
        if node in nodes:
            return False
        nodes[node] = None
        if known is None:
            self._seeds[info.name] = info
            self._add_edges(info)
        else:
            self._refresh_edges(info.name)
        self._changed()
        return True

    def remove(self, node: str, name: str) -> bool:
        """Record that ``node`` no longer runs seed ``name``; True when the automaton changed."""
        nodes = self._nodes_of.get(name)
        if not nodes or node not in nodes:
            return False
        del nodes[node]
        if nodes:
            self._refresh_edges(name)
        else:
            self._drop_seed(name)
        self._changed()
        return True

    def remove_node(self, node: str) -> list[str]:
        """Forget every seed ``node`` runs; returns their names."""
        gone = [name for name, nodes in self._nodes_of.items() if node in nodes]
        for name in gone:
            self.remove(node, name)
        return gone

    def sync_node(self, node: str, infos: Iterable[SeedInfo]) -> bool:
        """Make ``node``'s seeds exactly ``infos``; True when anything changed."""
        wanted = {i.name: i for i in infos}
        changed = False
        for name in [n for n, nodes in self._nodes_of.items() if node in nodes and n not in wanted]:
            changed |= self.remove(node, name)
        for info in wanted.values():
            changed |= self.add(node, info)
        return changed

    # -- queries ---------------------------------------------------------------------------------

    def consumers(self, tag: StateTag) -> dict[str, list[str]]:
        """The seeds that consume data in ``tag``, each with the nodes it runs on (in arrival order)."""
        cached = self._consumer_cache.get(tag)
        if cached is not None:
            return cached
        found: dict[str, list[str]] = {}
        for declared, name in self._index.get(tag.key, ()):
            if declared.matches(tag) and name not in found:
                found[name] = list(self._nodes_of[name])
        self._consumer_cache[tag] = found
        return found

    def seeds(self) -> dict[str, SeedInfo]:
        """Every known seed by name."""
        return dict(self._seeds)

    def info(self, name: str) -> SeedInfo | None:
        """What is known of seed ``name`` (None: no node runs it)."""
        return self._seeds.get(name)

    def runs_on(self, name: str, node: str) -> bool:
        """True when seed ``name`` runs on ``node``."""
        nodes = self._nodes_of.get(name)
        return nodes is not None and node in nodes

    def knows(self, name: str) -> bool:
        """True when some node runs seed ``name``."""
        return bool(self._nodes_of.get(name))

    def nodes_of(self, name: str) -> list[str]:
        """The nodes seed ``name`` runs on."""
        return list(self._nodes_of.get(name, {}))

    def states(self) -> list[StateTag]:
        """Every state in the automaton, pseudo-states included."""
        return list(self.graph.nodes)

    def downstream(self, tag: StateTag) -> set[StateTag]:
        """The states data in ``tag`` can reach."""
        return set(nx.descendants(self.graph, tag)) if tag in self.graph else set()

    def cycle_through(self, name: str) -> list[str]:
        """The seeds of a cycle through seed ``name`` (data it emits can come back to it), or [] when none."""
        info = self._seeds.get(name)
        if info is None:
            return []
        for out in info.outputs:
            for into in info.inputs:
                if out not in self.graph or into not in self.graph:
                    continue
                try:
                    states = nx.shortest_path(self.graph, out, into)
                except nx.NetworkXNoPath:
                    continue
                seeds = [name]
                for u, v in zip(states, states[1:], strict=False):
                    seeds.append(sorted(self.graph[u][v])[0])
                return seeds
        return []

    def node_link(self) -> dict[str, Any]:
        """The automaton in networkx's node-link JSON form, with tags as strings."""
        g = nx.MultiDiGraph()
        for state in self.graph.nodes:
            g.add_node(str(state), group=state.group, type=state.type, state=state.state, pseudo=state.is_pseudo)
        for u, v, key, data in self.graph.edges(keys=True, data=True):
            join = self._seeds[key].join_of(u) if key in self._seeds else None
            extra = {"join": [str(t) for t in join]} if join else {}
            g.add_edge(str(u), str(v), key=key, seed=data["seed"], nodes=list(data["nodes"]), **extra)
        link_data: dict[str, Any] = nx.node_link_data(g, edges="links")
        return link_data

    # -- internals -------------------------------------------------------------------------------

    def _ends(self, info: SeedInfo) -> tuple[tuple[StateTag, ...], tuple[StateTag, ...]]:
        group = (info.inputs or info.outputs or (tags.injection(self.group),))[0].group
        return (info.inputs or (tags.injection(group),)), (info.outputs or (tags.extraction(group),))

    def _add_edges(self, info: SeedInfo) -> None:
        ins, outs = self._ends(info)
        for i in ins:
            for o in outs:
                self.graph.add_edge(i, o, key=info.name, seed=info.name, nodes=list(self._nodes_of[info.name]))
        for i in info.inputs:
            self._index.setdefault(i.key, []).append((i, info.name))

    def _refresh_edges(self, name: str) -> None:
        nodes = list(self._nodes_of[name])
        for _, _, key, data in self.graph.edges(keys=True, data=True):
            if key == name:
                data["nodes"] = nodes

    def _drop_seed(self, name: str) -> None:
        info = self._seeds.pop(name)
        del self._nodes_of[name]
        ins, outs = self._ends(info)
        for i in ins:
            for o in outs:
                if self.graph.has_edge(i, o, key=name):
                    self.graph.remove_edge(i, o, key=name)
        for state in [*ins, *outs]:
            if state in self.graph and self.graph.degree(state) == 0:
                self.graph.remove_node(state)
        for i in info.inputs:
            entries = self._index.get(i.key, [])
            entries[:] = [e for e in entries if e[1] != name]
            if not entries:
                self._index.pop(i.key, None)

    def _changed(self) -> None:
        self._consumer_cache.clear()
        self.version += 1
