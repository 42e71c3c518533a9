"""/proc/slabinfo as {cache: {activeObjs, numObjs, objSize}}; empty when unreadable (it needs root)."""

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
