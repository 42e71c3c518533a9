"""files: the two machine-wide ceilings on file descriptors, observed.

ceiling "nr_open": fs.nr_open caps RLIMIT_NOFILE. A forked child finds the
highest nofile setrlimit() accepts (see nofile_ceiling) and the errno one
above it; with nrOpen given, fs.nr_open is set to it for that search only
(journaled) and put back at once.

ceiling "file-max": fs.file-max caps the struct files the whole kernel holds,
for every process without CAP_SYS_ADMIN. A forked child reads fs.file-nr
(files in use), sets fs.file-max to that plus `count` (the parent journaled
the old value first, so a crash is undone too), drops to an unprivileged
user and opens /dev/null until open() fails; the parent puts fs.file-max
back the moment the child is done, on every path. The child can reach at
most twice `count` (its own soft nofile), so a limit that does not bite ends
in EMFILE, never in an unbounded loop. Other processes open and close files
meanwhile: a try they disturbed by more than 2% of count is made again (at
most ATTEMPTS), and the least disturbed is kept, every try reported."""

import errno
import json
import os
import pwd
import resource
import select
import time

from .args import arg
from .errors import OpError, bad, errname
from .journal import JOURNAL, journal_append, journal_pop
from .procfs import read_text, sysctl_read, sysctl_write

CEILINGS = ("nr_open", "file-max")
# The most files a file-max probe may ask for: a few seconds' work at most,
# and a window other processes' opens can live with.
MAX_COUNT = 100000
# The kernel's sysctl_nr_open_max on 64-bit.
NR_OPEN_MAX = 2147483584
# Files the child closes to read fs.file-nr at the limit.
AT_LIMIT_FREE = 32
# A file-max probe is tried again when the rest of the machine opened or
# closed more files than this share of count while it ran (at most ATTEMPTS).
FOREIGN_SHARE = 0.02
ATTEMPTS = 5
# How long the parent waits for a child before killing it.
CHILD_S = 20
# nobody, or this uid when the host has no such user.
FALLBACK_UID = 65534


def file_nr():
    """(allocated, free, max) from /proc/sys/fs/file-nr."""
    parts = read_text("/proc/sys/fs/file-nr").split()
    return int(parts[0]), int(parts[1]), int(parts[2])


def unprivileged_user():
    """(name, uid, gid) of the user the file-max probe drops to."""
    try:
        p = pwd.getpwnam("nobody")
        return p.pw_name, p.pw_uid, p.pw_gid
    except KeyError:
        return "uid %d" % FALLBACK_UID, FALLBACK_UID, FALLBACK_UID


def setrlimit_errno(value):
    """None when setrlimit(RLIMIT_NOFILE, (value, value)) succeeds, else its errno name.

    CPython turns EPERM and EINVAL into ValueError with a fixed message each;
    other errnos come as OSError."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (value, value))
        return None
    except ValueError as e:
        text = str(e)
        if "not allowed to raise" in text:
            return "EPERM"
        if "exceeds maximum" in text:
            return "EINVAL"
        return "EINVAL"
    except OSError as e:
        return errname(e.errno)


def nofile_ceiling():
    """In a child: the highest nofile (soft = hard) setrlimit accepts, and the errno one above it.

    With CAP_SYS_RESOURCE the hard limit may go up and down, so a bisection
    over [hard, 2^31) finds it. Without, a hard limit once lowered cannot be
    raised again, so the search walks down from the current hard limit: a
    refused value changes nothing, and the first one accepted is the ceiling
    (at most `hard` calls of a microsecond or two)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    top = 1 << 31  # above sysctl_nr_open_max: always refused
    if hard == resource.RLIM_INFINITY or hard >= top:
        hard = top - 1
    tries = 1
    if setrlimit_errno(hard + 1) is None:
        # Capable: bisect the range above.
        lo, hi = hard + 1, top
        while hi - lo > 1:
            mid = (lo + hi) // 2
            tries += 1
            if setrlimit_errno(mid) is None:
                lo = mid
            else:
                hi = mid
        how = "bisection above the hard limit %d (CAP_SYS_RESOURCE)" % hard
    else:
        lo = hard
        while lo > 0:
            tries += 1
            if setrlimit_errno(lo) is None:
                break
            lo -= 1
        how = "walk down from the hard limit %d (no CAP_SYS_RESOURCE: a lowered hard limit stays lowered)" % hard
    # One above what was accepted: refused (a capable process is back at lo; one without never left it).
    tries += 1
    return {"reached": lo, "firstError": setrlimit_errno(lo + 1), "tries": tries, "hardBefore": hard, "search": how}


def probe_nr_open(value):
    """Bisect the nofile ceiling, with fs.nr_open set to value (journaled, restored at once) when given."""
    if value is None:
        res = in_child(nofile_ceiling)
        res.update({"ceiling": "nr_open", "nrOpen": int(sysctl_read("fs.nr_open"))})
        return res
    with JOURNAL.lock:
        if JOURNAL.path is None:
            raise bad("begin must come before any change")
        old = sysctl_read("fs.nr_open")
        journal_append({"kind": "sysctl", "name": "fs.nr_open", "old": old})
        restored = False
        t0 = time.monotonic()
        try:
            try:
                sysctl_write("fs.nr_open", str(value))
            except OpError:
                journal_pop()
                restored = True
                raise
            res = in_child(nofile_ceiling)
        finally:
            if not restored:
                sysctl_write("fs.nr_open", old)
                window = int((time.monotonic() - t0) * 1000)
                journal_pop()
    res.update({"ceiling": "nr_open", "nrOpen": value, "nrOpenBefore": int(old),
                "nrOpenAfter": int(sysctl_read("fs.nr_open")), "windowMs": window})
    return res


def file_max_child(count, margin, uid, gid):
    """In the child, as root: read the files in use, set fs.file-max to that plus
    count (the parent journaled the old value and puts it back), drop to
    uid/gid, open /dev/null until it fails; what happened. Reading, setting and
    opening follow each other within a millisecond, so what the rest of the
    machine opens in between is small."""
    limit = count + margin
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
    # Never below what the machine uses now plus what the probe needs.
    allocated = file_nr()[0]
    new = allocated + count
    sysctl_write("fs.file-max", str(new))
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.geteuid() == 0 or os.getuid() == 0:
        raise OpError("EPERM", "could not drop root")
    fds = []
    err = None
    t0 = time.monotonic()
    try:
        while True:
            try:
                fds.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            except OSError as e:
                err = errname(e.errno)
                break
    finally:
        ms = int((time.monotonic() - t0) * 1000)
        opened = len(fds)
        # A few closed, so file-nr can be read at the limit (root's files may take one meanwhile).
        freed = 0
        while fds and freed < AT_LIMIT_FREE:
            os.close(fds.pop())
            freed += 1
        try:
            # Less file-nr's own file, plus the ones just closed.
            at_limit = file_nr()[0] - 1 + freed
        except OSError:
            at_limit = None
        for fd in fds:
            os.close(fd)
    return {"reached": opened, "firstError": err, "allocatedBefore": allocated, "fileMaxSet": new,
            "allocatedAtLimit": at_limit, "openMs": ms, "nofileSoft": limit}


def in_child(fn, *args):
    """Run fn(*args) in a forked child; its JSON-able result (or OpError) comes back over a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            try:
                out = {"ok": fn(*args)}
            except OpError as e:
                out = {"error": [e.code, e.message]}
            except OSError as e:
                out = {"error": [errname(e.errno), str(e)]}
            except BaseException as e:
                out = {"error": ["INTERNAL", repr(e)]}
            data = json.dumps(out).encode("utf-8")
            while data:
                data = data[os.write(w, data):]
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + CHILD_S
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                raise OpError("ETIMEDOUT", "the probe child did not finish in %d s" % CHILD_S)
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    try:
        out = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        raise OpError("INTERNAL", "the probe child died without an answer")
    if "error" in out:
        raise OpError(out["error"][0], out["error"][1])
    return out["ok"]


def file_max_attempt(count, margin, uid, gid):
    """One probe: the child sets fs.file-max and opens; fs.file-max is put back here, on every path."""
    with JOURNAL.lock:
        if JOURNAL.path is None:
            raise bad("begin must come before any change")
        old = sysctl_read("fs.file-max")
        journal_append({"kind": "sysctl", "name": "fs.file-max", "old": old})
        t0 = time.monotonic()
        try:
            res = in_child(file_max_child, count, margin, uid, gid)
        finally:
            # Put back at once; the journal entry goes only once it is back.
            sysctl_write("fs.file-max", old)
            window = int((time.monotonic() - t0) * 1000)
            journal_pop()
    res.update({"fileMaxBefore": int(old), "windowMs": window})
    # The others' files, net, from the child's read to the limit: what the probe could not open.
    if res.get("allocatedAtLimit") is not None:
        # What the kernel let the whole machine add before refusing: count, whoever opened them.
        res["headroom"] = res["allocatedAtLimit"] - res["allocatedBefore"]
        res["foreignFiles"] = res["headroom"] - res["reached"]
    return res


def probe_file_max(count):
    if os.geteuid() != 0:
        raise OpError("EPERM", "the file-max probe sets fs.file-max and drops to an unprivileged user: it needs root")
    name, uid, gid = unprivileged_user()
    # A limit that does not bite ends in EMFILE at twice count, never in an unbounded loop.
    margin = max(64, count)
    attempts = []
    best = None
    while True:
        res = file_max_attempt(count, margin, uid, gid)
        attempts.append(dict((k, res.get(k)) for k in ("reached", "headroom", "firstError", "foreignFiles", "windowMs")))
        res["disturbance"] = abs(res["foreignFiles"]) if res.get("foreignFiles") is not None else float("inf")
        if best is None or res["disturbance"] < best["disturbance"]:
            best = res
        if res["disturbance"] <= max(AT_LIMIT_FREE, FOREIGN_SHARE * count) or len(attempts) >= ATTEMPTS:
            break
        time.sleep(0.2)
    res = best
    del res["disturbance"]
    res.update({"ceiling": "file-max", "count": count, "fileMaxAfter": int(sysctl_read("fs.file-max")), "user": name,
                "uid": uid, "attempts": attempts})
    return res


def op_files(rid, args):
    ceiling = arg(args, "ceiling", str)
    if ceiling not in CEILINGS:
        raise bad('argument "ceiling" must be one of %s, got %s' % (", ".join(CEILINGS), json.dumps(ceiling)))
    if ceiling == "nr_open":
        value = arg(args, "nrOpen", int, None, minimum=64)
        if value is not None and value > NR_OPEN_MAX:
            raise bad('argument "nrOpen" must be at most %d, got %d' % (NR_OPEN_MAX, value))
        return probe_nr_open(value)
    count = arg(args, "count", int, minimum=1)
    if count > MAX_COUNT:
        raise bad('argument "count" must be at most %d, got %d' % (MAX_COUNT, count))
    return probe_file_max(count)
