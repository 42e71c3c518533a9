"""The protocol's front door: what a request line may be, and that no text in
it is ever run as code."""

import ast
import io
import json
import os
import threading
import unittest

import lab_agent
from lab_agent import dispatch, main, util
from lab_agent.dispatch import MAX_LINE_BYTES, OPS, parse_request

PACKAGE_DIR = os.path.dirname(lab_agent.__file__)


def refusal(line):
    r = parse_request(line)
    assert isinstance(r, dict), "accepted: %r" % (r,)
    return r


class ParseRequestTest(unittest.TestCase):
    def test_a_good_request(self):
        self.assertEqual(parse_request(b'{"id": 7, "op": "hello"}\n'), (7, "hello", {}))
        self.assertEqual(parse_request(b'{"id": 8, "op": "sysctlGet", "args": {"name": "x"}}'), (8, "sysctlGet", {"name": "x"}))
        self.assertEqual(parse_request(b'{"id": 9, "op": "shutdown"}'), (9, "shutdown", {}))

    def test_lines_outside_the_protocol_are_bad_requests(self):
        cases = [
            (b"not json", None, "not a JSON line: "),
            (b"\xff\xfe", None, "not a JSON line: "),
            (b"[1, 2]", None, "a request must be a JSON object"),
            (b'{"op": "hello"}', None, 'a request needs an integer "id"'),
            (b'{"id": true, "op": "hello"}', None, 'a request needs an integer "id"'),
            (b'{"id": "x", "op": "hello"}', "x", 'a request needs an integer "id"'),
            (b'{"id": 1.5, "op": "hello"}', None, 'a request needs an integer "id"'),
            (b'{"id": 1, "op": "hello", "args": [1]}', 1, '"args" must be an object'),
            (b'{"id": 1, "op": "frob"}', 1, 'unknown op "frob"'),
            (b'{"id": 1, "op": ["hello"]}', 1, 'unknown op ["hello"]'),
            (b'{"id": 1}', 1, "unknown op null"),
            (b'{"id": 1, "op": "__class__"}', 1, 'unknown op "__class__"'),
            (b"[" * 100000, None, "not a JSON line: nested too deeply"),
            (b'{"id": 1, "op": "hello", "args": {"a": ' + b"[" * 100000 + b"]" * 100000 + b"}}", None, "not a JSON line: nested too deeply"),
        ]
        for line, rid, message in cases:
            r = refusal(line)
            self.assertEqual((r["id"], r["ok"], r["error"]["code"]), (rid, False, "BAD_REQUEST"), line)
            self.assertTrue(r["error"]["message"].startswith(message), (line, r["error"]["message"]))

    def test_an_oversized_line_is_refused_by_its_length(self):
        r = refusal(b'{"id": 1, "op": "hello", "args": {"pad": "' + b"x" * MAX_LINE_BYTES + b'"}}')
        self.assertEqual(r["error"], {"code": "BAD_REQUEST", "message": "a request line may hold at most %d bytes" % MAX_LINE_BYTES})

    def test_read_line_drops_the_rest_of_an_oversized_line_and_goes_on(self):
        big = b"x" * (3 * MAX_LINE_BYTES) + b"\n"
        stream = io.BytesIO(big + b'{"id": 2, "op": "hello"}\n')
        first = main.read_line(stream)
        self.assertEqual(len(first), MAX_LINE_BYTES + 1)
        self.assertEqual(refusal(first)["error"]["code"], "BAD_REQUEST")
        self.assertEqual(parse_request(main.read_line(stream)), (2, "hello", {}))
        self.assertEqual(main.read_line(stream), b"")


class NoCodeFromRequestsTest(unittest.TestCase):
    """Requests are data: JSON is parsed, ops are looked up in a table, and no
    module of the agent has a way to run text as code."""

    FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input"}
    FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "importlib", "code", "codeop", "runpy", "ctypes.util"}
    FORBIDDEN_ATTRS = {("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp"), ("os", "execl"),
                       ("os", "execlp"), ("os", "spawnv"), ("os", "spawnl"), ("os", "posix_spawn"),
                       ("os", "posix_spawnp")}

    def modules(self):
        for root, _, files in os.walk(PACKAGE_DIR):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(root, f)
                    with open(path) as fh:
                        yield path, ast.parse(fh.read(), path)

    def test_no_module_evaluates_imports_dynamically_or_spawns_a_shell(self):
        seen = 0
        for path, tree in self.modules():
            seen += 1
            for node in ast.walk(tree):
                where = "%s:%d" % (os.path.relpath(path, PACKAGE_DIR), getattr(node, "lineno", 0))
                if isinstance(node, ast.Call):
                    f = node.func
                    if isinstance(f, ast.Name):
                        self.assertNotIn(f.id, self.FORBIDDEN_CALLS, where)
                    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                        # The one exec and the one spawn: a worker is the helper the agent compiled
                        # from its own fastconn.c, with an argv of numbers and addresses it validated.
                        helper = ((where.startswith("fastconn.py:") and (f.value.id, f.attr) == ("os", "execv"))
                                  or (where.startswith("workers.py:") and (f.value.id, f.attr) == ("os", "posix_spawn")))
                        if not helper:
                            self.assertNotIn((f.value.id, f.attr), self.FORBIDDEN_ATTRS, where)
                        self.assertNotIn(f.attr, {"loads"} if f.value.id in ("pickle", "marshal") else set(), where)
                    for kw in node.keywords:
                        if kw.arg == "shell":
                            self.fail("%s: subprocess with shell=" % where)
                    if isinstance(f, ast.Attribute) and f.attr in ("run", "Popen", "call", "check_output", "check_call"):
                        # a subprocess gets an argv list, never a command string
                        self.assertTrue(node.args and isinstance(node.args[0], ast.List), where)
                if isinstance(node, ast.Import):
                    for a in node.names:
                        self.assertNotIn(a.name, self.FORBIDDEN_MODULES, where)
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    self.assertNotIn(node.module, self.FORBIDDEN_MODULES, where)
                if isinstance(node, ast.Attribute):
                    self.assertNotIn(node.attr, {"__globals__", "__builtins__", "__subclasses__"}, where)
        self.assertGreater(seen, 10)

    def test_ops_are_a_fixed_table_of_functions(self):
        for name, (fn, threaded) in OPS.items():
            self.assertTrue(callable(fn) and fn.__module__.startswith("lab_agent."), name)
            self.assertIsInstance(threaded, bool)

    def test_hostile_requests_are_answered_as_data_and_run_nothing(self):
        marker = os.path.join(os.environ.get("TMPDIR", "/tmp"), "labt-agent-pwned-%d" % os.getpid())
        code = "__import__('os').system('touch %s')" % marker
        lines = [
            {"id": 1, "op": code},
            {"id": 2, "op": "sysctlGet", "args": {"name": code}},
            {"id": 3, "op": "sysctlGet", "args": {"name": "../../../bin/sh"}},
            {"id": 4, "op": "hello", "args": {"__class__": code, "eval": code}},
            {"id": 5, "op": "connect", "args": {"id": code, "pairs": [{"address": "$(touch %s)" % marker, "port": 1}], "count": 1}},
        ]
        out = io.BytesIO()
        saved = util._out
        util._out = out
        try:
            for req in lines:
                main.handle(json.dumps(req).encode())
            # Threaded ops (connect) reply from their own thread: wait for them before looking.
            for t in threading.enumerate():
                if t.name.startswith("op-"):
                    t.join(10)
        finally:
            util._out = saved
        replies = [json.loads(l) for l in out.getvalue().decode().splitlines()]
        self.assertEqual([r["id"] for r in replies], [1, 2, 3, 4, 5])
        self.assertEqual([r["ok"] for r in replies], [False, False, False, True, False])
        self.assertEqual(replies[0]["error"]["code"], "BAD_REQUEST")
        self.assertFalse(os.path.exists(marker))


if __name__ == "__main__":
    unittest.main()
