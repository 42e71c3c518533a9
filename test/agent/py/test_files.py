"""files: the nofile ceiling on the real kernel, and the file-max probe's arguments.

The file-max probe itself changes fs.file-max machine-wide, so it runs only in
labs/fd-ceilings.yaml (acknowledged), not here."""

import os
import resource
import unittest

from lab_agent.errors import OpError
from lab_agent.files import in_child, nofile_ceiling, op_files, setrlimit_errno, unprivileged_user


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


class NofileCeilingTest(unittest.TestCase):
    def test_the_ceiling_is_nr_open_or_the_hard_limit(self):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nr_open = read_int("/proc/sys/fs/nr_open")
        capable = in_child(setrlimit_errno, hard + 1) is None if hard != resource.RLIM_INFINITY else True
        r = in_child(nofile_ceiling)
        self.assertEqual(r["reached"], nr_open if capable else min(nr_open, hard))
        self.assertEqual(r["firstError"], "EPERM")
        # the agent's own limits are untouched: the search ran in a child
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[1], hard)

    def test_setrlimit_errno_names_einval(self):
        # soft above hard: EINVAL, in a child so this process keeps its limits
        def soft_above_hard():
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (10, 5))
            except ValueError as e:
                return str(e)
            return None

        self.assertIn("exceeds maximum", in_child(soft_above_hard))


class ArgumentsTest(unittest.TestCase):
    def assertBad(self, args):
        with self.assertRaises(OpError) as cm:
            op_files(1, args)
        self.assertEqual(cm.exception.code, "BAD_REQUEST")
        return cm.exception.message

    def test_bad_arguments_are_refused_before_anything_changes(self):
        self.assertIn("ceiling", self.assertBad({"ceiling": "nofile"}))
        self.assertIn("count", self.assertBad({"ceiling": "file-max"}))
        self.assertIn("at most", self.assertBad({"ceiling": "file-max", "count": 10 ** 7}))
        self.assertIn("nrOpen", self.assertBad({"ceiling": "nr_open", "nrOpen": 3}))
        self.assertIn("nrOpen", self.assertBad({"ceiling": "nr_open", "nrOpen": 1 << 32}))

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_a_change_needs_begin_first(self):
        # No journal: refused before fs.file-max or fs.nr_open is touched.
        before = (read_int("/proc/sys/fs/file-max"), read_int("/proc/sys/fs/nr_open"))
        self.assertIn("begin", self.assertBad({"ceiling": "file-max", "count": 10}))
        self.assertIn("begin", self.assertBad({"ceiling": "nr_open", "nrOpen": 1024}))
        self.assertEqual((read_int("/proc/sys/fs/file-max"), read_int("/proc/sys/fs/nr_open")), before)

    def test_the_unprivileged_user_is_not_root(self):
        name, uid, gid = unprivileged_user()
        self.assertNotEqual(uid, 0)
        self.assertNotEqual(gid, 0)


if __name__ == "__main__":
    unittest.main()
