"""The host's listening TCP sockets as `ss -lnt` shows them, from the kernel's
sock_diag netlink (inet_diag), as ss reads them: for a LISTEN socket, rqueue
is its accept queue's current length (sk_ack_backlog: connections whose
handshake completed, not yet accepted) and wqueue the most it may hold before
SYNs are dropped (sk_max_ack_backlog: listen()'s backlog capped at
net.core.somaxconn). [{address, port, queue, backlog}]. Where netlink is
refused, /proc/net/tcp gives the queue (its rx_queue) but not the limit (its
tx_queue is the send queue, 0 for a listener): backlog is then null.
Also the ESTABLISHED sockets to or from given ports (established())."""

import os
import socket
import struct

from ..procfs import read_text

NAME = "listeners"

LISTEN = "0A"
ESTABLISHED = "01"
TCP_LISTEN = 10

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_HDR = struct.Struct("=IHHII")  # struct nlmsghdr
_REQ = struct.Struct("=BBBBI48s")  # struct inet_diag_req_v2 (the socket id zeroed: every socket)
_MSG = struct.Struct("=BBBB2s2s16s16sIQIIIII")  # struct inet_diag_msg


def _diag_listeners(family):
    """[{address, port, queue, backlog}] of family's LISTEN sockets, by inet_diag."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:
        s.settimeout(5)
        body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN, b"\0" * 48)
        s.send(_HDR.pack(_HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        out = []
        while True:
            data = s.recv(65536)
            off = 0
            while off + _HDR.size <= len(data):
                length, kind, _, _, _ = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    return out
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", data, off + _HDR.size)[0]
                    raise OSError(-code, os.strerror(-code))
                m = _MSG.unpack_from(data, off + _HDR.size)
                raw = m[6][:4] if family == socket.AF_INET else m[6]
                out.append({"address": socket.inet_ntop(family, raw), "port": struct.unpack(">H", m[4])[0],
                            "queue": m[11], "backlog": m[12]})
                off += (length + 3) & ~3
    finally:
        s.close()


def _address(hex_ip):
    """The text of /proc/net/tcp's hex address (each 32-bit word in host order)."""
    raw = bytes.fromhex(hex_ip)
    words = b"".join(struct.pack("<I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def parse(text):
    """LISTEN rows of /proc/net/tcp text: the queue from rx_queue, no limit (tx_queue is not it)."""
    out = []
    for line in text.splitlines()[1:]:
        p = line.split()
        if len(p) < 5 or p[3] != LISTEN:
            continue
        try:
            ip, _, port = p[1].partition(":")
            rx = p[4].partition(":")[2]
            out.append({"address": _address(ip), "port": int(port, 16), "queue": int(rx, 16), "backlog": None})
        except ValueError:
            pass
    return out


def sample():
    try:
        return _diag_listeners(socket.AF_INET) + _diag_listeners(socket.AF_INET6)
    except (OSError, AttributeError, struct.error):
        pass
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            out += parse(read_text(path))
        except OSError:
            pass
    return out


def count_established(text, ports):
    """{port: ESTABLISHED sockets in /proc/net/tcp text whose local or remote port it is}, for each of `ports`."""
    out = dict((p, 0) for p in ports)
    for line in text.splitlines()[1:]:
        p = line.split(None, 4)
        if len(p) < 4 or p[3] != ESTABLISHED:
            continue
        try:
            local = int(p[1].rpartition(":")[2], 16)
            remote = int(p[2].rpartition(":")[2], 16)
        except ValueError:
            continue
        if local in out:
            out[local] += 1
        elif remote in out:
            out[remote] += 1
    return out


def established(ports):
    """{"port": ESTABLISHED sockets of this host to or from it}: what a client still holds
    after resets, what a server holds queued or accepted."""
    total = dict((p, 0) for p in ports)
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for port, n in count_established(read_text(path), ports).items():
                total[port] += n
        except OSError:
            pass
    return dict((str(p), n) for p, n in total.items())
