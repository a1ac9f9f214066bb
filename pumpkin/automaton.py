"""The data automaton: states are nodes, seeds are edges, as a directed multigraph of plain dicts.

Every seed known anywhere in the network goes through ``add``/``remove`` with the node it runs on, so
local seeds and peers' seeds take the same path. A seed consuming nothing hangs off the group's
``Seed:INJECTION`` pseudo-state; one emitting nothing leads to ``Seed:EXTRACTION``. A seed with several
inputs and outputs contributes one edge per (input, output) pair, all keyed by the seed's name. The edges
from the states of an AND-join (``A&B``) carry ``join``: every state of that join, so a view can draw them
as one transition.

The graph is kept in dicts (successors and predecessors per state, edges keyed by seed name), not networkx:
importing networkx costs an idle daemon ~15 MB and routing needs none of it. ``graph`` builds a networkx copy
for analysis, importing networkx then; ``node_link`` writes networkx's node-link JSON form without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import tags
from .tags import StateTag

if TYPE_CHECKING:
    import networkx as nx

log = logging.getLogger(__name__)

#: One edge's attributes: ``seed`` (its name, also the edge's key) and ``nodes`` (where it runs: a live view of the
#: seed's nodes, so that a node joining a seed run on N others costs no copy of N names per edge).
EdgeData = dict[str, Any]


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
        # state -> next state -> seed name -> edge data; _pred holds the same data dicts the other way round.
        # Dicts keep insertion order, as networkx's adjacency does, so node_link lists what networkx would.
        self._succ: dict[StateTag, dict[StateTag, dict[str, EdgeData]]] = {}
        self._pred: dict[StateTag, dict[StateTag, dict[str, EdgeData]]] = {}
        self._seeds: dict[str, SeedInfo] = {}
        self._nodes_of: dict[str, dict[str, None]] = {}  # seed name -> nodes, in arrival order
        self._index: dict[tuple[str, str], list[tuple[StateTag, str]]] = {}
        self._consumer_cache: dict[StateTag, dict[str, list[str]]] = {}
        self.version = 0

    # -- changes ---------------------------------------------------------------------------------

    def add(self, node: str, info: SeedInfo) -> bool:
        """Record that ``node`` runs ``info``; True when the automaton changed."""
        known = self._seeds.get(info.name)
        if known is not None and known is not info and known != info:  # (most peers share one SeedInfo: see mesh)
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
        self._changed()
        return True

    def remove(self, node: str, name: str) -> bool:
        """Record that ``node`` no longer runs seed ``name``; True when the automaton changed."""
        nodes = self._nodes_of.get(name)
        if not nodes or node not in nodes:
            return False
        del nodes[node]
        if not nodes:
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
        return list(self._succ)

    def has_state(self, tag: StateTag) -> bool:
        """True when ``tag`` is a state of the automaton (some seed consumes or emits it)."""
        return tag in self._succ

    def has_edge(self, u: StateTag, v: StateTag, key: str | None = None) -> bool:
        """True when a seed (``key``: that seed) takes data from state ``u`` to state ``v``."""
        keys = self._succ.get(u, {}).get(v, {})
        return bool(keys) and (key is None or key in keys)

    def downstream(self, tag: StateTag) -> set[StateTag]:
        """The states data in ``tag`` can reach (``tag`` itself only through a cycle, as networkx's descendants)."""
        seen: set[StateTag] = set()
        todo = [tag] if tag in self._succ else []
        while todo:
            for v in self._succ[todo.pop()]:
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        seen.discard(tag)
        return seen

    def cycle_through(self, name: str) -> list[str]:
        """The seeds of a cycle through seed ``name`` (data it emits can come back to it), or [] when none."""
        info = self._seeds.get(name)
        if info is None:
            return []
        for out in info.outputs:
            for into in info.inputs:
                states = self._shortest_path(out, into)
                if states is None:
                    continue
                seeds = [name]
                for u, v in zip(states, states[1:], strict=False):
                    seeds.append(sorted(self._succ[u][v])[0])
                return seeds
        return []

    def _shortest_path(self, source: StateTag, target: StateTag) -> list[StateTag] | None:
        """The states of a shortest path from ``source`` to ``target`` (breadth first), or None."""
        if source not in self._succ or target not in self._succ:
            return None
        parent: dict[StateTag, StateTag | None] = {source: None}
        frontier = [source]
        while frontier and target not in parent:
            step = []
            for u in frontier:
                for v in self._succ[u]:
                    if v not in parent:
                        parent[v] = u
                        step.append(v)
            frontier = step
        if target not in parent:
            return None
        path = [target]
        while (back := parent[path[-1]]) is not None:
            path.append(back)
        return path[::-1]

    @property
    def graph(self) -> nx.MultiDiGraph:
        """A networkx copy of the automaton, for analysis (imports networkx, ~15 MB, on first use)."""
        import networkx as nx

        g = nx.MultiDiGraph()
        g.add_nodes_from(self._succ)
        for u, vs in self._succ.items():
            for v, keys in vs.items():
                for key, data in keys.items():
                    g.add_edge(u, v, key=key, **{**data, "nodes": list(data["nodes"])})
        return g

    def node_link(self) -> dict[str, Any]:
        """The automaton in networkx's node-link JSON form (``node_link_data(g, edges="links")`` of a
        MultiDiGraph), with tags as strings."""
        nodes = [
            {"group": s.group, "type": s.type, "state": s.state, "pseudo": s.is_pseudo, "id": str(s)}
            for s in self._succ
        ]
        links = []
        for u, vs in self._succ.items():
            for v, keys in vs.items():
                for key, data in keys.items():
                    join = self._seeds[key].join_of(u) if key in self._seeds else None
                    extra = {"join": [str(t) for t in join]} if join else {}
                    link = {"seed": data["seed"], "nodes": list(data["nodes"]), **extra}
                    links.append({**link, "source": str(u), "target": str(v), "key": key})
        return {"directed": True, "multigraph": True, "graph": {}, "nodes": nodes, "links": links}

    # -- internals -------------------------------------------------------------------------------

    def _ends(self, info: SeedInfo) -> tuple[tuple[StateTag, ...], tuple[StateTag, ...]]:
        group = (info.inputs or info.outputs or (tags.injection(self.group),))[0].group
        return (info.inputs or (tags.injection(group),)), (info.outputs or (tags.extraction(group),))

    def _add_edges(self, info: SeedInfo) -> None:
        ins, outs = self._ends(info)
        for i in ins:
            for o in outs:
                self._add_edge(i, o, info.name, {"seed": info.name, "nodes": self._nodes_of[info.name].keys()})
        for i in info.inputs:
            self._index.setdefault(i.key, []).append((i, info.name))

    def _add_edge(self, u: StateTag, v: StateTag, key: str, data: EdgeData) -> None:
        for state in (u, v):
            if state not in self._succ:
                self._succ[state] = {}
                self._pred[state] = {}
        keys = self._succ[u].setdefault(v, {})
        if key in keys:
            keys[key].update(data)  # as networkx's add_edge: the attributes of an existing edge are updated
            return
        keys[key] = data
        self._pred[v].setdefault(u, {})[key] = data

    def _remove_edge(self, u: StateTag, v: StateTag, key: str) -> None:
        keys = self._succ.get(u, {}).get(v)
        if not keys or key not in keys:
            return
        del keys[key]
        del self._pred[v][u][key]
        if not keys:
            del self._succ[u][v]
            del self._pred[v][u]

    def _degree(self, state: StateTag) -> int:
        """Edges into and out of ``state`` (a loop counts twice, as in networkx)."""
        return sum(map(len, self._succ[state].values())) + sum(map(len, self._pred[state].values()))

    def _drop_seed(self, name: str) -> None:
        info = self._seeds.pop(name)
        del self._nodes_of[name]
        ins, outs = self._ends(info)
        for i in ins:
            for o in outs:
                self._remove_edge(i, o, name)
        for state in [*ins, *outs]:
            if state in self._succ and self._degree(state) == 0:
                del self._succ[state]
                del self._pred[state]
        for i in info.inputs:
            entries = self._index.get(i.key, [])
            entries[:] = [e for e in entries if e[1] != name]
            if not entries:
                self._index.pop(i.key, None)

    def _changed(self) -> None:
        self._consumer_cache.clear()
        self.version += 1
