"""connect: open connections from workers (one at a time, each picking up the
pairs and round-robin position the last one left), then hold them until release."""

import base64
import errno
import json
import os
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
from .workers import FORKER, close_held, ctrl_words, current_sockets_per_worker

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
        self.current = set()  # the workers now connecting, one per lane
        self.stopping = False
        self.done = threading.Event()
        self.lock = threading.Lock()

    def open_count(self):
        return sum(w.count for w in self.workers)

    def release(self, deadline, word="close"):
        """Close what the step holds: word is "close" (FIN), "abort" (RST) or "drop\nabort" (the C
        helper sends nothing; the Python workers read "abort")."""
        self.stopping = True
        with self.lock:
            current = list(self.current)
        for w in current:
            w.send("stop")
        self.done.wait(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            w.send(word)
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


# A connect of at least this many connections, over two pairs or more, runs
# several lanes at once (one per CPU, at most MAX_LANES): each lane a chain of
# workers over its own share of the pairs. One blocking connect loop keeps one
# CPU busy with the kernel's whole handshake (both ends are often on this
# machine), so a second loop on a second CPU is where a large ramp's time goes.
# Below it, one lane: small labs keep their exact order of pairs and errors.
LANES_MIN_COUNT = 65536
MAX_LANES = 4


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_lanes(count, npairs, rate, processes, cpus):
    """How many lanes a connect runs at once when the request names none."""
    if processes or rate or count < LANES_MIN_COUNT:
        return 1
    return max(1, min(cpus, npairs, MAX_LANES))


def lane_pairs(npairs, lanes):
    """The pair indices of each lane: pair i goes to lane i mod lanes (sources interleaved)."""
    return [list(range(j, npairs, lanes)) for j in range(lanes)]


def lane_shares(total, sizes):
    """total split over lanes in proportion to their number of pairs, the first ones taking the rest."""
    n = sum(sizes)
    out = [total * s // n for s in sizes]
    for k in range(total - sum(out)):
        out[k % len(out)] += 1
    return out


class Run:
    """What the lanes of one connect share: its arguments, totals and the first error."""

    def __init__(self, step, rid, spec, helper, cap, deadline, t0):
        self.step = step
        self.rid = rid
        self.spec = spec  # pairs, bind, noPort, localPort, connectTimeoutMs, rate, stopOnError
        self.helper = helper
        self.cap = cap
        self.deadline = deadline
        self.t0 = t0
        self.lock = threading.Lock()
        self.halt = False  # a lane stopped on an error, a timeout or its attempts: the others stop too
        self.first = None
        self.lanes = []
        self.end = t0
        self.mem_floor_kib = 0
        self.low_memory = None  # MemAvailable (KiB) when the ramp was stopped for it

    def live_count(self):
        """(established, attempted) so far over every lane, counting the workers now connecting."""
        est = att = 0
        for lane in self.lanes:
            est += lane.est + lane.w_count
            att += lane.att + lane.w_att
        return est, att

    def check_memory(self, mi):
        """Stop every lane when MemAvailable falls below the floor: a ramp ends short, never in the OOM killer.
        MemAvailable counts half of the reclaimable slab as free, but the sockets' inodes and dentries
        there are pinned while the ramp holds them: that half is not counted here."""
        avail = mi.get("MemAvailable")
        if avail is not None:
            avail -= mi.get("SReclaimable", 0) // 2
        if avail is not None and self.low_memory is None and avail < self.mem_floor_kib:
            self.low_memory = avail
            self.stop_others(None)

    def stop_others(self, me):
        with self.lock:
            self.halt = True
            for lane in self.lanes:
                if lane is not me and lane.current is not None:
                    lane.current.send("stop")


class Lane:
    """A chain of workers, one at a time, each picking up the pairs and the round-robin position the last one left."""

    def __init__(self, run, active, quota, max_attempts, processes=None):
        self.run = run
        self.active = list(active)
        self.rr = 0
        self.quota = quota
        self.max_attempts = max_attempts
        self.processes = processes
        npairs = len(run.spec["pairs"])
        self.per = [0] * npairs
        self.errors = {}
        self.ports = 0
        self.est = self.att = self.sent = 0
        self.w_count = self.w_att = 0
        self.current = None
        self.reason = "count"
        self.problem = None
        self.loop_ms = 0.0  # the workers' own connect loops (the C helper reports it)

    def run_lane(self):
        try:
            self._run()
        except BaseException as e:  # noqa: the op reports it
            self.problem = e
            self.run.stop_others(self)

    def _run(self):
        run, step = self.run, self.run.step
        quotas = worker_quotas(self.quota, self.processes) if self.processes else None
        k = 0
        while True:
            if quotas is not None:
                if k >= len(quotas):
                    break
                quota = quotas[k]
                if quota == 0:
                    k += 1
                    continue
            else:
                quota = min(run.cap, self.quota - self.est)
                if quota <= 0:
                    self.reason = "count"
                    break
            if step.stopping or run.halt:
                self.reason = "released"
                break
            if time.monotonic() >= run.deadline:
                self.reason = "timeout"
                break
            if self.att >= self.max_attempts:
                self.reason = "attempts"
                break
            if not self.active:
                self.reason = "exhausted"
                break
            base, _ = run.live_count()
            # Parked sockets leave the fd table: only for a quota within the worker's fd budget, so a
            # worker meant to run out of fds (a fixed "processes" above it) still meets EMFILE.
            spec = dict(run.spec, active=self.active, rr=self.rr, quota=quota, deadline=run.deadline, t0=run.t0,
                        base=base, baseAttempted=self.att, maxAttempts=self.max_attempts - self.att,
                        park=run.spec["park"] and quota <= run.cap)
            helper = run.helper
            if helper:
                w = FORKER.spawn_exec(helper, lambda c, r: fastconn.connect_argv(c, r, spec))
            else:
                w = FORKER.spawn(lambda c, r: connect_worker(c, r, spec))
            with step.lock:
                step.workers.append(w)
                step.current.add(w)
            with run.lock:
                self.current = w
                if run.halt:
                    w.send("stop")
            if step.stopping:
                w.send("stop")
            done = None
            while done is None:
                r, _, _ = select.select([w.rep], [], [], PROGRESS_S)
                if r:
                    for m in w.messages():
                        if m.get("t") == "p":
                            w.count = self.w_count = m["n"]
                            self.w_att = m.get("a", self.w_att)
                        elif m.get("t") == "d":
                            done = m
                    if done is None and w.reader.eof:
                        raise OpError("INTERNAL", "connect worker %d exited unexpectedly (see the agent's stderr)" % w.pid)
            with step.lock:
                step.current.discard(w)
            with run.lock:
                self.current = None
                w.count = done["n"]
                self.est += done["n"]
                self.att += done["a"]
                self.sent += done.get("sent", 0)
                self.w_count = self.w_att = 0
                run.end = max(run.end, time.monotonic())
                if run.first is None and done["first"] is not None:
                    run.first = done["first"]
            for name, c in done["errors"].items():
                self.errors[name] = self.errors.get(name, 0) + c
            for i, c in enumerate(done["per"]):
                self.per[i] += c
            self.active = done["active"]
            self.rr = done["rr"]
            self.ports |= int.from_bytes(zlib.decompress(base64.b64decode(done["ports"])), "big")
            self.reason = done["reason"]
            self.loop_ms += done.get("loopMs", 0.0)
            if (self.reason == "error" and quotas is not None and k + 1 < len(quotas)
                    and (done["first"] or {}).get("errno") == "EMFILE"):
                # A fixed "processes" spreads the step over that many fd tables: a worker's
                # EMFILE is its own table full, the ceiling the step means to show; the next goes on.
                self.reason = "full"
            k += 1
            if self.reason in ("error", "timeout", "attempts"):
                run.stop_others(self)
                break
            if self.reason in ("exhausted", "released"):
                break
            if self.reason == "full" and quotas is None and done["n"] == 0:
                break  # EMFILE/ENFILE with not one connection: more workers won't help (ENFILE)


def memory_floor_kib(mi):
    """The MemAvailable below which a connect stops on its own: 2% of MemTotal, at least 128 MiB.
    The controller refuses a lab that would not fit before it starts (models/scale.ts, with a
    reserve of 5%); this is the backstop when something else takes the memory meanwhile."""
    return max(128 * 1024, mi.get("MemTotal", 0) // 50)


# When lanes end for different reasons, the connect's: the first that explains why it stopped short.
REASON_ORDER = ("error", "timeout", "attempts", "released", "full", "exhausted", "count")


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
    lanes = arg(args, "lanes", int, None, minimum=1)
    mem_floor = arg(args, "memFloorKiB", int, None, minimum=0)
    if lanes is not None and (processes or rate) and lanes > 1:
        raise bad('argument "lanes" above 1 goes with neither "processes" nor "rate"')
    send = arg(args, "send", int, 0, minimum=0)
    if send > MAX_SEND_BYTES:
        raise bad('argument "send" must be at most %d bytes, got %d' % (MAX_SEND_BYTES, send))
    park = arg(args, "park", bool, True)
    engine = arg(args, "engine", str, "auto")
    if engine not in fastconn.ENGINES:
        raise bad('argument "engine" must be auto, c or python, got %s' % json.dumps(engine))
    helper, engine, helper_problem = fastconn.choose(engine)
    sources = set(p["source"] for p in clean if p["source"])
    no_port = mode == "ip-no-port" or (mode == "none" and len(sources) > 1)
    if lanes is None:
        lanes = default_lanes(count, len(clean), rate, processes, cpu_count())
    lanes = max(1, min(lanes, len(clean)))

    step = ConnectStep(sid)
    register_step(step)
    t0 = time.monotonic()
    deadline = t0 + timeout_ms / 1000.0
    cap = current_sockets_per_worker()
    spec = {"pairs": clean, "bind": mode, "noPort": no_port, "localPort": local_port,
            "connectTimeoutMs": cto_ms, "rate": rate, "stopOnError": stop_on_error, "send": send,
            "park": park}
    run = Run(step, rid, spec, helper, cap, deadline, t0)
    run.mem_floor_kib = memory_floor_kib(meminfo.sample()) if mem_floor is None else mem_floor
    groups = lane_pairs(len(clean), lanes)
    sizes = [len(g) for g in groups]
    counts = lane_shares(count, sizes)
    tries = lane_shares(max_attempts, sizes)
    run.lanes = [Lane(run, g, counts[j], tries[j], processes) for j, g in enumerate(groups)]
    try:
        drive(run, run.lanes)
        est, att = run.live_count()
        # A lane whose pairs ran out leaves its share to the others' pairs that still have ports.
        left = [i for lane in run.lanes for i in lane.active]
        if (len(run.lanes) > 1 and est < count and not run.halt and not step.stopping
                and all(lane.reason in ("count", "exhausted", "full") for lane in run.lanes) and left):
            last = Lane(run, sorted(left), count - est, max(0, max_attempts - att))
            run.lanes.append(last)
            drive(run, [last])
        for lane in run.lanes:
            if lane.problem is not None:
                raise lane.problem
    except BaseException:
        step.kill()
        unregister_step(step)
        raise
    finally:
        with step.lock:
            step.current.clear()
        step.done.set()
    est, att = run.live_count()
    errors = {}
    per = [0] * len(clean)
    ports = 0
    for lane in run.lanes:
        for name, c in lane.errors.items():
            errors[name] = errors.get(name, 0) + c
        for i, c in enumerate(lane.per):
            per[i] += c
        ports |= lane.ports
    reasons = [lane.reason for lane in run.lanes]
    if len(run.lanes) > 1 and run.halt:
        reasons = [r for r in reasons if r != "released"] or reasons  # stopped by another lane
    if run.low_memory is not None and est < count:
        reason = "memory"
    elif len(run.lanes) > 1 and est >= count:
        reason = "count"
    elif len(run.lanes) > 1 and "exhausted" in reasons and not [r for r in reasons if r in REASON_ORDER[:5]]:
        reason = "exhausted"  # every pair a lane could still use ran out
    else:
        reason = min(reasons, key=REASON_ORDER.index) if len(run.lanes) > 1 else reasons[0]
    reply = connect_reply(clean, est, att, errors, run.first, max(run.end - t0, 1e-6), len(step.workers), reason, per, ports)
    reply["bytesSent"] = sum(lane.sent for lane in run.lanes)
    reply["engine"] = engine
    reply["lanes"] = lanes
    reply["loopMs"] = int(round(max(lane.loop_ms for lane in run.lanes)))
    if reason == "memory":
        reply["memoryStop"] = {"memAvailableKiB": run.low_memory, "floorKiB": run.mem_floor_kib}
    if helper_problem and engine == "python":
        reply["engineNote"] = helper_problem
    return reply


def drive(run, lanes):
    """Run lanes, one thread each, emitting the connect's progress from this thread until all end."""
    threads = [threading.Thread(target=lane.run_lane, name="connect-lane", daemon=True) for lane in lanes]
    for t in threads:
        t.start()
    last_emit = 0.0
    while True:
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            break
        alive[0].join(PROGRESS_S)
        now = time.monotonic()
        mi = meminfo.sample()
        run.check_memory(mi)
        if now - last_emit >= PROGRESS_S and any(t.is_alive() for t in threads):
            est, att = run.live_count()
            # Failed attempts so far, and the kernel's slab memory: what a long ramp is watched by.
            emit({"id": run.rid, "event": "progress",
                  "data": {"established": est, "failed": att - est,
                           "slabKiB": mi.get("Slab", 0), "elapsedMs": ms_since(run.t0)}})
            last_emit = now


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
