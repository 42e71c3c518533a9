"""The probes a snapshot samples: parsers on captured text, and the registry."""

import importlib
import pkgutil
import unittest

from lab_agent import probes
from lab_agent.probes import meminfo, slabinfo, sockstat

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

    def test_empty_text_is_an_empty_sample(self):
        for p in probes.PROBES:
            self.assertEqual(p.parse(""), {})


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
        # runner/agent/protocol.ts SnapshotReply: meminfo, slab, sockstat
        self.assertEqual(sorted(probes.sample_all()), ["conntrack", "meminfo", "slab", "sockstat"])


if __name__ == "__main__":
    unittest.main()
