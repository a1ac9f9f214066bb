"""Imports run one way: the I/O shell -> the core -> the pure rules (README, "Architecture"), with no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pumpkin"

#: No sockets, no event loop, no clock of their own: the rules, unit-tested in microseconds.
PURE = {
    "errors", "tags", "packet", "custody", "manifest", "automaton", "waiting", "config", "gather", "files",
    "dropfile", "logfold", "seed", "peers", "PmkShared", "legacy_files", "console", "diagnosis", "counters",
    "logformat", "actions", "ticks",
}  # fmt: skip
#: Protocol and storage objects that take events and dependencies passed in; they open no socket.
CORE = {
    "router", "mesh", "messages", "membership", "runner", "procpool", "splitmerge", "legacy", "PmkSeed", "loader",
    "failed", "journal", "spool", "filemover", "__init__", "simnet", "beacons", "simdisk",
    "lifecycle", "pending", "inbound", "control", "hearing", "trace", "driver",
}  # fmt: skip
#: Sockets, files, the event loop, processes: wiring the core to the world.
SHELL = {
    "daemon", "transport", "discovery", "web", "cli", "__main__", "netinfo", "dropdir", "txdir", "workdir",
    "supervisor", "query", "simrun", "doctor", "metrics", "provenance", "webport", "malloc", "httpd",
}  # fmt: skip
LAYER = {**dict.fromkeys(PURE, 0), **dict.fromkeys(CORE, 1), **dict.fromkeys(SHELL, 2)}
#: Libraries that mean I/O: never imported below the shell.
IO_LIBRARIES = {"zeroconf", "h11", "socket", "zmq.asyncio", "asyncio"}
#: ... except where a core module needs the library for something else (say why).
IO_ALLOWED = {
    ("journal", "asyncio"),  # its commits wait on a thread; it opens no socket
    ("failed", "asyncio"),  # likewise, fsyncs off the loop
    ("runner", "asyncio"),  # hands seed outcomes back to the loop
    ("filemover", "asyncio"),  # chunks are written off the loop
    ("legacy", "socket"),  # the original seed API's ``get_ip``: finds an address, sends nothing
    ("__init__", "socket"),  # re-exported for original seeds (``from pumpkin import *``)
}


def imports(module: str) -> tuple[set[str], set[str], set[str]]:
    """(package modules imported at module level, ... in a function, external modules), TYPE_CHECKING aside."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    top: set[str] = set()
    deferred: set[str] = set()
    external: set[str] = set()

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            into = deferred if nested else top
            if isinstance(child, ast.ImportFrom):
                if child.level == 1:
                    into.update([child.module.split(".")[0]] if child.module else [a.name for a in child.names])
                elif child.module and child.module.split(".")[0] == "pumpkin":
                    into.add(child.module.split(".")[1] if "." in child.module else "__init__")
                elif child.module:
                    external.add(child.module)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("pumpkin."):
                        into.add(alias.name.split(".")[1])
                    else:
                        external.add(alias.name)
            visit(child, nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    known = set(LAYER)
    return top & known, deferred & known, external


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - set(LAYER) == set(), "put new modules in a layer (and README's diagram)"
    assert set(LAYER) - modules == set()


def test_imports_point_down_or_sideways_only():
    wrong = []
    for module, layer in LAYER.items():
        top, deferred, _ = imports(module)
        wrong += [f"{module} -> {dep}" for dep in sorted(top | deferred) if LAYER[dep] > layer]
    assert wrong == []


def test_below_the_shell_nothing_does_network_or_loop_io():
    wrong = []
    for module in PURE | CORE:
        _, _, external = imports(module)
        for lib in sorted(external):
            if (lib in IO_LIBRARIES or lib.split(".")[0] in IO_LIBRARIES - {"zmq.asyncio"}) and (
                module,
                lib,
            ) not in IO_ALLOWED:
                wrong.append(f"{module} imports {lib}")
    assert wrong == []


def test_module_level_imports_have_no_cycles():
    graph = {m: imports(m)[0] - {m} for m in LAYER}
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for dep in sorted(graph[node]):
            cycle = walk(dep, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for module in sorted(graph):
        cycle = walk(module, [])
        assert cycle is None, " -> ".join(cycle)


def test_the_simulator_is_pure_and_stands_alone():
    """pumpkin.sim has no sockets or event loop, and needs nothing of pumpkin beyond the pure rules (a user's
    algorithm runs on it with only the simulator imported)."""
    for path in sorted((PACKAGE / "sim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.level == 0 else []
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                inside = name.startswith("pumpkin.sim") or name.removeprefix("pumpkin.") in PURE
                assert not name.startswith("pumpkin.") or inside, f"{path.name}: {name}"
                assert name.split(".")[0] not in {n.split(".")[0] for n in IO_LIBRARIES}, f"{path.name}: {name}"
