"""The protocol's request side: one JSON object per line, checked before
anything runs; the op table (name -> handler, whether it runs in its own
thread); replies and errors as protocol lines. See docs/agent-protocol.md."""

import json
import threading
import traceback

from .changes import op_addr_add, op_begin, op_conntrack, op_nofile, op_restore, op_restore_journal, op_sysctl_get, op_sysctl_set
from .connect import op_connect
from .errors import OpError, errname
from .facts import op_facts, op_hello
from .files import op_files
from .listen import op_listen
from .snapshot import op_snapshot
from .steps import op_release
from .util import Reply, emit, log

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
