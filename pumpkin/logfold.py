"""Log lines per kind, rate-limited: a flood of one kind of line folds into one line saying how many were folded.

A *kind* is a logger, a level and a message template (``record.msg`` before its arguments are filled in), so
"ignored beacon from %s: %s" is one kind however many peers send bad beacons. Each kind may write
``per_window`` lines in every ``window_s`` (its window opens with its first line); the lines past that are
dropped and counted, and once the window is over the next line of that kind, or ``flush`` (called every second
by the daemon), first writes one line at the kind's level: "… 12 more like this in the last 60 s, the last:
<message>" (with ``folded`` and ``window_s``, and the last line's structured fields, on the record: see
``logformat``). Nothing folded goes unsaid: ``flush(force=True)``, called as the daemon stops, writes the count of
every window still open. Pure bookkeeping with an injected clock; ``install`` puts it on the handlers of the root
logger, so it applies to every logger of the process (Pumpkin's, and the libraries' such as asyncio's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .logformat import FIELDS

LINES_PER_WINDOW = 10
WINDOW_S = 60.0
#: Kinds tracked at once; past this, new kinds share one per logger and level (a logger that formats its
#: messages itself, f-string style, would otherwise make every line a kind of its own, and this table grow).
MAX_KINDS = 2048
SAMPLE_CHARS = 300

_Key = tuple[str, int, str]


@dataclass
class _Kind:
    opened: float
    written: int = 0
    folded: int = 0
    level: int = logging.INFO
    name: str = ""
    last: str = ""  # the last folded line's message, cut to SAMPLE_CHARS (not the record: it may hold a traceback)
    fields: dict[str, Any] = field(default_factory=dict)  # the last folded line's structured fields (seed, peer...)


class LogFolder(logging.Filter):
    """A filter that lets at most ``per_window`` lines of each kind through every ``window_s``.

    ``per_window`` 0 turns folding off. ``emit`` writes the summary lines (``install`` points it at the
    handler the filter sits on).
    """

    def __init__(
        self,
        per_window: int = LINES_PER_WINDOW,
        window_s: float = WINDOW_S,
        emit: Callable[[logging.LogRecord], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.per_window = per_window
        self.window_s = window_s
        self.emit = emit or (lambda record: None)
        self.clock = clock
        self.folded_total = 0  # lines dropped since start, for pmk stats
        self._kinds: dict[_Key, _Kind] = {}
        self._lock = threading.Lock()  # seeds log from worker threads

    def filter(self, record: logging.LogRecord) -> bool:
        """True when ``record`` is written; a summary of the kind's last window goes out first when due."""
        if self.per_window <= 0 or getattr(record, "pmk_folded", False):
            return True
        now = self.clock()
        summary = None
        with self._lock:
            key = self._key(record)
            kind = self._kinds.get(key)
            if kind is None:
                kind = self._kinds[key] = _Kind(now)
            elif now - kind.opened >= self.window_s:
                summary = self._summary(kind, now)
                kind.opened, kind.written, kind.folded = now, 0, 0
            if kind.written < self.per_window:
                kind.written += 1
                passed = True
            else:
                kind.folded += 1
                kind.name, kind.level, kind.last = record.name, record.levelno, _sample(record)
                kind.fields = {f: getattr(record, f) for f in FIELDS if hasattr(record, f)}
                self.folded_total += 1
                passed = False
        if summary is not None:
            self.emit(summary)
        return passed

    def flush(self, force: bool = False) -> int:
        """Write the summary of every kind whose window is over and had lines folded (``force``: of every kind
        that had lines folded, its window over or not, as the process stops); returns how many."""
        now = self.clock()
        due: list[logging.LogRecord] = []
        with self._lock:
            for key, kind in list(self._kinds.items()):
                if now - kind.opened < self.window_s and not (force and kind.folded):
                    continue
                summary = self._summary(kind, now)
                if summary is not None:
                    due.append(summary)
                del self._kinds[key]  # quiet since its window closed: forgotten, so the table stays small
        for record in due:
            self.emit(record)
        return len(due)

    def _key(self, record: logging.LogRecord) -> _Key:
        key = (record.name, record.levelno, str(record.msg))
        if key in self._kinds or len(self._kinds) < MAX_KINDS:
            return key
        return (record.name, record.levelno, "*")

    def _summary(self, kind: _Kind, now: float) -> logging.LogRecord | None:
        if not kind.folded:
            return None
        record = logging.LogRecord(
            kind.name,
            kind.level,
            __file__,
            0,
            "… %d more like this in the last %s s, the last: %s",
            (kind.folded, _seconds(now - kind.opened), kind.last),
            None,
        )
        for name, value in kind.fields.items():
            setattr(record, name, value)
        record.pmk_folded = True
        record.folded = kind.folded
        record.window_s = round(now - kind.opened, 3)
        return record


def _seconds(s: float) -> str:
    """A window's length as a person reads it: whole seconds, tenths below 10 s."""
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def _sample(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format in someone's log call must not break logging
        text = str(record.msg)
    text = " ".join(text[: SAMPLE_CHARS * 2].split())
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"


_installed: list[LogFolder] = []


def install(per_window: int = LINES_PER_WINDOW, window_s: float = WINDOW_S) -> None:
    """Fold the lines of every handler of the root logger (``logging.basicConfig`` made them): a filter on each,
    writing its summaries to that handler."""
    for handler in logging.getLogger().handlers:
        folder = LogFolder(per_window, window_s, emit=handler.handle)
        handler.addFilter(folder)
        _installed.append(folder)


def flush(force: bool = False) -> None:
    """Write the summaries that are due, on every installed filter (the daemon calls this every second, and with
    ``force`` as it stops, so that no folded line goes unsaid)."""
    for folder in _installed:
        folder.flush(force)


def folded_total() -> int:
    """Lines folded so far by the installed filters (for ``pmk stats``)."""
    return sum(f.folded_total for f in _installed)
