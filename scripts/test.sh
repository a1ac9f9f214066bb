#!/usr/bin/env bash
# Set up and run the whole test suite (lint and type checks first). Extra arguments go to pytest alone
# (e.g. -k hello, -x), without the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
if [ $# -eq 0 ]; then
  # The whole suite starts with the cheap checks: lint, formatting, and types (mypy --strict).
  .venv/bin/ruff check pumpkin tests bench seeds
  .venv/bin/ruff format --check pumpkin tests bench seeds
  .venv/bin/python -m mypy pumpkin
fi
exec .venv/bin/python -m pytest "$@"
