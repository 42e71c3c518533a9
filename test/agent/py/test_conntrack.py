"""Connection tracking: the probe's parsing, and how a machine-wide net.* sysctl
that a namespace shows read-only is written (from another namespace, which only
the first one accepts)."""

import os
import unittest

from lab_agent.probes import conntrack
from lab_agent.procfs import INIT_NET_SYSCTLS, netns_candidates, sysctl_read


class ProbeTest(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(conntrack.parse("200\n\n262144\n"), {"count": 200, "max": 262144})
        self.assertEqual(conntrack.parse("200\n"), {})

    def test_sample_reads_this_namespace(self):
        s = conntrack.sample()
        if os.path.exists("/proc/sys/net/netfilter/nf_conntrack_count"):
            self.assertEqual(sorted(s), ["count", "max"])
            self.assertEqual(s["max"], int(sysctl_read("net.netfilter.nf_conntrack_max")))
        else:
            self.assertEqual(s, {})


class InitNetTest(unittest.TestCase):
    def test_only_nf_conntrack_max_is_written_from_another_namespace(self):
        self.assertEqual(INIT_NET_SYSCTLS, ("net/netfilter/nf_conntrack_max",))

    def test_candidates_are_other_namespaces_each_once(self):
        ours = os.stat("/proc/self/ns/net").st_ino
        inodes = [os.stat(p).st_ino for p in netns_candidates()]
        self.assertNotIn(ours, inodes)
        self.assertEqual(len(inodes), len(set(inodes)))


if __name__ == "__main__":
    unittest.main()
