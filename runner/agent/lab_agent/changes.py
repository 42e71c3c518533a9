"""The provisioning ops: begin (take the host's journal and lock), sysctls,
addresses and the nofile limit, and restoring what was changed."""

import json
import os
import resource
import threading

from .addresses import ip_address
from .args import arg, ipv4
from .errors import OpError, bad, sys_error
from .journal import (JOURNAL, drop_lock, journal_append, journal_pop, journal_read, journal_restore,
                      take_lock, undo_file)
from .procfs import collapse, ipv4_addresses, sysctl_path, sysctl_read, sysctl_write


def op_begin(rid, args):
    path = arg(args, "journal", str)
    holder = arg(args, "holder", str, "pid %d" % os.getpid())
    if not path:
        raise bad('argument "journal" must not be empty')
    path = os.path.abspath(path)
    j = JOURNAL
    with j.lock:
        if j.path is not None:
            if j.path == path:
                return {"journal": path, "pending": len(journal_read(path)[0])}
            raise bad("this agent already holds journal %s" % j.path)
        lock_path = path + ".lock"
        fd = take_lock(lock_path, holder)
        j.path, j.lock_path, j.lock_fd, j.holder = path, lock_path, fd, holder
        # Entries a dead agent left stay: appending keeps reverse-order undo correct.
        return {"journal": path, "pending": len(journal_read(path)[0])}


def op_sysctl_get(rid, args):
    name = arg(args, "name", str)
    path = sysctl_path(name)
    if not arg(args, "missingOk", bool, False) or os.path.exists(path):
        return {"value": sysctl_read(name)}
    # Not in this kernel (or not in this namespace): the names beside it, for a "did you mean".
    parent = os.path.dirname(path)
    while not os.path.isdir(parent) and parent != "/proc/sys":
        parent = os.path.dirname(parent)
    prefix = parent[len("/proc/sys/"):].replace("/", ".")
    try:
        near = sorted((prefix + "." if prefix else "") + n for n in os.listdir(parent))
    except OSError:
        near = []
    return {"value": None, "near": near}


def op_sysctl_set(rid, args):
    name = arg(args, "name", str)
    value = args.get("value")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise bad('argument "value" must be a string or an integer')
    value = collapse(str(value))
    with JOURNAL.lock:
        if JOURNAL.path is None:
            raise bad("begin must come before any change")
        old = sysctl_read(name)
        if old == value:
            return {"old": old, "new": old}
        journal_append({"kind": "sysctl", "name": name, "old": old})
        try:
            sysctl_write(name, value)
        except OpError:
            journal_pop()
            raise
        return {"old": old, "new": sysctl_read(name)}


def op_addr_add(rid, args):
    address = ipv4(arg(args, "address", str), "address")
    prefix = arg(args, "prefix", int, 32)
    device = arg(args, "device", str)
    if not 0 <= prefix <= 32:
        raise bad('argument "prefix" must be 0..32, got %d' % prefix)
    if not device or device.startswith("-") or "/" in device or len(device) > 15:
        raise bad('argument "device" must be an interface name, got %s' % json.dumps(device))
    with JOURNAL.lock:
        if JOURNAL.path is None:
            raise bad("begin must come before any change")
        for ip, p, dev in ipv4_addresses():
            if ip == address:
                raise OpError("EEXIST", "address %s is already on %s (as %s/%d); lab adds only addresses it can remove"
                              % (address, dev, ip, p))
        journal_append({"kind": "address", "address": address, "prefix": prefix, "device": device})
        try:
            ip_address("add", address, prefix, device)
        except OpError:
            journal_pop()
            raise
        return {}


# Held while the agent's own nofile limits change: by nofile, and by facts trying the hard limit.
NOFILE_LOCK = threading.Lock()


def op_nofile(rid, args):
    with NOFILE_LOCK:
        return set_nofile(args)


def set_nofile(args):
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = arg(args, "soft", int, minimum=0)
    hard = arg(args, "hard", int, old[1], minimum=0)
    if soft > hard:
        raise OpError("EINVAL", "setrlimit(RLIMIT_NOFILE, %d, %d): soft limit above hard limit" % (soft, hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    except ValueError as e:
        code = "EPERM" if hard > old[1] else "EINVAL"
        raise OpError(code, "setrlimit(RLIMIT_NOFILE, %d, %d): %s" % (soft, hard, e))
    except OSError as e:
        raise sys_error("setrlimit(RLIMIT_NOFILE, %d, %d)" % (soft, hard), e)
    return {"old": list(old), "new": list(resource.getrlimit(resource.RLIMIT_NOFILE))}


# The table connection tracking is turned on with: any `ct` expression makes
# the kernel track every connection of the namespace (nf_ct_netns_get).
CONNTRACK_TABLE = ("inet", "lab_conntrack")
# Set once this agent turned tracking on (facts reports it).
CONNTRACK_ON = []
CONNTRACK_RULES = """table inet lab_conntrack {
  chain input {
    type filter hook input priority filter; policy accept;
    ct state new,established,related counter accept
  }
}
"""


def op_conntrack(rid, args):
    """Turn connection tracking on in this host's network namespace: an nftables table
    whose rule matches on `ct state` (every packet accepted), journaled so restore deletes it."""
    import subprocess

    family, table = CONNTRACK_TABLE
    with JOURNAL.lock:
        if JOURNAL.path is None:
            raise bad("begin must come before any change")
        try:
            r = subprocess.run(["nft", "list", "table", family, table], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=10)
        except FileNotFoundError:
            raise OpError("ENOENT", "connection tracking needs nft: install nftables (Debian/Ubuntu: apt-get install nftables)")
        except (OSError, subprocess.SubprocessError) as e:
            raise OpError("EIO", "nft list table %s %s: %s" % (family, table, e))
        if r.returncode == 0:
            raise OpError("EEXIST", "nftables table %s %s is already there; lab adds only a table it can remove" % (family, table))
        journal_append({"kind": "nft-table", "family": family, "table": table})
        try:
            r = subprocess.run(["nft", "-f", "-"], input=CONNTRACK_RULES.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            journal_pop()
            raise OpError("EIO", "nft -f -: %s" % e)
        if r.returncode != 0:
            journal_pop()
            raise OpError("EIO", "nft -f - (table %s %s): %s" % (family, table, r.stderr.decode("utf-8", "replace").strip()))
        CONNTRACK_ON.append(table)
        return {"family": family, "table": table}


def op_restore(rid, args):
    undone, problems = journal_restore()
    return {"undone": undone, "problems": problems}


def op_restore_journal(rid, args):
    path = os.path.abspath(arg(args, "journal", str))
    with JOURNAL.lock:
        if JOURNAL.path == path:
            return op_restore(rid, args)
    lock_path = path + ".lock"
    fd = take_lock(lock_path, "restoreJournal by agent pid %d" % os.getpid())
    try:
        undone, problems = undo_file(path)
    finally:
        drop_lock(lock_path, fd)
    return {"undone": undone, "problems": problems}
