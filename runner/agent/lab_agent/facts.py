"""hello and facts: what the agent is, and what the host is (the HostFacts of
runner/result.ts), read after provisioning so predictions see the state the run had."""

import os
import resource
import sys

from . import VERSION, fastconn
from .changes import CONNTRACK_ON, NOFILE_LOCK
from .probes import conntrack, meminfo, slabinfo
from .procfs import ipv4_addresses, read_text, sysctl_int, sysctl_read
from .fds import WORKER_FDS, sockets_per_worker


CAP_SYS_ADMIN = 21


def file_max_exempt():
    """Whether this process may open files past fs.file-max: CAP_SYS_ADMIN in its
    effective set, in the first user namespace (uid 0 of a user namespace is not)."""
    try:
        with open("/proc/self/status") as f:
            cap = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
        with open("/proc/self/uid_map") as f:
            init_userns = f.read().split() == ["0", "0", "4294967295"]
    except (OSError, StopIteration, ValueError):
        return os.geteuid() == 0
    return bool(cap >> CAP_SYS_ADMIN & 1) and init_userns

def can_raise_hard_nofile():
    """Try to raise the hard limit by one, and put it back (lowering is always
    allowed): no child to fork and wait for. A worker forked meanwhile may get
    the higher hard limit; its soft limit, which it lives by, is the same."""
    with NOFILE_LOCK:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            return True
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard + 1))
        except (ValueError, OSError):
            return False
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return True


def sysctl_ints(name):
    """A sysctl of several integers ("4096 131072 6291456"), or [] when unreadable."""
    try:
        return [int(x) for x in sysctl_read(name).split()]
    except Exception:
        return []


def boot_id():
    try:
        return read_text("/proc/sys/kernel/random/boot_id").strip()
    except OSError:
        return ""


def python_version():
    """platform.python_version(), without importing platform: "3.11.2", "3.13.0rc1"."""
    return sys.version.split()[0]


def op_hello(rid, args):
    return {"version": VERSION, "pid": os.getpid(), "python": python_version(), "uid": os.getuid()}


def op_facts(rid, args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    uname = os.uname()
    mi = meminfo.sample()
    slab = slabinfo.sample()
    pr = sysctl_read("net.ipv4.ip_local_port_range").split()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        reserved = read_text("/proc/sys/net/ipv4/ip_local_reserved_ports").strip()
    except OSError:
        reserved = ""
    ct = conntrack.sample()
    return {
        # Connection tracking in this namespace: entries now (after provisioning), and the machine's table size.
        "conntrackOn": bool(CONNTRACK_ON),
        "conntrackCount": ct.get("count"),
        "conntrackMax": ct.get("max"),
        "hostname": uname.nodename,  # what socket.gethostname() and platform.release() say
        "kernel": uname.release,
        "python": python_version(),
        "portRange": [int(pr[0]), int(pr[1])],
        "reservedPorts": reserved,
        "nofileSoft": soft,
        "nofileHard": hard,
        "canRaiseHardNofile": can_raise_hard_nofile(),
        "nrOpen": sysctl_int("fs.nr_open"),
        "fileMax": sysctl_int("fs.file-max"),
        "somaxconn": sysctl_int("net.core.somaxconn"),
        "tcpMaxSynBacklog": sysctl_int("net.ipv4.tcp_max_syn_backlog"),
        "tcpFinTimeout": sysctl_int("net.ipv4.tcp_fin_timeout"),
        "tcpTwReuse": sysctl_int("net.ipv4.tcp_tw_reuse"),
        "memTotalKiB": mi.get("MemTotal", 0),
        "memAvailableKiB": mi.get("MemAvailable", 0),
        "slabObjectSize": dict((k, v["objSize"]) for k, v in slab.items()),
        # Merged caches, so a model can price tcp_bind_bucket where slabinfo counts it.
        "slabAliases": slabinfo.aliases(slab),
        # One boot id: one kernel (namespaces of one machine share slab memory).
        "bootId": boot_id(),
        "tcpTwReuseDelayMs": sysctl_int("net.ipv4.tcp_tw_reuse_delay", 1000),
        "tcpMaxTwBuckets": sysctl_int("net.ipv4.tcp_max_tw_buckets"),
        # The accept queue's neighbours: what a SYN meets when the queue or the SYN queue is full.
        "tcpAbortOnOverflow": sysctl_int("net.ipv4.tcp_abort_on_overflow"),
        "tcpSyncookies": sysctl_int("net.ipv4.tcp_syncookies", 1),
        # What data in flight is charged against: socket buffers (min default max, bytes),
        # tcp_mem (pages, kernel-wide), and the per-CPU slack of its counter (pages; 6.6+).
        "pageSize": os.sysconf("SC_PAGE_SIZE"),
        "tcpRmem": sysctl_ints("net.ipv4.tcp_rmem"),
        "tcpWmem": sysctl_ints("net.ipv4.tcp_wmem"),
        "tcpMem": sysctl_ints("net.ipv4.tcp_mem"),
        "memPcpuRsv": sysctl_int("net.core.mem_pcpu_rsv", 0) or None,
        "addresses": ["%s/%d" % (ip, prefix) for ip, prefix, _ in ipv4_addresses()],
        "cpus": cpus,
        "uid": os.getuid(),
        # alloc_empty_file() lets CAP_SYS_ADMIN (of the first user namespace) past fs.file-max.
        "fileMaxExempt": file_max_exempt(),
        # How the agent spreads connections over workers, under this soft limit.
        "workerFds": WORKER_FDS,
        "socketsPerWorker": sockets_per_worker(soft),
        # Where connect and accept loops will run: the C helper or the Python workers.
        "connectEngine": fastconn.likely_engine(),
    }
