"""Argument checks: every op reads its args through lab_agent.args."""

import unittest

from lab_agent.args import arg, ipv4, step_id
from lab_agent.errors import OpError


class ArgTest(unittest.TestCase):
    def refused(self, f, message):
        with self.assertRaises(OpError) as cm:
            f()
        self.assertEqual(cm.exception.code, "BAD_REQUEST")
        self.assertEqual(cm.exception.message, message)

    def test_present_values_of_the_right_kind_come_back(self):
        self.assertEqual(arg({"n": 3}, "n", int), 3)
        self.assertEqual(arg({"r": 2}, "r", float), 2)
        self.assertEqual(arg({"r": 2.5}, "r", float), 2.5)
        self.assertEqual(arg({"b": False}, "b", bool), False)
        self.assertEqual(arg({"s": "x"}, "s", str), "x")
        self.assertEqual(arg({"l": []}, "l", list), [])

    def test_absent_or_null_takes_the_default_or_is_missing(self):
        self.assertEqual(arg({}, "n", int, 7), 7)
        self.assertEqual(arg({"n": None}, "n", int, 7), 7)
        self.refused(lambda: arg({}, "n", int), 'missing argument "n"')

    def test_wrong_types_are_refused_with_the_value_as_sent(self):
        self.refused(lambda: arg({"n": "3"}, "n", int), 'argument "n" must be int, got "3"')
        # bool is an int subclass in Python: not for the protocol
        self.refused(lambda: arg({"n": True}, "n", int), 'argument "n" must be int, got true')
        self.refused(lambda: arg({"r": True}, "r", float), 'argument "r" must be float, got true')
        self.refused(lambda: arg({"n": 1.5}, "n", int), 'argument "n" must be int, got 1.5')
        self.refused(lambda: arg({"b": 1}, "b", bool), 'argument "b" must be bool, got 1')
        self.refused(lambda: arg({"s": ["x"]}, "s", str), 'argument "s" must be str, got ["x"]')

    def test_minimum(self):
        self.assertEqual(arg({"n": 0}, "n", int, minimum=0), 0)
        self.refused(lambda: arg({"n": -1}, "n", int, minimum=0), 'argument "n" must be >= 0, got -1')

    def test_step_id_is_a_non_empty_string_or_an_integer(self):
        self.assertEqual(step_id({"id": "ramp"}), "ramp")
        self.assertEqual(step_id({"id": 3}), "3")
        for bad in ({"id": ""}, {"id": True}, {"id": 1.5}, {"id": None}, {}, {"id": ["a"]}):
            self.refused(lambda: step_id(bad), 'argument "id" (the step id) must be a non-empty string or an integer')

    def test_ipv4_takes_only_dotted_quads(self):
        self.assertEqual(ipv4("198.18.0.1", "address"), "198.18.0.1")
        for bad in ("1", "1.2", "1.2.3", "1.2.3.4 x", "256.0.0.1", "::1", "", None, 17, "1.2.3.4\n"):
            with self.assertRaises(OpError, msg=repr(bad)) as cm:
                ipv4(bad, "address")
            self.assertEqual(cm.exception.code, "BAD_REQUEST")


if __name__ == "__main__":
    unittest.main()
