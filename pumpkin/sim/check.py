"""Checkers: a checker is any function from a history to a list of violations (empty when the run is good).

def no_drops(history: History) -> list[Violation]:
    return [Violation("no_drops", r.t, f"{r.msg} lost") for r in history.of("drop")]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from pumpkin.sim.history import History, Record


@dataclass(frozen=True)
class Violation:
    """What a checker found wrong, and when (virtual seconds)."""

    checker: str
    t: float
    what: str

    def __str__(self) -> str:
        return f"[{self.checker}] t={self.t:.6f}: {self.what}"


class Checker(Protocol):
    def __call__(self, history: History) -> list[Violation]: ...


def check(history: History, checkers: Iterable[Checker]) -> list[Violation]:
    """Every checker's violations, checker by checker."""
    return [v for checker in checkers for v in checker(history)]


def invariant(name: str, holds: Callable[[Record], bool]) -> Checker:
    """A checker from a predicate every record must satisfy: ``invariant("up", lambda r: r.kind != "crash")``."""

    def checker(history: History) -> list[Violation]:
        return [Violation(name, r.t, f"{r.kind} {r.node} {r.msg} {r.data}".strip()) for r in history if not holds(r)]

    return checker
