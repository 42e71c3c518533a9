// The agent's pure parts, unit-tested with Python's own unittest
// (test/agent/py/test_*.py): one uvu test per Python test module, which fails
// with unittest's own report, so the count here is honest.

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OP_NAMES } from '../../runner/agent/protocol.ts';

const PY_TESTS = fileURLToPath(new URL('./py/', import.meta.url));
const AGENT_SOURCES = fileURLToPath(new URL('../../runner/agent/', import.meta.url));

const modules = readdirSync(PY_TESTS)
  .filter((f) => /^test_\w+\.py$/.test(f))
  .sort()
  .map((f) => f.slice(0, -3));

test('there are Python unit tests to run', () => {
  assert.ok(modules.length >= 6, `found ${modules.join(', ')}`);
});

function unittest(python: string, names: string[], env: Record<string, string> = {}) {
  return spawnSync(python, ['-m', 'unittest', '-v', ...names], {
      cwd: PY_TESTS,
      encoding: 'utf8',
      timeout: 60_000,
      // The package from its sources, as the zipapp holds it; no __pycache__ left in the tree.
      env: { ...process.env, ...env, PYTHONPATH: AGENT_SOURCES, PYTHONDONTWRITEBYTECODE: '1' },
  });
}

function check(r: ReturnType<typeof unittest>, what: string) {
  const report = `${r.stderr}${r.stdout}`;
  if (r.status !== 0) assert.unreachable(`${what} exited ${r.status ?? r.signal}:\n${report}`);
  // "Ran 0 tests" would pass unittest itself: a module that tests nothing is a failure here.
  assert.not.match(report, /^Ran 0 tests/m, `${what} ran no tests`);
}

test('runner/agent/protocol.ts types exactly the ops the agent dispatches', () => {
  const r = spawnSync('python3', ['-c', 'from lab_agent.dispatch import OPS, SHUTDOWN; print(" ".join(sorted(list(OPS) + [SHUTDOWN])))'], {
    cwd: AGENT_SOURCES,
    encoding: 'utf8',
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  });
  assert.is(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim().split(' '), [...OP_NAMES].sort());
});

for (const name of modules) {
  test(`python3 -m unittest ${name}`, () => check(unittest('python3', [name]), `unittest ${name}`));
}

// The agent promises Python 3.7+: where a python3.7 is installed, the whole
// suite runs on it too (skipped, and counted as skipped, where there is none).
// (A pyenv shim runs python3.7 only when that version is asked for; elsewhere PYENV_VERSION is ignored.)
const OLDEST_ENV = { PYENV_VERSION: '3.7' };
const oldest = spawnSync('python3.7', ['-c', 'import sys; print(sys.version_info[:2] == (3, 7))'], { encoding: 'utf8', env: { ...process.env, ...OLDEST_ENV } });
(oldest.stdout?.trim() === 'True' ? test : test.skip)('python3.7 -m unittest (every module): the oldest Python the agent supports', () =>
  check(unittest('python3.7', modules, OLDEST_ENV), 'unittest on python3.7'));

test.run();
