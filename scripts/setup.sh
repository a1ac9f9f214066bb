#!/usr/bin/env bash
# Create .venv (if needed) and install Pumpkin into it, editable, with the extras named in $1 (e.g. "test").
# Says what it does as it goes (the first install takes about a minute); when .venv already holds an install made
# from the same pyproject.toml and setup.py with the same extras, it skips pip (the install is editable: code
# changes need no reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=${1:-}
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=.venv/.pumpkin-setup
want="$(cat pyproject.toml setup.py 2>/dev/null | sha256sum | cut -d' ' -f1) extras=$extras"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
echo "setup: installing Pumpkin${extras:+ with [$extras]} and its dependencies into .venv (the first time takes about a minute)" >&2
# One line per package as pip gets it; pip's warnings about this machine's local indexes are noise.
set +e
.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -e "$spec" 2>&1 \
  | grep --line-buffered -E "^(Collecting|Installing collected|Successfully installed|ERROR|error)" \
  | sed -u 's/^/setup: /' >&2
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
  echo "setup: pip failed (exit $rc); run: .venv/bin/python -m pip install -e '$spec' to see why" >&2
  exit "$rc"
fi
echo "$want" >"$stamp"
echo "setup: done" >&2
