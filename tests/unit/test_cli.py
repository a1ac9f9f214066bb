"""The command line's own rules: how log lines look, how bad flags are reported."""

from __future__ import annotations

import logging
import re
import time

from pumpkin.cli import log_formatter

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"


def _record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord("pumpkin.daemon", level, __file__, 1, msg, ("myhost-783d9470",), None)
    record.created = time.mktime((2026, 12, 4, 22, 15, 3, 0, 0, -1)) + 0.123
    record.msecs = 123.0
    return record


def test_a_log_line_starts_with_local_time_to_the_millisecond_and_the_level():
    line = log_formatter(debug=False).format(_record("Node assigned UID: %s"))
    assert line == "2026-12-04 22:15:03.123 INFO Node assigned UID: myhost-783d9470"
    warning = log_formatter(debug=False).format(_record("seed %s failed", logging.WARNING))
    assert re.fullmatch(STAMP + " WARNING seed myhost-783d9470 failed", warning)


def test_with_debug_a_log_line_also_names_its_logger():
    line = log_formatter(debug=True).format(_record("Node assigned UID: %s"))
    assert line == "2026-12-04 22:15:03.123 INFO pumpkin.daemon: Node assigned UID: myhost-783d9470"
