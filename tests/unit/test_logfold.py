"""Log lines per kind, rate-limited: a flood of one kind folds into one line with a count."""

from __future__ import annotations

import io
import json
import logging

from pumpkin.logfold import MAX_KINDS, LogFolder


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def folding_logger(name: str, per_window: int = 3) -> tuple[logging.Logger, io.StringIO, LogFolder, Clock]:
    """A logger writing to a string through a LogFolder, as ``logfold.install`` sets up a handler."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(message)s"))
    clock = Clock()
    folder = LogFolder(per_window, 60.0, emit=handler.handle, clock=clock)
    handler.addFilter(folder)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out, folder, clock


def test_a_flood_of_one_kind_writes_n_lines_then_one_line_with_the_count():
    log, out, folder, clock = folding_logger("test.flood")
    for n in range(1000):
        log.warning("ignored datagram from %s: protocol version %r", "10.0.0.9", f"x{n}")
    assert out.getvalue().count("\n") == 3  # the first three only
    assert folder.folded_total == 997
    clock.now = 61.0
    log.warning("ignored datagram from %s: protocol version %r", "10.0.0.9", "again")
    lines = out.getvalue().splitlines()
    assert lines[3] == (
        "WARNING:… 997 more like this in the last 61 s, the last: "
        "ignored datagram from 10.0.0.9: protocol version 'x999'"
    )
    assert lines[4].endswith("'again'")  # a new window: written again


def test_kinds_are_counted_apart_and_flush_writes_the_summary_of_a_kind_gone_quiet():
    log, out, folder, clock = folding_logger("test.kinds", per_window=2)
    for _ in range(5):
        log.warning("disk %s failing", "sda")
        log.error("peer %s sent junk", "b")
        log.info("disk %s failing", "sda")  # another level: another kind
    assert out.getvalue().count("\n") == 6
    clock.now = 30.0
    assert folder.flush() == 0  # the minute is not over
    clock.now = 60.0
    assert folder.flush() == 3
    tail = out.getvalue().splitlines()[6:]
    assert sorted(line.split(":", 1)[0] for line in tail) == ["ERROR", "INFO", "WARNING"]
    assert all("… 3 more like this in the last 60 s" in line for line in tail)
    assert folder.flush() == 0  # said once


def test_tracebacks_fold_too_and_the_summary_holds_no_traceback():
    log, out, folder, clock = folding_logger("test.tb", per_window=1)
    for _ in range(10):
        try:
            raise ValueError("bad input")
        except ValueError:
            log.exception("handling an inbound message failed")
    assert out.getvalue().count("Traceback") == 1
    clock.now = 60.0
    folder.flush()
    assert out.getvalue().count("Traceback") == 1
    assert "… 9 more like this" in out.getvalue().splitlines()[-1]


def test_many_distinct_messages_share_one_kind_per_logger_past_the_table_size():
    log, out, folder, clock = folding_logger("test.fstrings", per_window=1)
    for n in range(MAX_KINDS + 500):
        log.warning(f"line {n}")  # formatted by the caller: every line a template of its own
    assert len(folder._kinds) == MAX_KINDS + 1  # bounded: the rest share the catch-all kind
    assert folder.folded_total == 499


def test_zero_lines_per_window_turns_folding_off():
    log, out, folder, clock = folding_logger("test.off", per_window=0)
    for _ in range(50):
        log.warning("same")
    assert out.getvalue().count("\n") == 50 and folder.folded_total == 0


def test_what_is_folded_is_said_at_a_stop_even_before_its_window_closes():
    log, out, folder, clock = folding_logger("test.stop", per_window=2)
    for _ in range(14):
        log.warning("seed %s failed", "Pick")
    clock.now = 10.0
    assert folder.flush() == 0  # the window is open: nothing due yet ...
    assert folder.flush(force=True) == 1  # ... but a stopping daemon says it now
    assert out.getvalue().splitlines()[-1] == "WARNING:… 12 more like this in the last 10 s, the last: seed Pick failed"
    assert folder.flush(force=True) == 0  # said once


def test_a_summary_carries_the_count_and_the_last_lines_fields_for_json():
    from pumpkin.logformat import JsonFormatter

    log, out, folder, clock = folding_logger("test.fields", per_window=1)
    handler = log.handlers[0]
    handler.setFormatter(JsonFormatter())
    for n in range(5):
        log.warning("packet %s failed", n, extra={"seed": "Pick", "packet": f"p{n}", "kind": "bad-data"})
    clock.now = 60.0
    folder.flush()
    first, summary = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "packet 0 failed" and first["seed"] == "Pick" and first["packet"] == "p0"
    assert first["level"] == "WARNING" and first["logger"] == "test.fields" and first["time"][10] == "T"
    assert summary["message"] == "… 4 more like this in the last 60 s, the last: packet 4 failed"
    assert summary["folded"] == 4 and summary["window_s"] == 60.0
    assert summary["seed"] == "Pick" and summary["packet"] == "p4" and summary["kind"] == "bad-data"


def test_a_json_line_holds_its_traceback_and_stays_one_line():
    from pumpkin.logformat import JsonFormatter

    log, out, folder, clock = folding_logger("test.json", per_window=5)
    log.handlers[0].setFormatter(JsonFormatter())
    try:
        raise ValueError("bad\ninput")
    except ValueError:
        log.exception("handling %s failed", "x")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "handling x failed" and record["level"] == "ERROR"
    assert record["traceback"].startswith("Traceback") and "ValueError: bad\ninput" in record["traceback"]
