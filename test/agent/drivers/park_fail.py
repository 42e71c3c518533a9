"""Drive the C helper (fastconn connect) directly on loopback, in a network namespace
of its own, to see what a worker holds and closes when parking fails part way.

    python3 park_fail.py FASTCONN COUNT [PREFIX...]

PREFIX runs the helper (e.g. prlimit, setpriv). Prints one JSON line:
{established, workerFds, closed, tcpInuseAfter}. Used by test/agent/fastconn.test.ts."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

fc, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 8080))
ls.listen(4096)
held = []


def accept():
    while True:
        try:
            held.append(ls.accept()[0])
        except OSError:
            return


threading.Thread(target=accept, daemon=True).start()
cr, cw = os.pipe()
rr, rw = os.pipe()
now = time.monotonic()
# connect CTRL REP MODE NOPORT LOCALPORT CTO_MS QUOTA MAXATT DEADLINE RATE T0 BASE BASEATT STOPONERR SEND PARK RR NPAIRS (SRC DST PORT) NACTIVE I
args = [fc, "connect", str(cr), str(rw), "none", "0", "0", "3000", str(count), str(2 * count), repr(now + 60), "0.0",
        repr(now), "0", "0", "1", "0", "1", "0", "1", "-", "127.0.0.1", "8080", "1", "0"]
p = subprocess.Popen(prefix + args, pass_fds=(cr, rw), stdin=subprocess.DEVNULL)
os.close(rw)
buf = b""


def message():
    global buf
    while b"\n" not in buf:
        data = os.read(rr, 1 << 20)
        if not data:
            raise SystemExit("the helper exited early")
        buf += data
    line, buf = buf.split(b"\n", 1)
    return json.loads(line)


while True:
    m = message()
    if m["t"] == "d":
        break
established = m["n"]
worker_fds = len(os.listdir("/proc/%d/fd" % p.pid))
os.write(cw, b"abort\n")
while True:
    m = message()
    if m["t"] == "c":
        break
p.wait()
with open("/proc/net/sockstat") as f:
    inuse = int(f.read().split("TCP: inuse ")[1].split()[0])
print(json.dumps({"established": established, "workerFds": worker_fds, "closed": m["closed"], "tcpInuseAfter": inuse}))
