"""connect's pure parts: pairs, quotas, local ports, the reply; arguments refused before anything forks."""

import unittest

from lab_agent import steps
from lab_agent.connect import (LANES_MIN_COUNT, MAX_LANES, connect_pairs, connect_reply, default_lanes, lane_pairs,
                               lane_shares, local_ports, op_connect, worker_quotas)
from lab_agent.errors import OpError
from lab_agent.fds import FD_MARGIN, WORKER_FDS, sockets_per_worker

PAIR = {"source": "198.18.0.1", "address": "198.18.0.2", "port": 8080}


class WorkerRuleTest(unittest.TestCase):
    def test_sockets_per_worker_leaves_the_margin_and_never_drops_below_one(self):
        self.assertEqual(sockets_per_worker(6000), 6000 - FD_MARGIN)
        self.assertEqual(sockets_per_worker(1024), 1008)
        self.assertEqual(sockets_per_worker(FD_MARGIN), 1)
        self.assertEqual(sockets_per_worker(3), 1)
        # the budget stays below what EMFILE allows, so a worker never hits it by plan
        self.assertLess(sockets_per_worker(6000), 6000 - WORKER_FDS)

    def test_worker_quotas_split_count_evenly_the_first_ones_taking_the_rest(self):
        self.assertEqual(worker_quotas(10, 3), [4, 3, 3])
        self.assertEqual(worker_quotas(2, 4), [1, 1, 0, 0])
        self.assertEqual(sum(worker_quotas(20001, 7)), 20001)


class LanesTest(unittest.TestCase):
    def test_lanes_only_for_large_connects_over_several_pairs_without_processes_or_rate(self):
        big = LANES_MIN_COUNT
        self.assertEqual(default_lanes(big, 32, 0, None, 2), 2)
        self.assertEqual(default_lanes(big, 32, 0, None, 64), MAX_LANES)
        self.assertEqual(default_lanes(big, 3, 0, None, 8), 3, "no more lanes than pairs")
        self.assertEqual(default_lanes(big - 1, 32, 0, None, 2), 1, "small labs keep one chain of workers")
        self.assertEqual(default_lanes(big, 1, 0, None, 2), 1)
        self.assertEqual(default_lanes(big, 32, 100.0, None, 2), 1, "a rate is paced by one chain")
        self.assertEqual(default_lanes(big, 32, 0, 4, 2), 1, "fixed processes keep their quotas")

    def test_pairs_are_dealt_to_lanes_in_turn_and_counts_follow_the_pairs(self):
        self.assertEqual(lane_pairs(5, 2), [[0, 2, 4], [1, 3]])
        self.assertEqual(lane_pairs(3, 1), [[0, 1, 2]])
        self.assertEqual(lane_shares(1000, [3, 2]), [600, 400])
        self.assertEqual(lane_shares(7, [1, 1]), [4, 3])
        self.assertEqual(sum(lane_shares(1000001, [16, 16])), 1000001)


class PairsTest(unittest.TestCase):
    def test_pairs_are_checked_and_normalized(self):
        self.assertEqual(connect_pairs([PAIR, {"address": "198.18.0.3", "port": 1}]),
                         [PAIR, {"source": None, "address": "198.18.0.3", "port": 1}])

    def test_bad_pairs_are_refused(self):
        cases = [
            ([], 'argument "pairs" must not be empty'),
            (["x"], "pairs[0] must be an object {source, address, port}"),
            ([dict(PAIR, port=0)], 'argument "port" must be >= 1, got 0'),
            ([dict(PAIR, port=70000)], "pairs[0].port must be 1..65535"),
            ([dict(PAIR, address="example.com")], 'argument "pairs[0].address" must be a dotted IPv4 address, got "example.com"'),
            ([PAIR, dict(PAIR, source="1.2.3")], 'argument "pairs[1].source" must be a dotted IPv4 address, got "1.2.3"'),
        ]
        for pairs, message in cases:
            with self.assertRaises(OpError, msg=message) as cm:
                connect_pairs(pairs)
            self.assertEqual(cm.exception.message, message)


class ReplyTest(unittest.TestCase):
    def test_local_ports_from_the_marks(self):
        marks = bytearray(65536)
        for p in (40000, 40002, 40999):
            marks[p] = 1
        self.assertEqual(local_ports(int.from_bytes(bytes(marks), "big")), {"min": 40000, "max": 40999, "distinct": 3})
        self.assertIsNone(local_ports(0))

    def test_reply_drops_the_internal_pair_index_and_counts_per_pair(self):
        first = {"errno": "EADDRNOTAVAIL", "message": "Cannot assign requested address", "after": 1000, "pair": 0}
        r = connect_reply([PAIR], 1000, 1001, {"EADDRNOTAVAIL": 1}, first, 0.5, 1, "exhausted", [1000], 0)
        self.assertEqual(r["firstError"], {"errno": "EADDRNOTAVAIL", "message": "Cannot assign requested address", "after": 1000})
        self.assertEqual(first["pair"], 0, "the worker's record is not changed")
        self.assertEqual(r["perPair"], [dict(PAIR, established=1000)])
        self.assertEqual((r["durationMs"], r["connectsPerSecond"], r["workers"], r["localPorts"]), (500, 2000, 1, None))


class RefusedBeforeForkTest(unittest.TestCase):
    def refused(self, args, message):
        with self.assertRaises(OpError) as cm:
            op_connect(1, args)
        self.assertEqual((cm.exception.code, cm.exception.message), ("BAD_REQUEST", message))
        self.assertEqual(steps.open_steps(), [], "a refused connect registers no step")

    def test_bad_arguments(self):
        base = {"id": "c", "pairs": [PAIR], "count": 1}
        self.refused(dict(base, bind="all"), 'argument "bind" must be none, ip, ip-no-port or reuseaddr, got "all"')
        self.refused(dict(base, bind="reuseaddr"), 'bind "reuseaddr" needs argument "port" (the local port to share)')
        self.refused(dict(base, port=65536, bind="reuseaddr"), 'argument "port" must be 1..65535, got 65536')
        self.refused(dict(base, count=-1), 'argument "count" must be >= 0, got -1')
        self.refused(dict(base, count="10"), 'argument "count" must be int, got "10"')
        self.refused(dict(base, processes=0), 'argument "processes" must be >= 1, got 0')
        self.refused(dict(base, stopOnError="no"), 'argument "stopOnError" must be bool, got "no"')
        self.refused(dict(base, lanes=0), 'argument "lanes" must be >= 1, got 0')
        self.refused(dict(base, lanes=2, processes=2), 'argument "lanes" above 1 goes with neither "processes" nor "rate"')
        self.refused(dict(base, lanes=2, rate=10), 'argument "lanes" above 1 goes with neither "processes" nor "rate"')
        self.refused(dict(base, send=-1), 'argument "send" must be >= 0, got -1')
        self.refused(dict(base, send=65537), 'argument "send" must be at most 65536 bytes, got 65537')
        self.refused({"pairs": [PAIR], "count": 1}, 'argument "id" (the step id) must be a non-empty string or an integer')


if __name__ == "__main__":
    unittest.main()
