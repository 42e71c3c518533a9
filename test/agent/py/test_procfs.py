"""Sysctl names stay under /proc/sys; `ip -o -4 addr` output becomes addresses."""

import unittest

from lab_agent.errors import OpError
from lab_agent.procfs import collapse, parse_ip_addr, sysctl_path


class SysctlPathTest(unittest.TestCase):
    def test_dotted_names_and_paths(self):
        self.assertEqual(sysctl_path("net.ipv4.ip_local_port_range"), "/proc/sys/net/ipv4/ip_local_port_range")
        # a name with "/" is a path already (interface names may hold dots)
        self.assertEqual(sysctl_path("net/ipv4/conf/eth0.5/rp_filter"), "/proc/sys/net/ipv4/conf/eth0.5/rp_filter")

    def test_names_that_would_leave_proc_sys_are_refused(self):
        for bad in ("../../etc/passwd", "net/../../etc/shadow", "/etc/passwd", "", None, 5, "net.core\0x"):
            with self.assertRaises(OpError, msg=repr(bad)) as cm:
                sysctl_path(bad)
            self.assertEqual(cm.exception.code, "BAD_REQUEST")

    def test_collapse(self):
        self.assertEqual(collapse("32768\t60999\n"), "32768 60999")


class IpAddrTest(unittest.TestCase):
    def test_addresses_without_loopback(self):
        text = (
            "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
            "2: eth0    inet 198.18.0.1/16 brd 198.18.255.255 scope global eth0\\       valid_lft forever\n"
            "2: eth0    inet 198.18.1.1/32 scope global eth0\\       valid_lft forever\n"
            "3: veth0@if2    inet 10.0.0.1/24 scope global veth0\n"
        )
        self.assertEqual(parse_ip_addr(text), [
            ("198.18.0.1", 16, "eth0"), ("198.18.1.1", 32, "eth0"), ("10.0.0.1", 24, "veth0"),
        ])


if __name__ == "__main__":
    unittest.main()
