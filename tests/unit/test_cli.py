"""The command line's own rules: how log lines look, how bad flags are reported."""

from __future__ import annotations

import logging
import re
import time

import pytest

from pumpkin.cli import log_formatter, run_daemon

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


def test_a_bad_flag_is_one_line_naming_it_and_exit_status_2(capsys):
    for argv, problem in (
        (["--endpoint.type", "zmq.FOO"], "argument --endpoint.type: invalid choice: 'zmq.FOO'"),
        (["--bcport"], "argument --discovery.bcport/--bcport: expected one argument"),
        (["--endpoint.tpc_port", "1"], "unrecognized arguments: --endpoint.tpc_port 1"),
    ):
        with pytest.raises(SystemExit) as stopped:
            run_daemon(argv)
        assert stopped.value.code == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(f"pmk: error: {problem}") and captured.err.count("\n") == 1
