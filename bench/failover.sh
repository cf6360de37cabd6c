#!/usr/bin/env bash
# Failover stall (issue 21): vnic on two TAPs in a bridge, a chargen
# download, the active link's cable pulled ten times (ip link set LINK
# down, then up again: it stands by), alternating the links; prints one
# line with the stall at the client (last byte before to first byte
# after), p50 and max. bench/run.sh runs it as a section of its own; alone:
#
#   VNIC=target/release/vnic bench/failover.sh
#
# Needs root. Makes its own namespace and removes it, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VNIC=${VNIC:-${CARGO_TARGET_DIR:-target}/release/vnic}
[ -x "$VNIC" ] || cargo build --release --bin vnic >&2
FAILOVERS=${FAILOVERS:-10}
NS=vnb-fo$$
CTL=/tmp/vnb-fo$$.sock
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ -n "$PID" ] && wait "$PID" 2>/dev/null || true
  sleep 0.2
  ip netns del "$NS" 2>/dev/null || true
  rm -f "$CTL" /tmp/vnb-fo$$.ready /tmp/vnb-fo$$.err
}
trap cleanup EXIT
ip netns add "$NS"
x() { ip netns exec "$NS" "$@"; }
x ip link set lo up
x ip link add br0 address 02:00:00:00:00:01 type bridge
x ip addr add 10.0.0.1/24 dev br0
x ip link set br0 up
for t in vnicA vnicB; do
  x ip tuntap add $t mode tap
  x ip link set $t master br0 up
done
# Not through x(): a shell function run in the background is a subshell,
# and $! would name it, not vnic (the kill at the end then missed vnic,
# which outlived its namespace; ip netns exec execs vnic itself).
ip netns exec "$NS" "$VNIC" up --tap vnicA --tap vnicB --ip 10.0.0.2/24 --control "$CTL" --quiet \
  > /tmp/vnb-fo$$.ready 2> /tmp/vnb-fo$$.err &
PID=$!
for _ in $(seq 100); do grep -q ready /tmp/vnb-fo$$.ready 2>/dev/null && break; sleep 0.1; done
grep -q ready /tmp/vnb-fo$$.ready || { echo "vnic did not start: $(cat /tmp/vnb-fo$$.err)" >&2; exit 1; }
out=$(x timeout 60 python3 bench/failover_stall.py 10.0.0.2 "$FAILOVERS")
echo "  $out" >&2
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }
[ "$(echo "$out" | field intact)" = True ] || { echo "the download broke at a failover: $out" >&2; exit 1; }
stalls=$(echo "$out" | python3 -c "import json,sys; print(' '.join(str(s) for s in json.loads(sys.stdin.readline())['stalls_ms']))")
read -r p50 max < <(printf '%s\n' $stalls | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[NR]}')
n=$(printf '%s\n' $stalls | wc -l)
failovers=$(x "$VNIC" status --json --control "$CTL" | python3 -c "import json,sys; print(json.load(sys.stdin)['links']['failovers'])")
echo "Failover stall (two TAPs in a bridge, the active link's cable pulled under a chargen download, $n failovers (vnic counted $failovers), the download intact; last byte before to first byte after): p50 ${p50} ms, max ${max} ms (all: ${stalls}); target under 200 ms."
