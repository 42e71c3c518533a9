"""Reading and writing what the kernel exposes: sysctls under /proc/sys, the
host's IPv4 addresses, a process's open fds."""

import errno
import json
import os

from .errors import bad, sys_error


def read_text(path):
    with open(path) as f:
        return f.read()


def collapse(s):
    """Whitespace runs as one space, as the kernel's tab-separated sysctls compare with what a lab wrote."""
    return " ".join(s.split())


def sysctl_path(name):
    """The /proc/sys file of a dotted sysctl name (a name with "/" is a path already); never outside /proc/sys."""
    if not isinstance(name, str) or not name or ".." in name or name.startswith("/") or "\0" in name:
        raise bad("bad sysctl name %s" % json.dumps(name))
    return "/proc/sys/" + (name if "/" in name else name.replace(".", "/"))


def sysctl_read(name):
    path = sysctl_path(name)
    try:
        return collapse(read_text(path))
    except OSError as e:
        raise sys_error("read %s (%s)" % (name, path), e)


# net.* sysctls that are the whole machine's, not a namespace's: a network
# namespace other than the first shows them read-only, so they are written
# from the first one (init_net), by a child that joins it.
INIT_NET_SYSCTLS = ("net/netfilter/nf_conntrack_max",)
CLONE_NEWNET = 0x40000000


def write_file(path, value):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def netns_candidates():
    """Paths of other processes' network namespaces, one per namespace, ours excluded:
    our ancestors first (a local agent's controller runs in the first namespace), then
    every process. PID 1's may be unreadable (a container's init), so it is not relied on."""
    try:
        ours = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return []
    pids = []
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.append(pid)
        try:
            with open("/proc/%d/stat" % pid) as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    try:
        pids += sorted(int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) not in pids)
    except OSError:
        pass
    seen, out = set([ours]), []
    for pid in pids:
        path = "/proc/%d/ns/net" % pid
        try:
            ino = os.stat(path).st_ino
        except OSError:
            continue
        if ino not in seen:
            seen.add(ino)
            out.append(path)
    return out


def write_from_netns(ns_path, path, value):
    """Write a /proc/sys file from the network namespace at ns_path, in a forked child: 0 or the errno."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            try:
                ns = os.open(ns_path, os.O_RDONLY)
                if hasattr(os, "setns"):
                    os.setns(ns, CLONE_NEWNET)
                else:
                    import ctypes
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(ns, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                write_file(path, value)
            except OSError as e:
                code = e.errno or 1
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


# At most this many other namespaces are tried.
MAX_NETNS_TRIES = 64


def write_in_init_net(path, value, first_error):
    """Write a machine-wide net.* sysctl that this namespace shows read-only: only
    the first network namespace (init_net) may, so each other namespace a process
    here lives in is tried, our ancestors' first, until one takes the write. No
    other namespace can take it (they all show it read-only), so the write lands
    in init_net or nowhere. Raises first_error when none does."""
    for ns_path in netns_candidates()[:MAX_NETNS_TRIES]:
        if write_from_netns(ns_path, path, value) == 0:
            return
    raise first_error


def sysctl_write(name, value):
    path = sysctl_path(name)
    try:
        try:
            write_file(path, value)
        except OSError as e:
            if path[len("/proc/sys/"):] not in INIT_NET_SYSCTLS or e.errno not in (errno.EACCES, errno.EPERM):
                raise
            write_in_init_net(path, value, e)
    except OSError as e:
        raise sys_error("write %s (%s) = %s" % (name, path, json.dumps(value)), e)


def sysctl_int(name, default=0):
    try:
        return int(sysctl_read(name).split()[0])
    except Exception:
        return default


def parse_ip_addr(text):
    """[(ip, prefix, device)] from the output of `ip -o -4 addr show`, loopback excluded."""
    out = []
    for line in text.splitlines():
        p = line.split()
        if len(p) < 4 or p[2] != "inet":
            continue
        dev = p[1].split("@")[0]
        ip, _, prefix = p[3].partition("/")
        if dev == "lo" or ip.startswith("127."):
            continue
        out.append((ip, int(prefix or 32), dev))
    return out


def ipv4_addresses():
    """The host's IPv4 addresses but loopback's, as (address, prefix, device):
    through netlink, or from `ip -o -4 addr show` (see parse_ip_addr) where
    netlink cannot be used; empty when neither can."""
    from . import netlink

    try:
        return [(ip, prefix, dev) for ip, prefix, dev in netlink.ipv4_addresses()
                if dev != "lo" and not ip.startswith("127.")]
    except (netlink.Unavailable, OSError):
        pass
    import subprocess  # here, not at the top: importing it costs the agent's start more than netlink does its work

    try:
        r = subprocess.run(["ip", "-o", "-4", "addr", "show"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_ip_addr(r.stdout.decode("utf-8", "replace"))


def count_fds(pid):
    try:
        return len(os.listdir("/proc/%s/fd" % pid))
    except OSError:
        return 0
