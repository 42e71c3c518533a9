import errno
import shutil
import socket
import subprocess
import unittest

from lab_agent import netlink
from lab_agent.procfs import ipv4_addresses, parse_ip_addr


class AttributesTest(unittest.TestCase):
    def test_attributes_are_padded_to_four_bytes_and_read_back(self):
        packed = netlink.attr(netlink.IFA_LOCAL, b"\xc6\x12\x00\x01") + netlink.attr(3, b"eth0\0")
        self.assertEqual(len(packed), 8 + 12)
        self.assertEqual(netlink.attrs(packed), {netlink.IFA_LOCAL: b"\xc6\x12\x00\x01", 3: b"eth0\0"})

    def test_a_datagram_holds_several_messages(self):
        one = netlink.NLMSG.pack(netlink.NLMSG.size + 3, netlink.RTM_NEWADDR, 2, 1, 0) + b"abc\0"
        two = netlink.NLMSG.pack(netlink.NLMSG.size + 4, netlink.NLMSG_DONE, 2, 1, 0) + b"\0\0\0\0"
        self.assertEqual(netlink.parse_messages(one + two),
                         [(netlink.RTM_NEWADDR, 2, 1, b"abc"), (netlink.NLMSG_DONE, 2, 1, b"\0\0\0\0")])

    def test_a_truncated_header_ends_the_list(self):
        self.assertEqual(netlink.parse_messages(b"\x10\0\0"), [])


class KernelTest(unittest.TestCase):
    """Against this machine's kernel: the same addresses `ip` lists."""

    @unittest.skipUnless(shutil.which("ip"), "no ip command")
    def test_the_addresses_are_the_ones_ip_lists(self):
        r = subprocess.run(["ip", "-o", "-4", "addr", "show"], stdout=subprocess.PIPE, check=True)
        self.assertEqual(ipv4_addresses(), parse_ip_addr(r.stdout.decode()))
        self.assertIn(("127.0.0.1", 8, "lo"), netlink.ipv4_addresses())

    def test_a_device_that_is_not_there_is_enodev(self):
        with self.assertRaises(OSError) as e:
            netlink.address_add("198.18.255.254", 32, "labt-none0")
        self.assertEqual(e.exception.errno, errno.ENODEV)


if __name__ == "__main__":
    unittest.main()
