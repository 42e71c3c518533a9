"""The artifact directory's pruning (lab_agent.cache), on real files in a temporary directory."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from lab_agent import cache

A = "agent-0123456789abcdef"
B = "agent-fedcba9876543210"
H = "fastconn-00112233445566ff"


class PruneTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lab-cache-test-")
        self.now = time.time()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def make(self, name, age_days, directory=False):
        path = os.path.join(self.dir, name)
        if directory:
            os.makedirs(os.path.join(path, "lab_agent"))
            with open(os.path.join(path, "lab_agent", "x.py"), "w") as f:
                f.write("")
        else:
            with open(path, "w") as f:
                f.write("x")
        t = self.now - age_days * 86400
        os.utime(path, (t, t))
        return path

    def left(self):
        return sorted(os.listdir(self.dir))

    def test_entries_unused_for_a_month_go_recent_ones_and_others_stay(self):
        self.make(A + ".pyz", 40)
        self.make(A + ".d", 40, directory=True)
        self.make(H, 31)
        self.make(B + ".pyz", 2)
        self.make(B + ".d", 29, directory=True)
        self.make("notes.txt", 400)  # not lab's: never touched
        self.make("agent-xyz.pyz", 400)  # not a hash name
        removed = cache.prune(self.dir, now=self.now)
        self.assertEqual(removed, [A + ".d", A + ".pyz", H])
        self.assertEqual(self.left(), [B + ".d", B + ".pyz", "agent-xyz.pyz", "notes.txt"])

    def test_what_the_agent_keeps_stays_however_old(self):
        mine = (self.make(A + ".pyz", 90), self.make(A + ".d", 90, directory=True))
        self.make(B + ".pyz", 90)
        self.assertEqual(cache.prune(self.dir, keep=mine, now=self.now), [B + ".pyz"])
        self.assertEqual(self.left(), [A + ".d", A + ".pyz"])

    def test_temporaries_go_after_a_day(self):
        self.make(A + ".pyz.a1b2c3d4e5f6.tmp", 2)
        self.make(A + ".d.4242.tmp", 2, directory=True)
        self.make(H + ".777.tmp.c", 2)
        self.make(H + ".778.tmp", 0.5)  # a build under way
        self.assertEqual(sorted(cache.prune(self.dir, now=self.now)), sorted([A + ".pyz.a1b2c3d4e5f6.tmp", A + ".d.4242.tmp", H + ".777.tmp.c"]))
        self.assertEqual(self.left(), [H + ".778.tmp"])

    def test_mark_used_makes_an_old_entry_recent(self):
        path = self.make(A + ".pyz", 90)
        cache.mark_used(path)
        self.assertEqual(cache.prune(self.dir, now=time.time()), [])

    def test_own_entries_for_a_hash_named_zipapp_or_its_tree(self):
        both = (os.path.join(self.dir, A + ".pyz"), os.path.join(self.dir, A + ".d"))
        self.assertEqual(cache.own_entries(os.path.join(self.dir, A + ".pyz")), (self.dir, both))
        # An SSH host starts an installed agent from its unpacked tree.
        self.assertEqual(cache.own_entries(os.path.join(self.dir, A + ".d", "__main__.py")), (self.dir, both))
        self.assertEqual(cache.own_entries("/work/runner/agent"), (None, ()))
        self.assertEqual(cache.own_entries("/work/runner/agent/__main__.py"), (None, ()))
        self.assertEqual(cache.own_entries(os.path.join(self.dir, H)), (None, ()))

    def test_what_a_running_process_names_stays_however_old(self):
        tree = self.make(A + ".d", 90, directory=True)
        self.make(B + ".pyz", 90)
        # Another run's agent, of a version that never marks anything: its command line names its tree.
        proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(60)", os.path.join(tree, "__main__.py")])
        try:
            deadline = time.time() + 5
            while A + ".d" not in cache.in_use(self.dir) and time.time() < deadline:
                time.sleep(0.05)
            self.assertIn(A + ".d", cache.in_use(self.dir))
            self.assertEqual(cache.prune(self.dir, now=self.now), [B + ".pyz"])
            self.assertEqual(self.left(), [A + ".d"])
        finally:
            proc.kill()
            proc.wait()
        self.assertEqual(cache.prune(self.dir, now=self.now), [A + ".d"])

    def test_a_missing_directory_prunes_nothing(self):
        self.assertEqual(cache.prune(os.path.join(self.dir, "absent"), now=self.now), [])


if __name__ == "__main__":
    unittest.main()
