"""The threads and epoll servers' helpers: /proc status, and the listen op's checks of
`server` and `stackBytes` (refused before any socket is made)."""

import os
import unittest

from lab_agent.errors import OpError
from lab_agent.listen import op_listen
from lab_agent.servers import status


class StatusTest(unittest.TestCase):
    def test_own_status(self):
        s = status()
        self.assertGreaterEqual(s["threads"], 1)
        self.assertGreater(s["vmSizeKiB"], 0)
        self.assertGreater(s["rssKiB"], 0)

    def test_a_gone_process_is_empty(self):
        self.assertEqual(status(2 ** 22 + 7), {})


class ListenArgsTest(unittest.TestCase):
    def bad(self, args):
        with self.assertRaises(OpError) as cm:
            op_listen(1, dict({"id": "x", "address": "127.0.0.1", "port": 0}, **args))
        self.assertEqual(cm.exception.code, "BAD_REQUEST")
        return cm.exception.message

    def test_server_and_stack_are_checked(self):
        self.assertIn("threads or epoll", self.bad({"server": "fork"}))
        self.assertIn("stackBytes", self.bad({"server": "epoll", "stackBytes": 65536}))
        self.assertIn("stackBytes", self.bad({"server": "threads", "stackBytes": 4096}))
        self.assertIn("stackBytes", self.bad({"server": "threads", "stackBytes": 65537}))


if __name__ == "__main__":
    unittest.main()
