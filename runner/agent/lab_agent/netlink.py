"""IPv4 addresses through rtnetlink, as `ip -4 addr show/add/del` would do
them, without starting `ip`: a process start is most of what those commands
cost, and much more than that on a loaded machine (the callers in procfs.py,
changes.py and journal.py fall back to `ip` where netlink cannot be used)."""

import os
import socket
import struct

RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_HOST = 254

NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
RTATTR = struct.Struct("=HH")  # length, type
ERRNO = struct.Struct("=i")


def _align(n):
    return (n + 3) & ~3


def attr(kind, data):
    """One route attribute, padded to 4 bytes."""
    return RTATTR.pack(RTATTR.size + len(data), kind) + data + b"\0" * (_align(len(data)) - len(data))


def attrs(buf):
    """{type: data} of the route attributes in buf (the first of a type wins)."""
    out = {}
    off = 0
    while off + RTATTR.size <= len(buf):
        length, kind = RTATTR.unpack_from(buf, off)
        if length < RTATTR.size:
            break
        out.setdefault(kind, buf[off + RTATTR.size:off + length])
        off += _align(length)
    return out


def parse_messages(data):
    """(type, flags, sequence, payload) of each netlink message in one datagram."""
    out = []
    off = 0
    while off + NLMSG.size <= len(data):
        length, kind, flags, seq, _ = NLMSG.unpack_from(data, off)
        if length < NLMSG.size:
            break
        out.append((kind, flags, seq, data[off + NLMSG.size:off + length]))
        off += _align(length)
    return out


class Unavailable(Exception):
    """No rtnetlink socket here (a seccomp filter, a kernel without it): use `ip`."""


def request(kind, flags, body):
    """Send one request to the kernel; the payloads of its answer (a dump's
    messages, or none for an acknowledged change). OSError with the
    kernel's errno when it refuses."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    except (OSError, AttributeError) as e:
        raise Unavailable(str(e))
    try:
        try:
            s.bind((0, 0))
        except OSError as e:
            raise Unavailable(str(e))
        seq = 1
        s.sendall(NLMSG.pack(NLMSG.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body)
        out = []
        while True:
            for mkind, _, mseq, payload in parse_messages(s.recv(1 << 16)):
                if mseq != seq:
                    continue
                if mkind in (NLMSG_ERROR, NLMSG_DONE):
                    err = -ERRNO.unpack_from(payload)[0] if len(payload) >= ERRNO.size else 0
                    if err > 0:
                        raise OSError(err, os.strerror(err))
                    return out  # the acknowledgement, or the end of a dump
                out.append((mkind, payload))
    finally:
        s.close()


def ipv4_addresses():
    """[(address, prefix, device)] of every IPv4 address, loopback's included, in the kernel's order."""
    out = []
    names = {}
    for kind, payload in request(RTM_GETADDR, NLM_F_DUMP, IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
        if kind != RTM_NEWADDR or len(payload) < IFADDRMSG.size:
            continue
        family, prefix, _, _, index = IFADDRMSG.unpack_from(payload)
        a = attrs(payload[IFADDRMSG.size:])
        raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
        if family != socket.AF_INET or raw is None or len(raw) != 4:
            continue
        if index not in names:
            try:
                names[index] = socket.if_indextoname(index)
            except OSError:
                names[index] = "if%d" % index
        out.append((socket.inet_ntoa(raw), prefix, names[index]))
    return out


def _address_message(address, prefix, device):
    try:
        index = socket.if_nametoindex(device)
    except OSError:
        raise OSError(19, os.strerror(19))  # ENODEV, which `ip` would say as "Cannot find device"
    raw = socket.inet_aton(address)
    # `ip addr add` gives 127/8 host scope, every other address universe scope.
    scope = RT_SCOPE_HOST if raw[0] == 127 else RT_SCOPE_UNIVERSE
    return IFADDRMSG.pack(socket.AF_INET, prefix, 0, scope, index) + attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)


def address_add(address, prefix, device):
    """`ip addr add ADDRESS/PREFIX dev DEVICE`; OSError (EEXIST, ENODEV, EPERM…) when refused."""
    request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, _address_message(address, prefix, device))


def address_del(address, prefix, device):
    """`ip addr del ADDRESS/PREFIX dev DEVICE`; OSError (EADDRNOTAVAIL, ENODEV…) when refused."""
    request(RTM_DELADDR, NLM_F_ACK, _address_message(address, prefix, device))
