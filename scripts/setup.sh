#!/usr/bin/env bash
# Create .venv (if needed) and install Pumpkin into it, editable, with the extras named in $1 (e.g. "test").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=${1:-}
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# Quiet, but keep real errors: pip's warnings about this machine's local indexes are noise.
.venv/bin/python -m pip install --disable-pip-version-check -q -e "$spec" 2> >(grep -v "is ignored: it is neither" >&2)
