"""The daemon asks glibc for one malloc arena (see pumpkin.malloc), unless the environment already says."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

ASK = "from pumpkin import malloc; print(malloc.one_arena())"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's arenas are glibc's")
def test_one_arena_is_asked_for_unless_the_environment_says_how_many():
    def asked(**env: str) -> str:
        run = subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True, env=env, check=True)
        return run.stdout.strip()

    assert asked() == "True"
    assert asked(MALLOC_ARENA_MAX="4") == "False"  # the user's own setting stands
