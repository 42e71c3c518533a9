"""The journal: torn lines, undo order, the lock that names its holder."""

import os
import shutil
import tempfile
import unittest

from lab_agent import journal
from lab_agent.errors import OpError


class JournalTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="labt-journal-")
        self.path = os.path.join(self.dir, "host.journal")
        self.saved = journal.JOURNAL.path
        journal.JOURNAL.path = self.path

    def tearDown(self):
        journal.JOURNAL.path = self.saved
        shutil.rmtree(self.dir)

    def test_parse_keeps_objects_and_names_a_torn_line(self):
        entries, problems = journal.parse_journal('{"kind":"sysctl","name":"a","old":"1"}\n\n[1]\n{"kind":"addr', "/j")
        self.assertEqual(entries, [{"kind": "sysctl", "name": "a", "old": "1"}])
        self.assertEqual(len(problems), 2)
        self.assertTrue(problems[0].startswith("/j:3: ignored an unreadable entry"))
        self.assertTrue(problems[1].startswith("/j:4: ignored an unreadable entry"))

    def test_append_then_pop_the_last_entry(self):
        journal.journal_append({"kind": "sysctl", "name": "a", "old": "1"})
        journal.journal_append({"kind": "sysctl", "name": "b", "old": "2"})
        journal.journal_pop()
        self.assertEqual(journal.journal_read(self.path), ([{"kind": "sysctl", "name": "a", "old": "1"}], []))

    def test_append_before_begin_is_refused(self):
        journal.JOURNAL.path = None
        with self.assertRaises(OpError) as cm:
            journal.journal_append({"kind": "sysctl"})
        self.assertEqual(cm.exception.message, "begin must come before any change")

    def test_undo_goes_newest_first_and_collects_problems(self):
        done = []

        def undo_one(e):
            if e["n"] == 2:
                raise OpError("EIO", "cannot undo 2")
            if e["n"] == 3:
                raise KeyError("name")
            done.append(e["n"])

        undone, problems = journal.undo([{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}], undo_one)
        self.assertEqual(done, [4, 1])
        self.assertEqual(undone, [{"n": 4}, {"n": 1}])
        self.assertEqual(problems, ["undo {\"n\": 3}: 'name'", "cannot undo 2"])

    def test_an_unknown_entry_kind_is_a_problem_not_a_crash(self):
        undone, problems = journal.undo([{"kind": "frob"}])
        self.assertEqual((undone, problems), ([], ['unknown journal entry kind "frob"']))

    def test_undoing_an_address_on_a_missing_device_names_the_command(self):
        with self.assertRaises(OpError) as e:
            journal.undo_entry({"kind": "address", "address": "198.18.255.254", "prefix": 32, "device": "labt-none0"})
        self.assertEqual(e.exception.code, "ENODEV")
        self.assertTrue(e.exception.message.startswith("ip addr del 198.18.255.254/32 dev labt-none0: "), e.exception.message)

    def test_a_second_lock_is_refused_naming_the_holder_and_free_again_after_drop(self):
        lock = os.path.join(self.dir, "sub", "host.journal.lock")
        fd = journal.take_lock(lock, "lab run x by pid 1")
        with self.assertRaises(OpError) as cm:
            journal.take_lock(lock, "someone else")
        self.assertEqual(cm.exception.code, "LOCKED")
        self.assertEqual(cm.exception.message, "%s: held by lab run x by pid 1" % lock)
        journal.drop_lock(lock, fd)
        self.assertFalse(os.path.exists(lock))
        journal.drop_lock(lock, journal.take_lock(lock, "next"))


if __name__ == "__main__":
    unittest.main()
