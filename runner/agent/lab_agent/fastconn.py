"""The C connect/accept helper (fastconn.c, shipped in this package): compiled
on the host at first use where a C compiler is, cached by source hash, and
started as a worker (posix_spawn from the agent's forker thread) in place of the Python loop. It speaks the workers'
protocol on the same two pipes, so the agent treats both alike. Where there is
no compiler (or it fails), the Python workers are the fallback.

Why: the per-connection loops are the hot path of a large ramp. The Python
loop paid for the interpreter and for the garbage collector walking every held
socket object; measured side by side (bench/ramp-pairs.ts) the C loop keeps up
with a minimal C client and server.
"""

import os
import threading

from .util import log

# Where compiled helpers are kept, one file per source hash (beside the uploaded agent).
CACHE_DIR = os.environ.get("LAB_AGENT_CACHE", "/var/tmp/lab-agent")
# The compiler; LAB_AGENT_CC lets a test stand for a host without one.
CC = os.environ.get("LAB_AGENT_CC", "cc")

ENGINES = ("auto", "c", "python")

_state = {"done": False, "path": None, "problem": None}
_lock = threading.Lock()


# Imports stay inside the functions that need them: the agent checks for the
# helper at every start, and hashlib (OpenSSL) and subprocess cost more
# to import than the check itself.


def _source():
    """fastconn.c, from the zipapp or a directory alike (what pkgutil.get_data does, without importing it)."""
    try:
        return __loader__.get_data(os.path.join(os.path.dirname(__file__), "fastconn.c"))
    except (OSError, AttributeError) as e:
        raise OSError("fastconn.c is not in the agent package: %s" % e)


def _digest(data):
    """The first 16 hex digits of data's SHA-256: Python's built-in SHA-256 where it
    has one (_sha2 from 3.12, _sha256 before), hashlib's (OpenSSL) otherwise."""
    try:
        from _sha2 import sha256
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()[:16]


def _on_path(name):
    """Whether an executable called name is on PATH (shutil.which's answer)."""
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        p = os.path.join(d or ".", name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return True
    return False


def helper():
    """(path, None) of the compiled helper, or (None, why not). Compiles once per agent."""
    with _lock:
        if not _state["done"]:
            _state["done"] = True
            try:
                _state["path"] = _build()
            except Exception as e:  # any failure means: use the Python workers
                _state["problem"] = str(e)
                log("fastconn: using the Python workers: %s" % e)
        return _state["path"], _state["problem"]


def _build():
    src = _source()
    path = os.path.join(CACHE_DIR, "fastconn-%s" % _digest(src))
    if os.access(path, os.X_OK):
        from .cache import mark_used

        mark_used(path)  # what keeps it from a prune (cache.py)
        return path
    import subprocess

    os.makedirs(CACHE_DIR, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    c_file = tmp + ".c"
    try:
        with open(c_file, "wb") as f:
            f.write(src)
        try:
            r = subprocess.run([CC, "-O2", "-std=gnu99", "-o", tmp, c_file], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            raise OSError("no C compiler (%s): %s" % (CC, e))
        if r.returncode != 0:
            raise OSError("%s failed: %s" % (CC, r.stderr.decode("utf-8", "replace").strip()[-300:]))
        os.rename(tmp, path)  # atomic: a concurrent agent sees the whole file or none
        return path
    finally:
        for p in (tmp, c_file):
            try:
                os.unlink(p)
            except OSError:
                pass


def likely_engine():
    """The engine a connect or listen will run on, without building the helper:
    "c" when it is already built or a compiler is on PATH (the facts' guess for
    the memory check: a C worker is tiny, a Python one holds socket objects)."""
    with _lock:
        if _state["done"]:
            return "c" if _state["path"] else "python"
    try:
        digest = _digest(_source())
    except OSError:
        return "python"
    if os.access(os.path.join(CACHE_DIR, "fastconn-%s" % digest), os.X_OK):
        return "c"
    if os.path.isabs(CC):
        return "c" if os.access(CC, os.X_OK) else "python"
    return "c" if _on_path(CC) else "python"


def choose(engine):
    """The engine a step runs on: (path or None, "c" or "python", why the Python workers)."""
    if engine == "python":
        return None, "python", None
    path, problem = helper()
    if path is None:
        return None, "python", problem
    return path, "c", None


def become(path, argv, fds):
    """In a forked worker, where os.posix_spawn is missing (Python 3.7): become the helper.
    argv holds numbers and addresses the agent validated, never request text run as code."""
    for fd in fds:
        os.set_inheritable(fd, True)
    os.environ["LAB_AGENT_PID"] = str(os.getppid())
    os.execv(path, [path] + [str(a) for a in argv])


def connect_argv(ctrl, rep, spec):
    a = ["connect", ctrl, rep, spec["bind"], int(bool(spec["noPort"])), spec["localPort"] or 0,
         spec["connectTimeoutMs"], spec["quota"], spec["maxAttempts"], repr(spec["deadline"]),
         repr(float(spec["rate"])), repr(spec["t0"]), spec["base"], spec["baseAttempted"],
         int(bool(spec["stopOnError"])), spec.get("send", 0), int(bool(spec.get("park"))), spec["rr"], len(spec["pairs"])]
    for p in spec["pairs"]:
        a += [p.get("source") or "-", p["address"], p["port"]]
    return a + [len(spec["active"])] + list(spec["active"])


def accept_argv(ctrl, rep, lfd, cap, margin, park):
    return ["accept", ctrl, rep, lfd, cap, margin, int(bool(park))]
