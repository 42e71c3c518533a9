// The agent's pure parts, unit-tested with Python's own unittest
// (test/agent/py/test_*.py): one uvu test per Python test module, which fails
// with unittest's own report, so the count here is honest.

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const PY_TESTS = fileURLToPath(new URL('./py/', import.meta.url));
const AGENT_SOURCES = fileURLToPath(new URL('../../runner/agent/', import.meta.url));

const modules = readdirSync(PY_TESTS)
  .filter((f) => /^test_\w+\.py$/.test(f))
  .sort()
  .map((f) => f.slice(0, -3));

test('there are Python unit tests to run', () => {
  assert.ok(modules.length >= 6, `found ${modules.join(', ')}`);
});

for (const name of modules) {
  test(`python3 -m unittest ${name}`, () => {
    const r = spawnSync('python3', ['-m', 'unittest', '-v', name], {
      cwd: PY_TESTS,
      encoding: 'utf8',
      timeout: 60_000,
      // The package from its sources, as the zipapp holds it; no __pycache__ left in the tree.
      env: { ...process.env, PYTHONPATH: AGENT_SOURCES, PYTHONDONTWRITEBYTECODE: '1' },
    });
    const report = `${r.stderr}${r.stdout}`;
    if (r.status !== 0) assert.unreachable(`unittest ${name} exited ${r.status ?? r.signal}:\n${report}`);
    // "Ran 0 tests" would pass unittest itself: a module that tests nothing is a failure here.
    assert.not.match(report, /^Ran 0 tests/m, `${name} ran no tests`);
  });
}

test.run();
