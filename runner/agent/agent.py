#!/usr/bin/env python3
# lab probe agent: one per host for a whole run, JSON lines on stdin/stdout.
# The protocol is docs/agent-protocol.md. Stdlib only, Python 3.7+.
#
# Layout: the main thread reads stdin and never blocks on a long operation;
# long operations run in threads; connections live in fork()ed workers (one
# process's nofile limit may be small) that talk to the agent over pipes.
# Forks happen on one long-lived "forker" thread, because PR_SET_PDEATHSIG
# fires when the *thread* that forked exits, not the process.

import base64
import errno
import fcntl
import json
import os
import platform
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
import zlib

try:
    import queue
except ImportError:  # pragma: no cover
    import Queue as queue  # type: ignore

try:
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except Exception:  # no ctypes (minimal Python): pipe EOF still ends workers
    _prctl = None

# Forking from a threaded process is deliberate here: children run only
# async-signal-safe-ish code (os, socket, select) and never touch locks.
warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)

VERSION = 1
PR_SET_PDEATHSIG = 1
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
FD_MARGIN = 16  # fds a worker keeps for itself: soft nofile - 16 sockets each
EXHAUSTED = (errno.EADDRNOTAVAIL, errno.EADDRINUSE)
FULL = (errno.EMFILE, errno.ENFILE)
PROGRESS_S = 0.2  # agent -> controller progress events, at most this often
WORKER_PROGRESS_S = 0.1  # worker -> agent
MAX_ACCEPT_WORKERS = 4096


class OpError(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


class Terminate(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT/SIGHUP."""


def errname(n):
    return errno.errorcode.get(n, "E%d" % n) if n else "EUNKNOWN"


def sys_error(what, e):
    """An OSError as an OpError whose code is the errno name and whose message says which call failed."""
    return OpError(errname(e.errno), "%s: %s" % (what, e.strerror or e))


def bad(message):
    return OpError("BAD_REQUEST", message)


# ---------------------------------------------------------------- output

_out_lock = threading.Lock()
_out = sys.stdout.buffer


def emit(obj):
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
    with _out_lock:
        try:
            _out.write(data)
            _out.flush()
        except (OSError, ValueError):
            pass  # controller gone: stdin EOF follows and ends the agent


def log(msg):
    try:
        sys.stderr.write("agent: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def ms_since(t0):
    return int(round((time.monotonic() - t0) * 1000))


# ---------------------------------------------------------------- arguments

_REQUIRED = object()


def arg(args, name, kind, default=_REQUIRED, minimum=None):
    if name not in args or args[name] is None:
        if default is _REQUIRED:
            raise bad('missing argument "%s"' % name)
        return default
    v = args[name]
    ok = True
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    elif kind is bool:
        ok = isinstance(v, bool)
    elif kind is str:
        ok = isinstance(v, str)
    elif kind is list:
        ok = isinstance(v, list)
    elif kind is dict:
        ok = isinstance(v, dict)
    if not ok:
        raise bad('argument "%s" must be %s, got %s' % (name, kind.__name__, json.dumps(v)))
    if minimum is not None and v < minimum:
        raise bad('argument "%s" must be >= %s, got %s' % (name, minimum, v))
    return v


def step_id(args):
    v = args.get("id")
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "":
        raise bad('argument "id" (the step id) must be a non-empty string or an integer')
    return str(v)


def ipv4(value, name):
    try:
        socket.inet_aton(value)
    except (OSError, TypeError):
        raise bad('argument "%s" must be a dotted IPv4 address, got %s' % (name, json.dumps(value)))
    if value.count(".") != 3:
        raise bad('argument "%s" must be a dotted IPv4 address, got %s' % (name, json.dumps(value)))
    return value


# ---------------------------------------------------------------- /proc readers


def read_text(path):
    with open(path) as f:
        return f.read()


def collapse(s):
    return " ".join(s.split())


def sysctl_path(name):
    if not isinstance(name, str) or not name or ".." in name or name.startswith("/"):
        raise bad("bad sysctl name %s" % json.dumps(name))
    return "/proc/sys/" + (name if "/" in name else name.replace(".", "/"))


def sysctl_read(name):
    path = sysctl_path(name)
    try:
        return collapse(read_text(path))
    except OSError as e:
        raise sys_error("read %s (%s)" % (name, path), e)


def sysctl_write(name, value):
    path = sysctl_path(name)
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise sys_error("write %s (%s) = %s" % (name, path, json.dumps(value)), e)


def sysctl_int(name, default=0):
    try:
        return int(sysctl_read(name).split()[0])
    except Exception:
        return default


def meminfo():
    out = {}
    try:
        for line in read_text("/proc/meminfo").splitlines():
            k, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                try:
                    out[k.strip()] = int(parts[0])
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def slabinfo():
    """{cache: {activeObjs, numObjs, objSize}}, empty when unreadable (needs root)."""
    out = {}
    try:
        text = read_text("/proc/slabinfo")
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("slabinfo") or line.startswith("#"):
            continue
        p = line.split()
        if len(p) < 4:
            continue
        try:
            out[p[0]] = {"activeObjs": int(p[1]), "numObjs": int(p[2]), "objSize": int(p[3])}
        except ValueError:
            pass
    return out


def sockstat():
    out = {}
    try:
        text = read_text("/proc/net/sockstat")
    except OSError:
        return out
    for line in text.splitlines():
        k, _, rest = line.partition(":")
        p = rest.split()
        d = {}
        for i in range(0, len(p) - 1, 2):
            try:
                d[p[i]] = int(p[i + 1])
            except ValueError:
                pass
        out[k.strip()] = d
    return out


def ipv4_addresses():
    """[(ip, prefix, device)] from `ip -o -4 addr show`, loopback excluded."""
    try:
        r = subprocess.run(["ip", "-o", "-4", "addr", "show"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        p = line.split()
        if len(p) < 4 or p[2] != "inet":
            continue
        dev = p[1].split("@")[0]
        ip, _, prefix = p[3].partition("/")
        if dev == "lo" or ip.startswith("127."):
            continue
        out.append((ip, int(prefix or 32), dev))
    return out


def count_fds(pid):
    try:
        return len(os.listdir("/proc/%s/fd" % pid))
    except OSError:
        return 0


def can_raise_hard_nofile():
    """Try to raise the hard limit by one in a forked child, so the agent's own limits are untouched."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return True
    pid = os.fork()
    if pid == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard + 1))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ---------------------------------------------------------------- workers


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def wsend(fd, obj):
    write_all(fd, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


class LineReader(object):
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


class Worker(object):
    def __init__(self, pid, ctrl, rep):
        self.pid = pid
        self.ctrl = ctrl  # agent -> worker
        self.rep = rep  # worker -> agent
        self.reader = LineReader(rep)
        self.count = 0  # connections it holds, as last reported
        self.full = False
        self.closed = None  # sockets it closed on "close"
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
            _forker.forget(self.pid)
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


def _child_setup(ppid, keep):
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


class Forker(object):
    """Forks workers from one thread that lives as long as the agent (see PR_SET_PDEATHSIG)."""

    def __init__(self):
        self.q = queue.Queue()
        self.pids = set()
        self.lock = threading.Lock()
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._run, name="forker", daemon=True)
        self.thread.start()

    def spawn(self, target, keep=()):
        """target(ctrl_fd, rep_fd) runs in the child and must not return."""
        req = {"target": target, "keep": list(keep), "ev": threading.Event()}
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
                    _child_setup(ppid, [c_r, r_w] + keep)
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


_forker = Forker()


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


def _ctrl_words(reader):
    return [l.decode("ascii", "replace").strip() for l in reader.read()]


# ---------------------------------------------------------------- connect worker (child side)


def connect_worker(ctrl, rep, spec):
    """Open up to spec.quota connections, report, then hold them until "close" or pipe EOF."""
    pairs = spec["pairs"]
    mode = spec["bind"]
    AF, ST = socket.AF_INET, socket.SOCK_STREAM
    SOL, SNDTIMEO, REUSE = socket.SOL_SOCKET, socket.SO_SNDTIMEO, socket.SO_REUSEADDR
    IPP = socket.IPPROTO_IP
    new_socket = socket.socket
    # A blocking connect() gives up after SO_SNDTIMEO on Linux (returning EINPROGRESS):
    # one setsockopt instead of a non-blocking connect plus poll.
    cto = spec["connectTimeoutMs"] / 1000.0
    tv = struct.pack("@ll", int(cto), int((cto - int(cto)) * 1e6))
    no_port = spec["noPort"]
    reuse = mode == "reuseaddr"
    dsts = [(p["address"], p["port"]) for p in pairs]
    if mode == "reuseaddr":
        binds = [(p.get("source") or "0.0.0.0", spec["localPort"]) for p in pairs]
    elif mode in ("ip", "ip-no-port") or no_port:
        binds = [(p.get("source") or "0.0.0.0", 0) for p in pairs]
    else:
        binds = [None] * len(pairs)
    active = list(spec["active"])
    rr = spec["rr"]
    quota = spec["quota"]
    max_att = spec["maxAttempts"]
    deadline = spec["deadline"]
    rate = spec["rate"]
    t0 = spec["t0"]
    base = spec["base"]
    base_att = spec["baseAttempted"]
    stop_on_error = spec["stopOnError"]
    per = [0] * len(pairs)
    ports = bytearray(65536)
    held = []
    errors = {}
    first = None
    est = 0
    att = 0
    reason = "count"
    creader = LineReader(ctrl)
    poller = select.poll()
    poller.register(ctrl, select.POLLIN)
    monotonic = time.monotonic
    last_prog = monotonic()
    next_poll = 0
    next_time = 0.0
    while est < quota:
        now = monotonic()
        if now >= deadline:
            reason = "timeout"
            break
        if att >= next_poll or now >= next_time:  # every 64 attempts, or 50 ms for slow ones
            next_poll = att + 64
            next_time = now + 0.05
            if poller.poll(0):
                words = _ctrl_words(creader)
                if creader.eof or "stop" in words or "close" in words:
                    reason = "released"
                    break
            if now - last_prog >= WORKER_PROGRESS_S:
                wsend(rep, {"t": "p", "n": est, "a": att})
                last_prog = now
        if rate:
            target = t0 + (base_att + att) / rate
            if target > now:
                time.sleep(min(target - now, max(0.0, deadline - now)))
                continue
        if not active:
            reason = "exhausted"
            break
        if att >= max_att:
            reason = "attempts"
            break
        i = active[rr % len(active)]
        att += 1
        s = None
        try:
            s = new_socket(AF, ST)
            s.setsockopt(SOL, SNDTIMEO, tv)
            if reuse:
                s.setsockopt(SOL, REUSE, 1)
            elif no_port:
                s.setsockopt(IPP, IP_BIND_ADDRESS_NO_PORT, 1)
            b = binds[i]
            if b is not None:
                s.bind(b)
            code = s.connect_ex(dsts[i])
        except OSError as e:
            code = e.errno or errno.EIO
        if code == 0:
            held.append(s)
            est += 1
            per[i] += 1
            rr += 1
            ports[s.getsockname()[1]] = 1
            continue
        if s is not None:
            s.close()
        if code == errno.EINPROGRESS or code == errno.EAGAIN:
            code = errno.ETIMEDOUT  # SO_SNDTIMEO ran out
        name = errname(code)
        errors[name] = errors.get(name, 0) + 1
        if first is None:
            first = {"errno": name, "message": os.strerror(code), "after": base + est, "pair": i}
        if code in EXHAUSTED:
            active.remove(i)  # this 4-tuple space is used up; rr now points at the next pair
            continue
        if code in FULL and not stop_on_error:
            reason = "full"  # no fd left in this process: the agent may start another worker
            break
        if stop_on_error:
            reason = "error"
            break
        rr += 1
    wsend(rep, {"t": "d", "n": est, "a": att, "errors": errors, "first": first, "per": per,
                "active": active, "rr": rr, "reason": reason,
                "ports": base64.b64encode(zlib.compress(bytes(ports))).decode("ascii")})
    del ports
    _hold(ctrl, creader, rep, held)


def _hold(ctrl, creader, rep, held):
    """Hold sockets (objects or raw fds) until "close" (close them, report) or pipe EOF (exit)."""
    while True:
        select.select([ctrl], [], [])
        words = _ctrl_words(creader)
        if "close" in words or "abort" in words:
            abort = "abort" in words
            n = 0
            for s in held:
                n += close_held(s, abort)
            wsend(rep, {"t": "c", "closed": n})
            os._exit(0)
        if creader.eof:
            os._exit(0)


# ---------------------------------------------------------------- accept worker (child side)


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
                words = _ctrl_words(creader)
                if "close" in words or "abort" in words or creader.eof:
                    if creader.eof:
                        os._exit(0)
                    abort = "abort" in words
                    for c in held:
                        close_held(c, abort)
                    wsend(rep, {"t": "c", "closed": len(held)})
                    os._exit(0)
            elif accepting:
                while n < cap:
                    try:
                        c, _ = accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        if e.errno in FULL:
                            cap = n
                            break
                        continue  # ECONNABORTED and friends: next one
                    append(c)
                    n += 1
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


# ---------------------------------------------------------------- steps (listen / connect) in the agent


_steps = {}
_steps_lock = threading.Lock()


class ListenStep(object):
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

    def open_count(self):
        return sum(w.count for w in self.workers)

    def start_worker(self):
        """The first accept worker, before listen replies: the controller may connect at once."""
        if not self.accept:
            return
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.cap = max(1, soft - FD_MARGIN)
        # Hand over early: the next worker must be accepting before this one is full.
        self.margin = max(8, min(self.cap // 4, 2048))
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
        sock, cap, margin = self.sock, self.cap, self.margin
        w = _forker.spawn(lambda c, r: accept_worker(c, r, sock, cap, margin), keep=[sock.fileno()])
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

    def release(self, deadline, abort=False):
        self.stopping = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass
        self.done.wait(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            w.send("abort" if abort else "close")
        closed = sum(w.wait_closed(deadline) for w in self.workers)
        self.close_fds()
        return closed

    def kill(self):
        self.stopping = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass
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


class ConnectStep(object):
    kind = "connect"

    def __init__(self, sid):
        self.sid = sid
        self.workers = []
        self.current = None  # the worker now connecting
        self.stopping = False
        self.done = threading.Event()

    def open_count(self):
        return sum(w.count for w in self.workers)

    def release(self, deadline, abort=False):
        self.stopping = True
        cur = self.current
        if cur is not None:
            cur.send("stop")
        self.done.wait(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            w.send("abort" if abort else "close")
        return sum(w.wait_closed(deadline) for w in self.workers)

    def kill(self):
        self.stopping = True
        for w in self.workers:
            w.kill()


def register_step(step):
    with _steps_lock:
        if step.sid in _steps:
            raise bad('a listen or connect with id "%s" is still open; release it first' % step.sid)
        _steps[step.sid] = step


def unregister_step(step):
    with _steps_lock:
        if _steps.get(step.sid) is step:
            del _steps[step.sid]


# ---------------------------------------------------------------- journal


class Journal(object):
    def __init__(self):
        self.lock = threading.RLock()
        self.path = None
        self.lock_path = None
        self.lock_fd = None
        self.holder = None


_journal = Journal()


def take_lock(lock_path, holder):
    """Exclusive flock on lock_path; returns the fd. The file is unlinked on release,
    so after locking check that the path still names the file we locked."""
    d = os.path.dirname(lock_path)
    if d:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise sys_error("create directory %s" % d, e)
    for _ in range(100):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise sys_error("open %s" % lock_path, e)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                text = os.read(fd, 4096).decode("utf-8", "replace").strip()
            except OSError:
                text = ""
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OpError("LOCKED", "%s: held by %s" % (lock_path, text or "an unnamed holder"))
            raise sys_error("flock %s" % lock_path, e)
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            write_all(fd, (holder + "\n").encode("utf-8"))
            return fd
        os.close(fd)  # the previous holder removed it between our open and flock: again
    raise OpError("LOCKED", "%s: could not take the lock" % lock_path)


def drop_lock(lock_path, fd):
    try:
        os.unlink(lock_path)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def journal_read(path):
    entries, problems = [], []
    try:
        text = read_text(path)
    except FileNotFoundError:
        return entries, problems
    except OSError as e:
        return entries, ["read %s: %s" % (path, e.strerror)]
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            if not isinstance(e, dict):
                raise ValueError("not an object")
            entries.append(e)
        except ValueError:
            # A torn last line: the agent died while journaling, before the change.
            problems.append("%s:%d: ignored an unreadable entry %r" % (path, n, line[:100]))
    return entries, problems


def journal_append(entry):
    j = _journal
    if j.path is None:
        raise bad("begin must come before any change")
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
    try:
        fd = os.open(j.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise sys_error("append to journal %s" % j.path, e)


def journal_pop():
    """Drop the last entry: its change failed, so there is nothing to undo."""
    j = _journal
    entries, _ = journal_read(j.path)
    if not entries:
        return
    tmp = j.path + ".tmp"
    with open(tmp, "w") as f:
        for e in entries[:-1]:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, j.path)


def undo(entries):
    undone, problems = [], []
    for e in reversed(entries):
        kind = e.get("kind")
        try:
            if kind == "sysctl":
                sysctl_write(e["name"], e["old"])
            elif kind == "address":
                spec = "%s/%s" % (e["address"], e["prefix"])
                r = subprocess.run(["ip", "addr", "del", spec, "dev", e["device"]],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
                if r.returncode != 0:
                    raise OpError("EIO", "ip addr del %s dev %s: %s" % (
                        spec, e["device"], r.stderr.decode("utf-8", "replace").strip()))
            else:
                raise OpError("BAD_REQUEST", "unknown journal entry kind %s" % json.dumps(kind))
            undone.append(e)
        except OpError as ex:
            problems.append(ex.message)
        except Exception as ex:
            problems.append("undo %s: %s" % (json.dumps(e), ex))
    return undone, problems


def journal_restore():
    """Undo this agent's journal, newest first, and remove it. The lock stays held."""
    j = _journal
    with j.lock:
        if j.path is None:
            return [], []
        entries, problems = journal_read(j.path)
        undone, p2 = undo(entries)
        problems += p2
        try:
            os.unlink(j.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            problems.append("remove %s: %s" % (j.path, e.strerror))
        return undone, problems


# ---------------------------------------------------------------- operations


class Reply(object):
    """A result plus work to start once the reply line is out (events follow the reply)."""

    def __init__(self, result, after):
        self.result = result
        self.after = after


def op_hello(rid, args):
    return {"version": VERSION, "pid": os.getpid(), "python": platform.python_version(), "uid": os.getuid()}


def op_facts(rid, args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    mi = meminfo()
    pr = sysctl_read("net.ipv4.ip_local_port_range").split()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        reserved = read_text("/proc/sys/net/ipv4/ip_local_reserved_ports").strip()
    except OSError:
        reserved = ""
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "portRange": [int(pr[0]), int(pr[1])],
        "reservedPorts": reserved,
        "nofileSoft": soft,
        "nofileHard": hard,
        "canRaiseHardNofile": can_raise_hard_nofile(),
        "nrOpen": sysctl_int("fs.nr_open"),
        "fileMax": sysctl_int("fs.file-max"),
        "somaxconn": sysctl_int("net.core.somaxconn"),
        "tcpMaxSynBacklog": sysctl_int("net.ipv4.tcp_max_syn_backlog"),
        "tcpFinTimeout": sysctl_int("net.ipv4.tcp_fin_timeout"),
        "tcpTwReuse": sysctl_int("net.ipv4.tcp_tw_reuse"),
        "memTotalKiB": mi.get("MemTotal", 0),
        "memAvailableKiB": mi.get("MemAvailable", 0),
        "slabObjectSize": dict((k, v["objSize"]) for k, v in slabinfo().items()),
        "addresses": ["%s/%d" % (ip, prefix) for ip, prefix, _ in ipv4_addresses()],
        "cpus": cpus,
        "uid": os.getuid(),
    }


def op_begin(rid, args):
    path = arg(args, "journal", str)
    holder = arg(args, "holder", str, "pid %d" % os.getpid())
    if not path:
        raise bad('argument "journal" must not be empty')
    path = os.path.abspath(path)
    j = _journal
    with j.lock:
        if j.path is not None:
            if j.path == path:
                return {"journal": path, "pending": len(journal_read(path)[0])}
            raise bad("this agent already holds journal %s" % j.path)
        lock_path = path + ".lock"
        fd = take_lock(lock_path, holder)
        j.path, j.lock_path, j.lock_fd, j.holder = path, lock_path, fd, holder
        # Entries a dead agent left stay: appending keeps reverse-order undo correct.
        return {"journal": path, "pending": len(journal_read(path)[0])}


def op_sysctl_get(rid, args):
    return {"value": sysctl_read(arg(args, "name", str))}


def op_sysctl_set(rid, args):
    name = arg(args, "name", str)
    value = args.get("value")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise bad('argument "value" must be a string or an integer')
    value = collapse(str(value))
    with _journal.lock:
        if _journal.path is None:
            raise bad("begin must come before any change")
        old = sysctl_read(name)
        if old == value:
            return {"old": old, "new": old}
        journal_append({"kind": "sysctl", "name": name, "old": old})
        try:
            sysctl_write(name, value)
        except OpError:
            journal_pop()
            raise
        return {"old": old, "new": sysctl_read(name)}


def op_addr_add(rid, args):
    address = ipv4(arg(args, "address", str), "address")
    prefix = arg(args, "prefix", int, 32)
    device = arg(args, "device", str)
    if not 0 <= prefix <= 32:
        raise bad('argument "prefix" must be 0..32, got %d' % prefix)
    with _journal.lock:
        if _journal.path is None:
            raise bad("begin must come before any change")
        for ip, p, dev in ipv4_addresses():
            if ip == address:
                raise OpError("EEXIST", "address %s is already on %s (as %s/%d); lab adds only addresses it can remove"
                              % (address, dev, ip, p))
        spec = "%s/%d" % (address, prefix)
        journal_append({"kind": "address", "address": address, "prefix": prefix, "device": device})
        try:
            r = subprocess.run(["ip", "addr", "add", spec, "dev", device], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            journal_pop()
            raise OpError("ENOENT" if isinstance(e, FileNotFoundError) else "EIO", "ip addr add %s dev %s: %s" % (spec, device, e))
        if r.returncode != 0:
            journal_pop()
            msg = r.stderr.decode("utf-8", "replace").strip()
            code = "EEXIST" if "exists" in msg else ("ENODEV" if "not find device" in msg or "does not exist" in msg
                                                     else ("EPERM" if "not permitted" in msg else "EIO"))
            raise OpError(code, "ip addr add %s dev %s: %s" % (spec, device, msg))
        return {}


def op_nofile(rid, args):
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = arg(args, "soft", int, minimum=0)
    hard = arg(args, "hard", int, old[1], minimum=0)
    if soft > hard:
        raise OpError("EINVAL", "setrlimit(RLIMIT_NOFILE, %d, %d): soft limit above hard limit" % (soft, hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    except ValueError as e:
        code = "EPERM" if hard > old[1] else "EINVAL"
        raise OpError(code, "setrlimit(RLIMIT_NOFILE, %d, %d): %s" % (soft, hard, e))
    except OSError as e:
        raise sys_error("setrlimit(RLIMIT_NOFILE, %d, %d)" % (soft, hard), e)
    return {"old": list(old), "new": list(resource.getrlimit(resource.RLIMIT_NOFILE))}


def op_listen(rid, args):
    sid = step_id(args)
    address = ipv4(arg(args, "address", str, "0.0.0.0"), "address")
    port = arg(args, "port", int, minimum=0)
    if port > 65535:
        raise bad('argument "port" must be 0..65535, got %d' % port)
    backlog = arg(args, "backlog", int, sysctl_int("net.core.somaxconn", 4096), minimum=0)
    accept = arg(args, "accept", bool, True)
    with _steps_lock:
        if sid in _steps:
            raise bad('a listen or connect with id "%s" is still open; release it first' % sid)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    result = {"address": address, "port": s.getsockname()[1], "backlog": backlog}
    return Reply(result, step.start_monitor)


def op_connect(rid, args):
    sid = step_id(args)
    pairs = arg(args, "pairs", list)
    if not pairs:
        raise bad('argument "pairs" must not be empty')
    clean = []
    for n, p in enumerate(pairs):
        if not isinstance(p, dict):
            raise bad("pairs[%d] must be an object {source, address, port}" % n)
        src = p.get("source")
        if src is not None:
            ipv4(src, "pairs[%d].source" % n)
        dst = ipv4(p.get("address"), "pairs[%d].address" % n)
        port = arg(p, "port", int, minimum=1)
        if port > 65535:
            raise bad("pairs[%d].port must be 1..65535" % n)
        clean.append({"source": src, "address": dst, "port": port})
    count = arg(args, "count", int, minimum=0)
    mode = arg(args, "bind", str, "none")
    if mode not in ("none", "ip", "ip-no-port", "reuseaddr"):
        raise bad('argument "bind" must be none, ip, ip-no-port or reuseaddr, got %s' % json.dumps(mode))
    local_port = arg(args, "port", int, None, minimum=1)
    if mode == "reuseaddr" and local_port is None:
        raise bad('bind "reuseaddr" needs argument "port" (the local port to share)')
    rate = float(arg(args, "rate", float, 0, minimum=0))
    timeout_ms = arg(args, "timeoutMs", float, 60000, minimum=1)
    cto_ms = arg(args, "connectTimeoutMs", float, 5000, minimum=1)
    stop_on_error = arg(args, "stopOnError", bool, True)
    processes = arg(args, "processes", int, None, minimum=1)
    max_attempts = arg(args, "maxAttempts", int, 2 * count, minimum=0)
    sources = set(p["source"] for p in clean if p["source"])
    no_port = mode == "ip-no-port" or (mode == "none" and len(sources) > 1)

    step = ConnectStep(sid)
    register_step(step)
    t0 = time.monotonic()
    deadline = t0 + timeout_ms / 1000.0
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = max(1, soft - FD_MARGIN)
    if processes:
        quotas = [count // processes + (1 if k < count % processes else 0) for k in range(processes)]
    est = att = 0
    errors = {}
    first = None
    per = [0] * len(clean)
    active = list(range(len(clean)))
    rr = 0
    ports = 0
    reason = "count"
    k = 0
    last_emit = 0.0
    end = t0
    try:
        while True:
            if processes:
                if k >= processes:
                    break
                quota = quotas[k]
                if quota == 0:
                    k += 1
                    continue
            else:
                quota = min(cap, count - est)
                if quota <= 0:
                    reason = "count"
                    break
            if step.stopping:
                reason = "released"
                break
            if time.monotonic() >= deadline:
                reason = "timeout"
                break
            if att >= max_attempts:
                reason = "attempts"
                break
            spec = {"pairs": clean, "bind": mode, "noPort": no_port, "localPort": local_port,
                    "connectTimeoutMs": cto_ms, "active": active, "rr": rr, "quota": quota,
                    "deadline": deadline, "rate": rate, "t0": t0, "base": est, "baseAttempted": att,
                    "maxAttempts": max_attempts - att,
                    "stopOnError": stop_on_error}
            w = _forker.spawn(lambda c, r: connect_worker(c, r, spec))
            step.workers.append(w)
            step.current = w
            if step.stopping:
                w.send("stop")
            done = None
            while done is None:
                r, _, _ = select.select([w.rep], [], [], PROGRESS_S)
                if r:
                    for m in w.messages():
                        if m.get("t") == "p":
                            w.count = m["n"]
                        elif m.get("t") == "d":
                            done = m
                    if done is None and w.reader.eof:
                        raise OpError("INTERNAL", "connect worker %d exited unexpectedly (see the agent's stderr)" % w.pid)
                now = time.monotonic()
                if done is None and now - last_emit >= PROGRESS_S:
                    emit({"id": rid, "event": "progress",
                          "data": {"established": est + w.count, "elapsedMs": ms_since(t0)}})
                    last_emit = now
            step.current = None
            end = time.monotonic()
            w.count = done["n"]
            est += done["n"]
            att += done["a"]
            for name, c in done["errors"].items():
                errors[name] = errors.get(name, 0) + c
            if first is None and done["first"] is not None:
                first = done["first"]
            for i, c in enumerate(done["per"]):
                per[i] += c
            active = done["active"]
            rr = done["rr"]
            ports |= int.from_bytes(zlib.decompress(base64.b64decode(done["ports"])), "big")
            reason = done["reason"]
            k += 1
            if reason in ("exhausted", "error", "timeout", "released", "attempts"):
                break
            if reason == "full" and not processes and done["n"] == 0:
                break  # EMFILE/ENFILE with not one connection: more workers won't help (ENFILE)
    except BaseException:
        step.kill()
        unregister_step(step)
        raise
    finally:
        step.current = None
        step.done.set()
    dur = max(end - t0, 1e-6)
    local = None
    if ports:
        # one byte per port number, merged across workers
        marks = ports.to_bytes(65536, "big")
        local = {"min": marks.find(b"\x01"), "max": marks.rfind(b"\x01"), "distinct": marks.count(b"\x01")}
    if first is not None:
        first = dict(first)
        first.pop("pair", None)
    return {
        "established": est,
        "attempted": att,
        "errors": errors,
        "firstError": first,
        "durationMs": int(round(dur * 1000)),
        "workers": len(step.workers),
        "connectsPerSecond": int(round(est / dur)),
        "stopReason": reason,
        "perPair": [dict(p, established=per[i]) for i, p in enumerate(clean)],
        "localPorts": local,
    }


def op_release(rid, args):
    sid = step_id(args)
    with _steps_lock:
        step = _steps.get(sid)
    if step is None:
        raise bad('no open listen or connect with id "%s"' % sid)
    closed = step.release(time.monotonic() + 60, bool(args.get("abort", False)))
    unregister_step(step)
    return {"closed": closed}


def op_snapshot(rid, args):
    with _steps_lock:
        steps = list(_steps.values())
    pids = _forker.all_pids()
    fds = count_fds("self") + sum(count_fds(p) for p in pids)
    held = {}
    for s in steps:
        held[s.sid] = {"kind": s.kind, "open": s.open_count(), "workers": len(s.workers)}
    return {"meminfo": meminfo(), "slab": slabinfo(), "sockstat": sockstat(), "fds": fds,
            "processes": 1 + len(pids), "held": held}


def op_restore(rid, args):
    undone, problems = journal_restore()
    return {"undone": undone, "problems": problems}


def op_restore_journal(rid, args):
    path = os.path.abspath(arg(args, "journal", str))
    j = _journal
    with j.lock:
        if j.path == path:
            undone, problems = journal_restore()
            return {"undone": undone, "problems": problems}
    lock_path = path + ".lock"
    fd = take_lock(lock_path, "restoreJournal by agent pid %d" % os.getpid())
    try:
        entries, problems = journal_read(path)
        undone, p2 = undo(entries)
        problems += p2
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            problems.append("remove %s: %s" % (path, e.strerror))
    finally:
        drop_lock(lock_path, fd)
    return {"undone": undone, "problems": problems}


# ---------------------------------------------------------------- lifetime

_cleanup_lock = threading.Lock()
_cleaned = []


def cleanup():
    """Close everything, kill every worker, undo the journal, drop the lock. Idempotent."""
    with _cleanup_lock:
        if _cleaned:
            return _cleaned[0]
        with _steps_lock:
            steps = list(_steps.values())
            _steps.clear()
        for s in steps:
            try:
                s.kill()
            except Exception as e:
                log("kill %s: %s" % (s.sid, e))
        for pid in _forker.all_pids():  # anything still forked (a worker mid-spawn)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        undone, problems = [], []
        j = _journal
        if j.lock.acquire(timeout=10):
            try:
                undone, problems = journal_restore()
                if j.lock_fd is not None:
                    drop_lock(j.lock_path, j.lock_fd)
                    j.lock_fd = None
            finally:
                j.lock.release()
        else:
            problems.append("journal busy: not restored")
        for p in problems:
            log("restore: " + p)
        _cleaned.append((undone, problems))
        return undone, problems


OPS = {
    # name: (handler, runs in its own thread)
    "hello": (op_hello, False),
    "facts": (op_facts, True),
    "begin": (op_begin, False),
    "sysctlGet": (op_sysctl_get, False),
    "sysctlSet": (op_sysctl_set, False),
    "addrAdd": (op_addr_add, False),
    "nofile": (op_nofile, False),
    "listen": (op_listen, False),
    "connect": (op_connect, True),
    "release": (op_release, True),
    "snapshot": (op_snapshot, True),
    "restore": (op_restore, True),
    "restoreJournal": (op_restore_journal, True),
}


def run_op(rid, fn, args):
    after = None
    try:
        res = fn(rid, args)
        if isinstance(res, Reply):
            res, after = res.result, res.after
        emit({"id": rid, "ok": True, "result": res})
    except OpError as e:
        emit({"id": rid, "ok": False, "error": {"code": e.code, "message": e.message}})
    except OSError as e:
        emit({"id": rid, "ok": False, "error": {"code": errname(e.errno), "message": str(e)}})
    except Exception:
        tb = traceback.format_exc()
        log(tb)
        last = tb.strip().splitlines()[-1]
        emit({"id": rid, "ok": False, "error": {"code": "INTERNAL", "message": last}})
    if after is not None:
        after()


def handle(line):
    try:
        req = json.loads(line.decode("utf-8"))
    except ValueError as e:
        emit({"id": None, "ok": False, "error": {"code": "BAD_REQUEST", "message": "not a JSON line: %s" % e}})
        return
    if not isinstance(req, dict):
        emit({"id": None, "ok": False, "error": {"code": "BAD_REQUEST", "message": "a request must be a JSON object"}})
        return
    rid = req.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int):
        emit({"id": rid if isinstance(rid, (str, int)) else None, "ok": False,
              "error": {"code": "BAD_REQUEST", "message": 'a request needs an integer "id"'}})
        return
    op = req.get("op")
    args = req.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        emit({"id": rid, "ok": False, "error": {"code": "BAD_REQUEST", "message": '"args" must be an object'}})
        return
    if op == "shutdown":
        undone, problems = cleanup()
        emit({"id": rid, "ok": True, "result": {"undone": undone, "problems": problems}})
        os._exit(0)
    entry = OPS.get(op)
    if entry is None:
        emit({"id": rid, "ok": False, "error": {"code": "BAD_REQUEST", "message": "unknown op %s" % json.dumps(op)}})
        return
    fn, threaded = entry
    if threaded:
        threading.Thread(target=run_op, args=(rid, fn, args), name="op-%d" % rid, daemon=True).start()
    else:
        run_op(rid, fn, args)


def _on_signal(signum, frame):
    raise Terminate()


def main():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)
    _forker.start()
    emit({"event": "ready", "data": {"version": VERSION, "pid": os.getpid()}})
    stdin = sys.stdin.buffer
    code = 0
    try:
        while True:
            line = stdin.readline()
            if not line:
                break  # the controller is gone (or done): leave nothing behind
            if line.strip():
                handle(line)
    except Terminate:
        pass
    except BaseException:
        log(traceback.format_exc())
        code = 1
    finally:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        cleanup()
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


if __name__ == "__main__":
    main()
