"""listen: a listening socket whose connections are accepted and held by
workers sharing it; the next worker is forked before the current one is full."""

import json
import os
import select
import socket
import threading
import time

from . import fastconn, servers
from .args import arg, ipv4, step_id
from .connect import PROGRESS_S, WORKER_PROGRESS_S
from .errors import OpError, bad, sys_error
from .procfs import sysctl_int
from .steps import STEPS, STEPS_LOCK, register_step, unregister_step
from .util import LineReader, Reply, emit, log, ms_since, wsend
from .workers import FORKER, accept_some, close_held, ctrl_words, current_sockets_per_worker

MAX_ACCEPT_WORKERS = 4096
MAX_DEFER_ACCEPT_S = 60


def handover_margin(cap):
    """Connections before a worker's cap at which the next worker is forked, so it is accepting in time."""
    return max(8, min(cap // 4, 2048))


# ---------------------------------------------------------------- the worker (child side)


def accept_worker(ctrl, rep, lsock, cap, margin):
    """Accept on the shared (non-blocking) listening socket until cap, then just hold."""
    lfd = lsock.fileno()
    accept = getattr(lsock, "_accept", None)  # (fd, addr) without a socket object
    if accept is None:  # pragma: no cover
        def accept():
            c, a = lsock.accept()
            return c.detach(), a
    held = []
    n = 0
    sent = 0
    near = False
    creader = LineReader(ctrl)
    poller = select.poll()
    poller.register(ctrl, select.POLLIN)
    poller.register(lfd, select.POLLIN)
    accepting = True
    last = time.monotonic()
    append = held.append
    while True:
        evs = poller.poll(100 if n != sent else None)
        for fd, _ in evs:
            if fd == ctrl:
                words = ctrl_words(creader)
                if "close" in words or "abort" in words or creader.eof:
                    if creader.eof:
                        os._exit(0)
                    abort = "abort" in words
                    for c in held:
                        close_held(c, abort)
                    wsend(rep, {"t": "c", "closed": len(held)})
                    os._exit(0)
            elif accepting:
                n, cap = accept_some(accept, n, cap, append)
                if n >= cap:
                    accepting = False
                    poller.unregister(lfd)
                    wsend(rep, {"t": "p", "n": n})
                    wsend(rep, {"t": "full", "n": n})
                    sent = n
                elif not near and n >= cap - margin:
                    near = True
                    wsend(rep, {"t": "near", "n": n})
        now = time.monotonic()
        if n != sent and now - last >= WORKER_PROGRESS_S:
            wsend(rep, {"t": "p", "n": n})
            sent = n
            last = now


# ---------------------------------------------------------------- the step (agent side)


class ListenStep:
    kind = "listen"

    def __init__(self, sid, rid, sock, accept):
        self.sid = sid
        self.rid = rid
        self.sock = sock
        self.accept = accept
        self.workers = []
        self.stopping = False
        self.done = threading.Event()
        self.closed = 0
        self.wake_r, self.wake_w = os.pipe()
        self.thread = None
        self.problem = None
        self.cap = self.margin = 0
        self.park = True  # set by op_listen: the C helper parks what it accepts (fastconn.c)
        # `server: threads|epoll`: the Python servers of servers.py instead of the plain accept workers
        self.server = None
        self.stack = 0

    def open_count(self):
        return sum(w.count for w in self.workers)

    def start_worker(self):
        """The first accept worker, before listen replies: the controller may connect at once."""
        if not self.accept:
            return
        self.cap = current_sockets_per_worker()
        self.margin = handover_margin(self.cap)
        self._spawn()

    def start_monitor(self):
        """After the reply: progress events of a listen follow its reply."""
        if not self.accept:
            self.done.set()
            return
        self.thread = threading.Thread(target=self._monitor, name="listen-" + self.sid, daemon=True)
        self.thread.start()

    def _spawn(self):
        if len(self.workers) >= MAX_ACCEPT_WORKERS:
            self.problem = "stopped at %d accept workers" % MAX_ACCEPT_WORKERS
            return None
        sock, cap, margin, helper, park = self.sock, self.cap, self.margin, self.helper, self.park
        if self.server:
            mode, stack = self.server, self.stack
            w = FORKER.spawn(lambda c, r: servers.serve(c, r, sock, cap, mode, stack), keep=[sock.fileno()])
        elif helper:
            lfd = sock.fileno()
            w = FORKER.spawn_exec(helper, lambda c, r, l: fastconn.accept_argv(c, r, l, cap, margin, park), keep=[lfd])
        else:
            w = FORKER.spawn(lambda c, r: accept_worker(c, r, sock, cap, margin), keep=[sock.fileno()])
        self.workers.append(w)
        return w

    def _monitor(self):
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        by_fd = {}

        def watch(w):
            by_fd[w.rep] = w
            poller.register(w.rep, select.POLLIN)

        for w in self.workers:
            watch(w)
        last_emit = 0.0
        emitted = (-1, -1)
        t0 = time.monotonic()
        while not self.stopping:
            for fd, _ in poller.poll(int(PROGRESS_S * 1000)):
                if fd == self.wake_r:
                    continue
                w = by_fd.get(fd)
                if w is None:
                    continue
                for m in w.messages():
                    t = m.get("t")
                    if t in ("p", "full", "near"):
                        w.count = m.get("n", w.count)
                    if t == "full":
                        w.full = True
                    if t == "base":
                        w.base = m.get("status") or {}
                    if t in ("near", "full") and w is self.workers[-1] and not self.stopping:
                        if t == "full" and w.count == 0:
                            self.problem = "an accept worker could not accept a single connection (EMFILE)"
                            continue
                        nw = self._spawn()
                        if nw is not None:
                            watch(nw)
                if w.reader.eof:
                    poller.unregister(fd)
                    del by_fd[fd]
                    if not self.stopping:
                        log("listen %s: accept worker %d exited" % (self.sid, w.pid))
                        if w is self.workers[-1]:
                            nw = self._spawn()
                            if nw is not None:
                                watch(nw)
            now = time.monotonic()
            cur = (self.open_count(), len(self.workers))
            if cur != emitted and now - last_emit >= PROGRESS_S and not self.stopping:
                emit({"id": self.rid, "event": "progress",
                      "data": {"accepted": cur[0], "workers": cur[1], "elapsedMs": ms_since(t0)}})
                emitted = cur
                last_emit = now
        self.done.set()

    def _wake(self):
        self.stopping = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def release(self, deadline, word="close"):
        """Close what the step holds: word is "close" (FIN), "abort" (RST) or "drop\nabort" (the C
        helper sends nothing; the Python workers read "abort")."""
        self._wake()
        self.done.wait(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            w.send(word)
        closed = sum(w.wait_closed(deadline) for w in self.workers)
        self.close_fds()
        return closed

    def kill(self):
        self._wake()
        for w in self.workers:
            w.kill()
        self.close_fds()

    def close_fds(self):
        try:
            self.sock.close()
        except OSError:
            pass
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.wake_r = self.wake_w = -1


def op_listen(rid, args):
    sid = step_id(args)
    address = ipv4(arg(args, "address", str, "0.0.0.0"), "address")
    port = arg(args, "port", int, minimum=0)
    if port > 65535:
        raise bad('argument "port" must be 0..65535, got %d' % port)
    backlog = arg(args, "backlog", int, sysctl_int("net.core.somaxconn", 4096), minimum=0)
    accept = arg(args, "accept", bool, True)
    # TCP_DEFER_ACCEPT: a handshake's bare last ACK is ignored until data comes or this many
    # seconds pass; the connection waits in the SYN queue meanwhile, not in the accept queue.
    defer_s = arg(args, "deferAcceptS", int, 0, minimum=0)
    if defer_s > MAX_DEFER_ACCEPT_S:
        raise bad('argument "deferAcceptS" must be at most %d, got %d' % (MAX_DEFER_ACCEPT_S, defer_s))
    park = arg(args, "park", bool, True)
    engine = arg(args, "engine", str, "auto")
    if engine not in fastconn.ENGINES:
        raise bad('argument "engine" must be auto, c or python, got %s' % json.dumps(engine))
    server = arg(args, "server", str, "")
    if server and server not in servers.MODES:
        raise bad('argument "server" must be threads or epoll, got %s' % json.dumps(server))
    stack = arg(args, "stackBytes", int, 0, minimum=0)
    if stack and (server != "threads" or not servers.MIN_STACK <= stack <= servers.MAX_STACK or stack % 4096):
        raise bad('argument "stackBytes" goes with server "threads": a multiple of 4096 from %d to %d, got %d'
                  % (servers.MIN_STACK, servers.MAX_STACK, stack))
    helper, engine, _ = fastconn.choose(engine)
    if server:
        helper, engine = None, "python"
        if server == "threads" and not stack:
            stack = 256 * 1024
    with STEPS_LOCK:
        if sid in STEPS:
            raise bad('a listen or connect with id "%s" is still open; release it first' % sid)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if defer_s:
            s.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_DEFER_ACCEPT", 9), defer_s)
        try:
            s.bind((address, port))
        except OSError as e:
            raise sys_error("bind %s:%d" % (address, port), e)
        try:
            s.listen(backlog)
        except OSError as e:
            raise sys_error("listen %s:%d" % (address, port), e)
        # Workers share this file description; they poll it, so it must not block.
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    step = ListenStep(sid, rid, s, accept)
    step.helper = helper
    step.park = park
    step.server, step.stack = server or None, stack
    try:
        register_step(step)
    except OpError:
        s.close()
        raise
    try:
        step.start_worker()
    except BaseException:
        step.kill()
        unregister_step(step)
        raise
    result = {"address": address, "port": s.getsockname()[1], "backlog": backlog, "engine": engine}
    if defer_s:
        result["deferAcceptS"] = defer_s
    if server:
        result["server"] = server
        if stack:
            result["stackBytes"] = stack
    return Reply(result, step.start_monitor)
