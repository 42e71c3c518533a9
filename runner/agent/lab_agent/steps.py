"""The open listen and connect steps, by id, and releasing them."""

import threading
import time

from .args import arg, step_id
from .errors import bad

STEPS = {}
STEPS_LOCK = threading.Lock()

# How long a release waits for workers to close their sockets.
RELEASE_S = 60


def register_step(step):
    with STEPS_LOCK:
        if step.sid in STEPS:
            raise bad('a listen or connect with id "%s" is still open; release it first' % step.sid)
        STEPS[step.sid] = step


def unregister_step(step):
    with STEPS_LOCK:
        if STEPS.get(step.sid) is step:
            del STEPS[step.sid]


def open_steps():
    with STEPS_LOCK:
        return list(STEPS.values())


def take_all_steps():
    """Every open step, now forgotten by the registry (for cleanup)."""
    with STEPS_LOCK:
        steps = list(STEPS.values())
        STEPS.clear()
    return steps


def op_release(rid, args):
    sid = step_id(args)
    abort = arg(args, "abort", bool, False)
    # with abort, the peer is being released at once too: the C helper closes without an RST
    silent = arg(args, "silent", bool, False)
    wait_s = arg(args, "timeoutMs", float, RELEASE_S * 1000, minimum=1) / 1000.0
    with STEPS_LOCK:
        step = STEPS.get(sid)
    if step is None:
        raise bad('no open listen or connect with id "%s"' % sid)
    closed = step.release(time.monotonic() + wait_s, ("drop\nabort" if silent else "abort") if abort else "close")
    unregister_step(step)
    # how many of them the C helper closed through io_uring (fastconn.c, close_fds)
    batched = sum(w.batched for w in step.workers)
    return {"closed": closed, "batched": batched}
