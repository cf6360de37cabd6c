#!/usr/bin/env bash
# Regenerates the seed corpora of the fuzz targets from real traffic, in
# a throwaway network namespace (nothing leaves it):
#
#   fuzz/capture_seeds.sh [TARGET...]   (default: frame offload http framing control config)
#
# - frame: vnic with --pcap answers ARP/NDP, ping, ping -6, HTTP, echo,
#   discard, chargen, a SYN to a closed port and UDP datagrams; the
#   capture is split into one file per frame (examples/split_pcap.rs);
# - offload: the same with --offload on and 256 KiB uploads (so TSO
#   segments of up to 64 KiB): each frame the kernel handed vnic, behind
#   the virtio-net header the kernel gives such a frame (split_pcap
#   --vnet);
# - http: the bytes curl and ab send (GET, HEAD, HTTP/1.0, a form POST,
#   a chunked upload, 100-continue, OPTIONS, keep-alive), recorded by a
#   listener on the namespace's loopback; three of them pipelined;
# - framing: those streams behind the target's first byte (HTTP in
#   order, newest reply first, one at a time), a line protocol and echo;
# - control: the request lines `vnic ctl` and `vnic status` write,
#   recorded by a Unix socket listener standing in for vnic;
# - config: examples/*.toml.
#
# Needs root, iproute2, curl, ab, ping, python3 and a built `vnic`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- frame offload http framing control config
targets=("$@")
want() { [[ " ${targets[*]} " == *" $1 "* ]]; }
ns=vnicfz$$
vnic=${VNIC:-target/release/vnic}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
[ -x "$vnic" ] || cargo build --release --bin vnic
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
in_ns() { ip netns exec "$ns" "$@"; }
c=fuzz/corpus
mkdir -p fuzz/work

# vnic up on TAP $1 with pcapng to $2 (more flags after), until `stop`.
start_vnic() {
  local tap=$1 pcap=$2
  shift 2
  ip netns exec "$ns" "$vnic" up --tap "$tap" --ip 10.0.0.2/24 --ip fd00::2/64 \
    --host-ip 10.0.0.1/24 --host-ip fd00::1/64 --pcap "$pcap" \
    --control "$tmp/$tap.sock" --quiet "$@" &
  pids+=($!)
  for _ in $(seq 50); do
    in_ns ip link show "$tap" >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 2 # IPv6 DAD on the host side
}
stop_vnic() {
  sleep 1
  kill -INT "${pids[-1]}"
  wait "${pids[-1]}" || true
}

if want frame; then
  start_vnic fz0 "$tmp/seed.pcapng"
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
  stop_vnic
  cp "$tmp/seed.pcapng" fuzz/work/seed.pcapng
  rm -rf "$c/frame"
  (cd fuzz && cargo run -q --example split_pcap -- work/seed.pcapng corpus/frame 150)
fi

if want offload; then
  start_vnic fo0 "$tmp/offload.pcapng" --offload on
  head -c 262144 /dev/urandom >"$tmp/upload.bin"
  # Bulk uploads to discard: the kernel hands them over as TSO segments.
  in_ns timeout 10 bash -c "cat $tmp/upload.bin >/dev/tcp/10.0.0.2/9" || true
  in_ns timeout 10 bash -c "cat $tmp/upload.bin >/dev/tcp/fd00::2/9" || true
  in_ns curl -s -m 5 -o /dev/null -H 'Expect:' --data-binary @"$tmp/upload.bin" http://10.0.0.2/ || true
  in_ns ping -c1 -W1 10.0.0.2 || true
  in_ns bash -c 'exec 3<>/dev/tcp/10.0.0.2/7; printf "hello echo\n" >&3; head -c 11 <&3; exec 3>&-' || true
  stop_vnic
  cp "$tmp/offload.pcapng" fuzz/work/offload.pcapng
  rm -rf "$c/offload"
  (cd fuzz && cargo run -q --example split_pcap -- --vnet work/offload.pcapng corpus/offload 40)
fi

# A listener that records what each client sends until it is quiet for
# 1.5 s (curl waits 1 s before a body after Expect: 100-continue), then
# answers and closes; a TCP port on the loopback, or a Unix socket path
# (answered after each line).
cat >"$tmp/record.py" <<'EOF'
import os, socket, sys
where, out, answer = sys.argv[1], sys.argv[2], sys.argv[3].encode()
if where.isdigit():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(where)))
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(where)
s.listen(8)
n = 0
while True:
    c, _ = s.accept()
    c.settimeout(1.5)
    got = b""
    while True:
        try:
            b = c.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        got += b
        if not where.isdigit() and got.endswith(b"\n"):
            c.sendall(answer)
    if where.isdigit():
        try:
            c.sendall(answer)
        except OSError:
            pass
    c.close()
    with open(os.path.join(out, "rec-%03d" % n), "wb") as f:
        f.write(got)
    n += 1
EOF

if want http || want framing; then
  mkdir -p "$tmp/http"
  ip netns exec "$ns" python3 "$tmp/record.py" 8080 "$tmp/http" \
    $'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok' &
  pids+=($!)
  for _ in $(seq 100); do
    in_ns ss -ltn | grep -q 127.0.0.1:8080 && break
    sleep 0.1
  done
  url=http://127.0.0.1:8080
  head -c 1500 /dev/urandom | base64 -w 76 >"$tmp/body.txt"
  in_ns curl -s -o /dev/null "$url/"
  in_ns curl -s -o /dev/null -I "$url/stats"
  in_ns curl -s -o /dev/null -0 "$url/stats?pretty=1"
  in_ns curl -s -o /dev/null -H 'Connection: close' "$url/index.html"
  in_ns curl -s -o /dev/null -d 'a=1&b=two' "$url/form"
  in_ns curl -s -o /dev/null -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/body.txt" "$url/upload"
  in_ns curl -s -o /dev/null -H 'Expect: 100-continue' -X PUT --data-binary @"$tmp/body.txt" "$url/put"
  in_ns curl -s -o /dev/null -X OPTIONS "$url/"
  in_ns ab -q -n 1 "$url/" >/dev/null
  in_ns ab -q -n 1 -k -H 'Accept-Encoding: gzip' "$url/stats" >/dev/null
  sleep 2
  rm -rf "$c/http" "$c/framing"
  mkdir -p "$c/http" "$c/framing"
  i=0
  for f in "$tmp"/http/rec-*; do
    [ -s "$f" ] || continue
    cp "$f" "$c/http/req-$i"
    # HTTP in request order, newest reply first, one reply at a time.
    for mode in 00 05 09; do
      { printf "\\x$mode"; cat "$f"; } >"$c/framing/http-$mode-$i"
    done
    i=$((i + 1))
  done
  cat "$c/http/req-0" "$c/http/req-4" "$c/http/req-1" >"$c/http/pipelined"
  { printf '\x00'; cat "$c/http/pipelined"; } >"$c/framing/http-00-pipelined"
  printf '\x0aADD 1 2\nSUB 5 3\nbye\nlater\n' >"$c/framing/lines-short"
  printf '\x3eADD 1 2\nSUB 5 3\n' >"$c/framing/lines-long"
  { printf '\x07'; head -c 3000 "$tmp/body.txt"; } >"$c/framing/echo"
fi

if want control; then
  mkdir -p "$tmp/ctl"
  sock="$tmp/ctl.sock"
  python3 "$tmp/record.py" "$sock" "$tmp/ctl" '{"ok":true}'$'\n' &
  pids+=($!)
  for _ in $(seq 100); do
    [ -S "$sock" ] && break
    sleep 0.1
  done
  for args in "status" "status --json" "ctl processor 1 down" "ctl processor 1 up" \
    "ctl processor 2 crash" "ctl filter none" "ctl filter round-robin" \
    "ctl backend 0 down" "ctl backend 0 up" "ctl trace on" "ctl trace off" \
    "ctl trace on /tmp/vnic-trace.pcapng --max-mb 10 --max-files 2" \
    "ctl listener add --port 8080 --processor 1 --app http --backup 2 --key web1" \
    "ctl listener add --port 5353 --processor 0 --app udp-echo --protocol udp --address 10.0.0.2" \
    "ctl listener remove --port 8080 --processor 1"; do
    # shellcheck disable=SC2086
    timeout 5 "$vnic" $args --control "$sock" >/dev/null 2>&1 || true
  done
  sleep 2
  rm -rf "$c/control"
  mkdir -p "$c/control"
  i=0
  for f in "$tmp"/ctl/rec-*; do
    [ -s "$f" ] && cp "$f" "$c/control/ctl-$i" && i=$((i + 1))
  done
  cat "$c"/control/ctl-* >"$c/control/all"
fi

if want config; then
  rm -rf "$c/config"
  mkdir -p "$c/config"
  cp examples/*.toml "$c/config/"
fi
echo "capture_seeds.sh: ${targets[*]} done" >&2
