"""The artifact directory (/var/tmp/lab-agent) kept from growing without end.
Every agent version and every build of the C helper leaves an entry named by
its content hash, so a host that runs lab nightly across upgrades would
collect one of each forever. Each agent marks what it uses as used now (its
zipapp, the unpacked tree beside it, the helper), and once it is ready removes
what no agent has used for PRUNE_AFTER_S, and temporaries older than a day
(an upload, unpacking or build cut short). An older agent of another run that
is still at work marked its own entries when it started, so they stay."""

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
    """The agent's zipapp and unpacked tree when it runs as <dir>/agent-<hash>.pyz,
    with their directory; (None, ()) when it runs from its sources."""
    pyz = os.path.abspath(argv0)
    if not _ENTRY.match(os.path.basename(pyz)) or not pyz.endswith(".pyz"):
        return None, ()
    return os.path.dirname(pyz), (pyz, pyz[:-4] + ".d")


def prune(directory, keep=(), now=None):
    """Remove the hash-named entries of directory not used for PRUNE_AFTER_S and
    temporaries older than TEMP_AFTER_S, never those in keep; returns the names
    removed. Anything else in the directory is left alone."""
    now = time.time() if now is None else now
    keep = {os.path.basename(k) for k in keep}
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
