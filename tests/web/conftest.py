"""Fixtures for the page's tests: Debian's Chromium driven by Playwright, run inside the test's sandbox.

The daemons run in a network namespace (``sandbox``), so their HTTP servers live on that namespace's
loopback. pytest stays in its own namespace (scripts/test.sh's) and starts Chromium inside the sandbox
through a small wrapper script; Playwright talks to the browser over pipes, which cross namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, PmkProcess
from tests.netns import CI, Sandbox

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox: we run as root in CI; the rest keeps Chromium from calling home (nothing may leave the machine).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
URL_LINE = re.compile(r"Web page: (http://\S+/)")


def browser_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "needs playwright from PyPI (scripts/setup.sh test)"
    if not CHROMIUM.exists():
        return f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def require_browser() -> None:
    """Skip without a browser; under CI=true that is a failure instead."""
    reason = browser_unavailable_reason()
    if reason:
        if CI:
            pytest.fail(f"CI=true but the browser tests {reason}")
        pytest.skip(reason)


def web_url(p: PmkProcess, timeout_s: float = 20.0) -> str:
    """The page URL a pmk printed at start-up."""
    p.wait_for("Web page: http://", timeout_s, stream="err")
    return next(m.group(1) for line in p.err if (m := URL_LINE.search(line)))


def api(sandbox: Sandbox, url: str, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """Call the API from inside the sandbox (its daemons' HTTP servers live on its loopback)."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "url, method, body, token = json.loads(sys.argv[1])\n"
        "req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())\n"
        "req.add_header('Content-Type', 'application/json')\n"
        "if token is not None: req.add_header('Authorization', 'Bearer ' + token)\n"
        "try:\n"
        "    with urllib.request.urlopen(req, timeout=10) as r: print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
    )
    out = subprocess.run(
        sandbox.wrap([sys.executable, "-c", script, json.dumps([url, method, body, token])]),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    status, _, text = out.stdout.partition("\n")
    return int(status), json.loads(text)


@contextlib.contextmanager
def chromium(sandbox: Sandbox, tmp_path: Path, *extra_args: str) -> Iterator[Any]:
    """A headless Chromium inside the sandbox, with ``extra_args`` (skips without Playwright or Chromium)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    wrapper = tmp_path / "chromium-in-sandbox"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {sandbox.name} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(wrapper), headless=True, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def browser(sandbox: Sandbox, tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium inside the sandbox (skips without Playwright or Chromium, fails under CI)."""
    with chromium(sandbox, tmp_path) as b:
        yield b
