#!/usr/bin/env bash
# Run one command inside a throwaway network namespace with a private LAN (a veth pair, 10.79.0.1/24),
# then delete the namespace. Daemons started this way find each other but can send nothing off the machine.
set -euo pipefail
ns="pmk$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')s"
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add v0 type veth peer name v1
ip -n "$ns" addr add 10.79.0.1/24 brd + dev v0
ip -n "$ns" link set v0 up
ip -n "$ns" link set v1 up
ip -n "$ns" route add 224.0.0.0/4 dev v0
echo "sandbox: running in network namespace $ns" >&2
ip netns exec "$ns" "$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null || true' INT TERM
wait $child || status=$?
wait $child 2>/dev/null || true
exit "${status:-0}"
