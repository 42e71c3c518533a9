"""snapshot: every registered probe (probes/), plus what the agent itself holds."""

import time

from . import servers
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
    settle(steps)
    pids = FORKER.all_pids()
    out = sample_all()
    out["fds"] = count_fds("self") + sum(count_fds(p) for p in pids)
    out["processes"] = 1 + len(pids)
    # Counting ESTABLISHED sockets per port reads /proc/net/tcp, a line per socket: at a
    # million sockets that is 150 MB of text and far past the request's bound (two-million's
    # held snapshot timed out). Above ESTABLISHED_MAX_SOCKETS it is left out; sockstat has the total.
    inuse = out.get("sockstat", {}).get("TCP", {}).get("inuse", 0)
    if ports and inuse <= ESTABLISHED_MAX_SOCKETS:
        out["established"] = listeners.established(ports)
    out["held"] = dict((s.sid, held_entry(s)) for s in steps)
    return out


# Above this many TCP sockets in the namespace a snapshot does not count ESTABLISHED per port.
ESTABLISHED_MAX_SOCKETS = 100000

# How long a snapshot waits for the lab's servers to take what their queues hold.
SETTLE_S = 20
SETTLE_QUIET_S = 0.3


def settle(steps):
    """Before a snapshot of a host with `server` listen steps: wait (at most SETTLE_S)
    until each one's accept queue is empty and its count has stopped moving, so the
    snapshot sees every connection the kernel completed held the server's way (a
    thread per connection takes a while to start)."""
    servers_ = [s for s in steps if getattr(s, "server", None)]
    if not servers_:
        return
    ports = set(s.sock.getsockname()[1] for s in servers_)
    deadline = time.monotonic() + SETTLE_S
    last = None
    while time.monotonic() < deadline:
        queued = sum(l.get("queue", 0) for l in listeners.sample() if l.get("port") in ports)
        now = tuple(s.open_count() for s in servers_)
        if queued == 0 and now == last:
            return
        last = now
        time.sleep(SETTLE_QUIET_S)


def held_entry(s):
    """What an open step holds; for a listen step with `server`, also what its server
    processes use now (threads, VmSize, VmRSS) and used before their first accept."""
    e = {"kind": s.kind, "open": s.open_count(), "workers": len(s.workers)}
    if getattr(s, "server", None):
        now, base = {}, {}
        for w in s.workers:
            for k, v in servers.status(w.pid).items():
                now[k] = now.get(k, 0) + v
            for k, v in (getattr(w, "base", None) or {}).items():
                if isinstance(v, int) and not isinstance(v, bool):
                    base[k] = base.get(k, 0) + v
        e["server"] = {"mode": s.server, "stackBytes": s.stack, "now": now, "base": base,
                       "oneArena": all((getattr(w, "base", None) or {}).get("oneArena") for w in s.workers)}
    return e
