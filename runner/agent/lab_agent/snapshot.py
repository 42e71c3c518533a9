"""snapshot: every registered probe (probes/), plus what the agent itself holds."""

from .args import arg
from .errors import bad
from .probes import listeners, sample_all
from .procfs import count_fds
from .steps import open_steps
from .workers import FORKER


def op_snapshot(rid, args):
    ports = arg(args, "ports", list, [])
    if len(ports) > 64 or not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports):
        raise bad('argument "ports" must be at most 64 ports (1..65535)')
    steps = open_steps()
    pids = FORKER.all_pids()
    out = sample_all()
    out["fds"] = count_fds("self") + sum(count_fds(p) for p in pids)
    out["processes"] = 1 + len(pids)
    if ports:
        out["established"] = listeners.established(ports)
    out["held"] = dict((s.sid, {"kind": s.kind, "open": s.open_count(), "workers": len(s.workers)}) for s in steps)
    return out
