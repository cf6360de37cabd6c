#!/usr/bin/env bash
# vnic benchmark: vnic through its TAP against two references, same client
# programs, same run: the kernel's own TCP over a veth pair, and smoltcp on
# a TAP of its own (bench/smolserver: one thread, vnic's own apps on the
# same ports). Prints a table of vnic/smoltcp and vnic/kernel ratios and
# appends it (date, machine, commit, command) to BENCHMARKS.md.
#
#   bench/run.sh [--quick] [--no-record]
#
# Needs root (namespaces, TAP, veth, nftables for the loss rows). Makes its
# own namespaces and removes them, also on failure; every step is bounded
# in time. Never fails on a slow figure, only when something breaks.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
RECORD=1
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --no-record) RECORD=0 ;;
    *) echo "usage: bench/run.sh [--quick] [--no-record]" >&2; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  BULK=$((64 << 20)); RTTS=2000; CONNS=2000; LOSSBULK=$((16 << 20)); WRKSECS=2; WRKROUNDS=1; IDLE=10000; CRASHES=${CRASHES:-3}
else
  BULK=$((1024 << 20)); RTTS=20000; CONNS=20000; LOSSBULK=$((256 << 20)); WRKSECS=10; WRKROUNDS=3; IDLE=100000
fi

# VNIC, BCLIENT, KSERVER, TAPBLAST and SMOLSERVER may name binaries built
# already (the test suite names all but SMOLSERVER); otherwise they are
# built here. The smoltcp server is a crate of its own (bench/smolserver,
# outside the workspace), built into the same target directory.
T=${CARGO_TARGET_DIR:-target}
if [ -z "${VNIC:-}" ] || [ -z "${BCLIENT:-}" ] || [ -z "${KSERVER:-}" ] || [ -z "${TAPBLAST:-}" ]; then
  # vnic alone first: building the examples with it would compile in the
  # test-only faults of the workspace's crates (the root package's
  # dev-dependencies enable them for examples and tests). Since they are
  # armed only by VNIC_TEST_FAULTS=1 (never set here), such a vnic pays a
  # branch per segment, not the payload scan that halved the upload speed
  # of the runs of 2026-12-04 21:52 to 2026-12-05 02:16; still, the vnic
  # measured is the release one. The copy keeps it from the examples'
  # build.
  cargo build --release --bin vnic >&2
  cp "$T/release/vnic" "$T/release/vnic-bench"
  cargo build --release --example bclient --example kserver --example tapblast >&2
  VNIC=$T/release/vnic-bench
  BCLIENT=$T/release/examples/bclient
  KSERVER=$T/release/examples/kserver
  TAPBLAST=$T/release/examples/tapblast
fi
if grep -q VNIC-TEST-PANIC "$VNIC" 2>/dev/null; then
  FAULTS_NOTE=" — vnic built with the test-only faults (a test build, unarmed): not the release build"
  echo "warning: $VNIC was built with the test-only faults (cargo test or with the examples): not the release build" >&2
else
  FAULTS_NOTE=""
fi
if [ -z "${SMOLSERVER:-}" ]; then
  cargo build --release --manifest-path bench/smolserver/Cargo.toml --target-dir "$T" >&2
  SMOLSERVER=$T/release/smolserver
fi

ID=$$
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
NSV=vnb-v$ID NSKS=vnb-ks$ID NSKC=vnb-kc$ID NSB=vnb-b$ID NSM=vnb-m$ID TAP=vnbt$ID STAP=vnbm$ID
CTL=/tmp/vnb-$ID.sock
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.2
  ip netns del "$NSV" 2>/dev/null || true
  ip netns del "$NSKS" 2>/dev/null || true
  ip netns del "$NSKC" 2>/dev/null || true
  ip netns del "$NSB" 2>/dev/null || true
  ip netns del "$NSM" 2>/dev/null || true
  rm -f "$CTL" /tmp/vnb-$ID.* /dev/shm/vnb-$ID*
}
trap cleanup EXIT

# --- the kernel reference: server and client namespaces joined by veth ---
ip netns add "$NSKS"; ip netns add "$NSKC"
ip link add vnbk$ID netns "$NSKC" type veth peer name vnbs$ID netns "$NSKS"
ip -n "$NSKC" addr add 10.8.0.1/24 dev vnbk$ID
ip -n "$NSKS" addr add 10.8.0.2/24 dev vnbs$ID
for n in "$NSKC" "$NSKS"; do ip -n "$n" link set lo up; done
ip -n "$NSKC" link set vnbk$ID up; ip -n "$NSKS" link set vnbs$ID up
ip netns exec "$NSKS" "$KSERVER" 10.8.0.2 >/dev/null &
KSERVER_PID=$!
PIDS+=($KSERVER_PID)
# The kernel's congestion control is the namespace's default (BBR on some
# kernels, CUBIC on most); vnic's is CUBIC. A second kernel server, at
# 10.8.0.3, puts its connections on CUBIC for the loss rows, where the two
# differ most.
KCC=$(ip netns exec "$NSKS" sysctl -n net.ipv4.tcp_congestion_control)
KCUBIC=
if [ "$KCC" != cubic ]; then
  ip -n "$NSKS" addr add 10.8.0.3/24 dev vnbs$ID
  ip netns exec "$NSKS" "$KSERVER" 10.8.0.3 cubic >/dev/null &
  PIDS+=($!)
  KCUBIC=10.8.0.3
fi

# --- vnic: its TAP in its own namespace, the client on the host side ---
ip netns add "$NSV"; ip -n "$NSV" link set lo up
VNIC_PID=
start_vnic() { # $1 = processors, then extra vnic flags
  if [ -n "$VNIC_PID" ]; then kill "$VNIC_PID" 2>/dev/null || true; wait "$VNIC_PID" 2>/dev/null || true; fi
  local procs=$1; shift
  local pflag=(--processors "$procs")
  [ "$procs" = 0 ] && pflag=()
  rm -f /tmp/vnb-$ID.ready
  ip netns exec "$NSV" "$VNIC" up --tap "$TAP" --ip 10.9.0.2/24 --host-ip 10.9.0.1/24 \
      "${pflag[@]}" --control "$CTL" --quiet --time-wait 1s "$@" > /tmp/vnb-$ID.ready 2>/tmp/vnb-$ID.err &
  VNIC_PID=$!
  PIDS+=($VNIC_PID)
  for _ in $(seq 100); do grep -q ready /tmp/vnb-$ID.ready 2>/dev/null && return 0; sleep 0.1; done
  echo "vnic did not start: $(cat /tmp/vnb-$ID.err)" >&2; exit 1
}
start_vnic 4
sleep 0.5

# --- smoltcp: its TAP (made here, with the host's address) in its own
# namespace, the client on the host side, as for vnic ---
ip netns add "$NSM"; ip -n "$NSM" link set lo up
ip -n "$NSM" tuntap add dev "$STAP" mode tap
ip -n "$NSM" addr add 10.10.0.1/24 dev "$STAP"
ip -n "$NSM" link set "$STAP" up
SMOL_PID=
start_smol() { # a fresh smoltcp server (connection numbers from 1, as vnic's)
  if [ -n "$SMOL_PID" ]; then kill "$SMOL_PID" 2>/dev/null || true; wait "$SMOL_PID" 2>/dev/null || true; fi
  rm -f /tmp/vnb-$ID.smol
  ip netns exec "$NSM" "$SMOLSERVER" "$STAP" 10.10.0.2/24 > /tmp/vnb-$ID.smol 2>/tmp/vnb-$ID.smolerr &
  SMOL_PID=$!
  PIDS+=($SMOL_PID)
  for _ in $(seq 100); do grep -q ready /tmp/vnb-$ID.smol 2>/dev/null && return 0; sleep 0.1; done
  echo "smolserver did not start: $(cat /tmp/vnb-$ID.smolerr)" >&2; exit 1
}
start_smol

run() { # ns cmd... -> JSON line (bounded in time)
  local ns=$1; shift
  timeout 300 ip netns exec "$ns" "$BCLIENT" "$@"
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }
# The median of three bulk transfers (ns mode addr bytes -> Gbit/s): the
# rows that targets are judged by. Single transfers of the same build
# differed by up to 1.5x within a run on these shared 2-core machines.
bulk3() {
  local a b c
  a=$(run "$1" "$2" "$3" "$4" | field gbps)
  b=$(run "$1" "$2" "$3" "$4" | field gbps)
  c=$(run "$1" "$2" "$3" "$4" | field gbps)
  python3 -c "print(sorted([$a, $b, $c])[1])"
}
# The smoltcp reference: a failed run is a warning and an n/a, not the
# end of the benchmark (which fails only when vnic breaks).
srun() {
  run "$NSM" "$@" || { echo "warning: smoltcp: bclient $* failed" >&2; echo '{}'; }
}
sfield() { python3 -c "import json,sys; print(json.loads(sys.stdin.readline() or '{}').get('$1', 'n/a'))"; }

loss_on() { # ns dev: 1% random drop both ways
  ip netns exec "$1" nft -f - <<NFT
table netdev vnbloss {
  chain in  { type filter hook ingress device "$2" priority 0; numgen random mod 100 < 1 drop; }
  chain out { type filter hook egress  device "$2" priority 0; numgen random mod 100 < 1 drop; }
}
NFT
}
loss_off() { ip netns exec "$1" nft delete table netdev vnbloss 2>/dev/null || true; }

ROWS=() TROWS=() MROWS=()
ratio() { # a b -> a/b with two decimals, n/a where either is not a number
  python3 -c "
try: a, b = float('$1'), float('$2')
except ValueError: a, b = 0.0, 0.0
print(f'{a/b:.2f}' if b > 0 else 'n/a')"
}
fmt_row() { # name unit a b -> table line with a/b
  printf '| %-42s | %10s | %10s | %6s | %s |' "$1" "$3" "$4" "$(ratio "$3" "$4")" "$2"
}
# The main table: name unit vnic smoltcp kernel (n/a where a server has no
# figure) -> vnic/smoltcp and vnic/kernel side by side.
row() {
  ROWS+=("$(printf '| %-42s | %10s | %10s | %10s | %6s | %6s | %s |' "$1" "$3" "$4" "$5" \
    "$(ratio "$3" "$4")" "$(ratio "$3" "$5")" "$2")")
  echo "${ROWS[-1]}" >&2
}
trow() { TROWS+=("$(fmt_row "$@")"); echo "${TROWS[-1]}" >&2; }
mrow() { MROWS+=("$(fmt_row "$@")"); echo "${MROWS[-1]}" >&2; }

V=10.9.0.2 K=10.8.0.2 S=10.10.0.2
echo "bulk upload/download $BULK bytes ..." >&2
# Medians of three (bulk3), vnic and kernel alternating row by row.
vu=$(bulk3 "$NSV" upload $V:9 $BULK);   ku=$(bulk3 "$NSKC" upload $K:9 $BULK)
row "bulk upload, 1 conn (to discard)" Gbit/s "$vu" n/a "$ku"
vd=$(bulk3 "$NSV" download $V:19 $BULK); kd=$(bulk3 "$NSKC" download $K:19 $BULK)
row "bulk download, 1 conn (from chargen)" Gbit/s "$vd" n/a "$kd"
start_vnic 4 --processor-queues off; sleep 0.3
vuq=$(run "$NSV" upload $V:9 $BULK | field gbps); vdq=$(run "$NSV" download $V:19 $BULK | field gbps)
row "bulk upload, --processor-queues off" Gbit/s "$vuq" n/a "$ku"
row "bulk download, --processor-queues off" Gbit/s "$vdq" n/a "$kd"
# smoltcp's TAP has no offloads: its figures stand beside vnic's without.
start_vnic 4 --offload off; sleep 0.3
vuo=$(run "$NSV" upload $V:9 $BULK | field gbps); vdo=$(run "$NSV" download $V:19 $BULK | field gbps)
suo=$(srun upload $S:9 $BULK | sfield gbps); sdo=$(srun download $S:19 $BULK | sfield gbps)
row "bulk upload, no offloads (--offload off)" Gbit/s "$vuo" "$suo" "$ku"
row "bulk download, no offloads" Gbit/s "$vdo" "$sdo" "$kd"
# The ceiling for the rows above: one thread writing plain 1514-byte
# frames into a TAP, nothing else (examples/tapblast.rs).
ip netns add "$NSB"
blast=$(timeout 30 ip netns exec "$NSB" "$TAPBLAST" vnbb$ID 10.7.0.1/24 3 | field gbps)
ip netns del "$NSB"
row "bare TAP: 1514 B frames, 1 thread, no TCP" Gbit/s "$blast" n/a n/a
start_vnic 4; sleep 0.3

if command -v nft >/dev/null; then
  loss_on "$NSV" "$TAP"; loss_on "$NSKC" vnbk$ID
  vul=$(run "$NSV" upload $V:9 $LOSSBULK | field gbps);   kul=$(run "$NSKC" upload $K:9 $LOSSBULK | field gbps)
  row "bulk upload, 1% loss" Gbit/s "$vul" n/a "$kul"
  vdl=$(run "$NSV" download $V:19 $LOSSBULK | field gbps); kdl=$(run "$NSKC" download $K:19 $LOSSBULK | field gbps)
  row "bulk download, 1% loss" Gbit/s "$vdl" n/a "$kdl"
  # A reference row only: skipped, not failed, if the kernel refuses CUBIC.
  if [ -n "$KCUBIC" ] && kdlc=$(run "$NSKC" download $KCUBIC:19 $LOSSBULK | field gbps); then
    row "bulk download, 1% loss, kernel on cubic" Gbit/s "$vdl" n/a "$kdlc"
  fi
  loss_off "$NSV"; loss_off "$NSKC"
  # vnic on BBR (issue 18): loss-free and at 1% loss (the same size), beside
  # vnic on CUBIC (the rows above) and the kernel on $KCC and on CUBIC.
  start_vnic 4 --congestion bbr; sleep 0.3
  # One transfer first, so the loss-free figure is not the fresh vnic's
  # first connection while the lossy one is its second.
  run "$NSV" download $V:19 $((16 << 20)) >/dev/null
  vdb=$(run "$NSV" download $V:19 $LOSSBULK | field gbps)
  loss_on "$NSV" "$TAP"
  vdlb=$(run "$NSV" download $V:19 $LOSSBULK | field gbps)
  loss_off "$NSV"
  start_vnic 4; sleep 0.3
  row "bulk download, 1% loss, vnic on bbr" Gbit/s "$vdlb" n/a "$kdl"
  if [ -n "${kdlc:-}" ]; then
    row "bulk download, 1% loss, vnic bbr, kernel cubic" Gbit/s "$vdlb" n/a "$kdlc"
  fi
  row "bulk download, vnic on bbr, loss-free" Gbit/s "$vdb" n/a "$kd"
  row "download bbr: 1% loss / loss-free" ratio "$(ratio "$vdlb" "$vdb")" n/a "$(ratio "$kdl" "$kd")"
  row "upload: 1% loss / loss-free (vnic, kernel)" ratio "$(python3 -c "print(round($vul/$vu,2))")" n/a "$(python3 -c "print(round($kul/$ku,2))")"
  row "download: 1% loss / loss-free" ratio "$(python3 -c "print(round($vdl/$vd,2))")" n/a "$(python3 -c "print(round($kdl/$kd,2))")"
else
  echo "nft missing: loss rows skipped" >&2
fi

echo "echo round trips ..." >&2
vr=$(run "$NSV" rtt $V:7 $RTTS 64); sr=$(srun rtt $S:7 $RTTS 64); kr=$(run "$NSKC" rtt $K:7 $RTTS 64)
row "echo 64 B round trip p50 (lower better)" us "$(echo "$vr" | field p50_us)" "$(echo "$sr" | sfield p50_us)" "$(echo "$kr" | field p50_us)"
row "echo 64 B round trip p99 (lower better)" us "$(echo "$vr" | field p99_us)" "$(echo "$sr" | sfield p99_us)" "$(echo "$kr" | field p99_us)"

echo "short connections ..." >&2
cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; } # busy idle
busy_pct() { # "busy0 idle0" "busy1 idle1" -> % of all cores busy in between
  echo "$1 $2" | awk '{b=$3-$1; i=$4-$2; t=b+i; if (t <= 0) t=1; printf "%.0f", 100*b/t}'
}
# A server's CPU time: utime + stime of all its threads (those that ended
# too), in clock ticks, from /proc/PID/stat (fields 14 and 15, counted
# after the command name, which may hold spaces).
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)
per_req_us() { # ticks0 ticks1 requests -> microseconds of CPU per request
  python3 -c "
try: t, n = ($2) - ($1), float('$3')
except ValueError: t, n = 0, 0.0
print(f'{t / $HZ / n * 1e6:.1f}' if n > 0 else 'n/a')"
}
kc=$(run "$NSKC" connrate $K:80 $CONNS 32)
start_smol
sc=$(srun connrate $S:80 $CONNS 32)
[ "$(echo "$sc" | sfield failed)" = 0 ] || echo "warning: smoltcp connrate failures: $sc" >&2
for p in 1 2 4; do
  start_vnic $p; sleep 0.3
  t0=$(cpu_ticks)
  vc=$(run "$NSV" connrate $V:80 $CONNS 32)
  busy=$(busy_pct "$t0" "$(cpu_ticks)")
  [ "$(echo "$vc" | field failed)" = 0 ] || echo "warning: vnic connrate failures: $vc" >&2
  row "HTTP GET, new conn each, 32 conc, $p cpu" req/s "$(echo "$vc" | field rps)" "$(echo "$sc" | sfield rps)" "$(echo "$kc" | field rps)"
  row "  all $(nproc) cores busy during it" % "$busy" n/a n/a
done
# Receive-side scaling: the same 4 processors behind two RX threads.
start_vnic 4 --rx-queues 2; sleep 0.3
vc=$(run "$NSV" connrate $V:80 $CONNS 32)
[ "$(echo "$vc" | field failed)" = 0 ] || echo "warning: vnic connrate failures: $vc" >&2
row "HTTP GET, new conn each, 4 cpu, 2 rx queues" req/s "$(echo "$vc" | field rps)" "$(echo "$sc" | sfield rps)" "$(echo "$kc" | field rps)"

wrk_run() { # ns url conns [wrk args] -> "requests/s requests" (errors reported on stderr)
  local out
  out=$(timeout 60 ip netns exec "$1" wrk -t2 -c"$3" -d"$WRKSECS"s "${@:4}" "$2" 2>&1)
  echo "$out" | grep -E "Non-2xx|Socket errors" >&2 || true
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '/requests in/ {print $1}')"
}
wrk_rps() { # ns url -> requests/s, 32 connections, a new one per request
  wrk_run "$1" "$2" 32 -H "Connection: close" | awk '{print $1}'
}
ab_rps() { # ns url strict -> requests/s; failed requests end the run if strict (vnic), else warn
  # (-l: the length of vnic's reply grows with its connection numbers)
  local out failed
  out=$(timeout 120 ip netns exec "$1" ab -q -l -n "$CONNS" -c 32 "$2" 2>&1) || true
  failed=$(echo "$out" | awk '/Failed requests/ {print $3}')
  if [ "${failed:-1}" != 0 ]; then
    echo "ab: ${failed:-all} failed requests against $2: $out" >&2
    [ "$3" = strict ] && exit 1
  fi
  echo "$out" | awk '/Requests per second/ {print $4}'
}
# measure PID cmd... -> "output of cmd" then, on a last line, the PID's CPU ticks spent in it
measure() {
  local pid=$1 c0 out
  shift
  c0=$(proc_ticks "$pid")
  out=$("$@") || return 1
  echo "$out"
  echo $(($(proc_ticks "$pid") - c0))
}
if command -v wrk >/dev/null && command -v ab >/dev/null; then
  echo "wrk and ab ..." >&2
  first() { echo "$1" | head -n 1 | awk "{print \$$2}"; }
  # One wrk run, new connection per request: "requests/s server-CPU-us-per-request".
  wrk_cpu() { # pid ns url
    local m
    m=$(measure "$1" wrk_run "$2" "$3" 32 -H "Connection: close") || { echo "n/a n/a"; return 0; }
    echo "$(first "$m" 1) $(per_req_us 0 "$(echo "$m" | tail -n 1)" "$(first "$m" 2)")"
  }
  # One ab run: "requests/s server-CPU-us-per-request".
  ab_cpu() { # pid ns url strict|warn
    local m
    m=$(measure "$1" ab_rps "$2" "$3" "$4") || return 1
    echo "$(first "$m" 1) $(per_req_us 0 "$(echo "$m" | tail -n 1)" "$CONNS")"
  }
  median() { python3 -c "
import statistics, sys
v = [float(x) for x in sys.argv[1:] if x not in ('n/a', '')]
print(f'{statistics.median(v):.1f}' if v else 'n/a')" "$@"; }
  # Short connections drift by a third from one run to the next on these
  # shared machines, more than most changes: each server (and each vnic
  # set-up) is measured once in every one of WRKROUNDS rounds, in turn,
  # and each row gives the medians (rates and CPU per request apart).
  # The vnic set-ups: the default (4 processors), then 1 and 4 processors
  # with and without a TAP queue each, for the CPU per request of the two
  # designs and whether more processors cost more per request.
  VSETS=("4" "1 --processor-queues on" "4 --processor-queues on" "1 --processor-queues off" "4 --processor-queues off")
  declare -A WR WC
  for _ in $(seq "$WRKROUNDS"); do
    for i in "${!VSETS[@]}"; do
      # shellcheck disable=SC2086 # the set-up's words are flags
      start_vnic ${VSETS[$i]}; sleep 0.3
      read -r r c < <(wrk_cpu "$VNIC_PID" "$NSV" http://$V/); WR[v$i]+=" $r"; WC[v$i]+=" $c"
    done
    start_smol; sleep 0.3
    read -r r c < <(wrk_cpu "$SMOL_PID" "$NSM" http://$S/); WR[s]+=" $r"; WC[s]+=" $c"
    read -r r c < <(wrk_cpu "$KSERVER_PID" "$NSKC" http://$K/); WR[k]+=" $r"; WC[k]+=" $c"
    start_vnic 4; start_smol; sleep 0.3
    x=$(ab_cpu "$VNIC_PID" "$NSV" http://$V/ strict) || exit 1
    read -r r c <<< "$x"; WR[av]+=" $r"; WC[av]+=" $c"
    read -r r c < <(ab_cpu "$SMOL_PID" "$NSM" http://$S/ warn); WR[as]+=" $r"; WC[as]+=" $c"
    read -r r c < <(ab_cpu "$KSERVER_PID" "$NSKC" http://$K/ warn); WR[ak]+=" $r"; WC[ak]+=" $c"
  done
  # shellcheck disable=SC2086 # the lists' words are figures
  {
    ws=$(median ${WR[s]}) wk=$(median ${WR[k]}) cs=$(median ${WC[s]}) ck=$(median ${WC[k]})
    row "wrk -t2 -c32 Connection: close, 4 cpu" req/s "$(median ${WR[v0]})" "$ws" "$wk"
    row "  server CPU per request (lower better)" us "$(median ${WC[v0]})" "$cs" "$ck"
    row "ab -n $CONNS -c 32 (new conn each), 4 cpu" req/s "$(median ${WR[av]})" "$(median ${WR[as]})" "$(median ${WR[ak]})"
    row "  server CPU per request (lower better)" us "$(median ${WC[av]})" "$(median ${WC[as]})" "$(median ${WC[ak]})"
    for i in 1 2 3 4; do
      read -r np _ pq <<< "${VSETS[$i]}"
      row "wrk Connection: close, $np cpu, processor queues $pq" req/s "$(median ${WR[v$i]})" "$ws" "$wk"
      row "  server CPU per request (lower better)" us "$(median ${WC[v$i]})" "$cs" "$ck"
    done
  }
  echo "wrk and ab rounds (requests/s; us per request), vnic set-ups 0-4 as VSETS, s smoltcp, k kernel, a* ab:" >&2
  for key in "${!WR[@]}"; do echo "  $key:${WR[$key]};${WC[$key]}" >&2; done

  echo "1,000 concurrent connections ..." >&2
  start_vnic 4; start_smol; sleep 0.3
  kv=$(wrk_run "$NSV" http://$V/ 1000 | awk '{print $1}')
  ks=$(wrk_run "$NSM" http://$S/ 1000 | awk '{print $1}')
  kk=$(wrk_run "$NSKC" http://$K/ 1000 | awk '{print $1}')
  row "wrk -t2 -c1000 keep-alive, 4 cpu" req/s "$kv" "$ks" "$kk"
else
  echo "wrk/ab missing: their rows skipped" >&2
fi

# Resident memory with 1,000 idle connections held (on the http port),
# for each server: its RSS with them less its RSS before. The kernel
# reference's figure is kserver's (a thread per connection); the kernel's
# own socket memory is not in it.
rss_of() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hold1k() { # ns addr pid -> "held bytes_per_connection"
  local before held after
  before=$(rss_of "$3")
  rm -f /tmp/vnb-$ID.hold1k
  ip netns exec "$1" timeout 120 "$BCLIENT" hold "$2" 1000 30 > /tmp/vnb-$ID.hold1k &
  local hp=$!
  PIDS+=($hp)
  for _ in $(seq 200); do [ -s /tmp/vnb-$ID.hold1k ] && break; sleep 0.3; done
  sleep 1
  after=$(rss_of "$3")
  held=$(sfield open < /tmp/vnb-$ID.hold1k)
  kill "$hp" 2>/dev/null || true; wait "$hp" 2>/dev/null || true
  echo "$held $(python3 -c "
try: print(round(($after - $before) * 1024 / max(int('$held'), 1)))
except ValueError: print('n/a')")"
}
start_vnic 4; start_smol; sleep 0.3
hv=$(hold1k "$NSV" $V:80 "$VNIC_PID"); hs=$(hold1k "$NSM" $S:80 "$SMOL_PID"); hk=$(hold1k "$NSKC" $K:80 "$KSERVER_PID")
row "1,000 idle connections: held" conns "${hv% *}" "${hs% *}" "${hk% *}"
row "  resident memory per connection" bytes "${hv#* }" "${hs#* }" "${hk#* }"
[ "${hv% *}" = 1000 ] || { echo "vnic held only ${hv% *} of 1,000 connections" >&2; exit 1; }

echo "idle connections ..." >&2
start_vnic 4; sleep 0.5
ip netns exec "$NSV" sysctl -q -w net.ipv4.ip_local_port_range="10000 60999"
rss() { awk '/VmRSS/ {print $2}' "/proc/$VNIC_PID/status"; }
rss0=$(rss)
# One process holds at most ~16,700 (file descriptor limits here are
# 20,000); spread over three idle ports so no destination runs out of
# ephemeral ports.
chunk=16700 procs=$(((IDLE + 16699) / 16700)) ports=(7 9 80)
rm -f /tmp/vnb-$ID.hold.*
for i in $(seq 0 $((procs - 1))); do
  n=$(( i == procs - 1 ? IDLE - chunk * (procs - 1) : chunk ))
  ip netns exec "$NSV" timeout 300 "$BCLIENT" hold $V:${ports[$((i % 3))]} $n 60 > /tmp/vnb-$ID.hold.$i &
  PIDS+=($!)
done
for _ in $(seq 600); do
  ready=0
  for i in $(seq 0 $((procs - 1))); do [ -s /tmp/vnb-$ID.hold.$i ] && ready=$((ready + 1)); done
  [ "$ready" = "$procs" ] && break
  sleep 0.5
done
cat /tmp/vnb-$ID.hold.* >&2
sleep 2
rss1=$(rss)
held=$(timeout 10 "$VNIC" status --control "$CTL" --json | python3 -c "import json,sys; print(sum(p['active'] for p in json.load(sys.stdin)['processors']))")
per=$(python3 -c "print(round(($rss1 - $rss0) * 1024 / max($held, 1)))")
row "idle connections held (of $IDLE)" conns "$held" n/a n/a
row "resident memory per idle connection" bytes "$per" n/a n/a
[ "$held" -ge $((IDLE * 99 / 100)) ] || { echo "vnic held only $held of $IDLE idle connections" >&2; exit 1; }

echo "trace cost (--pcap) ..." >&2
PCAP=/tmp/vnb-$ID.pcapng
start_vnic 4; sleep 0.3
b_dl=$(run "$NSV" download $V:19 $BULK | field gbps); b_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
start_vnic 4 --pcap "$PCAP"; sleep 0.3
p_dl=$(run "$NSV" download $V:19 $BULK | field gbps); p_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
lost() { timeout 10 "$VNIC" status --control "$CTL" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['trace']['lost'])"; }
lost=$(lost)
rm -f "$PCAP"*
trow "bulk download, 1 conn" Gbit/s "$p_dl" "$b_dl"
trow "HTTP GET, new conn each, 32 conc" req/s "$p_cr" "$b_cr"
start_vnic 4 --pcap "$PCAP" --pcap-snaplen 128; sleep 0.3
s_dl=$(run "$NSV" download $V:19 $BULK | field gbps); lost=$((lost + $(lost)))
rm -f "$PCAP"*
trow "bulk download, --pcap-snaplen 128" Gbit/s "$s_dl" "$b_dl"
# The same whole-frame trace into memory (tmpfs, a ring of 4 x 256 MiB):
# what tracing costs vnic when the disk is not the limit.
SHM=/dev/shm/vnb-$ID.pcapng
start_vnic 4 --pcap "$SHM" --pcap-max-mb 256 --pcap-max-files 4; sleep 0.3
m_dl=$(run "$NSV" download $V:19 $BULK | field gbps); lost=$((lost + $(lost)))
rm -f /dev/shm/vnb-$ID*
trow "bulk download, --pcap to tmpfs (4x256 MiB ring)" Gbit/s "$m_dl" "$b_dl"
start_vnic 4 --offload off; sleep 0.3
o_dl=$(run "$NSV" download $V:19 $BULK | field gbps)
start_vnic 4 --offload off --pcap "$PCAP"; sleep 0.3
op_dl=$(run "$NSV" download $V:19 $BULK | field gbps); lost=$((lost + $(lost)))
rm -f "$PCAP"*
trow "bulk download, --offload off" Gbit/s "$op_dl" "$o_dl"
echo "trace records lost during the --pcap runs: $lost" >&2

echo "listener models ..." >&2
for p in 1 2 4; do
  start_vnic $p; sleep 0.3
  m_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
  m_rt=$(run "$NSV" httprtt $V:80 $RTTS)
  m_eb=$(run "$NSV" echobulk $V:7 $LOSSBULK | field gbps)
  start_vnic 0 --model distributor --backends $p; sleep 0.3
  d_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
  d_rt=$(run "$NSV" httprtt $V:80 $RTTS)
  d_eb=$(run "$NSV" echobulk $V:7 $LOSSBULK | field gbps)
  mrow "HTTP GET new conn, 32 conc, $p cpu/backends" req/s "$m_cr" "$d_cr"
  mrow "keep-alive GET p50, $p (lower better)" us "$(echo "$m_rt" | field p50_us)" "$(echo "$d_rt" | field p50_us)"
  mrow "keep-alive GET p99, $p (lower better)" us "$(echo "$m_rt" | field p99_us)" "$(echo "$d_rt" | field p99_us)"
  mrow "bulk echo, 1 conn, $p" Gbit/s "$m_eb" "$d_eb"
done

echo "several distributors ..." >&2
DROWS=()
drow() { DROWS+=("$(fmt_row "$@")"); echo "${DROWS[-1]}" >&2; }
start_vnic 4; sleep 0.3
mono_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
mono_rt=$(run "$NSV" httprtt $V:80 $RTTS | field p50_us)
for f in 1 2 4; do
  start_vnic $f --model distributor --backends 4; sleep 0.3
  f_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
  f_rt=$(run "$NSV" httprtt $V:80 $RTTS | field p50_us)
  drow "HTTP GET new conn, 32 conc: $f front-end(s), 4 back-ends" req/s "$f_cr" "$mono_cr"
  drow "  keep-alive GET p50 (lower better)" us "$f_rt" "$mono_rt"
done

echo "hybrid model ..." >&2
HROWS=()
hrow() { HROWS+=("$(fmt_row "$@")"); echo "${HROWS[-1]}" >&2; }
start_vnic 4 --model hybrid; sleep 0.3
h_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
h_rt=$(run "$NSV" httprtt $V:80 $RTTS)
h_eb=$(run "$NSV" echobulk $V:7 $LOSSBULK | field gbps)
# $m_* and $d_* are the last round above: 4 processors, 4 back-ends.
hrow "HTTP GET new conn, 32 conc, 4 cpu: vs monolithic" req/s "$h_cr" "$m_cr"
hrow "  vs distributor (4 back-ends)" req/s "$h_cr" "$d_cr"
hrow "keep-alive GET p50 (lower better): vs monolithic" us "$(echo "$h_rt" | field p50_us)" "$(echo "$m_rt" | field p50_us)"
hrow "  vs distributor" us "$(echo "$h_rt" | field p50_us)" "$(echo "$d_rt" | field p50_us)"
hrow "bulk echo, 1 conn: vs monolithic" Gbit/s "$h_eb" "$m_eb"
hrow "  vs distributor" Gbit/s "$h_eb" "$d_eb"

echo "process pairs ..." >&2
PAROWS=()
parow() { PAROWS+=("$(fmt_row "$@")"); echo "${PAROWS[-1]}" >&2; }
start_vnic 4; sleep 0.3
n_dl=$(bulk3 "$NSV" download $V:19 $BULK); n_ul=$(bulk3 "$NSV" upload $V:9 $BULK)
n_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
start_vnic 4 --pairs; sleep 0.3
p_dl=$(bulk3 "$NSV" download $V:19 $BULK); p_ul=$(bulk3 "$NSV" upload $V:9 $BULK)
p_cr=$(run "$NSV" connrate $V:80 $CONNS 32 | field rps)
parow "bulk download, 1 conn" Gbit/s "$p_dl" "$n_dl"
parow "bulk upload, 1 conn" Gbit/s "$p_ul" "$n_ul"
parow "HTTP GET, new conn each, 32 conc" req/s "$p_cr" "$n_cr"
# Takeover stall: crash processor 1 under a chargen download, 10 times,
# each in a fresh vnic (a crashed processor stays failed).
STALLS=()
for i in $(seq ${CRASHES:-10}); do
  start_vnic 4 --pairs; sleep 0.3
  out=$(ip netns exec "$NSV" timeout 60 python3 bench/stall.py "$VNIC" "$CTL" $V)
  echo "  crash $i: $out" >&2
  [ "$(echo "$out" | field intact)" = True ] || { echo "the download broke at a takeover: $out" >&2; exit 1; }
  STALLS+=("$(echo "$out" | field stall_ms)")
done
read -r stall_p50 stall_max < <(printf '%s\n' "${STALLS[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[NR]}')
STALL_LINE="Takeover stall (crash of processor 1 under a chargen download, --pairs, 4 processors, ${#STALLS[@]} crashes, every download intact): p50 ${stall_p50} ms, max ${stall_max} ms (all: ${STALLS[*]})."
echo "$STALL_LINE" >&2
# Failover stall (issue 21): two TAPs in a bridge, ten failovers under a
# chargen download (bench/failover.sh, which also runs alone).
echo "failover stall ..." >&2
FAILOVER_LINE=$(VNIC="$VNIC" bench/failover.sh)
echo "$FAILOVER_LINE" >&2

# --- the proxy against HAProxy: the same round-robin over the same two
# back-ends (kernel servers on 127.0.0.2 and 127.0.0.3 of the proxy's own
# namespace); vnic's proxy behind its TAP, HAProxy (mode tcp) on the
# kernel's TCP behind the veth pair. ---
PROWS=()
prow() { PROWS+=("$(fmt_row "$@")"); echo "${PROWS[-1]}" >&2; }
if command -v haproxy >/dev/null; then
  echo "proxy: vnic against HAProxy ..." >&2
  for ns in "$NSV" "$NSKS"; do
    for b in 127.0.0.2 127.0.0.3; do
      ip netns exec "$ns" "$KSERVER" $b >/dev/null &
      PIDS+=($!)
    done
  done
  ip -n "$NSKS" addr add 10.8.0.4/24 dev vnbs$ID
  HCFG=/tmp/vnb-$ID.haproxy.cfg
  {
    # maxconn sized to the fd limit here (20,000): the runs use 32 at once.
    printf 'global\n  maxconn 4096\n  nbthread %s\n' "$(nproc)"
    printf 'defaults\n  mode tcp\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n'
    for port in 9 19 80; do
      printf 'frontend f%s\n  bind 10.8.0.4:%s\n  default_backend b%s\n' $port $port $port
      printf 'backend b%s\n  balance roundrobin\n  server s0 127.0.0.2:%s\n  server s1 127.0.0.3:%s\n' $port $port $port
    done
  } > "$HCFG"
  ip netns exec "$NSKS" haproxy -f "$HCFG" >/tmp/vnb-$ID.haproxy.err 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do
    ip netns exec "$NSKS" ss -ltn | grep -q '10.8.0.4:80 ' && break
    sleep 0.1
  done
  ip netns exec "$NSKS" ss -ltn | grep -q '10.8.0.4:80 ' \
    || { echo "haproxy did not start: $(cat /tmp/vnb-$ID.haproxy.err)" >&2; exit 1; }
  targets() { echo "proxy:127.0.0.2:$1,127.0.0.3:$1"; }
  start_vnic 4 --serve "9=$(targets 9)" --serve "19=$(targets 19)" --serve "80=$(targets 80)"
  sleep 0.5
  H=10.8.0.4
  pu=$(run "$NSV" upload $V:9 $BULK | field gbps); hu=$(run "$NSKC" upload $H:9 $BULK | field gbps)
  prow "bulk upload through the proxy, 1 conn" Gbit/s "$pu" "$hu"
  pd=$(run "$NSV" download $V:19 $BULK | field gbps); hd=$(run "$NSKC" download $H:19 $BULK | field gbps)
  prow "bulk download through the proxy, 1 conn" Gbit/s "$pd" "$hd"
  pc=$(run "$NSV" connrate $V:80 $CONNS 32); hc=$(run "$NSKC" connrate $H:80 $CONNS 32)
  [ "$(echo "$pc" | field failed)" = 0 ] || echo "warning: vnic proxy connrate failures: $pc" >&2
  prow "HTTP GET via proxy, new conn each, 32 conc" req/s "$(echo "$pc" | field rps)" "$(echo "$hc" | field rps)"
  if command -v wrk >/dev/null; then
    prow "wrk -t2 -c32 Connection: close via proxy" req/s "$(wrk_rps "$NSV" http://$V/)" "$(wrk_rps "$NSKC" http://$H/)"
  fi
else
  echo "haproxy missing: proxy rows skipped" >&2
fi

# --- the filter's policies side by side (issue 20 part 3): how evenly
# connections spread (accepted per processor from `vnic status --json`,
# before and after), connection rate, and short keep-alive sessions with
# processor 1 slowed on purpose (--slow-processor 1=2ms: it sleeps 2 ms
# after every turn of its loop that had work). ---
echo "filter policies ..." >&2
FROWS=()
SPREADN=$([ "$QUICK" = 1 ] && echo 2000 || echo 10000)
SESSIONS=$([ "$QUICK" = 1 ] && echo 400 || echo 4000)
accepted() { timeout 10 "$VNIC" status --control "$CTL" --json | python3 -c 'import json,sys; print(" ".join(str(p["accepted"]) for p in json.load(sys.stdin)["processors"]))'; }
spread() { # "before" "after" -> "max/min cv" of the per-processor differences
  python3 - "$1" "$2" <<'PY'
import sys, statistics
d = [b - a for a, b in zip(map(int, sys.argv[1].split()), map(int, sys.argv[2].split()))]
mx, mn, mean = max(d), min(d), statistics.mean(d)
ratio = f"{mx / mn:.2f}" if mn > 0 else "inf"
cv = statistics.pstdev(d) / mean if mean else float("nan")
print(f"{ratio} {cv:.3f} {'/'.join(map(str, d))}")
PY
}
for pol in round-robin hash least-connections none; do
  start_vnic 4 --filter $pol; sleep 0.3
  a0=$(accepted); run "$NSV" connrate $V:80 32 32 >/dev/null; a1=$(accepted)
  read -r r32 cv32 d32 < <(spread "$a0" "$a1")
  a0=$(accepted); cr=$(run "$NSV" connrate $V:80 $SPREADN 32); a1=$(accepted)
  read -r rn cvn dn < <(spread "$a0" "$a1")
  [ "$(echo "$cr" | field failed)" = 0 ] || echo "warning: $pol connrate failures: $cr" >&2
  if [ $pol = none ]; then
    ka="n/a (every connection on processor 0)"; kshare=n/a; krps=n/a; k50=n/a; k99=n/a
  else
    start_vnic 4 --filter $pol --slow-processor 1=2ms; sleep 0.3
    a0=$(accepted)
    ka=$(run "$NSV" kasessions $V:80 $SESSIONS 32 10)
    a1=$(accepted)
    [ "$(echo "$ka" | field failed)" = 0 ] || echo "warning: $pol kasessions failures: $ka" >&2
    kshare=$(python3 -c "import sys; a=[int(x) for x in sys.argv[1].split()]; b=[int(x) for x in sys.argv[2].split()]; d=[y-x for x,y in zip(a,b)]; print(f'{100*d[1]/max(1,sum(d)):.0f}%')" "$a0" "$a1")
    krps=$(echo "$ka" | field rps); k50=$(echo "$ka" | field p50_us); k99=$(echo "$ka" | field p99_us)
  fi
  FROWS+=("| $pol | $r32 | $cv32 | $rn | $cvn | $(echo "$cr" | field rps) | $k50 | $k99 | $krps | $kshare |")
  echo "${FROWS[-1]}  (32: $d32; $SPREADN: $dn)" >&2
done

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git diff --quiet 2>/dev/null || echo "+dirty")
HEADER="### $(date -u '+%Y-%m-%d %H:%M UTC') — commit $COMMIT$DIRTY — $(nproc) cores, Linux $(uname -r), kernel TCP $KCC — load $LOAD0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end${FAULTS_NOTE}"
CMD="bench/run.sh $*"
TABLE=$(printf '%s\n' "| measure | vnic | smoltcp (TAP) | kernel (veth) | vnic/smoltcp | vnic/kernel | unit |" \
  "|---|---:|---:|---:|---:|---:|---|" "${ROWS[@]}" \
  "" "The first two rows (vnic and the kernel) are each the median of three transfers. The wrk and ab rows with a server CPU row under them are each the median of $WRKROUNDS rounds, every server (and vnic set-up) measured once per round, in turn." \
  "" "Trace cost (vnic, 4 processors; trace records lost: $lost):" "" \
  "| measure | with --pcap | without | with/without | unit |" "|---|---:|---:|---:|---|" "${TROWS[@]}" \
  "" "Listener models (same workload, one run):" "" \
  "| measure | monolithic | distributor | mono/dist | unit |" "|---|---:|---:|---:|---|" "${MROWS[@]}" \
  "" "Hybrid model (--model hybrid, processor 0 hands each connection to 1-3, least-busy):" "" \
  "| measure | hybrid | other model | hybrid/other | unit |" "|---|---:|---:|---:|---|" "${HROWS[@]}" \
  "" "Several distributors (--model distributor --processors F --backends 4, the port shared under round-robin filtering) beside the monolithic model on 4 processors:" "" \
  "| measure | distributor | monolithic | dist/mono | unit |" "|---|---:|---:|---:|---|" "${DROWS[@]}" \
  "" "Process pairs (4 processors, --pairs against without, bulk rows the median of three transfers; target: at least 0.80):" "" \
  "| measure | with --pairs | without | pairs/without | unit |" "|---|---:|---:|---:|---|" "${PAROWS[@]}" \
  "" "$STALL_LINE" \
  "" "$FAILOVER_LINE" \
  "" "Proxy to two kernel back-ends (vnic --serve proxy, 4 processors, against HAProxy mode tcp, roundrobin, $(nproc) threads, over veth):" "" \
  "| measure | vnic proxy | HAProxy | vnic/HAProxy | unit |" "|---|---:|---:|---:|---|" "${PROWS[@]:-}" \
  "" "Filter policies (4 processors; spread: accepted per processor, max/min and coefficient of variation, for 32 and $SPREADN new connections, 32 at a time; connection rate: HTTP GET, a new connection each, 32 concurrent; keep-alive: $SESSIONS sessions of 10 GETs, 32 at a time, processor 1 slowed by --slow-processor 1=2ms, with its share of the sessions):" "" \
  "| policy | max/min, 32 | CV, 32 | max/min, $SPREADN | CV, $SPREADN | conn/s | keep-alive p50 us, cpu 1 slowed | p99 us | req/s | sessions on cpu 1 |" \
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" "${FROWS[@]}")
printf '\n%s\n\n`%s`\n\n%s\n' "$HEADER" "$CMD" "$TABLE"
if [ "$RECORD" = 1 ]; then
  [ -f BENCHMARKS.md ] || printf '# vnic benchmarks\n\nEach run of `bench/run.sh` appends a section. Ratios are vnic/smoltcp and vnic/kernel in the same run (for latency and CPU, lower is better).\n' > BENCHMARKS.md
  printf '\n%s\n\n`%s`\n\n%s\n' "$HEADER" "$CMD" "$TABLE" >> BENCHMARKS.md
fi
