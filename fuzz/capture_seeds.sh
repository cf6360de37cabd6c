#!/usr/bin/env bash
# Regenerates fuzz/corpus/frame/ from real traffic: runs vnic with --pcap in
# a throwaway network namespace, sends ARP/NDP, ping, ping -6, HTTP, echo,
# discard, chargen, a SYN to a closed port and UDP datagrams INSIDE that
# namespace only, then splits the capture into one file per frame.
# Needs root, iproute2, curl, ping and a built `vnic` (release).
set -euo pipefail
cd "$(dirname "$0")/.."
ns=vnicfz$$
vnic=${VNIC:-target/release/vnic}
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
[ -x "$vnic" ] || cargo build --release --bin vnic
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" "$vnic" up --tap fz0 --ip 10.0.0.2/24 --ip fd00::2/64 \
  --host-ip 10.0.0.1/24 --host-ip fd00::1/64 --pcap "$tmp/seed.pcapng" \
  --control "$tmp/fz.sock" --quiet &
pid=$!
in_ns() { ip netns exec "$ns" "$@"; }
for _ in $(seq 50); do
  in_ns ip link show fz0 >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 2 # IPv6 DAD on the host side
in_ns ping -c2 -W1 10.0.0.2 || true
in_ns ping -6 -c2 -W1 fd00::2 || true
in_ns ping -c1 -s 1400 -W1 10.0.0.2 || true
in_ns curl -s -m 3 -o /dev/null http://10.0.0.2/ || true
in_ns curl -s -m 3 -o /dev/null 'http://[fd00::2]/stats' || true
in_ns curl -s -m 3 -o /dev/null http://10.0.0.2:81/ || true
in_ns bash -c 'exec 3<>/dev/tcp/10.0.0.2/7; printf "hello echo\n" >&3; head -c 11 <&3; exec 3>&-' || true
in_ns bash -c 'exec 3<>/dev/tcp/10.0.0.2/9; printf "discard me\n" >&3; exec 3>&-' || true
in_ns timeout 1 bash -c 'exec 3<>/dev/tcp/10.0.0.2/19; head -c 3000 <&3 >/dev/null' || true
in_ns bash -c 'exec 3<>/dev/tcp/fd00::2/7; printf "v6 echo\n" >&3; head -c 8 <&3; exec 3>&-' || true
in_ns bash -c 'echo x > /dev/udp/10.0.0.2/53' || true
in_ns bash -c 'echo y > /dev/udp/fd00::2/53' || true
sleep 1
kill -INT "$pid"
wait "$pid" || true
pid=
mkdir -p fuzz/work
cp "$tmp/seed.pcapng" fuzz/work/seed.pcapng
rm -rf fuzz/corpus/frame
(cd fuzz && cargo run -q --example split_pcap -- work/seed.pcapng corpus/frame 150)
