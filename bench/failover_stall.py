#!/usr/bin/env python3
"""Failover stall, for bench/failover.sh: a chargen download from a vnic
on two TAPs (vnicA, vnicB in a bridge); every 0.5 s the active link's
"cable" is pulled (ip link set LINK down: the other takes over) and put
back (it stands by), FAILOVERS times, alternating A and B. Prints one
JSON line: for each failover the stall at the client, the last byte
before to the first byte after ("stalls_ms": the longest wait between two
reads that brought bytes, from the failover to the next), and whether the
stream stayed intact (the RFC 864 pattern, no reset).

  failover_stall.py ADDR FAILOVERS
"""
import json
import socket
import subprocess
import sys
import threading
import time

addr, failovers = sys.argv[1], int(sys.argv[2])
ring = bytes(range(0x21, 0x7F)) + b" "
period = b"".join(bytes(ring[(k + i) % 95] for i in range(72)) + b"\r\n" for k in range(95))

s = socket.create_connection((addr, 19), timeout=5)
s.settimeout(10)
events = []
done = threading.Event()


def fail_over():
    active = "vnicA"
    time.sleep(0.5)
    for _ in range(failovers):
        if done.is_set():
            return
        events.append(time.monotonic())
        subprocess.run(["ip", "link", "set", active, "down"], check=False)
        time.sleep(0.25)
        subprocess.run(["ip", "link", "set", active, "up"], check=False)
        time.sleep(0.25)
        active = "vnicB" if active == "vnicA" else "vnicA"
    time.sleep(0.5)
    done.set()


t = threading.Thread(target=fail_over)
t.start()
reads, at, ok, err = [], 0, True, ""
try:
    while not done.is_set():
        b = s.recv(1 << 20)
        if not b:
            ok, err = False, "closed"
            break
        reads.append(time.monotonic())
        k = at % len(period)
        want = (period * (len(b) // len(period) + 2))[k:k + len(b)]
        if b != want:
            ok, err = False, f"byte off the pattern near {at}"
            break
        at += len(b)
except OSError as e:
    ok, err = False, str(e)
done.set()
t.join()
stalls = []
for i, e in enumerate(events):
    end = events[i + 1] if i + 1 < len(events) else float("inf")
    last, worst = None, 0.0
    for r in reads:
        if r < e:
            last = r
            continue
        if r > end:
            break
        if last is not None:
            worst = max(worst, r - last)
        last = r
    stalls.append(round(worst * 1000, 1))
print(json.dumps({"stalls_ms": stalls, "intact": ok, "bytes": at, "error": err}))
