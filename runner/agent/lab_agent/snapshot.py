"""snapshot: every registered probe (probes/), plus what the agent itself holds."""

from .probes import sample_all
from .procfs import count_fds
from .steps import open_steps
from .workers import FORKER


def op_snapshot(rid, args):
    steps = open_steps()
    pids = FORKER.all_pids()
    out = sample_all()
    out["fds"] = count_fds("self") + sum(count_fds(p) for p in pids)
    out["processes"] = 1 + len(pids)
    out["held"] = dict((s.sid, {"kind": s.kind, "open": s.open_count(), "workers": len(s.workers)}) for s in steps)
    return out
