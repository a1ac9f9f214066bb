"""Log lines per kind, rate-limited: a flood of one kind folds into one line with a count."""

from __future__ import annotations

import io
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
        "WARNING:… folded 997 similar lines in the last 61 s, the last: "
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
    assert all("folded 3 similar lines" in line for line in tail)
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
    assert "folded 9 similar lines" in out.getvalue().splitlines()[-1]


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
