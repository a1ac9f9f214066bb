"""scripts/setup.sh, README's first step: it says what it does while pip works, and skips pip when nothing changed.

The script runs for real in a copy of the project, with a stand-in for ``.venv/bin/python`` that records how it
was called (the suite runs without network, so a real ``pip install`` cannot run here).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/../../calls"
echo "Requirement already satisfied: zeroconf"
echo "Collecting pyzmq"
echo "Successfully installed pyzmq-27.0"
exit ${FAKE_PIP_EXIT:-0}
"""


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", root / "scripts")
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copy(ROOT / "setup.py", root)
    fake = root / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return root


def setup(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "scripts" / "setup.sh"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def calls(root: Path) -> list[str]:
    f = root / "calls"
    return f.read_text().splitlines() if f.exists() else []


def test_install_progress_is_shown_and_an_unchanged_setup_skips_pip(tmp_path):
    root = project(tmp_path)
    first = setup(root, "test")
    assert first.returncode == 0, first.stderr
    assert "setup: installing Pumpkin with [test]" in first.stderr
    assert "setup: Collecting pyzmq" in first.stderr and "setup: done" in first.stderr
    assert "Requirement already satisfied" not in first.stderr  # noise, filtered
    assert calls(root) == ["-m pip install --disable-pip-version-check --progress-bar off -e .[test]"]

    again = setup(root, "test")
    assert again.returncode == 0 and again.stderr == "" and len(calls(root)) == 1

    other_extras = setup(root)  # another set of extras installs again
    assert other_extras.returncode == 0 and calls(root)[-1].endswith("-e .")
    with (root / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    changed = setup(root)
    assert changed.returncode == 0 and len(calls(root)) == 3


def test_a_failed_pip_stops_with_its_exit_status_and_says_how_to_see_why(tmp_path):
    root = project(tmp_path)
    failed = setup(root, "test", FAKE_PIP_EXIT="3")
    assert failed.returncode == 3
    assert "setup: pip failed (exit 3)" in failed.stderr
    assert setup(root, "test").returncode == 0 and len(calls(root)) == 2  # not marked done: tried again
