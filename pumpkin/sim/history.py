"""A run's history: every send, delivery, drop (with why), timer, crash and restart, as plain records.

Records are written as JSON lines with sorted keys, so two runs of one scenario under one seed give the same bytes.
Kinds: ``send``, ``deliver``, ``drop``, ``timer``, ``crash``, ``restart``, ``partition``, ``heal``, ``note`` (what a
node chose to record, such as a client's operation).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("send", "deliver", "drop", "timer", "crash", "restart", "partition", "heal", "note")


@dataclass(frozen=True, slots=True)
class Record:
    """One thing that happened at virtual time ``t`` on ``node`` (to or from ``peer`` for messages)."""

    t: float
    kind: str
    node: str = ""
    peer: str = ""
    msg: str = ""  # the message type, a timer's name, or a note's name
    id: int = 0  # a message's id: its send, deliveries and drop share it
    why: str = ""  # why a message was dropped
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        out: dict[str, Any] = {"t": self.t, "kind": self.kind}
        for name in ("node", "peer", "msg", "id", "why"):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.data:
            out["data"] = self.data
        return json.dumps(out, sort_keys=True, default=repr)

    @classmethod
    def from_json(cls, line: str) -> Record:
        raw = json.loads(line)
        return cls(
            raw["t"],
            raw["kind"],
            raw.get("node", ""),
            raw.get("peer", ""),
            raw.get("msg", ""),
            raw.get("id", 0),
            raw.get("why", ""),
            raw.get("data", {}),
        )


class History:
    """The records of one run, in the order they happened."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self.records: list[Record] = []
        self._notes: dict[str, list[Record]] = {}  # by name: checkers ask for them, and a run has millions of records
        self.enabled = True  # a benchmark may count without keeping
        for record in records:
            self.add(record)

    def add(self, record: Record) -> None:
        if self.enabled:
            self.records.append(record)
            if record.kind == "note":
                self._notes.setdefault(record.msg, []).append(record)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def of(self, *kinds: str) -> list[Record]:
        """The records of these kinds, in order."""
        return [r for r in self.records if r.kind in kinds]

    def notes(self, name: str) -> list[Record]:
        """The ``note`` records called ``name``."""
        return list(self._notes.get(name, ()))

    def to_jsonl(self) -> str:
        return "".join(r.to_json() + "\n" for r in self.records)

    def write(self, path: Path) -> None:
        path.write_text(self.to_jsonl())

    @classmethod
    def read(cls, path: Path) -> History:
        return cls(Record.from_json(line) for line in path.read_text().splitlines() if line)
