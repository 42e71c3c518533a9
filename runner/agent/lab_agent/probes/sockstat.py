"""/proc/net/sockstat as {"TCP": {"inuse": …, "tw": …, "mem": …}, "sockets": {"used": …}, …}."""

from ..procfs import read_text

NAME = "sockstat"


def parse(text):
    out = {}
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


def sample():
    try:
        return parse(read_text("/proc/net/sockstat"))
    except OSError:
        return {}
