"""Connection tracking in this network namespace: {"count": entries, "max": nf_conntrack_max},
empty when the kernel has no conntrack (no /proc/sys/net/netfilter/nf_conntrack_count)."""

from ..procfs import read_text

NAME = "conntrack"
COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
MAX = "/proc/sys/net/netfilter/nf_conntrack_max"


def parse(text):
    """The two files' text one after the other ("COUNT\\nMAX\\n")."""
    p = text.split()
    if len(p) < 2:
        return {}
    try:
        return {"count": int(p[0]), "max": int(p[1])}
    except ValueError:
        return {}


def sample():
    try:
        return parse(read_text(COUNT) + "\n" + read_text(MAX))
    except OSError:
        return {}
