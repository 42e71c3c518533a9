"""The probes a snapshot samples: parsers on captured text, and the registry."""

import importlib
import pkgutil
import unittest

from lab_agent import probes
from lab_agent.probes import listeners, meminfo, slabinfo, sockstat

MEMINFO = """MemTotal:       24683548 kB
MemFree:        22677916 kB
MemAvailable:   23794596 kB
HugePages_Total:       0
Weird:        n/a
"""

SLABINFO = """slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                  105    112   2368   13    8 : tunables    0    0    0 : slabdata      8      8      0
sock_inode_cache     650    680    768   21    4 : tunables    0    0    0 : slabdata     32     32      0
broken line
"""

SOCKSTAT = """sockets: used 229
TCP: inuse 6 orphan 0 tw 2 alloc 9 mem 1
UDP: inuse 1 mem 2
FRAG: inuse 0 memory 0
"""

# /proc/net/tcp: a listener on 198.18.0.2:8080 with 5 queued, one of its queued
# connections, a client's connection to another host's 8080, and sshd's session.
PROC_NET_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 020012C6:1F90 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 020012C6:1F90 010012C6:8000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 010012C6:9C40 020012C6:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 020012C6:0016 010012C6:A000 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1
   4: 010012C6:9C41 020012C6:1F90 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1
"""


class ParseTest(unittest.TestCase):
    def test_meminfo_in_kib_by_key(self):
        self.assertEqual(meminfo.parse(MEMINFO),
                         {"MemTotal": 24683548, "MemFree": 22677916, "MemAvailable": 23794596, "HugePages_Total": 0})

    def test_slabinfo_skips_headers_and_short_lines(self):
        self.assertEqual(slabinfo.parse(SLABINFO), {
            "TCP": {"activeObjs": 105, "numObjs": 112, "objSize": 2368},
            "sock_inode_cache": {"activeObjs": 650, "numObjs": 680, "objSize": 768},
        })

    def test_sockstat_pairs_per_protocol(self):
        s = sockstat.parse(SOCKSTAT)
        self.assertEqual(s["TCP"], {"inuse": 6, "orphan": 0, "tw": 2, "alloc": 9, "mem": 1})
        self.assertEqual(s["sockets"], {"used": 229})
        self.assertEqual(s["FRAG"], {"inuse": 0, "memory": 0})

    def test_listeners_from_proc_net_tcp_have_the_queue_but_not_its_limit(self):
        # tx_queue of a LISTEN row is its send queue (0), not the backlog: only netlink has that.
        self.assertEqual(listeners.parse(PROC_NET_TCP), [{"address": "198.18.0.2", "port": 8080, "queue": 5, "backlog": None}])

    def test_established_counts_local_or_remote_port_once(self):
        self.assertEqual(listeners.count_established(PROC_NET_TCP, [8080, 22, 9]), {8080: 2, 22: 1, 9: 0})

    def test_listeners_by_netlink_in_this_namespace_show_the_backlog(self):
        import socket
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", 0))
            s.listen(7)
            port = s.getsockname()[1]
            mine = [l for l in listeners.sample() if l["port"] == port]
            self.assertEqual(mine, [{"address": "127.0.0.1", "port": port, "queue": 0, "backlog": 7}])
        finally:
            s.close()

    def test_empty_text_is_an_empty_sample(self):
        for p in probes.PROBES:
            self.assertIn(p.parse(""), ({}, []), p.__name__)


class RegistryTest(unittest.TestCase):
    def test_every_probe_module_is_registered_once_with_a_unique_name(self):
        # A probe module that is not in PROBES would never be sampled.
        modules = sorted(m.name for m in pkgutil.iter_modules(probes.__path__))
        registered = sorted(p.__name__.rsplit(".", 1)[1] for p in probes.PROBES)
        self.assertEqual(modules, registered)
        names = [p.NAME for p in probes.PROBES]
        self.assertEqual(len(names), len(set(names)))
        for p in probes.PROBES:
            self.assertTrue(callable(p.sample) and callable(p.parse), p.__name__)

    def test_sample_all_keys_are_the_probe_names_the_snapshot_reply_promises(self):
        # runner/agent/protocol.ts SnapshotReply: meminfo, slab, sockstat, listeners, conntrack
        self.assertEqual(sorted(probes.sample_all()), ["conntrack", "listeners", "meminfo", "slab", "sockstat"])


class SnapshotPortsTest(unittest.TestCase):
    def test_bad_ports_are_refused(self):
        from lab_agent.errors import OpError
        from lab_agent.snapshot import op_snapshot
        for ports in (["8080"], [0], [70000], [True], list(range(1, 66))):
            with self.assertRaises(OpError) as cm:
                op_snapshot(1, {"ports": ports})
            self.assertEqual(cm.exception.message, 'argument "ports" must be at most 64 ports (1..65535)')


if __name__ == "__main__":
    unittest.main()
