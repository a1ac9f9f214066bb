"""Who can talk to whom: a topology maps each node to its neighbours."""

from __future__ import annotations

import random
from collections.abc import Sequence

Topology = dict[str, list[str]]


def complete(names: Sequence[str]) -> Topology:
    """Everyone is a neighbour of everyone."""
    return {a: [b for b in names if b != a] for a in names}


def ring(names: Sequence[str]) -> Topology:
    n = len(names)
    return {names[i]: sorted({names[(i - 1) % n], names[(i + 1) % n]} - {names[i]}) for i in range(n)}


def star(hub: str, leaves: Sequence[str]) -> Topology:
    return {hub: list(leaves), **{leaf: [hub] for leaf in leaves}}


def random_graph(names: Sequence[str], degree: int, rng: random.Random) -> Topology:
    """A connected graph: a ring, plus random extra neighbours until each has about ``degree`` (both ways)."""
    edges = {a: set(b) for a, b in ring(names).items()}
    for a in names:
        while len(edges[a]) < min(degree, len(names) - 1):
            b = names[rng.randrange(len(names))]
            if b != a:
                edges[a].add(b)
                edges[b].add(a)
    return {a: sorted(edges[a]) for a in names}
