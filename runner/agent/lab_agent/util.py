"""Lines in and out: the agent's stdout (protocol lines only), stderr, and the
pipes between the agent and its workers."""

import json
import os
import sys
import threading
import time

_out_lock = threading.Lock()
_out = sys.stdout.buffer


def emit(obj):
    """Write one protocol line to the controller; several threads may call this."""
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
    with _out_lock:
        try:
            _out.write(data)
            _out.flush()
        except (OSError, ValueError):
            pass  # controller gone: stdin EOF follows and ends the agent


def log(msg):
    """A diagnostic on stderr (never stdout, which carries only protocol lines)."""
    try:
        sys.stderr.write("agent: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def ms_since(t0):
    return int(round((time.monotonic() - t0) * 1000))


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def wsend(fd, obj):
    """One JSON line on a worker pipe."""
    write_all(fd, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


class LineReader:
    """Line reader over a raw fd (pipe), for both the agent and workers."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""
        self.eof = False

    def read(self):
        """Read once (the fd is readable); return complete lines."""
        try:
            data = os.read(self.fd, 1 << 16)
        except InterruptedError:
            return []
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return []
        self.buf += data
        if b"\n" not in self.buf:
            return []
        parts = self.buf.split(b"\n")
        self.buf = parts.pop()
        return [p for p in parts if p]


class Reply:
    """A result plus work to start once the reply line is out (events follow the reply)."""

    def __init__(self, result, after):
        self.result = result
        self.after = after
