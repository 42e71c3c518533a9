"""The agent's life: the ready line, the stdin loop, and cleanup on EOF, a
signal or shutdown (every worker killed, the journal undone, the lock dropped)."""

import os
import signal
import sys
import threading

from . import VERSION
from .dispatch import MAX_LINE_BYTES, SHUTDOWN, dispatch, parse_request
from .errors import Terminate
from .steps import take_all_steps
from .util import emit, log

_cleanup_lock = threading.Lock()
_cleaned = []


def cleanup():
    """Close everything, kill every worker, undo the journal, drop the lock. Idempotent."""
    with _cleanup_lock:
        if _cleaned:
            return _cleaned[0]
        for s in take_all_steps():
            try:
                s.kill()
            except Exception as e:
                log("kill %s: %s" % (s.sid, e))
        # Modules load with their first op (dispatch.py): one never loaded holds nothing.
        workers = sys.modules.get(__package__ + ".workers")
        for pid in workers.FORKER.all_pids() if workers else ():  # anything still forked (a worker mid-spawn)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        undone, problems = [], []
        journal = sys.modules.get(__package__ + ".journal")  # not loaded: no op changed the host
        if journal is not None:
            j = journal.JOURNAL
            if j.lock.acquire(timeout=10):
                try:
                    undone, problems = journal.journal_restore()
                    if j.lock_fd is not None:
                        journal.drop_lock(j.lock_path, j.lock_fd)
                        j.lock_fd = None
                finally:
                    j.lock.release()
            else:
                problems.append("journal busy: not restored")
        for p in problems:
            log("restore: " + p)
        _cleaned.append((undone, problems))
        return undone, problems


def read_line(stream):
    """The next line of stream, or b"" at EOF. A line over MAX_LINE_BYTES is
    read to its end and dropped, and comes back as its first MAX_LINE_BYTES + 1
    bytes, which parse_request refuses by length: memory stays bounded."""
    line = stream.readline(MAX_LINE_BYTES + 1)
    if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
        return line
    while True:
        rest = stream.readline(MAX_LINE_BYTES)
        if not rest or rest.endswith(b"\n"):
            return line


def handle(line):
    parsed = parse_request(line)
    if isinstance(parsed, dict):
        emit(parsed)
        return
    rid, op, args = parsed
    if op == SHUTDOWN:
        undone, problems = cleanup()
        emit({"id": rid, "ok": True, "result": {"undone": undone, "problems": problems}})
        os._exit(0)
    dispatch(rid, op, args)


def prepare_helper():
    """Compile (or find) the C connect/accept helper before the first connect or
    listen needs it; then prune what no agent used for a month (cache.py)."""
    from . import cache, fastconn

    # Its own zipapp and tree, used now; until then what names them in its command line keeps them (cache.in_use).
    directory, mine = cache.own_entries(sys.argv[0])
    for p in mine:
        cache.mark_used(p)
    path, _ = fastconn.helper()
    if directory is not None:
        removed = cache.prune(directory, keep=mine + ((path,) if path else ()))
        if removed:
            log("pruned %d entries no agent used for %d days from %s: %s"
                % (len(removed), cache.PRUNE_AFTER_S // 86400, directory, ", ".join(removed)))


def _on_signal(signum, frame):
    raise Terminate()


def main():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)
    emit({"event": "ready", "data": {"version": VERSION, "pid": os.getpid()}})
    # After the ready line: the first requests need not wait for it.
    threading.Thread(target=prepare_helper, name="fastconn", daemon=True).start()
    stdin = sys.stdin.buffer
    code = 0
    try:
        while True:
            line = read_line(stdin)
            if not line:
                break  # the controller is gone (or done): leave nothing behind
            if line.strip():
                handle(line)
    except Terminate:
        pass
    except BaseException:
        import traceback

        log(traceback.format_exc())
        code = 1
    finally:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        cleanup()
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)
