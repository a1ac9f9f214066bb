"""The web page reads one query interface, never the daemon's internals."""

import ast
import inspect
from pathlib import Path

from pumpkin.query import NodeQuery
from pumpkin.web import Commands

WEB = Path(__file__).resolve().parents[2] / "pumpkin" / "web.py"


def _names(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


def test_web_does_not_import_the_daemon() -> None:
    tree = ast.parse(WEB.read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "daemon" not in imported and "pumpkin.daemon" not in imported
    named = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    named |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "daemon" not in named


def test_web_asks_only_what_the_query_and_commands_offer() -> None:
    """Every attribute read on the query (``q`` or ``self.query``) is a NodeQuery method, and on
    ``self.commands`` a Commands method: no reaching through them into a router or a transport."""
    tree = ast.parse(WEB.read_text())
    asked: dict[str, set[str]] = {"query": set(), "commands": set()}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if isinstance(v, ast.Name) and v.id == "q":
            asked["query"].add(node.attr)
        elif (
            isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id == "self" and v.attr in asked
        ):
            asked[v.attr].add(node.attr)
    assert asked["query"], "the views read nothing through the query?"
    assert asked["query"] <= _names(NodeQuery), asked["query"] - _names(NodeQuery)
    assert asked["commands"] <= _names(Commands), asked["commands"] - _names(Commands)


def test_query_answers_are_plain_data() -> None:
    """NodeQuery's public methods are annotated with plain types, never a component of the daemon."""
    for name in _names(NodeQuery):
        ret = str(inspect.signature(getattr(NodeQuery, name)).return_annotation)
        for component in ("Router", "Transport", "Mesh", "PeerTable", "FailedStore", "WaitingRoom", "Daemon"):
            assert component not in ret, f"NodeQuery.{name} returns {ret}"
