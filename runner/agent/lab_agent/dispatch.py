"""The protocol's request side: one JSON object per line, checked before
anything runs; the op table (name -> handler, whether it runs in its own
thread); replies and errors as protocol lines. See docs/agent-protocol.md."""

import json
import threading

from .errors import OpError, errname
from .util import Reply, emit, log


# Each op's module is imported when the op is first asked for, not at start:
# an agent that provisions a host never pays for the connect and listen code
# (imports were most of the agent's start-up). The imports are written out,
# one function per op: the table stays a fixed table of functions.
def op_hello(rid, args):
    from .facts import op_hello as fn
    return fn(rid, args)


def op_facts(rid, args):
    from .facts import op_facts as fn
    return fn(rid, args)


def op_begin(rid, args):
    from .changes import op_begin as fn
    return fn(rid, args)


def op_sysctl_get(rid, args):
    from .changes import op_sysctl_get as fn
    return fn(rid, args)


def op_sysctl_set(rid, args):
    from .changes import op_sysctl_set as fn
    return fn(rid, args)


def op_addr_add(rid, args):
    from .changes import op_addr_add as fn
    return fn(rid, args)


def op_nofile(rid, args):
    from .changes import op_nofile as fn
    return fn(rid, args)


def op_conntrack(rid, args):
    from .changes import op_conntrack as fn
    return fn(rid, args)


def op_listen(rid, args):
    from .listen import op_listen as fn
    return fn(rid, args)


def op_connect(rid, args):
    from .connect import op_connect as fn
    return fn(rid, args)


def op_release(rid, args):
    from .steps import op_release as fn
    return fn(rid, args)


def op_snapshot(rid, args):
    from .snapshot import op_snapshot as fn
    return fn(rid, args)


def op_files(rid, args):
    from .files import op_files as fn
    return fn(rid, args)


def op_restore(rid, args):
    from .changes import op_restore as fn
    return fn(rid, args)


def op_restore_journal(rid, args):
    from .changes import op_restore_journal as fn
    return fn(rid, args)


# A request line longer than this is refused unread: no op needs more
# (a connect names at most a few thousand pairs).
MAX_LINE_BYTES = 1 << 20

OPS = {
    # name: (handler, runs in its own thread)
    "hello": (op_hello, False),
    "facts": (op_facts, True),
    "begin": (op_begin, False),
    "sysctlGet": (op_sysctl_get, False),
    "sysctlSet": (op_sysctl_set, False),
    "addrAdd": (op_addr_add, False),
    "nofile": (op_nofile, False),
    "conntrack": (op_conntrack, False),
    "listen": (op_listen, False),
    "connect": (op_connect, True),
    "release": (op_release, True),
    "snapshot": (op_snapshot, True),
    "files": (op_files, True),
    "restore": (op_restore, True),
    "restoreJournal": (op_restore_journal, True),
}

# Handled by main itself: it ends the agent.
SHUTDOWN = "shutdown"


def error_line(rid, code, message):
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}


def run_op(rid, fn, args):
    after = None
    try:
        res = fn(rid, args)
        if isinstance(res, Reply):
            res, after = res.result, res.after
        emit({"id": rid, "ok": True, "result": res})
    except OpError as e:
        emit(error_line(rid, e.code, e.message))
    except OSError as e:
        emit(error_line(rid, errname(e.errno), str(e)))
    except Exception:
        import traceback  # only here: importing it costs the agent's start more than it is used

        tb = traceback.format_exc()
        log(tb)
        emit(error_line(rid, "INTERNAL", tb.strip().splitlines()[-1]))
    if after is not None:
        after()


def parse_request(line):
    """(id, op, args) of a request line, or an error line to send back instead.

    Only data is taken from a line: JSON is parsed, never evaluated, and the op
    is looked up in OPS, so no text a request carries is ever run as code."""
    if len(line) > MAX_LINE_BYTES:
        return error_line(None, "BAD_REQUEST", "a request line may hold at most %d bytes" % MAX_LINE_BYTES)
    try:
        req = json.loads(line.decode("utf-8"))
    except ValueError as e:  # also UnicodeDecodeError
        return error_line(None, "BAD_REQUEST", "not a JSON line: %s" % e)
    except RecursionError:
        # "[[[[…" deeper than the parser's stack: refused like any other bad line, and the agent goes on.
        return error_line(None, "BAD_REQUEST", "not a JSON line: nested too deeply")
    if not isinstance(req, dict):
        return error_line(None, "BAD_REQUEST", "a request must be a JSON object")
    rid = req.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int):
        return error_line(rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None, "BAD_REQUEST",
                          'a request needs an integer "id"')
    op = req.get("op")
    args = req.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return error_line(rid, "BAD_REQUEST", '"args" must be an object')
    if op != SHUTDOWN and (not isinstance(op, str) or op not in OPS):
        return error_line(rid, "BAD_REQUEST", "unknown op %s" % json.dumps(op))
    return rid, op, args


def dispatch(rid, op, args):
    """Run a parsed request: short ops inline, long ones on their own thread."""
    fn, threaded = OPS[op]
    if threaded:
        threading.Thread(target=run_op, args=(rid, fn, args), name="op-%d" % rid, daemon=True).start()
    else:
        run_op(rid, fn, args)
