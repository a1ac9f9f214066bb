#!/usr/bin/env bash
# Set up and run the hello world: prints "Greeting: Hello World"; Ctrl-C stops it.
# Extra arguments go to pmk. As root, pmk runs in a throwaway network namespace so that nothing it
# announces can leave the machine (see ../shared/notes/sandbox-host.md); otherwise it runs as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && [ "${PUMPKIN_NO_SANDBOX:-}" != 1 ]; then
  exec scripts/sandbox.sh .venv/bin/pmk --endpoint.type zmq.IPC "$@"
fi
exec .venv/bin/pmk --endpoint.type zmq.IPC "$@"
