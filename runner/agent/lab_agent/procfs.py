"""Reading and writing what the kernel exposes: sysctls under /proc/sys, the
host's IPv4 addresses, a process's open fds."""

import json
import os
import subprocess

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


def sysctl_write(name, value):
    path = sysctl_path(name)
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
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
    """The host's IPv4 addresses (see parse_ip_addr); empty when `ip` cannot run."""
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
