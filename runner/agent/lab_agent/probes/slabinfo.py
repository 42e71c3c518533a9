"""/proc/slabinfo as {cache: {activeObjs, numObjs, objSize}}; empty when unreadable (it needs root)."""

import os

from ..procfs import read_text

NAME = "slab"


def parse(text):
    out = {}
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


def sample():
    try:
        return parse(read_text("/proc/slabinfo"))
    except OSError:
        return {}


SYS_SLAB = "/sys/kernel/slab"


def aliases(listed, root=SYS_SLAB):
    """{merged cache: the cache /proc/slabinfo lists its objects under}.

    SLUB merges caches of one object size and flags (tcp_bind_bucket into the
    128-byte cache slabinfo calls eventpoll_epi on 6.18); /sys/kernel/slab
    keeps a symlink per name to the merged cache, and slabinfo lists it once,
    under one of those names. `listed`: the names slabinfo lists."""
    try:
        names = os.listdir(root)
    except OSError:
        return {}
    target = {}
    for n in names:
        # Each name is a directory or a symlink to one beside it (":a-0000128"):
        # one readlink, not realpath's walk of every component (hundreds of names).
        p = os.path.join(root, n)
        try:
            target[n] = os.path.normpath(os.path.join(root, os.readlink(p)))
        except OSError:  # not a symlink: the cache itself
            target[n] = p
    carrier = {}
    for n in listed:
        t = target.get(n)
        if t is not None:
            carrier.setdefault(t, n)
    out = {}
    for n, t in target.items():
        c = carrier.get(t)
        if c is not None and c != n and n not in listed:
            out[n] = c
    return out
