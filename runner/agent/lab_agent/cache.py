"""The artifact directory (/var/tmp/lab-agent) kept from growing without end.
Every agent version and every build of the C helper leaves an entry named by
its content hash, so a host that runs lab nightly across upgrades would
collect one of each forever. Once ready, each agent marks what it uses as
used now (its zipapp, the unpacked tree beside it, the helper; the controller
marks this machine's copy when it finds it installed) and removes what no
agent has used for PRUNE_AFTER_S, and temporaries older than a day (an
upload, unpacking or build cut short). What a running process names in its
command line (an agent of another run, however old its version, or its
helper; this agent too, before it marks its own) is never removed."""

import os
import re
import time

PRUNE_AFTER_S = 30 * 86400
TEMP_AFTER_S = 86400

_HASHED = r"(?:agent-[0-9a-f]{16}\.(?:pyz|d)|fastconn-[0-9a-f]{16})"
_ENTRY = re.compile(r"^%s$" % _HASHED)
_TEMP = re.compile(r"^%s\.[0-9a-f]+\.tmp(?:\.c)?$" % _HASHED)


def mark_used(path):
    """Set path's modification time to now: what prune() reads as its last use."""
    try:
        os.utime(path, None)
    except OSError:
        pass


def own_entries(argv0):
    """The agent's zipapp and unpacked tree, with their directory, when it runs as
    <dir>/agent-<hash>.pyz or <dir>/agent-<hash>.d/__main__.py (how an SSH host
    starts an installed one); (None, ()) when it runs from its sources."""
    path = os.path.abspath(argv0)
    if os.path.basename(path) == "__main__.py":
        path = os.path.dirname(path)
    name = os.path.basename(path)
    if not _ENTRY.match(name) or not name.startswith("agent-"):
        return None, ()
    base = path[: -len(".pyz")] if name.endswith(".pyz") else path[: -len(".d")]
    return os.path.dirname(path), (base + ".pyz", base + ".d")


def in_use(directory):
    """Names of directory's entries that a running process names in its command line
    (an agent of another run, old or new, or its C helper): never pruned, whatever
    their age says."""
    prefix = os.path.join(directory, "").encode()
    names = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return names
    for pid in pids:
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        for a in args:
            if a.startswith(prefix):
                names.add(a[len(prefix):].split(b"/")[0].decode("utf-8", "replace"))
    return names


def prune(directory, keep=(), now=None):
    """Remove the hash-named entries of directory not used for PRUNE_AFTER_S and
    temporaries older than TEMP_AFTER_S, never those in keep or in use by a
    running process; returns the names removed. Anything else in the directory
    is left alone."""
    now = time.time() if now is None else now
    keep = {os.path.basename(k) for k in keep} | in_use(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in sorted(names):
        if name in keep:
            continue
        if _ENTRY.match(name):
            limit = PRUNE_AFTER_S
        elif _TEMP.match(name):
            limit = TEMP_AFTER_S
        else:
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
            if now - st.st_mtime < limit:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                import shutil

                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(name)
        except OSError:
            pass  # gone already (another agent pruned it), or not ours to remove
    return removed
