"""The host journal: every provisioning change is appended (and fsynced)
before it is made, so it can be undone newest first by this agent, by this
agent when the controller is lost, or by `lab restore` after a crash. One
flock'ed lock file beside it says who holds the host."""

import errno
import fcntl
import json
import os
import threading

from .addresses import ip_address
from .errors import OpError, bad, sys_error
from .procfs import read_text, sysctl_write
from .util import write_all


class Journal:
    """This agent's journal (after begin): its path and the lock it holds."""

    def __init__(self):
        self.lock = threading.RLock()
        self.path = None
        self.lock_path = None
        self.lock_fd = None
        self.holder = None


JOURNAL = Journal()


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


def parse_journal(text, path):
    """(entries, problems) from a journal's text: one JSON object a line; a torn line is a problem, not an error."""
    entries, problems = [], []
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


def journal_read(path):
    try:
        text = read_text(path)
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], ["read %s: %s" % (path, e.strerror)]
    return parse_journal(text, path)


def journal_append(entry):
    j = JOURNAL
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
    j = JOURNAL
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


def undo_entry(e):
    """Put back what one journal entry changed; OpError when it cannot."""
    kind = e.get("kind")
    if kind == "sysctl":
        sysctl_write(e["name"], e["old"])
    elif kind == "address":
        ip_address("del", e["address"], int(e["prefix"]), e["device"])
    elif kind == "nft-table":
        nft_delete_table(e["family"], e["table"])
    else:
        raise OpError("BAD_REQUEST", "unknown journal entry kind %s" % json.dumps(kind))


def nft_delete_table(family, table):
    """Remove an nftables table the agent added; one already gone is no problem."""
    import subprocess

    try:
        r = subprocess.run(["nft", "delete", "table", family, table], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.SubprocessError) as ex:
        raise OpError("EIO", "nft delete table %s %s: %s" % (family, table, ex))
    msg = r.stderr.decode("utf-8", "replace").strip()
    if r.returncode != 0 and "No such file" not in msg:
        raise OpError("EIO", "nft delete table %s %s: %s" % (family, table, msg))


def undo(entries, undo_one=undo_entry):
    """Undo entries newest first; (undone, problems), one entry's failure does not stop the rest."""
    undone, problems = [], []
    for e in reversed(entries):
        try:
            undo_one(e)
            undone.append(e)
        except OpError as ex:
            problems.append(ex.message)
        except Exception as ex:
            problems.append("undo %s: %s" % (json.dumps(e), ex))
    return undone, problems


def undo_file(path):
    """Undo a journal file and remove it: (undone, problems)."""
    entries, problems = journal_read(path)
    undone, p2 = undo(entries)
    problems += p2
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        problems.append("remove %s: %s" % (path, e.strerror))
    return undone, problems


def journal_restore():
    """Undo this agent's journal, newest first, and remove it. The lock stays held."""
    j = JOURNAL
    with j.lock:
        if j.path is None:
            return [], []
        return undo_file(j.path)
