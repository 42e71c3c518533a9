"""/proc/meminfo in KiB by key."""

from ..procfs import read_text

NAME = "meminfo"


def parse(text):
    out = {}
    for line in text.splitlines():
        k, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            try:
                out[k.strip()] = int(parts[0])
            except ValueError:
                pass
    return out


def sample():
    try:
        return parse(read_text("/proc/meminfo"))
    except OSError:
        return {}
