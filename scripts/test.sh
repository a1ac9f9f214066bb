#!/usr/bin/env bash
# Set up and run the whole test suite (lint and type checks first) inside a network namespace of its own, so that
# nothing a test starts can send a packet off the machine. Extra arguments go to pytest alone (e.g. -k hello, -x),
# without the checks.
#
# As root the namespace is made with unshare; as a normal user inside a user namespace as well (uid 0 in there).
# Where neither works the suite refuses to run, unless PUMPKIN_TEST_ANY_NETWORK=1 says the machine is disposable.
set -euo pipefail
cd "$(dirname "$0")/.."

checks_then_pytest() {
  if [ $# -eq 0 ]; then
    # The whole suite starts with the cheap checks: lint, formatting, and types (mypy --strict).
    .venv/bin/ruff check pumpkin tests bench seeds
    .venv/bin/ruff format --check pumpkin tests bench seeds
    .venv/bin/python -m mypy pumpkin
  fi
  .venv/bin/python -m pytest "$@"
}

if [ "${_PUMPKIN_TEST_CONFINED:-}" = 1 ]; then
  # We are PID 1 of the run's own PID, mount and network namespaces (started below): when we end, the kernel
  # kills whatever is left in here, and the namespaces the tests made go with it.
  trap 'exit 130' INT # PID 1 ignores signals it has no handler for: without this, Ctrl-C in ruff would start mypy
  ip link set lo up
  # A veth pair with both ends in here: a broadcast-capable LAN for daemons that discover, leading nowhere.
  # There is no default route: nothing in here can reach the machine's network, let alone beyond it.
  ip link add v0 type veth peer name v1
  ip addr add 10.79.0.1/24 brd + dev v0
  ip link set v0 up
  ip link set v1 up
  ip route add 224.0.0.0/4 dev v0
  # /sys lists the interfaces of the namespace it was mounted in; this one's, from now on.
  mount -t sysfs sysfs /sys 2>/dev/null || true
  # The namespaces tests make (ip netns add) are named in a /run/netns of this run's own: they vanish with it and
  # never collide with another run's. In a user namespace that also is what lets `ip netns add` work at all.
  if ! { mkdir -p /run/netns 2>/dev/null && mount -t tmpfs -o mode=0755 pmk-test-netns /run/netns 2>/dev/null; }; then
    echo "test.sh: no private /run/netns (as a normal user it must exist: sudo mkdir /run/netns);" \
      "tests that build network namespaces will skip" >&2
  fi
  checks_then_pytest "$@"
  exit
fi

scripts/setup.sh test # outside any namespace: pip needs the package registry

if [ "$(id -u)" = 0 ]; then
  confine=(unshare --net --mount --pid --fork --mount-proc --kill-child)
else
  confine=(unshare --user --map-root-user --net --mount --pid --fork --mount-proc --kill-child)
  # Inside we are uid 0, so pytest and pmk would use /tmp/pytest-of-root and /tmp/pumpkin-0, which belong to
  # the real root wherever it ran them: give the run a temporary folder that is ours.
  TMPDIR="${TMPDIR:-/tmp}/pumpkin-test-$(id -u)"
  export TMPDIR
  mkdir -p -m 0700 "$TMPDIR"
fi
# Try for real: a kernel or container may refuse some namespace, or capabilities inside the user namespace.
if command -v ip >/dev/null && "${confine[@]}" ip link set lo up 2>/dev/null; then
  # Started in the background so that this shell can still act on SIGTERM: unshare ignores it while it waits.
  # Its child gets SIGINT back (a background job starts with it ignored) so that Ctrl-C stops pytest cleanly.
  "${confine[@]}" env --default-signal=INT _PUMPKIN_TEST_CONFINED=1 scripts/test.sh "$@" <&0 &
  suite=$!
  # Killing unshare kills the run's PID 1 (--kill-child), and with it everything in the run's namespaces.
  trap 'echo "test.sh: SIGTERM: stopping the suite and all it started" >&2; kill -KILL "$suite" 2>/dev/null || true' TERM
  trap ':' INT # Ctrl-C reaches pytest itself (same process group): wait for its summary
  status=0
  until wait "$suite"; do
    status=$?
    kill -0 "$suite" 2>/dev/null || break
  done
  exit "$status"
fi

if [ "${PUMPKIN_TEST_ANY_NETWORK:-}" = 1 ]; then
  echo "test.sh: cannot make a network namespace here; PUMPKIN_TEST_ANY_NETWORK=1, so running in this machine's" \
    "own network" >&2
  checks_then_pytest "$@"
  exit
fi
echo "test.sh: refusing to run: cannot make a network namespace here (needs iproute2, and root or unprivileged" \
  "user namespaces); PUMPKIN_TEST_ANY_NETWORK=1 runs the suite in this machine's network, if it is disposable" >&2
exit 2
