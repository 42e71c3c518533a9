"""Two ways to serve many idle connections, as accept workers of a listen step
(`server: threads` or `server: epoll`), so their cost can be compared.

threads: one thread per connection, blocked in read() on it (the classic
thread-per-connection server): each connection costs a thread, i.e. a stack
mapping of the given size plus a guard page, a kernel stack, a task_struct.
epoll: one thread holds every connection in an epoll set (the event loop,
C10K): a connection costs its socket and an epoll entry.

Each worker speaks the accept workers' pipe protocol (workers.py): "p" with
the count as it accepts, "full" at its cap, and on "close"/"abort" it marks
every socket (SO_LINGER 0 for abort) and exits, so the kernel closes them all
at once, blocked readers included. Before its first accept it sends "base":
its own threads, VmSize and VmRSS, so a snapshot can tell what the
connections added."""

import os
import select
import socket
import threading
import time

from .connect import WORKER_PROGRESS_S
from .util import LineReader, wsend
from .workers import LINGER_ABORT, accept_some, ctrl_words

MODES = ("threads", "epoll")
# Thread stacks the threads server may use (threading.stack_size: at least 32 KiB, page multiples).
MIN_STACK = 32 * 1024
MAX_STACK = 64 * 1024 * 1024
# glibc's M_ARENA_MAX for mallopt().
M_ARENA_MAX = -8


def status(pid="self"):
    """Threads, VmSize and VmRSS (KiB) of a process, from /proc/PID/status; {} when gone."""
    out = {}
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Threads", "VmSize", "VmRSS"):
                    out[{"Threads": "threads", "VmSize": "vmSizeKiB", "VmRSS": "rssKiB"}[k]] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def one_arena():
    """One malloc arena for the whole process: glibc otherwise gives each new thread
    its own (up to 8 per CPU), each reserving 64 MiB of address space, which would
    swamp the stacks a threads server is measured by. Returns whether it applied."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_ARENA_MAX, 1))
    except Exception:
        return False


def hold(fd):
    """A connection's thread: block in read() until the peer closes it."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


def serve(ctrl, rep, lsock, cap, mode, stack):
    """The worker: accept up to cap connections and hold them the mode's way."""
    arena = one_arena()
    if mode == "threads":
        threading.stack_size(stack)
    lfd = lsock.fileno()
    accept = getattr(lsock, "_accept", None)
    if accept is None:  # pragma: no cover
        def accept():
            c, a = lsock.accept()
            return c.detach(), a
    held = []
    ep = select.epoll()
    ep.register(ctrl, select.EPOLLIN)
    ep.register(lfd, select.EPOLLIN)
    creader = LineReader(ctrl)
    base = status()
    base["oneArena"] = arena
    wsend(rep, {"t": "base", "status": base})
    n = sent = 0
    last = time.monotonic()
    accepting = True

    def take(c):
        held.append(c)
        if mode == "threads":
            threading.Thread(target=hold, args=(c,), daemon=True).start()
        else:
            ep.register(c, select.EPOLLIN)

    while True:
        for fd, _ in ep.poll(0.1 if n != sent else -1):
            if fd == ctrl:
                words = ctrl_words(creader)
                if "close" in words or "abort" in words or creader.eof:
                    if creader.eof:
                        os._exit(0)
                    if "abort" in words:
                        for c in held:
                            try:
                                socket.socket(fileno=os.dup(c)).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
                            except OSError:
                                pass
                    # Exiting closes every fd at once, readers blocked on them included.
                    wsend(rep, {"t": "c", "closed": len(held)})
                    os._exit(0)
            elif fd == lfd:
                if accepting:
                    n, cap = accept_some(accept, n, cap, take)
                if accepting and n >= cap:
                    accepting = False
                    ep.unregister(lfd)
                    wsend(rep, {"t": "p", "n": n})
                    wsend(rep, {"t": "full", "n": n})
                    sent = n
            else:
                # epoll: data or EOF on a held connection; idle ones never get here.
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    ep.unregister(fd)
        now = time.monotonic()
        if n != sent and now - last >= WORKER_PROGRESS_S:
            wsend(rep, {"t": "p", "n": n})
            sent = n
            last = now
