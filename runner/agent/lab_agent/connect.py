"""connect: open connections from workers (one at a time, each picking up the
pairs and round-robin position the last one left), then hold them until release."""

import base64
import errno
import json
import os
import resource
import select
import socket
import struct
import threading
import time
import zlib

from . import fastconn
from .args import arg, ipv4, step_id
from .errors import OpError, bad, errname
from .steps import register_step, unregister_step
from .probes import meminfo
from .util import LineReader, emit, ms_since, wsend
from .workers import FORKER, close_held, ctrl_words, sockets_per_worker

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
EXHAUSTED = (errno.EADDRNOTAVAIL, errno.EADDRINUSE)
FULL = (errno.EMFILE, errno.ENFILE)
PROGRESS_S = 0.2  # agent -> controller progress events, at most this often
WORKER_PROGRESS_S = 0.1  # worker -> agent
BIND_MODES = ("none", "ip", "ip-no-port", "reuseaddr")
# The most bytes a connect may write on each connection it opens (argument "send"):
# the data waits unread in the peer's receive queue, count times over.
MAX_SEND_BYTES = 65536


# ---------------------------------------------------------------- the worker (child side)


def connect_worker(ctrl, rep, spec):
    """Open up to spec.quota connections, report, then hold them until "close" or pipe EOF."""
    pairs = spec["pairs"]
    mode = spec["bind"]
    AF, ST = socket.AF_INET, socket.SOCK_STREAM
    SOL, SNDTIMEO, REUSE = socket.SOL_SOCKET, socket.SO_SNDTIMEO, socket.SO_REUSEADDR
    IPP = socket.IPPROTO_IP
    new_socket = socket.socket
    # A blocking connect() gives up after SO_SNDTIMEO on Linux (returning EINPROGRESS):
    # one setsockopt instead of a non-blocking connect plus poll.
    cto = spec["connectTimeoutMs"] / 1000.0
    tv = struct.pack("@ll", int(cto), int((cto - int(cto)) * 1e6))
    no_port = spec["noPort"]
    reuse = mode == "reuseaddr"
    dsts = [(p["address"], p["port"]) for p in pairs]
    if mode == "reuseaddr":
        binds = [(p.get("source") or "0.0.0.0", spec["localPort"]) for p in pairs]
    elif mode in ("ip", "ip-no-port") or no_port:
        binds = [(p.get("source") or "0.0.0.0", 0) for p in pairs]
    else:
        binds = [None] * len(pairs)
    active = list(spec["active"])
    rr = spec["rr"]
    quota = spec["quota"]
    max_att = spec["maxAttempts"]
    deadline = spec["deadline"]
    rate = spec["rate"]
    t0 = spec["t0"]
    base = spec["base"]
    base_att = spec["baseAttempted"]
    stop_on_error = spec["stopOnError"]
    payload = b"x" * spec.get("send", 0)
    sent = 0
    per = [0] * len(pairs)
    ports = bytearray(65536)
    held = []
    errors = {}
    first = None
    est = 0
    att = 0
    reason = "count"
    creader = LineReader(ctrl)
    poller = select.poll()
    poller.register(ctrl, select.POLLIN)
    monotonic = time.monotonic
    last_prog = monotonic()
    next_poll = 0
    next_time = 0.0
    while est < quota:
        now = monotonic()
        if now >= deadline:
            reason = "timeout"
            break
        if att >= next_poll or now >= next_time:  # every 64 attempts, or 50 ms for slow ones
            next_poll = att + 64
            next_time = now + 0.05
            if poller.poll(0):
                words = ctrl_words(creader)
                if creader.eof or "stop" in words or "close" in words:
                    reason = "released"
                    break
            if now - last_prog >= WORKER_PROGRESS_S:
                wsend(rep, {"t": "p", "n": est, "a": att})
                last_prog = now
        if rate:
            target = t0 + (base_att + att) / rate
            if target > now:
                time.sleep(min(target - now, max(0.0, deadline - now)))
                continue
        if not active:
            reason = "exhausted"
            break
        if att >= max_att:
            reason = "attempts"
            break
        i = active[rr % len(active)]
        att += 1
        s = None
        try:
            s = new_socket(AF, ST)
            s.setsockopt(SOL, SNDTIMEO, tv)
            if reuse:
                s.setsockopt(SOL, REUSE, 1)
            elif no_port:
                s.setsockopt(IPP, IP_BIND_ADDRESS_NO_PORT, 1)
            b = binds[i]
            if b is not None:
                s.bind(b)
            code = s.connect_ex(dsts[i])
            if code == 0 and payload:
                # Blocking, bounded by SO_SNDTIMEO: a short count means the time ran out.
                n = s.send(payload)
                sent += n
                if n < len(payload):
                    code = errno.ETIMEDOUT
        except OSError as e:
            code = e.errno or errno.EIO
        if code == 0:
            held.append(s)
            est += 1
            per[i] += 1
            rr += 1
            ports[s.getsockname()[1]] = 1
            continue
        if s is not None:
            s.close()
        if code == errno.EINPROGRESS or code == errno.EAGAIN:
            code = errno.ETIMEDOUT  # SO_SNDTIMEO ran out
        name = errname(code)
        errors[name] = errors.get(name, 0) + 1
        if first is None:
            first = {"errno": name, "message": os.strerror(code), "after": base + est, "pair": i}
        if code in EXHAUSTED:
            active.remove(i)  # this 4-tuple space is used up; rr now points at the next pair
            continue
        if code in FULL and not stop_on_error:
            reason = "full"  # no fd left in this process: the agent may start another worker
            break
        if stop_on_error:
            reason = "error"
            break
        rr += 1
    wsend(rep, {"t": "d", "n": est, "a": att, "sent": sent, "errors": errors, "first": first, "per": per,
                "active": active, "rr": rr, "reason": reason,
                "ports": base64.b64encode(zlib.compress(bytes(ports))).decode("ascii")})
    del ports
    hold(ctrl, creader, rep, held)


def hold(ctrl, creader, rep, held):
    """Hold sockets (objects or raw fds) until "close" (close them, report) or pipe EOF (exit)."""
    while True:
        select.select([ctrl], [], [])
        words = ctrl_words(creader)
        if "close" in words or "abort" in words:
            abort = "abort" in words
            n = 0
            for s in held:
                n += close_held(s, abort)
            wsend(rep, {"t": "c", "closed": n})
            os._exit(0)
        if creader.eof:
            os._exit(0)


# ---------------------------------------------------------------- the step (agent side)


class ConnectStep:
    kind = "connect"

    def __init__(self, sid):
        self.sid = sid
        self.workers = []
        self.current = None  # the worker now connecting
        self.stopping = False
        self.done = threading.Event()

    def open_count(self):
        return sum(w.count for w in self.workers)

    def release(self, deadline, abort=False):
        self.stopping = True
        cur = self.current
        if cur is not None:
            cur.send("stop")
        self.done.wait(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            w.send("abort" if abort else "close")
        return sum(w.wait_closed(deadline) for w in self.workers)

    def kill(self):
        self.stopping = True
        for w in self.workers:
            w.kill()


def connect_pairs(pairs):
    """The checked pairs argument: [{source, address, port}]."""
    if not pairs:
        raise bad('argument "pairs" must not be empty')
    clean = []
    for n, p in enumerate(pairs):
        if not isinstance(p, dict):
            raise bad("pairs[%d] must be an object {source, address, port}" % n)
        src = p.get("source")
        if src is not None:
            ipv4(src, "pairs[%d].source" % n)
        dst = ipv4(p.get("address"), "pairs[%d].address" % n)
        port = arg(p, "port", int, minimum=1)
        if port > 65535:
            raise bad("pairs[%d].port must be 1..65535" % n)
        clean.append({"source": src, "address": dst, "port": port})
    return clean


def worker_quotas(count, processes):
    """count split as evenly as it goes over a fixed number of worker processes, the first ones taking the rest."""
    return [count // processes + (1 if k < count % processes else 0) for k in range(processes)]


def op_connect(rid, args):
    sid = step_id(args)
    clean = connect_pairs(arg(args, "pairs", list))
    count = arg(args, "count", int, minimum=0)
    mode = arg(args, "bind", str, "none")
    if mode not in BIND_MODES:
        raise bad('argument "bind" must be none, ip, ip-no-port or reuseaddr, got %s' % json.dumps(mode))
    local_port = arg(args, "port", int, None, minimum=1)
    if local_port is not None and local_port > 65535:
        raise bad('argument "port" must be 1..65535, got %d' % local_port)
    if mode == "reuseaddr" and local_port is None:
        raise bad('bind "reuseaddr" needs argument "port" (the local port to share)')
    rate = float(arg(args, "rate", float, 0, minimum=0))
    timeout_ms = arg(args, "timeoutMs", float, 60000, minimum=1)
    cto_ms = arg(args, "connectTimeoutMs", float, 5000, minimum=1)
    stop_on_error = arg(args, "stopOnError", bool, True)
    processes = arg(args, "processes", int, None, minimum=1)
    max_attempts = arg(args, "maxAttempts", int, 2 * count, minimum=0)
    send = arg(args, "send", int, 0, minimum=0)
    if send > MAX_SEND_BYTES:
        raise bad('argument "send" must be at most %d bytes, got %d' % (MAX_SEND_BYTES, send))
    engine = arg(args, "engine", str, "auto")
    if engine not in fastconn.ENGINES:
        raise bad('argument "engine" must be auto, c or python, got %s' % json.dumps(engine))
    helper, engine, helper_problem = fastconn.choose(engine)
    sources = set(p["source"] for p in clean if p["source"])
    no_port = mode == "ip-no-port" or (mode == "none" and len(sources) > 1)

    step = ConnectStep(sid)
    register_step(step)
    t0 = time.monotonic()
    deadline = t0 + timeout_ms / 1000.0
    cap = sockets_per_worker(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    quotas = worker_quotas(count, processes) if processes else None
    est = att = sent = 0
    errors = {}
    first = None
    per = [0] * len(clean)
    active = list(range(len(clean)))
    rr = 0
    ports = 0
    reason = "count"
    k = 0
    last_emit = 0.0
    end = t0
    try:
        while True:
            if processes:
                if k >= processes:
                    break
                quota = quotas[k]
                if quota == 0:
                    k += 1
                    continue
            else:
                quota = min(cap, count - est)
                if quota <= 0:
                    reason = "count"
                    break
            if step.stopping:
                reason = "released"
                break
            if time.monotonic() >= deadline:
                reason = "timeout"
                break
            if att >= max_attempts:
                reason = "attempts"
                break
            spec = {"pairs": clean, "bind": mode, "noPort": no_port, "localPort": local_port,
                    "connectTimeoutMs": cto_ms, "active": active, "rr": rr, "quota": quota,
                    "deadline": deadline, "rate": rate, "t0": t0, "base": est, "baseAttempted": att,
                    "maxAttempts": max_attempts - att,
                    "stopOnError": stop_on_error, "send": send}
            if helper:
                w = FORKER.spawn(lambda c, r: fastconn.become(helper, fastconn.connect_argv(c, r, spec), [c, r]))
            else:
                w = FORKER.spawn(lambda c, r: connect_worker(c, r, spec))
            w_att = 0
            step.workers.append(w)
            step.current = w
            if step.stopping:
                w.send("stop")
            done = None
            while done is None:
                r, _, _ = select.select([w.rep], [], [], PROGRESS_S)
                if r:
                    for m in w.messages():
                        if m.get("t") == "p":
                            w.count = m["n"]
                            w_att = m.get("a", w_att)
                        elif m.get("t") == "d":
                            done = m
                    if done is None and w.reader.eof:
                        raise OpError("INTERNAL", "connect worker %d exited unexpectedly (see the agent's stderr)" % w.pid)
                now = time.monotonic()
                if done is None and now - last_emit >= PROGRESS_S:
                    # Failed attempts so far, and the kernel's slab memory: what a long ramp is watched by.
                    emit({"id": rid, "event": "progress",
                          "data": {"established": est + w.count, "failed": (att + w_att) - (est + w.count),
                                   "slabKiB": meminfo.sample().get("Slab", 0), "elapsedMs": ms_since(t0)}})
                    last_emit = now
            step.current = None
            end = time.monotonic()
            w.count = done["n"]
            est += done["n"]
            att += done["a"]
            sent += done.get("sent", 0)
            for name, c in done["errors"].items():
                errors[name] = errors.get(name, 0) + c
            if first is None and done["first"] is not None:
                first = done["first"]
            for i, c in enumerate(done["per"]):
                per[i] += c
            active = done["active"]
            rr = done["rr"]
            ports |= int.from_bytes(zlib.decompress(base64.b64decode(done["ports"])), "big")
            reason = done["reason"]
            k += 1
            if reason in ("exhausted", "error", "timeout", "released", "attempts"):
                break
            if reason == "full" and not processes and done["n"] == 0:
                break  # EMFILE/ENFILE with not one connection: more workers won't help (ENFILE)
    except BaseException:
        step.kill()
        unregister_step(step)
        raise
    finally:
        step.current = None
        step.done.set()
    reply = connect_reply(clean, est, att, errors, first, max(end - t0, 1e-6), len(step.workers), reason, per, ports)
    reply["bytesSent"] = sent
    reply["engine"] = engine
    if helper_problem and engine == "python":
        reply["engineNote"] = helper_problem
    return reply


def local_ports(ports):
    """{min, max, distinct} of the local ports marked in ports (65536 bytes as one integer, byte p is 1 when port p was used), or None."""
    if not ports:
        return None
    marks = ports.to_bytes(65536, "big")
    return {"min": marks.find(b"\x01"), "max": marks.rfind(b"\x01"), "distinct": marks.count(b"\x01")}


def connect_reply(clean, est, att, errors, first, dur, workers, reason, per, ports):
    if first is not None:
        first = dict(first)
        first.pop("pair", None)
    return {
        "established": est,
        "attempted": att,
        "errors": errors,
        "firstError": first,
        "durationMs": int(round(dur * 1000)),
        "workers": workers,
        "connectsPerSecond": int(round(est / dur)),
        "stopReason": reason,
        "perPair": [dict(p, established=per[i]) for i, p in enumerate(clean)],
        "localPorts": local_ports(ports),
    }
