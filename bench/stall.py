#!/usr/bin/env python3
"""Takeover stall, for bench/run.sh: a chargen download on processor 1
of a vnic started with --pairs; processor 1 is crashed (vnic ctl processor
1 crash) a second into it; prints one JSON line with the longest wait
between two reads that brought bytes from the crash on ("stall_ms", the
client's view of crash to bytes moving again) and whether the stream
stayed intact (the RFC 864 pattern, no reset).

  stall.py VNIC CONTROL ADDR
"""
import json
import socket
import subprocess
import sys
import threading
import time

vnic, control, addr = sys.argv[1], sys.argv[2], sys.argv[3]
ring = bytes(range(0x21, 0x7F)) + b" "
period = b"".join(bytes(ring[(k + i) % 95] for i in range(72)) + b"\r\n" for k in range(95))

# Round-robin from processor 0: this first connection takes processor 0,
# the download processor 1.
first = socket.create_connection((addr, 80), timeout=5)
s = socket.create_connection((addr, 19), timeout=5)
s.settimeout(10)
crash_at = [None]


def crash():
    time.sleep(1.0)
    crash_at[0] = time.monotonic()
    subprocess.run([vnic, "ctl", "--control", control, "processor", "1", "crash"],
                   check=False, capture_output=True)


t = threading.Thread(target=crash)
t.start()
at, last, stall, ok, err = 0, time.monotonic(), 0.0, True, ""
end = None
try:
    while True:
        b = s.recv(1 << 20)
        if not b:
            ok, err = False, "closed"
            break
        now = time.monotonic()
        if crash_at[0] is not None:
            stall = max(stall, now - max(last, crash_at[0]))
            if end is None:
                end = crash_at[0] + 1.0
        last = now
        k = at % len(period)
        want = (period * (len(b) // len(period) + 2))[k:k + len(b)]
        if b != want:
            ok, err = False, f"byte off the pattern near {at}"
            break
        at += len(b)
        if end is not None and now > end:
            break
except OSError as e:
    ok, err = False, str(e)
t.join()
print(json.dumps({"stall_ms": round(stall * 1000, 1), "intact": ok, "bytes": at, "error": err}))
