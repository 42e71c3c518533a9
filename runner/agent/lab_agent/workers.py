"""Worker processes: forked children that hold connections (one process's
nofile limit may be small), each talking to the agent over two pipes.

Forks happen on one long-lived "forker" thread, because PR_SET_PDEATHSIG
fires when the *thread* that forked exits, not the process. Children run only
os, socket and select code and never touch the agent's locks, so forking from
a threaded process is safe here.
"""

import errno
import json
import os
import queue
import resource
import select
import signal
import socket
import struct
import threading
import time
import traceback
import warnings

from .fds import sockets_per_worker
from .util import LineReader, log, write_all

# prctl(2), through ctypes, loaded by Forker.start() (at the first worker, not at
# the agent's start); None without ctypes (minimal Python): pipe EOF still ends workers.
_prctl = None


def load_prctl():
    global _prctl
    try:
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except Exception:
        _prctl = None

warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)

PR_SET_PDEATHSIG = 1

def accept_some(accept, n, cap, take):
    """A listen worker's accepts after poll says the listener is ready: until the
    queue is empty or n reaches cap, handing each fd to take(). Out of fds
    (EMFILE, ENFILE) caps the worker where it stands. Returns (n, cap)."""
    while n < cap:
        try:
            c, _ = accept()
        except (BlockingIOError, InterruptedError):
            break
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                return n, n
            continue  # ECONNABORTED and friends: next one
        take(c)
        n += 1
    return n, cap


def current_sockets_per_worker():
    return sockets_per_worker(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


# SO_LINGER {on, 0}: close() sends RST and leaves no TIME_WAIT, so a release
# frees the client's ports at once (a second run within 60 s sees them free).
LINGER_ABORT = struct.pack("ii", 1, 0)


def close_held(s, abort):
    """Close a held socket (object or raw fd); with abort, by RST instead of FIN."""
    try:
        if abort:
            sk = s if not isinstance(s, int) else socket.socket(fileno=s)
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
            sk.close()
        elif isinstance(s, int):
            os.close(s)
        else:
            s.close()
        return True
    except OSError:
        return False


def ctrl_words(reader):
    """The words the agent sent a worker since the last read: stop, close, abort."""
    return [line.decode("ascii", "replace").strip() for line in reader.read()]


class Worker:
    """The agent's handle on one forked worker."""

    def __init__(self, pid, ctrl, rep):
        self.pid = pid
        self.ctrl = ctrl  # agent -> worker
        self.rep = rep  # worker -> agent
        self.reader = LineReader(rep)
        self.count = 0  # connections it holds, as last reported
        self.full = False
        self.closed = None  # sockets it closed on "close"
        self.batched = 0  # of those, through io_uring (the C helper)
        self.reaped = False

    def send(self, word):
        try:
            write_all(self.ctrl, (word + "\n").encode())
        except OSError:
            pass

    def messages(self):
        out = []
        for line in self.reader.read():
            try:
                out.append(json.loads(line.decode("utf-8")))
            except ValueError:
                log("worker %d: bad line %r" % (self.pid, line[:200]))
        return out

    def wait_closed(self, deadline):
        """After send('close'): wait for the worker's count, then reap it."""
        while self.closed is None and not self.reader.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.rep], [], [], left)
            if r:
                for m in self.messages():
                    if m.get("t") == "c":
                        self.closed = m.get("closed", 0)
                        self.batched = m.get("batched", 0)
        self.reap(max(0.5, deadline - time.monotonic()))
        return self.closed or 0

    def reap(self, timeout=0.0):
        """Wait up to timeout for the worker to exit, then SIGKILL it; close our pipe ends."""
        if not self.reaped:
            end = time.monotonic() + timeout
            while True:
                try:
                    pid, _ = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    pid = self.pid
                if pid == self.pid:
                    break
                if time.monotonic() >= end:
                    try:
                        os.kill(self.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    try:
                        os.waitpid(self.pid, 0)
                    except ChildProcessError:
                        pass
                    break
                time.sleep(0.005)
            self.reaped = True
            FORKER.forget(self.pid)
        for fd in (self.ctrl, self.rep):
            try:
                os.close(fd)
            except OSError:
                pass
        self.ctrl = self.rep = -1

    def kill(self):
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        self.reap(5.0)


def child_setup(ppid, keep):
    """In a fresh worker: die with the agent, hold no fd but its own."""
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            signal.signal(s, signal.SIG_DFL)
        except (ValueError, OSError):
            pass
    if _prctl is not None:
        try:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:
            pass
    if os.getppid() != ppid:  # the agent died before prctl took effect
        os._exit(0)
    # Not the agent's stdout (its EOF tells the controller the agent is gone),
    # nor stdin, nor the lock, pipes or sockets of other steps.
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    keep = set(keep) | {0, 1, 2}
    try:
        # The agent has few fds open; closerange up to a hard limit of 1M is a
        # million close() calls where close_range(2) is missing.
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], max(keep) + 1, 65536))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


class Forker:
    """Forks workers from one thread that lives as long as the agent (see PR_SET_PDEATHSIG)."""

    def __init__(self):
        self.q = queue.Queue()
        self.pids = set()
        self.lock = threading.Lock()
        self.thread = None
        self.start_lock = threading.Lock()

    def start(self):
        """Start the forker thread, once: at the first spawn (an agent that only provisions never needs it)."""
        with self.start_lock:
            if self.thread is None:
                load_prctl()
                self.thread = threading.Thread(target=self._run, name="forker", daemon=True)
                self.thread.start()

    def spawn(self, target, keep=()):
        """target(ctrl_fd, rep_fd) runs in the child and must not return."""
        self.start()
        req = {"target": target, "keep": list(keep), "ev": threading.Event()}
        self.q.put(req)
        req["ev"].wait()
        if "error" in req:
            raise req["error"]
        return req["worker"]

    def spawn_exec(self, path, make_argv, keep=()):
        """A worker that runs the program at path from its start: posix_spawn (a vfork, no copy
        of the agent's memory and no Python in the child) from the forker thread, so the
        child's PR_SET_PDEATHSIG (the helper sets it) still follows the agent. make_argv(ctrl,
        rep, *keep) gets the fd numbers as the child sees them: 3, 4, 5, ...
        Why: forking the agent cost 45-90 ms per worker under load (page tables, Python's
        fork handlers), a sizeable share of a short ramp and a second per million."""
        if not hasattr(os, "posix_spawn"):  # Python 3.7: fork, then exec
            from .fastconn import become
            return self.spawn(lambda c, r: become(path, make_argv(c, r, *keep), [c, r] + list(keep)), keep=keep)
        self.start()
        req = {"exec": (path, make_argv, list(keep)), "ev": threading.Event()}
        self.q.put(req)
        req["ev"].wait()
        if "error" in req:
            raise req["error"]
        return req["worker"]

    def forget(self, pid):
        with self.lock:
            self.pids.discard(pid)

    def all_pids(self):
        with self.lock:
            return list(self.pids)

    def _run(self):
        while True:
            req = self.q.get()
            try:
                if "exec" in req:
                    req["worker"] = self._spawn_exec(*req["exec"])
                else:
                    req["worker"] = self._fork(req["target"], req["keep"])
            except BaseException as e:  # noqa
                req["error"] = e
            req["ev"].set()

    def _fork(self, target, keep):
        c_r, c_w = os.pipe()
        r_r, r_w = os.pipe()
        ppid = os.getpid()
        with self.lock:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    child_setup(ppid, [c_r, r_w] + keep)
                    target(c_r, r_w)
                except BaseException:
                    code = 1
                    try:
                        os.write(2, ("agent worker %d: %s" % (os.getpid(), traceback.format_exc())).encode())
                    except Exception:
                        pass
                os._exit(code)
            self.pids.add(pid)
        os.close(c_r)
        os.close(r_w)
        return Worker(pid, c_w, r_r)


    def _spawn_exec(self, path, make_argv, keep):
        c_r, c_w = os.pipe()
        r_r, r_w = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        os.set_inheritable(null, False)
        srcs = [c_r, r_w] + keep
        child = list(range(3, 3 + len(srcs)))
        top = max(srcs + child + [null]) + 1
        # stdin and stdout /dev/null first; then each fd through a temporary number above
        # all of them (a source may sit where another goes), dup2 clearing close-on-exec.
        acts = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
        acts += [(os.POSIX_SPAWN_DUP2, fd, top + i) for i, fd in enumerate(srcs)]
        acts += [(os.POSIX_SPAWN_DUP2, top + i, child[i]) for i in range(len(srcs))]
        acts += [(os.POSIX_SPAWN_CLOSE, top + i) for i in range(len(srcs))]
        argv = [path] + [str(a) for a in make_argv(*child)]
        env = dict(os.environ, LAB_AGENT_PID=str(os.getpid()))
        try:
            with self.lock:
                # The one spawn: the helper the agent compiled from its own fastconn.c, with an
                # argv of numbers and addresses it validated (test_dispatch holds this to it).
                pid = os.posix_spawn(path, argv, env, file_actions=acts)
                self.pids.add(pid)
        except BaseException:
            for fd in (c_w, r_r):
                os.close(fd)
            raise
        finally:
            for fd in (c_r, r_w, null):
                os.close(fd)
        return Worker(pid, c_w, r_r)


FORKER = Forker()
