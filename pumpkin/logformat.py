"""Log lines for machines (``--log-format json``): one JSON object per line.

Every object has ``time`` (ISO 8601, local time with its offset, to the millisecond), ``level``, ``logger`` and
``message`` (the line as the text format shows it, arguments filled in); ``traceback`` when the line has one; and
each of ``FIELDS`` that the line carries (set with ``extra=`` at the call, e.g. a failure's seed, packet and
kind, a peer's id, or a folded line's count).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import orjson

#: Structured fields copied from a record when a log call set them (``extra={"seed": ...}``).
FIELDS = ("seed", "packet", "peer", "kind", "state", "file", "folded", "window_s")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the message or traceback are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object (see the module documentation)."""
        when = datetime.datetime.fromtimestamp(record.created).astimezone()
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "":
                out[name] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["traceback"] = record.exc_text
        return orjson.dumps(out, default=str).decode()
